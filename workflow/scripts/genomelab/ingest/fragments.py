"""Fragment-level counts per marker block, the UXM way (Loyfer et al. 2023; wgbstools ``homog``).

Every read (a wgbstools ``.pat`` line, weighted by its count, or a Bismark BAM fragment) is
clipped to each block it overlaps: only its calls on the block's CpGs (CpG numbers
``startCpG`` .. ``endCpG - 1``) count. A clip with at least ``min_cpgs`` known calls is
classified by its methylated fraction f (``C`` and ``H`` methylated, ``T`` unmethylated):

- **U** (unmethylated): f <= ``u_max``
- **M** (methylated):   f >= ``m_min``
- **X** (mixed):        otherwise

Defaults (``workflow/schemas/ingest.schema.yaml``, ``ingest.uxm``) are those of UXM's
published atlases (``Atlas.U25.l4``: reads of >= 4 CpGs; wgbstools ``homog`` with
``--rlen 4`` puts f <= 0.25 in U and f >= 0.75 in M). Shorter clips are not counted.

Reads partly inside a block (``overlap``, wgbstools ``homog``'s strict/inclusive choice):
``strict`` (the default, as homog) classifies the clip above; ``inclusive`` (homog
``--inclusive``) classifies the *whole read* (all its known calls, at least ``min_cpgs``) and
counts it in every block its span overlaps. A ``.pat`` read spans its pattern's CpGs
(``.`` included, as homog reads it); a BAM fragment spans its first to its last CpG call.

Both inputs go through one counter (:func:`count_calls`), so a ``.pat`` file and a BAM of
the same reads give the same counts; the BAM path first turns positions into CpG numbers
with the genome's CpG index (``CpG.bed.gz``, e.g. made by
``genomelab.ingest.cpg_index.write_cpg_bed``).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.config import ConfigSection, from_schema, typed_config
from genomelab.io.atomic import atomic_write_json
from genomelab.io.blocks import BlockTable, read_blocks, write_block_counts
from genomelab.io.errors import FormatError
from genomelab.io.names import NAME_RULE, is_safe_name
from genomelab.io.sheets import resolve
from genomelab.io.streams import existing_file

logger = logging.getLogger(__name__)

U, X, M = 0, 1, 2
INPUT_FORMATS = ("pat", "bam")
OVERLAP_MODES = ("strict", "inclusive")


@dataclass(frozen=True)
class FragmentConfig(ConfigSection):
    """How fragments are classified and which BAM reads are used (module docstring)."""

    SECTION = "ingest.uxm"

    min_cpgs: int = from_schema("ingest.uxm.min_cpgs")
    u_max: float = from_schema("ingest.uxm.u_max")
    m_min: float = from_schema("ingest.uxm.m_min")
    overlap: str = from_schema("ingest.uxm.overlap")
    min_mapq: int = from_schema("ingest.uxm.min_mapq")
    exclude_flags: int = from_schema("ingest.uxm.exclude_flags")

    def __post_init__(self) -> None:
        if self.min_cpgs < 1:
            raise ValueError(f"ingest.uxm.min_cpgs must be >= 1, not {self.min_cpgs}")
        if not 0 <= self.u_max < self.m_min <= 1:
            raise ValueError(
                f"ingest.uxm thresholds need 0 <= u_max < m_min <= 1, got u_max={self.u_max}, m_min={self.m_min}"
            )
        if self.overlap not in OVERLAP_MODES:
            raise ValueError(f"ingest.uxm.overlap must be one of {OVERLAP_MODES}, not {self.overlap!r}")
        if self.min_mapq < 0 or self.exclude_flags < 0:
            raise ValueError("ingest.uxm.min_mapq and exclude_flags must be >= 0")

    @classmethod
    def from_dict(
        cls, section: Mapping[str, Any], *, where: str | None = None, **extra: Any
    ) -> FragmentConfig:
        """The classification options of the ``ingest.uxm`` section (its other keys name inputs,
        the deconvolution and resources)."""
        keys = {f.name for f in dataclasses.fields(cls)}
        return typed_config(
            cls, {k: v for k, v in section.items() if k in keys}, where=where or cls.SECTION, **extra
        )


def classify(n_meth: np.ndarray, n_known: np.ndarray, cfg: FragmentConfig) -> np.ndarray:
    """U (0), X (1), M (2) per clip, -1 where fewer than ``min_cpgs`` known calls. [n] int8."""
    n_meth, n_known = np.asarray(n_meth, np.int64), np.asarray(n_known, np.int64)
    # Compare counts, not floats: f <= u_max  <=>  n_meth <= u_max * n_known (tolerance for 0.1-like thresholds).
    eps = 1e-9
    out = np.where(
        n_meth <= cfg.u_max * n_known + eps, U, np.where(n_meth >= cfg.m_min * n_known - eps, M, X)
    ).astype(np.int8)
    out[n_known < cfg.min_cpgs] = -1
    return out


def _layers(start: np.ndarray, end: np.ndarray) -> list[np.ndarray]:
    """Split blocks into groups of non-overlapping blocks, each sorted by start (greedy)."""
    order = np.argsort(start, kind="stable")
    layers: list[list[int]] = []
    last_end: list[int] = []
    for b in order:
        for k, e in enumerate(last_end):
            if start[b] >= e:
                layers[k].append(int(b))
                last_end[k] = int(end[b])
                break
        else:
            layers.append([int(b)])
            last_end.append(int(end[b]))
    return [np.asarray(layer, dtype=np.int64) for layer in layers]


class BlockCounter:
    """U/X/M counts per block over calls fed in read order (see :func:`count_calls`)."""

    def __init__(self, blocks: BlockTable, cfg: FragmentConfig) -> None:
        self.blocks, self.cfg = blocks, cfg
        self.counts = np.zeros((len(blocks), 3), dtype=np.int64)
        self.layers = _layers(blocks.start_cpg, blocks.end_cpg)
        self.stats = {"reads": 0, "reads_in_blocks": 0, "clips": 0, "clips_too_short": 0}

    def _check_chrom(self, chrom: str, b: np.ndarray, cpg: np.ndarray) -> None:
        """Blocks ``b`` [n] hit by reads on ``chrom`` at CpG numbers ``cpg`` [n] lie on ``chrom``."""
        wrong = self.blocks.chrom[b] != chrom
        if wrong.any():
            raise ValueError(
                f"CpG {int(cpg[wrong][0])} of a read on {chrom} lies in block "
                f"{self.blocks.name[b[wrong][0]]} on {self.blocks.chrom[b[wrong][0]]}: the reads and "
                "the blocks use different CpG indexes (genome builds)"
            )

    def add(self, chrom: str, row: np.ndarray, idx: np.ndarray, meth: np.ndarray, weight: np.ndarray) -> None:
        """Calls ``idx`` (CpG numbers) / ``meth`` of reads ``row`` (indices into ``weight``,
        non-decreasing; idx increasing within a read); ``weight`` [n_reads] reads per row."""
        self.stats["reads"] += int(weight.sum())
        touched = np.zeros(len(weight), dtype=bool)
        for layer in self.layers:
            s, e = self.blocks.start_cpg[layer], self.blocks.end_cpg[layer]
            k = np.searchsorted(s, idx, side="right") - 1
            inside = (k >= 0) & (idx < e[np.maximum(k, 0)])
            if not inside.any():
                continue
            r, b, m = row[inside], layer[k[inside]], meth[inside]
            self._check_chrom(chrom, b, idx[inside])
            # Calls of one read in one block are consecutive: a group per (read, block) run.
            new = np.ones(len(r), dtype=bool)
            new[1:] = (r[1:] != r[:-1]) | (b[1:] != b[:-1])
            first = np.flatnonzero(new)
            n_known = np.diff(np.append(first, len(r)))
            n_meth = np.add.reduceat(m.astype(np.int64), first)
            cls = classify(n_meth, n_known, self.cfg)
            ok = cls >= 0
            np.add.at(self.counts, (b[first][ok], cls[ok]), weight[r[first]][ok])
            touched[r[first]] = True
            self.stats["clips"] += int(weight[r[first]].sum())
            self.stats["clips_too_short"] += int(weight[r[first]][~ok].sum())
        self.stats["reads_in_blocks"] += int(weight[touched].sum())

    def add_spans(
        self,
        chrom: str,
        span: tuple[np.ndarray, np.ndarray],
        n_meth: np.ndarray,
        n_known: np.ndarray,
        weight: np.ndarray,
    ) -> None:
        """Inclusive mode: whole reads [n] spanning CpG numbers ``span`` = (first, last),
        with ``n_meth`` of ``n_known`` calls methylated, each ``weight`` reads; every block
        the span overlaps gets the read's class."""
        first, last = span
        self.stats["reads"] += int(weight.sum())
        cls = classify(n_meth, n_known, self.cfg)
        touched = np.zeros(len(weight), dtype=bool)
        for layer in self.layers:
            s, e = self.blocks.start_cpg[layer], self.blocks.end_cpg[layer]
            # Blocks of a layer are disjoint and sorted: those overlapping [first, last] are the
            # run from the first ending after ``first`` to the last starting at or before ``last``.
            lo = np.searchsorted(e, first, side="right")
            hi = np.searchsorted(s, last, side="right")
            n = np.maximum(hi - lo, 0)
            if not n.any():
                continue
            r = np.repeat(np.arange(len(weight)), n)
            b = layer[np.repeat(lo, n) + (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n))]
            self._check_chrom(chrom, b, first[r])
            ok = cls[r] >= 0
            np.add.at(self.counts, (b[ok], cls[r][ok]), weight[r][ok])
            touched[r] = True
            self.stats["clips"] += int(weight[r].sum())
            self.stats["clips_too_short"] += int(weight[r][~ok].sum())
        self.stats["reads_in_blocks"] += int(weight[touched].sum())


