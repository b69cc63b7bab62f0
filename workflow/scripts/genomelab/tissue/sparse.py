"""Sparse, shallow methylomes: what sequencing gives instead of a complete array.

Nanopore, low-pass WGBS, targeted panels and cfDNA cover a different, sparse subset of regions
per sample, each at a few reads. Two operations make such inputs from complete ones:

- **read resampling**: a region observed at ``depth`` reads gets a methylated count drawn as
  Binomial(depth, m) from its measured level m, and the mean count / depth as its new level
  (a read here is one draw of the region's methylation level; for array betas this is the
  binomial read model, for NPZ calls a draw with replacement from the region's calls);
- **region masking**: each region is observed with probability ``observed`` (else NaN,
  coverage 0).

Training with both, per sample and batch (``sparse_training`` of a model; crossNN, Yuan et
al. 2025 Nat Cancer, trains a single masked layer this way so one model reads any subset),
teaches a model to use what is there. The evaluation grid applies the same degradation to
the test samples at fixed depths x observed fractions, with one seed per grid point, so every
model and baseline sees the same degraded inputs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

from genomelab.config import ConfigSection, from_schema

logger = logging.getLogger(__name__)


@dataclass
class SparsityConfig(ConfigSection):
    """The evaluation grid: reads per region ``depths`` x fraction of regions ``observed``
    (either empty = no grid)."""

    SECTION = "tissue.sparsity"

    depths: list[int] = from_schema("tissue.sparsity.depths")
    observed: list[float] = from_schema("tissue.sparsity.observed")

    def __post_init__(self) -> None:
        if any(d < 1 for d in self.depths):
            raise ValueError(f"tissue.sparsity.depths must be reads per region >= 1, not {self.depths}")
        if any(not 0 < f <= 1 for f in self.observed):
            raise ValueError(f"tissue.sparsity.observed must be fractions in (0, 1], not {self.observed}")

    def points(self) -> list[tuple[int, float]]:
        return [(d, f) for d in self.depths for f in self.observed]


def degrade(
    means: np.ndarray, depth: int, observed: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Means [n, R] (NaN = not covered) -> (means float32 [n, R], coverage float32 [n, R]) at
    ``depth`` reads per observed region, each covered region kept with probability ``observed``."""
    covered = np.isfinite(means)
    keep = covered & (rng.random(means.shape) < observed)
    level = np.where(covered, np.clip(means, 0, 1), 0.0)
    count = rng.binomial(depth, level)
    out = np.where(keep, count / depth, np.nan).astype(np.float32)
    return out, np.where(keep, float(depth), 0.0).astype(np.float32)


