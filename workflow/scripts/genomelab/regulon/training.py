"""The regulon_train step: the sequence network through the shared training run
(``genomelab.train.run``), its predictions on the held-out windows, and its exported model."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from genomelab.regulon.metrics import binary_metrics, regression_metrics
from genomelab.regulon.model import LabelPriors, RegulonModelConfig, RegulonNet
from genomelab.regulon.targets import TargetConfig, TargetData, WindowTensors
from genomelab.regulon.tracks import READOUT_ATTR, TRAIN_GROUP, empty_tracks, place_windows, write_tracks
from genomelab.train.device import resolve_device
from genomelab.train.engine import TrainConfig
from genomelab.train.export import ExportedModel, data_fingerprint, load_exported
from genomelab.train.run import RunOutputs, RunSpec, RunState, run_training

logger = logging.getLogger(__name__)


def model_config(model: dict[str, Any], targets: dict[str, Any]) -> RegulonModelConfig:
    """The model config; resolution and bin size always come from the targets' geometry."""
    tcfg = TargetConfig.from_dict(targets)
    return RegulonModelConfig.from_dict(model, resolution_bp=tcfg.resolution_bp, bin_bp=tcfg.bin_bp)


def tensor_dataset(t: WindowTensors, device: torch.device) -> TensorDataset:
    """Tensors preloaded on the training device (a genome's windows fit easily): codes,
    expression, mask, density, operon and, when ``t`` has it, the packed annotation last."""
    arrays = (t.codes, t.expression, t.expression_mask, t.density, t.operon, t.annotation)
    return TensorDataset(
        *(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays if a is not None)
    )


@torch.no_grad()
def predict_windows(
    model: RegulonNet,
    codes: torch.Tensor,
    batch_size: int = 64,
    rc_average: bool = True,
    annotation: torch.Tensor | None = None,
) -> dict[str, np.ndarray]:
    """Predictions [n, 2, L/step] per head for window codes [n, L] (and packed annotation
    [n, L] for a model that reads it), reverse-complement averaged."""
    model.eval()
    out: dict[str, list[np.ndarray]] = {"expression": [], "density": [], "operon": []}
    device = next(model.parameters()).device
    for i in range(0, len(codes), batch_size):
        ann = None if annotation is None else annotation[i : i + batch_size].to(device)
        pred = model.predict(codes[i : i + batch_size].to(device), rc_average=rc_average, annotation=ann)
        for k in out:
            out[k].append(pred[k].float().cpu().numpy())
    return {k: np.concatenate(v) for k, v in out.items()}


@torch.no_grad()
def initial_loss(model: RegulonNet, dataset: TensorDataset, batch_size: int, max_windows: int = 512) -> float:
    """Mean loss of the untrained model over the first ``max_windows`` windows (no augmentation)."""
    model.eval()
    device = next(model.parameters()).device
    total, n = 0.0, 0
    for i in range(0, min(len(dataset), max_windows), batch_size):
        batch = tuple(t[i : i + batch_size].to(device) for t in dataset.tensors)
        out = model.loss(batch)
        total += float(out.loss) * out.n
        n += out.n
    return total / max(n, 1)


def _eval_fn(model: RegulonNet, dataset: TensorDataset, device: torch.device) -> dict[str, float]:
    # Over all positions of the validation windows, pooled (the same axis as the final metrics).
    codes, expr, mask, dens, oper = dataset.tensors[:5]
    pred = predict_windows(model, codes, annotation=_annotation(dataset))
    m = mask.cpu().numpy()
    e = regression_metrics(pred["expression"][m], expr.cpu().numpy()[m])
    d = regression_metrics(pred["density"].ravel(), dens.cpu().numpy().ravel())
    o = binary_metrics(pred["operon"].ravel(), oper.cpu().numpy().ravel())
    return {"expression_pearson": e["pearson"], "density_r2": d["r2"], "operon_auroc": o["auroc"]}


