"""Module summaries, the run-level summary and software versions (snapshots: test_report_snapshot.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from genomelab.io.dropped import count_dropped
from genomelab.io.errors import FormatError
from genomelab.report import Comparison, ModuleSummary, read_module_summary, write_module_summary
from genomelab.report.run import write_run_summary
from genomelab.report.versions import write_software_versions


def comparison(model_acc: float) -> Comparison:
    return Comparison(
        "tissue of origin",
        "test",
        "accuracy",
        True,
        {"MLP": {"accuracy": model_acc}, "logistic regression": {"accuracy": 0.9}},
        {"MLP": "model", "logistic regression": "baseline"},
    )


def test_verdict_says_plainly_who_wins():
    # Without a paired test a higher metric is not a win (tests/test_folds.py has the cases
    # with tests); a lower one does not beat the baseline.
    assert "MLP (accuracy 0.95) ties with logistic regression (0.9)" in comparison(0.95).verdict()
    assert "no paired test" in comparison(0.95).verdict()
    assert "does NOT beat" in comparison(0.5).verdict()
    lower = Comparison(
        "mae",
        "test",
        "mae",
        False,
        {"net": {"mae": 0.02}, "NNLS": {"mae": 0.03}},
        {"net": "model", "NNLS": "baseline"},
    )
    assert "ties with" in lower.verdict() and "NOT" not in lower.verdict()
    assert (
        "does NOT beat"
        in Comparison(
            "mae",
            "test",
            "mae",
            False,
            {"net": {"mae": 0.04}, "NNLS": {"mae": 0.03}},
            {"net": "model", "NNLS": "baseline"},
        ).verdict()
    )


def test_module_and_run_summary(tmp_path):
    summary = ModuleSummary(
        "tissue",
        "Tissue of origin",
        [comparison(0.95)],
        [{"name": "label_granularity", "status": "pass", "message": "ok"}],
        plots=["plots/confusion.png"],
        notes=["demo data"],
    )
    write_module_summary(summary, tmp_path / "tissue" / "summary.json", tmp_path / "tissue" / "summary.md")
    assert (
        read_module_summary(tmp_path / "tissue" / "summary.json").comparisons[0].rows["MLP"]["accuracy"]
        == 0.95
    )
    assert "| MLP | model | 0.95 |" in (tmp_path / "tissue" / "summary.md").read_text()
    write_software_versions(tmp_path / "versions.json", "seed: 1")
    write_run_summary(
        [tmp_path / "tissue" / "summary.json"],
        tmp_path / "versions.json",
        tmp_path / "report" / "summary.md",
        tmp_path / "report" / "summary.json",
        tmp_path / "report" / "summary.html",
        run="cohort_a",
    )
    md = (tmp_path / "report" / "summary.md").read_text()
    assert md.startswith("# genomelab run summary: cohort_a\n")
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["run"] == "cohort_a"
    assert "<h1>genomelab run summary: cohort_a</h1>" in (tmp_path / "report" / "summary.html").read_text()
    assert "| [tissue](#tissue) | tissue of origin | test | MLP (accuracy 0.95) ties with" in md
    assert "](../tissue/plots/confusion.png)" in md
    html = (tmp_path / "report" / "summary.html").read_text()
    assert "<table class='comparison'>" in html and "label_granularity" in html
    versions = json.loads((tmp_path / "versions.json").read_text())
    assert versions["packages"]["numpy"] and versions["config_sha256"]
    # A run outside a git checkout (a copied tree, a release archive) has no commit: the
    # pages say "unknown", never "None".
    (tmp_path / "versions.json").write_text(json.dumps({**versions, "git_commit": None}))
    out = [tmp_path / "report" / f"summary.{x}" for x in ("md", "json", "html")]
    write_run_summary(
        [tmp_path / "tissue" / "summary.json"], tmp_path / "versions.json", *out, run="cohort_a"
    )
    for page in (out[0], out[2]):
        text = page.read_text()
        assert "commit unknown" in text and "None" not in text, page


def test_dropped_records_reach_module_and_run_report(tmp_path):
    short = count_dropped(
        "binning_features", "contigs", "shorter than min_length", [f"c{i}" for i in range(7)]
    )
    summary = ModuleSummary("binning", "Binning", dropped=[short])
    write_module_summary(summary, tmp_path / "binning" / "summary.json", tmp_path / "binning" / "summary.md")
    data = json.loads((tmp_path / "binning" / "summary.json").read_text())
    assert data["dropped"] == [
        {
            "step": "binning_features",
            "what": "contigs",
            "reason": "shorter than min_length",
            "count": 7,
            "examples": ["c0", "c1", "c2", "c3", "c4"],
        }
    ]
    assert read_module_summary(tmp_path / "binning" / "summary.json").dropped == [short]
    row = "| binning_features | contigs | shorter than min_length | 7 | c0, c1, c2, c3, c4 |"
    assert row in (tmp_path / "binning" / "summary.md").read_text()
    write_software_versions(tmp_path / "versions.json", "seed: 1")
    write_run_summary(
        [tmp_path / "binning" / "summary.json"],
        tmp_path / "versions.json",
        tmp_path / "report" / "summary.md",
        tmp_path / "report" / "summary.json",
        tmp_path / "report" / "summary.html",
    )
    assert row in (tmp_path / "report" / "summary.md").read_text()
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["modules"][0]["n_dropped"] == 7
    assert "<td>shorter than min_length</td><td>7</td>" in (tmp_path / "report" / "summary.html").read_text()


def test_dropped_entries_are_checked_when_read(tmp_path):
    assert count_dropped("s", "rows", "NA", []) is None
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"module": "m", "title": "t", "dropped": [{"step": "s", "count": 2}]}))
    with pytest.raises(FormatError, match=r"summary.json: dropped\[0\] must be an object with the keys"):
        read_module_summary(path)


def test_landing_page_is_the_verdict_table_and_numeric_metadata(tmp_path):
    from docutils.core import publish_parts

    tests = {
        "MLP vs logistic regression": {"test": "exact McNemar", "n": 40, "p_value": 0.01, "favours": "model"}
    }
    won = comparison(0.95)
    won.tests = {k: {**v, "statistic": 0.0, "wins": 9, "losses": 1} for k, v in tests.items()}
    summary = ModuleSummary("tissue", "Tissue of origin", [won, comparison(0.5)], [], notes=[])
    write_module_summary(summary, tmp_path / "tissue" / "summary.json", tmp_path / "tissue" / "summary.md")
    write_software_versions(tmp_path / "versions.json", "seed: 1")
    out = tmp_path / "report"
    write_run_summary(
        [tmp_path / "tissue" / "summary.json"],
        tmp_path / "versions.json",
        out / "summary.md",
        out / "summary.json",
        run="cohort_a_2",
        landing_dir=out,
    )
    html = publish_parts((out / "landing.rst").read_text(), writer="html")["html_body"]
    assert "Run summary: cohort_a_2" in html and "<table" in html
    verdicts = [json.loads((out / "summary.json").read_text())["modules"][i]["verdict"] for i in (0, 1)]
    assert " beats " in verdicts[0] and "does NOT beat" in verdicts[1]
    # One short cell per comparison: the verdict word and the paired test's p.
    assert "<strong>beats</strong> (p = 0.01)" in html and "<strong>trails</strong> (no paired test)" in html
    metadata = yaml.safe_load((out / "landing.yaml").read_text())
    # Snakemake 9 shows string metadata as raw docutils parts: numbers only.
    assert all(isinstance(v, int) for v in metadata.values()), metadata
    assert metadata["model beats baseline (paired test)"] == 1 and metadata["baseline ahead"] == 1


def test_report_command_opens_on_the_landing_page_when_the_run_has_one(tmp_path, monkeypatch):
    from genomelab.cli import report_command

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("run: cohort_b\ntissue: {enabled: true}\n")
    cmd = report_command("my.yaml")
    assert cmd[cmd.index("--report") + 1] == "results/cohort_b/report.html" and "--report-metadata" not in cmd
    landing = tmp_path / "results" / "cohort_b" / "report" / "landing.yaml"
    landing.parent.mkdir(parents=True)
    landing.write_text("ties: 1\n")
    cmd = report_command("my.yaml", out="r.html")
    assert cmd[cmd.index("--report") + 1] == "r.html"
    assert cmd[cmd.index("--report-metadata") + 1] == "results/cohort_b/report/landing.yaml"
    # The stylesheet that keeps the top of tall pages (landing table, plots) reachable.
    assert Path(cmd[cmd.index("--report-stylesheet") + 1]).read_text().count("align-items: flex-start")
    (tmp_path / "bad.yaml").write_text("tissue: {enabled: true}\n")
    with pytest.raises(ValueError, match=r"bad.yaml: no `run:` name"):
        report_command("bad.yaml")


def test_report_command_from_a_project_folder_names_the_workflow(tmp_path, monkeypatch):
    """The docs run a user's own data from a project folder (`snakemake -s .../Snakefile
    --directory .`); `genomelab report` there ran a bare `snakemake --report`, which stopped
    with "No Snakefile found". In the repository itself the command stays bare."""
    from genomelab.cli import report_command

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("run: cohort_p\ntissue: {enabled: true}\n")
    cmd = report_command("my.yaml")
    assert cmd[cmd.index("-s") + 1] == str(repo / "Snakefile") and cmd[cmd.index("--directory") + 1] == "."
    monkeypatch.chdir(repo)
    assert "-s" not in report_command(str(tmp_path / "my.yaml"))


def test_report_of_an_unfinished_run_says_to_finish_it(tmp_path, monkeypatch, capfd):
    """`genomelab report` before the run's summary exists: exit 2 naming the missing file and
    the command to run (Snakemake's own report stopped on a raw WorkflowError)."""
    from genomelab.cli import main

    monkeypatch.chdir(tmp_path)
    (tmp_path / "my.yaml").write_text("run: cohort_c\ntissue: {enabled: true, simulate: {}}\n")
    assert main(["report", "--configfile", "my.yaml"]) == 2
    err = capfd.readouterr().err
    assert "results/cohort_c/report/summary.md does not exist" in err
    # Outside the repository the command names the workflow's Snakefile.
    snakefile = Path(__file__).resolve().parents[1] / "Snakefile"
    assert f"snakemake -s {snakefile} --directory . --cores 1 --configfile my.yaml" in err
    assert not (tmp_path / "results" / "cohort_c" / "report.html").exists()


def test_a_wilcoxon_side_against_the_means_is_a_tie_and_the_table_says_what_favours_means(tmp_path):
    """Per-link reciprocal ranks: many small gains for the model and a few large losses give
    the model the larger signed-rank sum (favours 'model', significant) with a lower mean. The
    verdict is a tie (test and metric disagree), and the summary explains the favours column,
    which a user read as the model being better (assoc MRR 0.0034 vs popularity 0.0054)."""
    from genomelab.report.stats import wilcoxon_signed_rank

    model = [0.11] * 40 + [0.0] * 4
    baseline = [0.10] * 40 + [1.0] * 4
    test = wilcoxon_signed_rank(model, baseline)
    assert test.favours == "model" and test.significant()
    comp = Comparison(
        "links",
        "test",
        "mrr",
        True,
        {"net": {"mrr": sum(model) / 44}, "popularity": {"mrr": sum(baseline) / 44}},
        {"net": "model", "popularity": "baseline"},
        tests={"net vs popularity": test.to_dict()},
    )
    assert "ties with" in comp.verdict() and "test and metric disagree" in comp.verdict()
    write_module_summary(ModuleSummary("assoc", "Assoc", [comp]), tmp_path / "s.json", tmp_path / "s.md")
    text = (tmp_path / "s.md").read_text()
    assert "| net vs popularity | Wilcoxon signed-rank | 44 |" in text
    assert "the larger signed-rank sum, which can differ from the side with the higher mean" in text


def test_the_versions_record_hashes_every_setting_but_the_predict_sections():
    from genomelab.report.versions import reported_config, software_versions

    config = {
        "seed": 3,
        "tissue": {"train": {"lr": 0.1}, "predict": {"inputs": ""}},
        "ingest": {"enabled": False},
    }
    reported = reported_config(config, ("tissue", "regulon", "ingest"))
    assert reported == {"seed": 3, "tissue": {"train": {"lr": 0.1}}, "ingest": {"enabled": False}}
    assert config["tissue"]["predict"] == {"inputs": ""}  # the run's config is left as it was

    def record(cfg: dict) -> dict:
        return software_versions(json.dumps(reported_config(cfg, ("tissue",)), sort_keys=True))

    other_predict = {**config, "tissue": {**config["tissue"], "predict": {"inputs": "new.h5"}}}
    assert record(other_predict)["config_sha256"] == record(config)["config_sha256"]
    other_lr = {**config, "tissue": {"train": {"lr": 0.2}, "predict": {"inputs": ""}}}
    assert record(other_lr)["config_sha256"] != record(config)["config_sha256"]
    assert record(config)["seed"] == 3


def test_the_versions_record_names_the_workflow_s_commit_from_a_project_folder(tmp_path, monkeypatch):
    """The record's git commit is the workflow checkout's, wherever Snakemake runs: from a
    project folder (`--directory .`, the docs' way for own data) it was "unknown", or the
    commit of the user's own project repository when that folder is one."""
    import subprocess

    from genomelab.report.versions import software_versions

    repo = Path(__file__).resolve().parents[1]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True)
    if head.returncode != 0:
        pytest.skip(f"{repo} is not a git checkout (an unpacked archive): no commit to record")
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    subprocess.run(
        ["git", "-c", "user.name=u", "-c", "user.email=u@x", "commit", "-q", "--allow-empty", "-m", "x"],
        check=True,
    )
    assert software_versions("{}")["git_commit"] == head.stdout.strip()


def test_the_versions_record_keeps_every_rule_envs_pins():
    """Under --use-conda the record's job runs in the CPU env (no torch) on whatever node:
    the record also keeps what each rule env pins, and which interpreter wrote it."""
    import sys

    from genomelab.report.versions import software_versions

    record = software_versions("{}")
    envs = sorted((Path(__file__).resolve().parents[1] / "envs").glob("*.yaml"))
    assert list(record["conda_envs"]) == [f"envs/{p.name}" for p in envs] and envs
    for path in envs:
        assert record["conda_envs"][f"envs/{path.name}"] == yaml.safe_load(path.read_text())["dependencies"]
    assert record["python_prefix"] == sys.prefix


def test_an_archive_unpacked_inside_another_repository_records_no_commit_of_that_repository(tmp_path):
    """A release archive unpacked in a user's git repository: the enclosing repository's
    commit is reported only once it tracks the workflow's files (then it pins them)."""
    import subprocess

    from genomelab.report.versions import _git_commit

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=u", "-c", "user.email=u@x", *args],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "notes.txt").write_text("the user's project\n")
    git("add", "notes.txt")
    git("commit", "-q", "-m", "project")
    wf = tmp_path / "genomelab-1.0"
    wf.mkdir()
    (wf / "Snakefile").write_text("# the workflow\n")
    assert _git_commit(wf) is None  # untracked: the user's commit says nothing of it
    git("add", "genomelab-1.0/Snakefile")
    assert _git_commit(wf) is None  # staged, but HEAD does not hold it yet
    git("commit", "-q", "-m", "vendor the workflow")
    assert _git_commit(wf) == git("rev-parse", "HEAD")
    assert _git_commit(tmp_path) == git("rev-parse", "HEAD")  # the top level: its own checkout
    assert _git_commit(tmp_path.parent / "nowhere") is None