def count_pat(path: str | os.PathLike, blocks: BlockTable, cfg: FragmentConfig, chunk_lines: int = 1_000_000):
    """U/X/M counts [B, 3] of a wgbstools ``.pat[.gz]`` file, and the counter's statistics."""
    from genomelab.io.pat import read_pat

    counter = BlockCounter(blocks, cfg)
    for ch in read_pat(path, chunk_lines):
        row, idx, meth = ch.calls()
        try:
            if cfg.overlap == "inclusive":
                n = len(ch.counts)
                lengths = np.fromiter((len(p) for p in ch.patterns), dtype=np.int64, count=n)
                n_known = np.bincount(row, minlength=n)
                n_meth = np.bincount(row, weights=meth, minlength=n).astype(np.int64)
                counter.add_spans(ch.chrom, (ch.start, ch.start + lengths - 1), n_meth, n_known, ch.counts)
            else:
                counter.add(ch.chrom, row, idx, meth, ch.counts)
        except ValueError as exc:
            raise FormatError(path, str(exc), int(ch.line[0])) from exc
    return counter.counts, counter.stats


def count_bam(
    path: str | os.PathLike,
    blocks: BlockTable,
    cpg_index: str | os.PathLike,
    cfg: FragmentConfig,
    batch: int = 20_000,
):
    """U/X/M counts [B, 3] of a Bismark BAM, positions turned into CpG numbers by ``cpg_index``."""
    from genomelab.ingest.cpg_index import cpg_positions_in_ranges
    from genomelab.io.bam import bismark_fragments

    index = cpg_positions_in_ranges(cpg_index, blocks.start_cpg, blocks.end_cpg)
    for chrom, (pos, idx) in index.items():
        order = np.argsort(pos, kind="stable")
        index[chrom] = (pos[order], idx[order])

    def keep(chrom: str, pos: np.ndarray) -> np.ndarray:
        known = index.get(chrom)
        if cfg.overlap == "inclusive":  # every call of a read counts; only its span needs the index
            return np.full(len(pos), known is not None and len(known[0]) > 0)
        if known is None:
            return np.zeros(len(pos), dtype=bool)
        k = np.minimum(np.searchsorted(known[0], pos), max(len(known[0]) - 1, 0))
        return known[0][k] == pos if len(known[0]) else np.zeros(len(pos), dtype=bool)

    counter = BlockCounter(blocks, cfg)
    bam_stats: dict[str, int] = {}
    buf: list = []
    for frag in bismark_fragments(path, cfg.min_mapq, cfg.exclude_flags, keep=keep, stats=bam_stats):
        if buf and (frag.chrom != buf[-1].chrom or len(buf) >= batch):
            _feed_fragments(counter, buf, index)
            buf = []
        buf.append(frag)
    if buf:
        _feed_fragments(counter, buf, index)
    return counter.counts, {**counter.stats, **{f"bam_{k}": v for k, v in bam_stats.items()}}


