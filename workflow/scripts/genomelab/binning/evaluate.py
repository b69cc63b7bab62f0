"""AMBER-style evaluation of bins against a truth table (Meyer et al. 2018, GigaScience 7:giy069).

Precision and recall are weighted by base pairs: a bin's genome is the one contributing most
of its bp; precision = that genome's bp in the bin / bin bp; recall = that genome's bp in the
bin / the genome's bp among all evaluated contigs. Good bins have recall >= 0.9 and
precision >= 0.95 (the thresholds of the binning literature's "near-complete" bins).

The adjusted Rand index comes in two weightings, named in every key: ``ari_bp*`` counts
pairs of base pairs (AMBER's ARI: a contig of n bp weighs n, so a long contig misplaced costs
more than a short one) and ``ari_contigs*`` counts pairs of contigs (scikit-learn's ARI).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score

logger = logging.getLogger(__name__)

GOOD_RECALL, GOOD_PRECISION = 0.9, 0.95


def per_bin_table(bins: np.ndarray, genomes: np.ndarray, lengths: np.ndarray) -> pd.DataFrame:
    """One row per bin: bp, n_contigs, majority genome, precision, recall.

    ``bins`` [n] bin labels (``-1`` = unbinned, skipped), ``genomes`` [n] truth labels,
    ``lengths`` [n] bp.
    """
    frame = pd.DataFrame(
        {"bin": np.asarray(bins), "genome": np.asarray(genomes), "bp": np.asarray(lengths, dtype=np.int64)}
    )
    genome_bp = frame.groupby("genome")["bp"].sum()
    binned = frame[frame["bin"].astype(str) != "-1"]
    if binned.empty:
        return pd.DataFrame(columns=["bin", "bp", "n_contigs", "genome", "precision", "recall"])
    cross = binned.groupby(["bin", "genome"])["bp"].sum().unstack(fill_value=0)
    bin_bp = cross.sum(axis=1)
    top = cross.idxmax(axis=1)
    top_bp = cross.max(axis=1)
    table = pd.DataFrame(
        {
            "bp": bin_bp,
            "n_contigs": binned.groupby("bin").size(),
            "genome": top,
            "precision": top_bp / bin_bp,
            "recall": top_bp / genome_bp.loc[top].to_numpy(),
        }
    )
    table.index.name = "bin"
    return table.reset_index().sort_values("bp", ascending=False, ignore_index=True)


def genome_best_f1(bins: np.ndarray, genomes: np.ndarray, lengths: np.ndarray) -> dict[str, float]:
    """Per genome, the bp-weighted F1 of the written bin that holds it best (0 when no bin
    holds any of it): the paired observation of a model-vs-baseline test over genomes.

    ``bins`` [n] (``-1`` = unbinned), ``genomes`` [n], ``lengths`` [n] bp. F1 of genome g in
    bin b: 2 P R / (P + R) with P = bp of g in b / bp of b and R = bp of g in b / bp of g.
    """
    frame = pd.DataFrame(
        {
            "bin": np.asarray(bins).astype(str),
            "genome": np.asarray(genomes).astype(str),
            "bp": np.asarray(lengths, dtype=np.float64),
        }
    )
    genome_bp = frame.groupby("genome")["bp"].sum()
    binned = frame[frame["bin"] != "-1"]
    best = dict.fromkeys(genome_bp.index, 0.0)
    if not binned.empty:
        cross = binned.groupby(["bin", "genome"])["bp"].sum().unstack(fill_value=0.0)
        precision = cross.div(cross.sum(axis=1), axis=0)
        recall = cross.div(genome_bp.loc[cross.columns], axis=1)
        f1 = (2 * precision * recall / (precision + recall)).fillna(0.0)
        best.update({str(g): float(v) for g, v in f1.max(axis=0).items()})
    return {str(g): float(v) for g, v in best.items()}


def _comb2(x: np.ndarray) -> float:
    return float((x * (x - 1.0) / 2.0).sum())


def weighted_ari(truth: np.ndarray, pred: np.ndarray, weights: np.ndarray) -> float:
    """Adjusted Rand index where item i stands for ``weights[i]`` units (bp) [n].

    Hubert & Arabie's formula on the contingency table of summed weights instead of item
    counts (what AMBER calls the bp-weighted ARI); with unit weights it equals the ordinary
    ARI. 1 when both partitions are one cluster (as scikit-learn does).
    """
    truth, pred = np.asarray(truth), np.asarray(pred)
    weights = np.asarray(weights, dtype=np.float64)
    if not len(truth) == len(pred) == len(weights):
        raise ValueError(f"truth ({len(truth)}), pred ({len(pred)}) and weights ({len(weights)}) differ")
    if len(truth) == 0:
        return 0.0
    frame = pd.DataFrame({"t": truth, "p": pred, "w": weights})
    both = _comb2(frame.groupby(["t", "p"])["w"].sum().to_numpy())
    rows = _comb2(frame.groupby("t")["w"].sum().to_numpy())
    cols = _comb2(frame.groupby("p")["w"].sum().to_numpy())
    total = _comb2(np.array([weights.sum()]))
    expected = rows * cols / total if total > 0 else 0.0
    top = (rows + cols) / 2
    if top == expected:
        return 1.0
    return float((both - expected) / (top - expected))


def _written_labels(bins: np.ndarray, lengths: np.ndarray, min_bin_bp: int) -> np.ndarray:
    """``bins`` [n] with contigs of bins under ``min_bin_bp`` (not written) set to ``-1``."""
    bins = np.asarray(bins).astype(str)
    size = pd.Series(np.asarray(lengths, dtype=np.int64)).groupby(bins).sum()
    small = set(size.index[size < min_bin_bp])
    return np.array([b if b != "-1" and b not in small else "-1" for b in bins])


def evaluate_binning(
    bins: np.ndarray, genomes: np.ndarray, lengths: np.ndarray, min_bin_bp: int = 0
) -> tuple[dict[str, float], pd.DataFrame]:
    """Summary metrics and the per-bin table.

    Bins smaller than ``min_bin_bp`` count as unbinned (they are not written as FASTA).
    Metrics: ``n_good_bins``, ``n_bins`` (written), ``ari_bp`` / ``ari_contigs`` (all
    contigs, each unbinned contig its own cluster; weighted by bp / counting contigs),
    ``ari_bp_binned`` / ``ari_contigs_binned`` (binned contigs only, as AMBER reports it),
    ``binned_bp_fraction``, ``mean_precision``/``mean_recall`` over written bins.
    """
    bins = np.asarray(bins).astype(str)
    genomes = np.asarray(genomes).astype(str)
    lengths = np.asarray(lengths, dtype=np.int64)
    if not len(bins) == len(genomes) == len(lengths):
        raise ValueError(
            f"bins ({len(bins)}), genomes ({len(genomes)}) and lengths ({len(lengths)}) differ in length"
        )
    labels = _written_labels(bins, lengths, min_bin_bp)
    written = labels != "-1"
    table = per_bin_table(labels, genomes, lengths)
    good = (table["recall"] >= GOOD_RECALL) & (table["precision"] >= GOOD_PRECISION)
    singleton = np.where(written, labels, np.char.add("unbinned_", np.arange(len(bins)).astype(str)))
    metrics = {
        "n_good_bins": int(good.sum()),
        "n_bins": int(len(table)),
        "n_genomes": int(len(np.unique(genomes))),
        "ari_bp": weighted_ari(genomes, singleton, lengths),
        "ari_bp_binned": weighted_ari(genomes[written], labels[written], lengths[written])
        if written.any()
        else 0.0,
        "ari_contigs": float(adjusted_rand_score(genomes, singleton)),
        "ari_contigs_binned": float(adjusted_rand_score(genomes[written], labels[written]))
        if written.any()
        else 0.0,
        "binned_bp_fraction": float(lengths[written].sum() / max(lengths.sum(), 1)),
        "mean_precision": float(table["precision"].mean()) if len(table) else 0.0,
        "mean_recall": float(table["recall"].mean()) if len(table) else 0.0,
    }
    table["good"] = good.to_numpy()
    return metrics, table


def evaluate_bins(
    features_h5: str | os.PathLike,
    truth: str | os.PathLike,
    clusters: dict[str, str],
    latents: dict[str, str],
    min_bin_bp: int,
    out_json: str | os.PathLike,
    out_per_bin: str | os.PathLike,
    plots: dict[str, str],
    model_title: str = "model embedding",
) -> dict[str, Any]:
    """The model's and the TNF baseline's bins against the truth table, with latent plots.

    ``clusters``, ``latents`` and ``plots`` are keyed ``model`` and ``tnf_baseline`` (cluster
    tables, embedding HDF5 files, plot paths); ``model_title`` names the model in its plot.
    Writes the metrics JSON and the model's per-bin table; returns the metrics.
    """
    from genomelab.binning.kmers import read_profiles_h5
    from genomelab.binning.latent import load_latent
    from genomelab.binning.plots import plot_latent
    from genomelab.io.atomic import atomic_write_json
    from genomelab.io.tables import check_names, read_clusters, read_truth, write_table

    prof = read_profiles_h5(features_h5)
    table_of_truth = read_truth(truth)
    check_names(prof.names, table_of_truth.index, "the k-mer profiles", f"truth table {truth}")
    genomes = table_of_truth.loc[prof.names].to_numpy()
    out: dict[str, Any] = {"min_bin_bp": min_bin_bp}
    tables = {}
    for method in ("model", "tnf_baseline"):
        labels = read_clusters(clusters[method], prof.names)
        metrics, table = evaluate_binning(labels, genomes, prof.lengths, min_bin_bp)
        written = _written_labels(labels, prof.lengths, min_bin_bp)
        out[method] = {**metrics, "per_genome_best_f1": genome_best_f1(written, genomes, prof.lengths)}
        tables[method] = table
        logger.info("%s: %s", method, metrics)
    write_table(tables["model"], out_per_bin)
    atomic_write_json(out_json, out)
    for method, title in (("model", model_title), ("tnf_baseline", "TNF PCA")):
        names, latent = load_latent(latents[method])
        labels = read_clusters(clusters[method], names, f"latent {latents[method]}")
        plot_latent(latent, labels, table_of_truth.loc[names].to_numpy(), plots[method], title)
    return out
