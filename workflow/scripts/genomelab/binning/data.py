"""Model inputs: k-mer profiles joined with optional abundances, and the contig splits."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import numpy as np

from genomelab.binning.depth import depth_features
from genomelab.binning.kmers import Profiles, read_profiles_h5

logger = logging.getLogger(__name__)


@dataclass
class ModelInputs:
    names: np.ndarray  # [n] str
    lengths: np.ndarray  # [n] int64
    x: np.ndarray  # [n, 2761 + n_depth] float32
    n_depth: int
    depth_path: str | None = None  # the abundance table the depth columns came from, for errors
    # The profiles' length filter (binning.features.min_length), recorded in exported models.
    min_length: int = 0


def load_inputs(features_h5: str | os.PathLike, depth_path: str | os.PathLike | None = None) -> ModelInputs:
    """Profiles (and abundances, joined by contig name) as one float32 matrix."""
    prof: Profiles = read_profiles_h5(features_h5)
    if depth_path:
        depth = depth_features(prof.names, depth_path)
        x = np.concatenate([prof.features, depth], axis=1)
        logger.info("appended %d abundance columns from %s", depth.shape[1], depth_path)
        return ModelInputs(prof.names, prof.lengths, x, depth.shape[1], str(depth_path), prof.min_length)
    return ModelInputs(prof.names, prof.lengths, prof.features, 0, min_length=prof.min_length)


def split_indices(n: int, val_fraction: float, test_fraction: float, seed: int) -> dict[str, np.ndarray]:
    """Random disjoint sorted index sets ``train``/``val``/``test`` over ``n`` contigs.

    Contigs, not genomes, are the unit: the VAE is unsupervised and every contig is binned
    afterwards (as in VAMB); validation only guards against over-fitting the profiles.
    """
    if not (0 < val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError(
            f"split fractions val={val_fraction}, test={test_fraction} must be in [0, 1) "
            "with val > 0 and a sum below 1"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(val_fraction * n)))
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    if n - n_val - n_test < 1:
        raise ValueError(f"{n} contigs are too few for val={val_fraction}, test={test_fraction} splits")
    return {
        "val": np.sort(order[:n_val]),
        "test": np.sort(order[n_val : n_val + n_test]),
        "train": np.sort(order[n_val + n_test :]),
    }
