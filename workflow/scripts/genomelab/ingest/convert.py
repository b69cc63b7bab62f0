"""One sample's methylation file -> the tissue module's per-sample NPZ.

Output NPZ (``np.savez_compressed``, no pickles):
    methylation  int8   [n_regions, n_positions]  0 unmethylated, 1 methylated, 2 missing
    region_ids   str    [n_regions]               the BED names (or chrom:start-end)
    coverage     uint32 [n_regions]               CpG calls (reads x CpGs; probes for arrays) in the region
    methylated   float64 [n_regions]              methylated CpG calls among them (sum of betas for arrays)
    n_valid      uint16 [n_regions]               slots holding a 0/1 call
    sample, format, genome_build, slots           str scalars; n_positions int scalar

``methylated / coverage`` is the region's read-level methylated fraction: every read at every
CpG counts, where ``methylation`` keeps one call per slot (5 reads at one CpG are one call
there). Integer-valued for sequencing inputs (float64 because array betas are fractions).
NPZ files written before ``methylated`` existed lack it; readers treat it as absent.

Memory is bounded by the slot accumulators of one sample (``genomelab.ingest.slots``) plus
one chunk of ``chunk_lines`` input lines, whatever the input size.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomelab.config import ConfigSection, from_schema, typed_config
from genomelab.ingest import formats as F
from genomelab.ingest.cpg_index import CpgIndex
from genomelab.ingest.regions import Regions, load_regions
from genomelab.ingest.slots import CallConfig, SlotAccumulator
from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.dropped import KEY as DROPPED_KEY
from genomelab.io.dropped import Dropped, dropped_to_json

logger = logging.getLogger(__name__)

SLOT_MODES = ("position", "cpg")
NEEDS_INDEX = (F.PAT, F.BETA)


@dataclass(frozen=True)
class IngestConfig(ConfigSection):
    """Options of one conversion (the ``ingest`` config section; see config/README.md)."""

    SECTION = "ingest"

    n_positions: int = from_schema("ingest.n_positions")
    slots: str = from_schema("ingest.slots")
    call: str = from_schema("ingest.call")
    threshold: float = from_schema("ingest.threshold")
    min_coverage: int = from_schema("ingest.min_coverage")
    merge_strands: bool = from_schema("ingest.merge_strands")
    mod_code: str = from_schema("ingest.mod_code")
    read_level: bool = from_schema("ingest.read_level")
    probe_pos_base: int = from_schema("ingest.probe_pos_base")
    min_on_index: float = from_schema("ingest.min_on_index")
    chunk_lines: int = from_schema("ingest.chunk_lines")

    def __post_init__(self) -> None:
        if self.n_positions < 1:
            raise ValueError(f"ingest.n_positions must be >= 1, not {self.n_positions}")
        if self.slots not in SLOT_MODES:
            raise ValueError(f"ingest.slots must be one of {SLOT_MODES}, not {self.slots!r}")
        if self.chunk_lines < 1:
            raise ValueError(f"ingest.chunk_lines must be >= 1, not {self.chunk_lines}")
        if self.probe_pos_base not in (0, 1):
            raise ValueError(f"ingest.probe_pos_base must be 0 or 1, not {self.probe_pos_base}")
        if not 0 <= self.min_on_index <= 1:
            raise ValueError(f"ingest.min_on_index must be in [0, 1], not {self.min_on_index}")
        CallConfig(self.call, self.threshold, self.min_coverage)

    @property
    def call_config(self) -> CallConfig:
        return CallConfig(self.call, self.threshold, self.min_coverage)

    @classmethod
    def from_dict(cls, section: Mapping[str, Any], *, where: str | None = None, **extra: Any) -> IngestConfig:
        """The conversion options of the ``ingest`` section (its other keys name inputs and resources)."""
        keys = {f.name for f in dataclasses.fields(cls)}
        return typed_config(
            cls, {k: v for k, v in section.items() if k in keys}, where=where or cls.SECTION, **extra
        )


def sample_seed(seed: int, sample: str) -> int:
    """A per-sample seed: reruns and other samples of the sheet do not change a sample's calls."""
    return (int(seed) * 1_000_003 + zlib.crc32(sample.encode())) % (2**32)


