"""The region set: a BED file of regions (or marker blocks) and vectorised lookups into it.

Every sample is written as ``methylation`` [n_regions, n_positions] in the order of the BED
file, so that all samples of a run share rows. Positions map to slots in one of two ways
(``ingest.slots``):

- ``position``: the region is cut into ``n_positions`` equal bins; a CpG at 0-based ``pos``
  goes to bin ``(pos - start) * n_positions // (end - start)``. For 150 bp regions and 150
  slots this is the base offset, the layout the tissue module's read simulator uses.
- ``cpg``: slot ``k`` is the k-th CpG of the region in a reference CpG index (the same for
  every sample; see :mod:`genomelab.ingest.cpg_index`). CpGs past ``n_positions`` are dropped
  and counted.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.ingest.builds import GenomeBuild, genome_build, other_style_name
from genomelab.io.streams import open_text, text_errors


@dataclass
class Regions:
    """Regions in BED order: ``chrom`` str [R], ``start``/``end`` int64 [R] (0-based, end
    exclusive), ``ids`` str [R]."""

    chrom: np.ndarray
    start: np.ndarray
    end: np.ndarray
    ids: np.ndarray
    n_positions: int
    source: str
    build: GenomeBuild
    # chrom -> (region indices sorted by start, their starts, their ends)
    _by_chrom: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.n_positions < 1:
            raise ValueError(f"n_positions must be >= 1, not {self.n_positions}")
        for c in np.unique(self.chrom):
            idx = np.flatnonzero(self.chrom == c)
            idx = idx[np.argsort(self.start[idx], kind="stable")]
            s, e = self.start[idx], self.end[idx]
            overlap = np.flatnonzero(s[1:] < e[:-1])
            if overlap.size:
                a, b = idx[overlap[0]], idx[overlap[0] + 1]
                raise ValueError(
                    f"{self.source}: regions {self.ids[a]} ({c}:{self.start[a]}-{self.end[a]}) and "
                    f"{self.ids[b]} ({c}:{self.start[b]}-{self.end[b]}) overlap; a CpG must belong "
                    "to one region (merge them, e.g. bedtools merge)"
                )
            self._by_chrom[str(c)] = (idx, s, e)

    @property
    def n_regions(self) -> int:
        return len(self.ids)

    @property
    def chromosomes(self) -> set[str]:
        return set(self._by_chrom)

    def locate(self, chrom: str, pos: np.ndarray) -> np.ndarray:
        """Region index of each 0-based position ``pos`` [n] on ``chrom``; -1 outside regions."""
        pos = np.asarray(pos, dtype=np.int64)
        entry = self._by_chrom.get(chrom)
        if entry is None:
            return np.full(pos.shape, -1, dtype=np.int64)
        idx, starts, ends = entry
        k = np.searchsorted(starts, pos, side="right") - 1
        ok = k >= 0
        kk = np.where(ok, k, 0)
        ok &= pos < ends[kk]
        return np.where(ok, idx[kk], -1)

    def position_slot(self, region: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Slot of 0-based ``pos`` [n] inside ``region`` [n] in ``position`` mode."""
        start, length = self.start[region], self.end[region] - self.start[region]
        return (pos - start) * self.n_positions // length

    def check_chromosomes(self, chroms: set[str], source: str) -> None:
        """Raise when a file's chromosome names cannot be those of these regions (chr1 vs 1)."""
        for c in chroms:
            self.build.check_name(c, source)
        if chroms and not (chroms & self.chromosomes):
            renamed = {other_style_name(c) for c in chroms}
            hint = " (they differ only by the 'chr' prefix: chr1 vs 1)" if renamed & self.chromosomes else ""
            raise ValueError(
                f"{source}: none of its chromosomes {sorted(chroms)[:5]} occurs in the regions "
                f"{self.source} ({sorted(self.chromosomes)[:5]}){hint}"
            )


def read_regions(path: str | os.PathLike, build: GenomeBuild, n_positions: int = 150) -> Regions:
    """Read a BED file (chrom, start, end[, name, ...]); ``track``/``browser``/``#`` lines skipped.

    A ``track ... db=<build>`` header must agree with ``build``. Raises ``ValueError`` naming
    the file and line for malformed lines, empty regions, duplicate names and overlaps.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"region file {path} does not exist")
    chrom, start, end, ids = [], [], [], []
    with text_errors(path), open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith("#") or line.startswith("browser"):
                continue
            if line.startswith("track"):
                for token in line.split():
                    if token.startswith("db=") and token[3:] != build.name:
                        raise ValueError(
                            f"{path}, line {line_no}: the track line declares genome build "
                            f"{token[3:]!r} but ingest.genome_build is {build.name!r} (mixed builds)"
                        )
                continue
            fields = line.rstrip("\r\n").split("\t")
            if len(fields) < 3:
                raise ValueError(
                    f"{path}, line {line_no}: a BED line needs chrom, start, end (tab-separated), "
                    f"got {line.strip()!r}"
                )
            try:
                s, e = int(fields[1]), int(fields[2])
            except ValueError:
                raise ValueError(
                    f"{path}, line {line_no}: start/end must be integers, got {fields[1]!r}, {fields[2]!r}"
                ) from None
            if s < 0 or e <= s:
                raise ValueError(
                    f"{path}, line {line_no}: region {fields[0]}:{s}-{e} is empty or negative "
                    "(BED is 0-based, end exclusive)"
                )
            build.check_name(fields[0], f"{path}, line {line_no}")
            build.check_extent(fields[0], e, f"{path}, line {line_no}")
            chrom.append(fields[0])
            start.append(s)
            end.append(e)
            name = fields[3].strip() if len(fields) > 3 and fields[3].strip() else f"{fields[0]}:{s}-{e}"
            ids.append(name)
    if not ids:
        raise ValueError(f"{path}: no regions")
    ids_arr = np.asarray(ids, dtype=str)
    uniq, counts = np.unique(ids_arr, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{path}: duplicate region name(s) {list(uniq[counts > 1][:5])}")
    return Regions(
        np.asarray(chrom, dtype=str),
        np.asarray(start, dtype=np.int64),
        np.asarray(end, dtype=np.int64),
        ids_arr,
        n_positions,
        str(path),
        build,
    )


def load_regions(section: dict[str, Any], path: str | os.PathLike) -> Regions:
    build = genome_build(section["genome_build"], section.get("chrom_sizes") or None)
    return read_regions(path, build, int(section["n_positions"]))
