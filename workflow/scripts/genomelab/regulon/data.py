"""Step 1, processing: parse RegulonDB documents, join on b-numbers, normalise, report.

Expression values (TPM, FPKM or counts) span five orders of magnitude and cover only part
of the genome. A model fed raw values, or 0/1 presence flags, sees a loss in the
thousands that never falls. Here every value goes through ``log1p`` and a z-score whose
statistics are saved (``norm_stats.json``) and reused at inference to map predictions
back to ``log1p`` units.

With several expression datasets, each gene also gets its co-expression with its next
gene on the same strand (``next_*`` columns, :func:`add_coexpression`): genes of one operon
are transcribed together, so across conditions their expression correlates, the classic
operon signal beside intergenic distance (Sabatti et al. 2002, Nucleic Acids Res 30:2886).
Memory: the values wait in a float64 grid of genes x datasets (8 bytes per cell, twice the
float32 matrix the co-expression reads; a cell given twice keeps its further values
aside), an expression table is read a chunk of rows at a time, and the matrix replaces the
grid row by row. The whole step at 4,600 genes x 1,000 / 5,000 samples
(``benchmarks/bench_regulon_expression_memory.py``): 52 / 210 MB resident at the peak, 3.0x /
2.4x the 17.5 / 87.7 MB matrix (traced: 46 / 195 MB, 2.6x / 2.2x). Before (value lists of 16
bytes a value, their int64 / float64 copies and bincounts, the table held whole, per-base
coverage arrays): 359 / 1,823 MB resident, 20.5x / 20.8x (traced: 325 / 1,616 MB).
Time: a table is tallied a chunk of rows at a time (``_ExpressionTally.add_block``), to the
same bits as its documents, one per value: the whole step at 4,600 x 5,000 takes 14-16 s
instead of 75 s, 86-89 s before the chunk became one float block
(``benchmarks/bench_regulon_expression_speed.py``, 2 loaded cores); most of what is left is
pandas parsing chunks of 52 rows x 5,000 columns. A BSON dump's or a database's documents are
tallied DOCUMENT_BLOCK at a time (``_ExpressionTally.add_documents``: parsed into arrays, then
counted at once), to the same bits as the call per document before round 22: the whole step
on 920,000 documents (4,600 genes x 200 datasets) takes 3.6-5.0 s instead of 6.4-7.6 s, of
which decoding the BSON is 1.8-2.1 s; peak 40 MB resident instead of 19 (a block's arrays and
their temporaries; ``benchmarks/bench_regulon_bson_speed.py``, 2 loaded cores).

Coordinates: RegulonDB and GFF are 1-based inclusive; everything written here is 0-based
half-open (``start = left - 1``, ``end = right``).
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
from array import array
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.dropped import count_dropped
from genomelab.io.errors import FormatError
from genomelab.io.regulondb_flat import CONFIDENCE_LEVELS, confidence_rank, parse_confidence
from genomelab.io.streams import open_text
from genomelab.regulon.bsonio import GENE_DATAMART, GENE_EXPRESSION, OPERON_DATAMART, Source
from genomelab.regulon.flat import ExpressionBlock, block_documents

logger = logging.getLogger(__name__)

VALUE_FIELDS = ("tpm", "fpkm", "count")
STRANDS = {"forward": "+", "reverse": "-", "+": "+", "-": "-", "1": "+", "-1": "-"}
GENE_COLUMNS = [
    "bnumber",
    "gene_id",
    "name",
    "start",
    "end",
    "strand",
    "operon_id",
    "n_datasets",
    "raw_mean",
    "log1p_mean",
    "z",
]
# Written by runs since round 14 (add_coexpression); gene tables without them read as
# without co-expression.
NEXT_COLUMNS = ["next_bnumber", "next_coexpression", "next_coexpression_n"]
# Datasets measuring both genes below which no co-expression is given (a correlation over a
# handful of conditions says little).
MIN_COEXPRESSION_DATASETS = 8
OPERON_COLUMNS = ["operon_id", "name", "strand", "start", "end", "n_genes", "bnumbers"]


@dataclass
class Normaliser:
    """``z = (log1p(x) - mean) / std``, fitted on per-gene values and saved as JSON."""

    value_field: str
    mean: float
    std: float
    n_genes: int
    transform_name: str = "log1p_zscore"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(
                f"normalisation statistics must be finite with std > 0, not mean={self.mean}, std={self.std}"
            )

    @classmethod
    def fit(cls, log_values: np.ndarray, value_field: str) -> Normaliser:
        """Fit on ``log1p`` values, shape [n_genes]."""
        v = np.asarray(log_values, dtype=float)
        v = v[np.isfinite(v)]
        if v.size < 2:
            raise ValueError(f"need at least 2 measured genes to normalise {value_field}, have {v.size}")
        return cls(value_field, float(v.mean()), float(v.std()), int(v.size))

    def transform_log(self, log_values: np.ndarray) -> np.ndarray:
        return (np.asarray(log_values, dtype=float) - self.mean) / self.std

    def transform(self, raw: np.ndarray) -> np.ndarray:
        return self.transform_log(np.log1p(np.asarray(raw, dtype=float)))

    def inverse_log(self, z: np.ndarray) -> np.ndarray:
        """z-scores back to ``log1p(value)`` units (what bedGraph exports show)."""
        return np.asarray(z, dtype=float) * self.std + self.mean

    def save(self, path: str | os.PathLike) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Normaliser:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
            return cls(**data)
        except (OSError, ValueError, TypeError) as exc:
            raise ValueError(f"normalisation statistics {path} are unreadable: {exc}") from exc


# ----------------------------------------------------------------------------- parsing
def _strand(value: Any) -> str | None:
    return STRANDS.get(str(value).strip().lower()) if value is not None else None


def _coords(sub: dict[str, Any]) -> tuple[int, int] | None:
    left, right = sub.get("leftEndPosition"), sub.get("rightEndPosition")
    if left is None or right is None:
        return None
    left, right = int(left), int(right)
    if left < 1 or right < left:
        return None
    return left - 1, right


def parse_gene_doc(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A geneDatamart document -> gene record (``None`` without b-number or coordinates)."""
    gene = doc.get("gene") or {}
    bnumber = gene.get("bnumber")
    coords = _coords(gene)
    if not bnumber or coords is None:
        return None
    return {
        "bnumber": str(bnumber),
        "gene_id": str(gene.get("id") or doc.get("_id") or bnumber),
        "name": str(gene.get("name") or ""),
        "start": coords[0],
        "end": coords[1],
        "strand": _strand(gene.get("strand")),
    }


class ExpressionValueError(ValueError):
    """An expression document's value is not a number (the message names gene, dataset,
    field and value; the reader adds the dump or database)."""


def parse_expression_doc(doc: dict[str, Any], value_field: str) -> tuple[str, str, float | None, dict] | None:
    """A geneExpression document -> (dataset, b-number, value, gene sub-document)."""
    gene = doc.get("gene") or {}
    bnumber = gene.get("bnumber")
    if not bnumber:
        return None
    datasets = doc.get("datasetIds") or []
    dataset = str(datasets[0]) if datasets else str(doc.get("_id", "")).split(",")[0]
    value = doc.get(value_field)
    if value is None:
        return dataset, str(bnumber), None, gene
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ExpressionValueError(
            f"the expression value of gene {bnumber} in dataset {dataset!r}: {value_field} "
            f"{value!r} is not a number"
        ) from None
    return dataset, str(bnumber), number, gene


