"""The binning_train step: the selected embedding model (``binning.model.kind``: the
contrastive encoder or the k-mer beta-VAE) through the shared training run
(``genomelab.train.run``), and the loader of either exported model."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import numpy as np
import torch

from genomelab.binning.contrastive_model import ContrastiveConfig, ContrastiveEncoder
from genomelab.binning.contrastive_views import Views, load_views
from genomelab.binning.data import ModelInputs, load_inputs, split_indices
from genomelab.binning.model import KmerVAE, VAEConfig, vae_options
from genomelab.binning.summary import REFERENCE_TERMS
from genomelab.train import TrainConfig, resolve_device
from genomelab.train.export import data_fingerprint, load_exported
from genomelab.train.run import RunOutputs, RunSpec, RunState, run_training

logger = logging.getLogger(__name__)

# Kinds of the exported models (train/export.py).
KIND = "binning-vae"
CONTRASTIVE_KIND = "binning-contrastive"
MODEL_KINDS = ("contrastive", "vae", "tnf")


def model_kind(model_cfg: dict[str, Any]) -> str:
    """``binning.model.kind``, checked."""
    kind = model_cfg.get("kind")
    if kind not in MODEL_KINDS:
        raise ValueError(f"binning.model.kind must be one of {MODEL_KINDS}, not {kind!r}")
    return str(kind)


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
    model_cfg = vae_options(model_cfg)
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
        export_extra=lambda state: trained_settings(inputs, seed),
    )
    result = run_training(spec, state_dir, RunOutputs(metrics_path, model_path, tensorboard_dir), device)
    return result.model, result.payload


def _view_dataset(
    views: np.ndarray, depth: np.ndarray, rows: np.ndarray, device: torch.device, preload: bool
):
    from torch.utils.data import TensorDataset

    tensors = [torch.from_numpy(np.ascontiguousarray(a[rows])) for a in (views, depth)]
    if preload and device.type == "cuda":
        tensors = [t.to(device) for t in tensors]
    elif device.type == "cuda":
        tensors = [t.pin_memory() for t in tensors]
    return TensorDataset(*tensors)


def check_views(views: Views, inputs: ModelInputs, cfg: ContrastiveConfig, path: str = "the views") -> None:
    """The views belong to these contigs (same names, same order) and this model's groups."""
    if len(views.names) != len(inputs.names) or not np.array_equal(views.names, inputs.names):
        raise ValueError(f"{path}: contig names differ from the k-mer profiles' (rerun the views step)")
    if tuple(views.groups) != tuple(cfg.groups):
        raise ValueError(f"{path} holds groups {list(views.groups)}, the model reads {list(cfg.groups)}")
    if views.views.shape[1] < 2:
        raise ValueError(f"{path} has {views.views.shape[1]} view(s) per contig; contrastive pairs need 2")


