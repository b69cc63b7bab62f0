"""Links and entity tables: reading, validation, splits and label matrices.

Vocabulary: a *link* joins a source entity and a target entity and is used in one
*direction*: ``source->target`` links train and test the head that, given a source, ranks
targets; ``target->source`` links the reverse head. Each link carries a confidence in
[0, 1] that weights its term in the loss.

Two evaluation schemes (``SCHEMES``):

- ``links``: held-out links between entities seen in training (a (source, target) pair
  and both its directions always share a split, so a pair cannot leak between splits);
- ``entities``: held-out entities; a link belongs to the later split of its two ends
  (train < val < test), and only held-out entities are evaluated as queries.

Both are drawn (seeded) unless given: a ``split`` column in the links table or a splits
file of (source, target, split) rows fixes the ``links`` scheme (both directions of a pair
must agree); a ``split`` column in an entity table fixes that side's entities.

K-fold cross-validation of the ``links`` scheme (``assoc.evaluation.folds`` K > 1): each
(source, target) pair gets a test fold 0..K-1, drawn with ``seed`` (pairs shuffled and dealt
round-robin, :func:`genomelab.splits.group_kfold`) unless a ``fold`` column of the links
table or a (source, target, fold) splits file gives it. Fold f tests its own pairs; its
validation pairs (early stopping, grid selection) are drawn from the other folds' pairs with
``seed + f`` in the proportion val : train of ``split_fractions``. The entities scheme keeps
its one split.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.errors import FormatError
from genomelab.io.tables import (
    LINK_COLUMNS,
    link_pair_key,
    read_entity_table,
    read_known_links,
    read_link_split_file,
    read_link_table,
    row_lines,
    write_link_split_file,
    write_link_table,
)
from genomelab.splits import SPLITS, GivenAssignment, fold_split, group_kfold, group_split

logger = logging.getLogger(__name__)

S2T, T2S = "s2t", "t2s"
DIRECTIONS = (S2T, T2S)
DIRECTION_NAMES = {"source->target": S2T, "target->source": T2S}
SCHEMES = ("links", "entities")
SIDES = ("source", "target")
RESERVED_ENTITY_COLUMNS = ("id", "description", "sequence", "split")
SPLIT_ORDER = {s: i for i, s in enumerate(SPLITS)}
# Label convention of every dense label row: > 0 a positive (its confidence), 0 a negative,
# MASKED a candidate that must not count (a known positive of another split, an entity whose
# links are held out, or padding).
MASKED = -1.0


@dataclass
class EntityTable:
    """One vocabulary.

    ``numeric`` is [n_entities, n_numeric] float32 (zero columns when the table has none);
    ``descriptions``/``sequences`` are per-entity strings or ``None`` when the column is absent;
    ``split`` [n_entities] the given split of the entities scheme (a ``split`` column) or ``None``;
    ``source`` the file the table was read from, for errors (``None`` when not from a file).
    """

    side: str
    ids: list[str]
    descriptions: list[str] | None = None
    sequences: list[str] | None = None
    numeric: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    numeric_names: list[str] = field(default_factory=list)
    split: np.ndarray | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.numeric.size == 0:
            self.numeric = np.zeros((len(self.ids), 0), np.float32)
        self.index = {e: i for i, e in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)


def read_entities(path: str | os.PathLike, side: str) -> EntityTable:
    """Read an entity TSV: ``id``, optional ``description``, ``sequence``, numeric columns.

    Every other column must be numeric and complete. An entity needs at least one of a
    description, a sequence or numeric features.
    """
    path = Path(path)
    df = read_entity_table(path, side)
    ids = df["id"]
    numeric_cols = [c for c in df.columns if c not in RESERVED_ENTITY_COLUMNS]
    numeric = np.zeros((len(df), len(numeric_cols)), np.float32)
    for j, col in enumerate(numeric_cols):
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            raise ValueError(
                f"{side} entity table {path}: column {col!r} must be numeric and finite; "
                f"row(s) {ids[bad].tolist()[:5]} hold {df[col][bad].tolist()[:5]}"
            )
        numeric[:, j] = values.to_numpy(dtype=np.float32)
    descriptions = df["description"].tolist() if "description" in df.columns else None
    sequences = df["sequence"].str.upper().tolist() if "sequence" in df.columns else None
    if sequences is not None:
        # k-mer profiles read the bases as bytes: a non-ASCII letter (a pasted "Å", a
        # typographic dash) is named here rather than failing there as a bare encode error.
        bad = ~df["sequence"].map(str.isascii)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            char = next(c for c in df["sequence"].iloc[row] if not c.isascii())
            raise FormatError(
                path,
                f"{side} entity {ids.iloc[row]!r}: sequence holds the non-ASCII character {char!r} "
                f"({int(bad.sum())} sequence(s) do); sequences are bases (A, C, G, T, N, ...)",
                int(row_lines(path, len(df))[row]),
            )
    if descriptions is None and sequences is None and not numeric_cols:
        raise ValueError(
            f"{side} entity table {path} has neither a description, a sequence nor "
            "numeric feature columns: entities need features"
        )
    if descriptions is not None and sequences is None and not numeric_cols:
        empty = ids[df["description"].str.strip() == ""].tolist()
        if empty:
            raise ValueError(
                f"{side} entity table {path}: entities {empty[:5]} have an empty "
                "description and no other features"
            )
    split = None
    if "split" in df.columns:
        values = df["split"].str.strip()
        bad = ~values.isin(SPLITS)
        if bad.any():
            raise FormatError(
                path,
                f"{side} entity {ids[bad].iloc[0]!r}: split {values[bad].iloc[0]!r} is not one of {SPLITS}",
                int(row_lines(path, len(df))[np.flatnonzero(bad.to_numpy())[0]]),
            )
        split = values.to_numpy(dtype=str)
    return EntityTable(side, ids.tolist(), descriptions, sequences, numeric, numeric_cols, split, str(path))


@dataclass
class Links:
    """Validated links as index arrays, one row per (pair, direction).

    ``source``/``target`` are [n] indices into the entity tables, ``direction`` [n] in
    ``DIRECTIONS``, ``confidence`` [n] float32, ``category`` [n] str (may be empty);
    ``line`` [n] the row's line in the links table (header = 1; a ``both`` row gives two
    links the same line); ``given_split`` [n] its ``split`` column, or ``None`` without one;
    ``given_fold`` [n] its ``fold`` column (int), or ``None`` without one.
    """

    source: np.ndarray
    target: np.ndarray
    direction: np.ndarray
    confidence: np.ndarray
    category: np.ndarray
    line: np.ndarray | None = None
    given_split: np.ndarray | None = None
    given_fold: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.source)


def _check_split_column(df: pd.DataFrame, path: Path) -> None:
    """A given ``split`` column (stripped in place) holds only train/val/test, a given
    ``fold`` column only integers >= 0; a table has at most one of them."""
    if "split" in df.columns and "fold" in df.columns:
        raise FormatError(
            path, "links table has both a 'split' and a 'fold' column; keep one (a split or K folds)"
        )
    for column in ("split", "fold"):
        if column not in df.columns:
            continue
        df[column] = df[column].str.strip()
        ok = df[column].isin(SPLITS) if column == "split" else df[column].str.fullmatch(r"[0-9]+")
        if not ok.all():
            i = int(np.flatnonzero(~ok.to_numpy())[0])
            allowed = f"one of {SPLITS}" if column == "split" else "an integer >= 0"
            raise FormatError(
                path,
                f"link {df['source'][i]} -> {df['target'][i]}: {column} {df[column][i]!r} is not {allowed}",
                int(df["_line"][i]),
            )


def _filter_quality(df: pd.DataFrame, path: Path, min_quality: float | None) -> pd.DataFrame:
    """Rows with ``quality`` >= ``min_quality`` (all rows without the column or threshold)."""
    if "quality" not in df.columns or min_quality is None:
        return df
    quality = pd.to_numeric(df["quality"], errors="coerce")
    if quality.isna().any():
        raise ValueError(f"links table {path}: column 'quality' has non-numeric values")
    keep = quality >= min_quality
    logger.info("min_quality %g keeps %d of %d links", min_quality, int(keep.sum()), len(df))
    return df[keep.to_numpy()]


def read_links(
    path: str | os.PathLike,
    sources: EntityTable,
    targets: EntityTable,
    min_quality: float | None = None,
    allow_unlinked: bool = False,
    confidence_words: dict[str, float] | None = None,
) -> Links:
    """Read and validate a links TSV.

    Columns: ``source``, ``target``, ``direction`` (``source->target``, ``target->source`` or
    ``both``), ``confidence`` in [0, 1] or a word of ``confidence_words`` (case-insensitive,
    e.g. ``{"confirmed": 1.0, "strong": 0.7, "weak": 0.4}``); optional ``quality`` (numeric; rows below
    ``min_quality`` are dropped) and ``category``. Raises ``ValueError`` naming the file for
    unknown entities, confidences outside [0, 1], duplicate links, a direction without
    links, and (unless ``allow_unlinked``) entities without any link (empty classes).
    """
    path = Path(path)
    df = read_link_table(path, (*DIRECTION_NAMES, "both"), confidence_words)
    _check_split_column(df, path)
    df = _filter_quality(df, path, min_quality)
    direction = df["direction"]
    for side, table in (("source", sources), ("target", targets)):
        unknown = sorted(set(df[side]) - set(table.index))
        if unknown:
            first = int(df.loc[df[side].isin(unknown), "_line"].min())
            raise FormatError(
                path,
                f"links table: {len(unknown)} {side} entit(ies) not in the {side} entity table, e.g. "
                f"{unknown[:5]} (first on this line; add them there or set the right assoc.data.{side}s)",
                first,
            )
    # "both" is shorthand for one row per direction.
    both = direction == "both"
    df = pd.concat(
        [
            df[~both].assign(direction=direction[~both].map(DIRECTION_NAMES)),
            df[both].assign(direction=S2T),
            df[both].assign(direction=T2S),
        ],
        ignore_index=True,
    )
    key = ["source", "target", "direction"]
    by_line = df.sort_values("_line", kind="stable")
    repeat = by_line.duplicated(key, keep="first")  # the later line of each repeated link
    if repeat.any():
        row = by_line[repeat].iloc[0]
        same = (df[key] == row[key]).all(axis=1)
        raise FormatError(
            path,
            f"links table: link {row.source} -> {row.target} ({row.direction}) is given twice, also on "
            f"line {int(df.loc[same, '_line'].min())} ({int(repeat.sum())} repeated link(s) in all, a "
            "'both' row counting once per direction); keep one row per link",
            int(row["_line"]),
        )
    for d in DIRECTIONS:
        if not (df["direction"] == d).any():
            raise ValueError(
                f"links table {path} has no {d} links: that head would have an empty "
                "class set (use direction 'both' to train both heads on the same links)"
            )
    if not allow_unlinked:
        for side, table in (("source", sources), ("target", targets)):
            empty = sorted(set(table.ids) - set(df[side]))
            if empty:
                raise ValueError(
                    f"{len(empty)} {side} entit(ies) have no link in {path} (empty "
                    f"classes), e.g. {empty[:5]}; drop them or set allow_unlinked"
                )
    category = df["category"].astype(str).to_numpy() if "category" in df.columns else np.full(len(df), "")
    df = df.reset_index(drop=True)
    return Links(
        source=df["source"].map(sources.index).to_numpy(np.int64),
        target=df["target"].map(targets.index).to_numpy(np.int64),
        direction=df["direction"].to_numpy(dtype=str),
        confidence=df["confidence"].to_numpy(np.float32),
        category=np.asarray(category, dtype=str),
        line=df["_line"].to_numpy(np.int64),
        given_split=df["split"].to_numpy(dtype=str) if "split" in df.columns else None,
        given_fold=df["fold"].to_numpy(dtype=np.int64) if "fold" in df.columns else None,
    )


def given_link_assignment(
    links: Links,
    sources: EntityTable,
    targets: EntityTable,
    links_path: str | os.PathLike,
    splits_path: str | os.PathLike | None = None,
) -> tuple[str, np.ndarray] | None:
    """The given split or folds of the ``links`` scheme: ``("split", [n_links] names)`` or
    ``("fold", [n_links] int test folds)``; ``None`` when nothing is given (draw them).

    From ``splits_path`` (a (source, target, split or fold) TSV, one row per pair) or else
    the links table's ``split`` or ``fold`` column. Raises ``ValueError`` naming the file and
    line when both are given, a pair of the file is not among the links, a link has no value,
    the two directions of a pair disagree (the pair would leak from training into the test),
    a split is empty or fold numbers have gaps.
    """
    src = [sources.ids[i] for i in links.source]
    tgt = [targets.ids[i] for i in links.target]
    pairs = [link_pair_key(s, t) for s, t in zip(src, tgt, strict=True)]
    column = links.given_split if links.given_split is not None else links.given_fold
    if splits_path:
        if column is not None:
            raise ValueError(
                f"links table {links_path} has a '{'split' if links.given_split is not None else 'fold'}' "
                f"column and a splits file {splits_path} is given too: keep one"
            )
        given = read_link_split_file(splits_path)
        known = set(pairs)
        extra = [k for k in given.values if k not in known]
        if extra:
            first = min(extra, key=lambda k: given.lines[k])
            raise FormatError(
                splits_path,
                f"link {first.replace(chr(9), ' -> ')} is not in the links table {links_path} "
                f"({len(extra)} such pair(s); after the min_quality filter, if one is set)",
                given.lines[first],
            )
        return given.kind, given.assign(pairs, pairs)
    if column is None:
        return None
    kind = "split" if links.given_split is not None else "fold"
    # Key each row by pair and direction so that a disagreement names both rows' lines.
    names = [f"{s} -> {t} ({d})" for s, t, d in zip(src, tgt, links.direction, strict=True)]
    lines = dict(zip(names, links.line.tolist(), strict=True))
    given = GivenAssignment(
        kind, dict(zip(names, column.tolist(), strict=True)), str(links_path), "link", lines
    )
    return kind, given.assign(names, [p.replace("\t", " -> ") for p in pairs])


def check_given_kind(kind: str, n_given: int, k: int, source: str | os.PathLike) -> None:
    """Refuse given folds (``kind`` "fold", ``n_given`` of them) with one split (``k`` = 1),
    a given split with ``k`` > 1 folds, or given folds whose number is not ``k``
    (``assoc.evaluation.folds``), naming ``source``: in ``assoc_data`` and, by
    :func:`check_input`, when Snakemake reads the config."""
    if k == 1 and kind == "fold":
        raise ValueError(
            f"{source} gives {n_given} folds but assoc.evaluation.folds is 1; set "
            f"evaluation: {{folds: {n_given}}} or give a split column instead"
        )
    if k > 1 and kind == "split":
        raise ValueError(
            f"{source} gives one train/val/test split but assoc.evaluation.folds is {k}; give a "
            "fold column (0..K-1) for cross-validation or set folds: 1"
        )
    if k > 1 and n_given != k:
        raise ValueError(f"{source} gives {n_given} folds but assoc.evaluation.folds is {k}; make them agree")


def _n_given(values: np.ndarray, kind: str) -> int:
    """How many folds given ``values`` name (max + 1); 1 for a split."""
    return int(values.max()) + 1 if kind == "fold" else 1


def check_input(data: Mapping[str, Any], folds: int) -> None:
    """Parse-time check of ``assoc.data`` against ``assoc.evaluation.folds`` (``folds``): a
    splits file (``data.splits``) or a ``split``/``fold`` column of the links table that
    disagrees with it is refused with :func:`check_given_kind`'s message, before any job
    (``assoc_data`` raised it, a job into the run). Reads the splits file, or only the links
    table's header and that column; a file that is absent, or a column ``assoc_data`` would
    refuse (both columns, values that are not folds), is left to Snakemake and that job,
    which name the problem by line."""
    if data.get("splits"):
        if Path(data["splits"]).is_file():
            given = read_link_split_file(data["splits"])
            check_given_kind(given.kind, given.n_folds, folds, data["splits"])
        return
    links = data.get("links")
    if not links or not Path(links).is_file():
        return
    try:
        # As read_link_table reads it (pandas: blank lines before the header skipped).
        header = pd.read_csv(links, sep="\t", nrows=0).columns
        kinds = [c for c in ("split", "fold") if c in header]
        if len(kinds) != 1:
            return
        values = pd.read_csv(links, sep="\t", usecols=kinds, dtype=str, keep_default_na=False)[kinds[0]]
    except (ValueError, UnicodeDecodeError, OSError, EOFError):
        return  # an unreadable table: assoc_data names the problem
    values = values.str.strip()
    if kinds[0] == "fold":
        if len(values) == 0 or not values.str.fullmatch(r"[0-9]+").all():
            return
        check_given_kind("fold", int(values.astype(np.int64).max()) + 1, folds, links)
    else:
        check_given_kind("split", 1, folds, links)


def single_link_split(given: tuple[str, np.ndarray] | None, source: str | os.PathLike) -> np.ndarray | None:
    """The given split of the ``links`` scheme, [n_links] names, or ``None`` (draw one),
    from :func:`given_link_assignment`'s answer; given folds are an error naming ``source``
    (they need ``evaluation.folds`` K > 1)."""
    if given is None:
        return None
    kind, values = given
    check_given_kind(kind, _n_given(values, kind), 1, source)
    return values


def link_folds(
    links: Links,
    k: int,
    seed: int,
    given: tuple[str, np.ndarray] | None,
    source: str | os.PathLike,
) -> np.ndarray:
    """[n_links] test fold 0..k-1 of each link: both directions of a (source, target) pair
    share one. Drawn with ``seed`` (:func:`genomelab.splits.group_kfold` over pairs) unless
    ``given`` (from :func:`given_link_assignment`) holds folds; a given split, or a number
    of given folds other than ``k``, is an error naming ``source``."""
    if given is None:
        pair = np.char.add(np.char.add(links.source.astype(str), ":"), links.target.astype(str))
        return group_kfold(pair, k, seed)
    kind, values = given
    check_given_kind(kind, _n_given(values, kind), k, source)
    return np.asarray(values, dtype=np.int64)


def fold_link_split(
    links: Links, folds: np.ndarray, fold: int, fractions: tuple[float, float, float], seed: int
) -> np.ndarray:
    """The ``links`` scheme's split of one fold, [n_links] names: the fold's pairs are its
    test split; validation pairs are drawn (seed ``seed + fold``) from the other folds' in
    the proportion val : train of ``fractions``."""
    frac = np.asarray(fractions, dtype=float)
    if frac[0] <= 0 or frac[1] <= 0:
        raise ValueError(
            f"assoc.data.split_fractions {list(fractions)}: K folds need train and val fractions > 0 "
            "(the val : train ratio sizes each fold's validation part)"
        )
    pair = np.char.add(np.char.add(links.source.astype(str), ":"), links.target.astype(str))
    return fold_split(folds, fold, pair, float(frac[1] / (frac[0] + frac[1])), seed)


@dataclass
class SplitAssignment:
    """Per-scheme split names: ``links[scheme]`` [n_links], ``sources``/``targets`` [n];
    ``known`` [n_links] bool, links whose (source, target) pair is in the user's
    ``exclude_known`` file (``None`` without one): the report's row on the other links."""

    links: dict[str, np.ndarray]
    sources: np.ndarray
    targets: np.ndarray
    known: np.ndarray | None = None


