"""A tissue task in memory for the tissue tests: ``TissueData`` from means, labels and splits."""

from __future__ import annotations

import numpy as np
from genomelab.tissue.task import TissueData


def toy_task(means: np.ndarray, y: np.ndarray, split: np.ndarray, prefix: str = "s") -> TissueData:
    """One sample per row of ``means`` [n, R] (class index ``y`` [n], ``split`` [n]), each its
    own source sample, every region covered by 150 calls; classes named c0, c1, ..."""
    classes = np.array([f"c{i}" for i in range(int(y.max()) + 1)])
    samples = np.array([f"{prefix}{i}" for i in range(len(y))])
    return TissueData(
        samples=samples,
        groups=samples.copy(),
        tissue=classes[y],
        labels=classes[y],
        classes=classes,
        y=np.asarray(y, dtype=np.int64),
        means=np.asarray(means, dtype=np.float32),
        coverage=np.full(means.shape, 150, np.uint16),
        regions=np.array([f"r{i}" for i in range(means.shape[1])]),
        n_positions=150,
        split=np.asarray(split),
    )
