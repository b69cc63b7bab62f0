"""K-fold cross-validation of the regulon module over genome blocks (``regulon.evaluation.folds``).

Every block of the region is the test block of exactly one fold:

- ``heldout.scheme: spaced`` (the default): block ``i`` is in fold ``i mod K`` (no seed), so
  each fold's test blocks are spread evenly along the genome and anyone with the same
  region, ``block_bp`` and K gets the same folds;
- ``heldout.scheme: random``: blocks dealt to folds after a shuffle with the run's seed
  (:func:`genomelab.splits.group_kfold`);
- given: ``heldout.file`` with a ``fold`` column instead of ``split`` (a BED whose fourth
  column is the fold, or a TSV naming chrom, start, end and fold, such as a run's
  ``data/folds.tsv``); every block needs a row, errors name the file, line or block.

Within fold ``k`` the test blocks are those of fold ``k``; validation blocks are taken from
the others in the proportion ``split_fractions[1] / (split_fractions[0] + split_fractions[1])``
(at least one, leaving one to train): evenly spaced among them (``spaced``; the ``j``-th of
``n_val`` is the remaining block at ``floor((j + 0.5) * n_rest / n_val)``), or drawn with
``seed + k`` (``random``); given folds take validation blocks by the scheme too. Each fold gets its own targets file, the shared one with the
fold's splits and windows, so training, baselines and evaluation run unchanged per fold.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.splits import fold_split, group_kfold

logger = logging.getLogger(__name__)

FOLDS_KEY = "regulon.evaluation.folds"
FOLD_COLUMNS = ("block", "chrom", "start", "end", "fold")


def check_fold_config(heldout: Mapping[str, Any] | None, k: int) -> None:
    """Raise ``ValueError`` when ``regulon.targets.heldout`` cannot give ``k`` folds: fixed
    block indices name one split, not folds."""
    if k > 1 and (heldout or {}).get("blocks") is not None:
        raise ValueError(
            f"regulon.targets.heldout.blocks fixes one split, but {FOLDS_KEY} is {k}: give every "
            "block a fold in heldout.file (a fold column, e.g. a run's data/folds.tsv) or leave "
            "heldout to its scheme"
        )


def spaced_folds(n_blocks: int, k: int) -> np.ndarray:
    """[n_blocks] int64 test fold of each block: block ``i`` in fold ``i mod k``."""
    if k < 2:
        raise ValueError(f"{FOLDS_KEY}: cross-validation needs at least 2 folds, not {k}")
    if n_blocks < 2 * k:
        raise ValueError(
            f"{FOLDS_KEY} = {k} needs at least {2 * k} blocks (each fold needs test blocks and "
            f"the others train and val blocks); the region has {n_blocks}: shrink targets.block_bp"
        )
    return np.arange(n_blocks, dtype=np.int64) % k


def assign_folds(
    blocks,
    k: int,
    scheme: str = "spaced",
    seed: int = 0,
    given_file: str | os.PathLike | None = None,
    contig: str | None = None,
) -> np.ndarray:
    """[n_blocks] test fold of each block of ``blocks`` (frame with block, start, end):
    spaced, drawn (``scheme: random``) or read from ``given_file`` (a fold column)."""
    from genomelab.regulon.blocks import read_heldout_file

    ids = blocks["block"].to_numpy()
    spaced = spaced_folds(len(ids), k)  # also checks k and the block count
    if given_file:
        given = read_heldout_file(given_file, contig or "", blocks, column="fold")
        if given.n_folds != k:
            raise ValueError(
                f"{given_file} numbers {given.n_folds} folds but {FOLDS_KEY} is {k}; make them agree"
            )
        return given.assign(ids, ids)
    if scheme == "random":
        return group_kfold(ids, k, seed)
    return spaced


def fold_splits(
    folds: np.ndarray, fold: int, fractions: Sequence[float], scheme: str = "spaced", seed: int = 0
) -> np.ndarray:
    """[n_blocks] "train"/"val"/"test" of one fold: its test blocks, then validation among
    the others (see the module docstring)."""
    folds = np.asarray(folds)
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or f[0] + f[1] <= 0 or f[1] <= 0:
        raise ValueError(
            f"regulon.targets.split_fractions must give training and validation a positive share, not "
            f"{list(fractions)}"
        )
    val_fraction = float(f[1] / (f[0] + f[1]))
    ids = np.arange(len(folds))
    if scheme == "random":
        return fold_split(folds, fold, ids, val_fraction, seed)
    if not (folds == fold).any():
        raise ValueError(f"fold {fold} has no block (folds present: {sorted(set(folds.tolist()))})")
    split = np.where(folds == fold, "test", "train").astype(object)
    rest = np.flatnonzero(folds != fold)
    n_val = min(max(1, round(val_fraction * len(rest))), len(rest) - 1)
    split[rest[((np.arange(n_val) + 0.5) * len(rest) / n_val).astype(int)]] = "val"
    return split.astype(str)


def _fold_targets(src: Path, dest: Path, split: np.ndarray) -> dict[str, Any]:
    """Copy the targets file ``src`` to ``dest`` with the blocks' ``split`` [n_blocks] and the
    windows it implies; its recorded held-out config names the fold's blocks."""
    import h5py
    import pandas as pd

    from genomelab.io.atomic import atomic_output
    from genomelab.regulon.targets import TargetData, make_windows

    data = TargetData(src)
    blocks = data.blocks.assign(split=split)
    short = [
        s
        for s in ("train", "val", "test")
        if not ((blocks["split"] == s) & (blocks["end"] - blocks["start"] >= data.config.window_bp)).any()
    ]
    if short:
        raise ValueError(
            f"{dest}: this fold has no {' or '.join(short)} block of at least window_bp = "
            f"{data.config.window_bp} bp; use fewer folds or smaller blocks"
        )
    windows: pd.DataFrame = make_windows(blocks, data.config)
    held = {s: blocks.loc[blocks["split"] == s, "block"].astype(int).tolist() for s in ("val", "test")}
    config = json.loads(json.dumps(data.config.__dict__))
    config["heldout"] = {"blocks": held, "file": None, "scheme": config["heldout"].get("scheme", "spaced")}
    with atomic_output(dest) as tmp:
        shutil.copyfile(src, tmp)
        with h5py.File(tmp, "r+") as h5:
            h5.attrs["config"] = json.dumps(config, sort_keys=True)
            for name in ("windows/start", "windows/block", "windows/split", "blocks/split"):
                del h5[name]
            for col in ("start", "block"):
                h5.create_dataset(f"windows/{col}", data=windows[col].to_numpy(np.int64))
            h5.create_dataset("windows/split", data=windows["split"].to_numpy().astype("S5"))
            h5.create_dataset("blocks/split", data=blocks["split"].to_numpy().astype("S5"))
    return held