def assign_splits(
    links: Links,
    n_sources: int,
    n_targets: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    given_links: np.ndarray | None = None,
    given_sources: np.ndarray | None = None,
    given_targets: np.ndarray | None = None,
) -> SplitAssignment:
    """Split links by (source, target) pair and, separately, entities of each side.

    ``given_*`` ([n_links], [n_sources], [n_targets] split names) replace the drawn split
    of the links scheme and of each side's entities; each draw has its own seeded generator,
    so giving one leaves the others as they would be drawn.
    """
    pair = np.char.add(np.char.add(links.source.astype(str), ":"), links.target.astype(str))
    by_link = group_split(pair, fractions, seed) if given_links is None else np.asarray(given_links, str)
    src_split = group_split(np.arange(n_sources), fractions, seed + 1)
    tgt_split = group_split(np.arange(n_targets), fractions, seed + 2)
    if given_sources is not None:
        src_split = np.asarray(given_sources, dtype=str)
    if given_targets is not None:
        tgt_split = np.asarray(given_targets, dtype=str)
    order = np.vectorize(SPLIT_ORDER.get)
    later = np.maximum(order(src_split[links.source]), order(tgt_split[links.target]))
    by_entity = np.asarray(SPLITS)[later]
    return SplitAssignment({"links": by_link, "entities": by_entity}, src_split, tgt_split)