class _Placer:
    """Maps calls to flat slots (region * n_positions + slot) and keeps the statistics."""

    def __init__(self, regions: Regions, cfg: IngestConfig, index: CpgIndex | None, source: str) -> None:
        self.regions, self.cfg, self.index, self.source = regions, cfg, index, source
        self.index_slots = index.slots(regions, cfg.slots) if index is not None else None
        self.stats = {
            "calls": 0,
            "calls_in_regions": 0,
            "calls_past_last_slot": 0,
            "calls_off_index": 0,
            "minus_strand_merged": 0,
        }
        self.chroms: set[str] = set()

    def new_chrom(self, chrom: str) -> None:
        if chrom not in self.chroms:
            self.regions.build.check_name(chrom, self.source)
            self.chroms.add(chrom)

    def by_position(self, chrom: str, pos: np.ndarray, strand_known: bool) -> np.ndarray:
        """Flat slot of each 0-based C position [n]; -1 where the call is dropped."""
        self.new_chrom(chrom)
        self.stats["calls"] += int(pos.size)
        if pos.size:
            self.regions.build.check_extent(chrom, int(pos.max()) + 1, self.source)
        region = self.regions.locate(chrom, pos)
        inside = region >= 0
        self.stats["calls_in_regions"] += int(inside.sum())
        if self.cfg.slots == "position":
            slot = np.where(inside, self.regions.position_slot(np.maximum(region, 0), pos), -1)
        else:
            entry = self.index.find_pos(chrom, pos)
            if not strand_known:
                # Unstranded calls (Bismark .cov) of the minus-strand C sit one base after the CpG's C.
                miss = entry < 0
                shifted = self.index.find_pos(chrom, pos[miss] - 1)
                entry[miss] = shifted
                self.stats["minus_strand_merged"] += int((shifted >= 0).sum())
            self.stats["calls_off_index"] += int((inside & (entry < 0)).sum())
            slot = np.where(entry >= 0, self.index_slots[np.maximum(entry, 0)], -1)
            region = np.where(entry >= 0, self.index.region[np.maximum(entry, 0)], -1)
        past = (region >= 0) & (slot < 0)
        self.stats["calls_past_last_slot"] += int(past.sum())
        return np.where((region >= 0) & (slot >= 0), region * self.cfg.n_positions + slot, -1)

    def by_index(self, idx: np.ndarray) -> np.ndarray:
        """Flat slot of each CpG number [n] (wgbstools); -1 outside regions."""
        entry = self.index.find_idx(idx)
        self.stats["calls"] += int(idx.size)
        self.stats["calls_in_regions"] += int((entry >= 0).sum())
        slot = np.where(entry >= 0, self.index_slots[np.maximum(entry, 0)], -1)
        self.stats["calls_past_last_slot"] += int(((entry >= 0) & (slot < 0)).sum())
        region = self.index.region[np.maximum(entry, 0)]
        return np.where(slot >= 0, region * self.cfg.n_positions + slot, -1)

    def check_on_index(self) -> None:
        """In ``cpg`` mode almost every call inside a region must sit on a CpG of the index."""
        inside = self.stats["calls_in_regions"]
        off = self.stats["calls_off_index"]
        if self.index is not None and inside >= 20 and (inside - off) / inside < self.cfg.min_on_index:
            raise ValueError(
                f"{self.source}: only {100 * (inside - off) / inside:.1f}% of its {inside:,} CpG calls "
                f"inside regions fall on CpGs of the index {self.index.source}; the file and the "
                "index come from different genome builds (or coordinates are shifted)"
            )


def _counts(acc: SlotAccumulator, placer: _Placer, chunks) -> None:
    for ch in chunks:
        flat = placer.by_position(ch.chrom, ch.pos, ch.strand_known)
        keep = flat >= 0
        acc.add_counts(flat[keep], ch.n_meth[keep], ch.n_total[keep])


def _pat(
    path: Path, acc: SlotAccumulator, placer: _Placer, cfg: IngestConfig, rng: np.random.Generator
) -> None:
    index = placer.index
    for ch in F.read_pat(path, cfg.chunk_lines):
        placer.new_chrom(ch.chrom)
        lengths = ch.lengths
        rng_idx = index.chrom_of_idx(ch.chrom)
        ends = ch.start + lengths - 1
        if rng_idx is None or (ch.start < rng_idx[0]).any() or (ends > rng_idx[1]).any():
            bad = (
                np.ones(ch.start.shape, bool)
                if rng_idx is None
                else (ch.start < rng_idx[0]) | (ends > rng_idx[1])
            )
            i = int(np.flatnonzero(bad)[0])
            where = f"CpGs {rng_idx[0]}..{rng_idx[1]}" if rng_idx else "no CpGs"
            raise ValueError(
                f"{path}, line {int(ch.line[i])}: CpGs {ch.start[i]}..{ends[i]} on {ch.chrom}, but the "
                f"CpG index {index.source} has {where} there; the pat file and the index come from "
                "different genome builds"
            )
        n_calls = int(lengths.sum())
        offsets = np.repeat(np.cumsum(lengths) - lengths, lengths)
        within = np.arange(n_calls) - offsets
        idx = np.repeat(ch.start, lengths) + within
        chars = np.frombuffer("".join(ch.patterns.tolist()).encode("ascii"), dtype=np.uint8)
        called = chars != ord(".")
        meth = ((chars == ord("C")) | (chars == ord("H"))).astype(np.int8)
        counts = np.repeat(ch.counts, lengths)
        flat = placer.by_index(idx)
        keep = called & (flat >= 0)
        acc.add_counts(flat[keep], meth[keep] * counts[keep], counts[keep])
        if acc.read_level:
            # The largest of c uniform keys is distributed as u ** (1/c): a pattern seen in c
            # reads is as likely to win a slot as c separate reads.
            keys = rng.random(len(ch.start)) ** (1.0 / ch.counts)
            acc.add_reads(flat[keep], meth[keep], np.repeat(keys, lengths)[keep].astype(np.float32))


