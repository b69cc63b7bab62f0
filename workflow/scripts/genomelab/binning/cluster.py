"""Iterative medoid clustering in cosine space, with memory linear in the number of contigs.

The idea follows VAMB's clustering (Nissen et al. 2021, Nat Biotechnol 39:555): pick a
seed, move it to a denser nearby point (the medoid), cut a cluster at the first valley of
the distance histogram around the medoid, remove it, repeat. It needs no preset number of
bins. Every step computes distances from one or a few points to the remaining contigs
(matrix-vector products, ``O(n * d)`` memory), never an ``n x n`` matrix, so it runs on
millions of contigs on a GPU; the implementation here is our own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.nn import functional as F

logger = logging.getLogger(__name__)


@dataclass
class ClusterConfig:
    max_radius: float = 0.3
    default_radius: float = 0.15
    bin_width: float = 0.005
    valley_ratio: float = 0.25
    n_candidates: int = 25
    max_medoid_steps: int = 25
    candidate_chunk: int = 262144
    merge_radius: float = 0.5
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.default_radius <= self.max_radius <= 2:
            raise ValueError(
                f"cluster radii must satisfy 0 < default_radius ({self.default_radius}) <= "
                f"max_radius ({self.max_radius}) <= 2"
            )
        if not 0 <= self.merge_radius <= 2:
            raise ValueError(f"cluster.merge_radius must be in [0, 2], not {self.merge_radius}")
        if not 0 < self.bin_width < self.max_radius:
            raise ValueError(f"cluster.bin_width must be in (0, max_radius), not {self.bin_width}")
        if not 0 < self.valley_ratio < 1:
            raise ValueError(f"cluster.valley_ratio must be in (0, 1), not {self.valley_ratio}")
        for name in ("n_candidates", "max_medoid_steps", "candidate_chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"cluster.{name} must be >= 1, not {getattr(self, name)}")


def choose_radius(dist: torch.Tensor, cfg: ClusterConfig) -> float:
    """Radius at the first valley of the histogram of distances ``dist`` [m] from a medoid.

    The first peak is the medoid's own genome; the radius is the first bin after it whose
    (smoothed) count falls below ``valley_ratio`` times the peak and rises again (or stays
    low until ``max_radius``). Without a clear peak the cluster is only the medoid's tight
    neighbourhood (``default_radius``), so that noise never swallows a genome.
    """
    n_bins = int(round(cfg.max_radius / cfg.bin_width))
    hist = torch.histc(dist.float().clamp(min=0), bins=n_bins, min=0.0, max=cfg.max_radius).cpu().numpy()
    # A 3-bin moving average: single-bin dips are noise, not valleys.
    smooth = np.convolve(hist, np.ones(3) / 3, mode="same")
    # The first local maximum (not the global one): a larger genome further away must not
    # be mistaken for the medoid's own.
    peak = 0
    while peak + 1 < n_bins and smooth[peak + 1] >= smooth[peak]:
        peak += 1
    if smooth[peak] <= 1.0:  # fewer than ~3 neighbours: no genome-sized peak
        return cfg.default_radius
    low = smooth[peak:] < cfg.valley_ratio * smooth[peak]
    if not low.any():
        return cfg.default_radius
    first_low = peak + int(np.argmax(low))
    # Walk down the valley to its lowest point before the density rises again.
    valley = first_low
    while valley + 1 < n_bins and smooth[valley + 1] <= smooth[valley]:
        valley += 1
    return max((valley + 1) * cfg.bin_width, cfg.default_radius)


def _neighbour_counts(z: torch.Tensor, points: torch.Tensor, radius: float, chunk: int) -> torch.Tensor:
    """[len(points)] number of rows of ``z`` within cosine distance ``radius`` of each point."""
    counts = torch.zeros(len(points), dtype=torch.long, device=z.device)
    for start in range(0, len(z), chunk):
        sim = z[start : start + chunk] @ points.T
        counts += (sim >= 1 - radius).sum(dim=0)
    return counts


def medoid_cluster(
    latent: torch.Tensor | np.ndarray, cfg: ClusterConfig, device: torch.device | str = "cpu"
) -> np.ndarray:
    """Cluster rows of ``latent`` [n, d]; return [n] int64 cluster ids (0 = first found).

    Seeds are visited in a random order drawn from ``cfg.seed``, so results reproduce.
    """
    z = torch.as_tensor(np.asarray(latent) if not isinstance(latent, torch.Tensor) else latent)
    if z.ndim != 2 or len(z) == 0:
        raise ValueError(f"latent must be a non-empty [n, d] matrix, not shape {tuple(z.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError("latent contains non-finite values")
    z = F.normalize(z.to(device=device, dtype=torch.float32), dim=1)
    n = len(z)
    gen = np.random.default_rng(cfg.seed)
    # Remaining contigs are kept as a compacted index list: each cluster shrinks the work.
    remaining = torch.as_tensor(gen.permutation(n), device=z.device)
    z_rem = z[remaining]
    labels = np.full(n, -1, dtype=np.int64)
    cluster_id = 0
    while len(remaining):
        medoid = 0  # position in the remaining list: the next seed in random order
        dist = 1 - z_rem @ z_rem[medoid]
        radius = choose_radius(dist, cfg)
        members = dist <= radius
        best_count = int(members.sum())
        for _ in range(cfg.max_medoid_steps):
            member_pos = torch.nonzero(members).flatten()
            if len(member_pos) <= 1:
                break
            pick = torch.as_tensor(
                gen.choice(len(member_pos), min(cfg.n_candidates, len(member_pos)), replace=False),
                device=z.device,
            )
            cand = member_pos[pick]
            counts = _neighbour_counts(z_rem, z_rem[cand], radius, cfg.candidate_chunk)
            top = int(torch.argmax(counts))
            if int(counts[top]) <= best_count:
                break
            medoid = int(cand[top])
            dist = 1 - z_rem @ z_rem[medoid]
            radius = choose_radius(dist, cfg)
            members = dist <= radius
            best_count = int(members.sum())
        members[medoid] = True
        labels[remaining[members].cpu().numpy()] = cluster_id
        cluster_id += 1
        keep = ~members
        remaining, z_rem = remaining[keep], z_rem[keep]
    logger.info("medoid clustering: %d contigs -> %d clusters", n, cluster_id)
    return labels


def absorb_small_clusters(
    latent: torch.Tensor | np.ndarray,
    labels: np.ndarray,
    lengths: np.ndarray,
    min_bp: int,
    radius: float,
    chunk: int = 65536,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Move contigs of clusters smaller than ``min_bp`` to the nearest large cluster.

    Medoid clustering cuts conservatively, so a genome often ends as one large cluster plus
    fragments that never reach a writable bin size. Each contig of a small cluster joins
    the large cluster whose (length-weighted, normalised) centroid is closest in cosine
    distance, if that distance is at most ``radius``; otherwise it stays. Memory is
    ``O(chunk x n_large_clusters)``.
    """
    z = F.normalize(
        torch.as_tensor(np.asarray(latent) if not isinstance(latent, torch.Tensor) else latent).to(
            device=device, dtype=torch.float32
        ),
        dim=1,
    )
    labels = np.asarray(labels).copy()
    ids, inverse = np.unique(labels, return_inverse=True)
    weights = np.asarray(lengths, dtype=np.float64)
    bp = np.bincount(inverse, weights=weights, minlength=len(ids))
    large = np.flatnonzero(bp >= min_bp)
    small_rows = np.flatnonzero(bp[inverse] < min_bp)
    if len(large) == 0 or len(small_rows) == 0:
        return labels
    inv_t = torch.as_tensor(inverse, device=z.device)
    w_t = torch.as_tensor(weights, device=z.device, dtype=torch.float32)
    centroids = torch.zeros(len(ids), z.shape[1], device=z.device)
    centroids.index_add_(0, inv_t, z * w_t[:, None])
    centroids = F.normalize(centroids[torch.as_tensor(large, device=z.device)], dim=1)
    moved = 0
    for start in range(0, len(small_rows), chunk):
        rows = small_rows[start : start + chunk]
        dist = 1 - z[torch.as_tensor(rows, device=z.device)] @ centroids.T
        best, where = dist.min(dim=1)
        ok = (best <= radius).cpu().numpy()
        labels[rows[ok]] = ids[large[where.cpu().numpy()[ok]]]
        moved += int(ok.sum())
    logger.info("absorbed %d contigs of clusters < %d bp into %d large clusters", moved, min_bp, len(large))
    return labels


def cluster_contigs(
    latent: torch.Tensor | np.ndarray,
    lengths: np.ndarray,
    cfg: ClusterConfig,
    min_bp: int,
    device: torch.device | str = "cpu",
) -> np.ndarray:
    """Medoid clustering, then small clusters absorbed (``cfg.merge_radius`` > 0)."""
    labels = medoid_cluster(latent, cfg, device)
    if cfg.merge_radius > 0 and min_bp > 0:
        labels = absorb_small_clusters(latent, labels, lengths, min_bp, cfg.merge_radius, device=device)
    return labels
