"""Generic checks every module can use.

Each function takes plain arrays or numbers and returns a :class:`DiagnosticResult`; none
of them knows which module calls it. Thresholds are arguments with documented defaults so
that modules can tighten them from config.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from genomelab.diagnostics.core import FAIL, PASS, WARN, DiagnosticResult


def chance_cross_entropy(class_counts: Sequence[int] | np.ndarray) -> float:
    """Cross-entropy of always predicting the class frequencies (``ln C`` when balanced)."""
    counts = np.asarray(class_counts, dtype=float)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def initial_loss_vs_chance(
    initial_loss: float, chance_loss: float, name: str = "initial_loss", max_ratio: float = 3.0
) -> DiagnosticResult:
    """An untrained model's loss should sit near the chance level.

    Far above chance (``> max_ratio`` times) means targets and outputs live on different
    scales (unnormalised targets, wrong head activation, bad init): the failure of a loss
    that starts above 5,000 and never falls.
    """
    if not math.isfinite(initial_loss):
        return DiagnosticResult(
            name,
            FAIL,
            f"initial loss is {initial_loss}: the forward pass produces non-finite values",
            details={"initial_loss": initial_loss},
        )
    ratio = initial_loss / chance_loss if chance_loss > 0 else math.inf
    details = {"initial_loss": initial_loss, "chance_loss": chance_loss, "ratio": ratio}
    if ratio > max_ratio:
        return DiagnosticResult(
            name,
            FAIL,
            f"initial loss {initial_loss:.4g} is {ratio:.1f}x the "
            f"chance level {chance_loss:.4g}: outputs and targets are on different "
            "scales (check normalisation and head activations)",
            details=details,
        )
    return DiagnosticResult(
        name,
        PASS,
        f"initial loss {initial_loss:.4g} vs chance level {chance_loss:.4g} (ratio {ratio:.2f})",
        details=details,
    )


def loss_stuck_at_chance(
    history: Sequence[Mapping[str, float]],
    chance_loss: float,
    key: str = "val/loss",
    rel_tol: float = 0.05,
    min_epochs: int = 3,
    name: str = "loss_vs_chance",
) -> DiagnosticResult:
    """Fail when the best ``key`` over training stays within ``rel_tol`` of chance.

    A loss sitting at ``ln C`` for many epochs means the model learned nothing beyond the
    class prior, whatever the infrastructure logs say.
    """
    values = [float(h[key]) for h in history if key in h and h[key] is not None]
    if len(values) < min_epochs:
        return DiagnosticResult(
            name,
            WARN,
            f"only {len(values)} epochs of {key}; need {min_epochs} to judge",
            blocking=False,
            details={"values": values},
        )
    best = min(values)
    details = {"best": best, "chance_loss": chance_loss, "values": values}
    if best >= chance_loss * (1 - rel_tol):
        return DiagnosticResult(
            name,
            FAIL,
            f"best {key} {best:.4g} never fell more than {rel_tol:.0%} "
            f"below the chance level {chance_loss:.4g}: the model learned only the "
            "class prior",
            details=details,
        )
    return DiagnosticResult(
        name,
        PASS,
        f"best {key} {best:.4g} is {1 - best / chance_loss:.0%} below chance {chance_loss:.4g}",
        details=details,
    )


def prediction_collapse(
    y_pred: np.ndarray, y_true: np.ndarray, min_coverage: float = 0.5, name: str = "prediction_collapse"
) -> DiagnosticResult:
    """Fail when predictions use far fewer classes than the truth contains.

    ``min_coverage`` is the fraction of true classes that must appear among predictions;
    the history's collapsed model predicted 1-3 of 22 classes.
    """
    y_pred, y_true = np.asarray(y_pred), np.asarray(y_true)
    n_true, n_pred = len(np.unique(y_true)), len(np.unique(y_pred))
    values, counts = np.unique(y_pred, return_counts=True)
    top_share = float(counts.max() / counts.sum()) if len(counts) else 0.0
    details = {"n_true_classes": n_true, "n_predicted_classes": n_pred, "top_class_share": top_share}
    coverage = n_pred / max(n_true, 1)
    if coverage < min_coverage:
        return DiagnosticResult(
            name,
            FAIL,
            f"predictions use {n_pred} of {n_true} classes "
            f"(largest takes {top_share:.0%} of samples): predictions collapsed",
            details=details,
        )
    return DiagnosticResult(name, PASS, f"predictions use {n_pred} of {n_true} classes", details=details)


def target_range(
    values: np.ndarray,
    name: str,
    kind: str = "regression",
    max_abs_mean: float = 10.0,
    max_std: float = 10.0,
    mask: np.ndarray | None = None,
) -> DiagnosticResult:
    """Check a target array for NaN/inf, constancy, scale and type.

    ``kind`` is what the head expects: "regression" targets should be roughly standardised
    (a regression head fed raw TPM or 0/1 presence values is the classic failure),
    "binary" targets must be in {0, 1}, "count" targets non-negative.
    """
    values = np.asarray(values, dtype=float)
    if mask is not None:
        values = values[np.asarray(mask, dtype=bool)]
    check = f"target_range[{name}]"
    n = values.size
    if n == 0:
        return DiagnosticResult(check, FAIL, f"target {name!r} has no measured values")
    n_bad = int((~np.isfinite(values)).sum())
    if n_bad:
        return DiagnosticResult(
            check,
            FAIL,
            f"target {name!r} has {n_bad} non-finite values of {n}",
            details={"n_nonfinite": n_bad},
        )
    lo, hi, mean, std = float(values.min()), float(values.max()), float(values.mean()), float(values.std())
    details: dict[str, Any] = {"min": lo, "max": hi, "mean": mean, "std": std, "n": n, "kind": kind}
    if hi == lo:
        return DiagnosticResult(check, FAIL, f"target {name!r} is constant ({lo:g})", details=details)
    uniq = np.unique(values[: min(n, 100_000)])
    is_binary = len(uniq) <= 2 and set(uniq.tolist()) <= {0.0, 1.0}
    details["looks_binary"] = bool(is_binary)
    if kind == "binary":
        if not is_binary:
            return DiagnosticResult(
                check,
                FAIL,
                f"target {name!r} feeds a binary head but has values outside {{0, 1}} (range {lo:g}..{hi:g})",
                details=details,
            )
        return DiagnosticResult(check, PASS, f"binary target {name!r}, {mean:.1%} positive", details=details)
    if kind == "count":
        if lo < 0:
            return DiagnosticResult(
                check, FAIL, f"count target {name!r} has negative values (min {lo:g})", details=details
            )
        return DiagnosticResult(check, PASS, f"count target {name!r} in {lo:g}..{hi:g}", details=details)
    if is_binary:
        return DiagnosticResult(
            check,
            FAIL,
            f"target {name!r} feeds a regression head but holds only "
            "0/1 values: presence flags are not measurements",
            details=details,
        )
    if abs(mean) > max_abs_mean or std > max_std:
        return DiagnosticResult(
            check,
            FAIL,
            f"target {name!r} is not normalised (mean {mean:.3g}, std "
            f"{std:.3g}, range {lo:.3g}..{hi:.3g}); apply log1p and z-scores",
            details=details,
        )
    return DiagnosticResult(
        check,
        PASS,
        f"target {name!r}: mean {mean:.3g}, std {std:.3g}, range {lo:.3g}..{hi:.3g}",
        details=details,
    )


def group_leakage(
    groups_by_split: Mapping[str, Sequence[Any]], name: str = "group_leakage", what: str = "group"
) -> DiagnosticResult:
    """Fail when any group key (source sample, genome block, entity) occurs in two splits."""
    sets = {split: set(map(str, groups)) for split, groups in groups_by_split.items()}
    splits = list(sets)
    shared: dict[str, list[str]] = {}
    for i, a in enumerate(splits):
        for b in splits[i + 1 :]:
            common = sorted(sets[a] & sets[b])
            if common:
                shared[f"{a}/{b}"] = common
    details = {
        "shared": {k: v[:20] for k, v in shared.items()},
        "n_groups": {k: len(v) for k, v in sets.items()},
    }
    if shared:
        text = "; ".join(f"{pair}: {len(v)} (e.g. {', '.join(v[:3])})" for pair, v in shared.items())
        return DiagnosticResult(name, FAIL, f"{what}s shared between splits: {text}", details=details)
    return DiagnosticResult(
        name,
        PASS,
        f"no {what} occurs in more than one split ({', '.join(f'{k}: {len(v)}' for k, v in sets.items())})",
        details=details,
    )


def overfit_tiny_subset(
    train_tiny: Callable[[], dict[str, float]],
    n_examples: int,
    max_final_loss: float | None = None,
    min_accuracy: float | None = None,
    name: str = "overfit_tiny_subset",
) -> DiagnosticResult:
    """Run ``train_tiny()`` (a short fit on ``n_examples``) and check it memorised them.

    A model that cannot drive the loss of a handful of examples to near zero has a bug in
    its wiring (detached graph, wrong target, frozen parameters), not a data problem.
    ``train_tiny`` returns final metrics with keys ``loss`` and optionally ``accuracy``.
    """
    metrics = train_tiny()
    ok, reasons = True, []
    if max_final_loss is not None:
        good = metrics["loss"] <= max_final_loss
        ok &= good
        reasons.append(f"loss {metrics['loss']:.4g} {'<=' if good else '>'} {max_final_loss:g}")
    if min_accuracy is not None and "accuracy" in metrics:
        good = metrics["accuracy"] >= min_accuracy
        ok &= good
        reasons.append(f"accuracy {metrics['accuracy']:.1%} {'>=' if good else '<'} {min_accuracy:.0%}")
    text = f"after training on {n_examples} examples: " + ", ".join(reasons)
    if ok:
        return DiagnosticResult(name, PASS, text, details=metrics)
    return DiagnosticResult(
        name,
        FAIL,
        text + ": the model cannot memorise a tiny subset, so its "
        "wiring is broken (targets, loss or gradient flow)",
        details=metrics,
    )