def _beta(path: Path, acc: SlotAccumulator, placer: _Placer) -> None:
    index = placer.index
    beta = F.read_beta(path)
    if beta.shape[0] != index.n_cpgs:
        raise ValueError(
            f"{path}: {beta.shape[0]:,} CpGs, but the CpG index {index.source} has {index.n_cpgs:,}; "
            "the beta file and the index come from different genome builds"
        )
    # In-region CpGs only, read in index order from the memory map (bounded by the regions).
    values = np.asarray(beta[index.idx - 1], dtype=np.int64)
    meth, total = values[:, 0], values[:, 1]
    if (meth > total).any():
        i = int(np.flatnonzero(meth > total)[0])
        raise ValueError(f"{path}: CpG {int(index.idx[i])} has {meth[i]} methylated of {total[i]} reads")
    flat = placer.by_index(index.idx[total > 0])
    keep = flat >= 0
    acc.add_counts(flat[keep], meth[total > 0][keep], total[total > 0][keep])
    placer.chroms.update(str(c) for c in index.chroms)


def _array(
    path: Path, column: str, probes: pd.DataFrame, acc: SlotAccumulator, placer: _Placer, cfg: IngestConfig
) -> dict[str, int]:
    lookup = pd.Index(probes["probe"].to_numpy())
    chrom_codes, chrom_names = pd.factorize(probes["chrom"])
    pos_all = probes["pos"].to_numpy()
    seen = np.zeros(len(probes), dtype=bool)
    stats = {"probes": 0, "probes_missing_value": 0, "probes_without_coordinates": 0}
    for ids, values, lines in F.read_array_column(path, column, cfg.chunk_lines):
        at = lookup.get_indexer(ids)
        stats["probes"] += len(ids)
        stats["probes_without_coordinates"] += int((at < 0).sum())
        known = at >= 0
        dup = known & seen[np.maximum(at, 0)]
        if dup.any():
            i = int(np.flatnonzero(dup)[0])
            raise ValueError(f"{path}, line {lines[i]}: probe {ids[i]!r} appears more than once")
        seen[at[known]] = True
        ok = known & ~np.isnan(values)
        stats["probes_missing_value"] += int((known & np.isnan(values)).sum())
        at, vals = at[ok], values[ok]
        codes = chrom_codes[at]
        for code in np.unique(codes):
            sel = codes == code
            pos = pos_all[at[sel]]
            order = np.argsort(pos, kind="stable")
            flat = placer.by_position(str(chrom_names[code]), pos[order], strand_known=False)
            keep = flat >= 0
            acc.add_counts(flat[keep], vals[sel][order][keep], np.ones(int(keep.sum()), dtype=np.int64))
    return stats


