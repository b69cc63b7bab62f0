"""The module's steps as plain typed functions, plus thin ``*_step(smk)`` wrappers for Snakemake.

Tests and the standalone CLI call the plain functions; the rules call the wrappers.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from genomelab.config import param
from genomelab.diagnostics import read_results, write_results
from genomelab.io.atomic import atomic_write_json
from genomelab.io.metrics import Metrics, read_json_file, read_metrics, write_metrics
from genomelab.regulon import baselines as bl
from genomelab.regulon.bsonio import Source
from genomelab.regulon.data import Normaliser, process_data, read_genes, read_operons, write_tables
from genomelab.regulon.diagnostics import DiagnosticsConfig, run_diagnostics
from genomelab.regulon.evaluate import (
    BASELINE_NAMES,
    MODEL,
    comparisons,
    plot_genes,
    plot_tracks,
    write_bedgraphs,
)
from genomelab.regulon.metrics import axes, binary_metrics, evaluate_tracks, gene_means, regression_metrics
from genomelab.regulon.model import RegulonModelConfig, RegulonNet
from genomelab.regulon.targets import TargetConfig, TargetData, WindowTensors, build_targets, read_genome
from genomelab.regulon.tracks import empty_tracks, place_windows, read_tracks, split_bin_mask, write_tracks
from genomelab.report.summary import ModuleSummary, write_module_summary
from genomelab.train.device import resolve_device
from genomelab.train.engine import TrainConfig
from genomelab.train.export import ExportedModel, data_fingerprint, load_exported
from genomelab.train.run import RunOutputs, RunSpec, RunState, run_training

logger = logging.getLogger(__name__)
MODULE = "regulon"


def model_config(model: dict[str, Any], targets: dict[str, Any]) -> RegulonModelConfig:
    """The model config; resolution and bin size always come from the targets' geometry."""
    tcfg = TargetConfig.from_dict(targets)
    return RegulonModelConfig.from_dict(model, resolution_bp=tcfg.resolution_bp, bin_bp=tcfg.bin_bp)


# ------------------------------------------------------------------------- 1. process
def process(
    source: Source,
    genome: str | os.PathLike,
    genes_out: str | os.PathLike,
    operons_out: str | os.PathLike,
    stats_out: str | os.PathLike,
    report_out: str | os.PathLike,
    value_field: str = "tpm",
    annotation: str | os.PathLike | None = None,
    contig: str | None = None,
) -> dict[str, Any]:
    genes, operons, norm, report = process_data(source, genome, value_field, annotation, contig)
    write_tables(genes, operons, genes_out, operons_out)
    norm.save(stats_out)
    atomic_write_json(report_out, report)
    return report


def source_from_config(cfg: dict[str, Any], dump_dir: str | None) -> Source:
    uri_env = cfg.get("mongodb_uri_env")
    return Source(
        dump_dir=None if uri_env else dump_dir,
        uri_env=uri_env or None,
        database=cfg["database"],
        max_docs_per_file=cfg["max_docs_per_file"] or None,
    )


def process_step(smk: Any) -> None:
    cfg = param(smk, "cfg")
    process(
        source_from_config(cfg, cfg["dump_dir"]),
        smk.input.genome,
        smk.output.genes,
        smk.output.operons,
        smk.output.stats,
        smk.output.report,
        cfg["expression"]["value"],
        cfg.get("annotation"),
        cfg.get("contig"),
    )


