"""Compiled (numba) k-mer profile kernels: one pass over the bases of each contig, and a
FASTA reader that counts straight from the file's bytes.

The numpy counter in ``kmers`` is bound by memory traffic: every base costs several
vectorised passes, and every contig a 4,096-column bincount row plus matrix steps over
it. Here each base costs one table lookup, one shift and one increment in a per-contig
4,096-entry int32 array that stays in L1 cache; the smaller k-mers are the prefix marginals
of the 6-mer counts plus the run ends (the same identity as ``kmers.count_block``), folded
straight into the output row.

``iter_fasta_profiles`` goes further: the Python FASTA parser and the join of each block's
sequences cost as much as the counting, so the kernel reads the file's bytes itself (in
chunks from ``fasta.read_record_chunks``): it finds each record's header and name, skips
line breaks, carriage returns, spaces and tabs, and counts the bases in the same pass.
Python's work is per block (names decoded in one call, checked with set operations).

numba is imported here only, so machines without it (or GPU jobs that never count k-mers)
import ``kmers`` unchanged; ``kmers`` falls back to numpy when it is missing.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

from genomelab.binning import kmers
from genomelab.io.errors import FormatError
from genomelab.io.fasta import CHUNK_BYTES, RecordNames, read_record_chunks

# Per k (6, 5, 4, 3): the canonical codes in column order, their reverse complements, the
# number of non-palindromic pairs (listed first; see ``kmers.CanonicalTable``) and the
# group's first column. Unsigned indices: numba then emits no negative-index wraparound
# test, which kept LLVM from vectorising the fold.
FOLDS = tuple(
    (
        kmers.TABLES[k].codes.astype(np.uint32),
        kmers.TABLES[k].partner.astype(np.uint32),
        kmers.TABLES[k].n_pairs,
        kmers.GROUP_SLICES[f"k{k}"].start,
    )
    for k in kmers.KS
)
GC_COLUMN = kmers.GROUP_SLICES["gc"].start
N_CANONICAL_6 = kmers.N_CANONICAL[6]
# Byte classes for FASTA text: 0-3 bases (either case), INVALID (N, IUPAC codes, anything
# else: breaks k-mer windows, counts as a base), SKIP (line breaks, carriage returns,
# spaces, tabs: not bases, as ``fasta.read_fasta`` removes them) and GT ('>').
INVALID, SKIP, GT = kmers.INVALID, 5, 6
FASTA_CLASSES = kmers.LUT.copy()
FASTA_CLASSES[list(b"\n\r \t")] = SKIP
FASTA_CLASSES[ord(">")] = GT
# Two bytes (little-endian uint16) -> the 4-bit code of both bases, or 255 unless both are
# bases (in either case); the same for FASTA_CLASSES and kmers.LUT.
_both = (kmers.LUT[:, None] < 4) & (kmers.LUT[None, :] < 4)
PAIR_CODES = np.where(_both, (kmers.LUT[None, :] << 2) | kmers.LUT[:, None], 255).astype(np.uint8).ravel()
ONE, TWO, THREE, EIGHT = np.uint64(1), np.uint64(2), np.uint64(3), np.uint64(8)
# int32 counters (half the cache of int64) are exact while a record has fewer bases.
MAX_RECORD_BASES = 2**31 - 1
# Pieces the reader hands to worker threads: small enough to keep 2 threads busy on a
# file of a few chunks, large enough that handing one over costs nothing.
PIECE_BYTES = 1 << 20


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _run_end(code, run, c5, c4, c3, c2, c1):  # pragma: no cover
    """At the end of a run of ``run`` valid bases (last bases in ``code``): its last k-mers
    for k < 6 start no 6-mer, so they are missing from the prefix marginals."""
    if run >= 5:
        c5[code & 1023] += 1
    if run >= 4:
        c4[code & 255] += 1
    if run >= 3:
        c3[code & 63] += 1
    if run >= 2:
        c2[code & 15] += 1
    if run >= 1:
        c1[code & 3] += 1


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _count_bases(buf, q, stop, classes, pairs, c6, c5, c4, c3, c2, c1):  # pragma: no cover
    """Strand-specific 6-mer counts, and the run ends of k = 5..1, of the bases from
    ``buf[q]`` to ``stop`` or to the next record (a '>' at a line start), added to the
    zeroed ``c6``..``c1``. ``buf[stop]`` must not be a base (a sentinel), so the inner loop
    tests nothing but the byte's class (and, four bases at a time, ``stop``); ``pairs`` is
    ``PAIR_CODES``. Returns ``(end, n_skipped, gt_inside)``: where it
    stopped, the SKIP bytes passed, and whether it stopped at a '>' inside a sequence."""
    # Indexing with an unsigned q spares numba's negative-index test in the hot loop.
    code = 0  # the last bases, 2 bits each; not masked, the counters mask it
    run = 0
    n_skipped = 0
    while True:
        c = classes[buf[np.uint64(q)]]
        if c < 4:
            code = (code << 2) | c
            run += 1
            q += 1
            if run >= 6:
                c6[code & 4095] += 1
                # The common case, a run of bases: four at a time (two lookups of byte
                # pairs, ~20% faster than four of single bytes), then one at a time.
                while True:
                    while q + 4 <= stop:
                        u = np.uint64(q)
                        p0 = pairs[np.uint64(buf[u]) | (np.uint64(buf[u + ONE]) << EIGHT)]
                        p1 = pairs[np.uint64(buf[u + TWO]) | (np.uint64(buf[u + THREE]) << EIGHT)]
                        if (p0 | p1) >= 16:
                            break
                        code = (code << 8) | (p0 << 4) | p1
                        c6[(code >> 6) & 4095] += 1
                        c6[(code >> 4) & 4095] += 1
                        c6[(code >> 2) & 4095] += 1
                        c6[code & 4095] += 1
                        q += 4
                    c = classes[buf[np.uint64(q)]]
                    if c >= 4:
                        break
                    code = (code << 2) | c
                    c6[code & 4095] += 1
                    q += 1
            continue
        if q >= stop:
            break
        if c == SKIP:
            n_skipped += 1
        elif c == GT:
            if buf[q - 1] == 10:  # the next record's header
                break
            _run_end(code, run, c5, c4, c3, c2, c1)
            return q, n_skipped, True
        else:
            _run_end(code, run, c5, c4, c3, c2, c1)
            run = 0
            code = 0
        q += 1
    _run_end(code, run, c5, c4, c3, c2, c1)
    return q, n_skipped, False


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _add_marginal(lower, higher):  # pragma: no cover
    """Prefix marginal: the k-mer at i is the first k bases of the (k+1)-mer at i."""
    for x in range(len(lower)):
        lower[x] += higher[4 * x] + higher[4 * x + 1] + higher[4 * x + 2] + higher[4 * x + 3]


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _fold_into(row, start, counts, codes, partner, n_pairs, pair_sums):  # pragma: no cover
    """Canonical frequencies of one k into ``row[start:start + len(codes)]``: a k-mer's
    count plus its reverse complement's, over all k-mers (rows without one stay zero).
    Returns the number of valid k-mers.

    The gather goes to ``pair_sums`` first so the division runs as a contiguous loop that
    LLVM vectorises. Below 2**24 it divides in float32, as the numpy engine does; that
    equals the float64 quotient rounded to float32 (double rounding is harmless for a
    quotient of floats when the wider format has >= 2 * 24 + 2 bits), so profiles do not
    depend on the branch."""
    total = 0
    for x in range(len(counts)):
        total += counts[x]
    n = len(codes)
    for j in range(n_pairs):
        pair_sums[j] = counts[codes[j]] + counts[partner[j]]
    for j in range(n_pairs, n):
        pair_sums[j] = counts[codes[j]]
    dst = row[start : start + n]
    if total < 2**24:
        scale = np.float32(max(total, 1))
        for j in range(n):
            dst[j] = np.float32(pair_sums[j]) / scale
    else:
        scale64 = float(total)
        for j in range(n):
            dst[j] = pair_sums[j] / scale64
    return total


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _finish_row(row, folds, gc_column, c6, c5, c4, c3, c2, c1, pair_sums):  # pragma: no cover
    """Marginals for k = 5..1, the folded frequencies of every k and GC into ``row``.
    Returns the number of valid 6-mers."""
    _add_marginal(c5, c6)
    _add_marginal(c4, c5)
    _add_marginal(c3, c4)
    _add_marginal(c2, c3)
    _add_marginal(c1, c2)
    f6, f5, f4, f3 = folds
    total = _fold_into(row, f6[3], c6, f6[0], f6[1], f6[2], pair_sums)
    _fold_into(row, f5[3], c5, f5[0], f5[1], f5[2], pair_sums)
    _fold_into(row, f4[3], c4, f4[0], f4[1], f4[2], pair_sums)
    _fold_into(row, f3[3], c3, f3[0], f3[1], f3[2], pair_sums)
    gc = np.int64(c1[1]) + c1[2]
    acgt = gc + c1[0] + c1[3]
    row[gc_column] = gc / acgt if acgt > 0 else 0.0
    return total


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _counters():  # pragma: no cover
    """Strand-specific counts of one contig (4**k entries for k = 6..1), reused across
    contigs, and the fold's scratch."""
    return (
        np.zeros(4096, np.int32),
        np.zeros(1024, np.int32),
        np.zeros(256, np.int32),
        np.zeros(64, np.int32),
        np.zeros(16, np.int32),
        np.zeros(4, np.int32),
        np.zeros(N_CANONICAL_6, np.int32),
    )


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _zero(c6, c5, c4, c3, c2, c1):  # pragma: no cover
    c6[:] = 0
    c5[:] = 0
    c4[:] = 0
    c3[:] = 0
    c2[:] = 0
    c1[:] = 0


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _profile_kernel(buf, starts, lengths, classes, pairs, folds, gc_column, out, totals):  # pragma: no cover
    # (compiled: coverage cannot see inside; tests compare it with the numpy counter)
    c6, c5, c4, c3, c2, c1, pair_sums = _counters()
    for i in range(len(starts)):
        _zero(c6, c5, c4, c3, c2, c1)
        _count_bases(buf, starts[i], starts[i] + lengths[i], classes, pairs, c6, c5, c4, c3, c2, c1)
        totals[i] = _finish_row(out[i], folds, gc_column, c6, c5, c4, c3, c2, c1, pair_sums)


