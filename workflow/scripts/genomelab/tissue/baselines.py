"""Baselines on region means, fitted on the training split and scored on the same test split.

- logistic regression (scikit-learn, multinomial, L2): the inverse regularisation ``C`` is
  chosen on the validation split from a log grid (:func:`choose_c` says how ties go), then the model fitted on the training
  split is scored on the test split (the same data the neural models see);
- logistic regression refit on the observed regions (the sparsity grid only): for each
  distinct pattern of observed regions among the degraded test samples, the same C refitted on
  the training samples restricted to those regions (:func:`refit_observed_proba`), so a
  missing region is left out rather than imputed; at most ``refit_budget`` patterns per grid
  point are refitted, the rest fall back to mean imputation (and the grid point says how many);
- nearest centroid: each class is its mean standardised profile and a sample goes to the
  closest; probabilities are those of a Gaussian with the pooled within-class variance
  (softmax of -d^2 / 2 sigma^2), the trivial reference.
- naive Bayes on read counts (:class:`ReadNaiveBayes`): per class and region a beta
  distribution of the methylation level, fitted by moments on the training split's means;
  a sample scores the beta-binomial likelihood of its methylated / total reads, summed over
  its observed regions, plus the log class prior. It needs no training on degraded data:
  a missing region is simply not in the sum, and one read weighs as one read. The read-count
  reference that sparse nanopore classifiers build on (MethyLYZR, a Bernoulli naive Bayes:
  Brändl et al., Nat Med 2025), and on real TCGA sets the strongest sparse baseline
  (docs/tissue.md, round 3).

Logistic regression and the centroid use the training split's per-region centre and scale
(missing regions at the centre).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import betaln
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from genomelab.config import ConfigSection, from_schema
from genomelab.tissue.calibration import CalibrationConfig, calibrate, call_records
from genomelab.tissue.metrics import classification_metrics
from genomelab.tissue.sparse import SparsityConfig, evaluate_grid
from genomelab.tissue.task import TissueData, impute_standardise_params, standardise

logger = logging.getLogger(__name__)

LOGREG, CENTROID = "logistic regression", "nearest centroid"
NAIVE_BAYES = "naive Bayes (read counts)"
LOGREG_REFIT = "logistic regression (refit on observed)"


@dataclass
class BaselineConfig(ConfigSection):
    """``lr_c_grid``: candidate C values (validation picks one); ``max_iter`` of lbfgs;
    ``refit_budget``: patterns of observed regions refitted per grid point (0 = no refit baseline)."""

    SECTION = "tissue.baselines"

    lr_c_grid: list[float] = from_schema("tissue.baselines.lr_c_grid")
    max_iter: int = from_schema("tissue.baselines.max_iter")
    refit_budget: int = from_schema("tissue.baselines.refit_budget")

    def __post_init__(self) -> None:
        if self.refit_budget < 0:
            raise ValueError(f"tissue.baselines.refit_budget must be >= 0, not {self.refit_budget}")
        if not self.lr_c_grid or min(self.lr_c_grid) <= 0:
            raise ValueError(f"tissue.baselines.lr_c_grid must list values > 0, not {self.lr_c_grid}")
        if self.max_iter < 1:
            raise ValueError(f"tissue.baselines.max_iter must be >= 1, not {self.max_iter}")


class CentroidClassifier:
    """Nearest centroid with Gaussian class probabilities; ``fit(x [n, R], y [n])``, ``predict_proba``."""

    def fit(self, x: np.ndarray, y: np.ndarray) -> CentroidClassifier:
        self.classes_ = np.unique(y)
        self.centroids_ = np.stack([x[y == c].mean(0) for c in self.classes_])  # [C', R]
        resid = x - self.centroids_[np.searchsorted(self.classes_, y)]
        # Pooled within-class variance per region (an isotropic Gaussian) sets the temperature.
        dof = max(len(y) - len(self.classes_), 1) * x.shape[1]
        self.sigma2_ = max(float((resid**2).sum() / dof), 1e-6)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        d2 = (x**2).sum(1)[:, None] - 2 * x @ self.centroids_.T + (self.centroids_**2).sum(1)[None]
        logits = -d2 / (2 * self.sigma2_)
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes_[self.predict_proba(x).argmax(1)]

    def predict_proba_observed(self, x: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Distances over each sample's observed regions only (``observed`` bool [n, R]), so a
        missing region neither counts for nor against a class (nearest centroid on observed
        regions, the fair reference for sparse inputs)."""
        w = observed.astype(np.float64)
        xw = np.where(observed, x, 0.0)
        c = self.centroids_
        d2 = (xw**2).sum(1)[:, None] - 2 * xw @ c.T + w @ (c**2).T
        logits = -d2 / (2 * self.sigma2_)
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(1, keepdims=True)