def parse_operon_doc(doc: dict[str, Any]) -> dict[str, Any] | None:
    """An operonDatamart document -> operon record with member gene ids (or b-numbers)."""
    operon = doc.get("operon") or {}
    oid = operon.get("id") or doc.get("_id")
    if not oid:
        return None
    members: list[str] = []
    for tu in doc.get("transcriptionUnits") or []:
        for g in tu.get("genes") or []:
            gid = g.get("id") or g.get("bnumber")
            if gid and gid not in members:
                members.append(str(gid))
    return {
        "operon_id": str(oid),
        "name": str(operon.get("name") or oid),
        "strand": _strand(operon.get("strand")),
        "members": members,
        "fallback": _coords(operon.get("regulationPositions") or {}),
        "confidence": operon_confidence(operon),
    }


def operon_confidence(operon: dict[str, Any]) -> str | None:
    """An operon's evidence level: its ``confidenceLevel``, else the best of its citations'
    evidence types (datamart citations carry ``evidence.type`` C/S/W), else ``None``."""
    level = parse_confidence(operon.get("confidenceLevel"), "operon document")
    if level is not None:
        return level
    best = None
    for citation in operon.get("citations") or []:
        evidence = (citation or {}).get("evidence") or {}
        try:
            cand = parse_confidence(evidence.get("type"), "operon citation")
        except ValueError:
            continue  # evidence types other than C/S/W say nothing about confidence
        if confidence_rank(cand) > confidence_rank(best):
            best = cand
    return best


def _gff_genes(path: Path, no_tag: list[str], seqid: str | None) -> list[tuple[str, str, int, int, str]]:
    """Gene rows of a GFF3 file (of ``seqid`` only, when given); genes without a ``locus_tag``
    are appended to ``no_tag``.

    Rows are parsed and checked by :func:`genomelab.io.gff.iter_gff3`, the reader that
    ``genomelab predict regulon --gff`` uses too, so both see the same coordinates.
    """
    from genomelab.io.gff import GENE_TYPES, iter_gff3

    rows = []
    seqids: set[str] = set()
    for f in iter_gff3(path):
        if f.type not in GENE_TYPES:
            continue
        seqids.add(f.seqid)
        if seqid is not None and f.seqid != seqid:
            continue
        attrs = f.attributes
        if "locus_tag" not in attrs:
            no_tag.append(attrs.get("ID", attrs.get("Name", str(f.start + 1))))
            continue
        rows.append((attrs["locus_tag"], attrs.get("Name", ""), f.start, f.end, f.strand))
    if seqid is not None and seqid not in seqids and seqids:
        raise FormatError(
            path,
            f"no gene or pseudogene on seqid {seqid!r}, the genome record modelled (seqids in the "
            f"file: {sorted(seqids)[:5]}); give the annotation of that record, or rename its seqids",
        )
    return rows


def _genbank_genes(path: Path, seqid: str | None) -> list[tuple[str, str, int, int, str]]:
    """Gene rows of a GenBank file (of the record whose id or LOCUS name is ``seqid``, when given)."""
    from Bio import SeqIO

    rows = []
    names: list[str] = []
    with open_text(path) as fh:
        for record in SeqIO.parse(fh, "genbank"):
            names.append(record.id)
            if seqid is not None and seqid not in (record.id, record.name):
                continue
            for feat in record.features:
                if feat.type == "gene" and "locus_tag" in feat.qualifiers:
                    rows.append(
                        (
                            feat.qualifiers["locus_tag"][0],
                            feat.qualifiers.get("gene", [""])[0],
                            int(feat.location.start),
                            int(feat.location.end),
                            "+" if feat.location.strand == 1 else "-",
                        )
                    )
    if seqid is not None and names and not rows:
        raise FormatError(
            path,
            f"no gene with a locus_tag on record {seqid!r}, the genome record modelled (records: {names[:5]})",
        )
    return rows