def profile_block(seqs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """[n, N_FEATURES] float32 profiles and [n] int64 valid 6-mer totals (as
    ``kmers.profile_block``). Releases the GIL while counting, so blocks run in threads."""
    n = len(seqs)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    if n and lengths.max() > MAX_RECORD_BASES:
        raise ValueError(f"a contig has {lengths.max()} bases; the counter takes at most {MAX_RECORD_BASES}")
    starts = np.zeros(n, dtype=np.int64)
    if n > 1:
        np.cumsum(lengths[:-1] + 1, out=starts[1:])
    # One copy of the block's bases, each followed by a byte that is no base (the sentinel
    # the counting loop stops at; whitespace and '>' in these bytes are invalid bases).
    buf = np.frombuffer(b"\0".join(seqs) + b"\0", dtype=np.uint8)
    out = np.empty((n, kmers.N_FEATURES), dtype=np.float32)  # every column is written
    totals = np.empty(n, dtype=np.int64)
    _profile_kernel(buf, starts, lengths, kmers.LUT, PAIR_CODES, FOLDS, GC_COLUMN, out, totals)
    return out, totals


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _scan_kernel(
    buf,
    pos,
    stop,
    classes,
    pairs,
    min_length,
    min_valid,
    max_bases,
    folds,
    gc_column,
    out,
    lengths,
    rows,
    names,
):  # pragma: no cover
    """Profile the FASTA records of ``buf[pos:stop]`` (``buf[pos]`` is a header's '>',
    ``buf[stop]`` a sentinel '>') until ``out`` or ``lengths`` is full or ``max_bases``
    bases were profiled. Per record: its bases (line breaks etc. removed) in ``lengths``,
    its row of ``out`` in ``rows`` (-1: shorter than ``min_length`` or with fewer valid
    6-mers than ``min_valid``, see ``kmers.min_valid_kmers``), its name (the header's first word) plus a newline appended to ``names``.
    Stops after a record with a '>' inside its sequence. Returns ``(pos, n_records,
    n_rows, n_name_bytes, gt_inside)``."""
    c6, c5, c4, c3, c2, c1, pair_sums = _counters()
    n_records = 0
    n_rows = 0
    n_name = 0
    n_bases = 0
    while pos < stop and n_records < len(lengths) and n_rows < len(out) and n_bases < max_bases:
        header_end = pos + 1
        while header_end < stop and buf[header_end] != 10:
            header_end += 1
        # The name: the header's first word (bytes.split's whitespace: 9-13 and space).
        q = pos + 1
        while q < header_end and (buf[q] == 32 or 9 <= buf[q] <= 13):
            q += 1
        while q < header_end and not (buf[q] == 32 or 9 <= buf[q] <= 13):
            names[n_name] = buf[q]
            n_name += 1
            q += 1
        names[n_name] = 10
        n_name += 1
        seq_start = min(header_end + 1, stop)
        _zero(c6, c5, c4, c3, c2, c1)
        end, n_skipped, gt_inside = _count_bases(buf, seq_start, stop, classes, pairs, c6, c5, c4, c3, c2, c1)
        length = end - seq_start - n_skipped
        lengths[n_records] = length
        rows[n_records] = -1
        n_records += 1
        pos = end
        if gt_inside:
            return pos, n_records, n_rows, n_name, True
        if length >= min_length and length <= MAX_RECORD_BASES:
            if _finish_row(out[n_rows], folds, gc_column, c6, c5, c4, c3, c2, c1, pair_sums) >= min_valid:
                rows[n_records - 1] = n_rows
                n_rows += 1
                n_bases += length
    return pos, n_records, n_rows, n_name, False


@dataclass
class _Scanned:
    """One ``_scan_kernel`` call's output: [n_rows, N_FEATURES] profiles, per record its
    bases and row (-1: not profiled), the names, and where the scan stopped."""

    features: np.ndarray
    lengths: np.ndarray
    rows: np.ndarray
    names: list[str]
    gt_inside: bool
    pos: int


class _Scanner:
    def __init__(self, min_length: int, block_contigs: int, block_bases: int) -> None:
        self.min_length = min_length
        self.block_contigs = block_contigs
        self.block_bases = block_bases
        # Records per call: short ones take no row, so allow several times a block.
        self.max_records = max(4 * block_contigs, 4096)

    def __call__(self, buf: np.ndarray, pos: int, stop: int) -> _Scanned:
        out = np.empty((self.block_contigs, kmers.N_FEATURES), dtype=np.float32)
        lengths = np.empty(self.max_records, dtype=np.int64)
        rows = np.empty(self.max_records, dtype=np.int64)
        names = np.empty(stop - pos + 1, dtype=np.uint8)  # names are no longer than their text
        pos, n_records, n_rows, n_name, gt_inside = _scan_kernel(
            buf,
            pos,
            stop,
            FASTA_CLASSES,
            PAIR_CODES,
            self.min_length,
            kmers.min_valid_kmers(self.min_length),
            self.block_bases,
            FOLDS,
            GC_COLUMN,
            out,
            lengths,
            rows,
            names,
        )
        # One decode for all names: "replace" works byte by byte, so this equals decoding
        # each name alone.
        decoded = names[: n_name - 1].tobytes().decode("ascii", errors="replace").split("\n")
        return _Scanned(
            out[:n_rows], lengths[:n_records], rows[:n_records], decoded, bool(gt_inside), int(pos)
        )


def _pieces(path: Path, chunk_bytes: int, piece_bytes: int | None) -> Iterator[tuple[np.ndarray, int, int]]:
    """``(buf, start, stop)`` of whole records with a sentinel at ``buf[stop]``. Without
    ``piece_bytes``: views of the reader's reused buffer (used before the next is asked
    for). With it: copies of about ``piece_bytes`` each, for worker threads."""
    for data, start, stop in read_record_chunks(path, chunk_bytes):
        if piece_bytes is None:
            yield np.frombuffer(data, dtype=np.uint8), start, stop
            continue
        while start < stop:
            cut = data.find(b"\n>", start + piece_bytes, stop)
            end = stop if cut < 0 else cut + 1
            piece = np.empty(end - start + 1, dtype=np.uint8)
            piece[:-1] = np.frombuffer(data, dtype=np.uint8, count=end - start, offset=start)
            piece[-1] = ord(">")
            yield piece, 0, end - start
            start = end


def iter_fasta_profiles(
    path: str | os.PathLike,
    min_length: int = 0,
    block_contigs: int = 512,
    block_bases: int = 16_000_000,
    stats: kmers.ProfileStats | None = None,
    threads: int = 1,
    chunk_bytes: int = CHUNK_BYTES,
) -> Iterator[kmers.ProfileBlock]:
    """``kmers.iter_profiles(read_fasta(path), ...)`` with the parsing compiled: the same
    blocks' rows (blocks may be cut at other records), the same stats, the same errors.

    With ``threads`` > 1 the reader cuts the file into pieces of whole records that worker
    threads scan (the kernel releases the GIL, so does gzip's inflate) while this thread
    reads on; blocks keep their order, and at most ``threads + 1`` pieces (a few MB
    each) and their blocks are in memory.
    """
    kmers.check_profile_args(min_length, block_contigs, block_bases, threads)
    path = Path(path)
    stats = stats if stats is not None else kmers.ProfileStats()
    checker = RecordNames(path)
    scan = _Scanner(min_length, block_contigs, block_bases)

    def block(done: _Scanned) -> kmers.ProfileBlock:
        checker.check_many(done.names, done.lengths, done.gt_inside)
        if len(done.lengths) and done.lengths.max() > MAX_RECORD_BASES:
            i = int(np.argmax(done.lengths > MAX_RECORD_BASES))
            raise ValueError(
                f"{path}: record {done.names[i]!r} has {done.lengths[i]} bases; "
                f"the k-mer counter takes at most {MAX_RECORD_BASES}"
            )
        kept = done.rows >= 0
        short = done.lengths < min_length
        stats.n_records += len(done.lengths)
        stats.n_short += int(short.sum())
        stats.n_no_kmers += len(done.lengths) - int(short.sum()) - len(done.features)
        stats.n_kept += len(done.features)
        lengths = done.lengths[kept]
        stats.bp_kept += int(lengths.sum())
        names = [n for n, k in zip(done.names, kept.tolist(), strict=True) if k]
        return kmers.ProfileBlock(names, lengths, done.features)

    if threads == 1:
        for buf, pos, stop in _pieces(path, chunk_bytes, None):
            while pos < stop:
                done = scan(buf, pos, stop)
                pos = done.pos
                yield block(done)
    else:
        piece_bytes = max(1, min(chunk_bytes, PIECE_BYTES))
        with ThreadPoolExecutor(threads) as pool:
            pending: deque = deque()

            def drain() -> Iterator[kmers.ProfileBlock]:
                buf, stop, future = pending.popleft()
                done = future.result()
                yield block(done)
                # A piece with more records than one block: the rest, in order.
                while done.pos < stop:
                    done = scan(buf, done.pos, stop)
                    yield block(done)

            for buf, pos, stop in _pieces(path, chunk_bytes, piece_bytes):
                pending.append((buf, stop, pool.submit(scan, buf, pos, stop)))
                if len(pending) > threads:
                    yield from drain()
            while pending:
                yield from drain()
    if not checker.seen:
        raise FormatError(path, "no FASTA records found")
