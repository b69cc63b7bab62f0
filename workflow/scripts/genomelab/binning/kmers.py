"""Canonical k-mer profiles of contigs: one counting pass serves every k.

The profile of a contig is the concatenation of canonical 6-, 5-, 4- and 3-mer frequencies
(2,080 + 512 + 136 + 32 columns, each group summing to 1) and its GC fraction: 2,761
columns. Windows that contain anything but A, C, G, T (either case) are skipped.

Speed comes from two facts. (1) Only 6-mers are counted directly: every valid k-mer
(k < 6) is the prefix of the valid (k+1)-mer starting at the same position, except at the
"window ends" where the (k+1)-mer would run into a contig end or an invalid base; so the
k-mer counts are the prefix marginals of the (k+1)-mer counts plus those few end windows.
(2) All contigs of a block share one ``np.bincount`` over ``row * 4096 + code``: there is
no Python loop over contigs or positions. The per-block count matrix is bounded by
``block_contigs x 4096`` integers, and the HDF5 output is written block by block.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genomelab.binning.fasta import read_fasta

logger = logging.getLogger(__name__)

KS = (6, 5, 4, 3)
MAX_K = max(KS)
INVALID = 4
# Byte -> 2-bit code; everything that is not A/C/G/T in either case (N, IUPAC, gaps) is 4.
LUT = np.full(256, INVALID, dtype=np.uint8)
for _code, _bases in enumerate((b"Aa", b"Cc", b"Gg", b"Tt")):
    for _b in _bases:
        LUT[_b] = _code


def reverse_complement_codes(k: int) -> np.ndarray:
    """[4**k] code of the reverse complement of every k-mer code (A=0, C=1, G=2, T=3)."""
    codes = np.arange(4**k, dtype=np.int64)
    rc = np.zeros_like(codes)
    for pos in range(k):
        base = (codes >> (2 * pos)) & 3
        rc |= (3 - base) << (2 * (k - 1 - pos))
    return rc


@dataclass(frozen=True)
class CanonicalTable:
    """Canonical k-mers for one k: ``codes[j]`` is the smaller of a k-mer and its reverse
    complement (lexicographic order, since A<C<G<T); ``partner[j]`` its reverse complement."""

    k: int
    codes: np.ndarray
    partner: np.ndarray

    @property
    def n(self) -> int:
        return len(self.codes)

    def names(self) -> list[str]:
        return [decode(int(c), self.k) for c in self.codes]

    def fold(self, counts: np.ndarray) -> np.ndarray:
        """[4**k, n] strand-specific counts -> [n_canonical, n] canonical counts."""
        palindrome = self.codes == self.partner
        out = counts[self.codes]
        out[~palindrome] += counts[self.partner[~palindrome]]
        return out


def canonical_table(k: int) -> CanonicalTable:
    rc = reverse_complement_codes(k)
    codes = np.arange(4**k, dtype=np.int64)
    keep = codes <= rc
    return CanonicalTable(k, codes[keep], rc[keep])


TABLES = {k: canonical_table(k) for k in KS}
N_CANONICAL = {k: TABLES[k].n for k in KS}  # {6: 2080, 5: 512, 4: 136, 3: 32}
GROUP_SLICES: dict[str, slice] = {}
_start = 0
for _k in KS:
    GROUP_SLICES[f"k{_k}"] = slice(_start, _start + N_CANONICAL[_k])
    _start += N_CANONICAL[_k]
GROUP_SLICES["gc"] = slice(_start, _start + 1)
N_FEATURES = _start + 1  # 2,761


def decode(code: int, k: int) -> str:
    return "".join("ACGT"[(code >> (2 * (k - 1 - i))) & 3] for i in range(k))


def feature_names() -> list[str]:
    """[N_FEATURES] column names: ``k6_AAAAAA`` ... ``k3_TCA``..., ``gc``."""
    names = [f"k{k}_{s}" for k in KS for s in TABLES[k].names()]
    return names + ["gc"]


def count_block(seqs: Sequence[bytes]) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Strand-specific k-mer counts of a block of contigs in one pass.

    Returns ``({k: [4**k, n] int64 counts for k = 6..1}, [n] int64 valid 6-mer totals)``.
    The k-mer axis comes first so that prefix marginals and canonical folding are
    contiguous row operations.
    """
    n = len(seqs)
    if n == 0:
        return {k: np.zeros((4**k, 0), dtype=np.int64) for k in range(1, MAX_K + 1)}, np.zeros(0, np.int64)
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    # One separator after every contig plus MAX_K of padding: windows crossing contigs
    # become invalid, and every valid window starts at least MAX_K before the buffer end,
    # so the 6-mer code exists at every position where any valid k-mer starts.
    buf = np.frombuffer(b"N".join(seqs) + b"N" * (MAX_K + 1), dtype=np.uint8)
    codes = LUT[buf]
    size = len(codes)
    invalid_cum = np.zeros(size + 1, dtype=np.int32)
    np.cumsum(codes == INVALID, out=invalid_cum[1:])
    bits = (codes & 3).astype(np.uint16)
    n_win = size - MAX_K + 1
    code6 = bits[:n_win] << 10
    for j in range(1, MAX_K):
        code6 |= bits[j : j + n_win] << (2 * (MAX_K - 1 - j))
    # Row (contig index) of every position; separators belong to the contig before them.
    rows = np.repeat(np.arange(n, dtype=np.int64), lengths + 1)
    rows = np.concatenate([rows, np.full(n_win - len(rows), n - 1, dtype=np.int64)])

    def valid(k: int) -> np.ndarray:
        return (invalid_cum[k : k + n_win] - invalid_cum[:n_win]) == 0

    valid6 = valid(MAX_K)
    # bincount is fastest on int64 indices (int32 input is converted first).
    index = code6[valid6].astype(np.int64) * n + rows[valid6]
    counts = {MAX_K: np.bincount(index, minlength=4**MAX_K * n).reshape(4**MAX_K, n)}
    higher = valid6
    for k in range(MAX_K - 1, 0, -1):
        valid_k = valid(k)
        ends = np.flatnonzero(valid_k & ~higher)
        end_index = (code6[ends] >> (2 * (MAX_K - k))).astype(np.int64) * n + rows[ends]
        marginal = counts[k + 1].reshape(4**k, 4, n).sum(axis=1)
        marginal += np.bincount(end_index, minlength=4**k * n).reshape(4**k, n)
        counts[k] = marginal
        higher = valid_k
    return counts, counts[MAX_K].sum(axis=0)


