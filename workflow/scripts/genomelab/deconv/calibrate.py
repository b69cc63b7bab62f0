"""Calibrating the two-stage model's presence decision on validation mixtures.

The hard mask of the two-stage model buys few spurious calls by removing tissues; left at a
fixed presence probability (0.5) it removed solid tissues that were really there (issue 19:
93 of 139 solid tissues at 5-10 % called, NNLS all of them). Here the mask is set against an
explicit target instead: on the *validation* mixtures, per tissue, the highest presence
threshold whose missed calls (present >= ``call``, predicted < ``call``/2) are no more than
NNLS's on the same mixtures. A tissue whose NNLS proportion reaches ``guard`` is never masked
(its evidence in the data is clear, whatever the presence head says).

All arrays are [N, T] (mixtures x tissues) unless noted; numpy only (tests call it directly).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# Candidate presence thresholds, from "keep everything" to "keep only the sure ones".
# Dense at the low end: a sharp presence head separates present from absent tissues there.
GRID = np.asarray(
    [0.0, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
)


def support_mask(
    presence: np.ndarray, thresholds: np.ndarray, nnls: np.ndarray | None = None, guard: float = 1.0
) -> np.ndarray:
    """Kept tissues (bool [N, T]): presence >= threshold [T] or NNLS >= ``guard``; a mixture
    with nothing kept keeps its most likely tissue (as the model does)."""
    keep = presence >= np.asarray(thresholds)[None, :]
    if nnls is not None:
        keep |= nnls >= guard
    none = ~keep.any(1)
    keep[none, presence[none].argmax(1)] = True
    return keep


def apply_mask(
    proportions: np.ndarray,
    presence: np.ndarray,
    thresholds: np.ndarray,
    nnls: np.ndarray | None = None,
    guard: float = 1.0,
) -> np.ndarray:
    """Final proportions: the tissues of :func:`support_mask`, renormalised."""
    q = proportions * support_mask(presence, thresholds, nnls, guard)
    return q / np.maximum(q.sum(1, keepdims=True), 1e-12)


def missed_counts(true: np.ndarray, pred: np.ndarray, call: float) -> np.ndarray:
    """[T] present (>= call) tissues predicted below call / 2, summed over mixtures."""
    return ((true >= call) & (pred < call / 2)).sum(0)


def spurious_counts(true: np.ndarray, pred: np.ndarray, call: float) -> np.ndarray:
    """[T] absent tissues (true 0) predicted >= call, summed over mixtures."""
    return ((true == 0) & (pred >= call)).sum(0)


def calibrate_thresholds(
    proportions: np.ndarray,
    presence: np.ndarray,
    nnls: np.ndarray,
    true: np.ndarray,
    call: float,
    guard: float,
    per_tissue: bool = True,
    grid: np.ndarray = GRID,
    final_fn: Callable[[np.ndarray], np.ndarray] | None = None,
    choice: str = "highest",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Presence thresholds [T] and a record of how they were chosen (see the module docstring).

    Among the thresholds whose missed calls are no more than NNLS's, ``choice`` "highest"
    takes the highest; "fewest_spurious" the one with the fewest spurious calls, the lowest
    of ties, so a tissue is masked no more than the validation mixtures show to pay (a
    tissue that is never absent or low there, e.g. a blood type under a Dirichlet background,
    is then never masked; issue 19: "highest" masked blood types at 0.95 and lost them at
    1-3 % in other backgrounds). With ``per_tissue`` false one threshold for all tissues, on
    the totals. Where no threshold reaches the target (the proportion head itself puts a
    present tissue under call / 2), the lowest one is used and the record says so.
    ``final_fn(thresholds [T]) -> [N, T]`` gives the final proportions the thresholds lead
    to (default: the mask, :func:`apply_mask`).
    """
    if choice not in ("highest", "fewest_spurious"):
        raise ValueError(f"calibration choice must be 'highest' or 'fewest_spurious', not {choice!r}")
    n_t = true.shape[1]
    if final_fn is None:

        def final_fn(th: np.ndarray) -> np.ndarray:
            return apply_mask(proportions, presence, th, nnls, guard)

    target = missed_counts(true, nnls, call)
    finals = [final_fn(np.full(n_t, g)) for g in grid]
    missed = np.stack([missed_counts(true, f, call) for f in finals])  # [G, T]
    spurious = np.stack([spurious_counts(true, f, call) for f in finals])  # [G, T]
    if per_tissue:
        ok = missed <= target[None, :]
        idx = _pick(ok, spurious, choice)
        thresholds = grid[idx].astype(float)
        reached = ok[idx, np.arange(n_t)]
    else:
        ok = missed.sum(1) <= target.sum()
        g = int(_pick(ok[:, None], spurious.sum(1)[:, None], choice)[0])
        thresholds = np.full(n_t, float(grid[g]))
        reached = np.full(n_t, bool(ok[g]))
    final = final_fn(thresholds)
    record = {
        "target": "missed calls (present >= call, predicted < call/2) <= NNLS's on validation",
        "per_tissue": per_tissue,
        "choice": choice,
        "guard": guard,
        "call": call,
        "n_val": int(len(true)),
        "thresholds": thresholds.tolist(),
        "target_reached": reached.tolist(),
        "nnls_missed": int(target.sum()),
        "model_missed": int(missed_counts(true, final, call).sum()),
        "nnls_spurious": int(spurious_counts(true, nnls, call).sum()),
        "model_spurious": int(spurious_counts(true, final, call).sum()),
        "grid": grid.tolist(),
        "grid_missed": missed.sum(1).tolist(),
        "grid_spurious": spurious.sum(1).tolist(),
    }
    return thresholds, record


def _pick(ok: np.ndarray, spurious: np.ndarray, choice: str) -> np.ndarray:
    """Grid index per column of ``ok``/``spurious`` [G, T] (the grid is increasing); 0 where
    no threshold is feasible."""
    if choice == "highest":
        idx = len(ok) - 1 - np.argmax(ok[::-1], axis=0)
    else:
        # argmin returns the first, i.e. lowest, of tied thresholds.
        idx = np.argmin(np.where(ok, spurious, np.iinfo(np.int64).max), axis=0)
    return np.where(ok.any(0), idx, 0)


def presence_curve(
    true: np.ndarray,
    scores: np.ndarray,
    call: float,
    thresholds: np.ndarray,
    final: Any,
) -> list[dict[str, float]]:
    """Precision and recall of presence calls (final proportion >= ``call`` against true >=
    ``call``) as a decision threshold on ``scores`` sweeps ``thresholds``.

    ``final(threshold) -> [N, T]`` gives the final proportions at one threshold (the model:
    its mask at that presence threshold; NNLS: its proportions zeroed below the threshold).
    """
    present = true >= call
    out = []
    for th in thresholds:
        called = final(float(th)) >= call
        tp = int((called & present).sum())
        fp = int((called & ~present).sum())
        fn = int((~called & present).sum())
        out.append(
            {
                "threshold": float(th),
                "precision": tp / (tp + fp) if tp + fp else float("nan"),
                "recall": tp / (tp + fn) if tp + fn else float("nan"),
                "spurious_per_sample": float(((true == 0) & called).sum(1).mean()),
            }
        )
    return out


def nnls_cut(nnls: np.ndarray, threshold: float) -> np.ndarray:
    """NNLS proportions with those below ``threshold`` zeroed and the rest renormalised."""
    q = np.where(nnls >= threshold, nnls, 0.0)
    s = q.sum(1, keepdims=True)
    return np.where(s > 0, q / np.maximum(s, 1e-12), nnls)
