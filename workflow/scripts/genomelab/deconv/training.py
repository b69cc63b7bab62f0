"""The deconv_train step: the plain or two-stage sparse network on one phase's mixtures,
through the shared training run (``genomelab.train.run``)."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np

from genomelab.deconv.calibrate import apply_mask, calibrate_thresholds, nnls_cut, presence_curve
from genomelab.deconv.io import save_predictions
from genomelab.deconv.metrics import deconv_metrics
from genomelab.deconv.mixtures import read_mixtures
from genomelab.deconv.reference import load_reference

logger = logging.getLogger(__name__)

# Thresholds swept for the precision/recall curves: presence probability (model), proportion (NNLS).
CURVE_PRESENCE = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
CURVE_NNLS = (0.0, 0.005, 0.01, 0.015, 0.02, 0.03, 0.04, 0.05, 0.07, 0.1)


def _raw(model: Any, ms: Any, device: Any) -> dict[str, np.ndarray]:
    import torch

    out = model.raw_outputs(torch.tensor(ms.beta, device=device))
    return {k: v.float().cpu().numpy().astype(np.float64) for k, v in out.items()}


def calibrate_model(model: Any, val: Any, call: float, device: Any) -> dict[str, Any]:
    """Set the two-stage model's presence thresholds on the validation mixtures
    (:func:`genomelab.deconv.calibrate.calibrate_thresholds`); returns the record."""
    import torch

    raw = _raw(model, val, device)
    cfg = model.cfg
    thresholds, record = calibrate_thresholds(
        raw["proportions"],
        raw["presence"],
        raw["nnls"],
        val.proportions.astype(np.float64),
        call,
        cfg.nnls_guard,
        cfg.calibrate_per_tissue,
        choice=cfg.calibrate_choice,
    )
    model.thresholds.copy_(torch.as_tensor(thresholds, dtype=model.thresholds.dtype))
    logger.info(
        "presence thresholds calibrated on %d validation mixtures: missed %d (prior %d), spurious %d (prior %d)",
        record["n_val"],
        record["model_missed"],
        record["nnls_missed"],
        record["model_spurious"],
        record["nnls_spurious"],
    )
    return record


def presence_curves(model: Any, ms: Any, call: float, device: Any) -> dict[str, Any]:
    """Precision/recall of presence calls as the model's presence threshold (one for all
    tissues) and NNLS's proportion cut-off sweep, on the same mixtures."""
    raw = _raw(model, ms, device)
    true = ms.proportions.astype(np.float64)
    n_t = true.shape[1]
    guard = model.cfg.nnls_guard
    return {
        "model": presence_curve(
            true,
            raw["presence"],
            call,
            np.asarray(CURVE_PRESENCE),
            lambda th: apply_mask(raw["proportions"], raw["presence"], np.full(n_t, th), raw["nnls"], guard),
        ),
        "nnls": presence_curve(
            true, raw["nnls"], call, np.asarray(CURVE_NNLS), lambda th: nnls_cut(raw["nnls"], th)
        ),
    }


