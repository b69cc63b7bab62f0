"""The binning_train step: the k-mer beta-VAE through the shared training run
(``genomelab.train.run``), and the loader of its exported model."""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import torch

from genomelab.binning.data import ModelInputs, load_inputs, split_indices
from genomelab.binning.model import KmerVAE, VAEConfig
from genomelab.binning.summary import REFERENCE_TERMS
from genomelab.train import TrainConfig, resolve_device
from genomelab.train.export import data_fingerprint, load_exported
from genomelab.train.run import RunOutputs, RunSpec, RunState, run_training

logger = logging.getLogger(__name__)

# Kind of the VAE's exported model (train/export.py).
KIND = "binning-vae"


def _dataset(x: np.ndarray, rows: np.ndarray, device: torch.device, preload: bool):
    from torch.utils.data import TensorDataset

    t = torch.from_numpy(np.ascontiguousarray(x[rows]))
    # On a GPU the whole matrix lives in device memory when it fits: the engine then slices
    # batches on the device and epochs are never input-bound.
    if preload and device.type == "cuda":
        t = t.to(device)
    elif device.type == "cuda":
        t = t.pin_memory()
    return TensorDataset(t)


def inputs_fingerprint(inputs: ModelInputs, n_rows: int = 256) -> str:
    """:func:`~genomelab.train.export.data_fingerprint` of contig names, lengths and a fixed
    sample of input rows (cheap even for millions of contigs, yet it changes when the
    contigs or their profiles do)."""
    rows = np.linspace(0, len(inputs.x) - 1, min(n_rows, len(inputs.x))).astype(np.int64)
    return data_fingerprint(inputs.names, np.ascontiguousarray(inputs.lengths), inputs.x[rows])


def train_vae(
    inputs: ModelInputs,
    model_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    split_cfg: dict[str, Any],
    seed: int,
    state_dir: str | os.PathLike,
    metrics_path: str | os.PathLike,
    model_path: str | os.PathLike,
    tensorboard_dir: str | os.PathLike | None,
    device: torch.device,
    preload: bool = True,
) -> tuple[KmerVAE, dict[str, Any]]:
    """Fit the VAE on the train split; write metrics and the exported model (``model_path``).

    One state folder per configuration and input: a changed parameter or new contigs start
    a fresh run, an identical rerun (e.g. after SIGTERM) resumes from last.pt. Returns the
    best model and the metrics payload."""
    cfg = VAEConfig.from_dict(model_cfg, n_depth=inputs.n_depth)
    splits = split_indices(
        len(inputs.x), float(split_cfg["val_fraction"]), float(split_cfg["test_fraction"]), seed
    )

    def after_fit(state: RunState) -> dict[str, Any]:
        epoch_s = [h["time/epoch_s"] for h in state.fit.history]
        return {
            "test": state.test_losses,
            "n_contigs": {s: len(i) for s, i in splits.items()},
            "reference_terms": REFERENCE_TERMS,
            "fit_seconds": state.fit_seconds,
            "mean_epoch_seconds": float(np.mean(epoch_s)) if epoch_s else None,
            "train_contigs_per_second": (len(splits["train"]) / float(np.mean(epoch_s))) if epoch_s else None,
            "n_depth": inputs.n_depth,
        }

    spec = RunSpec(
        kind=KIND,
        train_config=TrainConfig.from_dict(train_cfg, seed=seed),
        model_config=dict(model_cfg),
        build_model=lambda: KmerVAE(cfg),
        build_data=lambda dev: {
            s: _dataset(inputs.x, idx, dev, preload) for s, idx in splits.items() if len(idx)
        },
        ids={"contigs": inputs.names},
        data_fingerprint=inputs_fingerprint(inputs),
        run_config={"n_depth": inputs.n_depth, "split": split_cfg, "n": len(inputs.x)},
        after_fit=after_fit,
        export_extra=lambda state: {"n_depth": inputs.n_depth},
    )
    result = run_training(spec, state_dir, RunOutputs(metrics_path, model_path, tensorboard_dir), device)
    return result.model, result.payload


def load_model(path: str | os.PathLike, n_depth: int) -> KmerVAE:
    """The VAE of an exported model (CPU, eval mode); refuses one trained with another
    number of abundance columns."""
    exported = load_exported(path, kind=KIND)
    if int(exported.extra["n_depth"]) != n_depth:
        raise ValueError(
            f"{path} was trained with {exported.extra['n_depth']} abundance columns, the inputs have {n_depth}"
        )
    model = KmerVAE(VAEConfig.from_dict(exported.config, n_depth=n_depth))
    model.load_state_dict(exported.weights)
    return model.eval()


def train_from_files(
    features_h5: str | os.PathLike,
    depth: str | None,
    model_cfg: dict[str, Any],
    train_cfg: dict[str, Any],
    split_cfg: dict[str, Any],
    seed: int,
    state_dir: str | os.PathLike,
    metrics_path: str | os.PathLike,
    model_path: str | os.PathLike,
    tensorboard_dir: str | os.PathLike | None,
    device: str = "auto",
    preload: bool = True,
) -> dict[str, Any]:
    """:func:`train_vae` on the feature file's contigs (plus depth columns when given);
    returns the metrics payload."""
    inputs = load_inputs(features_h5, depth)
    _, payload = train_vae(
        inputs,
        model_cfg,
        train_cfg,
        split_cfg,
        seed,
        state_dir,
        metrics_path,
        model_path,
        tensorboard_dir,
        resolve_device(device),
        preload,
    )
    return payload
