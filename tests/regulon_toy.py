"""Track sets for the regulon evaluation tests: the true targets, and a noisy "model"."""

from __future__ import annotations

import numpy as np
from genomelab.regulon.targets import TargetData


def truth_tracks(data: TargetData) -> dict[str, np.ndarray]:
    """The targets of ``data`` as the three heads' tracks (expression NaN -> 0), float32."""
    return {
        "expression": np.nan_to_num(data.expression).astype(np.float32),
        "density": data.density.astype(np.float32),
        "operon": data.operon.astype(np.float32),
    }


def noisy_tracks(truth: dict[str, np.ndarray], sd: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """``truth`` plus Gaussian noise of ``sd`` per head, the operon head kept a probability."""
    noisy = {k: (v + sd * rng.standard_normal(v.shape)).astype(np.float32) for k, v in truth.items()}
    noisy["operon"] = np.clip(noisy["operon"], 0, 1)
    return noisy