def convert_sample(
    path: str | os.PathLike,
    fmt: str,
    sample: str,
    regions: Regions,
    cfg: IngestConfig,
    out_npz: str | os.PathLike,
    *,
    index: CpgIndex | None = None,
    probes: pd.DataFrame | None = None,
    column: str = "",
    seed: int = 0,
) -> dict[str, Any]:
    """Convert one sample's file into ``out_npz``; return its statistics (also logged).

    ``index`` is required for ``wgbs_pat``/``wgbs_beta`` and for ``slots: cpg``; ``probes``
    (from :func:`genomelab.ingest.formats.read_probe_table`) for ``array``, whose sample
    column is ``column`` (default: ``sample``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} of sample {sample!r} does not exist")
    fmt = F.detect_format(path, fmt)
    if index is None and (fmt in NEEDS_INDEX or cfg.slots == "cpg"):
        raise ValueError(
            f"{path}: format {fmt} with slots {cfg.slots!r} needs a CpG index (ingest.cpg_index)"
        )
    if regions.n_positions != cfg.n_positions:
        raise ValueError(
            f"regions were read with {regions.n_positions} positions, config says {cfg.n_positions}"
        )
    rng = np.random.default_rng(sample_seed(seed, sample))
    read_level = fmt == F.PAT and cfg.read_level
    acc = SlotAccumulator(regions.n_regions, cfg.n_positions, read_level=read_level)
    placer = _Placer(regions, cfg, index, str(path))
    extra: dict[str, int] = {}
    if fmt == F.BISMARK_COV:
        _counts(acc, placer, F.read_bismark_cov(path, cfg.chunk_lines))
    elif fmt == F.CPG_REPORT:
        _counts(acc, placer, F.read_cpg_report(path, cfg.chunk_lines, cfg.merge_strands))
    elif fmt == F.BEDMETHYL:
        _counts(acc, placer, F.read_bedmethyl(path, cfg.chunk_lines, cfg.merge_strands, cfg.mod_code))
    elif fmt == F.PAT:
        _pat(path, acc, placer, cfg, rng)
    elif fmt == F.BETA:
        _beta(path, acc, placer)
    else:
        if probes is None:
            raise ValueError(
                f"{path}: array input of sample {sample!r} needs a probe table (ingest.probes or "
                "the 'probes' column of the ingest sample sheet)"
            )
        extra = _array(path, column or sample, probes, acc, placer, cfg)
    regions.check_chromosomes(placer.chroms, str(path))
    placer.check_on_index()
    methylation, coverage, n_valid = acc.finish(cfg.call_config, rng)
    write_npz(
        out_npz,
        methylation,
        regions.ids,
        coverage,
        n_valid,
        methylated=acc.region_methylated(),
        sample=sample,
        fmt=fmt,
        build=regions.build.name,
        slots=cfg.slots,
    )
    stats: dict[str, Any] = {
        "sample": sample,
        "input": str(path),
        "format": fmt,
        **placer.stats,
        **extra,
        "n_regions": regions.n_regions,
        "n_positions": cfg.n_positions,
        "regions_covered": int((n_valid > 0).sum()),
        "fraction_regions_covered": float((n_valid > 0).mean()),
        "mean_valid_slots": float(n_valid.mean()),
        "mean_methylation": float(methylation[methylation < 2].mean()) if (methylation < 2).any() else None,
        "median_coverage": float(np.median(coverage)),
        "chromosomes": sorted(placer.chroms),
        "config": asdict(cfg),
    }
    logger.info(
        "%s (%s): %d calls, %d in regions; %d/%d regions covered, mean %.1f valid slots",
        sample,
        fmt,
        stats["calls"],
        stats["calls_in_regions"],
        stats["regions_covered"],
        regions.n_regions,
        stats["mean_valid_slots"],
    )
    if stats["calls_in_regions"] == 0:
        raise ValueError(
            f"{path}: no CpG call of sample {sample!r} falls inside the regions of {regions.source}; "
            "wrong region file, genome build or sample column?"
        )
    return stats


def write_npz(
    path: str | os.PathLike,
    methylation: np.ndarray,
    region_ids: np.ndarray,
    coverage: np.ndarray,
    n_valid: np.ndarray,
    *,
    sample: str,
    fmt: str,
    build: str,
    slots: str,
    methylated: np.ndarray | None = None,
) -> None:
    """Write the per-sample NPZ (see module docstring) atomically (``methylated`` [n_regions]
    left out when None)."""
    counts = {} if methylated is None else {"methylated": np.asarray(methylated, dtype=np.float64)}
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            **counts,
            methylation=methylation.astype(np.int8),
            region_ids=np.asarray(region_ids, dtype=str),
            coverage=coverage.astype(np.uint32),
            n_valid=n_valid.astype(np.uint16),
            sample=np.str_(sample),
            format=np.str_(fmt),
            genome_build=np.str_(build),
            slots=np.str_(slots),
            n_positions=np.int64(methylation.shape[1]),
        )


def convert_sample_files(
    data: str | os.PathLike,
    fmt: str,
    sample: str,
    regions_path: str | os.PathLike,
    section: dict[str, Any],
    out_npz: str | os.PathLike,
    out_qc: str | os.PathLike,
    cpg_index: str | os.PathLike | None = None,
    probes: str | os.PathLike | None = None,
    column: str = "",
    seed: int = 0,
) -> dict[str, Any]:
    """:func:`convert_sample` with the regions, CpG index and probe table read from their
    files (per the ``ingest`` section); writes the NPZ and the QC JSON, returns the QC."""
    cfg = IngestConfig.from_dict(section)
    regions = load_regions(section, regions_path)
    index = CpgIndex.load(cpg_index) if cpg_index is not None else None
    dropped: list[Dropped] = []
    probe_table = (
        F.read_probe_table(probes, int(section["probe_pos_base"]), dropped) if probes is not None else None
    )
    stats = convert_sample(
        data,
        fmt,
        sample,
        regions,
        cfg,
        out_npz,
        index=index,
        probes=probe_table,
        column=column,
        seed=seed,
    )
    # Probes the table could not place are recorded with the sample's QC, not left silent.
    atomic_write_json(out_qc, stats | ({DROPPED_KEY: dropped_to_json(dropped)} if dropped else {}))
    return stats
