"""K-fold cross-validation of the assoc module's links scheme (``assoc.evaluation.folds``):
folds that partition the links, given fold columns checked, one training job per fold in
the plan, and the summary's mean +- SD over folds with paired tests across folds."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from genomelab.assoc import data as D
from genomelab.assoc import summary as Su
from genomelab.diagnostics import DiagnosticResult, write_results
from genomelab.io.errors import FormatError
from scipy.stats import ttest_rel
from test_assoc_splits import tables

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def pair_of(out: Path) -> np.ndarray:
    links = pd.read_csv(out / "links.tsv", sep="\t")
    return (links["source"] + ">" + links["target"]).to_numpy()


# ------------------------------------------------------------------ folds of the data
def test_folds_partition_the_links_and_each_fold_validates_on_its_training_part(tmp_path):
    sources, targets, links = tables(tmp_path)
    links.to_csv(tmp_path / "links.tsv", sep="\t", index=False)
    k = 4
    counts = D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "a", seed=3, folds=k)
    out = tmp_path / "a"
    folds = pd.read_csv(out / "link_folds.tsv", sep="\t")
    # One row per pair, every pair once, folds 0..k-1 of near-equal size.
    assert len(folds) == len(links) // 2 and not folds.duplicated(["source", "target"]).any()
    assert sorted(folds["fold"].unique()) == list(range(k))
    sizes = folds["fold"].value_counts()
    assert sizes.max() - sizes.min() <= 1 and counts["folds"] == k
    fold_of = dict(zip(folds["source"] + ">" + folds["target"], folds["fold"], strict=True))
    pairs = pair_of(out)
    tested = np.zeros(len(pairs), int)
    for f in range(k):
        split = npz(out / "folds" / str(f) / "splits.npz")["links_links"]
        want_test = np.asarray([fold_of[p] == f for p in pairs])
        # The fold's test links are exactly its pairs (both directions); validation and
        # training come from the other folds and share no pair.
        assert ((split == "test") == want_test).all()
        assert (split[~want_test] != "test").all() and (split == "val").any()
        val_pairs = set(pairs[split == "val"])
        assert not val_pairs & set(pairs[split == "train"])
        tested += split == "test"
    assert (tested == 1).all(), "every link is tested in exactly one fold"
    # The data folder's own split (what the diagnostics read) is fold 0's; the entities
    # scheme keeps its one split in every fold.
    main = npz(out / "splits.npz")
    f0 = npz(out / "folds" / "0" / "splits.npz")
    assert (main["links_links"] == f0["links_links"]).all()
    assert all(
        (npz(out / "folds" / str(f) / "splits.npz")["links_entities"] == main["links_entities"]).all()
        for f in range(k)
    )
    # Deterministic from the seed, and another seed deals other folds.
    D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "b", seed=3, folds=k)
    D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "c", seed=4, folds=k)
    assert (tmp_path / "b" / "link_folds.tsv").read_text() == (out / "link_folds.tsv").read_text()
    assert (tmp_path / "c" / "link_folds.tsv").read_text() != (out / "link_folds.tsv").read_text()


def given_folds(links: pd.DataFrame) -> pd.DataFrame:
    """Folds by the target's number modulo 3: a deal no seeded draw would make."""
    return links.assign(fold=links["target"].str[1:].astype(int) % 3)


def test_a_given_fold_column_is_honoured_and_round_trips_as_a_splits_file(tmp_path):
    sources, targets, links = tables(tmp_path)
    given_folds(links).to_csv(tmp_path / "links.tsv", sep="\t", index=False)
    D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "a", seed=0, folds=3)
    written = pd.read_csv(tmp_path / "a" / "link_folds.tsv", sep="\t")
    assert (written["fold"] == written["target"].str[1:].astype(int) % 3).all()
    # The written folds, given back as a splits file, give the same splits.
    links.to_csv(tmp_path / "plain.tsv", sep="\t", index=False)
    D.prepare_data(
        tmp_path / "plain.tsv",
        sources,
        targets,
        tmp_path / "b",
        seed=9,
        folds=3,
        splits_path=tmp_path / "a" / "link_folds.tsv",
    )
    for f in range(3):
        a, b = (npz(tmp_path / x / "folds" / str(f) / "splits.npz") for x in ("a", "b"))
        assert ((a["links_links"] == "test") == (b["links_links"] == "test")).all()


