"""Group-aware splits."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.splits import group_split


def test_groups_never_straddle_splits(rng):
    groups = rng.integers(0, 40, size=300)
    labels = groups % 4
    split = group_split(groups, (0.6, 0.2, 0.2), seed=1, stratify=labels)
    for g in np.unique(groups):
        assert len(set(split[groups == g])) == 1
    for label in range(4):
        assert set(split[labels == label]) == {"train", "val", "test"}


def test_split_is_reproducible():
    groups = [f"s{i // 2}" for i in range(60)]
    assert (group_split(groups, seed=3) == group_split(groups, seed=3)).all()
    assert not (group_split(groups, seed=3) == group_split(groups, seed=4)).all()


def test_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        group_split(["a"], (0.5, 0.5))
