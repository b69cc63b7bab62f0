"""Overfit a tiny subset: the wiring check every module runs before real training.

A model that cannot drive the loss of a handful of examples towards zero has a bug in its
wiring (detached graph, wrong targets, frozen parameters), not a data problem. Every module
runs the same loop here and judges the outcome with
:func:`genomelab.diagnostics.checks.overfit_tiny_subset`.

The loop is deliberately not the engine's ``Trainer.fit``: a memorisation check wants plain
full-batch Adam (no weight decay, schedule, clipping, mixed precision, validation split or
checkpoints), a few hundred steps on one batch that already sits on its device.

Seeding is the caller's: seed torch before building the model, because the same global
generator then draws the initial weights and, in the loop, the dropout masks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from genomelab.diagnostics.checks import overfit_tiny_subset
from genomelab.diagnostics.core import DiagnosticResult
from genomelab.train.engine import LossModel, LossOutput

logger = logging.getLogger(__name__)

Report = Callable[[nn.Module, Any], dict[str, float]]
"""``report(model, batch) -> {"loss": ..., optionally "accuracy": ..., anything else}``."""


def _loss(model: nn.Module, batch: Any) -> LossOutput:
    return cast(LossModel, model).loss(batch)


def loss_report(model: nn.Module, batch: Any) -> dict[str, float]:
    """The default report: the total loss ``model.loss(batch).loss``."""
    return {"loss": float(_loss(model, batch).loss)}


def terms_report(loss: str, accuracy: str | None = None) -> Report:
    """A report of named loss terms: ``terms[loss]`` as ``loss``, ``terms[accuracy]`` as ``accuracy``."""

    def report(model: nn.Module, batch: Any) -> dict[str, float]:
        terms = _loss(model, batch).terms
        values = {"loss": float(terms[loss])}
        if accuracy is not None:
            values["accuracy"] = float(terms[accuracy])
        return values

    return report


def fit_tiny_batch(
    model: nn.Module, batch: Any, steps: int, lr: float, report: Report = loss_report
) -> dict[str, float]:
    """Train ``model`` with full-batch Adam on ``batch`` for ``steps`` steps; return ``report``.

    ``batch`` is what ``model.loss`` takes (a tensor tuple or dict, on the model's device).
    The model trains in train mode (dropout on) and is reported in eval mode without
    gradients; it is left in eval mode. A loss without a gradient (every parameter frozen,
    a detached graph) stops the loop with a warning: the report then shows a loss that did
    not fall, which the check judges as broken wiring.
    """
    if steps < 1:
        raise ValueError(f"overfit steps must be >= 1, not {steps}")
    if not lr > 0:
        raise ValueError(f"overfit lr must be > 0, not {lr}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for step in range(steps):
        out = _loss(model, batch)
        if not out.loss.requires_grad:
            logger.warning(
                "%s: the loss has no gradient at step %d (frozen parameters or a detached graph)",
                type(model).__name__,
                step,
            )
            break
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return report(model, batch)


def overfit_check(
    model: nn.Module,
    batch: Any,
    n_examples: int,
    *,
    steps: int,
    lr: float,
    report: Report = loss_report,
    max_final_loss: float | None = None,
    min_accuracy: float | None = None,
    name: str = "overfit_tiny_subset",
) -> DiagnosticResult:
    """Fit ``batch`` (``n_examples`` examples) with :func:`fit_tiny_batch` and judge the report.

    Passes when the reported ``loss`` is at most ``max_final_loss`` and (when reported) the
    ``accuracy`` at least ``min_accuracy``; the report is the result's ``details``.
    """
    return overfit_tiny_subset(
        lambda: fit_tiny_batch(model, batch, steps, lr, report),
        n_examples,
        max_final_loss=max_final_loss,
        min_accuracy=min_accuracy,
        name=name,
    )