def _annotation(dataset: TensorDataset) -> torch.Tensor | None:
    """The packed annotation of a ``tensor_dataset`` (its sixth tensor), if it has one."""
    return dataset.tensors[5] if len(dataset.tensors) > 5 else None


def tiled_train_rows(data: TargetData) -> np.ndarray:
    """Rows of training windows that do not overlap (greedily from each block's start): the
    positions the pair readouts are fitted on, each predicted once."""
    w = data.split_windows("train")
    rows, end, block = [], -1, None
    for i, (start, b) in enumerate(zip(w["start"].to_numpy(), w["block"].to_numpy(), strict=True)):
        if b != block or start >= end:
            rows.append(i)
            block, end = b, start + data.config.window_bp
    return np.asarray(rows, dtype=np.int64)


# Kind of the regulon network's exported model (train/export.py).
KIND = "regulon"


def priors_of(t: WindowTensors) -> LabelPriors:
    """The label priors of a set of windows (the training set's start the heads)."""
    return LabelPriors.from_targets(t.expression, t.expression_mask, t.density, t.operon)


def build_model(model_cfg: RegulonModelConfig, train: WindowTensors) -> RegulonNet:
    """A fresh network whose heads start at the training labels' priors."""
    model = RegulonNet(model_cfg)
    model.set_priors(priors_of(train))
    return model


