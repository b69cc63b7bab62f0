"""benchmarks/bench_tissue_seeds.py: issue 18's bars per seed from bench_tissue_sparse.py runs."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tissue_seeds.py"
MODEL, LR, NB = "read-profile model", "logistic regression", "naive Bayes (read counts)"


@pytest.fixture(scope="module")
def seeds():
    """The script's functions (run as a module, not as __main__)."""
    return SimpleNamespace(**runpy.run_path(str(SCRIPT)))


def _test(p: float, favours: str, holm: float | None = None) -> dict:
    return {"p_value": p, "favours": favours, "p_value_holm": p if holm is None else holm}


def make_run(root: Path, seed: int, full: dict, grid: dict) -> Path:
    """A bench_tissue_sparse.py --out folder with the files the script reads. ``full``:
    method -> accuracy (the model's test against LR: p 0.5, favours the model); ``grid``:
    (depth, observed) -> {method: accuracy, "tests": {baseline: test}}."""
    run = root / f"s{seed}"
    (run / "plots").mkdir(parents=True)
    (run / "bench.json").write_text(json.dumps({"args": {"seed": str(seed)}}))
    rows = {m: {"accuracy": a, "ece": 0.04} for m, a in full.items()}
    tests = {f"{MODEL} vs {LR}": {"p_value": 0.5, "favours": "model"}}
    (run / "summary.json").write_text(json.dumps({"comparisons": [{"rows": rows, "tests": tests}]}))
    points = []
    for (depth, observed), spec in grid.items():
        methods = {m: {"accuracy": a} for m, a in spec.items() if m != "tests"}
        methods[MODEL]["tests"] = spec["tests"]
        points.append({"depth": depth, "observed": observed, "methods": methods})
    (run / "plots/grid.json").write_text(json.dumps({"n_folds": 5, "points": points}))
    return run


def add_fold(run: Path, k: int, confidence: list[float]) -> None:
    """A fold's model metrics with its test predictions' confidences."""
    path = run / "folds" / str(k) / "reads" / "metrics.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"title": MODEL, "predictions": {"confidence": confidence}}))


def two_point_grid(model_1read: float, lr_1read: float, p: float, behind: dict | None = None) -> dict:
    return {
        (30, 1.0): {MODEL: 0.94, LR: 0.93, NB: 0.95, "tests": {LR: _test(0.4, "model")}},
        (1, 1.0): {
            MODEL: model_1read,
            LR: lr_1read,
            NB: 0.90,
            "tests": {LR: _test(p, "model"), **(behind or {})},
        },
    }


def test_a_seed_row_gives_the_gap_the_fair_baseline_count_and_the_reach(seeds, tmp_path):
    run = make_run(
        tmp_path,
        7,
        {MODEL: 0.935, LR: 0.930, NB: 0.92},
        two_point_grid(
            0.925,
            0.890,
            0.01,
            # Significant by the raw p but not after Holm; and a baseline behind the model.
            behind={NB: _test(0.03, "baseline", holm=0.06), "nearest centroid": _test(0.001, "model")},
        ),
    )
    row = seeds.seed_row(seeds.load_run(run), MODEL, [(1, 1.0)], 5.0)
    assert row["seed"] == 7
    assert row["d1_o1_gap"] == pytest.approx(3.5)
    assert row["d1_o1_p_vs_lr"] == 0.01
    assert (row["below_fair_raw"], row["below_fair_holm"]) == (1, 0)
    # The bar (0.890 + 0.05) lies above the model's complete-data accuracy (0.935) and below
    # the best complete-data figure of the run (naive Bayes at 30 reads, 0.95).
    assert row["bar"] == pytest.approx(0.94)
    assert row["bar_minus_model_full"] == pytest.approx(0.5)
    assert row["best_complete"] == pytest.approx(0.95)
    assert row["bar_minus_best_complete"] == pytest.approx(-1.0)


def test_the_counts_need_the_margin_and_a_significant_test(seeds, tmp_path):
    full = {MODEL: 0.94, LR: 0.93}
    runs = [
        make_run(tmp_path, 1, full, two_point_grid(0.92, 0.86, 0.001)),  # +6, significant
        make_run(tmp_path, 2, full, two_point_grid(0.92, 0.86, 0.08)),  # +6, not significant
        make_run(tmp_path, 3, full, two_point_grid(0.92, 0.88, 0.001)),  # +4
    ]
    rows = [seeds.seed_row(seeds.load_run(r), MODEL, [(1, 1.0)], 5.0) for r in runs]
    summary = seeds.aggregate(rows, [(1, 1.0)], 5.0)
    assert summary["counts"]["d1_o1_bar_met"] == 1
    assert summary["counts"]["seeds"] == 3
    assert summary["stats"]["d1_o1_gap"]["mean"] == pytest.approx((6 + 6 + 4) / 3)
    assert summary["stats"]["d1_o1_gap"]["min"] == pytest.approx(4)


