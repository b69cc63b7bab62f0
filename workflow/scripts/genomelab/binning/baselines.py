"""The reference the VAE must beat: tetranucleotide frequencies (MetaBAT's TNF signal),
log-transformed, standardised and reduced by PCA, clustered like the VAE latent."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genomelab.binning.kmers import GROUP_SLICES, N_FEATURES
from genomelab.config import ConfigSection, from_schema


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
