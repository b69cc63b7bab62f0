"""benchmarks/bench_tissue_routing.py: router variants chosen on validation, scored on the runs'
own test predictions."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from tissue_bench_run import ENV, small_bench_run

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tissue_routing.py"


@pytest.fixture(scope="module")
def bench():
    return runpy.run_path(str(SCRIPT))


def _table(dense_better: set) -> list[dict]:
    # 2 depths x 2 observed fractions; the masked model's NLL and error lower where better.
    return [
        {
            "depth": d,
            "observed": f,
            "reads_nll": 0.5,
            "masked_nll": 0.4 if (d, f) in dense_better else 0.6,
            "reads_err": 0.1,
            "masked_err": 0.05 if (d, f) in dense_better else 0.2,
        }
        for d, f in [(30.0, 1.0), (30.0, 0.1), (1.0, 1.0), (1.0, 0.1)]
    ]


def test_a_corner_takes_richer_data_and_damps_one_noisy_point(bench):
    corner = bench["corner"]
    assert corner(_table({(30.0, 1.0)}), "nll") == [True, False, False, False]
    assert corner(_table({(30.0, 1.0), (30.0, 0.1)}), "err") == [True, True, False, False]
    # Better at the sparsest point alone: taking it takes every richer point too, which
    # costs more, so the corner stays empty; the per-point variant takes it.
    noisy = _table({(1.0, 0.1)})
    assert corner(noisy, "nll") == [False] * 4
    assert bench["variants"](noisy)["point_nll"] == [False, False, False, True]
    assert corner(_table(set()), "nll") == [False] * 4
    tie = [{**r, "masked_nll": 0.5} for r in _table(set())]
    assert corner(tie, "nll") == [False] * 4  # ties go to the read-profile model


def test_variants_score_the_chosen_model_s_test_predictions(bench):
    def pred(right):
        return {"true": [0] * len(right), "pred": [0 if r else 1 for r in right]}

    grid_pts = [(30.0, 1.0), (1.0, 0.1)]
    right = {"reads": [[True, False], [True, True]], "masked": [[True, True], [False, False]]}
    metrics = {
        m: {
            "predictions": pred(right[m][0]),
            "grid": [
                {"depth": d, "observed": f, "predictions": pred(right[m][i])}
                for i, (d, f) in enumerate(grid_pts)
            ],
        }
        for m in right
    }
    out = bench["score"](metrics, {"router": [True, False], "none": [False, False]})
    full, points = out["router"]
    assert full.tolist() == [True, True]  # complete samples: the deepest, fully observed point's model
    assert [p.tolist() for p in points] == [[True, True], [True, True]]
    assert out["none"][0].tolist() == [True, False]


def test_on_a_small_bench_tissue_sparse_run(tmp_path, bench):
    """End to end: a run of bench_tissue_sparse.py on a small CSV, then this script."""
    run = small_bench_run(tmp_path)
    out = bench["score_run"](run, 3)
    assert out["grid_points"] == [[30.0, 1.0], [30.0, 0.1], [1.0, 1.0], [1.0, 0.1]]
    assert len(out["tables"]) == 3 and {"reads_nll", "masked_err"} <= set(out["tables"][0][0])
    # One model everywhere scores that model's own test accuracy (the folds' metrics, pooled).
    for variant, model in (("sparse", "reads"), ("dense", "masked")):
        tests = [json.loads((run / f"folds/{k}/{model}/metrics.json").read_text())["test"] for k in range(3)]
        pooled = sum(t["accuracy"] * t["n"] for t in tests) / sum(t["n"] for t in tests)
        assert out[variant]["full"] == pytest.approx(pooled)
    assert out["sparse"]["dense_points"] == 0 and out["dense"]["dense_points"] == 12
    assert (
        0
        <= out["both"]["dense_points"]
        <= min(out["corner_nll"]["dense_points"], out["corner_acc"]["dense_points"])
    )
    # Each variant is tested against the default on the same samples: 60 at full coverage,
    # 4 x 60 over the grid; the default against itself has no discordant sample.
    assert out["sparse"]["vs_default"]["full"]["p_value"] == 1.0
    assert out["dense"]["vs_default"]["full"]["n"] == 60 and out["dense"]["vs_default"]["grid"]["n"] == 240
    res = subprocess.run(
        [sys.executable, str(SCRIPT), str(run), "--out", str(tmp_path / "o"), "--folds", "3"],
        check=True, capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    assert "corner_nll" in res.stdout and (tmp_path / "o/routing.json").is_file()
