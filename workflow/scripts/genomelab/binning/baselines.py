"""The reference the VAE must beat: tetranucleotide frequencies (MetaBAT's TNF signal),
log-transformed, standardised and reduced by PCA, clustered like the VAE latent (with the
abundance columns beside it in the clustering when a depth table is given)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from genomelab.binning.kmers import GROUP_SLICES, N_FEATURES
from genomelab.config import ConfigSection, from_schema

if TYPE_CHECKING:  # cluster imports torch: only the clustering function needs it
    from genomelab.binning.cluster import ClusterConfig


@dataclass
class BaselineConfig(ConfigSection):
    SECTION = "binning.baseline"

    n_components: int = from_schema("binning.baseline.n_components")
    pseudocount: float = from_schema("binning.baseline.pseudocount")

    def __post_init__(self) -> None:
        if self.n_components < 1:
            raise ValueError(f"baseline.n_components must be >= 1, not {self.n_components}")
        if not self.pseudocount > 0:
            raise ValueError(f"baseline.pseudocount must be > 0, not {self.pseudocount}")


def tnf_embedding(x: np.ndarray, cfg: BaselineConfig, n_depth: int = 0) -> np.ndarray:
    """[n, 2761 + n_depth] model inputs -> [n, n_components] TNF (+ abundance) PCA scores.

    Memory is ``O(n * 136)``; the PCA is an SVD of the 136 (+ n_depth) column covariance,
    so it stays cheap for millions of contigs.
    """
    tnf = np.log(x[:, GROUP_SLICES["k4"]].astype(np.float64) + cfg.pseudocount)
    parts = [tnf]
    if n_depth:
        parts.append(x[:, N_FEATURES : N_FEATURES + n_depth].astype(np.float64))
    feats = np.concatenate(parts, axis=1)
    feats -= feats.mean(axis=0)
    std = feats.std(axis=0)
    feats /= np.where(std > 0, std, 1.0)
    cov = feats.T @ feats / max(len(feats) - 1, 1)
    vals, vecs = np.linalg.eigh(cov)
    k = min(cfg.n_components, feats.shape[1])
    top = vecs[:, np.argsort(vals)[::-1][:k]]
    return (feats @ top).astype(np.float32)


def tnf_clusters(
    features_h5: str | os.PathLike,
    depth: str | None,
    baseline_cfg: BaselineConfig,
    cluster_cfg: ClusterConfig,
    min_bin_bp: int,
    clusters_out: str | os.PathLike,
    embedding_out: str | os.PathLike,
) -> np.ndarray:
    """The TNF baseline's embedding, clustered like the model's latent space (on the CPU);
    writes the cluster table and the embedding, returns the cluster ids [n]."""
    import pandas as pd

    from genomelab.binning.cluster import cluster_contigs
    from genomelab.binning.data import load_inputs
    from genomelab.binning.latent import save_latent
    from genomelab.io.tables import write_table

    inputs = load_inputs(features_h5, depth)
    # Abundance joins in the clustering (its own view beside the unit-length TNF scores),
    # not the PCA, where a few sample columns would be a small share of 136 TNF columns.
    emb = tnf_embedding(inputs.x, baseline_cfg)
    abundance = inputs.x[:, N_FEATURES:] if inputs.n_depth else None
    labels = cluster_contigs(emb, inputs.lengths, cluster_cfg, min_bin_bp, "cpu", depth=abundance)
    write_table(pd.DataFrame({"contig": inputs.names, "cluster": labels}), clusters_out)
    save_latent(embedding_out, inputs.names, emb)
    return labels
