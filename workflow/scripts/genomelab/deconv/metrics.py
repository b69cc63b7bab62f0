"""Deconvolution metrics: errors, presence calls, spurious calls and the detection limit.

Conventions (the same for NNLS and both networks, so rows of a comparison are comparable):

- a tissue is *called* in a sample when its predicted proportion is >= ``call`` (1%);
- it is *present* when its true proportion is >= ``call``; *absent* when exactly 0;
- a *spurious call* is an absent tissue that is called;
- a *missed call* is a present tissue predicted below half the call level (< 0.5% for a
  1% call), as the MethAtlas/UXM literature scores it;
- detection rate in a bin of true fractions = share of (sample, tissue) pairs with a true
  fraction in the bin that are called; the *detection limit* is the lower edge of the
  lowest bin from which on every bin reaches ``detection_rate`` (90%).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_BINS = (0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 1.0001)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two vectors; NaN when either is constant."""
    a, b = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if len(a) < 2 or a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def detection_table(
    true: np.ndarray, pred: np.ndarray, call: float, bins: Sequence[float] = DEFAULT_BINS, rate: float = 0.9
) -> tuple[list[dict[str, Any]], float | None]:
    """Per-bin detection rates of present fractions and the detection limit (or None)."""
    rows = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = (true >= lo) & (true < hi)
        n = int(sel.sum())
        rows.append(
            {
                "low": float(lo),
                "high": float(min(hi, 1.0)),
                "n": n,
                "rate": float((pred[sel] >= call).mean()) if n else None,
            }
        )
    limit = None
    for i in range(len(rows) - 1, -1, -1):
        r = rows[i]["rate"]
        if r is None:
            continue
        if r < rate:
            break
        limit = rows[i]["low"]
    return rows, limit


def per_sample(true: np.ndarray, pred: np.ndarray, call: float = 0.01) -> dict[str, np.ndarray]:
    """Per-mixture [N] absolute error (mean over tissues), spurious and missed calls: the
    paired observations of model-vs-baseline tests on the same mixtures."""
    true, pred = np.asarray(true, float), np.asarray(pred, float)
    spurious = ((true == 0) & (pred >= call)).sum(1)
    missed = ((true >= call) & (pred < call / 2)).sum(1)
    return {
        "abs_error": np.abs(pred - true).mean(1),
        "spurious": spurious.astype(float),
        "missed": missed.astype(float),
        "wrong_calls": (spurious + missed).astype(float),
    }


def deconv_metrics(
    true: np.ndarray,
    pred: np.ndarray,
    tissues: Sequence[str],
    call: float = 0.01,
    bins: Sequence[float] = DEFAULT_BINS,
    detection_rate: float = 0.9,
) -> dict[str, Any]:
    """All metrics of predictions ``pred`` [N, T] against ``true`` [N, T]."""
    true, pred = np.asarray(true, float), np.asarray(pred, float)
    if true.shape != pred.shape or true.ndim != 2 or true.shape[1] != len(tissues):
        raise ValueError(
            f"true {true.shape} and predicted {pred.shape} proportions must be [n, {len(tissues)}]"
        )
    if not np.isfinite(pred).all():
        raise ValueError("predicted proportions contain NaN or inf")
    err = pred - true
    present, called, absent = true >= call, pred >= call, true == 0
    tp = int((present & called).sum())
    fp = int((~present & called).sum())
    fn = int((present & ~called).sum())
    detection, limit = detection_table(true, pred, call, bins, detection_rate)
    per_tissue = {
        t: {
            "mae": float(np.abs(err[:, i]).mean()),
            "rmse": float(np.sqrt((err[:, i] ** 2).mean())),
            "pearson_r": pearson(true[:, i], pred[:, i]),
            "spurious_rate": float((absent[:, i] & called[:, i]).sum() / max(1, absent[:, i].sum())),
            "missed_rate": float(
                (present[:, i] & (pred[:, i] < call / 2)).sum() / max(1, present[:, i].sum())
            ),
        }
        for i, t in enumerate(tissues)
    }
    return {
        "n_samples": int(len(true)),
        "mae": float(np.abs(err).mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "pearson_r": pearson(true, pred),
        "presence_accuracy": float((present == called).mean()),
        "presence_precision": tp / (tp + fp) if tp + fp else float("nan"),
        "presence_recall": tp / (tp + fn) if tp + fn else float("nan"),
        "spurious_per_sample": float((absent & called).sum(1).mean()),
        "missed_per_sample": float((present & (pred < call / 2)).sum(1).mean()),
        "n_predicted_per_sample": float(called.sum(1).mean()),
        "n_true_per_sample": float(present.sum(1).mean()),
        "detection_limit": limit,
        "detection": detection,
        "per_tissue": per_tissue,
        "call_threshold": call,
    }


HEADLINE = (
    "mae",
    "rmse",
    "pearson_r",
    "presence_accuracy",
    "presence_precision",
    "presence_recall",
    "spurious_per_sample",
    "missed_per_sample",
    "n_predicted_per_sample",
    "detection_limit",
)


def headline(metrics: dict[str, Any]) -> dict[str, float]:
    """The scalar metrics shown in comparison tables."""
    return {k: (float(metrics[k]) if metrics.get(k) is not None else float("nan")) for k in HEADLINE}