def query_candidate(links: Links, direction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boolean row mask of ``direction`` plus its query and candidate indices."""
    rows = links.direction == direction
    if direction == S2T:
        return rows, links.source[rows], links.target[rows]
    return rows, links.target[rows], links.source[rows]


@dataclass
class SplitLabels:
    """Labels of one scheme and split for both directions.

    ``labels[d]`` is a sparse [n_queries, n_candidates] matrix (see ``label_matrix``);
    ``queries[d]`` the [n] query indices evaluated (or trained) in this split;
    ``mask_columns[d]`` [n_candidates] bool, candidates masked for every query.
    """

    scheme: str
    split: str
    labels: dict[str, sparse.csr_matrix]
    queries: dict[str, np.ndarray]
    mask_columns: dict[str, np.ndarray]

    def dense_rows(self, direction: str, queries: np.ndarray) -> np.ndarray:
        """Dense [len(queries), n_candidates] labels with masked columns applied."""
        rows = self.labels[direction][queries].toarray()
        mask = self.mask_columns[direction]
        if mask.any():
            rows[:, mask] = np.where(rows[:, mask] > 0, rows[:, mask], MASKED)
        return rows


def split_labels(
    links: Links, assignment: SplitAssignment, scheme: str, split: str, n_sources: int, n_targets: int
) -> SplitLabels:
    """Labels and queries of ``scheme``/``split`` for both directions.

    In the ``entities`` scheme, training masks every held-out candidate (its links are
    unknown to training, not negative) and evaluation uses held-out entities as queries.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, not {scheme!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    link_split = assignment.links[scheme]
    labels, queries, masks = {}, {}, {}
    for d in DIRECTIONS:
        nq, nc = (n_sources, n_targets) if d == S2T else (n_targets, n_sources)
        q_split = assignment.sources if d == S2T else assignment.targets
        c_split = assignment.targets if d == S2T else assignment.sources
        mat = label_matrix(links, d, link_split, split, nq, nc)
        labels[d] = mat
        has_pos = np.asarray((mat > 0).sum(axis=1)).ravel() > 0
        if scheme == "entities":
            has_pos &= q_split == split
            masks[d] = (c_split != "train") if split == "train" else np.zeros(nc, bool)
        else:
            masks[d] = np.zeros(nc, bool)
        queries[d] = np.flatnonzero(has_pos)
    return SplitLabels(scheme, split, labels, queries, masks)


def label_matrix(
    links: Links, direction: str, link_split: np.ndarray, split: str, nq: int, nc: int
) -> sparse.csr_matrix:
    """Sparse [nq, nc] labels of ``split`` for one direction.

    Entries: the confidence for links of ``split`` (at least a tiny epsilon so that
    zero-confidence links stay visible as positives); for evaluation splits, ``MASKED`` for
    links of other splits (filtered ranking: a known positive must not count as a miss).
    Absent entries are negatives.
    """
    rows, q, c = query_candidate(links, direction)
    in_split = link_split[rows] == split
    values = np.where(in_split, np.maximum(links.confidence[rows], 1e-6), MASKED).astype(np.float32)
    if split == "train":
        # Training must not know which unlabelled pairs are held-out links: they stay
        # negatives, exactly as unknown links are in real use.
        q, c, values = q[in_split], c[in_split], values[in_split]
    return sparse.csr_matrix((values, (q, c)), shape=(nq, nc))


SPLIT_NAMES = ("train", "val", "test")


def prepare_data(
    links_path: str | os.PathLike,
    sources_path: str | os.PathLike,
    targets_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    min_quality: float | None = None,
    allow_unlinked: bool = False,
    splits_path: str | os.PathLike | None = None,
    confidence_words: dict[str, float] | None = None,
    exclude_known: str | os.PathLike | None = None,
    folds: int = 1,
) -> dict[str, Any]:
    """Validate the inputs and write normalised tables plus the split assignment.

    The links scheme's split is given by ``splits_path`` or a ``split`` column of the links
    table (see :func:`given_link_assignment`), the entities scheme's by ``split`` columns of
    the entity tables; what is not given is drawn with ``seed`` and ``fractions``.

    Writes ``sources.tsv``, ``targets.tsv`` (copies), ``links.tsv`` (one row per link and
    direction, with both schemes' split names), ``splits.npz``, ``link_splits.tsv`` (the
    links scheme's split, one (source, target, split) row per pair: a splits file to give
    back), ``heldout_{sources,targets}.tsv`` (test-split entities of the entities scheme: new
    entities for the inference demo) and ``data.json`` (counts).

    With ``folds`` K > 1 the links scheme is cross-validated: ``link_folds.tsv`` (each pair's
    test fold, (source, target, fold): a splits file to give back) and
    ``folds/<f>/splits.npz`` per fold (the fold's links-scheme split, the entities scheme's
    one split); ``splits.npz``, ``links.tsv`` and ``link_splits.tsv`` then hold fold 0's
    split (what the diagnostics look at).

    ``confidence_words`` maps confidence words to numbers (see :func:`read_links`);
    ``exclude_known`` names a file of (source, target) pairs already known from another
    source: ``splits.npz`` then marks those links (``links_known``) and the report adds a
    row on held-out links absent from it.
    """
    if folds < 1:
        raise ValueError(f"assoc.evaluation.folds must be >= 1, not {folds}")
    out = Path(out_dir)
    sources, targets = read_entities(sources_path, "source"), read_entities(targets_path, "target")
    links = read_links(links_path, sources, targets, min_quality, allow_unlinked, confidence_words)
    found = given_link_assignment(links, sources, targets, links_path, splits_path)
    if folds == 1:
        given = single_link_split(found, splits_path or links_path)
        fold_splits, fold_of = None, None
    else:
        fold_of = link_folds(links, folds, seed, found, splits_path or links_path)
        fold_splits = [fold_link_split(links, fold_of, f, tuple(fractions), seed) for f in range(folds)]
        given = fold_splits[0]
    assignment = assign_splits(
        links, len(sources), len(targets), tuple(fractions), seed, given, sources.split, targets.split
    )
    if exclude_known:
        assignment.known = known_link_mask(links, sources, targets, exclude_known)
    logger.info(
        "links scheme: %s; entities scheme: sources %s, targets %s",
        f"{folds} folds" if folds > 1 else "drawn split" if given is None else "given split",
        "drawn" if sources.split is None else "given",
        "drawn" if targets.split is None else "given",
    )
    for side, path in (("sources", sources_path), ("targets", targets_path)):
        with atomic_output(out / f"{side}.tsv") as tmp:
            shutil.copyfile(path, tmp)
    _write_links(links, sources, targets, assignment, out)
    _write_pair_values(links, sources, targets, assignment.links["links"], out / "link_splits.tsv", "split")
    _write_splits_npz(assignment, out / "splits.npz")
    for name, table, path, split in (
        ("sources", sources, sources_path, assignment.sources),
        ("targets", targets, targets_path, assignment.targets),
    ):
        held = [table.ids[i] for i in np.flatnonzero(split == "test")]
        _write_entity_subset(path, out / f"heldout_{name}.tsv", held)
    counts = _counts(links, sources, targets, assignment)
    if fold_splits is not None:
        _write_pair_values(links, sources, targets, fold_of, out / "link_folds.tsv", "fold")
        for f, split in enumerate(fold_splits):
            fold_assignment = dataclasses.replace(assignment, links={**assignment.links, "links": split})
            _write_splits_npz(fold_assignment, out / "folds" / str(f) / "splits.npz")
        counts["folds"] = folds
        counts["links_per_fold"] = {str(f): int((fold_of == f).sum()) for f in range(folds)}
    atomic_write_json(out / "data.json", counts)
    logger.info("data: %s", counts)
    return counts


def _write_links(
    links: Links, sources: EntityTable, targets: EntityTable, assignment: SplitAssignment, out: Path
) -> None:
    """``links.tsv``: one row per link and direction, with both schemes' split names."""
    names = {"s2t": "source->target", "t2s": "target->source"}
    rows = (
        [
            sources.ids[links.source[i]],
            targets.ids[links.target[i]],
            names[links.direction[i]],
            f"{links.confidence[i]:g}",
            links.category[i],
            assignment.links["links"][i],
            assignment.links["entities"][i],
        ]
        for i in range(len(links))
    )
    write_link_table(rows, out / "links.tsv", (*LINK_COLUMNS, "category", "split_links", "split_entities"))


def _write_pair_values(
    links: Links, sources: EntityTable, targets: EntityTable, values: np.ndarray, path: Path, kind: str
) -> None:
    """One (source, target, split or fold) row per pair, in the order of first appearance."""
    per_pair: dict[tuple[str, str], str] = {}
    for i in range(len(links)):
        per_pair.setdefault((sources.ids[links.source[i]], targets.ids[links.target[i]]), str(values[i]))
    write_link_split_file(((s, t, v) for (s, t), v in per_pair.items()), path, kind)


def _write_splits_npz(assignment: SplitAssignment, path: Path) -> None:
    known = {} if assignment.known is None else {"links_known": assignment.known}
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            links_links=assignment.links["links"],
            links_entities=assignment.links["entities"],
            sources=assignment.sources,
            targets=assignment.targets,
            **known,
        )


def _counts(
    links: Links, sources: EntityTable, targets: EntityTable, assignment: SplitAssignment
) -> dict[str, Any]:
    """``data.json``'s counts: entities, links, links per scheme and split, categories."""
    counts: dict[str, Any] = {"n_sources": len(sources), "n_targets": len(targets), "n_links": len(links)}
    for scheme in SCHEMES:
        counts[f"{scheme}_links_per_split"] = {
            s: int((assignment.links[scheme] == s).sum()) for s in SPLIT_NAMES
        }
    if assignment.known is not None:
        counts["links_known_per_split"] = {
            s: int((assignment.known & (assignment.links["links"] == s)).sum()) for s in SPLIT_NAMES
        }
    counts["categories"] = {c: int((links.category == c).sum()) for c in np.unique(links.category)}
    return counts


def known_link_mask(
    links: Links, sources: EntityTable, targets: EntityTable, path: str | os.PathLike
) -> np.ndarray:
    """[n_links] bool: the link's (source, target) pair is in the known links file ``path``.

    Pairs of the file between entities outside the vocabularies are ignored (a training
    source usually covers more); a file sharing no pair with the links is an error, since
    it most likely names entities differently."""
    pairs = read_known_links(path)
    src = np.asarray(sources.ids, dtype=object)[links.source]
    tgt = np.asarray(targets.ids, dtype=object)[links.target]
    mask = np.fromiter(((s, t) in pairs for s, t in zip(src, tgt, strict=True)), bool, len(links))
    if not mask.any():
        raise ValueError(
            f"known links file {path} ({len(pairs)} pairs) shares no (source, target) pair with "
            f"the links table, e.g. it has {sorted(pairs)[:3]}: are the ids the same?"
        )
    logger.info("exclude_known %s: %d of %d links are known", path, int(mask.sum()), len(links))
    return mask


def _write_entity_subset(path: str | os.PathLike, out: Path, ids: list[str]) -> None:
    import pandas as pd

    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    keep = df[df["id"].isin(set(ids))]
    with atomic_output(out) as tmp:
        keep.to_csv(tmp, sep="\t", index=False)


def load_data(
    data_dir: str | os.PathLike, splits_path: str | os.PathLike | None = None
) -> tuple[EntityTable, EntityTable, Links, SplitAssignment]:
    """Read the data step's outputs back (re-validated) with their split assignment:
    ``splits_path`` (a fold's ``folds/<f>/splits.npz``) or else ``data_dir/splits.npz``."""
    d = Path(data_dir)
    splits = Path(splits_path) if splits_path else d / "splits.npz"
    sources, targets = read_entities(d / "sources.tsv", "source"), read_entities(d / "targets.tsv", "target")
    links = read_links(d / "links.tsv", sources, targets, allow_unlinked=True)
    with np.load(splits, allow_pickle=False) as z:
        assignment = SplitAssignment(
            {"links": z["links_links"], "entities": z["links_entities"]},
            z["sources"],
            z["targets"],
            z["links_known"] if "links_known" in z.files else None,
        )
    if len(assignment.links["links"]) != len(links):
        raise ValueError(
            f"{splits} has {len(assignment.links['links'])} link splits but "
            f"{d / 'links.tsv'} has {len(links)} links: rerun the data step"
        )
    return sources, targets, links, assignment


def all_labels(
    links: Links, assignment: SplitAssignment, scheme: str, n_s: int, n_t: int
) -> dict[str, SplitLabels]:
    return {s: split_labels(links, assignment, scheme, s, n_s, n_t) for s in SPLIT_NAMES}