def degraded_copies(
    means: np.ndarray,
    draws: int,
    depth_range: tuple[float, float],
    observed_range: tuple[float, float],
    seed: int,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``draws`` degraded copies of the samples ``means`` [n, R] (NaN = not covered), one copy
    of every sample at a time: (means float32 [n, R], coverage float32 [n, R]), each sample at
    its own depth and observed fraction drawn as :func:`degrade_batch` draws them
    (log-uniform in the ranges). Seeded: a rerun draws the same. A generator, so the caller
    can write each copy into its place without holding them all twice (at 176 x 51,089 and
    4 draws the copies are 290 MB)."""
    rng = np.random.default_rng([seed, 2])
    n, n_regions = means.shape
    # Rows per step: the binomial draw's float64 and int64 temporaries stay a few MB each.
    step = max(1, 2**20 // max(n_regions, 1))

    def log_uniform(lo: float, hi: float) -> np.ndarray:
        return np.exp(rng.uniform(np.log(lo), np.log(hi), (n, 1)))

    for _ in range(draws):
        depth = np.maximum(np.round(log_uniform(*depth_range)), 1)
        frac = log_uniform(*observed_range)
        out_m = np.empty((n, n_regions), np.float32)
        out_c = np.empty((n, n_regions), np.float32)
        for a in range(0, n, step):
            rows = slice(a, a + step)
            block = means[rows]
            covered = np.isfinite(block)
            keep = covered & (rng.random(block.shape) < frac[rows])
            level = np.where(covered, np.clip(block, 0, 1), 0.0)
            count = rng.binomial(np.broadcast_to(depth[rows].astype(np.int64), block.shape), level)
            np.divide(count, depth[rows], out=out_m[rows], casting="unsafe")
            out_m[rows][~keep] = np.nan
            out_c[rows] = np.where(keep, depth[rows], 0.0)
        yield out_m, out_c


def grid_inputs(means: np.ndarray, cfg: SparsityConfig, seed: int) -> Iterator[dict[str, Any]]:
    """Every grid point's degraded copy of ``means`` [n, R], one at a time: ``depth``,
    ``observed``, ``means``, ``coverage``. Point i draws from its own seed (seed, i), so two
    jobs degrade a split alike. A generator: the 16 copies of a test split at 51,089 regions
    held at once were most of a grid's memory (1.15 GB at 176 samples)."""
    for i, (depth, frac) in enumerate(cfg.points()):
        rng = np.random.default_rng([seed, i])
        m, c = degrade(means, depth, frac, rng)
        yield {"depth": depth, "observed": frac, "means": m, "coverage": c}


def evaluate_grid(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    means: np.ndarray,
    y: np.ndarray,
    samples: np.ndarray,
    classes: np.ndarray,
    cfg: SparsityConfig,
    seed: int,
    reliability: bool = False,
) -> list[dict[str, Any]]:
    """Accuracy and balanced accuracy of ``predict(means, coverage) -> proba [n, C]`` at every
    grid point, with the per-sample predictions the summary's paired tests need; with
    ``reliability`` (calibrated probabilities) each point's reliability bins (sums, which
    folds pool by adding) and ECE too."""
    from genomelab.tissue.calibration import ece_of_bins, reliability_bins
    from genomelab.tissue.metrics import classification_metrics

    points = []
    for point in grid_inputs(means, cfg, seed):
        proba = predict(point["means"], point["coverage"])
        m = classification_metrics(y, proba, classes)
        rec = {
            "depth": point["depth"],
            "observed": point["observed"],
            "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"],
            "predictions": {
                "sample": [str(s) for s in samples],
                "true": np.asarray(y).tolist(),
                "pred": proba.argmax(1).tolist(),
            },
        }
        if reliability:
            rec["reliability"] = reliability_bins(proba, np.asarray(y))
            rec["ece"] = ece_of_bins(rec["reliability"])
        points.append(rec)
    return points


def _log_uniform(lo: float, hi: float, n: int, device: torch.device) -> torch.Tensor:
    import torch

    u = torch.rand(n, device=device)
    return torch.exp(np.log(lo) + u * (np.log(hi) - np.log(lo)))


def degrade_batch(
    means: torch.Tensor,
    coverage: torch.Tensor,
    fraction: float,
    depth_range: tuple[float, float],
    observed_range: tuple[float, float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Training augmentation on a batch (means [B, R] with NaN, coverage [B, R]): a random
    ``fraction`` of samples is degraded, each to its own depth (log-uniform integer in
    ``depth_range``) and observed fraction (log-uniform in ``observed_range``); the others
    keep their full data so the model still sees complete profiles."""
    import torch  # here, not at the top: tissue_baselines (CPU env) imports this module

    b = means.shape[0]
    dev = means.device
    pick = torch.rand(b, device=dev) < fraction
    if not bool(pick.any()):
        return means, coverage
    depth = torch.round(_log_uniform(*depth_range, b, dev)).clamp(min=1)[:, None]
    frac = _log_uniform(*observed_range, b, dev)[:, None]
    covered = torch.isfinite(means)
    level = torch.where(covered, means.clamp(0, 1), torch.zeros_like(means))
    count = torch.binomial(depth.expand_as(level).float(), level.float())
    keep = covered & (torch.rand_like(level) < frac)
    new_means = torch.where(keep, count / depth, torch.full_like(means, float("nan")))
    new_cov = torch.where(keep, depth.expand_as(level), torch.zeros_like(coverage))
    rows = pick[:, None]
    return torch.where(rows, new_means, means), torch.where(rows, new_cov, coverage)
