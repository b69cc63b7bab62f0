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
    # Each label's 10 groups are dealt 6/2/2, the fractions given.
    per_group = {g: (split[groups == g][0], g % 4) for g in np.unique(groups)}
    for label in range(4):
        names = [s for s, lab in per_group.values() if lab == label]
        assert [names.count(s) for s in ("train", "val", "test")] == [6, 2, 2], label


def test_a_class_of_three_groups_reaches_every_split_and_fractions_are_normalised():
    # 3 groups x 0.15 rounds to 0 in val and test: each still gets one group.
    small = group_split(["a", "b", "c"], (0.7, 0.15, 0.15), seed=0)
    assert sorted(small) == ["test", "train", "val"]
    # (6, 1, 3) is (0.6, 0.1, 0.3): 20 groups -> 12/2/6.
    split = group_split([f"g{i}" for i in range(20)], (6, 1, 3), seed=0)
    assert [int((split == s).sum()) for s in ("train", "val", "test")] == [12, 2, 6]


def test_split_is_reproducible():
    groups = [f"s{i // 2}" for i in range(60)]
    assert (group_split(groups, seed=3) == group_split(groups, seed=3)).all()
    assert not (group_split(groups, seed=3) == group_split(groups, seed=4)).all()


def test_bad_fractions():
    with pytest.raises(ValueError, match="fractions"):
        group_split(["a"], (0.5, 0.5))


def test_a_fold_number_with_a_gap_names_where_the_largest_is():
    """Folds 0, 1, 2 and one mistyped 5: the error says where the 5 is (it named only the
    absent folds 3 and 4)."""
    from genomelab.splits import GivenAssignment

    values = {"a": 0, "b": 1, "c": 2, "d": 5, "e": 0}
    lines = {k: i + 2 for i, k in enumerate(values)}
    given = GivenAssignment("fold", values, "links.tsv", "link", lines)
    with pytest.raises(
        ValueError, match=r"folds \[3, 4\] have no example .*fold 5 of 'd' \(links.tsv, line 5\)"
    ):
        given.assign(list(values), list(values))
