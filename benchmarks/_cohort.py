"""The synthetic tissue cohort of the scale benchmarks (``bench_tissue_throughput.py``,
``bench_tissue_reads_scale.py``): the real panel's shape without the real data.

Not a benchmark (``run_all.py`` runs ``bench_*.py`` only).
"""

from __future__ import annotations

import numpy as np
from genomelab.tissue.task import TissueData


def synthetic_cohort(
    n: int,
    n_regions: int,
    n_classes: int,
    seed: int,
    *,
    shift_sd: float = 0.2,
    factors: int = 0,
    factor_sd: float = 0.08,
    mean_reads: int | None = None,
    uncovered: float = 0.0,
) -> TissueData:
    """``n`` samples (60/20/20 train/val/test, classes in turn) x ``n_regions`` regions x
    ``n_classes`` classes. A region's level = a shared Beta(2, 2) base + on 5% of regions a
    class shift (sd ``shift_sd``) + ``factors`` class-specific latent factors (loadings sd
    ``factor_sd``) + noise (sd 0.05), clipped to [0, 1]. Coverage: 150 calls per region, or
    with ``mean_reads`` 1 + Poisson(mean_reads - 1) reads; a fraction ``uncovered`` of the
    (sample, region) cells is NaN with coverage 0.

    The draws are made in one order from one generator, so a benchmark's cohort stays the
    same for its figures to compare across rounds."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    base = rng.beta(2, 2, n_regions).astype(np.float32)
    shift = np.zeros((n_classes, n_regions), np.float32)
    informative = rng.choice(n_regions, max(1, n_regions // 20), replace=False)
    shift[:, informative] = rng.normal(0, shift_sd, (n_classes, len(informative)))
    means = base + shift[y]
    if factors:
        load = rng.normal(0, factor_sd, (n_classes, factors, n_regions)).astype(np.float32)
        z = rng.normal(size=(n, factors)).astype(np.float32)
        means += np.einsum("nd,ndr->nr", z, load[y])
    means += rng.normal(0, 0.05, (n, n_regions)).astype(np.float32)
    means = np.clip(means, 0, 1)
    if mean_reads is None:
        coverage = np.full(means.shape, 150, np.uint16)
    else:
        coverage = (1 + rng.poisson(mean_reads - 1, (n, n_regions))).astype(np.uint16)
    if uncovered:
        missing = rng.random((n, n_regions)) < uncovered
        means[missing] = np.nan
        coverage[missing] = 0
    split = np.array(["train"] * n, dtype=object)
    split[n * 6 // 10 : n * 8 // 10] = "val"
    split[n * 8 // 10 :] = "test"
    samples = np.array([f"s{i}" for i in range(n)])
    labels = np.array([f"class{c}" for c in y])
    return TissueData(
        samples=samples,
        groups=samples.copy(),
        tissue=labels.copy(),
        labels=labels,
        classes=np.unique(labels),
        y=y.astype(np.int64),
        means=means,
        coverage=coverage,
        regions=np.array([f"r{i}" for i in range(n_regions)]),
        n_positions=150,
        split=split.astype(str),
    )