def _feed_fragments(counter: BlockCounter, frags: list, index: dict) -> None:
    """One chromosome's fragments (strict: positions already restricted to indexed block CpGs)."""
    chrom = frags[0].chrom
    pos_known, idx_known = index[chrom]
    if counter.cfg.overlap == "inclusive":
        _feed_whole_fragments(counter, frags, pos_known, idx_known)
        return
    lengths = np.fromiter((len(f.pos) for f in frags), dtype=np.int64, count=len(frags))
    pos = np.concatenate([f.pos for f in frags])
    meth = np.concatenate([f.meth for f in frags])
    idx = idx_known[np.searchsorted(pos_known, pos)]
    row = np.repeat(np.arange(len(frags)), lengths)
    counter.add(chrom, row, idx, meth, np.ones(len(frags), dtype=np.int64))


def _feed_whole_fragments(
    counter: BlockCounter, frags: list, pos_known: np.ndarray, idx_known: np.ndarray
) -> None:
    """Inclusive mode: each fragment's span as CpG numbers of the block CpGs it covers
    (``pos_known``/``idx_known`` sorted by position); fragments covering none are skipped."""
    frags = [f for f in frags if len(f.pos)]  # mates that disagreed on every CpG
    if not frags:
        return
    first = np.fromiter((f.pos[0] for f in frags), dtype=np.int64, count=len(frags))
    last = np.fromiter((f.pos[-1] for f in frags), dtype=np.int64, count=len(frags))
    lo = np.searchsorted(pos_known, first, side="left")
    hi = np.searchsorted(pos_known, last, side="right") - 1
    inside = np.flatnonzero(lo <= hi)
    if not len(inside):
        return
    n_known = np.fromiter((len(frags[i].pos) for i in inside), dtype=np.int64, count=len(inside))
    n_meth = np.fromiter((int(frags[i].meth.sum()) for i in inside), dtype=np.int64, count=len(inside))
    span = (idx_known[lo[inside]], idx_known[hi[inside]])
    counter.add_spans(frags[0].chrom, span, n_meth, n_known, np.ones(len(inside), dtype=np.int64))


