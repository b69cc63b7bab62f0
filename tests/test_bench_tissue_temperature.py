"""benchmarks/bench_tissue_temperature.py: forms of the temperature fitted on a run's validation
copies and scored on its degraded test samples."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from tissue_bench_run import ENV, small_bench_run

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tissue_temperature.py"


def test_every_form_is_scored_at_full_coverage_and_each_grid_point(tmp_path):
    run = small_bench_run(tmp_path)
    ns = runpy.run_path(str(SCRIPT))
    points, ece = ns["score_runs"]([run], "reads", 3)
    assert points == [(30, 1.0), (30, 0.1), (1, 1.0), (1, 0.1)]
    assert set(ece) == set(ns["FORMS"]) and all(len(e) == 5 for e in ece.values())
    assert all(0 <= x <= 1 for e in ece.values() for x in e)
    res = subprocess.run(
        [sys.executable, str(SCRIPT), str(run), "--model", "masked", "--folds", "3", "--out", str(tmp_path / "o")],
        check=True, capture_output=True, text=True, env=ENV,
    )  # fmt: skip
    saved = json.loads((tmp_path / "o/temperature.json").read_text())
    assert saved["model"] == "masked" and saved["points"][0] == "full" and "quadratic" in res.stdout


def test_a_fitted_form_clips_to_the_profiles_it_was_fitted_on():
    ns = runpy.run_path(str(SCRIPT))
    rng = np.random.default_rng(0)
    n = 300
    y = rng.integers(0, 3, n)
    depth = np.where(np.arange(n) < n // 2, 30.0, 1.0)
    logits = rng.normal(0, 1, (n, 3))
    logits[np.arange(n), y] += np.where(depth > 1, 8.0, 1.0)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for form in ("linear", "interaction", "total"):
        t = ns["fit_form"](p, y, np.ones(n), depth, form)
        assert t(np.ones(1), np.array([300.0]))[0] == pytest.approx(t(np.ones(1), np.array([30.0]))[0])
