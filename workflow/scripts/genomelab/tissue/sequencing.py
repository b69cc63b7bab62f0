"""Array betas -> sequencing-like files, to check that an array-trained model reads sequencing.

A model trained on array betas (one region per probe, ``tissue_convert_tcga.py``) classifies
sequencing samples through the ordinary path: ``ingest`` (Bismark .cov / bedMethyl / wgbstools
-> per-sample NPZ over a regions BED) and ``predict`` (regions joined to the model's by name).
The regions BED must name each region by its probe ID, so the join finds them.

This module writes what such a check needs from held-out array samples: a regions BED with
one region per probe and each probe's CpG in it, and per sample a bedMethyl or Bismark
coverage file whose counts are drawn as Binomial(depth, beta) at that CpG (the binomial read
model; ``depth`` fixed or Poisson). The coordinates are synthetic (probe ``i`` at
``spacing * (i + 1)`` on one chromosome): the TCGA tables carry probe IDs, not positions, and
the ingest step only needs the file and the BED to agree.

One CpG per region means one slot per region in the NPZ, where ``ingest`` turns the slot's
counts into one call (``ingest.call``); the NPZ also keeps the region's counts (``methylated``,
``coverage``), and the tissue features read those, so the model sees the read-level fraction
at the sample's depth (docs/tissue.md, "Train on arrays, predict sequencing").
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genomelab.io.atomic import atomic_output

CHROM = "chr1"


def probe_positions(n_regions: int, spacing: int = 1000) -> np.ndarray:
    """0-based CpG position of each of ``n_regions`` probes: int64 [n_regions]."""
    if n_regions < 1 or spacing < 200:
        raise ValueError(f"need n_regions >= 1 and spacing >= 200, not {n_regions} and {spacing}")
    return spacing * (np.arange(n_regions, dtype=np.int64) + 1)


def write_probe_regions(region_ids: np.ndarray, path: str | os.PathLike, width: int = 150) -> np.ndarray:
    """A BED with one ``width``-bp region per probe (named by ``region_ids`` [R]) centred on its
    CpG; returns the CpG positions [R] (see :func:`probe_positions`)."""
    pos = probe_positions(len(region_ids))
    start = pos - width // 2
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        for s, name in zip(start, region_ids, strict=True):
            fh.write(f"{CHROM}\t{s}\t{s + width}\t{name}\n")
    return pos


def draw_counts(
    betas: np.ndarray, depth: float, rng: np.random.Generator, poisson: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(methylated int64 [R], total int64 [R]) reads per CpG from betas [R] (NaN = no probe
    value, no reads): ``depth`` reads each, or Poisson(``depth``) with ``poisson``."""
    ok = np.isfinite(betas)
    total = rng.poisson(depth, len(betas)) if poisson else np.full(len(betas), int(round(depth)))
    total = np.where(ok, total, 0).astype(np.int64)
    meth = rng.binomial(total, np.clip(np.where(ok, betas, 0.0), 0, 1)).astype(np.int64)
    return meth, total


def write_bedmethyl(path: str | os.PathLike, pos: np.ndarray, meth: np.ndarray, total: np.ndarray) -> Path:
    """An ENCODE bedMethyl (11 columns; coverage, percent methylated) of the CpGs with reads."""
    keep = total > 0
    pct = 100.0 * meth[keep] / total[keep]
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        for p, n, f in zip(pos[keep], total[keep], pct, strict=True):
            fh.write(f"{CHROM}\t{p}\t{p + 1}\t.\t{min(int(n), 1000)}\t+\t{p}\t{p + 1}\t0,0,0\t{n}\t{f:.2f}\n")
    return Path(path)


def write_bismark_cov(path: str | os.PathLike, pos: np.ndarray, meth: np.ndarray, total: np.ndarray) -> Path:
    """A Bismark coverage file (1-based; chrom, start, end, percent, methylated, unmethylated)."""
    keep = total > 0
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        for p, m, n in zip(pos[keep], meth[keep], total[keep], strict=True):
            fh.write(f"{CHROM}\t{p + 1}\t{p + 1}\t{100.0 * m / n:.4f}\t{m}\t{n - m}\n")
    return Path(path)
