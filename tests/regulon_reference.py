"""The regulon data step's expression tally one document at a time: the reference that the
batched tally (``_ExpressionTally.add_documents`` and ``add_block``) must equal to the bit.

This is ``_ExpressionTally.add`` and ``_ValueGrid.put`` as the data step ran them until
round 22, when a dump's and a database's documents were still tallied one call per value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from genomelab.regulon.data import VALUE_FIELDS, _coords, _ExpressionTally, parse_expression_doc


def _put(grid: Any, row: int, column: int, value: float) -> None:
    """``_ValueGrid.put``: one value into its cell, a repeated cell's further values aside."""
    grid.n_columns = max(grid.n_columns, column + 1)
    if row == len(grid.rows):
        grid.rows.append(np.full(max(grid.n_columns, 8), np.nan))
    cells = grid.rows[row]
    if column >= cells.size:
        wider = np.full(max(grid.n_columns, cells.size + cells.size // 4), np.nan)
        wider[: cells.size] = cells
        grid.rows[row] = cells = wider
    if math.isnan(cells[column]):
        cells[column] = value
    else:
        grid.repeats.setdefault(row, {}).setdefault(column, []).append(value)


def add_document(tally: _ExpressionTally, doc: dict[str, Any], genes: dict[str, dict[str, Any]]) -> None:
    """Count one expression document into ``tally``; adds a gene to ``genes`` from the
    document's own coordinates (``_ExpressionTally.add`` before round 22)."""
    if tally.grid is None:
        raise RuntimeError("expression tally: a document added after log_matrix built the matrix")
    tally.n_docs += 1
    for f in VALUE_FIELDS:
        tally.field_seen[f] += doc.get(f) is not None
    parsed = parse_expression_doc(doc, tally.value_field)
    if parsed is None or parsed[2] is None:
        tally.n_missing += 1
        if parsed is not None:
            tally.missing_datasets.add(parsed[0])
        return
    dataset, bnumber, value, gene_sub = parsed
    if not math.isfinite(value):
        tally.n_nonfinite += 1
        return
    if value < 0:
        tally.n_negative += 1
        return
    if tally.value_field == "count" and value != int(value):
        tally.n_nonint += 1
    if len(tally.uniq_small) <= 3:
        tally.uniq_small.add(value)
    tally.vmin, tally.vmax = min(tally.vmin, value), max(tally.vmax, value)
    if bnumber not in genes:
        coords = _coords(gene_sub)
        if coords is None:
            tally.n_unmatched += 1
            tally.unmatched.add(bnumber)
            return
        genes[bnumber] = {
            "bnumber": bnumber,
            "gene_id": str(gene_sub.get("_id") or bnumber),
            "name": str(gene_sub.get("name") or ""),
            "start": coords[0],
            "end": coords[1],
            "strand": None,
        }
    tally.sums[bnumber] += math.log1p(value)
    tally.raw_sums[bnumber] += value
    tally.counts[bnumber] += 1
    tally.dataset_totals[dataset] += value
    _put(
        tally.grid,
        tally.gene_index.setdefault(bnumber, len(tally.gene_index)),
        tally.dataset_index.setdefault(dataset, len(tally.dataset_index)),
        value,
    )


def add_documents_one_at_a_time(
    tally: _ExpressionTally,
    docs: Iterable[dict[str, Any]],
    genes: dict[str, dict[str, Any]],
    block_docs: int | None = None,
) -> None:
    """``_ExpressionTally.add_documents`` as it was: :func:`add_document` of each document
    (``block_docs`` is not used); patched in to run the data step as before."""
    for doc in docs:
        add_document(tally, doc, genes)


def tally_state(tally: _ExpressionTally) -> dict[str, Any]:
    """Everything ``tally`` holds, its matrix made, as exact values (floats by their bits
    or repr, sets sorted, dicts as their items in order), and its grid before the matrix
    replaces it: each row's cells as bits (however wide the row was made) and each repeated
    cell's further values in the order kept."""
    grid = tally.grid
    assert grid is not None
    width = grid.n_columns
    cells = [
        np.r_[row[:width], np.full(max(0, width - row.size), np.nan)].view(np.int64).tolist()
        for row in grid.rows
    ]
    repeats = sorted((i, sorted(by_column.items())) for i, by_column in grid.repeats.items())
    rows, matrix = tally.log_matrix()
    state = {
        k: v
        for k, v in vars(tally).items()
        if k not in ("grid", "matrix", "unmatched", "missing_datasets", "uniq_small")
    }
    state = {k: list(v.items()) if isinstance(v, dict) else v for k, v in state.items()}
    return state | {
        "unmatched": sorted(tally.unmatched),
        "missing_datasets": sorted(tally.missing_datasets),
        "uniq_small": sorted(tally.uniq_small),
        "vmin": repr(tally.vmin),
        "vmax": repr(tally.vmax),
        "rows": list(rows.items()),
        "matrix": (matrix.shape, matrix.view(np.int32).tolist()),
        "grid": (width, cells, repeats),
    }
