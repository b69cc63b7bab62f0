"""wgbstools ``.pat`` / ``.pat.gz`` read patterns: a streaming reader that names file and line.

The format (wgbstools ``docs/pat_format.md``): tab-separated, >= 4 columns

    chrom   first CpG number (1-based, in the genome's CpG index)   pattern   count

one character per consecutive CpG from the first: ``C`` methylated, ``T`` unmethylated,
``H`` hydroxymethylated (modification-aware sequencing), ``.`` unknown; ``count`` reads
share the line. Files are bgzipped (gzip-compatible) and sorted by CpG number, so each
chromosome is one block of lines. Extra columns are ignored.

:func:`read_pat` yields :class:`PatChunk` per chromosome block of a chunk of lines. Raises
:class:`FormatError` naming file and line for: fewer than 4 fields, a non-integer CpG number
or count, a number or count < 1, other pattern characters, a chromosome that reappears,
CpG numbers going down within a chromosome.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genomelab.io.atomic import atomic_output, atomic_write_text
from genomelab.io.errors import FormatError
from genomelab.io.streams import compressed_errors, existing_file, is_gzip, open_text

PAT_CHARS = "CTH."
METHYLATED = b"CH"
UNMETHYLATED = b"T"


@dataclass
class PatChunk:
    """Lines of one chromosome: ``start`` int64 [n] first CpG number, ``patterns`` object [n]
    (str), ``counts`` int64 [n], ``line`` int64 [n] 1-based line numbers."""

    chrom: str
    start: np.ndarray
    patterns: np.ndarray
    counts: np.ndarray
    line: np.ndarray

    def calls(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The known calls of every line, in line order.

        Returns ``(row int64 [m] (line within the chunk), idx int64 [m] CpG number,
        methylated bool [m])``; ``.`` positions are left out.
        """
        lengths = np.fromiter((len(p) for p in self.patterns), dtype=np.int64, count=len(self.patterns))
        chars = np.frombuffer("".join(self.patterns.tolist()).encode("ascii"), dtype=np.uint8)
        row = np.repeat(np.arange(len(lengths)), lengths)
        within = np.arange(len(chars)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        idx = np.repeat(self.start, lengths) + within
        known = chars != ord(".")
        meth = np.isin(chars, np.frombuffer(METHYLATED, dtype=np.uint8))
        return row[known], idx[known], meth[known]


def _check_line(fields: list[str]) -> str | None:
    if len(fields) < 4:
        return f"expected >= 4 tab-separated fields (chrom, CpG number, pattern, count), got {len(fields)}"
    if not (fields[1].isdigit() and fields[3].isdigit()):
        return "CpG number and count must be positive integers"
    if int(fields[1]) < 1 or int(fields[3]) < 1:
        return "CpG number and count must be >= 1"
    if not fields[2] or set(fields[2]) - set(PAT_CHARS):
        return f"pattern must consist of {', '.join(PAT_CHARS)}; got {fields[2][:50]!r}"
    return None


def _first_bad_line(path: Path) -> tuple[int, str] | None:
    with open_text(path) as fh:
        for n, text in enumerate(fh, start=1):
            reason = _check_line(text.rstrip("\r\n").split("\t"))
            if reason:
                return n, reason
    return None


class _Order:
    """Chromosomes in one block each, CpG numbers not decreasing within a chromosome."""

    def __init__(self, path: Path) -> None:
        self.path, self.last = path, 0
        self.seen: list[str] = []

    def __call__(self, chrom: str, start: np.ndarray, line: np.ndarray) -> None:
        if not self.seen or self.seen[-1] != chrom:
            if chrom in self.seen:
                raise FormatError(
                    self.path,
                    f"chromosome {chrom} appears again after {self.seen[-1]}; a pat file is sorted "
                    "by CpG number (sort -k2,2n -k3,3) and holds each chromosome once",
                    int(line[0]),
                )
            self.seen.append(chrom)
            self.last = 0
        prev = np.concatenate([[self.last], start[:-1]])
        down = np.flatnonzero(start < prev)
        if down.size:
            i = int(down[0])
            raise FormatError(
                self.path,
                f"CpG number {start[i]} on {chrom} comes after {prev[i]}; a pat file is sorted by "
                "CpG number (sort -k2,2n -k3,3)",
                int(line[i]),
            )
        self.last = int(start[-1])


def read_pat(path: str | os.PathLike, chunk_lines: int = 1_000_000) -> Iterator[PatChunk]:
    """Stream a ``.pat``/``.pat.gz`` file ``chunk_lines`` lines at a time (see module docstring)."""
    path = existing_file(path, "pat file")
    order = _Order(path)
    line = 1
    try:
        reader = pd.read_csv(
            path,
            sep="\t",
            header=None,
            usecols=[0, 1, 2, 3],
            dtype={0: "category", 1: np.int64, 2: str, 3: np.int64},
            chunksize=chunk_lines,
            compression="gzip" if is_gzip(path) else None,
            na_filter=True,
        )
        with reader, compressed_errors(path):
            for chunk in reader:
                lines = np.arange(line, line + len(chunk))
                line += len(chunk)
                yield from _chunk_blocks(path, chunk, lines, order)
    except (ValueError, pd.errors.ParserError, TypeError) as exc:
        if isinstance(exc, FormatError):
            raise
        found = _first_bad_line(path)
        if found:
            raise FormatError(path, f"{found[1]} (not a wgbstools pat line)", found[0]) from exc
        raise FormatError(path, f"cannot be read as a wgbstools pat file: {exc}") from exc


def _chunk_blocks(path: Path, chunk: pd.DataFrame, lines: np.ndarray, order: _Order) -> Iterator[PatChunk]:
    if chunk.isna().to_numpy().any():
        raise ValueError("missing fields")
    start, counts = chunk[1].to_numpy(), chunk[3].to_numpy()
    patterns = chunk[2].to_numpy(dtype=object)
    bad = ~chunk[2].str.fullmatch(r"[CTH.]+").to_numpy(dtype=bool) | (start < 1) | (counts < 1)
    if bad.any():
        raise ValueError("bad pattern, CpG number or count")
    codes = chunk[0].cat.codes.to_numpy()
    names = chunk[0].cat.categories
    bounds = np.concatenate([[0], np.flatnonzero(codes[1:] != codes[:-1]) + 1, [len(codes)]])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        chrom = str(names[codes[a]])
        order(chrom, start[a:b], lines[a:b])
        yield PatChunk(chrom, start[a:b], patterns[a:b], counts[a:b], lines[a:b])


def write_pat(path: str | os.PathLike, rows: list[tuple[str, int, str, int]]) -> None:
    """Write ``(chrom, first CpG number, pattern, count)`` rows (gzip when ``path`` ends in .gz).

    For tests and examples; rows are written in the order given.
    """
    text = "".join(f"{c}\t{s}\t{p}\t{n}\n" for c, s, p, n in rows)
    if not str(path).endswith(".gz"):
        atomic_write_text(path, text)
        return
    with atomic_output(path) as tmp, gzip.open(tmp, "wt") as fh:
        fh.write(text)
