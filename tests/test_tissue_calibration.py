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