def test_the_command_refuses_a_repeated_seed_and_names_a_missing_point(tmp_path):
    full = {MODEL: 0.94, LR: 0.93}
    a = make_run(tmp_path / "a", 1, full, two_point_grid(0.92, 0.86, 0.001))
    b = make_run(tmp_path / "b", 1, full, two_point_grid(0.92, 0.86, 0.001))

    def run(*args):
        return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True)

    done = run(a, b, "--out", tmp_path / "out")
    assert done.returncode != 0 and "two runs share a seed" in done.stderr
    done = run(a, "--out", tmp_path / "out", "--points", "3:0.5")
    assert done.returncode != 0 and "grid point 3:0.5 is not in the run" in done.stderr
    done = run(a, "--out", tmp_path / "out", "--points", "1:1.0")
    assert done.returncode == 0, done.stderr
    table = (tmp_path / "out" / "seeds.tsv").read_text().splitlines()
    assert len(table) == 2 and table[0].startswith("seed\tfull_model")
    assert json.loads((tmp_path / "out" / "seeds.json").read_text())["counts"]["d1_o1_bar_met"] == 1


def test_the_ece_floor_is_what_a_calibrated_model_scores_on_that_many_samples(seeds, tmp_path):
    run = make_run(tmp_path, 3, {MODEL: 0.94, LR: 0.93}, two_point_grid(0.92, 0.86, 0.001))
    (run / "plots/coverage.json").write_text(json.dumps({MODEL: {"ece_after": 0.02}}))
    add_fold(run, 0, [0.9] * 80)
    add_fold(run, 1, [0.9] * 80)
    row = seeds.seed_row(seeds.load_run(run), MODEL, [(1, 1.0)], 5.0, floor_draws=1000)
    assert row["ece_pooled"] == 0.02
    # E|Binomial(n, 0.9) / n - 0.9|: 0.0265 for a fold of 80, 0.0188 for the 160 pooled.
    assert row["ece_floor_folds"] == pytest.approx(0.0265, abs=0.002)
    assert row["ece_floor_pooled"] == pytest.approx(0.0188, abs=0.002)
    certain = make_run(tmp_path, 4, {MODEL: 0.94, LR: 0.93}, two_point_grid(0.92, 0.86, 0.001))
    add_fold(certain, 0, [1.0] * 80)  # a calibrated model is right on every certain call
    row = seeds.seed_row(seeds.load_run(certain), MODEL, [(1, 1.0)], 5.0, floor_draws=50)
    assert row["ece_floor_folds"] == 0 and row["ece_pooled"] is None


def test_a_seed_below_lr_at_full_coverage_and_below_a_fair_baseline_after_holm_is_counted(seeds, tmp_path):
    run = make_run(
        tmp_path,
        5,
        {MODEL: 0.90, LR: 0.95},
        two_point_grid(0.92, 0.86, 0.001, behind={NB: _test(0.001, "baseline", holm=0.01)}),
    )
    summary = json.loads((run / "summary.json").read_text())
    summary["comparisons"][0]["tests"][f"{MODEL} vs {LR}"] = {"p_value": 0.01, "favours": "baseline"}
    (run / "summary.json").write_text(json.dumps(summary))
    other = make_run(tmp_path, 6, {MODEL: 0.94, LR: 0.93}, two_point_grid(0.92, 0.86, 0.001))
    rows = [seeds.seed_row(seeds.load_run(r), MODEL, [(1, 1.0)], 5.0) for r in (run, other)]
    counts = seeds.aggregate(rows, [(1, 1.0)], 5.0)["counts"]
    assert counts["full_significantly_below_lr"] == 1
    assert (counts["below_fair_raw_any"], counts["below_fair_holm_any"]) == (1, 1)
    # A column that only some seeds have is still summarised (ECE floors need fold files).
    rows[0]["ece_floor_folds"], rows[1]["ece_floor_folds"] = None, 0.04
    assert seeds.aggregate(rows, [(1, 1.0)], 5.0)["stats"]["ece_floor_folds"]["mean"] == 0.04


def test_the_grid_ece_columns_take_the_model_s_worst_and_mean_point(seeds, tmp_path):
    run = make_run(tmp_path, 3, {MODEL: 0.94, LR: 0.93}, two_point_grid(0.92, 0.86, 0.001))
    grid = json.loads((run / "plots/grid.json").read_text())
    for pt, ece in zip(grid["points"], [0.02, 0.07], strict=True):
        pt["methods"][MODEL]["ece"] = ece
    (run / "plots/grid.json").write_text(json.dumps(grid))
    row = seeds.seed_row(seeds.load_run(run), MODEL, [(1, 1.0)], 5.0)
    assert row["grid_ece_worst"] == 0.07 and row["grid_ece_mean"] == pytest.approx(0.045)
    assert seeds.aggregate([row], [(1, 1.0)], 5.0)["counts"]["grid_ece_every_point_at_most_0.05"] == 0
    # Runs before round 25 record no ECE at the grid points: no figure, not a zero.
    old = seeds.seed_row(
        seeds.load_run(make_run(tmp_path, 4, {MODEL: 0.94, LR: 0.93}, two_point_grid(0.92, 0.86, 0.001))),
        MODEL,
        [(1, 1.0)],
        5.0,
    )
    assert old["grid_ece_worst"] is None
