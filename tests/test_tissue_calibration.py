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


def evidence_model(n: int, depth: float, observed: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A toy model whose calls get more often right with more evidence (depth x observed) but
    whose confidence grows far faster, as a model scoring regions as independent does: right
    with probability 0.5 + 0.45 e / (e + 3), e = depth x observed x 10; logit margin 0.8 e."""
    rng = np.random.default_rng(seed)
    e = depth * observed * 10
    y = rng.integers(0, 3, n)
    right = rng.random(n) < 0.5 + 0.45 * e / (e + 3)
    pred = np.where(right, y, (y + rng.integers(1, 3, n)) % 3)
    logits = rng.normal(0, 0.2, (n, 3))
    logits[np.arange(n), pred] += 0.8 * e
    p = np.exp(logits - logits.max(1, keepdims=True))
    return p / p.sum(1, keepdims=True), y


REGIMES = [(30.0, 1.0), (30.0, 0.1), (1.0, 1.0), (1.0, 0.1), (3.0, 0.02)]


def _regime_sets(n: int, seed: int):
    sets = [
        (*evidence_model(n, d, f, seed + i), np.full(n, f), np.full(n, d)) for i, (d, f) in enumerate(REGIMES)
    ]
    return [np.concatenate([s[j] for s in sets]) for j in range(4)], sets


def test_a_temperature_per_sample_profile_calibrates_every_regime_one_temperature_cannot():
    from genomelab.tissue.calibration import fit_profile_temperature

    (p, y, o, d), _ = _regime_sets(600, 0)
    (_, val) = _regime_sets(600, 0)
    _, test = _regime_sets(2000, 100)
    model = fit_profile_temperature(p, y, o, d)
    t_one = fit_temperature(p, y)
    one, per, oracle = [], [], []
    for (pv, yv, _, _), (pt, yt, ot, dt) in zip(val, test, strict=True):
        one.append(expected_calibration_error(apply_temperature(pt, t_one), yt))
        per.append(expected_calibration_error(apply_temperature(pt, model.of(ot, dt)), yt))
        # The best one temperature can do within the regime (fitted on its validation samples).
        oracle.append(expected_calibration_error(apply_temperature(pt, fit_temperature(pv, yv)), yt))
    assert max(one) > 0.15  # one temperature: too sure of deep samples or unsure of shallow ones
    assert max(per) < 0.06 and all(a <= b + 0.02 for a, b in zip(per, oracle, strict=True)), (per, oracle)
    # Deeper samples get the larger temperature (their confidence outgrew their accuracy).
    assert model.of(np.array([1.0]), np.array([30.0]))[0] > model.of(np.array([0.1]), np.array([1.0]))[0]


def test_a_profile_temperature_clips_to_its_range_and_round_trips():
    from genomelab.tissue.calibration import ProfileTemperature, fit_profile_temperature

    (p, y, o, d), _ = _regime_sets(300, 1)
    model = fit_profile_temperature(p, y, o, d)
    back = ProfileTemperature.from_dict(model.to_dict())
    assert back == model
    # Deeper than any validation copy (30 reads): the temperature at 30 reads.
    assert model.of(np.array([1.0]), np.array([500.0])) == pytest.approx(
        model.of(np.array([1.0]), np.array([30.0]))
    )
    # One kind of sample only: nothing to tell apart, the single temperature's fit.
    q, yq = overconfident(400, 2)
    flat = fit_profile_temperature(q, yq, np.ones(400), np.full(400, 30.0))
    assert flat.of(np.ones(1), np.full(1, 30.0))[0] == pytest.approx(fit_temperature(q, yq), rel=1e-3)


def test_calibrate_by_profile_records_the_model_and_applies_it_per_sample():
    (p, y, o, d), sets = _regime_sets(300, 3)
    val, deg = sets[0], [np.concatenate([s[j] for s in sets[1:]]) for j in range(4)]
    test = sets[0]
    cfg = CalibrationConfig()
    _, cal_test, rec = calibrate(
        (val[0], val[1]), (test[0], test[1]), cfg, tuple(deg), ((val[2], val[3]), (test[2], test[3]))
    )
    assert "temperature_model" in rec and "degraded" in rec["fitted_on"]
    off = CalibrationConfig(by_profile=False)
    _, _, rec_one = calibrate(
        (val[0], val[1]), (test[0], test[1]), off, tuple(deg), ((val[2], val[3]), (test[2], test[3]))
    )
    assert "temperature_model" not in rec_one
    # Without degraded copies (no grid): the one temperature, as before.
    _, _, rec_none = calibrate((val[0], val[1]), (test[0], test[1]), cfg)
    assert "temperature_model" not in rec_none and rec_none["temperature"] == pytest.approx(
        rec_one["temperature"]
    )


@pytest.mark.usefixtures("one_torch_thread")
def test_a_fitted_model_carries_its_profile_temperature_to_predict_and_the_grid(tmp_path):
    """fit_read_model with a grid: metrics record the temperature model, each grid point its
    reliability bins and ECE after scaling; the exported file makes predict apply the same
    per-sample temperatures."""
    import json

    from genomelab.predict.tissue import ENSEMBLE, TissuePredictor
    from genomelab.tissue.calibration import ProfileTemperature
    from genomelab.tissue.sparse import SparsityConfig, degrade
    from genomelab.tissue.training import fit_read_model
    from test_tissue_crossplatform import array_task

    data = array_task()
    sparsity = SparsityConfig(depths=[30, 1], observed=[1.0, 0.1])
    fit_read_model(data, {"latent_draws": 32, "mixture_components": [1, 2]}, tmp_path, None, sparsity, 0, 0)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    model = ProfileTemperature.from_dict(metrics["calibration"]["temperature_model"])
    assert all({"ece", "reliability"} <= set(pt) for pt in metrics["grid"])
    predictor = TissuePredictor.load(tmp_path / "model.pt")
    assert predictor.profile_temperature == model
    test = data.index("test")
    m, c = degrade(data.means[test], 1, 0.1, np.random.default_rng(0))
    got = predictor.predict_arrays(m, c)
    raw = got["model"]
    np.testing.assert_allclose(got[ENSEMBLE], apply_temperature(raw, model.of_inputs(m, c)), rtol=1e-6)
    # A sample's temperature depends on what of it was seen: complete samples get another one.
    full = predictor.temperatures(data.means[test], data.coverage[test].astype(np.float32))
    assert not np.allclose(full, model.of_inputs(m, c))


def test_profile_inputs_are_made_only_where_a_profile_temperature_is_fitted():
    """by_profile or temperature false: no degraded validation copies are predicted (the
    grid's worth of predictions would be thrown away); on: each point's copies, once."""
    from genomelab.tissue.sparse import SparsityConfig
    from genomelab.tissue.training import profile_inputs
    from test_tissue_crossplatform import array_task

    data = array_task()
    sparsity = SparsityConfig(depths=[30, 1], observed=[1.0, 0.1])
    calls = []

    def predict(means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        calls.append(len(means))
        return np.full((len(means), len(data.classes)), 1 / len(data.classes))

    for off in (CalibrationConfig(by_profile=False), CalibrationConfig(temperature=False)):
        assert profile_inputs(predict, data, sparsity, 0, off) == (None, None)
    assert calls == []
    degraded, profiles = profile_inputs(predict, data, sparsity, 0, CalibrationConfig())
    n_val = len(data.index("val"))
    assert calls == [n_val] * 4 and len(degraded[0]) == 4 * n_val
    assert len(profiles[0][0]) == n_val and len(profiles[1][0]) == len(data.index("test"))


def test_copies_of_an_all_right_split_do_not_bring_back_certainty():
    """The profile fit sees each validation sample 17 times (complete and at 16 grid points):
    the rule of succession must count the samples, not the copies, or a split the model calls
    all right at full coverage gets near-certain calls there again (round 24's bug, by
    another road)."""
    from genomelab.tissue.calibration import fit_profile_temperature

    rng = np.random.default_rng(0)
    n, n_classes = 40, 3
    y = rng.integers(0, n_classes, n)
    rows = []
    for depth, observed, margin, wrong in [(30.0, 1.0, 4.0, 0.0)] + [
        (1.0, f, 1.0, 0.3) for f in (1.0, 0.5, 0.1)
    ] * 4:
        logits = rng.normal(0, 0.3, (n, n_classes))
        call = np.where(rng.random(n) < wrong, (y + 1) % n_classes, y)
        logits[np.arange(n), call] += margin
        p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        rows.append((p, y, np.full(n, observed), np.full(n, depth)))
    p, yy, o, d = (np.concatenate([r[j] for r in rows]) for j in range(4))
    complete = rows[0][0]

    def confidence(model):
        return float(apply_temperature(complete, model.of(np.ones(n), np.full(n, 30.0))).max(1).mean())

    by_samples = confidence(fit_profile_temperature(p, yy, o, d, n_samples=n))
    by_rows = confidence(fit_profile_temperature(p, yy, o, d))
    # n right calls of n: about (n + 1) / (n + 2) = 0.976, not the 0.998 of 520 rows.
    assert by_samples < 0.985 < by_rows


def test_sample_profile_is_observed_fraction_and_median_depth():
    from genomelab.tissue.calibration import sample_profile

    means = np.array([[0.1, np.nan, 0.5, 0.2], [np.nan] * 4, [0.3, 0.3, 0.3, 0.3]], np.float32)
    coverage = np.array([[3, 0, 100, 5], [0, 0, 0, 0], [30, 30, 30, 0]], np.float32)
    observed, depth = sample_profile(means, coverage)
    # Row 3: a value with coverage 0 is not observed; row 2 covers nothing (depth 1, the floor).
    assert observed.tolist() == [0.75, 0.0, 0.75]
    # The median, not the mean: one deep region does not make row 1 deep (its mean is 36).
    assert depth.tolist() == [5.0, 1.0, 30.0]
