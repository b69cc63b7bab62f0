"""Train/validation/test splits by group, so that related examples never straddle splits."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

SPLITS = ("train", "val", "test")


def group_split(
    groups: Sequence,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    stratify: Sequence | None = None,
) -> np.ndarray:
    """Assign each example a split name so that all examples of a group share one split.

    Parameters
    ----------
    groups: [n] group key per example (source sample, genome block, entity).
    fractions: train/val/test fractions of groups (normalised to sum 1).
    stratify: optional [n] label; groups are then split per label (each group takes the
        label of its first example) so that every class reaches every split when it has
        at least three groups.

    Returns
    -------
    [n] array of "train"/"val"/"test".
    """
    groups = np.asarray([str(g) for g in groups])
    frac = np.asarray(fractions, dtype=float)
    if frac.shape != (3,) or (frac < 0).any() or frac.sum() <= 0:
        raise ValueError(f"split fractions must be three non-negative numbers, not {list(fractions)}")
    frac = frac / frac.sum()
    uniq, first = np.unique(groups, return_index=True)
    strata = (
        np.asarray([str(s) for s in stratify])[first] if stratify is not None else np.zeros(len(uniq), str)
    )
    rng = np.random.default_rng(seed)
    assign: dict[str, str] = {}
    for stratum in np.unique(strata):
        members = uniq[strata == stratum]
        members = members[rng.permutation(len(members))]
        n = len(members)
        n_val = int(round(frac[1] * n))
        n_test = int(round(frac[2] * n))
        if n >= 3:
            # Every class with three or more groups gets at least one in val and test.
            n_val = max(n_val, 1 if frac[1] > 0 else 0)
            n_test = max(n_test, 1 if frac[2] > 0 else 0)
        n_train = max(n - n_val - n_test, 1 if n else 0)
        n_test = min(n_test, n - n_train)
        n_val = n - n_train - n_test
        for g in members[:n_train]:
            assign[g] = "train"
        for g in members[n_train : n_train + n_val]:
            assign[g] = "val"
        for g in members[n_train + n_val :]:
            assign[g] = "test"
    return np.asarray([assign[g] for g in groups])
