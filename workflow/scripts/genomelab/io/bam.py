"""Bismark BAM files: CpG methylation calls per fragment, from the ``XM`` and ``XG`` tags (pysam).

Bismark writes per read (Bismark user guide, "Bismark alignment and methylation call
report"): ``XM`` the methylation call string, one character per base of the read as stored
in the BAM (``Z`` methylated C in CpG context, ``z`` unmethylated; ``X/x`` CHG, ``H/h``
CHH, ``U/u`` unknown context, ``.`` no C), and ``XG`` the genome strand the read converts
(``CT``: calls sit on the plus-strand C; ``GA``: on the minus strand, i.e. the plus-strand G,
so the CpG's C is one base to the left).

:func:`bismark_fragments` streams a BAM (sorted or not; no index needed) and yields one
fragment at a time: the two mates of a pair (same query name, same chromosome) are merged
into one fragment, as wgbstools ``bam2pat`` does; a CpG both mates call alike counts once,
one they call differently is left out (unknown). Reads are filtered as ``bam2pat`` does by
default: mapping quality >= ``min_mapq`` (10) and none of the ``exclude_flags`` bits (1796 =
unmapped, secondary, QC-fail, duplicate). A read without ``XM``/``XG`` is a FormatError
naming the file and record (e.g. bwa-meth BAMs: convert them with ``wgbstools bam2pat``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from genomelab.io.errors import FormatError
from genomelab.io.streams import existing_file

_Z, _z = ord("Z"), ord("z")


@dataclass(frozen=True)
class Fragment:
    """CpG calls of one fragment: ``pos`` int64 [m] 0-based plus-strand C (sorted, unique),
    ``meth`` bool [m]."""

    chrom: str
    pos: np.ndarray
    meth: np.ndarray


def read_cpg_calls(read, path: str, record: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pos, meth)`` of one aligned read's CpG calls (0-based plus-strand C)."""
    if not (read.has_tag("XM") and read.has_tag("XG")):
        raise FormatError(
            path,
            f"record {record} (read {read.query_name}) lacks the Bismark XM/XG tags; only Bismark "
            "BAMs carry per-read calls (make a .pat.gz with wgbstools bam2pat for other aligners)",
        )
    xm = np.frombuffer(read.get_tag("XM").encode("ascii"), dtype=np.uint8)
    strand = read.get_tag("XG")
    if strand not in ("CT", "GA"):
        raise FormatError(
            path, f"record {record} (read {read.query_name}): XG must be CT or GA, got {strand!r}"
        )
    if len(xm) != read.query_length:
        raise FormatError(
            path,
            f"record {record} (read {read.query_name}): XM has {len(xm)} calls for {read.query_length} bases",
        )
    qpos = np.flatnonzero((xm == _Z) | (xm == _z))
    if not len(qpos):
        return qpos, np.zeros(0, dtype=bool)
    ref = reference_positions(read.cigartuples, read.reference_start, len(xm))[qpos]
    aligned = ref >= 0
    pos = ref[aligned] - (1 if strand == "GA" else 0)
    return pos, xm[qpos[aligned]] == _Z


# CIGAR operations consuming the query and/or the reference (SAM specification).
_QUERY_OPS = {0, 1, 4, 7, 8}
_REF_OPS = {0, 2, 3, 7, 8}


def reference_positions(cigar: list[tuple[int, int]], start: int, n_query: int) -> np.ndarray:
    """0-based reference position of every query base, -1 where none (insertion, soft clip). [n_query]"""
    out = np.full(n_query, -1, dtype=np.int64)
    q, r = 0, start
    for op, n in cigar:
        if op in _QUERY_OPS and op in _REF_OPS:
            out[q : q + n] = np.arange(r, r + n)
        q += n if op in _QUERY_OPS else 0
        r += n if op in _REF_OPS else 0
    return out


def merge_calls(pos: np.ndarray, meth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique positions; a position called both ways is dropped."""
    order = np.argsort(pos, kind="stable")
    pos, meth = pos[order], meth[order]
    uniq, first, n = np.unique(pos, return_index=True, return_counts=True)
    n_meth = np.add.reduceat(meth.astype(np.int64), first) if len(pos) else np.zeros(0, np.int64)
    agree = (n_meth == 0) | (n_meth == n)
    return uniq[agree], (n_meth > 0)[agree]


def bismark_fragments(
    path: str | os.PathLike,
    min_mapq: int = 10,
    exclude_flags: int = 1796,
    keep: Callable[[str, np.ndarray], np.ndarray] | None = None,
    stats: dict[str, int] | None = None,
) -> Iterator[Fragment]:
    """Stream the fragments of a Bismark BAM (module docstring).

    ``keep(chrom, pos) -> bool [m]`` drops calls early (e.g. those outside marker blocks), so
    that only reads with kept calls wait for their mate. ``stats`` (if given) receives
    ``reads``, ``reads_filtered``, ``reads_used`` and ``fragments``.
    """
    import pysam

    path = existing_file(path, "BAM file")
    st = stats if stats is not None else {}
    for k in ("reads", "reads_filtered", "reads_used", "fragments"):
        st.setdefault(k, 0)
    pending: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    chrom = ""  # the chromosome of the reads in `pending`
    try:
        bam = pysam.AlignmentFile(str(path), "rb", check_sq=False)
    except (ValueError, OSError) as exc:
        raise FormatError(path, f"not a readable BAM file ({exc})") from exc
    with bam:
        for record, read in enumerate(bam.fetch(until_eof=True), start=1):
            st["reads"] += 1
            if read.flag & exclude_flags or read.is_unmapped or read.mapping_quality < min_mapq:
                st["reads_filtered"] += 1
                continue
            if (read.reference_name or "") != chrom:
                # Mates on one chromosome arrive before the next one starts in a sorted BAM.
                yield from _flush(chrom, pending, st)
                chrom = read.reference_name or ""
            pos, meth = read_cpg_calls(read, str(path), record)
            if keep is not None and len(pos):
                sel = keep(chrom, pos)
                pos, meth = pos[sel], meth[sel]
            st["reads_used"] += 1
            if not len(pos):
                continue
            mate_here = (
                read.is_paired and not read.mate_is_unmapped and read.next_reference_id == read.reference_id
            )
            if not mate_here:
                yield _fragment(chrom, pos, meth, st)
            elif (name := read.query_name or "") in pending:
                p2, m2 = pending.pop(name)
                yield _fragment(chrom, np.concatenate([p2, pos]), np.concatenate([m2, meth]), st)
            else:
                pending[name] = (pos, meth)
        yield from _flush(chrom, pending, st)


def _fragment(chrom: str, pos: np.ndarray, meth: np.ndarray, st: dict[str, int]) -> Fragment:
    st["fragments"] += 1
    p, m = merge_calls(pos, meth)
    return Fragment(chrom, p, m)


def _flush(chrom: str, pending: dict, st: dict[str, int]) -> Iterator[Fragment]:
    """Reads whose mate never came (filtered out, or an unsorted BAM) are fragments alone."""
    for pos, meth in pending.values():
        yield _fragment(chrom, pos, meth, st)
    pending.clear()