def test_bad_given_folds_are_refused_naming_file_link_and_line(tmp_path):
    sources, targets, links = tables(tmp_path)
    folded = given_folds(links)
    path = tmp_path / "links.tsv"

    def prepare(frame: pd.DataFrame, folds: int):
        frame.to_csv(path, sep="\t", index=False)
        D.prepare_data(path, sources, targets, tmp_path / "out", seed=0, folds=folds)

    # The two directions of S0 -> T4 (lines 10 and 11) in different folds.
    bad = folded.copy()
    bad.loc[9, "fold"] = 0
    with pytest.raises(ValueError, match=r"links.tsv: group 'S0 -> T4' straddles folds") as err:
        prepare(bad, 3)
    assert "line 10" in str(err.value) and "line 11" in str(err.value)
    bad = folded.astype({"fold": str})
    bad.loc[4, "fold"] = "two"
    with pytest.raises(FormatError, match=r"links.tsv, line 6: link S0 -> T2: fold 'two' is not an integer"):
        prepare(bad, 3)
    with pytest.raises(ValueError, match=r"links.tsv gives 3 folds but assoc.evaluation.folds is 5"):
        prepare(folded, 5)
    with pytest.raises(ValueError, match=r"links.tsv gives 3 folds but assoc.evaluation.folds is 1"):
        prepare(folded, 1)
    split = links.assign(
        split=np.where(links["target"] == "T0", "test", np.where(links["target"] == "T1", "val", "train"))
    )
    with pytest.raises(
        ValueError, match=r"links.tsv gives one train/val/test split but assoc.evaluation.folds is 3"
    ):
        prepare(split, 3)
    with pytest.raises(FormatError, match="both a 'split' and a 'fold' column"):
        prepare(split.assign(fold=0), 3)
    # A fold number skipped.
    with pytest.raises(ValueError, match=r"folds \[1\] have no example"):
        prepare(folded.assign(fold=folded["fold"].replace({1: 3})), 4)


def snakemake_on_config(folder: Path, *options: str) -> subprocess.CompletedProcess:
    """The workflow run (``options``: ``-n`` for a dry run) on ``folder``/c.yaml, in ``folder``."""
    command = [SNAKEMAKE, *options, "--cores", "1", "-s", str(ROOT / "Snakefile"), "-d", str(folder)]
    return subprocess.run(
        [*command, "--configfile", "c.yaml"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, PYTHONWARNINGS="ignore"),
    )