# ------------------------------------------------------------------------- 2. targets
def make_targets(
    genes_path: str | os.PathLike,
    operons_path: str | os.PathLike,
    genome: str | os.PathLike,
    targets_cfg: dict[str, Any],
    out: str | os.PathLike,
    contig: str | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    cfg = TargetConfig.from_dict(targets_cfg, seed=seed)
    name, codes = read_genome(genome, contig)
    return build_targets(read_genes(genes_path), read_operons(operons_path), codes, name, cfg, out)


def targets_step(smk: Any) -> None:
    cfg = param(smk, "cfg")
    make_targets(
        smk.input.genes,
        smk.input.operons,
        smk.input.genome,
        cfg["targets"],
        smk.output[0],
        cfg.get("contig"),
        smk.params.seed,
    )


# ------------------------------------------------------------------------- 3. diagnostics
def diagnose(
    targets_path: str | os.PathLike,
    report_path: str | os.PathLike,
    model_cfg: RegulonModelConfig,
    diag_cfg: DiagnosticsConfig,
    out: str | os.PathLike,
    seed: int = 0,
    device: str = "cpu",
) -> list:
    data = TargetData(targets_path)
    results = run_diagnostics(
        data, model_cfg, diag_cfg, read_json_file(report_path), seed, resolve_device(device)
    )
    write_results(out, MODULE, results)
    return results


def diagnostics_step(smk: Any) -> None:
    cfg = param(smk, "cfg")
    torch.set_num_threads(max(1, int(smk.threads)))
    # Diagnostics are cheap: run them on the CPU so that they never wait for a GPU.
    diagnose(
        smk.input.targets,
        smk.input.report,
        model_config(cfg["model"], cfg["targets"]),
        DiagnosticsConfig.from_dict(cfg["diagnostics"]),
        smk.output[0],
        smk.params.seed,
        "cpu",
    )


# ------------------------------------------------------------------------- baselines
def run_baselines(
    targets_path: str | os.PathLike,
    baseline_cfg: dict[str, Any],
    out: str | os.PathLike,
    info_out: str | os.PathLike,
    seed: int = 0,
) -> dict[str, Any]:
    data = TargetData(targets_path)
    tracks, info = bl.fit_baselines(data, bl.BaselineConfig.from_dict(baseline_cfg, seed=seed))
    write_tracks(out, tracks, data)
    atomic_write_json(info_out, info)
    return info


def baselines_step(smk: Any) -> None:
    cfg = param(smk, "cfg")
    run_baselines(smk.input.targets, cfg["baseline"], smk.output.tracks, smk.output.info, smk.params.seed)


# ------------------------------------------------------------------------- 4. training
def tensor_dataset(t: WindowTensors, device: torch.device) -> TensorDataset:
    """Tensors preloaded on the training device (a genome's windows fit easily)."""
    arrays = (t.codes, t.expression, t.expression_mask, t.density, t.operon)
    return TensorDataset(*(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays))


@torch.no_grad()
def predict_windows(
    model: RegulonNet, codes: torch.Tensor, batch_size: int = 64, rc_average: bool = True
) -> dict[str, np.ndarray]:
    """Predictions [n, 2, L/step] per head for window codes [n, L] (reverse-complement averaged)."""
    model.eval()
    out: dict[str, list[np.ndarray]] = {"expression": [], "density": [], "operon": []}
    device = next(model.parameters()).device
    for i in range(0, len(codes), batch_size):
        pred = model.predict(codes[i : i + batch_size].to(device), rc_average=rc_average)
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
    codes, expr, mask, dens, oper = dataset.tensors
    pred = predict_windows(model, codes)
    m = mask.cpu().numpy()
    e = regression_metrics(pred["expression"][m], expr.cpu().numpy()[m])
    d = regression_metrics(pred["density"].ravel(), dens.cpu().numpy().ravel())
    o = binary_metrics(pred["operon"].ravel(), oper.cpu().numpy().ravel())
    return {"expression_pearson": e["pearson"], "density_r2": d["r2"], "operon_auroc": o["auroc"]}


# Kind of the regulon network's exported model (train/export.py).
KIND = "regulon"


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
) -> dict[str, Any]:
    """Fit the model with the shared engine; predict the val/test windows; write metrics.

    ``checkpoint_out`` is the exported model (best weights). Returns the metrics payload."""
    data = TargetData(targets_path)
    sets = {s: data.tensors(s) for s in ("train", "val", "test")}

    def before_fit(state: RunState) -> None:
        state.values["initial"] = {
            "initial/loss": initial_loss(state.model, state.datasets["train"], train_cfg.batch_size)
        }

    def after_fit(state: RunState) -> dict[str, Any]:
        tracks = empty_tracks(data)
        for s in ("val", "test"):
            place_windows(
                tracks, data, sets[s].starts, predict_windows(state.model, state.datasets[s].tensors[0])
            )
        state.values["tracks"] = tracks
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
        build_model=lambda: RegulonNet(model_cfg),
        build_data=lambda dev: {s: tensor_dataset(t, dev) for s, t in sets.items()},
        ids={"contigs": [data.contig]},
        data_fingerprint=data_fingerprint(
            *(
                a
                for t in sets.values()
                for a in (t.codes, t.expression, t.expression_mask, t.density, t.operon)
            )
        ),
        run_config={"targets": data.config.__dict__},
        eval_fn=_eval_fn,
        before_fit=before_fit,
        after_fit=after_fit,
        write_outputs=lambda state: write_tracks(predictions_out, {"model": state.values["tracks"]}, data),
        export_extra=lambda state: {
            "targets_config": dict(data.config.__dict__),
            "best_epoch": state.fit.best_epoch,
        },
    )
    outputs = RunOutputs(metrics_out, checkpoint_out, tensorboard_dir)
    return run_training(spec, state_root, outputs, resolve_device(device)).payload


def load_model(path: str | os.PathLike, contig: str | None = None) -> tuple[RegulonNet, ExportedModel]:
    """The network of an exported model (eval mode, CPU) and the file's content; ``contig``,
    when given, must be the contig it was trained on."""
    exported = load_exported(path, expect_ids={"contigs": [contig]} if contig else None, kind=KIND)
    model = RegulonNet(RegulonModelConfig(**exported.config))
    model.load_state_dict(exported.weights)
    return model.eval(), exported


def train_step(smk: Any) -> None:
    cfg = param(smk, "cfg")
    # Exactly the rule's threads (1 by default): more intra-op threads than free cores makes
    # torch's thread pool spin against other jobs; on a busy 2-core machine one demo epoch took
    # 427 s with 2 threads and 40-110 s with 1. On a GPU the CPU thread count hardly matters.
    torch.set_num_threads(max(1, int(smk.threads)))
    train_cfg = TrainConfig.from_dict(cfg["train"], seed=int(smk.params.seed))
    Path(smk.output.tensorboard).mkdir(parents=True, exist_ok=True)
    train(
        smk.input.targets,
        model_config(cfg["model"], cfg["targets"]),
        train_cfg,
        smk.params.state_dir,
        smk.output.checkpoint,
        smk.output.metrics,
        smk.output.tensorboard,
        smk.output.predictions,
        smk.params.device,
    )