def train_model(
    mixtures: str | os.PathLike,
    reference: str | os.PathLike,
    variant: str,
    model_cfg: dict,
    train_cfg: dict,
    presence_target: float,
    state_root: str | os.PathLike,
    out_model: str | os.PathLike,
    out_metrics: str | os.PathLike,
    out_predictions: str | os.PathLike,
    tensorboard_dir: str | os.PathLike | None,
    device: str = "auto",
    seed: int = 0,
    init_from: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train the plain or two-stage network on one phase; evaluate it on the test split.

    ``init_from`` names a previous phase's model (curriculum): its weights start this run.
    Resumable state lives in ``state_root/<fingerprint of settings and data>``. Returns
    the test metrics.
    """
    import torch
    from torch.utils.data import TensorDataset

    from genomelab.deconv.model import KIND, DeconvNet, DeconvNetConfig, load_model
    from genomelab.train import TrainConfig, resolve_device
    from genomelab.train.export import data_fingerprint
    from genomelab.train.run import RunOutputs, RunSpec, RunState, run_training

    if variant not in ("plain", "sparse"):
        raise ValueError(f"model variant must be 'plain' or 'sparse', not {variant!r}")
    ref = load_reference(reference)
    sets = {s: read_mixtures(mixtures, s) for s in ("train", "val", "test")}
    cfg = DeconvNetConfig.from_config(
        model_cfg, len(ref.regions), len(ref.tissues), variant == "sparse", presence_target
    )

    # The previous phase's weights key the state folder (not only its path): a run killed and
    # rerun after that phase was trained again starts afresh from the new weights instead of
    # resuming the state it began from the old ones.
    init = load_model(init_from, ref.regions, ref.tissues)[0].state_dict() if init_from else None

    def build_model() -> DeconvNet:
        model = DeconvNet(cfg, ref.profiles.mean(1), ref.profiles)
        if init is not None:
            model.load_state_dict(init)
            logger.info("initialised from %s", init_from)
        return model

    def build_data(dev: torch.device) -> dict[str, TensorDataset]:
        # Mixtures are small next to GPU memory: preloading lets the engine slice on device.
        return {
            s: TensorDataset(torch.tensor(ms.beta, device=dev), torch.tensor(ms.proportions, device=dev))
            for s, ms in sets.items()
        }

    def eval_fn(m: torch.nn.Module, ds: TensorDataset, d: torch.device) -> dict[str, float]:
        x, y = ds.tensors
        pred = m.predict(x.to(d)).float().cpu().numpy()
        true = y.cpu().numpy()
        called, absent = pred >= presence_target, true == 0
        return {
            "mae": float(np.abs(pred - true).mean()),
            "spurious_per_sample": float((called & absent).sum(1).mean()),
        }

    def after_fit(state: RunState) -> dict[str, Any]:
        model = state.model
        extra: dict[str, Any] = {}
        if cfg.two_stage and cfg.calibrate and cfg.nnls_prior:
            extra["calibration"] = calibrate_model(model, sets["val"], presence_target, state.device)
        beta = torch.tensor(sets["test"].beta, device=state.device)
        pred = model.predict(beta).float().cpu().numpy()
        metrics = deconv_metrics(sets["test"].proportions, pred, ref.tissues, presence_target)
        if cfg.two_stage and cfg.nnls_prior:
            metrics["presence_curve"] = presence_curves(model, sets["test"], presence_target, state.device)
        state.values.update(pred=pred, metrics=metrics)
        return {
            "variant": variant,
            "seed": seed,
            "test": metrics,
            "test_losses": state.test_losses,
            "best_epoch": state.fit.best_epoch,
            "stopped_reason": state.fit.stopped_reason,
            **extra,
        }

    spec = RunSpec(
        kind=KIND,
        train_config=TrainConfig.from_dict(train_cfg, seed=seed),
        model_config=dataclasses.asdict(cfg),
        build_model=build_model,
        build_data=build_data,
        ids={"regions": ref.regions, "tissues": ref.tissues},
        data_fingerprint=data_fingerprint(
            ref.regions,
            ref.tissues,
            ref.profiles,
            *(a for ms in sets.values() for a in (ms.beta, ms.proportions)),
        ),
        run_config={
            "variant": variant,
            "init_from": str(init_from or ""),
            # Only with a previous phase, so that a first phase keeps its state folder.
            **({} if init is None else {"init_weights": data_fingerprint(list(init), *init.values())}),
        },
        eval_fn=eval_fn,
        after_fit=after_fit,
        write_outputs=lambda state: save_predictions(out_predictions, state.values["pred"], ref.tissues),
        export_extra=lambda state: {"variant": variant, "seed": seed},
    )
    outputs = RunOutputs(out_metrics, out_model, tensorboard_dir)
    return run_training(spec, state_root, outputs, resolve_device(device)).values["metrics"]