def test_given_folds_that_disagree_with_evaluation_folds_are_refused_at_parse_time(tmp_path):
    """check_input (run when Snakemake reads the config) refuses what assoc_data refused a
    job into the run, with assoc_data's message: folds given with folds: 1, a split given with
    K folds, another number of folds; from the links table's column or a splits file."""
    sources, targets, links = tables(tmp_path)
    path, splits = tmp_path / "links.tsv", tmp_path / "splits.tsv"
    given_folds(links).to_csv(path, sep="\t", index=False)
    split = links.assign(
        split=np.where(links["target"] == "T0", "test", np.where(links["target"] == "T1", "val", "train"))
    )
    for frame, folds in ((given_folds(links), 1), (given_folds(links), 5), (split, 3)):
        frame.to_csv(path, sep="\t", index=False)
        with pytest.raises(ValueError) as at_parse:
            D.check_input({"links": str(path), "splits": ""}, folds)
        with pytest.raises(ValueError) as in_job:
            D.prepare_data(path, sources, targets, tmp_path / "out", seed=0, folds=folds)
        assert str(at_parse.value) == str(in_job.value)
    assert str(at_parse.value).startswith(f"{path} gives one train/val/test split")
    # Agreeing settings pass; so do a table without either column and one assoc_data refuses
    # for its values (named by line there).
    given_folds(links).to_csv(path, sep="\t", index=False)
    D.check_input({"links": str(path), "splits": ""}, 3)
    links.to_csv(path, sep="\t", index=False)
    for folds in (1, 4):
        D.check_input({"links": str(path), "splits": ""}, folds)
    given_folds(links).astype({"fold": str}).replace({"fold": {"1": "one"}}).to_csv(
        path, sep="\t", index=False
    )
    D.check_input({"links": str(path), "splits": ""}, 1)
    D.check_input({"links": str(tmp_path / "absent.tsv"), "splits": ""}, 1)
    # A splits file of folds with one split: named, not the links table.
    given_folds(links)[["source", "target", "fold"]].drop_duplicates(["source", "target"]).to_csv(
        splits, sep="\t", index=False
    )
    links.to_csv(path, sep="\t", index=False)
    with pytest.raises(
        ValueError, match=rf"^{re.escape(str(splits))} gives 3 folds but assoc.evaluation.folds is 1"
    ):
        D.check_input({"links": str(path), "splits": str(splits)}, 1)
    D.check_input({"links": str(path), "splits": str(splits)}, 3)


def test_a_fold_column_with_one_split_stops_snakemake_before_any_job(tmp_path):
    """folds: 1 (the default) with a fold column in the links table: Snakemake stops when it
    reads the config, with assoc_data's message; it stopped inside that job."""
    (tmp_path / "data").mkdir()
    links = tables(tmp_path / "data")[2]
    given_folds(links).to_csv(tmp_path / "data" / "links.tsv", sep="\t", index=False)
    data = {"links": "data/links.tsv", "sources": "data/sources.tsv", "targets": "data/targets.tsv"}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"run": "one", "assoc": {"enabled": True, "data": data}}))
    before = sorted(tmp_path.rglob("*"))
    res = snakemake_on_config(tmp_path)
    assert res.returncode != 0
    message = "data/links.tsv gives 3 folds but assoc.evaluation.folds is 1; set evaluation: {folds: 3}"
    assert message in res.stdout + res.stderr, res.stderr[-2000:]
    assert [p for p in sorted(tmp_path.rglob("*")) if ".snakemake" not in p.parts] == before, "a job ran"