def write_folds(
    targets: str | os.PathLike,
    k: int,
    folds_tsv: str | os.PathLike,
    fold_targets: Sequence[str | os.PathLike],
    heldout: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Assign the blocks of ``targets`` (targets.h5) to ``k`` folds, write the folds table
    (``FOLD_COLUMNS``, reusable as ``heldout.file``) and one targets file per fold
    (``fold_targets`` [k], fold order). ``heldout``: ``regulon.targets.heldout`` (its scheme,
    or a file with a fold column). Returns [n_blocks] folds."""
    from genomelab.io.tables import write_table
    from genomelab.regulon.targets import TargetData

    heldout = dict(heldout or {})
    check_fold_config(heldout, k)
    if len(fold_targets) != k:
        raise ValueError(f"{k} folds need {k} targets files, not {len(fold_targets)}")
    data = TargetData(targets)
    scheme = heldout.get("scheme") or "spaced"
    folds = assign_folds(data.blocks, k, scheme, seed, heldout.get("file"), data.contig)
    table = data.blocks.assign(chrom=data.contig, fold=folds)[list(FOLD_COLUMNS)]
    write_table(table, folds_tsv)
    fractions = data.config.split_fractions
    for fold, dest in enumerate(fold_targets):
        split = fold_splits(folds, fold, fractions, scheme, seed)
        held = _fold_targets(Path(targets), Path(dest), split)
        logger.info("fold %d: test blocks %s, val blocks %s -> %s", fold, held["test"], held["val"], dest)
    return folds
