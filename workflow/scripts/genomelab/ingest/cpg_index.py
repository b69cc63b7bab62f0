"""The reference CpG index (wgbstools ``CpG.bed.gz``): made from a genome FASTA, and read
restricted to the regions.

wgbstools numbers every CpG of a genome 1..N in genome order; ``.pat.gz`` and ``.beta``
files address CpGs by that number. The index file has one line per CpG: chrom, 1-based
position of the C, index. Streaming it once per run (rule ``ingest_cpg_index``) keeps only
CpGs inside the regions, with their region, their rank inside the region (the slot in
``cpg`` mode) and their position slot, so sample jobs never hold the genome-wide index.

Saved NPZ arrays: ``chroms`` str [n_chrom]; per in-region CpG (sorted by index):
``chrom_code`` int32, ``pos`` int64 (0-based), ``idx`` int64, ``region`` int64, ``rank``
int32; per chromosome ``first_idx``/``last_idx`` int64; ``n_cpgs`` (genome-wide count).

:func:`write_cpg_bed` makes the index itself from a genome FASTA, offline, as wgbstools
``init_genome`` lays it out (its documentation and ``init_genome.py``): every ``CG`` of the
upper-cased sequence, the 1-based position of its C, numbered 1..N over the chromosomes; by
default only primary chromosomes (``chr1``..``chr22``-like numbers, X, Y, M/MT, with or
without ``chr``) in the order 1, 2, ..., 10, ..., X, Y, M. One record is in memory at a time
(plus the CpG positions found so far: 4 bytes per CpG, ~110 MB for a human genome).
:func:`cpg_positions_in_ranges` reads back the positions of the CpGs with given numbers (the
blocks of a marker file), for BAM reads that carry positions, not CpG numbers.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomelab.ingest.regions import Regions, load_regions
from genomelab.io.atomic import atomic_output
from genomelab.io.errors import FormatError
from genomelab.io.fasta import read_fasta

logger = logging.getLogger(__name__)


@dataclass
class CpgIndex:
    """In-region CpGs of a reference index (see module docstring)."""

    chroms: np.ndarray
    chrom_code: np.ndarray
    pos: np.ndarray
    idx: np.ndarray
    region: np.ndarray
    rank: np.ndarray
    first_idx: np.ndarray
    last_idx: np.ndarray
    n_cpgs: int
    source: str

    def slots(self, regions: Regions, mode: str) -> np.ndarray:
        """Slot of every in-region CpG for ``mode`` (``cpg``: rank; ``position``: bin); -1 past the end."""
        if mode == "cpg":
            slot = self.rank.astype(np.int64)
        else:
            slot = regions.position_slot(self.region, self.pos)
        return np.where(slot < regions.n_positions, slot, -1)

    def find_idx(self, idx: np.ndarray) -> np.ndarray:
        """Entry of each CpG number ``idx`` [n]; -1 where it is not an in-region CpG."""
        k = np.searchsorted(self.idx, idx)
        kk = np.minimum(k, max(len(self.idx) - 1, 0))
        hit = (k < len(self.idx)) & (self.idx[kk] == idx) if len(self.idx) else np.zeros(idx.shape, bool)
        return np.where(hit, kk, -1)

    def find_pos(self, chrom: str, pos: np.ndarray) -> np.ndarray:
        """Entry of each 0-based C position ``pos`` [n] on ``chrom``; -1 where none."""
        where = np.flatnonzero(self.chroms == chrom)
        out = np.full(pos.shape, -1, dtype=np.int64)
        if not where.size:
            return out
        lo, hi = np.searchsorted(self.chrom_code, [where[0], where[0] + 1])
        if hi == lo:
            return out
        p = self.pos[lo:hi]
        k = np.searchsorted(p, pos)
        kk = np.minimum(k, hi - lo - 1)
        hit = (k < hi - lo) & (p[kk] == pos)
        out[hit] = lo + kk[hit]
        return out

    def chrom_of_idx(self, chrom: str) -> tuple[int, int] | None:
        """First and last CpG number of ``chrom`` in the whole index (None if absent)."""
        where = np.flatnonzero(self.chroms == chrom)
        if not where.size:
            return None
        return int(self.first_idx[where[0]]), int(self.last_idx[where[0]])

    def save(self, path: str | os.PathLike) -> None:
        with atomic_output(path) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh,
                chroms=self.chroms,
                chrom_code=self.chrom_code,
                pos=self.pos,
                idx=self.idx,
                region=self.region,
                rank=self.rank,
                first_idx=self.first_idx,
                last_idx=self.last_idx,
                n_cpgs=np.int64(self.n_cpgs),
                source=np.str_(self.source),
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> CpgIndex:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                return cls(
                    z["chroms"].astype(str),
                    z["chrom_code"],
                    z["pos"],
                    z["idx"],
                    z["region"],
                    z["rank"],
                    z["first_idx"],
                    z["last_idx"],
                    int(z["n_cpgs"]),
                    str(z["source"]),
                )
        except (OSError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: not a genomelab CpG index NPZ ({exc})") from exc


def build_cpg_index(path: str | os.PathLike, regions: Regions, chunk_lines: int = 2_000_000) -> CpgIndex:
    """Stream a wgbstools ``CpG.bed.gz`` (chrom, 1-based pos, index) and keep in-region CpGs.

    Raises ``ValueError`` naming the file and line if the index is malformed, its CpG
    numbers are not consecutive (1, 2, 3, ...), positions are unsorted or its chromosome
    names do not fit the build.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CpG index {path} does not exist")
    chroms: list[str] = []
    first: list[int] = []
    last: list[int] = []
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("chrom_code", "pos", "idx", "region")}
    expected_idx, line0 = 1, 0
    last_pos = -1
    try:
        for _, chunk in _index_chunks(path, chunk_lines):
            chrom_col = chunk["chrom"].to_numpy()
            pos = chunk["pos"].to_numpy() - 1
            idx = chunk["idx"].to_numpy()
            bad = np.flatnonzero(idx != np.arange(expected_idx, expected_idx + len(idx)))
            if bad.size:
                i = bad[0]
                raise ValueError(
                    f"{path}, line {line0 + i + 1}: CpG number {idx[i]} where {expected_idx + i} was "
                    "expected; a wgbstools CpG index numbers CpGs 1, 2, 3, ... in genome order"
                )
            breaks = np.flatnonzero(chrom_col[1:] != chrom_col[:-1]) + 1
            bounds = np.concatenate([[0], breaks, [len(chrom_col)]])
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                c = str(chrom_col[a])
                if not chroms or chroms[-1] != c:
                    if c in chroms:
                        raise ValueError(
                            f"{path}, line {line0 + a + 1}: chromosome {c} appears again after "
                            f"{chroms[-1]}; the index must be sorted by chromosome"
                        )
                    regions.build.check_name(c, f"{path}, line {line0 + a + 1}")
                    chroms.append(c)
                    first.append(int(idx[a]))
                    last.append(int(idx[a]))
                    last_pos = -1
                p = pos[a:b]
                if p.size and (p[0] <= last_pos or (p.size > 1 and (np.diff(p) <= 0).any())):
                    i = a + (0 if p[0] <= last_pos else int(np.flatnonzero(np.diff(p) <= 0)[0]) + 1)
                    raise ValueError(
                        f"{path}, line {line0 + i + 1}: position not increasing on {c}; the "
                        "index must be sorted by position"
                    )
                last_pos = int(p[-1])
                last[-1] = int(idx[b - 1])
                regions.build.check_extent(c, int(p[-1]) + 1, str(path))
                region = regions.locate(c, p)
                keep = region >= 0
                parts["chrom_code"].append(np.full(int(keep.sum()), len(chroms) - 1, dtype=np.int32))
                parts["pos"].append(p[keep])
                parts["idx"].append(idx[a:b][keep])
                parts["region"].append(region[keep])
            expected_idx += len(idx)
            line0 += len(idx)
    except (pd.errors.ParserError, ValueError) as exc:
        if str(path) in str(exc):
            raise
        raise ValueError(
            f"{path}: not a CpG index (chrom, 1-based position, CpG number; tab-separated): {exc}"
        ) from exc
    if not chroms:
        raise ValueError(f"{path}: empty CpG index")
    regions.check_chromosomes(set(chroms), f"CpG index {path}")
    cat = {k: np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for k, v in parts.items()}
    region = cat["region"].astype(np.int64)
    # Rank inside the region: CpGs of one region are consecutive because the index is sorted
    # and regions do not overlap.
    n = len(region)
    run_start = np.ones(n, dtype=bool)
    run_start[1:] = region[1:] != region[:-1]
    starts = np.flatnonzero(run_start)
    rank = np.arange(n) - np.repeat(starts, np.diff(np.append(starts, n)))
    return CpgIndex(
        np.asarray(chroms, dtype=str),
        cat["chrom_code"].astype(np.int32),
        cat["pos"].astype(np.int64),
        cat["idx"].astype(np.int64),
        region,
        rank.astype(np.int32),
        np.asarray(first, dtype=np.int64),
        np.asarray(last, dtype=np.int64),
        expected_idx - 1,
        str(path),
    )


