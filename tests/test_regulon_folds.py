"""K-fold cross-validation of the regulon module over genome blocks (regulon.evaluation.folds):
fold assignment (spaced, drawn, given), per-fold targets, the dry-run plan and the summary
over folds (mean +- SD, paired tests across folds)."""

from __future__ import annotations

import csv
import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from genomelab.io.errors import FormatError
from genomelab.regulon import targets as rtargets
from genomelab.regulon.blocks import block_frame
from genomelab.regulon.folds import assign_folds, check_fold_config, fold_splits, spaced_folds, write_folds
from genomelab.regulon.summary import summarise_folds
from genomelab.report.summary import Comparison, ModuleSummary, read_module_summary, write_module_summary
from genomelab.splits import group_kfold
from scipy import stats
from shared_run import copy_run
from test_workflow import MODULES, job_counts, snakemake
from test_workflow import workdir as workdir  # noqa: F401  (the fixture: a copy of the repository)

SMALL_TARGETS = {"block_bp": 6144, "window_bp": 2048, "stride_bp": 1024}
N_BLOCKS = 10  # 61,440 bp in blocks of 6,144


def check_partition(folds: np.ndarray, k: int, n: int) -> None:
    """Every block in exactly one fold, every fold non-empty, sizes within one."""
    assert folds.shape == (n,) and set(folds.tolist()) == set(range(k))
    sizes = np.bincount(folds, minlength=k)
    assert sizes.sum() == n and sizes.max() - sizes.min() <= 1


# ------------------------------------------------------------------ fold assignment
@pytest.mark.parametrize("n, k", [(10, 2), (10, 3), (46, 5), (7, 3)])
def test_spaced_folds_put_block_i_in_fold_i_mod_k(n, k):
    folds = spaced_folds(n, k)
    check_partition(folds, k, n)
    assert folds.tolist() == [i % k for i in range(n)]


def test_drawn_folds_follow_the_seed_and_cover_every_block_once():
    blocks = block_frame(0, N_BLOCKS * 6144, 6144)
    a = assign_folds(blocks, 3, "random", seed=5)
    check_partition(a, 3, N_BLOCKS)
    assert a.tolist() == group_kfold(np.arange(N_BLOCKS), 3, 5).tolist()
    assert assign_folds(blocks, 3, "random", seed=5).tolist() == a.tolist()
    assert any(assign_folds(blocks, 3, "random", seed=s).tolist() != a.tolist() for s in range(6, 12))


@pytest.mark.parametrize("scheme", ["spaced", "random"])
@pytest.mark.parametrize("k", [2, 3, 5])
def test_each_fold_tests_its_own_blocks_and_the_folds_tests_are_disjoint(scheme, k):
    n = 23
    folds = spaced_folds(n, k) if scheme == "spaced" else group_kfold(np.arange(n), k, 2)
    tested = np.zeros(n, dtype=int)
    for fold in range(k):
        split = fold_splits(folds, fold, [0.7, 0.15, 0.15], scheme, seed=2)
        assert (np.flatnonzero(split == "test") == np.flatnonzero(folds == fold)).all()
        rest = np.flatnonzero(folds != fold)
        # Validation from the other folds in the proportion 0.15 / 0.85, at least one block.
        n_val = (split == "val").sum()
        assert n_val == max(1, round(0.15 / 0.85 * len(rest))) and (split[rest] != "test").all()
        assert (split == "train").sum() == len(rest) - n_val > 0
        tested += split == "test"
    assert (tested == 1).all()


def test_too_few_blocks_and_fixed_block_indices_are_refused():
    with pytest.raises(ValueError, match="needs at least 6 blocks.*has 5"):
        spaced_folds(5, 3)
    with pytest.raises(ValueError, match="at least 2 folds"):
        spaced_folds(10, 1)
    with pytest.raises(ValueError, match=r"heldout\.blocks fixes one split.*folds is 3"):
        check_fold_config({"blocks": {"val": [1], "test": [2]}}, 3)
    check_fold_config({"blocks": {"val": [1], "test": [2]}}, 1)  # one split: fine


