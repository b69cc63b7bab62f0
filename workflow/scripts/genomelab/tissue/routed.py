"""The routed tissue model: two trained models and the router between them.

A routed model is not trained: it takes the exported models of two configured kinds
(``tissue.routed``: by default the read-profile model for sparse samples and the masked
single-layer model for dense ones) from the same split, fits the router on the validation
split (:mod:`genomelab.tissue.routing`), fits one temperature on the routed validation
probabilities (each part is already calibrated, so it stays near 1) and is evaluated like
every other model: test metrics, the sparsity grid, per-sample predictions for the paired
tests. Its ``model.pt`` (kind ``routed``) holds both parts' weights, configurations and
calibration and the routing table, so ``genomelab predict tissue`` and ``genomelab serve``
load one file (:class:`genomelab.predict.tissue.RoutedPredictor`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.config import ConfigSection, from_schema
from genomelab.tissue.kinds import MODEL_TITLES, ROUTABLE
from genomelab.tissue.routing import DENSE, SPARSE, Router, fit_router, routed_proba

logger = logging.getLogger(__name__)

KIND = "routed"


@dataclass
class RoutedConfig(ConfigSection):
    """Which configured model reads sparse samples and which dense ones."""

    SECTION = "tissue.routed"

    sparse: str = from_schema("tissue.routed.sparse")
    dense: str = from_schema("tissue.routed.dense")

    def __post_init__(self) -> None:
        for role in (SPARSE, DENSE):
            if getattr(self, role) not in ROUTABLE:
                raise ValueError(
                    f"tissue.routed.{role} must be one of {ROUTABLE}, not {getattr(self, role)!r}"
                )
        if self.sparse == self.dense:
            raise ValueError(
                f"tissue.routed.sparse and tissue.routed.dense are both {self.sparse!r}: name two models"
            )


def check_routed_models(models: list[str], section: dict[str, Any]) -> RoutedConfig | None:
    """Parse-time check of ``tissue.models`` and ``tissue.routed``: None without ``routed``;
    else its config, whose two models must be listed too, so that they are trained, gated by
    their own checks and reported beside it (ConfigError naming the missing ones)."""
    from genomelab.config import ConfigError

    if KIND not in models:
        return None
    cfg = RoutedConfig.from_dict(section)
    missing = [getattr(cfg, role) for role in (SPARSE, DENSE) if getattr(cfg, role) not in models]
    if missing:
        raise ConfigError(
            f"tissue.models lists routed but not {missing}, the models tissue.routed sends samples to "
            f"(sparse: {cfg.sparse}, dense: {cfg.dense}): add them to tissue.models"
        )
    return cfg


def fit_routed_model(
    data: Any,
    parts: dict[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    cal: Any = None,
    sparsity: Any = None,
    grid_seed: int = 0,
) -> dict[str, Any]:
    """Route between the exported models ``parts[SPARSE]`` and ``parts[DENSE]`` (model.pt
    files of ``data``'s split: an ensemble's or the read-profile model's) on ``data``
    (:class:`~genomelab.tissue.task.TissueData`). Writes into ``out_dir`` what an ensemble's
    folder holds: ``metrics.json`` (val and test metrics, the grid, the routing table),
    ``model.pt`` (kind ``routed``) and ``diagnostics.json`` (prediction collapse). Returns
    the test metrics. A part of other classes or regions than ``data`` (another fold's, or
    another run's) is refused, naming its file."""
    from genomelab.diagnostics import write_results
    from genomelab.diagnostics.checks import chance_cross_entropy
    from genomelab.io.metrics import Metrics, write_metrics
    from genomelab.predict.tissue import ENSEMBLE, TissuePredictor
    from genomelab.tissue.calibration import CalibrationConfig, calibrate, call_records
    from genomelab.tissue.metrics import classification_metrics
    from genomelab.tissue.sparse import evaluate_grid
    from genomelab.tissue.training import collapse_checks, data_digest, log_test_metrics
    from genomelab.train.export import save_exported

    cal = cal or CalibrationConfig()
    out_dir = Path(out_dir)
    loaded = {role: TissuePredictor.load(parts[role]) for role in (SPARSE, DENSE)}
    for role, p in loaded.items():
        if p.exported.kind.removesuffix("-ensemble") not in ROUTABLE:
            raise ValueError(
                f"{parts[role]}: a {p.exported.kind!r} model cannot be routed (one of {ROUTABLE})"
            )
        if p.classes != [str(c) for c in data.classes] or p.regions.astype(str).tolist() != [
            str(r) for r in data.regions
        ]:
            raise ValueError(
                f"{parts[role]} was made for other classes or regions than this split's features "
                f"({len(p.classes)} classes, {len(p.regions)} regions; the split has "
                f"{len(data.classes)} and {len(data.regions)}): route the models of one split"
            )
        if not p.calibrated:
            raise ValueError(
                f"{parts[role]} is one member without its run's calibration: route model.pt files"
            )

    def predictor(role: str):
        def f(means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
            return loaded[role].predict_arrays(
                np.asarray(means, np.float32), np.asarray(coverage, np.float32)
            )[ENSEMBLE]

        return f

    predict = {role: predictor(role) for role in (SPARSE, DENSE)}
    subsets = {s: data.subset(s) for s in ("val", "test")}
    val_m, val_c, val_y = subsets["val"]
    router, table = fit_router(
        predict, val_m, val_c.astype(np.float32), val_y, sparsity or _no_grid(), grid_seed
    )
    probs, routed_dense, labels = {}, {}, {}
    for split, (m, c, y) in subsets.items():
        probs[split], routed_dense[split] = routed_proba(router, predict, m, c.astype(np.float32))
        labels[split] = y
    probs["val"], probs["test"], calibration = calibrate(
        (probs["val"], labels["val"]), (probs["test"], labels["test"]), cal
    )
    t = float(calibration["temperature"])
    metrics = {s: classification_metrics(labels[s], probs[s], data.classes) for s in ("val", "test")}
    metrics["test"]["ece_uncalibrated"] = calibration["ece_before"]
    tr = data.index("train")
    chance = chance_cross_entropy(np.bincount(data.y[tr], minlength=len(data.classes)))
    kinds = {role: loaded[role].exported.kind.removesuffix("-ensemble") for role in (SPARSE, DENSE)}
    payload: dict[str, Any] = {
        "model": KIND,
        "title": MODEL_TITLES[KIND],
        "model_config": kinds,
        "granularity": "file",
        "classes": data.classes.tolist(),
        "chance_nll": chance,
        "initial_nll": chance,
        "train_config": {"seed": int(grid_seed)},
        "monitor": "no training; the model per grid point chosen on validation NLL",
        "history": [],
        "best_epoch": 0,
        "epochs_run": 0,
        "stopped_reason": "routed (no training)",
        "n_members": 1,
        "n_parameters": 0,
        "routing": {
            "sparse": kinds[SPARSE],
            "dense": kinds[DENSE],
            "points": table,
            "test_samples_dense": int(routed_dense["test"].sum()),
            "val_samples_dense": int(routed_dense["val"].sum()),
        },
        "val": metrics["val"],
        "test": metrics["test"],
        "calibration": calibration,
    }
    if sparsity is not None and sparsity.points():
        tm, _, ty = subsets["test"]
        payload["grid"] = evaluate_grid(
            lambda m, c: routed_proba(router, predict, m, c)[0],
            tm,
            ty,
            data.samples[data.index("test")],
            data.classes,
            sparsity,
            grid_seed,
        )
    payload["predictions"] = {
        **data.predictions("test", probs["test"]),
        **call_records(probs["test"], cal.threshold),
    }
    weights = {f"{role}.{k}": v for role in (SPARSE, DENSE) for k, v in loaded[role].exported.weights.items()}
    save_exported(
        out_dir / "model.pt",
        weights,
        kind=KIND,
        config={
            role: {
                "kind": loaded[role].exported.kind,
                "config": loaded[role].exported.config,
                "extra": loaded[role].exported.extra,
                "data_fingerprint": loaded[role].exported.data_fingerprint,
            }
            for role in (SPARSE, DENSE)
        }
        | {"router": router.to_dict()},
        ids={"classes": data.classes, "regions": data.regions},
        data_fingerprint=data_digest(data),
        extra={
            "n_positions": int(data.n_positions),
            "temperature": t,
            "threshold": float(cal.threshold),
        },
    )
    write_results(out_dir / "diagnostics.json", "tissue", collapse_checks(KIND, probs, labels))
    write_metrics(out_dir / "metrics.json", Metrics(payload, str(out_dir / "metrics.json")))
    log_test_metrics(
        MODEL_TITLES[KIND],
        metrics["test"],
        f"{int(routed_dense['test'].sum())} of {len(labels['test'])} test samples to the {kinds[DENSE]} model",
    )
    return metrics["test"]


def _no_grid() -> Any:
    from genomelab.tissue.sparse import SparsityConfig

    return SparsityConfig(depths=[], observed=[])


__all__ = ["KIND", "RoutedConfig", "Router", "fit_routed_model"]