def read_annotation(path: str | os.PathLike, seqid: str | None = None) -> pd.DataFrame:
    """Genes with b-numbers (``locus_tag``) from a GFF3 or GenBank file (gzip allowed).

    ``seqid``: the genome record modelled; only its genes are read (GFF3 seqid, GenBank id or
    LOCUS name), and a file without any gene on it is a FormatError naming the ones it has.
    Returns columns bnumber, name, start (0-based), end, strand.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    name = path.name.lower().removesuffix(".gz")
    no_tag: list[str] = []  # genes without a b-number cannot be joined: counted, not silent
    if name.endswith((".gff", ".gff3")):
        rows = _gff_genes(path, no_tag, seqid)
    elif name.endswith((".gb", ".gbk", ".gbff", ".genbank")):
        rows = _genbank_genes(path, seqid)
    else:
        raise ValueError(f"annotation file {path}: unknown format (expected .gff/.gff3 or .gb/.gbk/.gbff)")
    if not rows:
        raise ValueError(f"annotation file {path} holds no gene with a locus_tag (b-number)")
    count_dropped("regulon_data", "genes", f"no locus_tag (b-number) in {path}", no_tag)
    table = pd.DataFrame(rows, columns=["bnumber", "name", "start", "end", "strand"])
    repeated = table["bnumber"].duplicated()
    count_dropped(
        "regulon_data", "genes", f"b-number repeated in {path} (first kept)", table["bnumber"][repeated]
    )
    return table[~repeated]


def genome_length(fasta: str | os.PathLike, contig: str | None = None) -> tuple[str, int]:
    """Name and length of ``contig`` (default: the first record) of a FASTA file."""
    from genomelab.regulon.targets import read_genome

    name, codes = read_genome(fasta, contig)
    return name, int(codes.size)


# -------------------------------------------------------------------------- processing
def _union_length(intervals: Iterable[tuple[int, int]], length: int) -> int:
    """Bases of [0, length) covered by the union of half-open ``intervals`` (clipped to it).

    Merged in start order, so memory follows the intervals, not the genome (a per-base array
    took 89 MB at the peak for E. coli's 4.6 Mb, more than a 1,000-sample expression matrix).
    """
    iv = np.clip(np.asarray(list(intervals), dtype=np.int64).reshape(-1, 2), 0, length)
    iv = iv[iv[:, 1] > iv[:, 0]]
    if not len(iv):
        return 0
    iv = iv[np.argsort(iv[:, 0], kind="stable")]
    # A run of overlapping or touching intervals starts where an interval begins after every
    # earlier one has ended.
    reach = np.maximum.accumulate(iv[:, 1])
    first = np.flatnonzero(np.r_[True, iv[1:, 0] > reach[:-1]])
    run_end = reach[np.r_[first[1:] - 1, len(iv) - 1]]
    return int((run_end - iv[first, 0]).sum())


def _collect_genes(
    source: Source, annotation: str | os.PathLike | None, contig: str | None = None
) -> tuple[dict[str, dict[str, Any]], int, int]:
    """Genes from geneDatamart, with coordinates from ``annotation`` (its genes on the genome
    record ``contig``) overriding where given.

    Returns ({b-number: record}, documents read, documents that could not be parsed).
    """
    genes: dict[str, dict[str, Any]] = {}
    n_docs = n_bad = 0
    for doc in source.iter(GENE_DATAMART) if source.has(GENE_DATAMART) else ():
        n_docs += 1
        rec = parse_gene_doc(doc)
        if rec is None:
            n_bad += 1
            continue
        genes[rec["bnumber"]] = rec
    if annotation is not None:
        ann = read_annotation(annotation, seqid=contig)
        for row in ann.itertuples(index=False):
            rec = genes.setdefault(
                row.bnumber, {"bnumber": row.bnumber, "gene_id": row.bnumber, "name": row.name}
            )
            rec.update(start=int(row.start), end=int(row.end), strand=row.strand)
        logger.info("annotation %s: %d genes", annotation, len(ann))
    if not genes:
        raise ValueError(
            f"{source.describe()}: no genes (give a genes file, a geneDatamart collection or regulon.annotation)"
        )
    return genes, n_docs, n_bad


class _ValueGrid:
    """Values by (row, column) as they stream in, for a [rows, columns] matrix.

    One float64 array per row, NaN where no value came yet, grown as columns appear (by a
    quarter at least, or at once to every column seen so far: a gene x sample table's rows
    after the first are made at their full width); a cell given more than once keeps its
    further values aside, in the order given. 8 bytes per cell, twice the float32 matrix.
    Values must be finite (NaN marks an empty cell).
    """

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.n_columns = 0
        # row -> column -> the cell's values after its first
        self.repeats: dict[int, dict[int, list[float]]] = {}

    def put_many(self, rows: np.ndarray, columns: np.ndarray, values: np.ndarray) -> None:
        """``values`` [k] into cells (``rows`` [k], ``columns`` [k]), in the order given: rows
        past the last are new (numbered on from it, each with a value here), a cell's first
        value fills it, and a cell already filled, or given again, keeps the further values
        aside in the order given. No values (k = 0): nothing to do."""
        if rows.size == 0:
            return
        self.n_columns = max(self.n_columns, int(columns.max()) + 1)
        for _ in range(len(self.rows), int(rows.max()) + 1):
            self.rows.append(np.full(self.n_columns, np.nan))
        # By cell, and within a cell in the order given (a stable sort).
        order = np.argsort(rows * self.n_columns + columns, kind="stable")
        rows, columns, values = rows[order], columns[order], values[order]
        # Each cell's first value here [m], then the rows' runs of them.
        first = np.flatnonzero(np.r_[True, (rows[1:] != rows[:-1]) | (columns[1:] != columns[:-1])])
        at_row, at_column, at_value = rows[first], columns[first], values[first]
        empty = np.empty(first.size, bool)
        bounds = np.flatnonzero(np.r_[True, at_row[1:] != at_row[:-1], True]).tolist()
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            row = int(at_row[start])
            cells = self.rows[row]
            if cells.size < self.n_columns:
                wider = np.full(max(self.n_columns, cells.size + cells.size // 4), np.nan)
                wider[: cells.size] = cells
                self.rows[row] = cells = wider
            where = at_column[start:stop]
            now = cells[where]
            np.isnan(now, out=empty[start:stop])
            cells[where] = np.where(empty[start:stop], at_value[start:stop], now)
        aside = np.ones(rows.size, bool)
        aside[first[empty]] = False
        for i, j, v in zip(
            rows[aside].tolist(), columns[aside].tolist(), values[aside].tolist(), strict=True
        ):
            self.repeats.setdefault(i, {}).setdefault(j, []).append(v)

    def put_row(self, columns: np.ndarray, values: np.ndarray) -> None:
        """A new row (the next one) with ``values`` [k] in distinct ``columns`` [k]: what
        ``put_many`` of them would make."""
        self.n_columns = max(self.n_columns, int(columns.max()) + 1)
        cells = np.full(self.n_columns, np.nan)
        cells[columns] = values
        self.rows.append(cells)

    def to_matrix(self, n_columns: int, scale: np.ndarray | None) -> np.ndarray:
        """[rows, n_columns] float32 of log1p(value), or of log1p(1e6 * value / scale[column])
        with ``scale``; a cell with several values gets their mean, summed in the order given
        (as ``np.bincount`` sums). Empties the grid one row at a time, so that the float64
        rows give way to the float32 ones: the peak stays at 8 bytes per cell."""

        def scaled(values: np.ndarray, columns: Any) -> np.ndarray:
            return values if scale is None else 1e6 * values / scale[columns]

        out = []
        for i in range(len(self.rows)):
            cells, self.rows[i] = self.rows[i], np.empty(0)
            k = min(cells.size, n_columns)
            row = np.full(n_columns, np.nan, dtype=np.float32)
            row[:k] = np.log1p(scaled(cells[:k], slice(0, k)))
            for j, more in self.repeats.get(i, {}).items():
                total = 0.0
                for v in np.log1p(scaled(np.asarray([cells[j], *more]), j)):
                    total += float(v)
                row[j] = total / (1 + len(more))
            out.append(row)
            del cells
        self.rows, self.repeats = [], {}
        _release_freed_memory()
        return np.stack(out) if out else np.empty((0, n_columns), dtype=np.float32)


def _release_freed_memory() -> None:
    """Hand memory freed to the C heap back to the system (glibc's ``malloc_trim``; a no-op
    elsewhere). The grid's rows are small heap blocks: freed, they stayed resident beside
    the matrix made next (5,000 samples: 3.4x the matrix resident instead of about 2x)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


# Expression documents (a dump's or a database's) read into arrays at a time, then counted
# together (_ExpressionTally.add_documents). 200,000 documents' arrays take 4.8 MB, and with
# the temporaries of counting them about 20 MB at the peak (100,000: half, and a little
# slower; benchmarks/bench_regulon_bson_speed.py).
DOCUMENT_BLOCK = 200_000


@dataclass
class _DocumentValues:
    """The values of a block of expression documents [k], in the documents' order: gene and
    dataset as codes into ``bnumbers`` and ``datasets`` (numbered as first seen in the
    block), and whether a kept value's gene is unknown and placed by no coordinates."""

    bnumbers: list[str]
    datasets: list[str]
    gene: np.ndarray
    dataset: np.ndarray
    values: np.ndarray
    unmatched: np.ndarray


def _expression_gene(bnumber: str, gene_sub: dict[str, Any]) -> dict[str, Any] | None:
    """A gene record from an expression document's own coordinates (strand unknown), or None
    without them."""
    coords = _coords(gene_sub)
    if coords is None:
        return None
    return {
        "bnumber": bnumber,
        "gene_id": str(gene_sub.get("_id") or bnumber),
        "name": str(gene_sub.get("name") or ""),
        "start": coords[0],
        "end": coords[1],
        "strand": None,
    }


def _first_seen(codes: np.ndarray, names: list[str], index: dict[str, int]) -> tuple[list[str], np.ndarray]:
    """The names of ``codes`` [k] in the order first seen, numbered on in ``index`` where new,
    and each code's place among them [k]."""
    distinct, first, where = np.unique(codes, return_index=True, return_inverse=True)
    order = np.argsort(first)
    seen = [names[c] for c in distinct[order].tolist()]
    for name in seen:
        index.setdefault(name, len(index))
    place = np.empty(order.size, np.int64)
    place[order] = np.arange(order.size)
    return seen, place[where.reshape(-1)]


def _running_sums(
    totals: dict[str, float], names: list[str], of: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """``totals[name] + values...`` [len(names)] for the values [k] of each name (``of`` [k]),
    added one at a time in the order given from the running total (0.0 for a new name), as
    ``+=`` of each would: ``np.bincount`` adds its weights in order, the totals first."""
    n = len(names)
    start = np.fromiter((totals.get(name, 0.0) for name in names), float, n)
    return np.bincount(np.r_[np.arange(n), of], weights=np.r_[start, values], minlength=n)


@dataclass
class _ExpressionTally:
    """Streaming per-gene sums of one value field over every expression document.

    Only running sums are kept (memory: genes, not documents), plus the counts of dropped
    values and the raw range that the data report and its warnings need.
    """

    value_field: str
    sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    raw_sums: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    dataset_totals: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    field_seen: dict[str, int] = field(default_factory=lambda: dict.fromkeys(VALUE_FIELDS, 0))
    n_docs: int = 0
    n_missing: int = 0
    n_negative: int = 0
    n_nonfinite: int = 0
    n_nonint: int = 0
    n_unmatched: int = 0
    vmin: float = math.inf
    vmax: float = -math.inf
    unmatched: set[str] = field(default_factory=set)
    # Unmatched IDs that are names of the genes read, with their b-number (named_unmatched).
    unmatched_names: dict[str, str] = field(default_factory=dict)
    # Datasets with a document whose value is missing; those never with a value are named.
    missing_datasets: set[str] = field(default_factory=set)
    uniq_small: set[float] = field(default_factory=set)
    # Every kept value, for co-expression: rows (genes) and columns (datasets) in the order
    # first seen, the values in a grid of them until log_matrix turns it into its matrix.
    gene_index: dict[str, int] = field(default_factory=dict)
    dataset_index: dict[str, int] = field(default_factory=dict)
    grid: _ValueGrid | None = field(default_factory=lambda: _ValueGrid())
    matrix: np.ndarray | None = None

    def add_documents(
        self,
        docs: Iterable[dict[str, Any]],
        genes: dict[str, dict[str, Any]],
        block_docs: int | None = None,
    ) -> None:
        """Count expression documents (one per (gene, dataset) value: a BSON dump's, a
        database's, or the cells of a table block that :meth:`add_block` cannot take whole);
        a gene not in ``genes`` whose document has coordinates is added to it from them.

        The documents are read ``block_docs`` (default DOCUMENT_BLOCK) at a time into arrays
        of gene, dataset and value (:meth:`_parse_documents`), which are then counted at once
        (:meth:`_add_values`), to the bit as one document at a time was counted until round
        22: the same counts, sums, matrix and dataset order, the same error from the same
        document. Memory: one block's arrays (24 bytes a document) and their temporaries,
        whatever the number of documents."""
        size = DOCUMENT_BLOCK if block_docs is None else block_docs
        if size < 1:
            raise ValueError(f"block_docs must be >= 1, not {size}")
        if self.grid is None:
            raise RuntimeError("expression tally: a document added after log_matrix built the matrix")
        stream = iter(docs)
        while (block := self._parse_documents(islice(stream, size), genes)) is not None:
            self._add_values(block)

    def _parse_documents(
        self, docs: Iterator[dict[str, Any]], genes: dict[str, dict[str, Any]]
    ) -> _DocumentValues | None:
        """The values of ``docs`` in their order (None when there is no document); counts the
        documents, the value fields present and the missing values on the way. What depends on
        the order of the documents and on ``genes`` is settled here, as a document at a time:
        a gene not in ``genes`` is added at its first kept value whose document has
        coordinates (those before it are marked unmatched), and a value that ``float`` cannot
        read raises from its document."""
        n_docs = 0
        seen = dict.fromkeys(VALUE_FIELDS, 0)
        gene_codes: dict[str, int] = {}
        dataset_codes: dict[str, int] = {}
        gene, dataset, values = array("q"), array("q"), array("d")
        unmatched: list[int] = []
        for doc in docs:
            n_docs += 1
            for f in VALUE_FIELDS:
                if doc.get(f) is not None:
                    seen[f] += 1
            parsed = parse_expression_doc(doc, self.value_field)
            if parsed is None or parsed[2] is None:
                self.n_missing += 1
                if parsed is not None:
                    self.missing_datasets.add(parsed[0])
                continue
            name, bnumber, value, gene_sub = parsed
            # Only a kept value (finite, not negative) can place or miss a gene.
            if bnumber not in genes and math.isfinite(value) and not value < 0:
                record = _expression_gene(bnumber, gene_sub)
                if record is None:
                    unmatched.append(len(values))
                else:
                    genes[bnumber] = record
            gene.append(gene_codes.setdefault(bnumber, len(gene_codes)))
            dataset.append(dataset_codes.setdefault(name, len(dataset_codes)))
            values.append(value)
        if not n_docs:
            return None
        self.n_docs += n_docs
        for f, n in seen.items():
            self.field_seen[f] += n
        lost = np.zeros(len(values), bool)
        lost[unmatched] = True
        return _DocumentValues(
            list(gene_codes),
            list(dataset_codes),
            np.frombuffer(gene, np.int64),
            np.frombuffer(dataset, np.int64),
            np.frombuffer(values, np.float64),
            lost,
        )

    def _add_values(self, block: _DocumentValues) -> None:
        """Count a block of parsed documents' values [k], as one document at a time would:
        sums run along the documents' order from the running total (``np.bincount`` adds its
        weights in the order given, the running totals first), genes and datasets are numbered
        in the order of their first kept value, ``log1p`` is ``math.log1p``, and a cell's
        values go into the grid in the order given."""
        values = block.values
        kept = np.isfinite(values)
        self.n_nonfinite += int(values.size - kept.sum())
        negative = np.less(values, 0, out=np.zeros(values.size, bool), where=kept)
        self.n_negative += int(negative.sum())
        kept &= ~negative
        if not kept.any():
            return
        self._value_stats(values[kept])
        lost = kept & block.unmatched
        if lost.any():
            self.n_unmatched += int(lost.sum())
            self.unmatched.update(block.bnumbers[c] for c in np.unique(block.gene[lost]).tolist())
        kept &= ~block.unmatched
        if not kept.any():
            return
        gene, dataset = block.gene, block.dataset
        if not kept.all():  # copies only where some value is left out
            gene, dataset, values = gene[kept], dataset[kept], values[kept]
        del kept
        # A float at a time from the array (not from a list of them: 40 bytes a value at the peak).
        logs = np.fromiter(map(math.log1p, values), float, values.size)
        genes, gene_of = _first_seen(gene, block.bnumbers, self.gene_index)
        datasets, dataset_of = _first_seen(dataset, block.datasets, self.dataset_index)
        del gene, dataset
        sums = _running_sums(self.sums, genes, gene_of, logs)
        del logs
        raw_sums = _running_sums(self.raw_sums, genes, gene_of, values)
        counts = np.bincount(gene_of, minlength=len(genes))
        for b, total, raw, n in zip(genes, sums.tolist(), raw_sums.tolist(), counts.tolist(), strict=True):
            self.sums[b], self.raw_sums[b] = total, raw
            self.counts[b] += n
        totals = _running_sums(self.dataset_totals, datasets, dataset_of, values)
        self.dataset_totals.update(zip(datasets, totals.tolist(), strict=True))
        rows = np.asarray([self.gene_index[b] for b in genes])[gene_of]
        del gene_of
        columns = np.asarray([self.dataset_index[d] for d in datasets])[dataset_of]
        del dataset_of
        assert self.grid is not None
        self.grid.put_many(rows, columns, values)

    def add_block(self, block: ExpressionBlock, genes: dict[str, dict[str, Any]]) -> None:
        """Count the documents an expression table's block of rows stands for (a document per
        cell, in row-major order, none with coordinates) as :meth:`add_documents` of them
        would, to the bit, without making the documents.

        Where order matters it is kept: rows are taken in order, sums run a cell at a time
        from the running total (``np.cumsum`` and ``+=`` along the documents' order, not the
        pairwise ``np.sum``), datasets are numbered in the order of their first kept value,
        and ``log1p`` of the per-gene sums is ``math.log1p`` as in ``add_documents`` (numpy's
        may differ in the last bit). A block with samples given twice, or with a gene already
        tallied (its cells could repeat cells of the grid), goes through ``add_documents``
        as its documents. Memory: a few boolean masks of the block beside it."""
        if self.grid is None:
            raise RuntimeError("expression tally: a document added after log_matrix built the matrix")
        bnumbers, samples, values = block.bnumbers, block.samples, block.values
        n_rows, n_cols = len(bnumbers), len(samples)
        if values.shape != (n_rows, n_cols):
            raise ValueError(
                f"expression block of {n_rows} genes x {n_cols} samples holds {values.shape} values"
            )
        if len(set(samples)) < n_cols or any(b in self.gene_index for b in bnumbers):
            self.add_documents(block_documents(block), genes)
            return
        self.n_docs += n_rows * n_cols
        kept = ~np.isnan(values)  # present, then kept
        if block.value_field in self.field_seen:
            self.field_seen[block.value_field] += int(kept.sum())
        if block.value_field != self.value_field:
            kept[:] = False  # every document lacks the field read
        # A document without a b-number is missing and names no dataset.
        named = np.fromiter((bool(b) for b in bnumbers), bool, n_rows)
        kept &= named[:, None]
        self.n_missing += n_rows * n_cols - int(kept.sum())
        empty = ~kept[named].all(axis=0)
        if empty.any():
            self.missing_datasets.update(samples[j] for j in np.flatnonzero(empty))
        with np.errstate(invalid="ignore"):
            bad = kept & ~np.isfinite(values)
            self.n_nonfinite += int(bad.sum())
            kept &= ~bad
            np.less(values, 0, out=bad, where=kept)  # -0.0 is kept, as `value < 0` keeps it
            bad &= kept
        self.n_negative += int(bad.sum())
        kept &= ~bad
        del bad
        column_index = np.asarray([self.dataset_index.get(s, -1) for s in samples], dtype=np.int64)
        totals = np.asarray([self.dataset_totals.get(s, 0.0) for s in samples])
        touched = np.zeros(n_cols, bool)
        assert self.grid is not None
        for i in np.flatnonzero(kept.any(axis=1)):
            b = bnumbers[i]
            cells = np.flatnonzero(kept[i])
            row = values[i, cells]
            self._value_stats(row)
            if b not in genes:
                self.n_unmatched += int(cells.size)
                self.unmatched.add(b)
                continue
            for j in cells[column_index[cells] < 0]:  # new datasets, in the documents' order
                column_index[j] = len(self.dataset_index)
                self.dataset_index[samples[j]] = int(column_index[j])
                self.dataset_totals[samples[j]] = 0.0
            touched[cells] = True
            totals[cells] += row
            logs = np.fromiter(map(math.log1p, row.tolist()), float, cells.size)
            self.sums[b] = float(np.cumsum(np.r_[0.0, logs])[-1])
            self.raw_sums[b] = float(np.cumsum(np.r_[0.0, row])[-1])
            self.counts[b] = int(cells.size)
            self.gene_index[b] = len(self.gene_index)
            self.grid.put_row(column_index[cells], row)
        for j in np.flatnonzero(touched):
            self.dataset_totals[samples[j]] = float(totals[j])
        # The block's arrays, freed between the grid's rows on the C heap, stayed resident
        # (5,000 samples: 10 MB more at the peak than a document per value); returned here at
        # no measurable cost, the peak stays the per-value path's.
        _release_freed_memory()

    def _value_stats(self, values: np.ndarray) -> None:
        """The counts over kept values (finite, not negative; known gene or not) for a run
        of them [k] in the documents' order: non-integer counts, the first distinct values
        (until there are four), the range (the first of equal values stays, as a value at a
        time keeps it: ``argmin`` and ``argmax`` give the first)."""
        if self.value_field == "count":
            self.n_nonint += int((values != np.trunc(values)).sum())
        if len(self.uniq_small) <= 3:
            _, first = np.unique(values, return_index=True)
            for v in values[np.sort(first)].tolist():
                if len(self.uniq_small) > 3:
                    break
                self.uniq_small.add(v)
        low, high = float(values[np.argmin(values)]), float(values[np.argmax(values)])
        if low < self.vmin:
            self.vmin = low
        if high > self.vmax:
            self.vmax = high

    def log_matrix(self) -> tuple[dict[str, int], np.ndarray]:
        """(row of each b-number, log1p values [genes, datasets] float32, NaN = not measured).
        Counts are scaled to counts per million of their dataset first, so that library
        size does not correlate every pair; values given more than once for one gene and
        dataset are averaged (on the log scale, summed in the order given).

        The first call turns the grid of values into the matrix row by row, freeing each
        float64 row as its float32 row is made (peak: 8 bytes per cell, twice the matrix);
        the tally keeps the matrix and takes no more values."""
        if self.matrix is None:
            assert self.grid is not None
            scale = None
            if self.value_field == "count":
                totals = np.zeros(len(self.dataset_index))
                for name, i in self.dataset_index.items():
                    totals[i] = self.dataset_totals[name]
                scale = np.maximum(totals, 1e-12)
            self.matrix = self.grid.to_matrix(len(self.dataset_index), scale)
            self.grid = None
        return self.gene_index, self.matrix

    def warnings(self, n_measured: int, where: str = "the expression") -> list[str]:
        """Warnings for units and ranges that point at the history's failures (``where``: the
        source, named where a message points at one of its columns)."""
        vf = self.value_field
        out: list[str] = []
        if self.uniq_small <= {0.0, 1.0}:
            out.append(f"{vf} values are only 0/1: presence flags, not measurements")
        if vf == "tpm":
            for ds, total in self.dataset_totals.items():
                if not 0.5e6 <= total <= 1.5e6 and n_measured > 1000:
                    out.append(
                        f"dataset {ds}: TPM sums to {total:.3g}, not ~1e6 (values may be FPKM, counts "
                        "or a gene subset)"
                    )
                    break
        if self.vmax < 25 and any(v != int(v) for v in self.uniq_small):
            out.append(
                f"{vf} values span only {self.vmin:.3g}..{self.vmax:.3g}: they may be log-transformed "
                "already (log1p is applied again; for a table set regulon.expression.table_transform, "
                "e.g. log2p1 for log2(TPM + 1) such as PRECISE's log_tpm)"
            )
        if self.vmax > 1e7:
            out.append(f"{vf} maximum {self.vmax:.3g} is implausibly large")
        empty = sorted(self.missing_datasets - set(self.dataset_totals))
        if empty:
            out.append(
                f"{where}: {len(empty)} dataset(s) (samples) have no {vf} value for any gene and are "
                f"left out (e.g. {empty[:3]}; an all-empty/NA sample column?): {len(self.dataset_totals)} "
                "datasets are used"
            )
        if self.n_negative:
            out.append(f"{self.n_negative} negative {vf} values were dropped")
        if self.n_nonfinite:
            out.append(f"{self.n_nonfinite} non-finite {vf} values were dropped")
        if self.n_nonint:
            out.append(f"{self.n_nonint} {vf} values are not integers")
        unmatched = self._unmatched_warning()
        return out + ([unmatched] if unmatched else [])

    def _unmatched_warning(self) -> str | None:
        """What the IDs that match no gene are, where some are: gene names (with one's
        b-number), or b-numbers without coordinates."""
        if self.unmatched_names:
            first = min(self.unmatched_names)
            return (
                f"{len(self.unmatched)} expression gene IDs match no gene, {len(self.unmatched_names)} of "
                f"them gene names (e.g. {first!r} is {self.unmatched_names[first]}): their values are "
                "left out; replace them by the genes' b-numbers (a run's data/genes.tsv lists name "
                "and bnumber)"
            )
        if self.unmatched:
            return (
                f"{len(self.unmatched)} expression b-numbers match no gene and have no coordinates "
                f"(e.g. {sorted(self.unmatched)[:3]})"
            )
        return None


@dataclass
class _OperonTally:
    """What happened to the operon documents (the data report's counts)."""

    n_docs: int = 0
    n_unresolved: int = 0
    n_below_confidence: int = 0
    by_confidence: dict[str, int] = field(default_factory=dict)
    # Operons none of whose members is a gene read (another ID scheme), unlike operons whose
    # genes are known but end beyond the genome; and the first few such members.
    n_unmatched: int = 0
    unresolved_members: list[str] = field(default_factory=list)


def _check_operons_kept(
    where: str, operons: pd.DataFrame, tally: _OperonTally, n_considered: int, min_confidence: str | None
) -> None:
    """``ValueError`` saying why when operons were given but none was kept: every operon target
    would be 0, and the run went on (a warning at most) until the gate failed on that constant
    target, or trained a head on it with diagnostics.strict false. A source without any
    operon document (an expression table alone, through the Python API) passes: the workflow
    refuses a dump or flat files without operons when Snakemake starts."""
    if operons.empty and tally.n_docs:
        raise ValueError(_no_operons(where, tally, n_considered, min_confidence))


def _no_operons(where: str, tally: _OperonTally, n_considered: int, min_confidence: str | None) -> str:
    """Why no operon was kept (see :func:`_check_operons_kept`)."""
    if n_considered == 0:
        why = f"all {tally.n_docs} operons are below regulon.min_confidence {min_confidence!r}"
    elif tally.n_unmatched == n_considered:
        why = (
            f"none of the {n_considered} operons names a gene of the genes read (members e.g. "
            f"{tally.unresolved_members}; matched by gene id, b-number or unique name): another ID "
            "scheme than the genes'? A dump's operon members are geneDatamart ids, so its genes must "
            "come from geneDatamart, not from regulon.annotation alone"
        )
    else:
        why = f"none of the {n_considered} operons has a member among the genes kept on the modelled contig"
    return f"{where}: no operon kept: {why}; every operon target would be 0 (docs/regulon.md)"


def _member_lookup(genes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Gene id, b-number or (unique) name -> b-number: flat files name members either way."""
    names: dict[str, list[str]] = defaultdict(list)
    for b, g in genes.items():
        if g.get("name"):
            names[g["name"]].append(b)
    lookup = {n: bs[0] for n, bs in names.items() if len(bs) == 1}
    lookup.update({b: b for b in genes})
    lookup.update({g["gene_id"]: b for b, g in genes.items()})
    return lookup


def _collect_operons(
    source: Any, genes: dict[str, dict[str, Any]], keep: list[str], min_confidence: str | None = None
) -> tuple[pd.DataFrame, dict[str, str], _OperonTally]:
    """Operons whose member genes (ids, b-numbers or names) resolve to kept b-numbers.

    Operons below ``min_confidence`` (one of CONFIDENCE_LEVELS; ``None`` keeps all, also those
    without a level) are left out and counted. Returns (operons [OPERON_COLUMNS],
    {b-number: operon id}, counts).
    """
    if min_confidence is not None and min_confidence not in CONFIDENCE_LEVELS:
        raise ValueError(
            f"regulon.min_confidence must be one of {CONFIDENCE_LEVELS} or null, not {min_confidence!r}"
        )
    lookup = _member_lookup(genes)
    kept = set(keep)
    operon_rows, gene_operon = [], {}
    tally = _OperonTally()
    iterator = source.iter(OPERON_DATAMART) if source.has(OPERON_DATAMART) else iter(())
    for doc in iterator:
        tally.n_docs += 1
        rec = parse_operon_doc(doc)
        if rec is None:
            continue
        level = rec["confidence"] or "none"
        tally.by_confidence[level] = tally.by_confidence.get(level, 0) + 1
        if min_confidence is not None and confidence_rank(rec["confidence"]) < confidence_rank(
            min_confidence
        ):
            tally.n_below_confidence += 1
            continue
        members = [lookup.get(m, m) for m in rec["members"]]
        missed = [m for m in members if m not in genes]
        members = [m for m in members if m in genes and m in kept]
        if missed and len(missed) == len(rec["members"]):
            tally.n_unmatched += 1
            tally.unresolved_members += missed[: max(0, 5 - len(tally.unresolved_members))]
        if members:
            start = min(genes[m]["start"] for m in members)
            end = max(genes[m]["end"] for m in members)
            strand = rec["strand"] or genes[members[0]]["strand"]
        elif rec["fallback"] is not None and rec["strand"]:
            start, end = rec["fallback"]
            strand = rec["strand"]
            tally.n_unresolved += 1
        else:
            tally.n_unresolved += 1
            continue
        for m in members:
            gene_operon[m] = rec["operon_id"]
        operon_rows.append(
            (rec["operon_id"], rec["name"], strand, start, end, len(members), ",".join(members))
        )
    return pd.DataFrame(operon_rows, columns=OPERON_COLUMNS), gene_operon, tally


def _gene_table(
    genes: dict[str, dict[str, Any]],
    keep: list[str],
    gene_operon: dict[str, str],
    tally: _ExpressionTally,
    norm_fit: Any,
) -> tuple[pd.DataFrame, np.ndarray, Normaliser]:
    """The gene table [GENE_COLUMNS] sorted by position, its log1p means and the fitted normaliser."""
    n_ds = np.asarray([tally.counts.get(b, 0) for b in keep], dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        log_mean = np.where(
            n_ds > 0, np.asarray([tally.sums.get(b, 0.0) for b in keep]) / np.maximum(n_ds, 1), np.nan
        )
        raw_mean = np.where(
            n_ds > 0, np.asarray([tally.raw_sums.get(b, 0.0) for b in keep]) / np.maximum(n_ds, 1), np.nan
        )
    norm = norm_fit(log_mean)
    table = (
        pd.DataFrame(
            {
                "bnumber": np.asarray(keep),
                "gene_id": [genes[b]["gene_id"] for b in keep],
                "name": [genes[b]["name"] for b in keep],
                "start": [genes[b]["start"] for b in keep],
                "end": [genes[b]["end"] for b in keep],
                "strand": [genes[b]["strand"] for b in keep],
                "operon_id": [gene_operon.get(b, "") for b in keep],
                "n_datasets": n_ds,
                "raw_mean": raw_mean,
                "log1p_mean": log_mean,
                "z": norm.transform_log(log_mean),
            },
            columns=GENE_COLUMNS,
        )
        .sort_values(["start", "end", "bnumber"])
        .reset_index(drop=True)
    )
    return table, log_mean, norm


def add_coexpression(table: pd.DataFrame, tally: _ExpressionTally) -> pd.DataFrame:
    """``table`` (sorted by position) with NEXT_COLUMNS: for each gene whose next gene in genome
    order is on the same strand (an adjacent same-strand pair, no gene of either strand
    between: the pairs operon evaluation scores), that gene's b-number, the Fisher z of the
    Pearson correlation of the two genes' log1p expression over the datasets measuring both,
    and their number; empty where there is no such gene, or fewer than
    MIN_COEXPRESSION_DATASETS datasets measure both (then no correlation is given)."""
    out = table.copy()
    n = len(out)
    nxt = np.full(n, "", dtype=object)
    z = np.full(n, np.nan)
    n_both = np.zeros(n, dtype=np.int64)
    # The order of operons.gene_pairs: by start, then end (stable: ties keep the table's order).
    order = out.sort_values(["start", "end"], kind="stable").index.to_numpy()
    rows, matrix = tally.log_matrix()
    strand = out["strand"].to_numpy()
    bnumber = out["bnumber"].astype(str).to_numpy()
    for a, b in zip(order[:-1], order[1:], strict=True):
        if strand[a] != strand[b]:
            continue
        nxt[a] = bnumber[b]
        ra, rb = rows.get(bnumber[a]), rows.get(bnumber[b])
        if ra is None or rb is None:
            continue
        x, y = matrix[ra].astype(np.float64), matrix[rb].astype(np.float64)
        both = np.isfinite(x) & np.isfinite(y)
        n_both[a] = int(both.sum())
        if n_both[a] < MIN_COEXPRESSION_DATASETS:
            continue
        x, y = x[both] - x[both].mean(), y[both] - y[both].mean()
        denom = math.sqrt(float(x @ x) * float(y @ y))
        # A gene constant over the datasets has no correlation to give.
        if denom > 0:
            z[a] = math.atanh(min(max(float(x @ y) / denom, -0.999), 0.999))
    out["next_bnumber"] = nxt
    out["next_coexpression"] = z
    out["next_coexpression_n"] = n_both
    return out


def _no_coexpression_note(table: pd.DataFrame, tally: _ExpressionTally, source: Any) -> str | None:
    """Why no adjacent pair of ``table`` (add_coexpression's output) has a co-expression, for
    the data report and its warning; None when some pair has one or there is no pair."""
    if (
        np.isfinite(table["next_coexpression"].to_numpy(float)).any()
        or not (table["next_bnumber"] != "").any()
    ):
        return None
    n_ds = len(tally.dataset_totals)
    consequence = (
        "the co-expression operon readout and rule take no part and operon_pairs.tsv's coexpression "
        "and p_operon_coexpression stay NA"
    )
    if n_ds < MIN_COEXPRESSION_DATASETS:
        return (
            f"no adjacent gene pair has a co-expression: {source.describe()} has {n_ds} dataset(s) "
            f"(samples) with values, and a pair needs at least {MIN_COEXPRESSION_DATASETS} measuring "
            f"both genes; {consequence} (give regulon.expression.table a gene x sample table with "
            f"{MIN_COEXPRESSION_DATASETS} or more sample columns to use it)"
        )
    most = int(table["next_coexpression_n"].max())
    return (
        f"no adjacent gene pair has a co-expression: of {n_ds} datasets, at most {most} measure both "
        f"genes of a pair (at least {MIN_COEXPRESSION_DATASETS} needed, or a gene is constant); "
        f"{consequence}"
    )


def _coexpression_section(
    table: pd.DataFrame, tally: _ExpressionTally, source: Any, has_expression: bool
) -> dict[str, Any]:
    """The data report's ``coexpression`` counts; ``note`` says why no pair has one (null when
    some do). The note is logged as a warning but kept out of the report's unit/range
    warnings: the demo's two datasets are expected to give none."""
    note = _no_coexpression_note(table, tally, source) if has_expression else None
    if note is not None:
        logger.warning("data report: %s", note)
    return {
        "n_pairs": int((table["next_bnumber"] != "").sum()),
        "n_with_coexpression": int(np.isfinite(table["next_coexpression"].to_numpy(float)).sum()),
        "min_datasets": MIN_COEXPRESSION_DATASETS,
        "note": note,
        "axis": "adjacent same-strand gene pairs; Fisher z of the Pearson correlation of log1p "
        "expression over the datasets measuring both genes",
    }


NO_EXPRESSION = (
    "no expression collection or table: the expression head is not trained and its metrics are skipped"
)


def _finite_range(values: np.ndarray) -> dict[str, float | None]:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return {"min": float(v.min()), "max": float(v.max())} if v.size else {"min": None, "max": None}


def _read_expression(source: Any, value_field: str, genes: dict[str, dict[str, Any]]) -> _ExpressionTally:
    """Tally the expression documents; an absent or empty collection gives an empty tally.

    Expression often comes from elsewhere (PRECISE, GEO), so its absence is reported, not
    fatal; a collection whose documents lack the value field is still an error. A source
    with ``expression_blocks`` (an expression table) is read a block of rows at a time
    (``_ExpressionTally.add_block``: the same tally, without a document per value); a dump's
    or database's documents DOCUMENT_BLOCK at a time (``_ExpressionTally.add_documents``).
    """
    tally = _ExpressionTally(value_field)
    if not source.has(GENE_EXPRESSION):
        return tally
    blocks = getattr(source, "expression_blocks", None)
    if blocks is not None:
        for block in blocks():
            tally.add_block(block, genes)
    else:
        try:
            tally.add_documents(source.iter(GENE_EXPRESSION), genes)
        except ExpressionValueError as err:
            # Only this error lacks the source: the reader's own errors name the dump already.
            raise ValueError(f"{source.describe()}, {GENE_EXPRESSION}: {err}") from None
    # IDs that match no gene but name one: a table keyed by gene names, in whole or in part.
    names = {str(g.get("name")): b for b, g in genes.items() if g.get("name")}
    tally.unmatched_names = {n: names[n] for n in tally.unmatched if n in names}
    if tally.n_docs and not tally.counts and tally.unmatched:
        # Values were read but none is of a known gene: a table keyed by something else
        # (gene names, or transposed: samples as rows), not a missing value field.
        named = sorted(tally.unmatched_names)
        hint = (
            f"; {len(named)} of them are gene names (e.g. {named[0]!r} is {names[named[0]]}): replace "
            "them by the genes' b-numbers (a run's data/genes.tsv lists name and bnumber)"
            if named
            else ""
        )
        raise ValueError(
            f"{source.describe()}: none of the {len(tally.unmatched)} gene IDs of the expression "
            f"({GENE_EXPRESSION}) is a b-number of the genes read (e.g. {sorted(tally.unmatched)[:3]}; "
            f"genes e.g. {sorted(genes)[:3]}); an expression table needs b-numbers in its first "
            f"column and one column per sample (transposed?){hint}"
        )
    if tally.n_docs and not tally.counts:
        raise ValueError(
            f"{source.describe()}: no {GENE_EXPRESSION} document has a usable {value_field!r} "
            f"value (fields present: {tally.field_seen})"
        )
    return tally


def process_data(
    source: Any,
    genome_fasta: str | os.PathLike,
    value_field: str = "tpm",
    annotation: str | os.PathLike | None = None,
    contig: str | None = None,
    min_confidence: str | None = None,
    region: tuple[int, int | None] = (0, None),
) -> tuple[pd.DataFrame, pd.DataFrame, Normaliser, dict[str, Any]]:
    """Parse genes, expression (optional) and operons, join on b-numbers and normalise expression.

    ``source`` is a :class:`Source` (BSON dump or live MongoDB) or a
    :class:`genomelab.regulon.flat.FlatSource`. Returns (genes [n_genes rows, GENE_COLUMNS],
    operons [n_operons rows, OPERON_COLUMNS], the fitted normaliser, the data report).
    ``region`` (start, end or None = contig end; ``regulon.targets`` region_start/region_end):
    the part of the contig the run models, over which the report's coverage (and its warning)
    is computed. Streaming: only per-gene running sums are kept.
    """
    if value_field not in VALUE_FIELDS:
        raise ValueError(f"regulon.expression.value must be one of {VALUE_FIELDS}, not {value_field!r}")
    contig_name, n_bp = genome_length(genome_fasta, contig)
    start, end = int(region[0]), min(int(region[1] or n_bp), n_bp)
    if not 0 <= start < end:
        raise ValueError(
            f"regulon.targets region [{region[0]}, {region[1]}) lies outside {contig_name} ({n_bp} bp)"
        )
    whole = (start, end) == (0, n_bp)
    over = contig_name if whole else f"{contig_name}:{start}-{end} (the regulon.targets region)"

    genes, n_gene_docs, n_gene_bad = _collect_genes(source, annotation, contig_name)
    tally = _read_expression(source, value_field, genes)
    has_expression = bool(tally.counts)

    warnings: list[str] = [] if has_expression else [NO_EXPRESSION]
    no_strand = sorted(b for b, g in genes.items() if g.get("strand") is None)
    if no_strand:
        warnings.append(
            f"{len(no_strand)} genes have no strand (e.g. {no_strand[:3]}) and are dropped; "
            "give regulon.annotation (GFF/GenBank) to place them"
        )
    out_of_range = sorted(b for b, g in genes.items() if g.get("strand") and g["end"] > n_bp)
    if out_of_range:
        warnings.append(
            f"{len(out_of_range)} genes end beyond {contig_name} ({n_bp} bp) and are dropped "
            f"(e.g. {out_of_range[:3]}; genes of another genome or contig?)"
        )
    keep = [b for b, g in genes.items() if g.get("strand") and g["end"] <= n_bp]

    operons, gene_operon, operon_tally = _collect_operons(source, genes, keep, min_confidence)
    n_considered = operon_tally.n_docs - operon_tally.n_below_confidence
    _check_operons_kept(source.describe(), operons, operon_tally, n_considered, min_confidence)
    if operon_tally.n_unmatched and 2 * operon_tally.n_unmatched > n_considered:
        # Most operons name no known gene: members written in another ID scheme than the
        # genes' (the operon target then holds little or nothing; the gate says only that).
        # Operons of known genes beyond the genome are not counted: those genes have their
        # own warning above.
        warnings.append(
            f"{operon_tally.n_unmatched} of {n_considered} operons name no gene of the genes read "
            f"(members e.g. {operon_tally.unresolved_members}; matched by gene id, b-number or unique "
            "name): their members are in another ID scheme than the genes'?"
        )

    def fit_normaliser(log_mean: np.ndarray) -> Normaliser:
        if not has_expression:
            # Identity statistics: nothing to normalise, every z stays NaN (masked).
            return Normaliser(value_field, 0.0, 1.0, 0)
        try:
            return Normaliser.fit(log_mean, value_field)
        except ValueError as exc:
            raise ValueError(
                f"{source.describe()}: {value_field} values cannot be normalised: {exc}"
            ) from exc

    table, log_mean, norm = _gene_table(genes, keep, gene_operon, tally, fit_normaliser)
    table = add_coexpression(table, tally)
    coexpression = _coexpression_section(table, tally, source, has_expression)

    measured = table[table["n_datasets"] > 0]
    region_bp = end - start

    def union_in_region(genes: pd.DataFrame) -> int:
        return _union_length(zip(genes["start"] - start, genes["end"] - start, strict=True), region_bp)

    covered, annotated = union_in_region(measured), union_in_region(table)
    warnings += tally.warnings(len(measured), source.describe()) if has_expression else []
    if has_expression and covered / region_bp < 0.2:
        warnings.append(f"measured gene bodies cover only {covered / region_bp:.1%} of {over}")
    for w in warnings:
        logger.warning("data report: %s", w)
    finite_raw = measured["raw_mean"].to_numpy()
    report = {
        "source": source.describe(),
        "contig": contig_name,
        "genome_bp": n_bp,
        "value_field": value_field,
        "documents": {
            GENE_DATAMART: n_gene_docs,
            GENE_EXPRESSION: tally.n_docs,
            OPERON_DATAMART: operon_tally.n_docs,
        },
        "has_expression": has_expression,
        "fields_present": tally.field_seen,
        "n_datasets": len(tally.dataset_totals),
        "dataset_totals": dict(sorted(tally.dataset_totals.items())[:50]),
        "coexpression": coexpression,
        "n_genes": len(table),
        "n_genes_measured": len(measured),
        "n_genes_dropped_bad_docs": n_gene_bad,
        "n_operons": len(operons),
        "n_operons_unresolved": operon_tally.n_unresolved,
        "min_confidence": min_confidence,
        "n_operons_below_confidence": operon_tally.n_below_confidence,
        "operons_by_confidence": dict(sorted(operon_tally.by_confidence.items())),
        "n_values_missing": tally.n_missing,
        "n_values_negative": tally.n_negative,
        "n_values_nonfinite": tally.n_nonfinite,
        "n_expression_unmatched": tally.n_unmatched,
        "raw_range": {
            "min": tally.vmin if has_expression else None,
            "max": tally.vmax if has_expression else None,
            "median_gene": float(np.median(finite_raw)) if has_expression else None,
            "p99_gene": float(np.quantile(finite_raw, 0.99)) if has_expression else None,
        },
        "log1p_range": _finite_range(log_mean),
        "z_range": _finite_range(table["z"].to_numpy(dtype=float)),
        "coverage": {
            "measured_bp": covered,
            "annotated_bp": annotated,
            "genome_bp": n_bp,
            "region": [start, end],
            "region_bp": region_bp,
            "over": "the genome" if whole else over,
            "measured_fraction": covered / region_bp,
            "annotated_fraction": annotated / region_bp,
            "axis": "union of gene bodies over both strands within the modelled region / its length",
        },
        "normalisation": asdict(norm),
        "warnings": warnings,
    }
    logger.info(
        "processed %d genes (%d measured, %.1f%% of %s), %d operons",
        len(table),
        len(measured),
        100 * covered / region_bp,
        over,
        len(operons),
    )
    return table, operons, norm, report


def write_tables(
    genes: pd.DataFrame, operons: pd.DataFrame, genes_path: str | os.PathLike, operons_path: str | os.PathLike
) -> None:
    with atomic_output(genes_path) as tmp:
        genes.to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    with atomic_output(operons_path) as tmp:
        operons.to_csv(tmp, sep="\t", index=False)


def read_genes(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gene table {path} does not exist")
    df = pd.read_csv(
        path,
        sep="\t",
        dtype={"bnumber": str, "operon_id": str, "name": str, "next_bnumber": str},
        keep_default_na=False,
        na_values={"z": [""], "log1p_mean": [""], "raw_mean": [""], "next_coexpression": [""]},
    )
    missing = sorted(set(GENE_COLUMNS) - set(df.columns))
    if missing:
        raise ValueError(f"gene table {path} lacks columns {missing}")
    return df


def read_operons(path: str | os.PathLike) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"operon table {path} does not exist")
    df = pd.read_csv(
        path, sep="\t", dtype={"operon_id": str, "bnumbers": str, "name": str}, keep_default_na=False
    )
    missing = sorted(set(OPERON_COLUMNS) - set(df.columns))
    if missing:
        raise ValueError(f"operon table {path} lacks columns {missing}")
    return df


def process(
    source: Source,
    genome: str | os.PathLike,
    genes_out: str | os.PathLike,
    operons_out: str | os.PathLike,
    stats_out: str | os.PathLike,
    report_out: str | os.PathLike,
    value_field: str = "tpm",
    annotation: str | os.PathLike | None = None,
    contig: str | None = None,
    min_confidence: str | None = None,
    region: tuple[int, int | None] = (0, None),
) -> dict[str, Any]:
    genes, operons, norm, report = process_data(
        source, genome, value_field, annotation, contig, min_confidence, region
    )
    write_tables(genes, operons, genes_out, operons_out)
    norm.save(stats_out)
    atomic_write_json(report_out, report)
    return report


def source_from_config(cfg: dict[str, Any], dump_dir: str | None) -> Any:
    """The configured source: flat files (``flat_files``), a live MongoDB or a dump folder;
    ``expression.table``, when set, replaces the source's expression collection."""
    from genomelab.regulon.flat import FlatSource, with_expression_table

    flat = cfg.get("flat_files") or {}
    uri_env = cfg.get("mongodb_uri_env")
    expr = cfg.get("expression") or {}
    if flat.get("genes") or flat.get("operons"):
        if uri_env:
            raise ValueError("give one of regulon.flat_files and regulon.mongodb_uri_env, not both")
        return FlatSource(
            flat.get("genes"),
            flat.get("operons"),
            expr.get("table"),
            expr.get("table_transform", "linear"),
            expr.get("value", "tpm"),
        )
    source = Source(
        dump_dir=None if uri_env else dump_dir,
        uri_env=uri_env or None,
        database=cfg["database"],
        max_docs_per_file=cfg["max_docs_per_file"] or None,
    )
    if expr.get("table"):
        return with_expression_table(source, expr["table"], expr["table_transform"], expr["value"])
    return source
