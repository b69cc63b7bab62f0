"""Block tables in the wgbstools/UXM layout: marker BEDs, block-level atlases, per-block U/X/M counts.

Every table starts with the five block columns of wgbstools (``segment``, ``convert -L``)

    chr   start   end   startCpG   endCpG

``start``/``end`` genomic (0-based, end exclusive), ``startCpG``/``endCpG`` CpG numbers of
the genome's CpG index, ``endCpG`` exclusive (a block holds CpGs startCpG..endCpG-1). UXM's
atlases (``Atlas.U25.l4.hg38.tsv``; Loyfer et al. 2023) and marker files add ``target``
(the cell type a marker is for), ``name`` and ``direction`` (``U``: the value is the share
of unmethylated fragments; ``M``: of methylated ones), then one column per cell type.

:func:`read_blocks` reads any of them: a header line (``chr`` or ``#chr`` first) names the
columns and is required for value columns (cell types); a file without one is read as
blocks, optionally followed by ``target``, ``name``, ``direction``. Values are fractions in
[0, 1] (``NA``/empty = unknown). Errors are :class:`FormatError` naming file and line.

:func:`write_block_counts` / :func:`read_block_counts`: one sample's fragments per block,
classified U (unmethylated), X (mixed), M (methylated): the block columns, ``name``, then
``U X M`` (the counts of wgbstools ``homog``, plus the name and a header).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from genomelab.io.atomic import atomic_write_text
from genomelab.io.errors import FormatError
from genomelab.io.streams import existing_file, open_text

BLOCK_COLUMNS = ("chr", "start", "end", "startCpG", "endCpG")
INFO_COLUMNS = ("target", "name", "direction")
COUNT_COLUMNS = ("U", "X", "M")
DIRECTIONS = ("U", "M")
_MISSING = {"", "NA", "NaN", "nan", "."}


@dataclass
class BlockTable:
    """Blocks [B] with optional per-cell-type values.

    ``chrom`` str, ``start``/``end``/``start_cpg``/``end_cpg`` int64, ``name`` str (the
    ``name`` column, else ``chr:start-end``), ``target`` str ('' when absent), ``direction``
    str (``U`` when absent), ``values`` float64 [B, T] (NaN = unknown) over ``columns`` [T].
    """

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    start_cpg: np.ndarray
    end_cpg: np.ndarray
    name: np.ndarray
    target: np.ndarray
    direction: np.ndarray
    values: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    columns: list[str] = field(default_factory=list)
    source: str = ""

    def __len__(self) -> int:
        return len(self.chrom)

    @property
    def n_cpgs(self) -> np.ndarray:
        """CpGs per block, int64 [B]."""
        return self.end_cpg - self.start_cpg

    def subset(self, rows: np.ndarray) -> BlockTable:
        vals = self.values[rows] if self.values.size else self.values
        return BlockTable(
            self.chrom[rows],
            self.start[rows],
            self.end[rows],
            self.start_cpg[rows],
            self.end_cpg[rows],
            self.name[rows],
            self.target[rows],
            self.direction[rows],
            vals,
            list(self.columns),
            self.source,
        )


def _header(first: list[str]) -> list[str] | None:
    names = [first[0].lstrip("#"), *first[1:]]
    return names if names[0].lower() in ("chr", "chrom") else None


def _int(text: str, what: str, path: Path, line: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise FormatError(path, f"{what} must be an integer, got {text!r}", line) from None


def _check_block(fields: list[str], path: Path, line: int) -> tuple[int, int, int, int]:
    start, end = _int(fields[1], "start", path, line), _int(fields[2], "end", path, line)
    s_cpg, e_cpg = _int(fields[3], "startCpG", path, line), _int(fields[4], "endCpG", path, line)
    if start < 0 or end <= start:
        raise FormatError(path, f"start {start} and end {end}: need 0 <= start < end", line)
    if s_cpg < 1 or e_cpg <= s_cpg:
        raise FormatError(
            path,
            f"startCpG {s_cpg} and endCpG {e_cpg}: need 1 <= startCpG < endCpG (endCpG is exclusive)",
            line,
        )
    return start, end, s_cpg, e_cpg


def _value(text: str, column: str, path: Path, line: int) -> float:
    if text.strip() in _MISSING:
        return np.nan
    try:
        v = float(text)
    except ValueError:
        raise FormatError(path, f"value {text!r} of {column!r} is not a number", line) from None
    if not 0 <= v <= 1:
        raise FormatError(
            path, f"value {v} of {column!r} is outside [0, 1] (fractions of fragments, not percentages)", line
        )
    return v


def _layout(
    path: Path, header: list[str] | None, n_fields: int, line: int
) -> tuple[dict[str, int], list[int]]:
    """Column positions of the info columns and the value columns."""
    if header is None:
        info = {c: 5 + i for i, c in enumerate(INFO_COLUMNS) if 5 + i < n_fields}
        if n_fields > 8:
            raise FormatError(
                path,
                f"{n_fields} columns but no header line: cell-type columns need one "
                f"({chr(9).join(BLOCK_COLUMNS + INFO_COLUMNS)}\t<cell types>)",
                line,
            )
        return info, []
    got = [h.strip() for h in header[:5]]
    if [g.lower() for g in got] != [c.lower() for c in BLOCK_COLUMNS] and got[0].lower() != "chrom":
        raise FormatError(path, f"the header must start with {', '.join(BLOCK_COLUMNS)}; got {got}", 1)
    info = {c: header.index(c) for c in INFO_COLUMNS if c in header}
    values = [i for i in range(5, len(header)) if i not in info.values()]
    dup = sorted({header[i] for i in values if [header[j] for j in values].count(header[i]) > 1})
    if dup:
        raise FormatError(path, f"cell-type column(s) {dup} appear more than once", 1)
    return info, values


def _count(text: str, column: str, path: Path, line: int) -> float:
    v = _int(text, f"count {column}", path, line)
    if v < 0:
        raise FormatError(path, f"negative {column} count {v}", line)
    return float(v)


def read_blocks(
    path: str | os.PathLike, what: str = "block table", need_values: bool = False, counts: bool = False
) -> BlockTable:
    """Read a marker BED, block file or block-level atlas (module docstring).

    ``counts``: value columns hold non-negative integer counts, not fractions.
    """
    path = existing_file(path, what)
    with open_text(path) as fh:
        rows = [(n, text.rstrip("\r\n").split("\t")) for n, text in enumerate(fh, start=1) if text.strip()]
    if not rows:
        raise FormatError(path, f"empty {what}")
    header = _header(rows[0][1])
    if header is not None:
        rows = rows[1:]
    n_fields = len(header) if header is not None else len(rows[0][1]) if rows else 0
    info, value_cols = _layout(path, header, n_fields, rows[0][0] if rows else 1)
    if need_values and not value_cols:
        raise FormatError(
            path, f"no cell-type columns: a {what} needs a header naming them after the block columns"
        )
    if not rows:
        raise FormatError(path, f"{what} has a header but no rows")
    coords = np.zeros((len(rows), 4), dtype=np.int64)
    text: dict[str, list[str]] = {c: [] for c in ("chr", *INFO_COLUMNS)}
    # Value columns exist only under a header (_layout), which names them.
    column_names = header if header is not None else [""] * n_fields
    values = np.full((len(rows), len(value_cols)), np.nan)
    for k, (line, fields) in enumerate(rows):
        if len(fields) != n_fields:
            raise FormatError(path, f"expected {n_fields} tab-separated fields, got {len(fields)}", line)
        coords[k] = _check_block(fields, path, line)
        text["chr"].append(fields[0])
        for col in INFO_COLUMNS:
            text[col].append(fields[info[col]].strip() if col in info else "")
        if text["direction"][-1] and text["direction"][-1] not in DIRECTIONS:
            raise FormatError(path, f"direction must be U or M, got {text['direction'][-1]!r}", line)
        for j, i in enumerate(value_cols):
            values[k, j] = (_count if counts else _value)(fields[i], column_names[i], path, line)
    names = [
        n or f"{c}:{s}-{e}"
        for n, c, s, e in zip(text["name"], text["chr"], coords[:, 0], coords[:, 1], strict=True)
    ]
    dup = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) < len(names) else []
    if dup:
        line = rows[[i for i, n in enumerate(names) if n == dup[0]][1]][0]
        raise FormatError(path, f"block {dup[0]!r} listed twice ({len(dup)} duplicated name(s))", line)
    return BlockTable(
        np.asarray(text["chr"], dtype=str),
        coords[:, 0],
        coords[:, 1],
        coords[:, 2],
        coords[:, 3],
        np.asarray(names, dtype=str),
        np.asarray(text["target"], dtype=str),
        np.asarray([d or "U" for d in text["direction"]], dtype=str),
        values,
        [header[i] for i in value_cols] if header is not None else [],
        str(path),
    )


def write_block_counts(path: str | os.PathLike, blocks: BlockTable, counts: np.ndarray) -> None:
    """One sample's U/X/M fragment counts per block, ``counts`` int [B, 3], as a TSV."""
    counts = np.asarray(counts)
    if counts.shape != (len(blocks), 3):
        raise ValueError(f"counts {counts.shape} must be [{len(blocks)}, 3] (U, X, M per block)")
    lines = ["#" + "\t".join((*BLOCK_COLUMNS, "name", *COUNT_COLUMNS))]
    for i in range(len(blocks)):
        lines.append(
            f"{blocks.chrom[i]}\t{blocks.start[i]}\t{blocks.end[i]}\t{blocks.start_cpg[i]}\t"
            f"{blocks.end_cpg[i]}\t{blocks.name[i]}\t{counts[i, 0]}\t{counts[i, 1]}\t{counts[i, 2]}"
        )
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_block_counts(path: str | os.PathLike) -> tuple[BlockTable, np.ndarray]:
    """The blocks and their U/X/M counts int64 [B, 3] of :func:`write_block_counts`."""
    path = existing_file(path, "block counts file")
    table = read_blocks(path, "block counts file", need_values=True, counts=True)
    if table.columns != list(COUNT_COLUMNS):
        raise FormatError(
            path, f"expected columns {', '.join(COUNT_COLUMNS)} after the blocks, got {table.columns}", 1
        )
    return table, table.values.astype(np.int64)