# ------------------------------------------------------------------------- 5. evaluation
def evaluate(
    targets_path: str | os.PathLike,
    genes_path: str | os.PathLike,
    stats_path: str | os.PathLike,
    model_tracks_path: str | os.PathLike,
    baseline_tracks_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    plot_bp: int = 20000,
    split: str = "test",
    train_metrics_path: str | os.PathLike | None = None,
    diagnostics_paths: tuple = (),
    report_path: str | os.PathLike | None = None,
    summary_json: str | os.PathLike | None = None,
    summary_md: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Metrics of model and baselines on the same held-out positions, plots, bedGraph, summary."""
    out_dir = Path(out_dir)
    data = TargetData(targets_path)
    genes = read_genes(genes_path)
    norm = Normaliser.load(stats_path)
    methods = {MODEL: read_tracks(model_tracks_path, data)["model"]}
    for key, tracks in read_tracks(baseline_tracks_path, data).items():
        methods[BASELINE_NAMES.get(key, key)] = tracks
    metrics = {name: evaluate_tracks(t, data, genes, split, norm.value_field) for name, t in methods.items()}
    payload: dict[str, Any] = {
        "split": split,
        "axes": axes(data, split, norm.value_field),
        "metrics": metrics,
        "normalisation": norm.__dict__,
    }
    if train_metrics_path is not None:
        tm = read_metrics(train_metrics_path)
        hist = tm.get("history", [])
        payload["training"] = {
            "initial_train_loss": tm.get("initial", {}).get("initial/loss"),
            "train_loss_per_epoch": [h.get("train/loss") for h in hist],
            "val_loss_per_epoch": [h.get("val/loss") for h in hist],
            "best_epoch": tm.get("best_epoch"),
            "stopped_reason": tm.get("stopped_reason"),
        }
    write_metrics(out_dir / "metrics.json", Metrics(payload, str(out_dir / "metrics.json")))
    plots = [out_dir / "plots" / "tracks.png", out_dir / "plots" / "genes.png"]
    plot_tracks(
        plots[0],
        data,
        {MODEL: methods[MODEL], BASELINE_NAMES["kmer"]: methods[BASELINE_NAMES["kmer"]]},
        split,
        plot_bp,
    )
    res_mask = split_bin_mask(data, split, data.config.resolution_bp)
    measured = genes[np.isfinite(genes["z"].to_numpy(dtype=float))]
    per_gene = {
        name: (
            gene_means(methods[name]["expression"], measured, data, res_mask),
            measured["z"].to_numpy(dtype=float),
        )
        for name in (MODEL, BASELINE_NAMES["kmer"])
    }
    plot_genes(plots[1], per_gene, split)
    write_bedgraphs(methods[MODEL], data, norm, out_dir / "tracks")
    if summary_json is not None:
        diags = [r.__dict__ for p in diagnostics_paths for r in read_results(p)]
        report = read_json_file(report_path) if report_path else {}
        notes = [f"Axis of {k}: {v}." for k, v in payload["axes"].items()]
        notes.append(
            f"Expression measured on {report.get('coverage', {}).get('measured_fraction', float('nan')):.1%} "
            f"of the genome; normalisation log1p then z (mean {norm.mean:.4g}, std {norm.std:.4g}) "
            "saved in data/norm_stats.json and inverted in the bedGraph export."
        )
        if "training" in payload:
            t = payload["training"]
            notes.append(
                f"Loss of the untrained model (eval mode, first 512 training windows): "
                f"{t['initial_train_loss']:.4g}; training loss per epoch (train mode, augmented): "
                f"{', '.join(f'{v:.3g}' for v in t['train_loss_per_epoch'])}; validation loss per epoch: "
                f"{', '.join(f'{v:.3g}' for v in t['val_loss_per_epoch'])}."
            )
        notes += [f"Data report warning: {w}" for w in report.get("warnings", [])]
        summary = ModuleSummary(
            MODULE,
            "regulon: E. coli sequence -> expression, gene density, operons",
            comparisons(metrics, split),
            diags,
            [str(p.relative_to(out_dir)) for p in plots],
            notes,
        )
        write_module_summary(summary, summary_json, summary_md)
    return payload


def evaluate_step(smk: Any) -> None:
    cfg = param(smk, "cfg")
    evaluate(
        smk.input.targets,
        smk.input.genes,
        smk.input.stats,
        smk.input.model_tracks,
        smk.input.baseline_tracks,
        Path(smk.output.summary).parent,
        cfg["plot_bp"],
        "test",
        smk.input.train_metrics,
        tuple(smk.input.diagnostics),
        smk.input.report,
        smk.output.summary,
        smk.output.summary_md,
    )
