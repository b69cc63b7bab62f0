"""Abundance inputs of the binning model and its clustering from a MetaBAT
``jgi_summarize_bam_contig_depths`` table or a per-sample coverage table (strobealign
``--aemb``, CoverM), read by ``genomelab.io.tables.read_abundance_table``."""

from __future__ import annotations

import logging
import os

import numpy as np
import pandas as pd

from genomelab.io.tables import check_names, read_abundance_table

logger = logging.getLogger(__name__)


def depth_features(names: np.ndarray, depth_path: str | os.PathLike) -> np.ndarray:
    """[n, n_samples] abundance inputs for the contigs ``names`` (in that order).

    Each sample is divided by its mean depth (a library-size normalisation), ``log1p``
    tames the long tail, and each column is z-scored so that an untrained decoder (output
    near 0) starts at the mean abundance; the VAE reconstructs these with MSE, and the
    clustering uses them as an extra view (``genomelab.binning.cluster.cluster_points``).
    """
    index, depth, _ = read_abundance_table(depth_path)
    check_names(names, index, "the k-mer profiles", f"depth table {depth_path}")
    rows = index.get_indexer(pd.Index(np.asarray(names, dtype=object)))
    return normalise_depth(depth[rows])


def normalise_depth(depth: np.ndarray) -> np.ndarray:
    """Raw depths [n, n_samples] of a set of contigs -> the model's abundance inputs
    (float32, same shape), normalised over those contigs as :func:`depth_features` says."""
    depth = np.asarray(depth, dtype=np.float64)
    scale = depth.mean(axis=0, keepdims=True)
    scale[scale == 0] = 1.0
    logged = np.log1p(depth / scale)
    sd = logged.std(axis=0, keepdims=True)
    sd[sd == 0] = 1.0
    return ((logged - logged.mean(axis=0, keepdims=True)) / sd).astype(np.float32)