def canonical_counts_block(seqs: Sequence[bytes]) -> dict[int, np.ndarray]:
    """{k: [n, n_canonical(k)] int64 canonical counts} for k in KS (used by tests)."""
    counts, _ = count_block(seqs)
    return {k: TABLES[k].fold(counts[k]).T for k in KS}


def profile_block(seqs: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """[n, N_FEATURES] float32 profiles and [n] valid 6-mer totals for a block of contigs.

    Rows with no valid 6-mer are all-zero; callers drop them (see ``iter_profiles``).
    """
    counts, totals = count_block(seqs)
    out = np.zeros((len(seqs), N_FEATURES), dtype=np.float32)
    for k in KS:
        canon = TABLES[k].fold(counts[k]).astype(np.float32)
        denom = canon.sum(axis=0, keepdims=True)
        np.divide(canon, denom, out=canon, where=denom > 0)
        out[:, GROUP_SLICES[f"k{k}"]] = canon.T
    base = counts[1].astype(np.float64)
    acgt = base.sum(axis=0)
    gc = np.divide(base[1] + base[2], acgt, out=np.zeros_like(acgt), where=acgt > 0)
    out[:, GROUP_SLICES["gc"].start] = gc
    return out, totals


def naive_canonical_counts(seq: bytes | str, k: int) -> dict[str, int]:
    """Reference counter: canonical k-mer counts by walking every window (slow, exact)."""
    text = seq.decode() if isinstance(seq, bytes) else seq
    text = text.upper()
    comp = str.maketrans("ACGT", "TGCA")
    out: dict[str, int] = {}
    for i in range(len(text) - k + 1):
        word = text[i : i + k]
        if any(b not in "ACGT" for b in word):
            continue
        rc = word.translate(comp)[::-1]
        key = min(word, rc)
        out[key] = out.get(key, 0) + 1
    return out


def naive_profile(seq: bytes | str) -> np.ndarray:
    """[N_FEATURES] profile from ``naive_canonical_counts`` (for tests and benchmarks)."""
    out = np.zeros(N_FEATURES, dtype=np.float64)
    for k in KS:
        counts = naive_canonical_counts(seq, k)
        names = TABLES[k].names()
        vec = np.array([counts.get(n, 0) for n in names], dtype=np.float64)
        if vec.sum() > 0:
            vec /= vec.sum()
        out[GROUP_SLICES[f"k{k}"]] = vec
    text = (seq.decode() if isinstance(seq, bytes) else seq).upper()
    acgt = sum(text.count(b) for b in "ACGT")
    out[-1] = (text.count("G") + text.count("C")) / acgt if acgt else 0.0
    return out


@dataclass
class ProfileBlock:
    names: list[str]
    lengths: np.ndarray  # [n] int64
    features: np.ndarray  # [n, N_FEATURES] float32


def _blocks(
    records: Iterable[tuple[str, bytes]], block_contigs: int, block_bases: int
) -> Iterator[list[tuple[str, bytes]]]:
    block: list[tuple[str, bytes]] = []
    n_bases = 0
    for rec in records:
        block.append(rec)
        n_bases += len(rec[1])
        if len(block) >= block_contigs or n_bases >= block_bases:
            yield block
            block, n_bases = [], 0
    if block:
        yield block


@dataclass
class ProfileStats:
    n_records: int = 0
    n_short: int = 0
    n_no_kmers: int = 0
    n_kept: int = 0
    bp_kept: int = 0


def iter_profiles(
    records: Iterable[tuple[str, bytes]],
    min_length: int = 0,
    block_contigs: int = 2048,
    block_bases: int = 16_000_000,
    stats: ProfileStats | None = None,
) -> Iterator[ProfileBlock]:
    """Stream ``ProfileBlock``s for ``records``; contigs shorter than ``min_length`` (or
    without a single valid 6-mer) are skipped and counted in ``stats``."""
    if min_length < 0:
        raise ValueError(f"min_length must be >= 0, not {min_length}")
    if block_contigs < 1 or block_bases < 1:
        raise ValueError("block_contigs and block_bases must be >= 1")
    stats = stats if stats is not None else ProfileStats()

    def kept() -> Iterator[tuple[str, bytes]]:
        for name, seq in records:
            stats.n_records += 1
            if len(seq) < min_length:
                stats.n_short += 1
                continue
            yield name, seq

    for block in _blocks(kept(), block_contigs, block_bases):
        feats, totals = profile_block([s for _, s in block])
        ok = totals > 0
        stats.n_no_kmers += int((~ok).sum())
        names = [n for (n, _), good in zip(block, ok, strict=True) if good]
        lengths = np.array([len(s) for (_, s), good in zip(block, ok, strict=True) if good], dtype=np.int64)
        stats.n_kept += len(names)
        stats.bp_kept += int(lengths.sum())
        yield ProfileBlock(names, lengths, feats[ok])


FEATURES_DS, NAMES_DS, LENGTHS_DS = "features", "names", "lengths"


def write_profiles_h5(
    fasta: str | os.PathLike,
    out_path: str | os.PathLike,
    min_length: int,
    block_contigs: int = 2048,
    block_bases: int = 16_000_000,
    chunk_rows: int = 1024,
) -> ProfileStats:
    """Profile every contig of ``fasta`` into an HDF5 file, block by block.

    Datasets: ``names`` [n] str, ``lengths`` [n] int64, ``features`` [n, 2761] float32
    (chunked by rows so readers stream it); attributes record the parameters and the
    column layout.
    """
    import h5py

    from genomelab.io.atomic import atomic_output

    stats = ProfileStats()
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as h5:
        feats = h5.create_dataset(
            FEATURES_DS,
            shape=(0, N_FEATURES),
            maxshape=(None, N_FEATURES),
            dtype="float32",
            chunks=(chunk_rows, N_FEATURES),
        )
        names = h5.create_dataset(
            NAMES_DS, shape=(0,), maxshape=(None,), dtype=h5py.string_dtype(), chunks=(max(chunk_rows, 1024),)
        )
        lengths = h5.create_dataset(
            LENGTHS_DS, shape=(0,), maxshape=(None,), dtype="int64", chunks=(max(chunk_rows, 1024),)
        )
        n = 0
        for block in iter_profiles(read_fasta(fasta), min_length, block_contigs, block_bases, stats):
            m = len(block.names)
            if m == 0:
                continue
            for ds in (feats, names, lengths):
                ds.resize(n + m, axis=0)
            feats[n : n + m] = block.features
            names[n : n + m] = block.names
            lengths[n : n + m] = block.lengths
            n += m
        if n == 0:
            raise ValueError(
                f"{fasta}: no contig of at least {min_length} bp with a valid 6-mer "
                f"({stats.n_records} records, {stats.n_short} shorter than min_length)"
            )
        h5.attrs["ks"] = list(KS)
        h5.attrs["group_names"] = list(GROUP_SLICES)
        h5.attrs["group_starts"] = [s.start for s in GROUP_SLICES.values()]
        h5.attrs["group_stops"] = [s.stop for s in GROUP_SLICES.values()]
        h5.attrs["min_length"] = min_length
        h5.attrs["source"] = str(fasta)
        h5.create_dataset(
            "feature_names", data=np.array(feature_names(), dtype=object), dtype=h5py.string_dtype()
        )
    logger.info(
        "profiled %d of %d contigs (%d bp) from %s: %d shorter than %d bp, %d without a valid 6-mer",
        stats.n_kept,
        stats.n_records,
        stats.bp_kept,
        fasta,
        stats.n_short,
        min_length,
        stats.n_no_kmers,
    )
    return stats


@dataclass
class Profiles:
    names: np.ndarray  # [n] str
    lengths: np.ndarray  # [n] int64
    features: np.ndarray  # [n, N_FEATURES] float32


def read_profiles_h5(
    path: str | os.PathLike, rows: np.ndarray | None = None, chunk_rows: int = 65536
) -> Profiles:
    """Read a profiles file (all rows, or the sorted ``rows``) chunk by chunk."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"k-mer profile file {path} does not exist")
    with h5py.File(path, "r") as h5:
        for ds in (FEATURES_DS, NAMES_DS, LENGTHS_DS):
            if ds not in h5:
                raise ValueError(f"{path} has no dataset {ds!r}: not a genomelab k-mer profile file")
        n, d = h5[FEATURES_DS].shape
        if d != N_FEATURES:
            raise ValueError(f"{path}: features have {d} columns, expected {N_FEATURES}")
        names = np.asarray(h5[NAMES_DS].asstr()[:], dtype=object)
        lengths = h5[LENGTHS_DS][:]
        if rows is None:
            feats = np.empty((n, d), dtype=np.float32)
            for start in range(0, n, chunk_rows):
                h5[FEATURES_DS].read_direct(
                    feats, np.s_[start : start + chunk_rows], np.s_[start : start + chunk_rows]
                )
        else:
            feats = h5[FEATURES_DS][np.asarray(rows)]
            names, lengths = names[rows], lengths[rows]
    return Profiles(names, lengths, feats)