def write_cpg_index(
    index_bed: str | os.PathLike,
    regions_path: str | os.PathLike,
    section: dict[str, Any],
    out: str | os.PathLike,
) -> CpgIndex:
    """The CpG index of the ``ingest`` section's regions, saved to ``out``."""
    regions = load_regions(section, regions_path)
    index = build_cpg_index(index_bed, regions, int(section["chunk_lines"]))
    index.save(out)
    logger.info(
        "CpG index %s: %d CpGs genome-wide, %d inside %d regions",
        index_bed,
        index.n_cpgs,
        len(index.idx),
        regions.n_regions,
    )
    return index


# ----------------------------------------------------------------------------- from a FASTA
CONTIG_SETS = ("primary", "all")
CONTIG_ORDERS = ("natural", "fasta")
_PRIMARY = re.compile(r"^(chr)?(\d+|X|Y|M|MT)$")


def is_primary_chrom(name: str) -> bool:
    """``chr1``/``1`` .. numbers, X, Y, M, MT: the chromosomes wgbstools keeps by default."""
    return _PRIMARY.match(name) is not None


def natural_chrom_key(name: str) -> tuple[int, int, str]:
    """Sort key 1, 2, ..., 10, ..., X, Y, M/MT, then other names alphabetically."""
    bare = name[3:] if name.startswith("chr") else name
    if bare.isdigit():
        return (0, int(bare), "")
    rank = {"X": 1, "Y": 2, "M": 3, "MT": 3}.get(bare)
    return (1, rank, "") if rank is not None else (2, 0, name)


