"""Given splits and K folds (genomelab.splits), paired tests (genomelab.report.stats) and honest
verdicts; the tissue module's given split, sheet column and folds on small simulated data."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from genomelab.io.errors import FormatError
from genomelab.io.tables import read_given_assignment, read_split_table
from genomelab.report import Comparison, ModuleSummary, read_module_summary, write_module_summary
from genomelab.report.stats import exact_mcnemar, holm, mcnemar_predictions, paired_t, wilcoxon_signed_rank
from genomelab.report.summary import pair_key
from genomelab.splits import GivenAssignment, fold_split, group_kfold
from genomelab.tissue.features import extract_features_from_sheet
from genomelab.tissue.simulate import SimulationConfig, simulate_dataset
from genomelab.tissue.task import TaskConfig, given_assignment, make_splits, write_evaluation_splits


# ------------------------------------------------------------------------- data
@pytest.fixture(scope="module")
def tissue(tmp_path_factory):
    """Four tissues, 6 source samples each, some with an augmented copy: sheet and features."""
    root = tmp_path_factory.mktemp("folds")
    cfg = SimulationConfig(
        tissues=["Blood", "Liver", "Colon", "Brain"],
        n_subtypes=2,
        samples_per_subtype=3,
        n_regions=40,
        augment_fraction=0.25,
        n_augmented_copies=1,
        seed=3,
    )
    sheet = simulate_dataset(cfg, root / "sim")
    h5 = root / "features.h5"
    extract_features_from_sheet(sheet, h5, n_positions=cfg.n_positions)
    with open(sheet, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    assert any(r["source_sample"] != r["sample"] for r in rows), "the test needs augmented copies"
    return {"root": root, "sheet": sheet, "h5": h5, "rows": rows}


def write_sheet(path, rows, extra: dict[str, str], column: str = "split"):
    """The simulated sheet (files made absolute) plus a ``column`` of ``extra[sample]``."""
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=[*rows[0], column], delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, column: extra[r["sample"]]})
    return path


def split_by_group(rows) -> dict[str, str]:
    """A split per sample, the same for all copies of a source sample: per tissue, source
    samples 0 and 1 go to test and val, the rest to train."""
    groups = sorted({(r["tissue"], r["source_sample"]) for r in rows})
    rank: dict[str, int] = {}
    for tissue in sorted({t for t, _ in groups}):
        for i, (_, g) in enumerate(x for x in groups if x[0] == tissue):
            rank[g] = i
    name = {0: "test", 1: "val"}
    return {r["sample"]: name.get(rank[r["source_sample"]], "train") for r in rows}


# ------------------------------------------------------------------ given split
def test_a_split_column_in_the_sheet_is_honoured_exactly(tissue, tmp_path):
    want = split_by_group(tissue["rows"])
    sheet = write_sheet(tmp_path / "samples.tsv", tissue["rows"], want)
    given = given_assignment(None, sheet)
    assert given is not None and given.kind == "split" and given.key == "sample"
    rows = make_splits(tissue["h5"], TaskConfig(), seed=0, given=given)
    assert {r["sample"]: r["split"] for r in rows} == want
    # The drawn split (no column) differs from it, so the given one was not a coincidence.
    drawn = make_splits(tissue["h5"], TaskConfig(), seed=0)
    assert {r["sample"]: r["split"] for r in drawn} != want
    # A sheet without the column gives nothing.
    assert given_assignment(None, tissue["sheet"]) is None


def test_a_splits_file_keyed_by_source_sample_is_honoured(tissue, tmp_path):
    want = split_by_group(tissue["rows"])
    by_group = {r["source_sample"]: want[r["sample"]] for r in tissue["rows"]}
    path = tmp_path / "given.tsv"
    path.write_text("source_sample\tsplit\n" + "".join(f"{g}\t{s}\n" for g, s in sorted(by_group.items())))
    rows = make_splits(tissue["h5"], TaskConfig(), seed=0, given=given_assignment(path, None))
    assert {r["sample"]: r["split"] for r in rows} == want
    # Both the file and the sheet giving a split is ambiguous.
    sheet = write_sheet(tmp_path / "samples.tsv", tissue["rows"], want)
    with pytest.raises(ValueError, match="keep one"):
        given_assignment(path, sheet)


def test_a_group_straddling_splits_is_an_error_naming_group_and_file(tissue, tmp_path):
    want = split_by_group(tissue["rows"])
    copy = next(r for r in tissue["rows"] if r["source_sample"] != r["sample"])
    want[copy["sample"]] = "test" if want[copy["sample"]] != "test" else "train"
    sheet = write_sheet(tmp_path / "samples.tsv", tissue["rows"], want)
    with pytest.raises(ValueError) as err:
        make_splits(tissue["h5"], TaskConfig(), seed=0, given=given_assignment(None, sheet))
    message = str(err.value)
    assert f"group {copy['source_sample']!r} straddles splits" in message
    assert str(sheet) in message and repr(copy["sample"]) in message and "line" in message


def test_given_split_errors_name_file_and_line(tissue, tmp_path):
    want = split_by_group(tissue["rows"])
    want[tissue["rows"][2]["sample"]] = "testing"
    sheet = write_sheet(tmp_path / "samples.tsv", tissue["rows"], want)
    with pytest.raises(FormatError, match=r"samples\.tsv, line 4: .*split 'testing' is not one of"):
        given_assignment(None, sheet)
    # A sample without a split, and a split with no test sample.
    path = tmp_path / "given.tsv"
    path.write_text("sample\tsplit\n" + "".join(f"{r['sample']}\ttrain\n" for r in tissue["rows"][1:]))
    with pytest.raises(ValueError, match=r"given\.tsv: no split given for 1 of"):
        make_splits(tissue["h5"], TaskConfig(), seed=0, given=given_assignment(path, None))
    path.write_text("sample\tsplit\n" + "".join(f"{r['sample']}\ttrain\n" for r in tissue["rows"]))
    with pytest.raises(ValueError, match="no val and no test example"):
        make_splits(tissue["h5"], TaskConfig(), seed=0, given=given_assignment(path, None))
    path.write_text("sample\tsplit\tfold\na\ttrain\t0\n")
    with pytest.raises(FormatError, match="both a 'split' and a 'fold' column"):
        read_given_assignment(path)
    path.write_text("sample\tfold\na\t1\nb\t-1\n")
    with pytest.raises(FormatError, match=r"line 3: sample 'b': fold '-1' is not an integer >= 0"):
        read_given_assignment(path)


# ------------------------------------------------------------------------- folds
def test_k_folds_partition_groups_and_each_fold_split_is_disjoint(rng):
    groups = rng.integers(0, 45, size=200)
    labels = groups % 3
    k = 4
    folds = group_kfold(groups, k, seed=2, stratify=labels)
    assert sorted(set(folds.tolist())) == list(range(k))
    for g in np.unique(groups):  # a group's examples share one fold, so one test part
        assert len(set(folds[groups == g])) == 1
    per_fold = [len(np.unique(groups[folds == f])) for f in range(k)]
    assert max(per_fold) - min(per_fold) <= 1
    for label in range(3):  # stratified: each class's groups spread to within one
        counts = [len(np.unique(groups[(folds == f) & (labels == label)])) for f in range(k)]
        assert max(counts) - min(counts) <= 1
    tested = np.zeros(len(groups), dtype=int)
    for f in range(k):
        split = fold_split(folds, f, groups, val_fraction=0.25, seed=2, stratify=labels)
        assert ((split == "test") == (folds == f)).all()
        parts = {s: set(groups[split == s].tolist()) for s in ("train", "val", "test")}
        assert all(parts[s] for s in parts)
        assert not (
            parts["train"] & parts["val"] or parts["train"] & parts["test"] or parts["val"] & parts["test"]
        )
        tested += split == "test"
    assert (tested == 1).all()  # every example is tested exactly once over the folds
    assert (group_kfold(groups, k, seed=2, stratify=labels) == folds).all()
    with pytest.raises(ValueError, match="at least 5 groups"):
        group_kfold(["a", "b", "c", "d"], 5)


def test_tissue_folds_are_written_once_and_every_fold_tests_its_own_samples(tissue, tmp_path):
    paths = [tmp_path / f"folds/{f}/splits.tsv" for f in range(3)]
    write_evaluation_splits(tissue["h5"], TaskConfig(), 0, paths, tmp_path / "folds.tsv")
    fold_of = read_given_assignment(tmp_path / "folds.tsv", what="folds file")
    assert fold_of.kind == "fold" and fold_of.n_folds == 3
    samples = {r["sample"] for r in tissue["rows"]}
    assert set(fold_of.values) == samples
    group_of = {r["sample"]: r["source_sample"] for r in tissue["rows"]}
    for f, path in enumerate(paths):
        rows = read_split_table(path)
        assert {r["sample"] for r in rows} == samples
        assert {r["sample"] for r in rows if r["split"] == "test"} == {
            s for s, v in fold_of.values.items() if v == f
        }
        by_split = {
            s: {group_of[r["sample"]] for r in rows if r["split"] == s} for s in ("train", "val", "test")
        }
        assert not (by_split["train"] & by_split["val"] or by_split["train"] & by_split["test"])
        assert not by_split["val"] & by_split["test"]
    # The folds table is itself a valid given assignment: a rerun with it reproduces the folds.
    again = [tmp_path / f"again/{f}/splits.tsv" for f in range(3)]
    given = given_assignment(tmp_path / "folds.tsv", None)
    write_evaluation_splits(tissue["h5"], TaskConfig(), 0, again, tmp_path / "again.tsv", given)
    assert (tmp_path / "again.tsv").read_text() == (tmp_path / "folds.tsv").read_text()
    # Given folds must match the configured number, and a split is not folds.
    with pytest.raises(ValueError, match="gives 3 folds but tissue.evaluation.folds is 2"):
        write_evaluation_splits(tissue["h5"], TaskConfig(), 0, again[:2], tmp_path / "x.tsv", given)
    with pytest.raises(ValueError, match="gives 3 folds but tissue.evaluation.folds is 1"):
        make_splits(tissue["h5"], TaskConfig(), 0, given)


def test_given_folds_with_a_gap_or_a_straddling_group_are_refused():
    given = GivenAssignment("fold", {"a": 0, "b": 2, "c": 0}, "f.tsv", "sample")
    with pytest.raises(ValueError, match=r"f\.tsv: folds \[1\] have no example"):
        given.assign(["a", "b", "c"], ["a", "b", "c"])
    given = GivenAssignment("fold", {"a": 0, "b": 1, "c": 0}, "f.tsv", "sample", {"a": 2, "b": 3, "c": 4})
    with pytest.raises(ValueError, match=r"group 'x' straddles folds \('a' in fold 0 \(f\.tsv, line 2\)"):
        given.assign(["a", "b", "c"], ["x", "x", "y"])


# ------------------------------------------------------------------ paired tests
def test_paired_t_gives_the_textbook_answer():
    # Student's sleep data (Cushny & Peebles): extra hours of sleep, drug 2 minus drug 1 per
    # patient. R: t.test(extra ~ group, data = sleep, paired = TRUE): t = 4.0621, df = 9, p = 0.002833.
    drug1 = [0.7, -1.6, -0.2, -1.2, -0.1, 3.4, 3.7, 0.8, 0.0, 2.0]
    drug2 = [1.9, 0.8, 1.1, 0.1, -0.1, 4.4, 5.5, 1.6, 4.6, 3.4]
    t = paired_t(drug2, drug1)
    assert t.statistic == pytest.approx(4.0621, abs=1e-4) and t.details["df"] == 9
    assert t.p_value == pytest.approx(0.002833, abs=1e-6) and t.favours == "model"
    # Lower is better: the same numbers favour the other side.
    assert paired_t(drug2, drug1, higher_is_better=False).favours == "baseline"
    assert paired_t([0.5, 0.6], [0.5, 0.6]).p_value == 1.0


def test_exact_mcnemar_and_signed_rank_give_the_hand_computed_answers():
    # 9 examples right only by the model, 1 only by the baseline, 5 by both:
    # p = 2 * P(X <= 1 | n = 10, 1/2) = 2 * (1 + 10) / 1024.
    model = [True] * 9 + [False] + [True] * 5
    baseline = [False] * 9 + [True] + [True] * 5
    t = exact_mcnemar(model, baseline)
    assert t.p_value == pytest.approx(22 / 1024) and t.n == 15 and t.favours == "model"
    assert (t.details["only_model"], t.details["only_baseline"]) == (9, 1)
    # Five folds, the model ahead in all: the smallest two-sided signed-rank p, 2 / 2^5.
    w = wilcoxon_signed_rank([0.9, 0.8, 0.85, 0.7, 0.95], [0.8, 0.75, 0.8, 0.6, 0.9])
    assert w.p_value == pytest.approx(0.0625) and w.favours == "model"


def test_holm_adjusts_a_family_step_down_in_the_input_order():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1 -> 0.02, 0.03, 0.06, 0.04; the last is
    # raised to 0.06 (never below a smaller p's adjustment).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # One test is its own family; large products are capped at 1.
    assert holm([0.02]) == [0.02]
    assert holm([0.5, 0.6, 0.9]) == pytest.approx([1.0, 1.0, 1.0])
    # Two of 16 grid points at p 0.014 and 0.022 (the rest 0.5): neither survives.
    adjusted = holm([0.014, 0.022] + [0.5] * 14)
    assert adjusted[:2] == pytest.approx([0.224, 0.33]) and min(adjusted) > 0.05
    for bad in ([0.1, float("nan")], [1.5], [[0.1]]):
        with pytest.raises(ValueError, match="p-values in"):
            holm(bad)


def test_mcnemar_on_predictions_matches_samples_in_any_order():
    model = {"sample": list("abcdef"), "true": [0, 0, 1, 1, 2, 2], "pred": [0, 0, 1, 1, 2, 0]}
    baseline = {"sample": list("fedcba"), "true": [2, 2, 1, 1, 0, 0], "pred": [2, 1, 0, 1, 0, 1]}
    t = mcnemar_predictions(model, baseline)
    # Model right on a-e, baseline on f, c, b: a, d, e only by the model, f only by the baseline.
    assert (t.n, t.details["only_model"], t.details["only_baseline"]) == (6, 3, 1)
    assert t.p_value == pytest.approx(10 / 16)  # P(3 or more of 4, or 1 or fewer) for a fair coin
    assert mcnemar_predictions(model, model).p_value == 1.0
    with pytest.raises(ValueError, match="same test samples"):
        mcnemar_predictions(model, {**baseline, "sample": list("fedcbz")})


# ----------------------------------------------------------------------- verdicts
def comparison(model: float, test=None, folds: int = 1) -> Comparison:
    return Comparison(
        "tissue",
        "test",
        "balanced_accuracy",
        True,
        {"MLP": {"balanced_accuracy": model}, "LR": {"balanced_accuracy": 0.80}},
        {"MLP": "model", "LR": "baseline"},
        tests={pair_key("MLP", "LR"): test.to_dict()} if test else {},
        folds=folds,
    )


def test_verdict_says_beats_only_when_the_paired_test_supports_it():
    # Ahead on the mean, but 3 vs 1 discordant samples: p = 0.625, a tie.
    weak = exact_mcnemar([True] * 3 + [False], [False] * 3 + [True])
    verdict = comparison(0.85, weak).verdict()
    assert "ties with LR" in verdict and "beats" not in verdict and "p = 0.62" in verdict
    strong = exact_mcnemar([True] * 9 + [False], [False] * 9 + [True])
    assert "MLP (balanced_accuracy 0.85) beats LR (0.8)" in comparison(0.85, strong).verdict()
    # A significant test the other way round, with the model behind.
    against = exact_mcnemar([False] * 9 + [True], [True] * 9 + [False])
    assert "does NOT beat LR" in comparison(0.7, against).verdict()
    # A test favouring the model while the primary metric is behind is no win either.
    assert "ties with" in comparison(0.7, strong).verdict()
    # No paired test: ahead is a tie, said so; behind does not beat.
    assert "ties with LR" in comparison(0.85).verdict() and "no paired test" in comparison(0.85).verdict()
    assert "does NOT beat" in comparison(0.7).verdict()
    assert "3 folds' test splits (mean)" in comparison(0.85, weak, folds=3).verdict()


def test_a_paired_t_test_over_two_folds_calls_no_winner():
    """A 2-fold run's t-test has one degree of freedom: a 0.0005 lead held in both folds came
    out p = 0.04 and "beats". Two folds decide nothing; three can."""
    two = paired_t([0.9410, 0.9400], [0.9405, 0.93951])
    assert two.p_value < 0.05 and two.favours == "model"
    verdict = comparison(0.85, two, folds=2).verdict()
    assert "ties with LR" in verdict and "2 folds are too few to call" in verdict
    three = paired_t([0.90, 0.91, 0.92], [0.80, 0.805, 0.81])
    assert three.p_value < 0.05 and "beats LR" in comparison(0.85, three, folds=3).verdict()


def test_summary_keeps_tests_spread_and_folds_and_the_report_reads_them_back(tmp_path):
    strong = exact_mcnemar([True] * 9 + [False], [False] * 9 + [True])
    comp = comparison(0.85, strong, folds=3)
    comp.spread = {"MLP": {"balanced_accuracy": 0.02}, "LR": {"balanced_accuracy": 0.03}}
    write_module_summary(ModuleSummary("tissue", "t", [comp]), tmp_path / "s.json", tmp_path / "s.md")
    back = read_module_summary(tmp_path / "s.json").comparisons[0]
    assert back.verdict() == comp.verdict() and "beats" in back.verdict()
    md = (tmp_path / "s.md").read_text()
    assert "| MLP | model | 0.85 ± 0.02 |" in md and "Mean ± SD over 3 folds." in md
    assert "| MLP vs LR | exact McNemar | 10 | 0.0215 | model |" in md
    # A single split without tests keeps the keys it always had.
    plain = json.loads(json.dumps(ModuleSummary("m", "t", [comparison(0.85)]).to_dict()))
    assert set(plain["comparisons"][0]) == {
        "title",
        "split",
        "primary",
        "higher_is_better",
        "rows",
        "kinds",
        "verdict",
    }


def test_wilcoxon_sides_with_the_larger_rank_sum_when_most_pairs_tie():
    from genomelab.report.stats import wilcoxon_signed_rank

    # 60 tied pairs (median difference 0) and 20 where the model is ahead: a clear win.
    model = [0.0] * 60 + [1.0] * 18 + [0.0] * 2
    baseline = [0.0] * 60 + [0.0] * 18 + [0.5] * 2
    test = wilcoxon_signed_rank(model, baseline)
    assert test.details["median_difference"] == 0.0
    assert test.significant() and test.favours == "model", test
    flipped = wilcoxon_signed_rank(baseline, model)
    assert flipped.favours == "baseline" and flipped.p_value == test.p_value