# ----------------------------------------------------------------------------- samples
@dataclass(frozen=True)
class ReadsRecord:
    """One row of the UXM sample sheet: ``sample``, ``path`` (resolved), ``format``."""

    sample: str
    path: Path
    format: str


def input_format(path: str | os.PathLike, declared: str = "") -> str:
    """``pat`` for ``*.pat[.gz]``, ``bam`` for ``*.bam`` (or the declared format)."""
    if declared:
        if declared not in INPUT_FORMATS:
            raise ValueError(f"{path}: format {declared!r} is not one of {INPUT_FORMATS}")
        return declared
    name = Path(path).name.lower()
    if name.endswith((".pat", ".pat.gz")):
        return "pat"
    if name.endswith(".bam"):
        return "bam"
    raise ValueError(f"{path}: cannot tell the format from the name; expected .pat.gz, .pat or .bam")


def read_reads_sheet(path: str | os.PathLike, check_files: bool = True) -> list[ReadsRecord]:
    """The UXM sample sheet: TSV with ``sample``, ``path`` and optional ``format`` (pat/bam);
    paths relative to the sheet's folder. Errors name the sheet and line."""
    path = existing_file(path, "UXM sample sheet")
    out: list[ReadsRecord] = []
    with open(path, newline="") as fh:
        reader = csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t")
        missing = [c for c in ("sample", "path") if c not in (reader.fieldnames or [])]
        if missing:
            raise FormatError(path, f"lacks column(s) {missing} (tab-separated: sample, path[, format])", 1)
        for n, row in enumerate(reader, start=2):
            sample, value = (row.get("sample") or "").strip(), (row.get("path") or "").strip()
            if not sample or not value:
                raise FormatError(path, "empty sample or path", n)
            if not is_safe_name(sample):
                raise FormatError(path, f"sample name {sample!r} {NAME_RULE}", n)
            if any(r.sample == sample for r in out):
                raise FormatError(path, f"duplicate sample {sample!r}", n)
            file = resolve(path.parent, value)
            try:
                fmt = input_format(file, (row.get("format") or "").strip())
            except ValueError as exc:
                raise FormatError(path, str(exc), n) from exc
            if check_files and not file.is_file():
                raise FormatError(path, f"file {file} of sample {sample!r} does not exist", n)
            out.append(ReadsRecord(sample, file, fmt))
    if not out:
        raise FormatError(path, "lists no samples")
    return out


