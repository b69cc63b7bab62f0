"""Calibrated, abstaining calls: temperature scaling, reliability bins, the coverage curve."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.tissue.calibration import (
    CalibrationConfig,
    apply_temperature,
    calibrate,
    coverage_curve,
    ece_of_bins,
    fit_temperature,
    reliability_bins,
    succession_nll,
)
from genomelab.tissue.metrics import expected_calibration_error


def overconfident(n: int, seed: int, n_classes: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A toy model right 70% of the time that says ~0.99 every time: probabilities [n, C], y [n]."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    pred = np.where(rng.random(n) < 0.7, y, (y + rng.integers(1, n_classes, n)) % n_classes)
    logits = rng.normal(0, 0.3, (n, n_classes))
    logits[np.arange(n), pred] += 6.0
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), y


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    p_val, y_val = overconfident(400, 0)
    p_test, y_test = overconfident(400, 1)
    t = fit_temperature(p_val, y_val)
    assert t > 1.5  # over-confident: the fitted temperature flattens
    before = expected_calibration_error(p_test, y_test)
    after = expected_calibration_error(apply_temperature(p_test, t), y_test)
    assert before > 0.2 and after < 0.08 and after < before / 3
    # The predicted class never changes.
    assert (apply_temperature(p_test, t).argmax(1) == p_test.argmax(1)).all()
    _, cal_test, record = calibrate((p_val, y_val), (p_test, y_test), CalibrationConfig())
    assert record["ece_before"] == pytest.approx(before)
    assert record["ece_after"] == pytest.approx(after, abs=1e-3)
    assert record["val_nll_after"] < record["val_nll_before"]
    assert (cal_test.argmax(1) == p_test.argmax(1)).all()


def plain_nll_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature the plain NLL gives (the fit before round 24), on a fine log grid."""
    grid = np.geomspace(0.1, 20, 2001)
    nll = [-np.log(apply_temperature(proba, t)[np.arange(len(y)), y]).mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def test_a_validation_split_the_model_gets_all_right_keeps_a_finite_temperature():
    """An under-confident model right on all 87 validation samples: the plain NLL runs the
    temperature to its bound (0.1, every call near certainty), so the test split's errors
    come with confidence ~1; the rule of succession stops near (n + 1) / (n + 2)."""
    rng = np.random.default_rng(5)

    def split(n: int, right: float) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, 3, n)
        pred = np.where(rng.random(n) < right, y, (y + 1) % 3)
        p = np.full((n, 3), 0.2)
        p[np.arange(n), pred] = 0.6
        return p, y

    p_val, y_val = split(87, 1.0)
    p_test, y_test = split(400, 0.9)
    assert plain_nll_temperature(p_val, y_val) == pytest.approx(0.1)
    t = fit_temperature(p_val, y_val)
    assert 0.15 < t < 0.5
    top = apply_temperature(p_val, t).max(1).mean()
    assert top == pytest.approx(88 / 89, abs=0.01)

    # The test errors' cost: near-certain wrong calls at the bound.
    def test_nll(temp: float) -> float:
        return float(-np.log(apply_temperature(p_test, temp)[np.arange(len(y_test)), y_test]).mean())

    assert test_nll(t) < test_nll(0.1) / 2


def test_with_errors_in_the_split_the_succession_fit_moves_the_temperature_little():
    for seed in range(3):
        p, y = overconfident(90, seed)
        plain, fitted = plain_nll_temperature(p, y), fit_temperature(p, y)
        assert fitted == pytest.approx(plain, rel=0.05)


def test_succession_nll_smooths_towards_the_runner_up():
    logp = np.log(np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]]))
    y = np.array([0, 1])  # the second sample is an error: its call (class 2) is the runner-up
    eps = 1 / 4
    want = -np.mean([(1 - eps) * logp[0, 0] + eps * logp[0, 1], (1 - eps) * logp[1, 1] + eps * logp[1, 2]])
    assert succession_nll(logp, y) == pytest.approx(want)


def test_classes_the_model_rules_out_do_not_flatten_the_calls():
    """Naive Bayes on many regions: the runner-up 5 nats behind, a third class 500 behind, all
    calls right. The fit sets p(label) near (n + 1) / (n + 2) from the runner-up's margin; the
    third class would otherwise pull T up by two orders of magnitude."""
    n = 60
    logits = np.tile([0.0, -5.0, -500.0], (n, 1))
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    t = fit_temperature(p, np.zeros(n, dtype=int))
    assert apply_temperature(p, t)[0, 0] == pytest.approx((n + 1) / (n + 2), abs=0.005)


def test_reliability_bins_give_the_same_ece_and_pool_by_adding():
    p, y = overconfident(300, 2)
    assert ece_of_bins(reliability_bins(p, y)) == pytest.approx(expected_calibration_error(p, y))
    a, b = reliability_bins(p[:100], y[:100]), reliability_bins(p[100:], y[100:])
    pooled = {k: (np.add(a[k], b[k]).tolist() if k != "edges" else a[k]) for k in a}
    assert ece_of_bins(pooled) == pytest.approx(expected_calibration_error(p, y))


def test_threshold_zero_classifies_everything_and_higher_thresholds_trade_coverage():
    p, y = overconfident(200, 3)
    p = apply_temperature(p, 4.0)  # spread the confidences
    curve = coverage_curve(p, y)
    assert curve["threshold"][0] == 0 and curve["coverage"][0] == 1.0
    assert curve["accuracy"][0] == pytest.approx((p.argmax(1) == y).mean())
    assert np.all(np.diff(curve["coverage"]) <= 0)
    _, _, rec = calibrate((p, y), (p, y), CalibrationConfig(temperature=False, threshold=0.0))
    assert rec["temperature"] == 1.0 and rec["n_classified"] == 200 and rec["coverage"] == 1.0
    _, _, rec = calibrate((p, y), (p, y), CalibrationConfig(temperature=False, threshold=0.6))
    conf = p.max(1)
    assert rec["n_classified"] == int((conf >= 0.6).sum()) < 200
    assert rec["accuracy_classified"] == pytest.approx((p.argmax(1) == y)[conf >= 0.6].mean())


def test_calibration_config_rejects_bad_values():
    assert CalibrationConfig().threshold == 0.0 and CalibrationConfig().temperature is True
    with pytest.raises(ValueError, match="threshold must be in"):
        CalibrationConfig(threshold=1.0)
    with pytest.raises(ValueError, match="n_bins"):
        CalibrationConfig(n_bins=0)