def write_fold_file(path, rows, header=True):
    lines = (["chrom\tstart\tend\tfold"] if header else []) + ["\t".join(map(str, r)) for r in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_given_fold_file_is_honoured_and_checked(tmp_path):
    blocks = block_frame(0, N_BLOCKS * 6144, 6144)
    want = [0, 0, 1, 1, 2, 2, 0, 1, 2, 2]
    rows = [("chr", b * 6144, (b + 1) * 6144, f) for b, f in enumerate(want)]
    given = write_fold_file(tmp_path / "folds.tsv", rows)
    assert assign_folds(blocks, 3, given_file=given, contig="chr").tolist() == want
    # A BED with the fold as fourth column, one row over two blocks.
    bed = write_fold_file(tmp_path / "folds.bed", [("chr", 0, 12288, 0), *rows[2:]], header=False)
    assert assign_folds(blocks, 3, given_file=bed, contig="chr").tolist() == want
    # A block without a fold is named.
    short = write_fold_file(tmp_path / "short.tsv", rows[:7] + rows[8:])
    with pytest.raises(FormatError, match=r"short\.tsv.*block 7 \[43008, 49152\) .*no fold"):
        assign_folds(blocks, 3, given_file=short, contig="chr")
    bad = write_fold_file(tmp_path / "bad.tsv", [*rows[:3], ("chr", 18432, 24576, "x"), *rows[4:]])
    with pytest.raises(FormatError, match=r"bad\.tsv, line 5.*fold 'x'"):
        assign_folds(blocks, 3, given_file=bad, contig="chr")
    with pytest.raises(ValueError, match="numbers 3 folds but .*folds is 4"):
        assign_folds(blocks, 4, given_file=given, contig="chr")
    split_file = tmp_path / "split.tsv"
    split_file.write_text("chrom\tstart\tend\tsplit\nchr\t0\t6144\ttest\n")
    with pytest.raises(FormatError, match=r"split\.tsv.*lacks column\(s\) \['fold'\]"):
        assign_folds(blocks, 3, given_file=split_file, contig="chr")


@pytest.fixture(scope="module")
def targets(tmp_path_factory):
    """targets.h5 of a random 61,440-bp genome (10 blocks of 6,144 bp) with a gene every
    1.5 kb, alternating strands, every other pair in one operon."""
    root = tmp_path_factory.mktemp("regulon_folds")
    rng = np.random.default_rng(1)
    starts = np.arange(200, 60_000, 1500)
    genes = pd.DataFrame(
        {
            "start": starts,
            "end": starts + 900,
            "strand": np.where(np.arange(len(starts)) % 4 < 2, "+", "-"),
            "z": rng.normal(size=len(starts)),
        }
    )
    pairs = genes.iloc[::2].reset_index(drop=True)
    operons = pd.DataFrame(
        {"start": pairs["start"], "end": pairs["start"] + 2400, "strand": pairs["strand"], "n_genes": 2}
    )
    cfg = rtargets.TargetConfig(**SMALL_TARGETS, seed=3)
    codes = rng.integers(0, 4, size=61_440).astype(np.uint8)
    rtargets.build_targets(genes, operons, codes, "chr", cfg, root / "targets.h5")
    return root / "targets.h5"


def test_write_folds_gives_each_fold_its_own_targets(targets, tmp_path):
    k = 3
    outs = [tmp_path / f"folds/{f}/targets.h5" for f in range(k)]
    folds = write_folds(targets, k, tmp_path / "folds.tsv", outs, {"scheme": "spaced"}, seed=0)
    base = rtargets.TargetData(targets)
    with open(tmp_path / "folds.tsv", newline="") as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    assert [int(r["fold"]) for r in table] == folds.tolist() == [i % k for i in range(N_BLOCKS)]
    assert [int(r["start"]) for r in table] == base.blocks["start"].tolist()
    tested = []
    for fold, path in enumerate(outs):
        data = rtargets.TargetData(path)
        test = data.blocks.loc[data.blocks["split"] == "test", "block"].tolist()
        assert test == np.flatnonzero(folds == fold).tolist()
        tested += test
        # Windows follow the fold's split: none crosses into another split's block.
        split_of = dict(zip(data.blocks["block"], data.blocks["split"], strict=True))
        assert (data.windows["split"] == data.windows["block"].map(split_of)).all()
        assert set(data.windows["split"]) == {"train", "val", "test"}
        # The same genome and tracks; the recorded held-out blocks are the fold's.
        assert (data.sequence == base.sequence).all() and np.array_equal(data.operon, base.operon)
        assert data.config.heldout["blocks"]["test"] == test
    assert sorted(tested) == list(range(N_BLOCKS))
    # The folds table is itself a valid given fold file: the same folds again.
    again = write_folds(targets, k, tmp_path / "again.tsv", outs, {"file": str(tmp_path / "folds.tsv")})
    assert again.tolist() == folds.tolist()


# ------------------------------------------------------------------ the summary over folds
MODEL, KMER, GC = "CNN", "k-mer", "GC"


def fold_summary(path, operon: dict[str, float], expression: dict[str, float], per_block=None):
    """A fold's module summary; ``per_block``: (blocks, CNN, k-mer) per-block operon AUROC, as
    the fold's own paired test records them."""
    tests = {}
    if per_block is not None:
        blocks, model, baseline = per_block
        details = {"blocks": blocks, "model": model, "baseline": baseline}
        tests = {
            f"{MODEL} vs {KMER}": {
                "test": "Wilcoxon",
                "p_value": 0.5,
                "n": 2,
                "favours": "model",
                "details": details,
            }
        }
    comps = [
        Comparison(
            "Operon per bp",
            "test",
            "operon_bp_auroc",
            True,
            {m: {"operon_bp_auroc": v, "operon_bp_auprc": v / 2} for m, v in operon.items()},
            {MODEL: "model", KMER: "baseline", GC: "baseline"},
            tests,
        ),
        Comparison(
            "Expression",
            "test",
            "expression_pearson",
            True,
            {m: {"expression_pearson": v} for m, v in expression.items()},
            {MODEL: "model", KMER: "baseline"},
        ),
    ]
    write_module_summary(ModuleSummary("regulon", "regulon", comps, plots=["plots/tracks.png"]), path)
    return path


def test_summary_reports_mean_sd_and_a_paired_test_across_folds(tmp_path):
    # Per fold: the CNN ahead of both baselines on operons every time; on expression about level.
    operon = {
        MODEL: [0.81, 0.84, 0.79, 0.86, 0.83],
        KMER: [0.70, 0.75, 0.69, 0.74, 0.72],
        GC: [0.55, 0.60, 0.52, 0.58, 0.57],
    }
    expression = {MODEL: [0.50, 0.41, 0.47, 0.44, 0.52], KMER: [0.49, 0.45, 0.44, 0.47, 0.50]}
    # Each fold's two test blocks (f and f + 5), scored per block by its own paired test.
    rng = np.random.default_rng(0)
    block_cnn, block_kmer = rng.uniform(0.7, 0.9, 10), rng.uniform(0.6, 0.85, 10)
    paths = [
        fold_summary(
            tmp_path / f"f{f}.json",
            {m: v[f] for m, v in operon.items()},
            {m: v[f] for m, v in expression.items()},
            ([f, f + 5], block_cnn[[f, f + 5]].tolist(), block_kmer[[f, f + 5]].tolist()),
        )
        for f in range(5)
    ]
    folds_tsv = tmp_path / "folds.tsv"
    folds_tsv.write_text(
        "block\tchrom\tstart\tend\tfold\n" + "".join(f"{b}\tc\t0\t1\t{b % 5}\n" for b in range(10))
    )
    summarise_folds(paths, folds_tsv, tmp_path / "s.json", tmp_path / "s.md", tmp_path / "c.tsv")
    summary = read_module_summary(tmp_path / "s.json")
    op, ex = summary.comparisons
    assert op.folds == 5 and op.primary == "operon_bp_auroc"
    for name, values in operon.items():
        assert op.rows[name]["operon_bp_auroc"] == pytest.approx(np.mean(values))
        assert op.spread[name]["operon_bp_auroc"] == pytest.approx(np.std(values, ddof=1))
        assert op.rows[name]["operon_bp_auprc"] == pytest.approx(np.mean(values) / 2)
    for baseline in (KMER, GC):
        test = op.tests[f"{MODEL} vs {baseline}"]
        assert test["n"] == 5 and test["favours"] == "model"
        assert test["p_value"] == pytest.approx(stats.ttest_rel(operon[MODEL], operon[baseline]).pvalue)
        assert test["details"]["wilcoxon"]["p_value"] == pytest.approx(0.0625)  # 2 / 2^5: all five ahead
    # The pooled out-of-fold test over all ten blocks, where every fold tested the pair per block.
    pooled = op.tests[f"{MODEL} vs {KMER}"]["details"]["pooled_blocks"]
    order = [b for f in range(5) for b in (f, f + 5)]
    assert pooled["n"] == 10 and sorted(pooled["details"]["blocks"]) == list(range(10))
    assert pooled["p_value"] == pytest.approx(stats.wilcoxon(block_cnn[order] - block_kmer[order]).pvalue)
    assert "pooled_blocks" not in op.tests[f"{MODEL} vs {GC}"]["details"]
    ex_test = ex.tests[f"{MODEL} vs {KMER}"]
    assert ex_test["p_value"] == pytest.approx(stats.ttest_rel(expression[MODEL], expression[KMER]).pvalue)
    data = json.loads((tmp_path / "s.json").read_text())
    verdicts = [c["verdict"] for c in data["comparisons"]]
    assert " beats k-mer" in verdicts[0] and "5 folds" in verdicts[0]
    assert "ties with" in verdicts[1] and ex_test["p_value"] >= 0.05
    md = (tmp_path / "s.md").read_text()
    assert "±" in md and "splits of 5 folds" in md and "fold 0: [0, 5]" in md
    assert summary.plots == ["folds/0/plots/tracks.png"]
    with open(tmp_path / "c.tsv", newline="") as fh:
        table = list(csv.DictReader(fh, delimiter="\t"))
    cnn = [r for r in table if r["method"] == MODEL and r["metric"] == "operon_bp_auroc"]
    assert [r["fold"] for r in cnn] == ["0", "1", "2", "3", "4", "mean", "sd"]
    assert [float(r["value"]) for r in cnn[:5]] == operon[MODEL]


def test_a_fold_missing_a_comparison_is_named(tmp_path):
    good = fold_summary(tmp_path / "f0.json", {MODEL: 0.8, KMER: 0.7, GC: 0.6}, {MODEL: 0.5, KMER: 0.4})
    lacking = tmp_path / "f1.json"
    write_module_summary(ModuleSummary("regulon", "regulon", []), lacking)
    folds_tsv = tmp_path / "folds.tsv"
    folds_tsv.write_text("block\tchrom\tstart\tend\tfold\n0\tc\t0\t1\t0\n1\tc\t1\t2\t1\n")
    with pytest.raises(ValueError, match=r"f1\.json lacks the comparison 'Operon per bp'"):
        summarise_folds(
            [good, lacking], folds_tsv, tmp_path / "s.json", tmp_path / "s.md", tmp_path / "c.tsv"
        )


# ------------------------------------------------------------------ the workflow plan
def regulon_config(workdir, name: str, folds: int, heldout: dict | None = None) -> str:
    """The test config's regulon block alone (other modules off), with ``folds`` folds."""
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    for module in (*MODULES, "ingest"):
        if module != "regulon" and module in config:
            config[module]["enabled"] = False
    config["regulon"]["evaluation"] = {"folds": folds}
    if heldout is not None:
        config["regulon"]["targets"]["heldout"] = heldout
    config["run"] = "rfolds"
    (workdir / name).write_text(yaml.safe_dump(config))
    return name


def test_dry_run_plans_a_training_job_per_fold(workdir):  # noqa: F811
    # K = 1 plans one of each (config/test.yaml's dry run in test_workflow.py, unchanged).
    res = snakemake(workdir, "-n", "--cores", "2", "--configfile", regulon_config(workdir, "rk3.yaml", 3))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = job_counts(res.stdout)
    for rule in ("regulon_train", "regulon_baselines", "regulon_evaluate"):
        assert jobs[rule] == 3, (rule, jobs)
    for rule in ("regulon_process", "regulon_targets", "regulon_diagnostics", "gate", "regulon_folds"):
        assert jobs[rule] == 1, (rule, jobs)
    assert jobs["regulon_summary"] == 1
    trained = set(re.findall(r"results/rfolds/regulon/folds/(\d)/model/best\.pt", res.stdout))
    assert trained == {"0", "1", "2"}
    assert "results/rfolds/regulon/model/best.pt" not in res.stdout


def test_dry_run_with_folds_refuses_fixed_block_indices(workdir):  # noqa: F811
    config = regulon_config(workdir, "rbad.yaml", 3, {"blocks": {"val": [1], "test": [2]}})
    res = snakemake(workdir, "-n", "--cores", "1", "--configfile", config)
    assert res.returncode != 0
    assert "heldout.blocks fixes one split" in res.stdout + res.stderr


@pytest.mark.slow
def test_switching_a_finished_run_between_one_split_and_folds_reruns_it(test_config_run, tmp_path):
    """summary.json is regulon_evaluate's with one split and regulon_summary's with folds:
    after a finished run, changing evaluation.folds must plan the other mode's jobs, not
    keep (and report) the old summary."""
    # The session's finished run of config/test.yaml (one split for regulon, tests/shared_run.py)
    # is such a run: a regulon run of this test's own repeated its one-split jobs (~30 s).
    run = copy_run(test_config_run, tmp_path / "run")
    one = ("--configfile", "config/test.yaml")
    res = snakemake(run, "-n", "--cores", "1", *one)
    assert res.returncode == 0 and not job_counts(res.stdout), res.stdout[-3000:] + res.stderr[-3000:]
    (run / "rswitch3.yaml").write_text(yaml.safe_dump({"regulon": {"evaluation": {"folds": 3}}}))
    res = snakemake(run, "-n", "--cores", "1", *one, "rswitch3.yaml")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    jobs = job_counts(res.stdout)
    assert jobs.get("regulon_summary") == 1 and jobs.get("regulon_train") == 3, jobs
