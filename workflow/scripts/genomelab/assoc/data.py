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
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.tables import LINK_COLUMNS, read_entity_table, read_link_table, write_link_table
from genomelab.splits import SPLITS, group_split

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
    ``descriptions``/``sequences`` are per-entity strings or ``None`` when the column is absent.
    """

    side: str
    ids: list[str]
    descriptions: list[str] | None = None
    sequences: list[str] | None = None
    numeric: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    numeric_names: list[str] = field(default_factory=list)

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
    return EntityTable(side, ids.tolist(), descriptions, sequences, numeric, numeric_cols)


@dataclass
class Links:
    """Validated links as index arrays, one row per (pair, direction).

    ``source``/``target`` are [n] indices into the entity tables, ``direction`` [n] in
    ``DIRECTIONS``, ``confidence`` [n] float32, ``category`` [n] str (may be empty).
    """

    source: np.ndarray
    target: np.ndarray
    direction: np.ndarray
    confidence: np.ndarray
    category: np.ndarray

    def __len__(self) -> int:
        return len(self.source)


def read_links(
    path: str | os.PathLike,
    sources: EntityTable,
    targets: EntityTable,
    min_quality: float | None = None,
    allow_unlinked: bool = False,
) -> Links:
    """Read and validate a links TSV.

    Columns: ``source``, ``target``, ``direction`` (``source->target``, ``target->source`` or
    ``both``), ``confidence`` in [0, 1]; optional ``quality`` (numeric; rows below
    ``min_quality`` are dropped) and ``category``. Raises ``ValueError`` naming the file for
    unknown entities, confidences outside [0, 1], duplicate links, a direction without
    links, and (unless ``allow_unlinked``) entities without any link (empty classes).
    """
    path = Path(path)
    df = read_link_table(path, (*DIRECTION_NAMES, "both"))
    direction = df["direction"]
    if "quality" in df.columns and min_quality is not None:
        quality = pd.to_numeric(df["quality"], errors="coerce")
        if quality.isna().any():
            raise ValueError(f"links table {path}: column 'quality' has non-numeric values")
        keep = quality >= min_quality
        logger.info("min_quality %g keeps %d of %d links", min_quality, int(keep.sum()), len(df))
        df, direction = df[keep.to_numpy()], direction[keep.to_numpy()]
    for side, table in (("source", sources), ("target", targets)):
        unknown = sorted(set(df[side]) - set(table.index))
        if unknown:
            raise ValueError(
                f"links table {path}: {len(unknown)} {side} entit(ies) not in the "
                f"{side} table, e.g. {unknown[:5]}"
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
    dup = df.duplicated(["source", "target", "direction"], keep=False)
    if dup.any():
        ex = df[dup].drop_duplicates(["source", "target", "direction"]).head(5)
        raise ValueError(
            f"links table {path}: {int(dup.sum())} rows are duplicate (source, target, "
            f"direction) links, e.g. {list(zip(ex.source, ex.target, ex.direction, strict=True))}"
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
    )


@dataclass
class SplitAssignment:
    """Per-scheme split names: ``links[scheme]`` [n_links], ``sources``/``targets`` [n]."""

    links: dict[str, np.ndarray]
    sources: np.ndarray
    targets: np.ndarray


def assign_splits(
    links: Links,
    n_sources: int,
    n_targets: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    seed: int = 0,
) -> SplitAssignment:
    """Split links by (source, target) pair and, separately, entities of each side."""
    pair = np.char.add(np.char.add(links.source.astype(str), ":"), links.target.astype(str))
    by_link = group_split(pair, fractions, seed)
    src_split = group_split(np.arange(n_sources), fractions, seed + 1)
    tgt_split = group_split(np.arange(n_targets), fractions, seed + 2)
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
) -> dict[str, Any]:
    """Validate the inputs and write normalised tables plus the split assignment.

    Writes ``sources.tsv``, ``targets.tsv`` (copies), ``links.tsv`` (one row per link and
    direction, with both schemes' split names), ``splits.npz``, ``heldout_{sources,targets}.tsv``
    (test-split entities of the entities scheme: new entities for the inference demo) and
    ``data.json`` (counts).
    """
    out = Path(out_dir)
    sources, targets = read_entities(sources_path, "source"), read_entities(targets_path, "target")
    links = read_links(links_path, sources, targets, min_quality, allow_unlinked)
    assignment = assign_splits(links, len(sources), len(targets), tuple(fractions), seed)
    for side, path in (("sources", sources_path), ("targets", targets_path)):
        with atomic_output(out / f"{side}.tsv") as tmp:
            shutil.copyfile(path, tmp)
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
    with atomic_output(out / "splits.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            links_links=assignment.links["links"],
            links_entities=assignment.links["entities"],
            sources=assignment.sources,
            targets=assignment.targets,
        )
    for name, table, path, split in (
        ("sources", sources, sources_path, assignment.sources),
        ("targets", targets, targets_path, assignment.targets),
    ):
        held = [table.ids[i] for i in np.flatnonzero(split == "test")]
        _write_entity_subset(path, out / f"heldout_{name}.tsv", held)
    counts: dict[str, Any] = {"n_sources": len(sources), "n_targets": len(targets), "n_links": len(links)}
    for scheme in SCHEMES:
        counts[f"{scheme}_links_per_split"] = {
            s: int((assignment.links[scheme] == s).sum()) for s in SPLIT_NAMES
        }
    counts["categories"] = {c: int((links.category == c).sum()) for c in np.unique(links.category)}
    atomic_write_json(out / "data.json", counts)
    logger.info("data: %s", counts)
    return counts


def _write_entity_subset(path: str | os.PathLike, out: Path, ids: list[str]) -> None:
    import pandas as pd

    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    keep = df[df["id"].isin(set(ids))]
    with atomic_output(out) as tmp:
        keep.to_csv(tmp, sep="\t", index=False)


def load_data(data_dir: str | os.PathLike) -> tuple[EntityTable, EntityTable, Links, SplitAssignment]:
    """Read the data step's outputs back (re-validated) with their split assignment."""
    d = Path(data_dir)
    sources, targets = read_entities(d / "sources.tsv", "source"), read_entities(d / "targets.tsv", "target")
    links = read_links(d / "links.tsv", sources, targets, allow_unlinked=True)
    with np.load(d / "splits.npz", allow_pickle=False) as z:
        assignment = SplitAssignment(
            {"links": z["links_links"], "entities": z["links_entities"]}, z["sources"], z["targets"]
        )
    if len(assignment.links["links"]) != len(links):
        raise ValueError(
            f"{d / 'splits.npz'} has {len(assignment.links['links'])} link splits but "
            f"{d / 'links.tsv'} has {len(links)} links: rerun the data step"
        )
    return sources, targets, links, assignment


def all_labels(
    links: Links, assignment: SplitAssignment, scheme: str, n_s: int, n_t: int
) -> dict[str, SplitLabels]:
    return {s: split_labels(links, assignment, scheme, s, n_s, n_t) for s in SPLIT_NAMES}