class ReadNaiveBayes:
    """Beta-binomial naive Bayes on read counts; ``fit(means [n, R], y [n], n_classes)``,
    ``predict_proba(means [m, R], coverage [m, R]) -> [m, C]``.

    Per class c and region r, Beta(a, b) with a + b = m (1 - m) / v - 1 from the class's mean m
    and variance v of the training means (clipped to [``min_concentration``,
    ``max_concentration``]: a class whose samples agree exactly would otherwise get an
    infinitely sharp beta); a class with fewer than 2 samples at a region takes the pooled
    within-class variance there. A region with k of d reads methylated (k = mean x d, rounded)
    adds log B(k + a, d - k + b) - log B(a, b) (the binomial coefficient is the same for every
    class); unobserved regions (NaN mean or no reads) add nothing.
    """

    def __init__(
        self, min_concentration: float = 0.5, max_concentration: float = 1e4, block: int = 256
    ) -> None:
        self.min_concentration = min_concentration
        self.max_concentration = max_concentration
        self.block = block  # samples scored at once: memory [block, R] per class

    def fit(self, means: np.ndarray, y: np.ndarray, n_classes: int) -> ReadNaiveBayes:
        x = np.clip(np.asarray(means, np.float32), 1e-3, 1 - 1e-3)  # float32: [n, R] copies stay small
        n_per = np.stack([np.isfinite(x[y == c]).sum(0) for c in range(n_classes)])  # [C, R]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: handled below
            m = np.stack(
                [
                    np.nanmean(x[y == c], 0) if (y == c).any() else np.full(x.shape[1], np.nan)
                    for c in range(n_classes)
                ]
            )
            v = np.stack(
                [
                    np.nanvar(x[y == c], 0) if (y == c).any() else np.full(x.shape[1], np.nan)
                    for c in range(n_classes)
                ]
            )
            resid = x - m[y]
            pooled = np.nansum(resid**2, 0) / np.maximum(np.isfinite(resid).sum(0) - n_classes, 1)
        overall = np.nanmean(x, 0) if np.isfinite(x).any() else np.full(x.shape[1], 0.5)
        # A class never observed at a region carries no information there: the overall mean
        # and the pooled variance make its likelihood about the same as the other classes'.
        m = np.where(np.isfinite(m), m, np.nan_to_num(overall, nan=0.5)[None])
        v = np.where(n_per >= 2, v, np.nan_to_num(pooled, nan=0.0)[None])
        phi = np.clip(m * (1 - m) / np.maximum(v, 1e-6) - 1, self.min_concentration, self.max_concentration)
        self.a_, self.b_ = m * phi, (1 - m) * phi  # [C, R]
        counts = np.bincount(y, minlength=n_classes).astype(np.float64)
        # Laplace-smoothed prior: a class absent from training keeps a finite log prior.
        self.log_prior_ = np.log((counts + 1) / (counts.sum() + n_classes))
        return self

    def log_likelihood(self, means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        """[m, C] summed log-likelihood of each sample's reads plus the log prior."""
        means, coverage = np.asarray(means, np.float64), np.asarray(coverage, np.float64)
        if means.shape != coverage.shape or means.shape[-1] != self.a_.shape[1]:
            raise ValueError(
                f"naive Bayes: means {means.shape} and coverage {coverage.shape} must both be "
                f"[samples, {self.a_.shape[1]} regions]"
            )
        out = np.empty((len(means), self.a_.shape[0]))
        norm = betaln(self.a_, self.b_)  # [C, R]
        for lo in range(0, len(means), self.block):
            mb, cb = means[lo : lo + self.block], coverage[lo : lo + self.block]
            obs = np.isfinite(mb) & (cb > 0)
            d = np.where(obs, cb, 0.0)
            k = np.where(obs, np.rint(np.nan_to_num(mb) * d), 0.0)
            for c in range(self.a_.shape[0]):
                # k = d = 0 where unobserved, so the term is log B(a, b) - log B(a, b) = 0.
                out[lo : lo + self.block, c] = (betaln(k + self.a_[c], d - k + self.b_[c]) - norm[c]).sum(1)
        return out + self.log_prior_[None]

    def predict_proba(self, means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        ll = self.log_likelihood(means, coverage)
        ll -= ll.max(1, keepdims=True)
        p = np.exp(ll)
        return p / p.sum(1, keepdims=True)


def full_proba(model: Any, x: np.ndarray, n_classes: int) -> np.ndarray:
    """[n, C] probabilities over all task classes (a class missing from training gets 0)."""
    proba = np.zeros((len(x), n_classes))
    proba[:, model.classes_] = model.predict_proba(x)
    return proba


def fit_logreg(x: np.ndarray, y: np.ndarray, c: float, max_iter: int, seed: int = 0) -> LogisticRegression:
    model = LogisticRegression(C=c, max_iter=max_iter, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        # Not fatal (the fit is usable), but the reader should know the grid point is unconverged.
        logger.warning("logistic regression (C=%g) did not converge in %d iterations", c, max_iter)
    return model


def refit_observed_proba(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    observed: np.ndarray,
    fallback: LogisticRegression,
    c: float,
    n_classes: int,
    budget: int,
    max_iter: int = 2000,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, int]]:
    """Class probabilities [n, C] of test samples ``x_test`` [n, R] (standardised, missing at
    0) from logistic regressions refitted on ``x_train`` [m, R] restricted to each sample's
    observed regions (``observed`` bool [n, R]). Samples sharing a pattern share one fit; the
    ``budget`` most frequent patterns are refitted, the others (and a pattern with no observed
    region, or every region, where refitting changes nothing) use ``fallback``, the
    mean-imputed model. Returns the probabilities and counts ``refits``, ``fallback_samples``."""
    patterns, inverse, counts = np.unique(observed, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    proba = full_proba(fallback, x_test, n_classes)
    n_regions = observed.shape[1]
    refits, fallback_samples = 0, 0
    for i in np.argsort(-counts, kind="stable"):
        rows = inverse == i
        n_obs = int(patterns[i].sum())
        if n_obs in (0, n_regions):
            continue  # nothing to fit on, or the fallback is this very fit
        if refits >= budget:
            fallback_samples += int(rows.sum())
            continue
        cols = patterns[i]
        model = fit_logreg(x_train[:, cols], y_train, c, max_iter, seed)
        proba[rows] = full_proba(model, x_test[rows][:, cols], n_classes)
        refits += 1
    if fallback_samples:
        logger.info(
            "refit on observed: %d patterns refitted, %d samples past the budget imputed",
            refits,
            fallback_samples,
        )
    return proba, {"refits": refits, "fallback_samples": fallback_samples}


def choose_c(scores: dict[float, dict[str, float]]) -> float:
    """The C of the best validation accuracy; ties (common on small validation sets) go to the
    lower validation NLL, then to the smaller C (stronger regularisation, the simpler model)."""
    return min(scores, key=lambda c: (-scores[c]["accuracy"], scores[c]["nll"], c))


def calibrated_result(
    data: TissueData, proba: np.ndarray, cal: CalibrationConfig, params: dict[str, Any]
) -> dict[str, Any]:
    """A method's metrics record from its probabilities [n, C] over all task rows: temperature
    fitted on val, val/test metrics of the calibrated probabilities (``ece_uncalibrated``
    beside ``ece``), the calibration record and the test predictions with confidences."""
    val, test = data.index("val"), data.index("test")
    p_val, p_test, record = calibrate((proba[val], data.y[val]), (proba[test], data.y[test]), cal)
    metrics = {
        "val": classification_metrics(data.y[val], p_val, data.classes),
        "test": classification_metrics(data.y[test], p_test, data.classes),
    }
    metrics["test"]["ece_uncalibrated"] = record["ece_before"]
    return {
        "params": params,
        **metrics,
        "calibration": record,
        "predictions": {**data.predictions("test", p_test), **call_records(p_test, cal.threshold)},
    }


def run_baselines(
    data: TissueData,
    cfg: BaselineConfig,
    seed: int = 0,
    cal: CalibrationConfig | None = None,
    sparsity: SparsityConfig | None = None,
) -> dict[str, Any]:
    """Fit the baselines on the train split; return per-method val/test metrics (of the
    probabilities calibrated on val, ``cal``) and predictions, and with ``sparsity`` each
    method's accuracy on the degraded test samples of every grid point (``grid``)."""
    cal = cal or CalibrationConfig()
    train, val = data.index("train"), data.index("val")
    mu, sd = impute_standardise_params(data.means[train])
    x = standardise(data.means, mu, sd)
    n_classes = len(data.classes)
    results: dict[str, Any] = {"classes": data.classes.tolist(), "methods": {}}

    scores = {}
    for c in cfg.lr_c_grid:
        model = fit_logreg(x[train], data.y[train], c, cfg.max_iter, seed)
        scores[c] = classification_metrics(data.y[val], full_proba(model, x[val], n_classes), data.classes)
        logger.info(
            "logistic regression C=%g: val accuracy %.3f, nll %.3f",
            c,
            scores[c]["accuracy"],
            scores[c]["nll"],
        )
    best_c = choose_c(scores)
    logreg = fit_logreg(x[train], data.y[train], best_c, cfg.max_iter, seed)
    centroid = CentroidClassifier().fit(x[train], data.y[train])
    bayes = ReadNaiveBayes().fit(data.means[train], data.y[train], n_classes)
    for name, model, params in (
        (
            LOGREG,
            logreg,
            {"C": best_c, "val_accuracy_by_C": {str(c): s["accuracy"] for c, s in scores.items()}},
        ),
        (CENTROID, centroid, {}),
    ):
        results["methods"][name] = calibrated_result(data, full_proba(model, x, n_classes), cal, params)
    results["methods"][NAIVE_BAYES] = calibrated_result(
        data, bayes.predict_proba(data.means, data.coverage), cal, {"model": "beta-binomial, moments"}
    )
    if sparsity is not None and sparsity.points():
        test = data.index("test")

        def lr_predict(means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
            # Mean imputation: an unobserved region sits at the training mean (z = 0).
            return full_proba(logreg, standardise(means, mu, sd), n_classes)

        def centroid_predict(means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
            proba = np.zeros((len(means), n_classes))
            proba[:, centroid.classes_] = centroid.predict_proba_observed(
                standardise(means, mu, sd), np.isfinite(means)
            )
            return proba

        for name, predict in (
            (LOGREG, lr_predict),
            (CENTROID, centroid_predict),
            (NAIVE_BAYES, bayes.predict_proba),
        ):
            results["methods"][name]["grid"] = evaluate_grid(
                predict, data.means[test], data.y[test], data.samples[test], data.classes, sparsity, seed
            )
        if cfg.refit_budget > 0:
            results["grid_methods"] = {
                LOGREG_REFIT: _refit_grid(data, x, logreg, best_c, cfg, sparsity, (mu, sd), seed)
            }
        logger.info(
            "%s: test accuracy %.3f, balanced %.3f, macro-F1 %.3f",
            name,
            results["methods"][name]["test"]["accuracy"],
            results["methods"][name]["test"]["balanced_accuracy"],
            results["methods"][name]["test"]["macro_f1"],
        )
    return results


def _refit_grid(
    data: TissueData,
    x: np.ndarray,
    logreg: LogisticRegression,
    c: float,
    cfg: BaselineConfig,
    sparsity: SparsityConfig,
    scale: tuple[np.ndarray, np.ndarray],
    seed: int,
) -> dict[str, Any]:
    """The grid of logistic regression refitted on each test pattern's observed regions
    (``x`` [n, R]: standardised means of all task rows; ``scale``: the training mu and sd)."""
    train, test = data.index("train"), data.index("test")
    counts: list[dict[str, int]] = []

    def refit_predict(means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        proba, count = refit_observed_proba(
            x[train],
            data.y[train],
            standardise(means, *scale),
            np.isfinite(means),
            logreg,
            c,
            len(data.classes),
            cfg.refit_budget,
            cfg.max_iter,
            seed,
        )
        counts.append(count)
        return proba

    grid = evaluate_grid(
        refit_predict, data.means[test], data.y[test], data.samples[test], data.classes, sparsity, seed
    )
    for point, count in zip(grid, counts, strict=True):
        point.update(count)
    return {"params": {"C": c, "refit_budget": cfg.refit_budget}, "grid": grid}


def write_baselines(
    features_h5: str | os.PathLike,
    splits: str | os.PathLike,
    cfg: BaselineConfig,
    seed: int,
    out_json: str | os.PathLike,
    select_regions: int = 0,
    cal: CalibrationConfig | None = None,
    sparsity: SparsityConfig | None = None,
) -> dict[str, Any]:
    """:func:`run_baselines` on the task of the features file and splits table (the
    ``select_regions`` best regions of its training split, 0 = all), written as metrics JSON."""
    from genomelab.io.metrics import Metrics, write_metrics
    from genomelab.tissue.task import load_task

    results = run_baselines(load_task(features_h5, splits, select_regions), cfg, seed, cal, sparsity)
    write_metrics(out_json, Metrics(results, str(out_json)))
    return results
