"""Baselines on region means, fitted on the training split and scored on the same test split.

- logistic regression (scikit-learn, multinomial, L2): the inverse regularisation ``C`` is
  chosen on the validation split from a log grid (:func:`choose_c` says how ties go), then the model fitted on the training
  split is scored on the test split (the same data the neural models see);
- nearest centroid: each class is its mean standardised profile and a sample goes to the
  closest; probabilities are those of a Gaussian with the pooled within-class variance
  (softmax of -d^2 / 2 sigma^2), the trivial reference.

Both use the training split's per-region centre and scale (missing regions at the centre).
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from genomelab.config import ConfigSection, from_schema
from genomelab.tissue.calibration import CalibrationConfig, calibrate, call_records
from genomelab.tissue.metrics import classification_metrics
from genomelab.tissue.sparse import SparsityConfig, evaluate_grid
from genomelab.tissue.task import TissueData, impute_standardise_params, standardise

logger = logging.getLogger(__name__)

LOGREG, CENTROID = "logistic regression", "nearest centroid"


@dataclass
class BaselineConfig(ConfigSection):
    """``lr_c_grid``: candidate C values (validation picks one); ``max_iter`` of lbfgs."""

    SECTION = "tissue.baselines"

    lr_c_grid: list[float] = from_schema("tissue.baselines.lr_c_grid")
    max_iter: int = from_schema("tissue.baselines.max_iter")

    def __post_init__(self) -> None:
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
    """Fit both baselines on the train split; return per-method val/test metrics (of the
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
    for name, model, params in (
        (
            LOGREG,
            logreg,
            {"C": best_c, "val_accuracy_by_C": {str(c): s["accuracy"] for c, s in scores.items()}},
        ),
        (CENTROID, centroid, {}),
    ):
        results["methods"][name] = calibrated_result(data, full_proba(model, x, n_classes), cal, params)
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

        for name, predict in ((LOGREG, lr_predict), (CENTROID, centroid_predict)):
            results["methods"][name]["grid"] = evaluate_grid(
                predict, data.means[test], data.y[test], data.samples[test], data.classes, sparsity, seed
            )
        logger.info(
            "%s: test accuracy %.3f, balanced %.3f, macro-F1 %.3f",
            name,
            results["methods"][name]["test"]["accuracy"],
            results["methods"][name]["test"]["balanced_accuracy"],
            results["methods"][name]["test"]["macro_f1"],
        )
    return results


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
