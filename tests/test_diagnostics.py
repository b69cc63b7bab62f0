"""Generic diagnostics and the gate."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from genomelab.diagnostics import (
    FAIL,
    PASS,
    WARN,
    DiagnosticResult,
    GateError,
    checks,
    gate,
    read_results,
    write_results,
)


def test_chance_cross_entropy_is_ln_c_for_balanced_classes():
    assert checks.chance_cross_entropy([5] * 22) == pytest.approx(math.log(22))


def test_initial_loss_far_above_chance_fails():
    assert checks.initial_loss_vs_chance(3.2, math.log(22)).status == PASS
    bad = checks.initial_loss_vs_chance(5000.0, math.log(22))
    assert bad.status == FAIL and "different scales" in bad.message
    assert checks.initial_loss_vs_chance(float("nan"), 1.0).status == FAIL
    # The default limit is 3x chance: 2.9x passes, 3.1x fails.
    assert checks.initial_loss_vs_chance(2.9, 1.0).status == PASS
    assert checks.initial_loss_vs_chance(3.1, 1.0).status == FAIL


def test_loss_stuck_at_chance_detects_the_history_failure():
    chance = math.log(22)
    stuck = [{"val/loss": chance + d} for d in (0.02, -0.01, 0.0, 0.01)]
    assert checks.loss_stuck_at_chance(stuck, chance).status == FAIL
    learning = [{"val/loss": v} for v in (3.0, 2.0, 1.0, 0.5)]
    assert checks.loss_stuck_at_chance(learning, chance).status == PASS
    assert checks.loss_stuck_at_chance(learning[:1], chance).status == WARN
    # A run that learnt and then overfitted back above chance did learn: the best epoch counts.
    overfitted = [{"val/loss": v} for v in (3.0, 1.0, 2.5, 3.5)]
    assert checks.loss_stuck_at_chance(overfitted, chance).status == PASS


def test_prediction_collapse():
    y_true = np.arange(22).repeat(5)
    collapsed = np.r_[np.zeros(100, int), np.ones(10, int)]
    res = checks.prediction_collapse(collapsed, y_true)
    assert res.status == FAIL and res.details["n_predicted_classes"] == 2
    assert checks.prediction_collapse(y_true, y_true).status == PASS


@pytest.mark.parametrize(
    "values, kind, status, words",
    [
        (np.r_[0.0, 1.0, 1.0, 0.0], "regression", FAIL, "presence flags"),
        (np.r_[0.0, 1.0, 1.0, 0.0], "binary", PASS, "positive"),
        (np.r_[0.0, 2.0, 1.0], "binary", FAIL, "outside"),
        (np.r_[10.0, 5000.0, 120000.0], "regression", FAIL, "not normalised"),
        (np.r_[1.0, np.nan], "regression", FAIL, "non-finite"),
        (np.r_[3.0, 3.0, 3.0], "regression", FAIL, "constant"),
        (np.r_[-1.0, 2.0], "count", FAIL, "negative"),
    ],
)
def test_target_range(values, kind, status, words):
    res = checks.target_range(values, "expr", kind=kind)
    assert res.status == status and words in res.message


def test_target_range_accepts_standardised_values(rng):
    assert checks.target_range(rng.normal(size=1000), "z", "regression").status == PASS


def test_target_range_respects_mask():
    values = np.r_[0.1, -0.3, np.nan, 0.5]
    assert checks.target_range(values, "masked", mask=np.isfinite(values)).status == PASS


def test_group_leakage():
    res = checks.group_leakage({"train": ["a", "b"], "val": ["c"], "test": ["b", "d"]}, what="source sample")
    assert res.status == FAIL and "train/test: 1" in res.message and "b" in res.message
    assert checks.group_leakage({"train": ["a"], "val": ["c"], "test": ["d"]}).status == PASS


def test_overfit_tiny_subset():
    ok = checks.overfit_tiny_subset(lambda: {"loss": 0.01, "accuracy": 1.0}, 10, 0.05, 0.99)
    assert ok.status == PASS
    bad = checks.overfit_tiny_subset(lambda: {"loss": 1.5, "accuracy": 0.4}, 10, 0.05, 0.99)
    assert bad.status == FAIL and "cannot memorise" in bad.message
    # Each limit fails the check on its own.
    low_accuracy = checks.overfit_tiny_subset(lambda: {"loss": 0.01, "accuracy": 0.5}, 10, 0.05, 0.99)
    assert low_accuracy.status == FAIL and "accuracy 50.0% < 99%" in low_accuracy.message
    high_loss = checks.overfit_tiny_subset(lambda: {"loss": 0.2, "accuracy": 1.0}, 10, 0.05, 0.99)
    assert high_loss.status == FAIL and "loss 0.2 > 0.05" in high_loss.message


def test_results_round_trip_and_gate(tmp_path):
    good = tmp_path / "good.json"
    bad = tmp_path / "bad.json"
    write_results(
        good, "m", [DiagnosticResult("a", PASS, "fine"), DiagnosticResult("b", WARN, "hm", blocking=False)]
    )
    write_results(
        bad,
        "m",
        [
            DiagnosticResult("c", FAIL, "labels broken"),
            DiagnosticResult("d", FAIL, "advisory", blocking=False),
        ],
    )
    assert [r.name for r in read_results(good)] == ["a", "b"]
    assert gate([good])["passed"]
    with pytest.raises(GateError, match="labels broken") as info:
        gate([good, bad])
    assert "advisory" not in str(info.value)
    relaxed = gate([good, bad], strict=False)
    assert (
        relaxed["opened"] and not relaxed["passed"] and relaxed["counts"] == {"pass": 1, "warn": 1, "fail": 2}
    )


def test_unreadable_results_file_names_it(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        read_results(path)


def test_bad_status_rejected():
    with pytest.raises(ValueError, match="status"):
        DiagnosticResult("x", "ok", "no")


def test_results_json_is_strict_json(tmp_path):
    path = tmp_path / "r.json"
    write_results(path, "m", [DiagnosticResult("nan", WARN, "m", details={"v": float("nan")})])
    assert json.loads(path.read_text())["results"][0]["details"]["v"] is None
