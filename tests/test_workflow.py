"""The workflow as a user drives it: lint, formatting, dry runs, config validation, a real run.

Every run happens in a copy of the repository under tmp_path, so the tests never touch a
developer's own results/.
"""

from __future__ import annotations

import gzip
import html as html_module
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from genomelab.config import schema_default
from genomelab.tissue.kinds import CLOSED_FORM
from genomelab.train.export import load_exported
from shared_run import copy_repo, copy_run
from test_envs import env_gaps

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODULES = ("tissue", "deconv", "regulon", "assoc", "binning")
# config/test.yaml's run name: its outputs are in results/test/, its logs in logs/test/.
RUN = "test"


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def run(cmd: list[str], cwd: Path, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the repository's tracked (and new, unignored) files."""
    return copy_repo(tmp_path_factory.mktemp("repo"))


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run([tool("snakemake"), *args], workdir, timeout=timeout)


def test_lint_is_clean(workdir):
    res = snakemake(workdir, "--lint", "--configfile", "config/demo.yaml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_snakefmt_is_clean(workdir):
    res = run([tool("snakefmt"), "--check", "Snakefile", "workflow/rules"], workdir)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("configfile", ["config/demo.yaml", "config/test.yaml"])
def test_dry_run(workdir, configfile):
    res = snakemake(workdir, "-n", "--cores", "2", "--configfile", configfile)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "report_summary" in res.stdout


def test_every_module_is_enabled_in_the_test_config():
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    enabled = [m for m in MODULES if config.get(m, {}).get("enabled")]
    assert enabled == list(MODULES)


def test_invalid_config_stops_before_any_job(workdir):
    before = sorted(workdir.rglob("*"))
    res = snakemake(workdir, "--cores", "1", "--configfile", "config/test.yaml", "--config", "seed=-3")
    assert res.returncode != 0
    assert "seed" in res.stderr + res.stdout and "minimum" in res.stderr + res.stdout
    res = snakemake(workdir, "--cores", "1", "--configfile", "config/test.yaml", "--config", "no_such_key=1")
    assert res.returncode != 0 and "no_such_key" in res.stderr + res.stdout
    after = [p for p in sorted(workdir.rglob("*")) if ".snakemake" not in p.parts]
    assert after == [p for p in before if ".snakemake" not in p.parts], "a job ran despite the invalid config"


def test_env_files_are_pinned():
    for env_file in (ROOT / "envs").glob("*.yaml"):
        env = yaml.safe_load(env_file.read_text())
        assert env["channels"], env_file
        for dep in env["dependencies"]:
            assert isinstance(dep, str) and "=" in dep, f"{env_file.name}: {dep} is not pinned"


def test_every_rule_names_a_conda_env_and_a_log():
    # snakemake --lint checks this too; this keeps the message specific.
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        n_rules = sum(1 for line in text.splitlines() if line.startswith("rule "))
        assert text.count("    conda:") >= n_rules, f"{smk.name}: a rule lacks conda:"
        assert text.count("    log:") >= n_rules, f"{smk.name}: a rule lacks log:"


def job_counts(output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a Snakemake (dry) run into {rule: count}."""
    counts: dict[str, int] = {}
    lines = output.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip().startswith("Job stats"))
    except StopIteration:
        return counts
    for line in lines[start + 3 :]:
        parts = line.split()
        if not parts or parts[0] == "total":
            break
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def planned_jobs(output: str) -> list[tuple[str, str]]:
    """``(rule, wildcards)`` of every job a dry run lists (wildcards "" where it has none)."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if head:
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.MULTILINE)
            jobs.append((head.group(1), wildcards.group(1) if wildcards else ""))
    return jobs


def dry_run(
    repo: Path, target: str, configfile: str, override: dict, cores: int = 2
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """What Snakemake would run for ``target`` in ``repo`` under ``configfile`` and then
    ``override`` (written to the next free ``override<i>.yaml`` there): the job counts per
    rule (:func:`job_counts`) and the jobs (:func:`planned_jobs`)."""
    extra = repo / f"override{len(list(repo.glob('override*.yaml')))}.yaml"
    extra.write_text(yaml.safe_dump(override))
    res = snakemake(repo, target, "-n", "--cores", str(cores), "--configfile", configfile, str(extra))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return job_counts(res.stdout + res.stderr), planned_jobs(res.stdout)


@pytest.fixture(scope="module")
def finished_run(test_config_run, tmp_path_factory) -> Path:
    """The test configuration run to completion (once per session, tests/shared_run.py; the
    SLURM tests compare with the same run), in a copy for the tests below to change."""
    return copy_run(test_config_run, tmp_path_factory.mktemp("finished") / "repo")


def train_rules(workdir: Path) -> list[str]:
    # Snakemake reads no config by default, and --list-rules needs one to parse the workflow.
    res = snakemake(workdir, "--list-rules", "--configfile", "config/test.yaml")
    assert res.returncode == 0, res.stdout + res.stderr
    return sorted(r for r in res.stdout.split() if r.endswith("_train"))


@pytest.mark.slow
def test_end_to_end_on_the_test_config(finished_run):
    workdir = finished_run
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    summary = (workdir / "results" / RUN / "report" / "summary.md").read_text()
    assert summary.startswith(f"# genomelab run summary: {RUN}\n")
    for module in MODULES:
        if config.get(module, {}).get("enabled"):
            data = json.loads((workdir / "results" / RUN / module / "summary.json").read_text())
            assert data["module"] == module
            assert data["comparisons"], f"{module} reports no model-vs-baseline comparison"
            assert f'id="{module}"' in summary
    versions = json.loads((workdir / "results" / RUN / "report" / "software_versions.json").read_text())
    assert versions["packages"]["torch"] and versions["config_sha256"]
    # Nothing left to do: the run is complete and consistent.
    again = snakemake(workdir, "-n", "--cores", "2", "--configfile", "config/test.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout


@pytest.mark.slow
def test_snapshot_of_deterministic_outputs(finished_run):
    from genomelab.report.snapshot import compare, snapshot

    expected_file = ROOT / "tests" / "data" / "snapshot_test_config.json"
    actual = snapshot(finished_run / "results" / RUN)
    problems = compare(json.loads(expected_file.read_text()), actual)
    assert not problems, (
        f"outputs of config/test.yaml changed ({len(problems)}):\n  "
        + "\n  ".join(problems[:60])
        + "\nFloats are compared with tolerances a different CPU respects and trained outputs as "
        "behaviour (genomelab/report/snapshot.py says which file is checked how). If the change is "
        "intended, regenerate the snapshot: snakemake --cores 2 --configfile config/test.yaml && "
        "genomelab snapshot results/test --out tests/data/snapshot_test_config.json"
    )


@pytest.mark.slow
def test_forcing_a_rule_reruns_only_it_and_its_dependents(finished_run):
    res = snakemake(
        finished_run, "-n", "--cores", "2", "--configfile", "config/test.yaml", "-R", "tissue_features"
    )
    jobs = job_counts(res.stdout)
    assert jobs.get("tissue_features") == 1, res.stdout
    assert "tissue_simulate" not in jobs
    assert "report_summary" in jobs
    assert not any(r.startswith(("deconv_", "regulon_", "assoc_", "binning_")) for r in jobs), jobs


@pytest.mark.slow
def test_changing_a_training_parameter_reruns_training_not_features(finished_run):
    rules = train_rules(finished_run)
    assert "tissue_train" in rules
    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    lr = config["tissue"].get("train", {}).get("lr", 0.001) * 0.5
    override = finished_run / "override.yaml"
    override.write_text(yaml.safe_dump({"tissue": {"train": {"lr": lr}}}))
    res = snakemake(finished_run, "-n", "--cores", "2", "--configfile", "config/test.yaml", str(override))
    jobs = job_counts(res.stdout)
    assert jobs.get("tissue_ensemble", 0) >= 1, res.stdout
    # Every ensemble member of every engine-trained model retrains; the read-profile model
    # (no engine, no training settings) does not.
    models = config["tissue"].get("models") or schema_default("tissue.models")
    n_members = len([m for m in models if m not in CLOSED_FORM]) * config["tissue"]["ensemble"]
    assert jobs.get("tissue_train") == n_members, res.stdout
    assert "reads" in models and "tissue_reads" not in jobs, jobs
    assert "tissue_features" not in jobs and "tissue_simulate" not in jobs, jobs


@pytest.mark.slow  # a real run and four dry runs of config/test.yaml
def test_predict_settings_do_not_rerun_the_versions_record_but_reported_ones_do(tmp_path):
    # Snakemake's default rerun triggers (params among them) on a record written under the
    # test config: the predict sections are not part of what it reports (its config hash and
    # seed), so setting them schedules nothing; the seed and any other setting do.
    repo = copy_repo(tmp_path / "repo")
    target = f"results/{RUN}/report/software_versions.json"
    res = snakemake(repo, target, "--cores", "1", "--configfile", "config/test.yaml")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    written = json.loads((repo / target).read_text())

    def planned(override: dict) -> dict[str, int]:
        return dry_run(repo, target, "config/test.yaml", override, cores=1)[0]

    assert planned({}) == {}
    assert planned({"tissue": {"predict": {"min_covered": 0.4, "threshold": 0.6}}}) == {}
    assert planned({"seed": 7}).get("report_software_versions") == 1
    assert planned({"tissue": {"train": {"lr": 0.002}}}).get("report_software_versions") == 1
    assert json.loads((repo / target).read_text()) == written


def _chromium(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    flags += ["--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars"]
    flags += [f"--user-data-dir={cwd / 'chromium-profile'}", "--virtual-time-budget=10000"]
    res = run([chromium, *flags, *args], cwd, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res


#: Where the browser test leaves its screenshots for a person to look at (git-ignored).
SCREENSHOTS = ROOT / "test-artifacts" / "report"


@pytest.mark.slow
def test_snakemake_report_opens_on_the_run_summary_in_a_browser(finished_run):
    # `genomelab report` = snakemake --report with the run's landing page as metadata.
    res = run([tool("genomelab"), "report", "--configfile", "config/test.yaml"], finished_run)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    report = finished_run / "results" / RUN / "report.html"
    html = report.read_text()
    assert "genomelab" in html
    dom = _chromium(["--dump-dom", report.as_uri()], finished_run)
    # What the landing page shows once its JavaScript ran, without the embedded data and code.
    import re

    shown = re.sub(r"<(script|style)\b.*?</\1>", " ", dom.stdout, flags=re.S)
    shown = html_module.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", shown)))
    summary = json.loads((finished_run / "results" / RUN / "report" / "summary.json").read_text())
    # The landing page is the run summary: run name, a verdict per comparison, no rule graph.
    expected = [
        f"Run summary: {RUN}",
        "genomelab trains genomics deep-learning models",
        "model beats baseline (paired test)",
    ]
    words = {"beats": "beats", "ties with": "ties", "does NOT beat": "trails"}
    expected += [words[row["outcome"]["word"]] for row in summary["modules"] if row["outcome"]]
    expected += [row["comparison"] for row in summary["modules"] if row["comparison"]]
    expected += sorted({row["module"] for row in summary["modules"]})
    for text in expected:
        assert text in shown, f"{text!r} not on the report's landing page: {shown[:800]}"
    # No rule graph drawn (its data sits in a <script id="rulegraph"> either way).
    assert not re.search(r'<div[^>]*id="rulegraph"', dom.stdout)
    # Every plot is a report item with a caption, in its module's category.
    items = re.findall(r'"mime_type":\s*"image/png"', html)
    assert len(items) >= 10
    assert '"caption": ""' not in html and '"caption": null' not in html
    config = yaml.safe_load((finished_run / "config" / "test.yaml").read_text())
    for module in (m for m in MODULES if config.get(m, {}).get("enabled")):
        assert f'"{module}"' in html, f"no report category for {module}"
    # Screenshots for a person: the landing page and the run summary page.
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for name, page in (("landing", report), ("summary", report.parent / "report" / "summary.html")):
        shot = SCREENSHOTS / f"{name}.png"
        _chromium([f"--screenshot={shot}", "--window-size=1400,1000", page.as_uri()], finished_run)
        assert shot.stat().st_size > 10_000, shot
    # ... and the first plot of each module, as the report shows it.
    for row in {r["module"]: r for r in summary["modules"]}.values():
        plots = json.loads(Path(finished_run / row["summary"]).read_text()).get("plots", [])
        if plots:
            src = Path(finished_run / row["summary"]).parent / plots[0]
            shutil.copyfile(src, SCREENSHOTS / f"{row['module']}_{src.name}")


def _latest_state_file(root: Path, since: float) -> Path | None:
    files = [p for p in root.rglob("last.pt") if p.stat().st_mtime > since] if root.exists() else []
    return max(files, key=lambda p: p.stat().st_mtime) if files else None


def _has_open(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(fd) == str(path.resolve()) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # exited meanwhile
        return False


def _descendants(root: int) -> list[int]:
    """PIDs of every process below ``root`` (read from /proc; children of exited parents are
    re-parented away and so are not ours any more)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@pytest.mark.slow
def test_interrupted_training_rule_resumes_to_the_same_result(finished_run):
    """SIGTERM a running training job (SLURM preemption); the profile's retry resumes it."""
    import signal
    import time

    override = finished_run / "long_training.yaml"
    # Only the training parameters change, so only the target's two jobs rerun (tissue_train
    # of mlp member 0 and mlp's ensemble). Changing tissue.models would also rerun the six
    # diagnostics and the gate (their params), which this test is not about.
    override.write_text(
        yaml.safe_dump({"tissue": {"ensemble": 1, "train": {"max_epochs": 150, "patience": 1000}}})
    )
    target = f"results/{RUN}/tissue/train/mlp/metrics.json"
    # Targets first: --configfile and -R take several values and would swallow a target after them.
    args = [
        tool("snakemake"),
        target,
        "--cores",
        "1",
        "--retries",
        "1",
        "--configfile",
        "config/test.yaml",
        str(override),
    ]
    start = time.time()
    proc = subprocess.Popen(
        args,
        cwd=finished_run,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )
    state_root = finished_run / "results" / RUN / ".state" / "tissue"
    signalled = False
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline and not signalled:
        if _latest_state_file(state_root, start) is not None:
            # Only this run's own job: a machine-wide `pgrep -f` would also hit other tests'
            # (or a user's) Snakemake processes. Every rule runs run_step.py, so the training
            # job is the one writing the member's log.
            for pid in _descendants(proc.pid):
                if _has_open(pid, finished_run / "logs" / RUN / "tissue" / "train_mlp_0.log"):
                    os.kill(pid, signal.SIGTERM)
                    signalled = True
        time.sleep(0.05)
    out, _ = proc.communicate(timeout=600)
    assert signalled, "training finished before it could be interrupted:\n" + out[-3000:]
    assert proc.returncode == 0, out[-5000:]
    # Snakemake prints the failed attempt's log (show-failed-logs) and removes it before the
    # retry, whose own log must show the resumption.
    assert "stopped by signal 15" in out, out[-5000:]
    log = (finished_run / "logs" / RUN / "tissue" / "train_mlp_0.log").read_text()
    assert "resumed from" in log, log[:3000]
    interrupted = json.loads((finished_run / target).read_text())
    member = finished_run / "results" / RUN / "tissue" / "train" / "mlp" / "members" / "0" / "model.pt"
    interrupted_weights = load_exported(member).weights
    # The same training uninterrupted: a forced rerun of a finished run trains from scratch.
    res = snakemake(
        finished_run,
        target,
        "--cores",
        "1",
        "--forcerun",
        "tissue_train",
        "--configfile",
        "config/test.yaml",
        str(override),
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    clean = json.loads((finished_run / target).read_text())
    assert [h["val/loss"] for h in interrupted["history"]] == [h["val/loss"] for h in clean["history"]]
    # Equal weights, not only an equal history: the resumed run is the uninterrupted one.
    clean_weights = load_exported(member).weights
    assert interrupted_weights.keys() == clean_weights.keys()
    for name, tensor in clean_weights.items():
        assert torch.equal(interrupted_weights[name], tensor), name


@pytest.mark.slow
def test_predict_rules_apply_the_trained_models_to_new_inputs(finished_run, tmp_path, monkeypatch):
    # Every module's <module>_predict rule, run for real on the finished test run's models.
    # Inputs the run has already scored must give its own numbers back, and nothing of the run
    # may change (the predict outputs live in their own folders).
    run = finished_run / "results" / "test"
    # The models as a user brings them: copies outside the run, so no rule of the run owns them
    # (other tests in this module retrain some of the run's members in place).
    models = tmp_path / "models"
    models.mkdir()
    trained = {
        "tissue": run / "tissue" / "train" / "mlp" / "model.pt",
        "deconv": run / "deconv" / "phase3" / "sparse" / "rep0" / "model.pt",
        "reference": run / "deconv" / "reference" / "reference.tsv",
        "regulon": run / "regulon" / "model" / "best.pt",
        "assoc": run / "assoc" / "entities" / "best_model.pt",
        "featurizer": run / "assoc" / "features" / "featurizer.npz",
        "binning": run / "binning" / "model" / "contrastive.pt",
    }
    copies = {name: shutil.copy2(path, models / f"{name}{path.suffix}") for name, path in trained.items()}
    with gzip.open(finished_run / "resources" / "regulon" / "genome.fna.gz", "rt") as fh:
        genome = "".join(line.strip() for line in fh if not line.startswith(">"))
    (tmp_path / "piece.fna").write_text(">piece\n" + genome[:6000] + "\n")
    # The regulon network reads gene annotation (the default input): the run's own gene table,
    # cut to the genes of the piece, as a user gives genes with a new sequence.
    genes = pd.read_csv(run / "regulon" / "data" / "genes.tsv", sep="\t")
    genes[genes["end"] <= 6000].to_csv(tmp_path / "piece_genes.tsv", sep="\t", index=False)
    predict = {
        "tissue": {"inputs": "results/test/tissue/features/region_means.h5"},
        "deconv": {
            "inputs": "results/test/deconv/demo/new_samples.csv",
            "reference": str(copies["reference"]),
        },
        "regulon": {"inputs": str(tmp_path / "piece.fna"), "annotation": str(tmp_path / "piece_genes.tsv")},
        "assoc": {"inputs": "tests/data/assoc/sources.tsv", "featurizer": str(copies["featurizer"])},
        "binning": {
            "inputs": "results/test/binning/data/contigs.fna.gz",
            "depth": "results/test/binning/data/depth.tsv",
        },
    }
    for module in ("tissue", "deconv", "regulon", "assoc", "binning"):
        predict[module]["model"] = str(copies[module])
    (tmp_path / "predict.yaml").write_text(yaml.safe_dump({m: {"predict": p} for m, p in predict.items()}))
    bins = run / "binning" / "bins" / "contig_bins.tsv"
    before = bins.stat().st_mtime_ns
    rules = [f"{m}_predict" for m in predict]
    # mtime triggers only: the predict keys change no other rule's work.
    args = (
        "--rerun-triggers",
        "mtime",
        "--cores",
        "2",
        "--configfile",
        "config/test.yaml",
        str(tmp_path / "predict.yaml"),
    )
    # The predict rules are not in the session's run, whose imports tests/test_envs.py checks.
    monkeypatch.setenv("GENOMELAB_IMPORT_RECORD", str(tmp_path / "imports"))
    res = snakemake(finished_run, *rules, *args)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    assert set(job_counts(res.stdout + res.stderr)) == set(rules), res.stderr[-3000:]
    assert bins.stat().st_mtime_ns == before
    recorded, missing = env_gaps(tmp_path / "imports")
    assert recorded == set(rules) and not missing, missing
    tissue = pd.read_csv(run / "tissue" / "predict" / "predictions.tsv", sep="\t")
    probs = tissue.filter(like="p_")
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert (probs.idxmax(axis=1).str[2:] == tissue["call"]).all()
    assert tissue.groupby("model")["sample"].nunique().nunique() == 1  # every sample once per model
    for name in ("model_proportions.csv", "weighted_nnls_proportions.csv"):
        deconv = pd.read_csv(run / "deconv" / "predict" / name, index_col=0)
        infer = pd.read_csv(run / "deconv" / "infer" / "phase3_sparse" / name, index_col=0)
        pd.testing.assert_frame_equal(deconv, infer.loc[deconv.index, deconv.columns], atol=1e-6)
    with (
        h5py.File(run / "binning" / "predict" / "latent.h5") as new,
        h5py.File(run / "binning" / "model" / "latent.h5") as old,
    ):
        assert list(new["names"][:]) == list(old["names"][:])
        np.testing.assert_allclose(new["latent"][:], old["latent"][:], atol=1e-5)
    tracks = json.loads((run / "regulon" / "predict" / "tracks.json").read_text())
    assert tracks["contig"] == "piece" and 5000 < tracks["end"] <= 6000 and len(tracks["files"]) >= 6
    # The saved pair readout scores the piece's adjacent same-strand genes.
    pairs = pd.read_csv(run / "regulon" / "predict" / "operon_pairs.tsv", sep="\t")
    assert tracks["operon_pairs_scored"] >= 1 and pairs["p_operon"].dropna().between(0, 1).all()
    assoc = pd.read_csv(run / "assoc" / "predict" / "predictions.tsv", sep="\t")
    assert assoc.groupby("query")["rank"].max().max() <= 10 and assoc["score"].notna().all()


def tissue_only_config(workdir: Path, name: str, folds: int, **tissue) -> str:
    """The test config's tissue block alone (other modules off), with ``folds`` folds and the
    ``tissue`` keys given replaced."""
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    for module in (*MODULES, "ingest"):
        if module != "tissue" and module in config:
            config[module]["enabled"] = False
    config["tissue"]["evaluation"] = {"folds": folds}
    config["tissue"].update(tissue)
    config["run"] = "folds"
    (workdir / name).write_text(yaml.safe_dump(config))
    return name


def test_dry_run_with_folds_plans_a_training_job_per_fold(workdir):
    jobs = {}
    for k in (1, 3):
        res = snakemake(
            workdir, "-n", "--cores", "2", "--configfile", tissue_only_config(workdir, f"k{k}.yaml", k)
        )
        assert res.returncode == 0, res.stdout + res.stderr
        jobs[k] = job_counts(res.stdout)
    for rule in ("tissue_train", "tissue_ensemble", "tissue_baselines"):
        assert jobs[3][rule] == 3 * jobs[1][rule], (rule, jobs)
    # Data, splits, diagnostics and the summary run once whatever the folds.
    for rule in ("tissue_features", "tissue_splits", "tissue_diagnostic", "tissue_summary"):
        assert jobs[3][rule] == jobs[1][rule], (rule, jobs)


def test_tissue_predict_with_folds_averages_the_model_of_every_fold(workdir):
    """With K folds tissue_predict took fold 0's model alone (trained on part of the labelled
    samples) and said nothing: its input is now the first tissue.models entry of every fold,
    whose probabilities the step averages; one split keeps the run's one model, and a list in
    tissue.predict.model is taken as given."""
    features = "results/folds/tissue/features/region_means.h5"  # made by the run: no file needed
    target = "results/folds/tissue/predict/predictions.json"

    def predict_input(k: int, **predict) -> list[str]:
        config = tissue_only_config(
            workdir,
            f"predict_k{k}.yaml",
            k,
            models=["masked", "mlp"],
            predict={"inputs": features, **predict},
        )
        res = snakemake(workdir, target, "-n", "--cores", "1", "--configfile", config)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        job = re.search(r"^rule tissue_predict:\n\s+input: (.+)$", res.stdout, flags=re.M)
        assert job, res.stdout[-3000:]
        return job.group(1).split(", ")

    run = "results/folds/tissue"
    assert predict_input(2) == [f"{run}/folds/{k}/train/masked/model.pt" for k in (0, 1)] + [features]
    assert predict_input(1) == [f"{run}/train/masked/model.pt", features]
    given = [f"{run}/folds/1/train/mlp/model.pt", f"{run}/folds/0/train/mlp/model.pt"]
    assert predict_input(2, model=given) == [*given, features]


def test_regulon_predict_with_folds_reads_every_fold_s_network(workdir):
    """regulon_predict with K > 1 folds reads every fold's best.pt (their tracks and pair
    calls are averaged, docs/regulon.md); with one split the run's one network."""
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    for module in (*MODULES, "ingest"):
        if module != "regulon" and module in config:
            config[module]["enabled"] = False
    config["run"] = "regpredict"
    config["regulon"]["predict"] = {
        "inputs": config["regulon"]["genome"],
        "annotation": "results/regpredict/regulon/data/genes.tsv",
    }
    target = "results/regpredict/regulon/predict/tracks.json"
    inputs = {}
    for k in (1, 2):
        config["regulon"]["evaluation"] = {"folds": k}
        (workdir / f"regpredict_k{k}.yaml").write_text(yaml.safe_dump(config))
        res = snakemake(workdir, target, "-n", "--cores", "1", "--configfile", f"regpredict_k{k}.yaml")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        job = re.search(r"^rule regulon_predict:\n\s+input: (.+)$", res.stdout, flags=re.M)
        assert job, res.stdout[-3000:]
        inputs[k] = [f for f in job.group(1).split(", ") if f.endswith("best.pt")]
    assert inputs == {
        1: ["results/regpredict/regulon/model/best.pt"],
        2: [f"results/regpredict/regulon/folds/{k}/model/best.pt" for k in (0, 1)],
    }


def regulon_only_config(workdir: Path, name: str, heldout: dict | None) -> str:
    """The test config's regulon block alone (other modules off), with ``heldout`` blocks."""
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    for module in (*MODULES, "ingest"):
        if module != "regulon" and module in config:
            config[module]["enabled"] = False
    if heldout is not None:
        config["regulon"]["targets"]["heldout"] = heldout
    # A run of its own: the shared workdir may hold finished_run's results for run "test".
    config["run"] = "blocks_" + Path(name).stem
    (workdir / name).write_text(yaml.safe_dump(config))
    return name


def test_dry_run_with_given_heldout_blocks_plans_the_same_jobs(workdir):
    """Held-out blocks given by a file (an input of regulon_targets) or by index plan the same
    jobs as the random draw."""
    (workdir / "heldout.bed").write_text("chr\t0\t20480\tval\nchr\t81920\t102400\ttest\n")
    jobs, outputs = {}, {}
    for name, heldout in (
        ("drawn", None),
        ("file", {"file": "heldout.bed"}),
        ("indices", {"blocks": {"val": [0], "test": [4, 7]}}),
    ):
        res = snakemake(
            workdir,
            "-n",
            "--cores",
            "2",
            "--configfile",
            regulon_only_config(workdir, f"r_{name}.yaml", heldout),
        )
        assert res.returncode == 0, res.stdout + res.stderr
        jobs[name], outputs[name] = job_counts(res.stdout), res.stdout
    assert jobs["file"] == jobs["drawn"] == jobs["indices"], jobs
    assert jobs["drawn"]["regulon_targets"] == 1
    assert "heldout.bed" in outputs["file"] and "heldout.bed" not in outputs["drawn"]
    assert "data/blocks.tsv" in outputs["drawn"]


# The one-split tissue run of a single MLP that the two tests below change: made once, through
# its summary (the member model the first test targets is one of its inputs).
MLP_SUMMARY = "results/folds/tissue/summary.json"


@pytest.fixture(scope="module")
def mlp_run_once(tmp_path_factory) -> tuple[Path, str]:
    """A copy of the repository with :data:`MLP_SUMMARY` made by a one-split tissue run of a
    single MLP (2 epochs): (repository, config file). Tests change copies of it
    (:func:`finished_mlp_run`), never it."""
    repo = copy_repo(tmp_path_factory.mktemp("mlp") / "repo")
    train = {"max_epochs": 2, "batch_size": 8, "lr": 0.005, "weight_decay": 0.05, "patience": 10}
    config = tissue_only_config(repo, "one.yaml", 1, models=["mlp"], ensemble=1, train=train)
    res = snakemake(repo, MLP_SUMMARY, "--cores", "2", "--configfile", config)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return repo, config


@pytest.fixture
def finished_mlp_run(mlp_run_once, tmp_path) -> tuple[Path, str]:
    """A copy of :func:`mlp_run_once`'s finished run (times kept, so Snakemake sees it
    finished there too): (repository, config file) for dry and real runs of changes to it."""
    repo, config = mlp_run_once
    return copy_run(repo, tmp_path / "repo"), config


@pytest.mark.slow
def test_a_cadence_setting_does_not_retrain_a_finished_model_and_a_rerun_gate_does(finished_mlp_run):
    """train.log_every_steps and train.checkpoint_every_* change no result: they retrain
    nothing. A training setting retrains, also when a diagnostics setting changed with it:
    with the gate an ancient() input of the training rules, Snakemake 9 planned only the
    checks and the gate then (it skips a job's own rerun reasons when an ancient() input of
    it is rerun) and ended with exit status 0 and the old model. So a rerun gate (a changed
    diagnostics setting) reruns the training after it (the model's own gate, tissue_gate)."""
    target = "results/folds/tissue/train/mlp/members/0/model.pt"
    repo, config = finished_mlp_run

    def planned(override: dict) -> dict[str, int]:
        return dry_run(repo, target, config, override)[0]

    assert planned({}) == {}
    both = planned({"diagnostics": {"strict": False}, "tissue": {"train": {"lr": 0.002}}})
    assert both.get("tissue_gate") == 1 and both.get("tissue_train") == 1, both
    strict = planned({"diagnostics": {"strict": False}})
    assert strict.get("tissue_gate") == 1 and strict.get("tissue_train") == 1, strict
    checks = planned({"tissue": {"diagnostics": {"overfit_steps": 30}}})
    assert checks.get("tissue_diagnostic_overfit") == 1 and checks.get("tissue_train") == 1, checks
    # How often a run saves and logs is no setting of what it learns.
    assert planned({"tissue": {"train": {"log_every_steps": 5, "checkpoint_every_epochs": 2}}}) == {}
    assert planned({"tissue": {"train": {"lr": 0.002}}}).get("tissue_train") == 1


@pytest.mark.slow
def test_adding_or_removing_a_tissue_model_trains_that_model_only(finished_mlp_run):
    """Each tissue model trains after its own gate (the module-level checks and that model's
    overfit check). With one gate for the module, and tissue.models a param of every check,
    adding a model to a finished run reran every check, the gate and every member of every
    other model (6 tissue_train jobs on the demo for attention and MLP, unchanged)."""
    target = MLP_SUMMARY
    repo, config = finished_mlp_run
    diagnostics = repo / "results" / "folds" / "tissue" / "diagnostics"
    overfit = json.loads((diagnostics / "overfit_mlp.json").read_text())["results"]
    assert [r["name"] for r in overfit] == ["overfit 10 samples: file-level MLP"], overfit
    # The model's gate counts the five module-level checks' results and its overfit check; the
    # module's gate.json (every check, made with the summary) counts the same here.
    checks = ("labels", "leakage", "variance", "subtypes", "learnability", "overfit_mlp")
    n_results = sum(len(json.loads((diagnostics / f"{c}.json").read_text())["results"]) for c in checks)
    for name in ("gate_mlp.json", "gate.json"):
        gate = json.loads((diagnostics / name).read_text())
        assert gate["opened"] and sum(gate["counts"].values()) == n_results, (name, gate)
    assert not (diagnostics / "overfit.json").exists()
    learnability = json.loads((diagnostics / "learnability.json").read_text())["results"][0]
    assert learnability["details"]["region_level_models"] == []

    def planned(override: dict) -> tuple[dict[str, int], list[tuple[str, str]]]:
        return dry_run(repo, target, config, override)

    counts, jobs = planned({"tissue": {"models": ["mlp", "masked"]}})
    # The new model's check, gate, member and ensemble; the module's gate and the summary.
    assert [w for r, w in jobs if r == "tissue_train"] == ["tissue_model=masked, tissue_member=0"], jobs
    assert [w for r, w in jobs if r in ("tissue_diagnostic_overfit", "tissue_gate")] == [
        "tissue_kind=masked"
    ] * 2
    assert not {"tissue_diagnostic", "tissue_diagnostic_plot"} & set(counts), counts
    assert counts.get("gate") == counts.get("tissue_summary") == 1, counts
    counts, jobs = planned({"tissue": {"models": ["mlp", "reads"]}})
    assert counts.get("tissue_reads") == 1 and "tissue_train" not in counts, counts
    # Train the added model, then remove it again: nothing trains, the summary reruns.
    extra = repo / "with_masked.yaml"
    extra.write_text(yaml.safe_dump({"tissue": {"models": ["mlp", "masked"]}}))
    res = snakemake(repo, target, "--cores", "2", "--configfile", config, str(extra))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (diagnostics / "gate_masked.json").exists() and (diagnostics / "overfit_masked.json").exists()
    counts, _ = planned({})
    assert "tissue_train" not in counts and counts.get("tissue_summary") == 1, counts
    assert not {
        "tissue_diagnostic",
        "tissue_diagnostic_plot",
        "tissue_diagnostic_overfit",
        "tissue_gate",
    } & set(counts), counts
    # A model's own settings rerun its own check, gate and training, not another model's.
    counts, jobs = planned({"tissue": {"models": ["mlp", "masked"], "masked": {"z_clip": 2.0}}})
    assert [w for r, w in jobs if r == "tissue_train"] == ["tissue_model=masked, tissue_member=0"], jobs
    assert [w for r, w in jobs if r == "tissue_gate"] == ["tissue_kind=masked"], jobs
