"""benchmarks/bench_tissue_routing.py: router variants scored on the test predictions the runs hold."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tissue_routing.py"


def _pred(right: list[bool]) -> dict:
    return {"true": [0] * len(right), "pred": [0 if r else 1 for r in right]}


def make_run(root: Path, folds: int = 2) -> Path:
    """Two grid points: (30, 1.0), where the dense model has the lower validation NLL and gets
    every test sample right (the sparse model 1 of 4), and (1, 0.1), where the sparse model
    has the lower NLL and is right on 3 of 4 (the dense model on none)."""
    run = root / "s1"
    pts = [(30.0, 1.0), (1.0, 0.1)]
    right = {
        "reads": [[True, False, False, False], [True, True, True, False]],
        "masked": [[True] * 4, [False] * 4],
    }
    for k in range(folds):
        for model in ("reads", "masked"):
            d = run / f"folds/{k}/{model}"
            d.mkdir(parents=True)
            grid = [
                {"depth": p[0], "observed": p[1], "predictions": _pred(right[model][i])}
                for i, p in enumerate(pts)
            ]
            (d / "metrics.json").write_text(json.dumps({"predictions": _pred(right[model][0]), "grid": grid}))
        table = [
            {"depth": 30.0, "observed": 1.0, "sparse_nll": 0.5, "dense_nll": 0.2, "sparse_accuracy": 0.5, "dense_accuracy": 0.9},
            {"depth": 1.0, "observed": 0.1, "sparse_nll": 0.6, "dense_nll": 0.9, "sparse_accuracy": 0.7, "dense_accuracy": 0.4},
        ]  # fmt: skip
        (run / f"folds/{k}/routed").mkdir(parents=True)
        (run / f"folds/{k}/routed/metrics.json").write_text(json.dumps({"routing": {"points": table}}))
    return run


def test_each_variant_takes_its_models_test_predictions_per_point(tmp_path):
    ns = runpy.run_path(str(SCRIPT))
    out = ns["score_run"](make_run(tmp_path), 2)
    assert out["sparse"]["points"] == [0.25, 0.75] and out["sparse"]["full"] == 0.25
    assert out["dense"]["points"] == [1.0, 0.0] and out["dense"]["full"] == 1.0
    # The router: the dense model at the rich point only, with both folds.
    for name in ("corner", "point", "accuracy"):
        assert out[name]["points"] == [1.0, 0.75] and out[name]["full"] == 1.0
        assert out[name]["dense_points"] == 2
    assert out["grid_points"] == [[30.0, 1.0], [1.0, 0.1]]


def test_a_grid_that_differs_from_the_routing_table_is_refused(tmp_path):
    run = make_run(tmp_path, folds=1)
    path = run / "folds/0/routed/metrics.json"
    table = json.loads(path.read_text())
    table["routing"]["points"][1]["depth"] = 3.0
    path.write_text(json.dumps(table))
    ns = runpy.run_path(str(SCRIPT))
    with pytest.raises(ValueError, match="grid point 1 differs"):
        ns["score_run"](run, 1)


def test_the_script_writes_routing_json(tmp_path):
    run = make_run(tmp_path)
    res = subprocess.run(
        [sys.executable, str(SCRIPT), str(run), "--out", str(tmp_path / "out"), "--folds", "2"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "corner" in res.stdout
    saved = json.loads((tmp_path / "out/routing.json").read_text())
    assert saved["mean"]["corner"]["full"] == 1.0 and list(saved["seeds"]) == ["s1"]
