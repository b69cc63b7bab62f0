"""The hyper-parameter grid: names of its points, and selection of the best point on validation."""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.metrics import read_json_file

logger = logging.getLogger(__name__)


def run_name(lr: float, batch_size: int, dropout: float, bridge_dim: int) -> str:
    """Name of one grid point, also its Snakemake wildcard values (``{lr:g}`` etc.)."""
    return f"lr{lr:g}_bs{int(batch_size)}_do{dropout:g}_bd{int(bridge_dim)}"


# Keys of the shared train section that every grid point sets for itself (assoc.grid.<key>).
GRID_TRAIN_KEYS = ("lr", "batch_size")


def check_train_keys(given: Mapping[str, Any], grid: Mapping[str, list]) -> None:
    """Refuse ``assoc.train.lr`` / ``batch_size`` written in the user's config: each grid point
    trains with its own ``assoc.grid.lr`` and ``batch_size``, so a value set under train was
    silently replaced (a user's ``train: {lr: 0.01}`` trained at 1e-4).

    ``given`` is the train section as the user wrote it, before the schema's defaults fill it:
    a key written at its default value (``lr: 0.001``) is as unused as any other. ``grid`` is
    the filled ``assoc.grid``. ``ValueError`` naming each key, its value and the grid key to
    set instead."""
    written = [k for k in GRID_TRAIN_KEYS if k in given]
    if written:
        raise ValueError(
            "; ".join(
                f"assoc.train.{k} = {given[k]!r} is not used: every grid point trains with its own "
                f"assoc.grid.{k} (now {grid.get(k)}), so set assoc.grid.{k}: [{given[k]!r}] "
                f"instead (a list: each value is one run) and remove assoc.train.{k}"
                for k in written
            )
        )


def grid_runs(grid: dict[str, list]) -> list[str]:
    """All run names of the hyper-parameter grid (lr x batch_size x dropout x bridge_dim)."""
    for key in ("lr", "batch_size", "dropout", "bridge_dim"):
        if not grid.get(key):
            raise ValueError(f"assoc.grid.{key} must list at least one value")
    return [
        run_name(lr, bs, do, bd)
        for lr in grid["lr"]
        for bs in grid["batch_size"]
        for do in grid["dropout"]
        for bd in grid["bridge_dim"]
    ]


def select_best(
    reports: list[str | os.PathLike], metric: str = "val/mrr_mean", mode: str = "max"
) -> dict[str, Any]:
    """Pick the run with the best validation ``metric`` among training reports."""
    if mode not in ("min", "max"):
        raise ValueError(f"selection mode must be 'min' or 'max', not {mode!r}")
    runs = []
    test_ranks = {}
    for path in reports:
        rep = read_json_file(path, "training report")
        value = rep["val"].get(metric) if metric != "val/loss" else rep["best_val_loss"]
        if value is None:
            raise ValueError(f"{path} has no validation metric {metric!r} (has {sorted(rep['val'])})")
        runs.append(
            {
                "run": rep["run"],
                "report": str(path),
                "value": float(value),
                "hyperparameters": rep["hyperparameters"],
                "val": rep["val"],
                "test": rep["test"],
                "best_epoch": rep["best_epoch"],
                "epochs_run": rep["epochs_run"],
            }
        )
        test_ranks[rep["run"]] = rep.get("test_ranks")
    if not runs:
        raise ValueError("no training reports to select from")
    sign = 1 if mode == "max" else -1
    finite = [r for r in runs if np.isfinite(r["value"])]
    if not finite:
        raise ValueError(f"every run has a non-finite {metric}")
    best = max(finite, key=lambda r: sign * r["value"])
    result = {"metric": metric, "mode": mode, "best_run": best["run"], "best": best, "runs": runs}
    if test_ranks[best["run"]] is not None:
        # The selected run's per-query test ranks, for the summary's paired tests.
        result["test_ranks"] = test_ranks[best["run"]]
    return result


def select_model(
    reports: list[str | os.PathLike],
    metric: str,
    mode: str,
    scheme: str,
    out_model: str | os.PathLike,
    out_json: str | os.PathLike,
) -> dict[str, Any]:
    """:func:`select_best`, then copy the best run's ``model.pt`` to ``out_model``."""
    result = select_best(reports, metric, mode)
    best_model = Path(result["best"]["report"]).parent / "model.pt"
    with atomic_output(out_model) as tmp:
        shutil.copyfile(best_model, tmp)
    atomic_write_json(out_json, result)
    logger.info(
        "best %s run: %s (%s %.4f)",
        scheme,
        result["best_run"],
        result["metric"],
        result["best"]["value"],
    )
    return result
