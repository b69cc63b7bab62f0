"""RegulonDB flat files / datamarts and expression matrices as a collection source.

:class:`FlatSource` yields documents in the shapes of the MongoDB collections
(``geneDatamart``, ``operonDatamart``, ``geneExpression``), built from the records of
:mod:`genomelab.io.regulondb_flat` and from any gene x sample expression table, so that every
parser downstream (``regulon.data``) is shared by the BSON, live-MongoDB and flat-file paths
and the same content gives the same targets whichever way it came in.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from genomelab.io.errors import FormatError
from genomelab.io.regulondb_flat import read_flat
from genomelab.io.streams import compressed_errors
from genomelab.regulon.bsonio import GENE_DATAMART, GENE_EXPRESSION, OPERON_DATAMART

logger = logging.getLogger(__name__)

# How the numbers of an expression table relate to linear values (TPM, FPKM or counts).
# PRECISE's log_tpm.csv holds log2(TPM + 1).
TABLE_TRANSFORMS = ("linear", "log2p1", "log1p", "log10p1")
_STRAND_WORDS = {"+": "forward", "-": "reverse"}


def to_linear(values: np.ndarray, transform: str) -> np.ndarray:
    """Table values -> linear values (the processing step applies its own ``log1p``)."""
    v = np.asarray(values, dtype=float)
    if transform == "linear":
        return v
    if transform == "log2p1":
        return np.exp2(v) - 1.0
    if transform == "log1p":
        return np.expm1(v)
    if transform == "log10p1":
        return np.power(10.0, v) - 1.0
    raise ValueError(
        f"regulon.expression.table_transform must be one of {TABLE_TRANSFORMS}, not {transform!r}"
    )


# Cells per chunk of an expression table read as documents (about 2 MB of float64): a
# compendium of thousands of samples is never held whole beside the values it becomes.
CHUNK_CELLS = 1 << 18


def iter_expression_table(path: str | os.PathLike) -> Iterator[pd.DataFrame]:
    """A gene x sample matrix (CSV or TSV, gzip allowed: first column gene b-numbers, header
    samples) in chunks of rows: float frames [rows, n_samples] indexed by b-number, about
    CHUNK_CELLS cells each; empty cells are NaN.

    Every check of :func:`read_expression_table` is made, naming the file and line, when
    the chunk holding the line is read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expression table {path} does not exist")
    name = path.name.lower().removesuffix(".gz")
    sep = "\t" if name.endswith((".tsv", ".txt", ".tab")) else ","
    with compressed_errors(path):
        n_columns = len(pd.read_csv(path, sep=sep, index_col=0, nrows=0, compression="infer").columns)
        first_line: dict[str, int] = {}  # gene -> its line
        n_rows = 0
        rows_per_chunk = max(1, CHUNK_CELLS // max(n_columns, 1))
        with pd.read_csv(
            path, sep=sep, index_col=0, comment=None, compression="infer", chunksize=rows_per_chunk
        ) as chunks:
            for chunk in chunks:
                if chunk.shape[1] == 0 or len(chunk) == 0:
                    break
                yield _checked_chunk(path, chunk, n_rows, first_line)
                n_rows += len(chunk)
    if n_columns == 0 or n_rows == 0:
        raise FormatError(path, "expression table has no sample columns or no gene rows")


def _checked_chunk(path: Path, chunk: pd.DataFrame, offset: int, first_line: dict[str, int]) -> pd.DataFrame:
    """``chunk`` (rows ``offset`` on of the table) as floats indexed by b-number, after the
    checks that name a line: a value that is not a number, a gene given twice (``first_line``
    remembers the lines of the genes read so far)."""
    bad_cols = [c for c, dtype in chunk.dtypes.items() if not pd.api.types.is_numeric_dtype(dtype)]
    if bad_cols:
        col = bad_cols[0]
        row = int(np.flatnonzero(pd.to_numeric(chunk[col], errors="coerce").isna() & chunk[col].notna())[0])
        raise FormatError(
            path, f"sample {col!r}: value {chunk[col].iloc[row]!r} is not a number", offset + row + 2
        )
    chunk.index = chunk.index.astype(str)
    for row, gene in enumerate(chunk.index):
        first = first_line.setdefault(gene, offset + row + 2)
        if first != offset + row + 2:
            raise FormatError(
                path,
                f"gene {gene!r} appears twice (first on line {first}): the table needs one row per "
                "gene (average or drop the repeats, e.g. probes or isoforms of one gene)",
                offset + row + 2,
            )
    # One float block for the whole chunk: DataFrame.astype works a column at a time (at
    # 5,000 samples, half the step's time went to its per-column overhead).
    return pd.DataFrame(chunk.to_numpy(dtype=float), index=chunk.index, columns=chunk.columns)


def read_expression_table(path: str | os.PathLike) -> pd.DataFrame:
    """A gene x sample matrix (CSV or TSV, gzip allowed): first column gene b-numbers, header samples.

    Returns a float frame [n_genes, n_samples] indexed by b-number; empty cells are NaN.
    The data step reads tables by :func:`iter_expression_table` instead, a chunk at a time.
    """
    return pd.concat(list(iter_expression_table(path)))


def _gene_doc(rec: dict[str, Any]) -> dict[str, Any]:
    gid = rec["gene_id"] or rec["bnumber"] or rec["name"]
    return {
        "_id": gid,
        "gene": {
            "id": gid,
            "bnumber": rec["bnumber"],
            "name": rec["name"],
            "leftEndPosition": rec["left"],
            "rightEndPosition": rec["right"],
            "strand": _STRAND_WORDS.get(rec["strand"]),
            "confidenceLevel": rec["confidence"],
        },
    }


def _operon_doc(rec: dict[str, Any]) -> dict[str, Any]:
    oid = rec["operon_id"] or rec["name"]
    positions = (
        {"leftEndPosition": rec["left"], "rightEndPosition": rec["right"]}
        if rec["left"] is not None and rec["right"] is not None
        else {}
    )
    return {
        "_id": oid,
        "operon": {
            "id": oid,
            "name": rec["name"],
            "strand": _STRAND_WORDS.get(rec["strand"]),
            "regulationPositions": positions,
            "confidenceLevel": rec["confidence"],
        },
        # Flat files list member genes by name or b-number; data.py resolves both.
        "transcriptionUnits": [{"genes": [{"id": g} for g in rec["genes"]]}],
    }


class ExpressionBlock(NamedTuple):
    """Rows of an expression table as one block, for ``regulon.data``'s tally to take whole.

    Stands for the documents ``{"datasetIds": [sample], "gene": {"bnumber": b}, value_field:
    value or None}`` of its cells in row-major order (what :meth:`FlatSource.iter` yields for
    ``geneExpression``), without making one: a 5,000-sample compendium is 23 million cells.
    """

    bnumbers: list[str]  # [rows]
    samples: list[str]  # [columns]
    values: np.ndarray  # [rows, columns] float64 linear values, NaN = empty cell
    value_field: str  # the documents' value key


class FlatSource:
    """Collections from RegulonDB flat files or datamarts and an optional expression table.

    ``genes``: a gene/product file (GeneProductSet, 12.x gene datamart); ``operons``: an
    operon file (OperonSet); either may be ``None`` (genes can come from an annotation).
    ``expression``: a gene x sample table whose values relate to linear ones by ``transform``.
    """

    def __init__(
        self,
        genes: str | os.PathLike | None = None,
        operons: str | os.PathLike | None = None,
        expression: str | os.PathLike | None = None,
        transform: str = "linear",
        value_field: str = "tpm",
    ) -> None:
        if transform not in TABLE_TRANSFORMS:
            raise ValueError(
                f"regulon.expression.table_transform must be one of {TABLE_TRANSFORMS}, not {transform!r}"
            )
        self.files = {GENE_DATAMART: genes, OPERON_DATAMART: operons}
        self.expression = expression
        self.transform = transform
        self.value_field = value_field

    def has(self, collection: str) -> bool:
        if collection == GENE_EXPRESSION:
            return self.expression is not None
        return self.files.get(collection) is not None

    def iter(self, collection: str) -> Iterator[dict[str, Any]]:
        if collection == GENE_EXPRESSION:
            return self._expression_docs()
        path = self.files.get(collection)
        if path is None:
            return iter(())
        kind = "genes" if collection == GENE_DATAMART else "operons"
        table = read_flat(path)
        if table.kind != kind:
            raise FormatError(path, f"is a RegulonDB {table.kind} file, not the {kind} file given")
        logger.info("%s: %d %s records (%s layout)", path, len(table), kind, table.layout)
        build = _gene_doc if kind == "genes" else _operon_doc
        return (build(r) for r in table.records)

    def expression_blocks(self) -> Iterator[ExpressionBlock]:
        """The expression table a chunk of rows at a time (about CHUNK_CELLS cells each), as
        blocks of linear values: what ``regulon.data`` reads instead of a document per cell."""
        if self.expression is None:
            return
        for chunk in iter_expression_table(self.expression):
            yield ExpressionBlock(
                [str(b) for b in chunk.index],
                [str(c) for c in chunk.columns],
                to_linear(chunk.to_numpy(), self.transform),
                self.value_field,
            )

    def _expression_docs(self) -> Iterator[dict[str, Any]]:
        for block in self.expression_blocks():
            yield from block_documents(block)

    def describe(self) -> str:
        parts = [str(p) for p in self.files.values() if p is not None]
        if self.expression is not None:
            parts.append(f"{self.expression} ({self.transform})")
        return "flat files " + ", ".join(parts)


def block_documents(block: ExpressionBlock) -> Iterator[dict[str, Any]]:
    """The ``geneExpression`` documents a block stands for, one per cell in row-major order."""
    for i, bnumber in enumerate(block.bnumbers):
        for j, sample in enumerate(block.samples):
            v = float(block.values[i, j])
            yield {
                "_id": f"{sample},{bnumber}",
                "datasetIds": [sample],
                "gene": {"bnumber": bnumber},
                block.value_field: None if math.isnan(v) else v,
            }


class _ExpressionFrom:
    """A source whose expression collection comes from a table instead."""

    def __init__(self, source: Any, table: FlatSource) -> None:
        self.source = source
        self.table = table

    def has(self, collection: str) -> bool:
        return True if collection == GENE_EXPRESSION else self.source.has(collection)

    def iter(self, collection: str) -> Iterator[dict[str, Any]]:
        return self.table.iter(collection) if collection == GENE_EXPRESSION else self.source.iter(collection)

    def expression_blocks(self) -> Iterator[ExpressionBlock]:
        return self.table.expression_blocks()

    def describe(self) -> str:
        return f"{self.source.describe()} + expression {self.table.expression}"


def with_expression_table(source: Any, table: str | os.PathLike, transform: str, value_field: str) -> Any:
    """``source`` with its expression collection replaced by a gene x sample table."""
    return _ExpressionFrom(source, FlatSource(expression=table, transform=transform, value_field=value_field))
