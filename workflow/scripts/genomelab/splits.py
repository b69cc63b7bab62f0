"""Train/validation/test splits and K folds by group, so that related examples never straddle
splits; given splits and folds (a user's), checked the same way.

- :func:`group_split`: a drawn train/val/test split;
- :class:`GivenAssignment`: a split or fold per key as a user gave it, checked by
  :meth:`GivenAssignment.assign` (every key assigned, no group across two splits or folds);
- :func:`group_kfold` / :func:`fold_split`: K stratified group folds, and one fold's
  train/val/test (its test fold; validation drawn from the other folds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

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


# ------------------------------------------------------------------ given splits and folds
# A user may fix the evaluation instead of letting the workflow draw it: a ``split`` column
# (train/val/test: one given split) or a ``fold`` column (0..K-1: the test fold of each row,
# for K-fold cross-validation) in a sample or link table, or in a separate splits file. The
# readers live in :mod:`genomelab.io.tables`; what follows is independent of any module:
# keys (sample names, link IDs, block IDs) and groups (source sample, entity, genome block).
SPLIT_KINDS = ("split", "fold")


@dataclass(frozen=True)
class GivenAssignment:
    """A split name or a fold index per key, as a user gave it.

    kind: "split" (values are ``SPLITS`` names) or "fold" (values are ints >= 0);
    values: key -> value; source: the file it came from (errors name it); key: what the
    keys are (the file's key column: "sample", "source_sample", ...);
    lines: key -> line of that file (header = line 1), for errors.
    """

    kind: str
    values: dict[str, str | int]
    source: str
    key: str = "key"
    lines: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in SPLIT_KINDS:
            raise ValueError(f"a given assignment is one of {SPLIT_KINDS}, not {self.kind!r}")

    @property
    def n_folds(self) -> int:
        """Number of folds a fold assignment names (max + 1); 1 for a split."""
        return 1 if self.kind == "split" else max(int(v) for v in self.values.values()) + 1

    def _where(self, key: str) -> str:
        line = self.lines.get(key)
        return f"{self.source}, line {line}" if line else self.source

    def assign(self, keys: Sequence, groups: Sequence) -> np.ndarray:
        """The given value of each key, checked against ``groups``.

        keys, groups: [n] key and group per example. Returns [n] split names (object array
        of str) or fold indices (int64). Raises ``ValueError`` naming the file when a key has
        no value, or when a group's examples have different values (the group and the keys
        of both values are named: such a group would leak from training into the test).
        Keys in the file that ``keys`` lacks are ignored (a task may use a subset).
        """
        keys = [str(k) for k in keys]
        missing = [k for k in keys if k not in self.values]
        if missing:
            raise ValueError(
                f"{self.source}: no {self.kind} given for {len(missing)} of {len(keys)} "
                f"example(s) (e.g. {missing[:5]}); give every example a {self.kind}"
            )
        values = [self.values[k] for k in keys]
        check_groups(groups, values, self.source, what=self.kind, keys=keys, where=self._where)
        if self.kind == "fold":
            folds = np.asarray(values, dtype=np.int64)
            absent = sorted(set(range(self.n_folds)) - set(folds.tolist()))
            if absent:
                # A mistyped fold (5 among 0..2) makes the gap: say where the largest is.
                top = int(np.argmax(folds))
                raise ValueError(
                    f"{self.source}: folds {absent} have no example among the {len(keys)} used "
                    f"(folds are numbered 0..{self.n_folds - 1}, fold {folds[top]} of "
                    f"{keys[top]!r} ({self._where(keys[top])}) the largest; number them without gaps)"
                )
            return folds
        split = np.asarray(values, dtype=object)
        empty = [s for s in SPLITS if not (split == s).any()]
        if empty:
            raise ValueError(
                f"{self.source}: the given split has no {' and no '.join(empty)} example among "
                f"the {len(keys)} used; training needs train and val, the comparison needs test"
            )
        return split.astype(str)


def check_groups(
    groups: Sequence,
    values: Sequence,
    source: str,
    what: str = "split",
    keys: Sequence | None = None,
    where=None,
) -> None:
    """Raise ``ValueError`` when a group's examples carry different ``values``.

    groups, values: [n]; ``source`` names the file in the message; ``keys`` [n] (optional)
    names the examples; ``where(key)`` (optional) gives "file, line N" of a key. The first
    offending group (in sorted order, so the message is reproducible) is named with one
    example of each of its values.
    """
    groups = [str(g) for g in groups]
    keys = [str(k) for k in keys] if keys is not None else [str(i) for i in range(len(groups))]
    seen: dict[str, dict[str, str]] = {}
    for g, v, k in zip(groups, values, keys, strict=True):
        seen.setdefault(g, {}).setdefault(str(v), k)
    bad = sorted(g for g, vs in seen.items() if len(vs) > 1)
    if bad:
        g = bad[0]
        examples = ", ".join(
            f"{k!r} in {what} {v}" + (f" ({where(k)})" if where else "") for v, k in sorted(seen[g].items())
        )
        raise ValueError(
            f"{source}: group {g!r} straddles {what}s ({examples}); all examples of a group must "
            f"share one {what}" + (f" ({len(bad)} such groups, also {bad[1:4]})" if len(bad) > 1 else "")
        )


def group_kfold(groups: Sequence, k: int, seed: int = 0, stratify: Sequence | None = None) -> np.ndarray:
    """Assign each example a test fold 0..k-1 so that all examples of a group share one fold.

    groups: [n] group key per example; stratify: optional [n] label (a group takes its first
    example's). Groups are shuffled per label and dealt round-robin, the deal continuing
    across labels, so every fold gets each class's groups to within one and the folds' group
    counts differ by at most one. Returns [n] int64 fold indices.
    """
    if k < 2:
        raise ValueError(f"k-fold cross-validation needs k >= 2 folds, not {k}")
    keys = np.asarray([str(g) for g in groups])
    uniq, first = np.unique(keys, return_index=True)
    if len(uniq) < k:
        raise ValueError(f"{k} folds need at least {k} groups; there are {len(uniq)}")
    strata = (
        np.asarray([str(s) for s in stratify])[first] if stratify is not None else np.zeros(len(uniq), str)
    )
    rng = np.random.default_rng(seed)
    fold_of: dict[str, int] = {}
    dealt = 0
    for stratum in np.unique(strata):
        members = uniq[strata == stratum]
        for g in members[rng.permutation(len(members))]:
            fold_of[g] = dealt % k
            dealt += 1
    return np.asarray([fold_of[g] for g in keys], dtype=np.int64)


def fold_split(
    folds: np.ndarray,
    fold: int,
    groups: Sequence,
    val_fraction: float,
    seed: int = 0,
    stratify: Sequence | None = None,
) -> np.ndarray:
    """The train/val/test split of one fold: its test fold, and validation groups drawn
    from the other folds (``val_fraction`` of their groups, per label, see :func:`group_split`).

    folds: [n] test fold per example; returns [n] "train"/"val"/"test". The validation draw
    is seeded with ``seed + fold``, so each fold's is its own and reproducible.
    """
    if not 0 < val_fraction < 1:
        raise ValueError(
            f"the validation fraction of a fold's training part must be in (0, 1), not {val_fraction}"
        )
    folds = np.asarray(folds)
    if not (folds == fold).any():
        raise ValueError(f"fold {fold} has no example (folds present: {sorted(set(folds.tolist()))})")
    split = np.full(len(folds), "test", dtype=object)
    rest = np.flatnonzero(folds != fold)
    keys = np.asarray([str(g) for g in groups])
    strat = None if stratify is None else np.asarray([str(s) for s in stratify])[rest].tolist()
    split[rest] = group_split(keys[rest].tolist(), (1 - val_fraction, val_fraction, 0.0), seed + fold, strat)
    return split.astype(str)