# ------------------------------------------------------------------ the plan
def planned_jobs(tmp_path: Path, folds: int) -> tuple[list[tuple[str, str]], str]:
    """Dry run of a config made here (links scheme only): [(rule, output)] and stdout."""
    if not (tmp_path / "data").exists():
        (tmp_path / "data").mkdir()
        links = tables(tmp_path / "data")[2]
        links.to_csv(tmp_path / "data" / "links.tsv", sep="\t", index=False)
    config = {
        "run": "folds",
        "assoc": {
            "enabled": True,
            "data": {"links": "data/links.tsv", "sources": "data/sources.tsv", "targets": "data/targets.tsv"},
            "evaluation": {"folds": folds},
            "schemes": ["links"],
            "infer": {"scheme": "links"},
        },
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    res = snakemake_on_config(tmp_path, "-n")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(?:\s+.*\n)*?\s+output: (.+)$", res.stdout, flags=re.M)
    return jobs, res.stdout


def test_a_dry_run_with_k_folds_plans_one_training_job_per_fold(tmp_path):
    k = 3
    jobs, stdout = planned_jobs(tmp_path, k)
    trains = sorted(out for rule, out in jobs if rule == "assoc_train")
    assert len(trains) == k
    for f, out in enumerate(trains):
        assert out.startswith(f"results/folds/assoc/folds/{f}/links/runs/"), out
    counts = {rule: sum(r == rule for r, _ in jobs) for rule in {r for r, _ in jobs}}
    assert counts["assoc_baselines"] == k and counts["assoc_select"] == k and counts["assoc_data"] == 1
    data = next(out for rule, out in jobs if rule == "assoc_data")
    assert "results/folds/assoc/data/link_folds.tsv" in data
    assert all(f"results/folds/assoc/data/folds/{f}/splits.npz" in data for f in range(k))
    # infer ranks with every fold's model of the links scheme (it read fold 0's alone), and
    # writes predictions.json to list them.
    infer = re.search(r"^(?:local)?rule assoc_infer:\n((?:\s+.*\n)*?)\s+output: (.+)$", stdout, flags=re.M)
    assert infer, stdout[-3000:]
    inputs = re.search(r"^\s+input: (.+)$", infer.group(1), flags=re.M).group(1).split(", ")
    assert [i for i in inputs if i.endswith("best_model.pt")] == [
        f"results/folds/assoc/folds/{f}/links/best_model.pt" for f in range(k)
    ]
    assert "results/folds/assoc/inference/predictions.json" in infer.group(2)
    # One split (folds: 1) plans the paths it always had: no fold folder anywhere.
    jobs, stdout = planned_jobs(tmp_path, 1)
    assert [out for rule, out in jobs if rule == "assoc_train"][0].startswith(
        "results/folds/assoc/links/runs/"
    )
    outputs = " ".join(out for _, out in jobs)
    # One model: assoc_infer reads the links scheme's and writes its TSV alone, as before.
    assert "results/folds/assoc/links/best_model.pt" in stdout and "predictions.json" not in outputs
    assert (
        "assoc/folds/" not in outputs
        and "link_folds" not in outputs
        and "logs/folds/assoc/folds" not in stdout
    )


def test_links_scheme_alone_without_infer_scheme_says_what_to_set(tmp_path):
    """schemes: [links] leaves infer.scheme at its default, entities: the stop names the fix."""
    (tmp_path / "data").mkdir()
    tables(tmp_path / "data")[2].to_csv(tmp_path / "data" / "links.tsv", sep="\t", index=False)
    data = {"links": "data/links.tsv", "sources": "data/sources.tsv", "targets": "data/targets.tsv"}
    config = {"run": "one", "assoc": {"enabled": True, "data": data, "schemes": ["links"]}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    res = snakemake_on_config(tmp_path, "-n")
    assert res.returncode != 0
    assert "set assoc.infer.scheme to one of ['links']" in res.stdout + res.stderr, res.stderr[-2000:]


# ------------------------------------------------------------------ the summary
def link_record(ranks: list[float], first_row: int) -> dict:
    """Per-link ranks of both directions (the same ranks), link rows from ``first_row``."""
    rows = list(range(first_row, first_row + len(ranks)))
    return {d: {"query": [0], "rank": [1.0], "link_row": rows, "link_rank": ranks} for d in ("s2t", "t2s")}


def link_metrics(ranks: list[float]) -> dict[str, float]:
    r = np.asarray(ranks)
    out = {"mrr_mean": 1.0}
    for d in ("s2t", "t2s"):
        out.update(
            {
                f"{d}_link_mrr": float((1 / r).mean()),
                f"{d}_link_hits@1": float((r <= 1).mean()),
                f"{d}_link_hits@3": float((r <= 3).mean()),
                f"{d}_link_hits@10": float((r <= 10).mean()),
            }
        )
    return out


def fold_files(
    tmp_path: Path, net: list[list[float]], base: list[list[float]]
) -> tuple[list[Path], list[Path]]:
    """A grid selection and a baselines file per fold: the network's and ridge's link ranks."""
    grids, bases = [], []
    for f, (n, b) in enumerate(zip(net, base, strict=True)):
        first = 100 * f
        grid = {
            "metric": "val/link_mrr_mean",
            "best_run": "run1",
            "best": {"test": {f"test/{k}": v for k, v in link_metrics(n).items()}},
            "runs": [{"run": "run1", "value": 0.3}],
            "test_ranks": link_record(n, first),
        }
        baseline = {"ridge": {"test": link_metrics(b), "test_ranks": link_record(b, first)}}
        grids.append(tmp_path / f"grid{f}.json")
        bases.append(tmp_path / f"base{f}.json")
        grids[-1].write_text(json.dumps(grid))
        bases[-1].write_text(json.dumps(baseline))
    return grids, bases


def fold_summary(tmp_path: Path, net, base):
    grids, bases = fold_files(tmp_path, net, base)
    write_results(tmp_path / "diag.json", "assoc", [DiagnosticResult("x", "pass", "ok")])
    return Su.write_summary(
        {"links": grids},
        {"links": bases},
        tmp_path / "diag.json",
        tmp_path / "s.json",
        tmp_path / "s.md",
        tmp_path / "p.png",
    )


def test_the_fold_summary_reports_mean_sd_and_a_paired_test_across_folds(tmp_path):
    # Five folds; the network ranks most links first, ridge second: a clear win each fold.
    net = [
        [1.0] * 8 + [2.0, 4.0],
        [1.0] * 7 + [3.0] * 3,
        [1.0] * 9 + [2.0],
        [1.0] * 6 + [2.0] * 4,
        [1.0] * 8 + [5.0] * 2,
    ]
    base = [[2.0] * 10, [2.0] * 9 + [1.0], [3.0] * 10, [2.0] * 10, [2.0] * 8 + [1.0] * 2]
    summary = fold_summary(tmp_path, net, base)
    comp = summary.comparisons[0]
    assert comp.title.startswith("Per-link ranking source->target") and comp.folds == 5
    mrr_net = [float(np.mean(1 / np.asarray(r))) for r in net]
    mrr_base = [float(np.mean(1 / np.asarray(r))) for r in base]
    row = comp.rows["network (run1)"]
    assert row["s2t_link_mrr"] == pytest.approx(np.mean(mrr_net))
    assert comp.spread["network (run1)"]["s2t_link_mrr"] == pytest.approx(np.std(mrr_net, ddof=1))
    assert comp.rows["ridge"]["s2t_link_hits@10"] == pytest.approx(1.0)
    test = comp.tests["network (run1) vs ridge"]
    assert test["test"] == "paired t-test across folds" and test["n"] == 5
    assert test["p_value"] == pytest.approx(ttest_rel(mrr_net, mrr_base).pvalue)
    assert test["p_value"] < 0.05 and "beats ridge" in comp.verdict()
    # Within-fold tests over each fold's links, the pooled one, Wilcoxon across folds.
    d = test["details"]
    assert len(d["within_folds"]) == 5 and all(w["n"] == 10 for w in d["within_folds"])
    assert d["pooled_folds"]["n"] == 50 and d["pooled_folds"]["favours"] == "model"
    assert d["wilcoxon_across_folds"]["p_value"] == pytest.approx(0.0625)  # 2 / 2^5: K = 5 cannot do better
    saved = json.loads((tmp_path / "s.json").read_text())
    assert saved["comparisons"][0]["folds"] == 5 and "spread" in saved["comparisons"][0]
    md = (tmp_path / "s.md").read_text()
    assert "Mean ± SD over 5 folds" in md and "Wilcoxon over each fold's test links" in md


def test_a_fold_summary_ties_when_folds_disagree(tmp_path):
    # The network ahead in two folds, behind in one: no verdict of a win.
    net = [[1.0] * 8 + [2.0, 3.0], [1.0] * 9 + [5.0], [4.0] * 8 + [1.0, 6.0]]
    base = [[2.0] * 9 + [1.0], [2.0] * 8 + [3.0, 1.0], [1.0] * 9 + [2.0]]
    comp = fold_summary(tmp_path, net, base).comparisons[0]
    test = comp.tests["network (run1) vs ridge"]
    assert test["p_value"] > 0.05 and "beats" not in comp.verdict()
    # Per fold, each within-fold test favours the side ahead in that fold.
    assert [w["favours"] for w in test["details"]["within_folds"]] == ["model", "model", "baseline"]