def cpg_positions(seq: bytes) -> np.ndarray:
    """1-based positions of the C of every ``CG`` in ``seq`` (case-insensitive) -> int64 [n]."""
    arr = np.frombuffer(seq, dtype=np.uint8) & 0xDF  # ASCII letters to upper case
    if arr.size < 2:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero((arr[:-1] == ord("C")) & (arr[1:] == ord("G"))).astype(np.int64) + 1


def _open_out(tmp: Path, compress: bool):
    if compress:
        # BGZF (what bgzip writes) is gzip-compatible and lets tabix index the result.
        from pysam import BGZFile

        return BGZFile(str(tmp), "wb")
    return open(tmp, "wb")


def write_cpg_bed(
    fasta: str | os.PathLike,
    out: str | os.PathLike,
    contigs: str = "primary",
    order: str = "natural",
) -> dict[str, Any]:
    """Write the CpG index (chrom, 1-based C position, CpG number) of a genome FASTA.

    ``contigs``: ``primary`` keeps the chromosomes wgbstools keeps (see
    :func:`is_primary_chrom`), ``all`` every record. ``order``: ``natural`` (1, 2, ..., 10,
    ..., X, Y, M) or ``fasta`` (the file's order). ``out`` ending in ``.gz`` is BGZF-compressed.
    Returns ``{"n_cpgs", "chromosomes": {name: n_cpgs}, "skipped": [names]}``.
    """
    if contigs not in CONTIG_SETS:
        raise ValueError(f"contigs must be one of {CONTIG_SETS}, not {contigs!r}")
    if order not in CONTIG_ORDERS:
        raise ValueError(f"order must be one of {CONTIG_ORDERS}, not {order!r}")
    found: dict[str, np.ndarray] = {}
    skipped: list[str] = []
    for name, seq in read_fasta(fasta, allow_empty=True):
        if contigs == "primary" and not is_primary_chrom(name):
            skipped.append(name)
            continue
        pos = cpg_positions(seq)
        if pos.size and pos[-1] >= 2**32:
            raise FormatError(fasta, f"record {name} is longer than 4 Gb")
        found[name] = pos.astype(np.uint32)
    if not found:
        raise FormatError(fasta, f"no {'primary chromosome' if contigs == 'primary' else 'record'} to index")
    names = sorted(found, key=natural_chrom_key) if order == "natural" else list(found)
    n = 0
    with atomic_output(out) as tmp, _open_out(tmp, str(out).endswith(".gz")) as fh:
        for name in names:
            pos = found[name]
            idx = np.arange(n + 1, n + 1 + pos.size, dtype=np.int64)
            lines = pd.DataFrame({"c": name, "p": pos, "i": idx})
            fh.write(lines.to_csv(sep="\t", header=False, index=False, lineterminator="\n").encode())
            n += pos.size
    logger.info(
        "CpG index %s from %s: %d CpGs on %d records (%d skipped)", out, fasta, n, len(names), len(skipped)
    )
    return {"n_cpgs": n, "chromosomes": {k: int(found[k].size) for k in names}, "skipped": skipped}


