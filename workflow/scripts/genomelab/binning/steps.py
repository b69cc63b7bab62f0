"""Snakemake steps of the binning module: each ``<name>_step(smk)`` unpacks ``smk`` and calls
one plain typed function from the module named for what it does (``shred``, ``kmers``,
``diagnostics``, ``baselines``, ``contrastive_views``, ``training``, ``encode``, ``bins``,
``evaluate``, ``summary``).

Those modules are imported inside the steps: the CPU rules (shred, features, bins, evaluate,
summary) never import torch, and the torch rules limit its threads once it is loaded.
"""

from __future__ import annotations

from typing import Any

from genomelab.config import param
from genomelab.entry import limit_threads


def _optional(smk: Any, name: str) -> str | None:
    return getattr(smk.input, name) if name in smk.input.keys() else None


def shred_step(smk: Any) -> None:
    from genomelab.binning.shred import ShredConfig, shred_genomes

    shred_genomes(
        list(smk.input.genomes),
        smk.output.contigs,
        smk.output.truth,
        ShredConfig.from_dict(param(smk, "shred"), seed=int(smk.params.seed)),
        smk.output.depth if "depth" in smk.output.keys() else None,
    )


def features_step(smk: Any) -> None:
    from genomelab.binning.kmers import profile_contigs

    p = param(smk, "features")
    profile_contigs(
        smk.input.contigs,
        smk.output.h5,
        int(p["min_length"]),
        int(p["block_contigs"]),
        int(p["block_bases"]),
        int(p["chunk_rows"]),
        threads=max(1, int(getattr(smk, "threads", 1))),
        engine=str(p.get("engine", "auto")),
    )


def diagnostics_step(smk: Any) -> None:
    from genomelab.binning.diagnostics import diagnose

    # torch came with the import above: exactly the rule's threads for it too.
    limit_threads(int(smk.threads))
    diagnose(
        smk.input.h5,
        int(smk.params.min_contigs),
        _optional(smk, "truth"),
        _optional(smk, "depth"),
        param(smk, "model"),
        int(smk.params.seed),
        smk.output[0],
        smk.input.contigs,
    )


def baseline_step(smk: Any) -> None:
    from genomelab.binning.baselines import BaselineConfig, tnf_clusters
    from genomelab.binning.cluster import ClusterConfig

    limit_threads(int(smk.threads))
    tnf_clusters(
        smk.input.h5,
        _optional(smk, "depth"),
        BaselineConfig.from_dict(param(smk, "baseline")),
        ClusterConfig.from_dict(param(smk, "cluster"), seed=int(smk.params.seed)),
        int(smk.params.min_bin_bp),
        smk.output.clusters,
        smk.output.embedding,
    )


def views_step(smk: Any) -> None:
    from genomelab.binning.contrastive_views import views_step_files

    p = param(smk, "contrastive")
    views_step_files(
        smk.input.contigs,
        smk.input.h5,
        smk.output.h5,
        p["groups"],
        int(p["n_views"]),
        float(p["min_fraction"]),
        int(p["min_bp"]),
        int(smk.params.seed),
        str(smk.params.engine),
    )


def train_step(smk: Any) -> None:
    from genomelab.binning.training import train_from_files
    from genomelab.train.run import train_param

    limit_threads(int(smk.threads))
    train_from_files(
        smk.input.h5,
        _optional(smk, "depth"),
        _optional(smk, "views"),
        param(smk, "model"),
        train_param(smk, "binning", param(smk, "train")),
        param(smk, "split"),
        int(smk.params.seed),
        smk.params.state_dir,
        smk.output.metrics,
        smk.output.model,
        smk.output.tensorboard,
        smk.params.device,
        bool(smk.params.preload),
    )


def encode_step(smk: Any) -> None:
    from genomelab.binning.cluster import ClusterConfig
    from genomelab.binning.encode import encode_contigs

    limit_threads(int(smk.threads))
    encode_contigs(
        smk.input.h5,
        _optional(smk, "depth"),
        smk.input.model,
        ClusterConfig.from_dict(param(smk, "cluster"), seed=int(smk.params.seed)),
        smk.params.device,
        int(smk.params.min_bin_bp),
        smk.output.clusters,
        smk.output.latent,
    )


def bins_step(smk: Any) -> None:
    from genomelab.binning.bins import write_bins

    write_bins(
        smk.input.h5,
        smk.input.clusters,
        smk.input.contigs,
        int(smk.params.min_bin_bp),
        smk.output.fasta_dir,
        smk.output.contig_bins,
        smk.output.bin_summary,
    )


def evaluate_step(smk: Any) -> None:
    from genomelab.binning.evaluate import evaluate_bins
    from genomelab.binning.summary import MODEL_LABELS

    evaluate_bins(
        smk.input.h5,
        smk.input.truth,
        {"model": smk.input.model_clusters, "tnf_baseline": smk.input.baseline_clusters},
        {"model": smk.input.model_latent, "tnf_baseline": smk.input.baseline_embedding},
        int(smk.params.min_bin_bp),
        smk.output.json,
        smk.output.per_bin,
        {"model": smk.output.plot_model, "tnf_baseline": smk.output.plot_baseline},
        f"{MODEL_LABELS.get(smk.params.model_kind, smk.params.model_kind)} embedding",
    )


def summary_step(smk: Any) -> None:
    from genomelab.binning.summary import write_summary

    evaluated = "evaluation" in smk.input.keys()
    write_summary(
        _optional(smk, "metrics"),  # none with binning.model.kind tnf (nothing trained)
        smk.input.bin_summary,
        smk.input.contig_bins,
        list(smk.input.diagnostics),
        smk.input.evaluation if evaluated else None,
        (smk.input.plot_model, smk.input.plot_baseline) if evaluated else None,
        getattr(smk.params, "cluster_method", "graph"),
        int(smk.params.min_bin_bp),
        smk.output.json,
        smk.output.md,
        smk.params.model_kind,
        _optional(smk, "markers"),  # none when binning.markers.enabled is false
        _optional(smk, "baseline_markers"),  # only for a trained model without a truth table
    )
