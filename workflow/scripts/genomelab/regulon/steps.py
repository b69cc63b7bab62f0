"""Snakemake steps of the regulon module: each ``<name>_step(smk)`` unpacks ``smk`` and calls
one plain typed function, which tests and the standalone CLI (``regulon/cli.py``) call directly.

Logic modules are imported inside the steps, so the CPU rules never import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genomelab.config import param


def process_step(smk: Any) -> None:
    from genomelab.regulon.data import process, source_from_config

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
        cfg.get("min_confidence"),
        tuple(smk.params.region),
    )


def targets_step(smk: Any) -> None:
    from genomelab.regulon.targets import make_targets

    cfg = param(smk, "cfg")
    make_targets(
        smk.input.genes,
        smk.input.operons,
        smk.input.genome,
        cfg["targets"],
        smk.output.targets,
        cfg.get("contig"),
        smk.params.seed,
        smk.output.blocks,
    )


def diagnostics_step(smk: Any) -> None:
    import torch

    from genomelab.regulon.diagnostics import DiagnosticsConfig, diagnose
    from genomelab.regulon.training import model_config

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


def baselines_step(smk: Any) -> None:
    from genomelab.regulon.baselines import run_baselines

    cfg = param(smk, "cfg")
    run_baselines(smk.input.targets, cfg["baseline"], smk.output.tracks, smk.output.info, smk.params.seed)


def train_step(smk: Any) -> None:
    import torch

    from genomelab.regulon.training import train_from_sections
    from genomelab.train.run import train_param

    cfg = param(smk, "cfg")
    # Exactly the rule's threads (1 by default): more intra-op threads than free cores makes
    # torch's thread pool spin against other jobs; on a busy 2-core machine one demo epoch took
    # 427 s with 2 threads and 40-110 s with 1. On a GPU the CPU thread count hardly matters.
    torch.set_num_threads(max(1, int(smk.threads)))
    train_from_sections(
        smk.input.targets,
        cfg["model"],
        cfg["targets"],
        train_param(smk, "regulon", cfg["train"]),
        int(smk.params.seed),
        smk.params.state_dir,
        smk.output.checkpoint,
        smk.output.metrics,
        smk.output.tensorboard,
        smk.output.predictions,
        smk.params.device,
        smk.input.genes,
    )


def evaluate_step(smk: Any) -> None:
    from genomelab.regulon.evaluate import evaluate

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
        cfg.get("baseline"),
    )


def folds_step(smk: Any) -> None:
    from genomelab.regulon.folds import write_folds

    cfg = param(smk, "cfg")
    write_folds(
        smk.input.targets,
        int(cfg["evaluation"]["folds"]),
        smk.output.folds,
        list(smk.output.targets),
        cfg["targets"]["heldout"],
        int(smk.params.seed),
    )


def summary_step(smk: Any) -> None:
    from genomelab.regulon.summary import summarise_folds

    summarise_folds(
        list(smk.input.summaries),
        smk.input.folds,
        smk.output.summary,
        smk.output.summary_md,
        smk.output.table,
        smk.params.scheme,
    )