def write_sample_counts(
    reads: str | os.PathLike,
    fmt: str,
    blocks_path: str | os.PathLike,
    section: dict[str, Any],
    out_counts: str | os.PathLike,
    out_qc: str | os.PathLike,
    cpg_index: str | os.PathLike | None = None,
    chunk_lines: int = 1_000_000,
) -> np.ndarray:
    """Count one sample's fragments per block and write the counts TSV and a QC JSON."""
    cfg = FragmentConfig.from_dict(section)
    blocks = read_blocks(blocks_path, "marker blocks")
    if fmt == "pat":
        counts, stats = count_pat(reads, blocks, cfg, chunk_lines)
    elif fmt == "bam":
        if not cpg_index:
            raise ValueError(
                f"{reads}: a BAM needs the CpG index (ingest.uxm.cpg_index or ingest.uxm.genome_fasta)"
            )
        counts, stats = count_bam(reads, blocks, cpg_index, cfg)
    else:
        raise ValueError(f"{reads}: format {fmt!r} is not one of {INPUT_FORMATS}")
    write_block_counts(out_counts, blocks, counts)
    total = counts.sum(1)
    qc = {
        "input": str(reads),
        "format": fmt,
        "blocks": str(blocks_path),
        "n_blocks": len(blocks),
        "blocks_with_fragments": int((total > 0).sum()),
        "median_fragments_per_block": float(np.median(total)) if len(total) else 0.0,
        "fragments": {
            "U": int(counts[:, U].sum()),
            "X": int(counts[:, X].sum()),
            "M": int(counts[:, M].sum()),
        },
        "parameters": {
            k: getattr(cfg, k) for k in ("min_cpgs", "u_max", "m_min", "overlap", "min_mapq", "exclude_flags")
        },
        **stats,
    }
    atomic_write_json(out_qc, qc)
    logger.info(
        "%s: %d fragments counted in %d of %d blocks (median %.0f per block)",
        reads,
        int(total.sum()),
        qc["blocks_with_fragments"],
        len(blocks),
        qc["median_fragments_per_block"],
    )
    return counts


def uxm_records(section: dict[str, Any]) -> dict[str, ReadsRecord]:
    """The ``ingest.uxm`` samples by name, checked at parse time (sheet, blocks, index needs)."""
    if not section["samples"]:
        raise ValueError("ingest.uxm.enabled needs ingest.uxm.samples (TSV: sample, path[, format])")
    if not (section["markers"] or section["atlas"]):
        raise ValueError("ingest.uxm needs marker blocks: set ingest.uxm.markers or ingest.uxm.atlas")
    records = {r.sample: r for r in read_reads_sheet(section["samples"], check_files=False)}
    bams = [s for s, r in records.items() if r.format == "bam"]
    if bams and not (section["cpg_index"] or section["genome_fasta"]):
        raise ValueError(
            f"ingest.uxm: BAM sample(s) {bams[:3]} need the genome's CpG index: set ingest.uxm.cpg_index "
            "(a wgbstools CpG.bed.gz) or ingest.uxm.genome_fasta (to build one)"
        )
    return records


def uxm_inputs(rec: ReadsRecord, section: dict[str, Any], cpg_index: str) -> dict[str, str]:
    """Inputs of one sample's ``ingest_block_counts`` job."""
    inputs = {"reads": str(rec.path), "blocks": section["markers"] or section["atlas"]}
    if rec.format == "bam":
        inputs["cpg_index"] = cpg_index
    return inputs
