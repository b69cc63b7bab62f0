"""Classification metrics shared by baselines and models, computed from class probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

# Headline metrics of the comparison table, in display order.
# ``ece`` is after temperature scaling on validation, ``ece_uncalibrated`` before it.
HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "ece", "ece_uncalibrated", "nll")


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, n_bins: int = 10) -> float:
    """Top-label ECE: mean |accuracy - confidence| over equal-width confidence bins, weighted by size.

    ``proba`` float [n, C] rows summing to 1, ``y`` int [n].
    """
    conf = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y).astype(float)
    # Bin edges (0, 1/n, ..., 1]; a confidence of exactly 1 falls in the last bin.
    bins = np.clip(np.ceil(conf * n_bins).astype(int) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    acc = np.bincount(bins, weights=correct, minlength=n_bins)
    avg_conf = np.bincount(bins, weights=conf, minlength=n_bins)
    nonzero = counts > 0
    gap = np.abs(acc[nonzero] - avg_conf[nonzero])
    return float(gap.sum() / max(len(y), 1))


def confusion_matrix(y: np.ndarray, pred: np.ndarray, n_classes: int) -> np.ndarray:
    """int64 [C, C]: rows are true classes, columns predictions."""
    return np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_metrics(y: np.ndarray, proba: np.ndarray, classes: np.ndarray) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, per-class precision/recall/F1, ECE, NLL, confusion.

    Balanced accuracy and macro-F1 average over the classes present in ``y`` (a class absent
    from a small test split would otherwise count as 0).
    """
    y = np.asarray(y, dtype=np.int64)
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape != (len(y), len(classes)):
        raise ValueError(f"probabilities must be [n={len(y)}, C={len(classes)}], got {proba.shape}")
    n_classes = len(classes)
    pred = proba.argmax(axis=1)
    cm = confusion_matrix(y, pred, n_classes)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    tp = np.diag(cm).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, np.nan)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    present = support > 0
    p_true = np.clip(proba[np.arange(len(y)), y], 1e-12, 1.0)
    per_class = {
        str(c): {
            "precision": float(precision[i]),
            "recall": float(recall[i]) if present[i] else None,
            "f1": float(f1[i]) if present[i] else None,
            "support": int(support[i]),
        }
        for i, c in enumerate(classes)
    }
    return {
        "n": len(y),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "balanced_accuracy": float(np.nanmean(recall[present])) if present.any() else float("nan"),
        "macro_f1": float(np.mean(f1[present])) if present.any() else float("nan"),
        "ece": expected_calibration_error(proba, y),
        "nll": float(-np.log(p_true).mean()) + 0.0,  # + 0.0 turns -0.0 into 0.0
        "n_predicted_classes": int(len(np.unique(pred))),
        "per_class": per_class,
        "confusion": cm.tolist(),
        "classes": [str(c) for c in classes],
    }


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics that go into the comparison table."""
    return {k: float(metrics[k]) for k in HEADLINE if k in metrics}