def train_contrastive(
    inputs: ModelInputs,
    views: Views,
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
) -> tuple[ContrastiveEncoder, dict[str, Any]]:
    """Fit the contrastive encoder on the train split's views (``model_cfg`` is
    ``binning.model.contrastive``); write metrics and the exported model. Resumes like
    :func:`train_vae`. Returns the best model and the metrics payload."""
    cfg = ContrastiveConfig.from_dict(model_cfg, n_depth=inputs.n_depth)
    resolved = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}
    del resolved["n_depth"]
    check_views(views, inputs, cfg)
    splits = split_indices(
        len(inputs.x), float(split_cfg["val_fraction"]), float(split_cfg["test_fraction"]), seed
    )
    # Standardise with the training contigs only (whole-contig profiles, view 0).
    mean, sd = ContrastiveEncoder.standardiser(views.views[splits["train"], 0], cfg.pseudocount)
    depth = np.ascontiguousarray(inputs.x[:, inputs.x.shape[1] - inputs.n_depth :])
    batch = int(train_cfg.get("batch_size", 0)) or None

    def after_fit(state: RunState) -> dict[str, Any]:
        epoch_s = [h["time/epoch_s"] for h in state.fit.history]
        n_train, n_val = len(splits["train"]), len(splits["val"])
        return {
            "test": state.test_losses,
            "n_contigs": {s: len(i) for s, i in splits.items()},
            # NT-Xent of an encoder that knows nothing: log(2b - 1) for validation batches of b.
            "chance_nt_xent": float(np.log(2 * min(batch or n_val, n_val) - 1)),
            "fit_seconds": state.fit_seconds,
            "mean_epoch_seconds": float(np.mean(epoch_s)) if epoch_s else None,
            "train_contigs_per_second": (n_train / float(np.mean(epoch_s))) if epoch_s else None,
            "n_depth": inputs.n_depth,
            "n_views": int(views.views.shape[1]),
        }

    spec = RunSpec(
        kind=CONTRASTIVE_KIND,
        train_config=TrainConfig.from_dict(train_cfg, seed=seed),
        # Every option, defaults included: the exported model rebuilds without the schema.
        model_config=resolved,
        build_model=lambda: ContrastiveEncoder(cfg, mean, sd),
        build_data=lambda dev: {
            s: _view_dataset(views.views, depth, idx, dev, preload) for s, idx in splits.items() if len(idx)
        },
        ids={"contigs": inputs.names},
        data_fingerprint=data_fingerprint(
            inputs_fingerprint(inputs), views.coords, views.views[:: max(1, len(views.views) // 64)]
        ),
        run_config={"n_depth": inputs.n_depth, "split": split_cfg, "n": len(inputs.x)},
        after_fit=after_fit,
        export_extra=lambda state: trained_settings(inputs, seed),
    )
    result = run_training(spec, state_dir, RunOutputs(metrics_path, model_path, tensorboard_dir), device)
    return result.model, result.payload


def trained_settings(inputs: ModelInputs, seed: int) -> dict[str, Any]:
    """What an exported binning model records of its run beside its own config, so that
    ``genomelab predict binning`` profiles and clusters a new assembly as the run did: the
    abundance columns, the profiles' length filter, the k-mer layout, the run's seed."""
    from genomelab.binning.kmers import GROUP_SLICES

    return {
        "n_depth": inputs.n_depth,
        "min_length": int(inputs.min_length),
        "kmer_layout": {name: [s.start, s.stop] for name, s in GROUP_SLICES.items()},
        "seed": int(seed),
    }


def no_depth_message(path: str | os.PathLike, trained: int) -> str:
    """What a model trained with ``trained`` abundance columns says when given none."""
    return (
        f"{path} was trained with {trained} abundance columns, the inputs have none "
        "(no depth file given; pass the run's abundance table with --depth)"
    )


def load_model(
    path: str | os.PathLike, n_depth: int, depth_path: str | os.PathLike | None = None
) -> KmerVAE | ContrastiveEncoder:
    """The model of an exported VAE or contrastive encoder (CPU, eval mode); refuses one
    trained with another number of abundance columns (naming ``depth_path``, the inputs'
    abundance table, or saying there is none). Both have ``embed(x)``."""
    exported = load_exported(path)
    if exported.kind not in (KIND, CONTRASTIVE_KIND):
        raise ValueError(f"{path} holds a {exported.kind!r} model, not a binning model")
    trained = int(exported.extra["n_depth"])
    if trained != n_depth:
        if depth_path is not None:
            where = f"the depth file {depth_path} has {n_depth}"
        elif n_depth == 0:
            raise ValueError(no_depth_message(path, trained))
        else:
            where = f"the inputs have {n_depth}"
        raise ValueError(f"{path} was trained with {trained} abundance columns, {where}")
    model: KmerVAE | ContrastiveEncoder
    if exported.kind == KIND:
        model = KmerVAE(VAEConfig.from_dict(exported.config, n_depth=n_depth))
    else:
        model = ContrastiveEncoder(ContrastiveConfig.from_dict(exported.config, n_depth=n_depth))
    model.load_state_dict(exported.weights)
    return model.eval()


def train_from_files(
    features_h5: str | os.PathLike,
    depth: str | None,
    views_h5: str | None,
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
    """The model of ``binning.model.kind`` trained on the feature file's contigs (plus depth
    columns when given; the contrastive encoder also reads ``views_h5``); returns the
    metrics payload."""
    kind = model_kind(model_cfg)
    if kind == "tnf":
        raise ValueError("binning.model.kind 'tnf' trains no model: its bins come from the TNF baseline")
    inputs = load_inputs(features_h5, depth)
    common = (train_cfg, split_cfg, seed, state_dir, metrics_path, model_path, tensorboard_dir)
    if kind == "contrastive":
        if not views_h5:
            raise ValueError(
                "binning.model.kind 'contrastive' needs the contig views file (binning_views rule)"
            )
        _, payload = train_contrastive(
            inputs,
            load_views(views_h5),
            model_cfg.get("contrastive", {}),
            *common,
            resolve_device(device),
            preload,
        )
    else:
        _, payload = train_vae(inputs, model_cfg, *common, resolve_device(device), preload)
    return payload
