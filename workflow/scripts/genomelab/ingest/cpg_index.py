"""The reference CpG index (wgbstools ``CpG.bed.gz``), restricted to the regions.

wgbstools numbers every CpG of a genome 1..N in genome order; ``.pat.gz`` and ``.beta``
files address CpGs by that number. The index file has one line per CpG: chrom, 1-based
position of the C, index. Streaming it once per run (rule ``ingest_cpg_index``) keeps only
CpGs inside the regions, with their region, their rank inside the region (the slot in
``cpg`` mode) and their position slot, so sample jobs never hold the genome-wide index.

Saved NPZ arrays: ``chroms`` str [n_chrom]; per in-region CpG (sorted by index):
``chrom_code`` int32, ``pos`` int64 (0-based), ``idx`` int64, ``region`` int64, ``rank``
int32; per chromosome ``first_idx``/``last_idx`` int64; ``n_cpgs`` (genome-wide count).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomelab.ingest.regions import Regions, load_regions
from genomelab.io.atomic import atomic_output

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
        for chunk in reader:
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
