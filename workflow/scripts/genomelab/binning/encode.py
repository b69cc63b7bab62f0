"""The binning_encode step: every contig's embedding under the trained model (the VAE's
latent mean or the contrastive encoder's output), clustered."""

from __future__ import annotations

import logging
import os
import time

import numpy as np
import pandas as pd
import torch

from genomelab.binning.cluster import ClusterConfig, cluster_contigs
from genomelab.binning.data import ModelInputs, load_inputs
from genomelab.binning.kmers import N_FEATURES
from genomelab.binning.latent import save_latent
from genomelab.binning.training import load_model
from genomelab.io.tables import write_table
from genomelab.train import resolve_device

logger = logging.getLogger(__name__)


def encode_and_cluster(
    model_path: str | os.PathLike,
    inputs: ModelInputs,
    cluster_cfg: ClusterConfig,
    device: torch.device,
    min_bin_bp: int = 0,
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings [n, d], cluster ids [n]) for every contig."""
    model = load_model(model_path, inputs.n_depth, inputs.depth_path).to(device)
    chunks = []
    for start in range(0, len(inputs.x), batch_size):
        xb = torch.from_numpy(inputs.x[start : start + batch_size]).to(device)
        chunks.append(model.embed(xb, batch_size))
    latent = torch.cat(chunks)
    # Abundance joins the clustering as its own view, as for the TNF baseline, so both methods
    # get the same clustering; strains that composition cannot split differ there.
    depth = inputs.x[:, N_FEATURES:] if inputs.n_depth else None
    labels = cluster_contigs(latent, inputs.lengths, cluster_cfg, min_bin_bp, device, depth=depth)
    return latent.cpu().numpy(), labels


def encode_contigs(
    features_h5: str | os.PathLike,
    depth: str | None,
    model_path: str | os.PathLike,
    cluster_cfg: ClusterConfig,
    device: str,
    min_bin_bp: int,
    clusters_out: str | os.PathLike,
    latent_out: str | os.PathLike,
) -> np.ndarray:
    """:func:`encode_and_cluster` on the feature file's contigs; writes the cluster table and
    the latent means, returns the cluster ids [n]."""
    inputs = load_inputs(features_h5, depth)
    dev = resolve_device(device)
    t0 = time.perf_counter()
    latent, labels = encode_and_cluster(model_path, inputs, cluster_cfg, dev, min_bin_bp)
    logger.info(
        "encoded and clustered %d contigs on %s in %.1f s", len(labels), dev, time.perf_counter() - t0
    )
    write_table(pd.DataFrame({"contig": inputs.names, "cluster": labels}), clusters_out)
    save_latent(latent_out, inputs.names, latent)
    return labels