def train(
    targets_path: str | os.PathLike,
    model_cfg: RegulonModelConfig,
    train_cfg: TrainConfig,
    state_root: str | os.PathLike,
    checkpoint_out: str | os.PathLike,
    metrics_out: str | os.PathLike,
    tensorboard_dir: str | os.PathLike,
    predictions_out: str | os.PathLike,
    device: str = "auto",
    genes_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Fit the model with the shared engine; predict the val/test windows; write metrics.

    ``checkpoint_out`` is the exported model (best weights). With ``genes_path`` (the
    module's genes.tsv) the operon pair readout (:func:`~genomelab.regulon.operons.fit_readout`)
    is fitted on the training pairs from the best network's output on the training blocks and
    saved twice, the same dict: in the exported model (``extra["operon_readout"]``, read by
    prediction) and in the predictions file (read by evaluation). Returns the metrics payload."""
    data = TargetData(targets_path)
    sets = {s: data.tensors(s) for s in ("train", "val", "test")}
    if model_cfg.inputs == "sequence":
        # Not read by the network: not copied to the device either.
        sets = {s: dataclasses.replace(t, annotation=None) for s, t in sets.items()}

    def before_fit(state: RunState) -> None:
        state.values["initial"] = {
            "initial/loss": initial_loss(state.model, state.datasets["train"], train_cfg.batch_size)
        }

    def after_fit(state: RunState) -> dict[str, Any]:
        tracks = empty_tracks(data)
        for s in ("val", "test"):
            ds = state.datasets[s]
            place_windows(
                tracks,
                data,
                sets[s].starts,
                predict_windows(state.model, ds.tensors[0], annotation=_annotation(ds)),
            )
        state.values["tracks"] = tracks
        # The training blocks too, in a separate group: the pair readout (operons.py) is fitted
        # on training pairs, so it needs the network's output there; metrics never read it.
        rows = torch.from_numpy(tiled_train_rows(data))
        ds = state.datasets["train"]
        ann = _annotation(ds)
        train_tracks = empty_tracks(data)
        place_windows(
            train_tracks,
            data,
            sets["train"].starts[rows.numpy()],
            predict_windows(
                state.model,
                ds.tensors[0][rows.to(ds.tensors[0].device)],
                annotation=None if ann is None else ann[rows.to(ann.device)],
            ),
        )
        state.values["train_tracks"] = train_tracks
        state.values["operon_readout"] = _fit_readout(data, genes_path, train_tracks["operon"])
        history = state.fit.history
        return {
            "initial": state.values["initial"],
            "test": state.test_losses,
            "best_checkpoint": str(checkpoint_out),
            "loss_first_epoch": history[0]["train/loss"],
            "loss_last_epoch": history[-1]["train/loss"],
        }

    spec = RunSpec(
        kind=KIND,
        train_config=train_cfg,
        model_config=dict(model_cfg.__dict__),
        build_model=lambda: build_model(model_cfg, sets["train"]),
        build_data=lambda dev: {s: tensor_dataset(t, dev) for s, t in sets.items()},
        ids={"contigs": [data.contig]},
        data_fingerprint=data_fingerprint(
            *(
                a
                for t in sets.values()
                for a in (t.codes, t.expression, t.expression_mask, t.density, t.operon)
            ),
            # The annotation only where the network reads it (sequence-only runs keep their print).
            *((t.annotation for t in sets.values()) if model_cfg.inputs != "sequence" else ()),
        ),
        run_config={"targets": data.config.__dict__},
        eval_fn=_eval_fn,
        before_fit=before_fit,
        after_fit=after_fit,
        write_outputs=lambda state: write_tracks(
            predictions_out,
            {"model": state.values["tracks"], TRAIN_GROUP: state.values["train_tracks"]},
            data,
            state.values["operon_readout"],
        ),
        export_extra=lambda state: (
            {
                "targets_config": dict(data.config.__dict__),
                "best_epoch": state.fit.best_epoch,
            }
            | ({READOUT_ATTR: state.values["operon_readout"]} if state.values["operon_readout"] else {})
        ),
    )
    outputs = RunOutputs(metrics_out, checkpoint_out, tensorboard_dir)
    return run_training(spec, state_root, outputs, resolve_device(device)).payload


def _fit_readout(
    data: TargetData, genes_path: str | os.PathLike | None, train_track: np.ndarray
) -> dict[str, Any] | None:
    """The pair readout's plain dict (None without genes, or without training pairs of both
    classes: the model then predicts its tracks only)."""
    if genes_path is None:
        return None
    from genomelab.regulon.data import read_genes
    from genomelab.regulon.operons import fit_readout

    found = fit_readout(data, read_genes(genes_path), train_track)
    if found is None:
        logger.warning("no training pairs of both classes: no operon pair readout saved with the model")
        return None
    logger.info(
        "operon pair readout fitted on %d training pairs (%d in one operon)",
        found.n_train_pairs,
        found.n_train_positive,
    )
    return found.to_dict()


def load_model(path: str | os.PathLike, contig: str | None = None) -> tuple[RegulonNet, ExportedModel]:
    """The network of an exported model (eval mode, CPU) and the file's content; ``contig``,
    when given, must be the contig it was trained on."""
    exported = load_exported(path, expect_ids={"contigs": [contig]} if contig else None, kind=KIND)
    model = RegulonNet(RegulonModelConfig(**exported.config))
    model.load_state_dict(exported.weights)
    return model.eval(), exported


def train_from_sections(
    targets_path: str | os.PathLike,
    model_section: dict[str, Any],
    targets_section: dict[str, Any],
    train_section: dict[str, Any],
    seed: int,
    state_root: str | os.PathLike,
    checkpoint_out: str | os.PathLike,
    metrics_out: str | os.PathLike,
    tensorboard_dir: str | os.PathLike,
    predictions_out: str | os.PathLike,
    device: str = "auto",
    genes_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """:func:`train` with its configs built from the ``regulon`` config sections."""
    train_cfg = TrainConfig.from_dict(train_section, seed=seed)
    Path(tensorboard_dir).mkdir(parents=True, exist_ok=True)
    return train(
        targets_path,
        model_config(model_section, targets_section),
        train_cfg,
        state_root,
        checkpoint_out,
        metrics_out,
        tensorboard_dir,
        predictions_out,
        device,
        genes_path,
    )
