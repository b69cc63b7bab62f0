"""Snakemake steps of the binning module that need no torch (shredding, features, bins,
evaluation, summary); the torch steps are in ``train_steps`` so that CPU rules start fast.
Each step unpacks ``smk`` and calls a typed function."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomelab.binning import evaluate as ev
from genomelab.binning.bins import add_unbinned, bin_summary, unbinned_dropped, write_bin_fastas
from genomelab.binning.kmers import GROUP_SLICES, read_profiles_h5, write_profiles_h5
from genomelab.binning.shred import ShredConfig, shred_genomes
from genomelab.config import param
from genomelab.diagnostics import read_results
from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.metrics import TRAINING_KEYS, read_json_file, read_metrics
from genomelab.io.tables import check_names, read_clusters, read_contig_bins, read_truth, write_table
from genomelab.report import Comparison, ModuleSummary, write_module_summary

logger = logging.getLogger(__name__)

MODULE = "binning"
# Values from the model's development history (0.5M-sequence test set, ~500 epochs).
REFERENCE_TERMS = {
    "bce6": 0.0040,
    "bce5": 0.0136,
    "mse4": 0.0004,
    "mse3": 0.0002,
    "mse_gc": 0.0001,
    "kl": 493.0,
}


def _optional(smk: Any, name: str) -> str | None:
    return getattr(smk.input, name) if name in smk.input.keys() else None


# ------------------------------------------------------------------ shred
def shred_step(smk: Any) -> None:
    cfg = ShredConfig.from_dict(param(smk, "shred"), seed=int(smk.params.seed))
    depth_out = smk.output.depth if "depth" in smk.output.keys() else None
    shred_genomes(list(smk.input.genomes), smk.output.contigs, smk.output.truth, cfg, depth_out)


# --------------------------------------------------------------- features
def features_step(smk: Any) -> None:
    p = param(smk, "features")
    t0 = time.perf_counter()
    stats = write_profiles_h5(
        smk.input.contigs,
        smk.output.h5,
        int(p["min_length"]),
        int(p["block_contigs"]),
        int(p["block_bases"]),
        int(p["chunk_rows"]),
        threads=max(1, int(getattr(smk, "threads", 1))),
        engine=str(p.get("engine", "auto")),
    )
    dt = time.perf_counter() - t0
    logger.info("feature step: %.2f s, %.1f Mbp/s", dt, stats.bp_kept / max(dt, 1e-9) / 1e6)


def _save_latent(path: str | os.PathLike, names: np.ndarray, latent: np.ndarray) -> None:
    import h5py

    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("names", data=np.asarray(names, dtype=object), dtype=h5py.string_dtype())
        h5.create_dataset(
            "latent",
            data=np.asarray(latent, dtype=np.float32),
            chunks=(min(len(latent), 65536), latent.shape[1]),
        )


def _load_latent(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as h5:
        return np.asarray(h5["names"].asstr()[:], dtype=object), h5["latent"][:]


# -------------------------------------------------------------------- bins
def bins_step(smk: Any) -> None:
    prof = read_profiles_h5(smk.input.h5)
    labels = read_clusters(smk.input.clusters, prof.names)
    contig_table, per_bin = bin_summary(
        prof.names,
        labels,
        prof.lengths,
        prof.features[:, GROUP_SLICES["gc"].start],
        int(smk.params.min_bin_bp),
    )
    unlisted: list[tuple[str, int]] = []
    n = write_bin_fastas(smk.input.contigs, contig_table, smk.output.fasta_dir, unlisted=unlisted)
    # Contigs the features step skipped are listed as unbinned, not left out.
    write_table(add_unbinned(contig_table, unlisted, prof.min_length), smk.output.contig_bins)
    write_table(per_bin, smk.output.bin_summary)
    written = per_bin[per_bin["written"]]
    logger.info(
        "%d bins, %d written (>= %d bp) holding %d contigs and %d bp; %d small bins listed in the TSV only; "
        "%d contigs not profiled listed as unbinned",
        len(per_bin),
        len(written),
        int(smk.params.min_bin_bp),
        n,
        int(written["size_bp"].sum()),
        len(per_bin) - len(written),
        len(unlisted),
    )


# --------------------------------------------------------------- evaluation
def evaluate_step(smk: Any) -> None:
    prof = read_profiles_h5(smk.input.h5)
    truth = read_truth(smk.input.truth)
    check_names(prof.names, truth.index, "the k-mer profiles", f"truth table {smk.input.truth}")
    genomes = truth.loc[prof.names].to_numpy()
    min_bp = int(smk.params.min_bin_bp)
    out: dict[str, Any] = {"min_bin_bp": min_bp}
    tables = {}
    for method, path in (("vae", smk.input.model_clusters), ("tnf_baseline", smk.input.baseline_clusters)):
        labels = read_clusters(path, prof.names)
        metrics, table = ev.evaluate_binning(labels, genomes, prof.lengths, min_bp)
        out[method] = metrics
        tables[method] = table
        logger.info("%s: %s", method, metrics)
    write_table(tables["vae"], smk.output.per_bin)
    atomic_write_json(smk.output.json, out)
    from genomelab.binning.plots import plot_latent

    for key, path, title in (
        ("model_latent", smk.output.plot_model, "VAE latent"),
        ("baseline_embedding", smk.output.plot_baseline, "TNF PCA"),
    ):
        names, latent = _load_latent(getattr(smk.input, key))
        source = smk.input.model_clusters if key == "model_latent" else smk.input.baseline_clusters
        labels = read_clusters(source, names, f"latent {getattr(smk.input, key)}")
        plot_latent(latent, labels, truth.loc[names].to_numpy(), path, title)


# ----------------------------------------------------------------- summary
def summary_step(smk: Any) -> None:
    metrics = read_metrics(smk.input.metrics, require=TRAINING_KEYS)
    per_bin = pd.read_csv(smk.input.bin_summary, sep="\t")
    diagnostics = [dataclasses.asdict(r) for path in smk.input.diagnostics for r in read_results(path)]
    results_dir = Path(smk.output.json).parent
    min_bp = int(smk.params.min_bin_bp)
    comparisons, plots = [], []
    if "evaluation" in smk.input.keys():
        evaluation = read_json_file(smk.input.evaluation, "binning evaluation")
        method = getattr(smk.params, "cluster_method", "graph")
        clustering = "kNN-graph clustering" if method == "graph" else f"{method} clustering"
        keys = (
            "ari",
            "ari_binned",
            "n_good_bins",
            "n_bins",
            "binned_bp_fraction",
            "mean_precision",
            "mean_recall",
        )
        comparisons.append(
            Comparison(
                title="Binning against the truth table (bp-weighted, AMBER style)",
                split="all contigs",
                primary="ari",
                higher_is_better=True,
                rows={
                    f"beta-VAE + {clustering}": {k: evaluation["vae"][k] for k in keys},
                    f"TNF PCA + {clustering}": {k: evaluation["tnf_baseline"][k] for k in keys},
                },
                kinds={f"beta-VAE + {clustering}": "model", f"TNF PCA + {clustering}": "baseline"},
            )
        )
        plots = [os.path.relpath(p, results_dir) for p in (smk.input.plot_model, smk.input.plot_baseline)]
    test = metrics.get("test", {})
    terms = ", ".join(
        f"{t} {test.get(f'test/{t}', float('nan')):.4g} (ref {REFERENCE_TERMS[t]:g})" for t in REFERENCE_TERMS
    )
    written = per_bin[per_bin["written"]]
    notes = [
        f"Test-split loss terms beside the development-history reference (0.5M sequences, ~500 epochs): {terms}.",
        f"{len(per_bin)} bins; {len(written)} of at least {min_bp} bp written as FASTA "
        f"({int(written['size_bp'].sum())} bp); good bins = recall >= 0.9 and precision >= 0.95.",
        f"Training: {metrics.get('epochs_run')} epochs on {metrics.get('device')} "
        f"({metrics.get('mean_epoch_seconds') or 0:.2f} s/epoch, "
        f"{metrics.get('train_contigs_per_second') or 0:.0f} contigs/s); stopped: {metrics.get('stopped_reason')}.",
    ]
    if not comparisons:
        notes.append("No truth table was given, so bins were not evaluated (binning.input.truth).")
    dropped = unbinned_dropped(read_contig_bins(smk.input.contig_bins))
    summary = ModuleSummary(
        MODULE, "Contig binning (k-mer beta-VAE)", comparisons, diagnostics, plots, notes, dropped
    )
    write_module_summary(summary, smk.output.json, smk.output.md)
    for comp in comparisons:
        logger.info("%s", comp.verdict())
