"""Calibrated, abstaining calls: temperature scaling, reliability bins and the coverage curve.

A classifier's top probability should mean what it says: of the samples called with
confidence 0.9, nine in ten should be right. Label smoothing, dropout and ensembling leave
the tissue models under-confident, logistic regression's L2 penalty can leave it either way,
so each method's probabilities are rescaled by one temperature T fitted on the validation
split (Guo et al. 2017, ICML): p_T = softmax(log p / T). T only sharpens or flattens the
probabilities, so the predicted class, accuracy and the paired tests do not change.

A call below ``threshold`` (top calibrated probability) is reported "not classifiable", as
diagnostic methylation classifiers report samples below their calibrated score cut-off; the
coverage curve (fraction classified and accuracy among them, per threshold) shows what a
threshold costs.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from genomelab.config import ConfigSection, from_schema

logger = logging.getLogger(__name__)

# Thresholds of the written coverage curve: 0 (classify all) to 0.99.
CURVE_THRESHOLDS = tuple(round(t, 2) for t in np.r_[np.arange(0.0, 0.95, 0.05), 0.95, 0.99])
EPS = 1e-12


@dataclass
class CalibrationConfig(ConfigSection):
    """``temperature``: fit T on validation; ``threshold``: top calibrated probability below
    which a sample is not classifiable (0 = classify all); ``n_bins`` of ECE and the diagram."""

    SECTION = "tissue.calibration"

    temperature: bool = from_schema("tissue.calibration.temperature")
    by_profile: bool = from_schema("tissue.calibration.by_profile")
    threshold: float = from_schema("tissue.calibration.threshold")
    n_bins: int = from_schema("tissue.calibration.n_bins")

    def __post_init__(self) -> None:
        if not 0 <= self.threshold < 1:
            raise ValueError(f"tissue.calibration.threshold must be in [0, 1), not {self.threshold}")
        if self.n_bins < 1:
            raise ValueError(f"tissue.calibration.n_bins must be >= 1, not {self.n_bins}")


def apply_temperature(proba: np.ndarray, temperature: float | np.ndarray) -> np.ndarray:
    """softmax(log p / T), rows of ``proba`` [n, C]: T > 1 flattens, T < 1 sharpens; ``temperature``
    one T, or one per row [n]."""
    t = np.asarray(temperature, np.float64)
    logits = np.log(np.clip(proba, EPS, 1.0)) / (t[:, None] if t.ndim else t)
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def _nll(proba: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(proba[np.arange(len(y)), y], EPS, 1.0)).mean())


def succession_nll(log_proba: np.ndarray, y: np.ndarray, n_samples: int | None = None) -> float:
    """Cross-entropy of ``log_proba`` [n, C] (natural-log probabilities) against the labels
    ``y`` [n] smoothed by Laplace's rule of succession: 1 - eps on each sample's label and eps
    on its most probable other class (its runner-up, or the wrong call it made), eps = 1 / (n
    + 2).

    Why not the plain NLL: fitted on a split the model gets all right, the plain NLL keeps
    falling as the probabilities sharpen, so a temperature fitted to it runs to the bound of
    its search (seen on TCGA IDH-wt: a fold whose 87 validation samples were all right got
    T = 0.1, log-probabilities x 10), and the test split's errors then come with confidence
    near 1. After n right calls of n, the rule of succession's estimate that the next one is
    right is (n + 1) / (n + 2), not 1; with the smoothed targets one sample whose label leads
    its runner-up by a margin g would be fitted best at p(label) = 1 - eps, so the fit has a
    finite optimum (with one T for samples of different margins, their mean confidence lands
    near, not at, 1 - eps). Why the runner-up and not every other class alike: a top-label
    error is a call of the runner-up, and spreading eps over classes the model rules out (down
    at the 1e-12 floor of :func:`apply_temperature`, 27.6 nats) would flatten every call to
    lift those. It also tempers fits with a few errors of small margin, where the plain NLL's
    optimum can still sit at the bound (IDH-wt, seed 9: logistic regression reached T = 0.1 on
    a fold with 2 errors in 87, test NLL 0.415 for the seed against 0.188 with the smoothing).
    Where the split has more errors, eps (about 0.01 for 90 samples) moves the temperature little
    (``tests/test_tissue_calibration.py``). The read-profile model's family temperatures are
    fitted on several draws of each validation sample, and n counts the draws there: a weaker
    pull. ``n_samples``: the n of eps where rows are copies of fewer samples (the profile
    temperature's degraded validation copies: 17 rows per sample would make eps 17 times
    smaller, and the complete samples' confidence near certainty again)."""
    n, n_classes = log_proba.shape
    own = log_proba[np.arange(n), y]
    if n_classes < 2 or n == 0:
        return float(-own.mean()) if n else 0.0
    eps = 1.0 / ((n if n_samples is None else n_samples) + 2)
    others = log_proba.copy()
    others[np.arange(n), y] = -np.inf
    return float(-((1 - eps) * own + eps * others.max(axis=1)).mean())


def fit_temperature(proba: np.ndarray, y: np.ndarray, n_samples: int | None = None) -> float:
    """The T in [0.1, 20] minimising :func:`succession_nll` of ``y`` [n] under
    ``apply_temperature(proba, T)`` (a 1-D bounded search over log T; convex in 1/T)."""
    from scipy.optimize import minimize_scalar

    if len(y) == 0:
        raise ValueError("temperature scaling needs validation samples (the split has none)")
    res = minimize_scalar(
        lambda log_t: succession_nll(
            np.log(np.clip(apply_temperature(proba, float(np.exp(log_t))), EPS, 1.0)), y, n_samples
        ),
        bounds=(np.log(0.1), np.log(20.0)),
        method="bounded",
        options={"xatol": 1e-4},
    )
    return float(np.exp(res.x))


def sample_profile(means: np.ndarray, coverage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(observed fraction [S], reads per observed region [S]) of means [S, R] (NaN = uncovered)
    and coverage [S, R]: the median coverage over the covered regions (1 where a sample covers
    none), so a few deep regions do not make a shallow sample look deep."""
    coverage = np.asarray(coverage)
    covered = np.isfinite(means) & (coverage > 0)
    n_covered = covered.sum(1)
    observed = n_covered / max(means.shape[1], 1)
    depth = np.ones(len(means))
    # Row by row over the covered values only: on every prediction's path (predict, serve),
    # and 2-7x faster than a NaN-masked float64 copy through nanmedian.
    for i in np.flatnonzero(n_covered):
        depth[i] = np.median(coverage[i][covered[i]])
    return observed, depth


def _profile_terms(observed: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """[S, 5]: u = log observed fraction, v = log reads per observed region, u v, u^2, v^2."""
    u = np.log(np.maximum(np.asarray(observed, np.float64), 1e-6))
    v = np.log(np.maximum(np.asarray(depth, np.float64), 1.0))
    return np.stack([u, v, u * v, u**2, v**2], 1)


# The range of a per-sample temperature (the one-temperature search's is [0.1, 20]).
LOG_T_RANGE = (float(np.log(0.05)), float(np.log(50.0)))


@dataclass
class ProfileTemperature:
    """One temperature per sample from how much of it was seen: log T = a + w . z, z the
    standardised terms of u = log(fraction of regions observed) and v = log(reads per
    observed region): u, v, u v, u^2, v^2 (:func:`_profile_terms`). u and v are clipped to
    the range they were fitted on (``lo``, ``hi``), so an input deeper or sparser than any
    validation copy gets the edge's temperature, not an extrapolation.

    Why: a model's confidence grows with the evidence in a sample, but not as its training
    assumed. The read-profile model scores regions as independent, so with every region at
    30 reads it is far too sure, and one temperature fitted on complete validation samples
    (T 3.6-5.3 on the IDH-wt folds, 6.3-8.2 on G-CIMP's) then leaves a sample of one read at
    10% of its regions under-confident (accuracy 0.80 / 0.94 on IDH-wt / G-CIMP, mean
    confidence 0.41-0.55; pooled ECE up to 0.39 at the grid's points over 20 IDH-wt fold
    seeds). Fitted on validation samples degraded to
    every grid point as well as complete, T follows the sample's kind of data: pooled ECE at
    most 0.032 at any point (round 25, docs/tissue.md, which also compares a linear form, 0.057,
    and a form in the total reads alone, 0.151). A model whose confidence already tracks the
    evidence gets w = 0, the single temperature, back."""

    a: float
    w: tuple[float, ...]
    mu: tuple[float, ...]
    sd: tuple[float, ...]
    lo: tuple[float, float]
    hi: tuple[float, float]

    def of(self, observed: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Temperature [S] of samples of these observed fractions and depths [S]."""
        u = np.clip(np.log(np.maximum(np.asarray(observed, np.float64), 1e-6)), self.lo[0], self.hi[0])
        v = np.clip(np.log(np.maximum(np.asarray(depth, np.float64), 1.0)), self.lo[1], self.hi[1])
        z = (_profile_terms(np.exp(u), np.exp(v)) - np.asarray(self.mu)) / np.asarray(self.sd)
        return np.exp(np.clip(self.a + z @ np.asarray(self.w), *LOG_T_RANGE))

    def of_inputs(self, means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        """Temperature [S] of samples given as means [S, R] and coverage [S, R]."""
        return self.of(*sample_profile(means, coverage))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ProfileTemperature:
        return cls(
            float(d["a"]),
            *(tuple(float(x) for x in d[k]) for k in ("w", "mu", "sd", "lo", "hi")),  # type: ignore[arg-type]
        )


def fit_profile_temperature(
    proba: np.ndarray,
    y: np.ndarray,
    observed: np.ndarray,
    depth: np.ndarray,
    n_samples: int | None = None,
) -> ProfileTemperature:
    """The :class:`ProfileTemperature` minimising :func:`succession_nll` of ``y`` [n] under
    per-sample temperatures (``proba`` [n, C]; each sample's ``observed`` fraction and
    ``depth`` [n]); L-BFGS from the single temperature's fit (w = 0), which it keeps unless it
    finds a lower loss. ``n_samples``: how many distinct samples the rows are copies of (the
    rule of succession's n; None: the rows)."""
    from scipy.optimize import minimize

    if len(y) == 0:
        raise ValueError("temperature scaling needs validation samples (the split has none)")
    terms = _profile_terms(observed, depth)
    mu, sd = terms.mean(0), terms.std(0)
    sd = np.where(sd > 1e-9, sd, 1.0)  # a constant term (one depth, one fraction) stays at 0
    z = (terms - mu) / sd
    logp = np.log(np.clip(proba, EPS, 1.0))

    def loss(theta: np.ndarray) -> float:
        log_t = np.clip(theta[0] + z @ theta[1:], *LOG_T_RANGE)
        x = logp / np.exp(log_t)[:, None]
        x = x - x.max(1, keepdims=True)
        return succession_nll(x - np.log(np.exp(x).sum(1, keepdims=True)), y, n_samples)

    start = np.r_[np.log(fit_temperature(proba, y, n_samples)), np.zeros(z.shape[1])]
    res = minimize(loss, start, method="L-BFGS-B")
    theta = res.x if res.fun <= loss(start) else start
    u, v = terms[:, 0], terms[:, 1]
    return ProfileTemperature(
        float(theta[0]),
        tuple(float(x) for x in theta[1:]),
        tuple(float(x) for x in mu),
        tuple(float(x) for x in sd),
        (float(u.min()), float(v.min())),
        (float(u.max()), float(v.max())),
    )


def reliability_bins(proba: np.ndarray, y: np.ndarray, n_bins: int = 10) -> dict[str, list[float]]:
    """Per equal-width confidence bin: ``count``, ``correct`` and ``confidence`` sums (sums, so
    folds pool by adding) and the bin ``edges`` [n_bins + 1]."""
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    return {
        "edges": np.linspace(0, 1, n_bins + 1).tolist(),
        "count": np.bincount(bins, minlength=n_bins).astype(float).tolist(),
        "correct": np.bincount(bins, weights=correct, minlength=n_bins).tolist(),
        "confidence": np.bincount(bins, weights=conf, minlength=n_bins).tolist(),
    }


def ece_of_bins(bins: dict[str, list[float]]) -> float:
    """Expected calibration error of (pooled) reliability bins."""
    count = np.asarray(bins["count"])
    gap = np.abs(np.asarray(bins["correct"]) - np.asarray(bins["confidence"]))
    return float(gap.sum() / max(count.sum(), 1))


def coverage_curve(
    proba: np.ndarray, y: np.ndarray, thresholds: tuple[float, ...] = CURVE_THRESHOLDS
) -> dict[str, list[float]]:
    """Per threshold t: ``n_classified`` (top probability >= t), ``n_correct`` among them, and
    ``n``, so folds pool by adding; ``coverage`` and ``accuracy`` (NaN when none classified)."""
    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y
    n_cls = [int((conf >= t).sum()) for t in thresholds]
    n_cor = [int((correct & (conf >= t)).sum()) for t in thresholds]
    return finish_curve(
        {"threshold": list(thresholds), "n_classified": n_cls, "n_correct": n_cor, "n": len(y)}
    )


def finish_curve(curve: dict[str, Any]) -> dict[str, Any]:
    """Add ``coverage`` and ``accuracy`` to a curve of counts (after pooling)."""
    n_cls, n_cor = np.asarray(curve["n_classified"], float), np.asarray(curve["n_correct"], float)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(n_cls > 0, n_cor / n_cls, np.nan)
    return {**curve, "coverage": (n_cls / max(curve["n"], 1)).tolist(), "accuracy": acc.tolist()}


def calibrate(
    val: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    cfg: CalibrationConfig,
    degraded: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    profiles: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit the temperature on ``val`` = (proba [n_val, C], y [n_val]) and apply it.

    With ``cfg.by_profile``, ``degraded`` (the validation samples degraded to the grid's
    points: proba [m, C], y [m], observed fraction [m], depth [m]) and ``profiles`` (observed
    fraction and depth of the complete validation and test samples), the temperature is a
    :class:`ProfileTemperature` fitted on the complete and degraded validation samples
    together, applied per sample (``temperature_model`` in the record).

    Returns the calibrated validation and test probabilities and a record: ``temperature``
    (1 when off), test ECE before and after, the test reliability bins before and after, the
    coverage curve and, at ``cfg.threshold``, the coverage and accuracy of the calls made.
    """
    (p_val, y_val), (p_test, y_test) = val, test
    model = None
    if cfg.temperature and cfg.by_profile and degraded is not None and profiles is not None:
        (o_val, d_val), (o_test, d_test) = profiles
        p_deg, y_deg, o_deg, d_deg = degraded
        model = fit_profile_temperature(
            np.concatenate([p_val, p_deg]),
            np.concatenate([y_val, y_deg]),
            np.concatenate([o_val, o_deg]),
            np.concatenate([d_val, d_deg]),
            # The copies are draws of the same samples: the rule of succession counts samples.
            n_samples=len(y_val),
        )
        t_val, t_test = model.of(o_val, d_val), model.of(o_test, d_test)
        t = float(np.median(t_val)) if len(t_val) else 1.0
    else:
        t = fit_temperature(p_val, y_val) if cfg.temperature else 1.0
        t_val = t_test = np.asarray(t)
    cal_val, cal_test = apply_temperature(p_val, t_val), apply_temperature(p_test, t_test)
    before = reliability_bins(p_test, y_test, cfg.n_bins)
    after = reliability_bins(cal_test, y_test, cfg.n_bins)
    conf = cal_test.max(axis=1)
    called = conf >= cfg.threshold
    right = cal_test.argmax(axis=1) == y_test
    record = {
        # One temperature: the one T; by profile, the median of the complete validation samples'.
        "temperature": t,
        "fitted_on": "validation split"
        + ("" if model is None else ", complete and degraded to the grid's points"),
        "val_nll_before": _nll(p_val, y_val),
        "val_nll_after": _nll(cal_val, y_val),
        "ece_before": ece_of_bins(before),
        "ece_after": ece_of_bins(after),
        "reliability_before": before,
        "reliability_after": after,
        "coverage_curve": coverage_curve(cal_test, y_test),
        "threshold": cfg.threshold,
        "n_test": len(y_test),
        "n_classified": int(called.sum()),
        "coverage": float(called.mean()) if len(y_test) else float("nan"),
        "accuracy_classified": float(right[called].mean()) if called.any() else float("nan"),
    }
    if model is not None:
        record["temperature_model"] = model.to_dict()
    logger.info(
        "temperature %.3g (validation NLL %.3f -> %.3f); test ECE %.3f -> %.3f; threshold %.2f "
        "classifies %d of %d",
        t,
        record["val_nll_before"],
        record["val_nll_after"],
        record["ece_before"],
        record["ece_after"],
        cfg.threshold,
        record["n_classified"],
        len(y_test),
    )
    return cal_val, cal_test, record


def call_records(proba: np.ndarray, threshold: float) -> dict[str, list]:
    """Per-sample ``confidence`` (top calibrated probability) and ``classifiable`` (>= threshold)."""
    conf = proba.max(axis=1)
    return {"confidence": conf.tolist(), "classifiable": (conf >= threshold).tolist()}