def _index_chunks(path: Path, chunk_lines: int) -> Iterator[tuple[int, pd.DataFrame]]:
    """``(first line number, chunk)`` of a CpG index; a malformed line is a FormatError."""
    line = 1
    try:
        reader = pd.read_csv(
            path,
            sep="\t",
            header=None,
            usecols=[0, 1, 2],
            names=["chrom", "pos", "idx"],
            dtype={"chrom": str, "pos": np.int64, "idx": np.int64},
            chunksize=chunk_lines,
            compression="infer",
        )
        with reader:
            for chunk in reader:
                yield line, chunk
                line += len(chunk)
    except (pd.errors.ParserError, ValueError, EOFError, OSError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(
            path, f"not a CpG index (chrom, 1-based position, CpG number; tab-separated): {exc}", line
        ) from exc


def cpg_positions_in_ranges(
    path: str | os.PathLike, starts: np.ndarray, ends: np.ndarray, chunk_lines: int = 2_000_000
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Positions of the CpGs numbered in any ``[starts[k], ends[k])`` of a CpG index.

    Returns ``{chrom: (pos int64 [n] 0-based C position, sorted; idx int64 [n])}``. Streams
    the index once; memory is the CpGs kept. CpG numbers must run 1, 2, 3, ... (FormatError
    naming the line otherwise).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CpG index {path} does not exist")
    order = np.argsort(starts, kind="stable")
    s_sorted, e_sorted = np.asarray(starts)[order], np.asarray(ends)[order]
    # Coverage of CpG numbers by the (possibly overlapping) ranges: +1 at a start, -1 at an end.
    edges = np.concatenate([s_sorted, e_sorted])
    steps = np.concatenate([np.ones(len(s_sorted), np.int64), -np.ones(len(e_sorted), np.int64)])
    o = np.argsort(edges, kind="stable")
    edges, depth = edges[o], np.cumsum(steps[o])
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    expected = 1
    for first, chunk in _index_chunks(path, chunk_lines):
        idx = chunk["idx"].to_numpy()
        bad = np.flatnonzero(idx != np.arange(expected, expected + len(idx)))
        if bad.size:
            i = int(bad[0])
            raise FormatError(
                path, f"CpG number {idx[i]} where {expected + i} was expected (1, 2, 3, ...)", first + i
            )
        expected += len(idx)
        k = np.searchsorted(edges, idx, side="right") - 1
        inside = (k >= 0) & (depth[np.maximum(k, 0)] > 0)
        if not inside.any():
            continue
        sub = chunk[inside]
        for chrom, rows in sub.groupby("chrom", sort=False):
            parts.setdefault(str(chrom), []).append((rows["pos"].to_numpy() - 1, rows["idx"].to_numpy()))
    return {
        c: (np.concatenate([p for p, _ in v]), np.concatenate([i for _, i in v])) for c, v in parts.items()
    }
