"""Canonical k-mer profiles of contigs: one counting pass serves every k.

The profile of a contig is the concatenation of canonical 6-, 5-, 4- and 3-mer frequencies
(2,080 + 512 + 136 + 32 columns, each group summing to 1) and its GC fraction: 2,761
columns. Windows that contain anything but A, C, G, T (either case) are skipped.

Speed comes from three facts. (1) Only 6-mers are counted directly: every valid k-mer
(k < 6) is the prefix of the valid (k+1)-mer starting at the same position, except at the
"window ends" where the (k+1)-mer would run into a contig end or an invalid base; so the
k-mer counts are the prefix marginals of the (k+1)-mer counts plus those few end windows.
(2) The 6-mer codes of a whole block of contigs are computed in a handful of vectorised
passes, invalid windows are found from the (rare) invalid bases rather than tested at
every position, and each contig's counts are one ``np.bincount`` over its uint16 codes.
(3) Marginals, canonical folding and normalisation run on float32 count matrices (exact
below 2**24). Memory is bounded by ``block_contigs x 4097`` counts, and the HDF5 output is
written block by block. That is the numpy engine; where numba is installed the default is
the compiled one-pass kernel in ``kmer_kernel`` (same identity, same profiles), which for
files (``iter_fasta_profiles``) also parses the FASTA text itself: about 5x the numpy engine's
speed from a file, 3.5x on records parsed in Python (bench_binning_features.json).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genomelab.io.fasta import read_fasta

logger = logging.getLogger(__name__)

KS = (6, 5, 4, 3)
MAX_K = max(KS)
INVALID = 4
# Byte -> 2-bit code; everything that is not A/C/G/T in either case (N, IUPAC, gaps) is 4.
LUT = np.full(256, INVALID, dtype=np.uint8)
for _code, _bases in enumerate((b"Aa", b"Cc", b"Gg", b"Tt")):
    for _b in _bases:
        LUT[_b] = _code
# bytes.translate runs at memory speed, unlike a numpy gather with uint8 indices.
TRANSLATE = LUT.tobytes()


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
    complement (lexicographic order, since A<C<G<T); ``partner[j]`` its reverse complement.

    Non-palindromic k-mers come first (sorted), then the palindromes (sorted): the fold
    then adds the partner counts to one contiguous block of columns.
    """

    k: int
    codes: np.ndarray
    partner: np.ndarray
    n_pairs: int
    gather: np.ndarray  # [n + n_pairs]: the canonical k-mers, then the partners of the pairs

    @property
    def n(self) -> int:
        return len(self.codes)

    def names(self) -> list[str]:
        return [decode(int(c), self.k) for c in self.codes]

    def fold(self, counts: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """[n, 4**k] strand-specific counts -> [n, n_canonical] canonical counts (same dtype).

        One gather of the canonical k-mers followed by their partners (a single
        ``np.take`` is much faster than two), then one contiguous add. ``out`` is an
        optional [n, n + n_pairs] buffer for the gather.
        """
        # mode="clip": with mode="raise" numpy buffers ``out`` (the indices are valid anyway).
        both = np.take(counts, self.gather, axis=1, out=out, mode="clip")
        out = both[:, : self.n]
        out[:, : self.n_pairs] += both[:, self.n :]
        return out


def canonical_table(k: int) -> CanonicalTable:
    rc = reverse_complement_codes(k)
    codes = np.arange(4**k, dtype=np.int64)
    pairs = codes[codes < rc]
    palindromes = codes[codes == rc]
    ordered = np.concatenate([pairs, palindromes])
    return CanonicalTable(k, ordered, rc[ordered], len(pairs), np.concatenate([ordered, rc[pairs]]))


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


class Workspace:
    """Reusable arrays for ``count_block``/``profile_block``, grown on demand.

    Fresh multi-megabyte arrays for every block cost page faults that take longer than
    the arithmetic on them (measured: an allocating shift took 5x its in-place twin), so
    every per-base and per-matrix temporary lives here and is overwritten block by block.
    Arrays returned by ``count_block`` are views into it, valid until the next call.
    """

    def __init__(self) -> None:
        self._arrays: dict[str, np.ndarray] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
        size = int(np.prod(shape))
        arr = self._arrays.get(name)
        if arr is None or arr.dtype != np.dtype(dtype) or arr.size < size:
            arr = np.empty(max(size, 2 * arr.size if arr is not None else 0), dtype=dtype)
            self._arrays[name] = arr
        return arr[:size].reshape(shape)


def count_block(
    seqs: Sequence[bytes], dtype: type = np.int64, workspace: Workspace | None = None
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Strand-specific k-mer counts of a block of contigs in one pass over the bases.

    Returns ``({k: [n, 4**k] counts for k = 6..1}, [n] int64 valid 6-mer totals)``. Counts
    are exact in ``dtype``: int64 always, float32 while every count is below 2**24 (the
    caller checks contig lengths), which halves the memory traffic of the matrix steps.
    With a ``workspace`` the count matrices are views into it.
    """
    n = len(seqs)
    if n == 0:
        return {k: np.zeros((0, 4**k), dtype=dtype) for k in range(1, MAX_K + 1)}, np.zeros(0, np.int64)
    ws = workspace if workspace is not None else Workspace()
    lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=n)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    # 2-bit codes of all contigs, one invalid separator after each, plus MAX_K of padding:
    # windows crossing contigs are invalid, and every valid window starts early enough for
    # its 6-mer code to exist. Translating contig by contig into the reused buffer avoids
    # a block-sized fresh string.
    m = int(starts[-1] + lengths[-1]) + MAX_K + 1
    m += m % 2  # even, for the uint16 views below
    codes = ws.get("codes", (m,), np.uint8)
    view = memoryview(codes)
    for start, seq in zip(starts.tolist(), seqs, strict=True):
        view[start : start + len(seq)] = seq.translate(TRANSLATE)
    codes[starts + lengths] = INVALID
    codes[starts[-1] + lengths[-1] :] = INVALID
    # 6-mer code at every position from 2-mer and 4-mer codes: 3 shifts instead of 5. The
    # uint8 shifts run on uint16 views (x86 has no 8-bit SIMD shift; numpy's uint8 shift
    # is ~10x slower): no bits cross a byte as 2-mers and 4-mers fit in a byte.
    bits = np.bitwise_and(codes, 3, out=ws.get("bits", (m,), np.uint8))
    two = ws.get("two", (m,), np.uint8)
    np.left_shift(bits.view(np.uint16), 2, out=two.view(np.uint16))
    two[:-1] |= bits[1:]
    four = ws.get("four", (m,), np.uint8)
    np.left_shift(two.view(np.uint16), 4, out=four.view(np.uint16))
    four[:-2] |= two[2:]
    code6 = ws.get("code6", (m - 5,), np.uint16)
    code6[:] = four[: m - 5]
    code6 <<= 4
    code6 |= two[4:-1]
    n_win = len(code6)
    # Invalid bases (N, IUPAC, separators) are rare: instead of a validity test at every
    # position, the <= 6 windows touching each of them get the dump code 4096.
    invalid = np.flatnonzero(np.equal(codes, INVALID, out=ws.get("mask", (m,), np.bool_)))
    # Window ends: the k-mer that stops right before an invalid base is valid when the run
    # of valid bases before that base is at least k long; its (k+1)-mer is not. Their codes
    # are read before the dump marking overwrites those windows.
    run = np.diff(invalid, prepend=-1) - 1
    end_pos = {k: invalid[run >= k] - k for k in range(1, MAX_K)}
    end_codes = {k: (code6[p] >> (2 * (MAX_K - k))).astype(np.int64) for k, p in end_pos.items()}
    dump = 4**MAX_K
    for j in range(MAX_K):
        pos = invalid - j
        code6[pos[(pos >= 0) & (pos < n_win)]] = dump
    # One bincount per contig over its uint16 codes, written straight into the count
    # matrix of the caller's dtype. Measured ~3x faster than one shared bincount over
    # row * 4097 + code for the block (building that int64 index costs extra passes over
    # the bases) and faster than bincounts over int64 codes (4x the memory traffic).
    raw = ws.get("raw", (n, dump + 1), dtype)
    bincount = np.bincount
    for i, (start, stop) in enumerate(zip(starts.tolist(), (starts + lengths).tolist(), strict=True)):
        raw[i] = bincount(code6[start:stop], minlength=dump + 1)
    counts = {MAX_K: raw[:, :dump]}
    for k in range(MAX_K - 1, 0, -1):
        higher = counts[k + 1]
        # Prefix marginal: the k-mer at i is the first k bases of the (k+1)-mer at i.
        marginal = np.add(higher[:, 0::4], higher[:, 1::4], out=ws.get(f"k{k}", (n, 4**k), dtype))
        marginal += higher[:, 2::4]
        marginal += higher[:, 3::4]
        # Plus the few window ends, added in place (no [n, 4**k] temporary).
        rows = np.searchsorted(starts, end_pos[k], side="right") - 1
        np.add.at(marginal.reshape(-1), rows * 4**k + end_codes[k], 1)
        counts[k] = marginal
    totals = counts[MAX_K].sum(axis=1).astype(np.int64)
    return counts, totals


def canonical_counts_block(seqs: Sequence[bytes]) -> dict[int, np.ndarray]:
    """{k: [n, n_canonical(k)] int64 canonical counts} for k in KS (used by tests)."""
    counts, _ = count_block(seqs)
    return {k: TABLES[k].fold(counts[k]) for k in KS}


ENGINES = ("auto", "numba", "numpy")


def resolve_engine(engine: str = "auto") -> str:
    """``numba`` when asked or (``auto``) when installed, else ``numpy``."""
    if engine not in ENGINES:
        raise ValueError(f"k-mer engine must be one of {ENGINES}, not {engine!r}")
    if engine == "numpy":
        return engine
    try:
        import genomelab.binning.kmer_kernel  # noqa: F401
    except ImportError as err:
        if engine == "numba":
            raise ImportError(f"k-mer engine 'numba' asked for but numba cannot be imported: {err}") from err
        logger.warning("numba is not installed: k-mer profiles use the numpy counter (3-5x slower)")
        return "numpy"
    return "numba"


def profile_block(
    seqs: Sequence[bytes], workspace: Workspace | None = None, engine: str = "numpy"
) -> tuple[np.ndarray, np.ndarray]:
    """[n, N_FEATURES] float32 profiles and [n] valid 6-mer totals for a block of contigs.

    Rows with no valid 6-mer are all-zero; callers drop them (see ``iter_profiles``).
    ``engine`` is ``numpy`` (vectorised passes, below) or ``numba`` (the compiled one-pass
    kernel in ``kmer_kernel``); both give the same profiles.
    """
    if engine == "numba":
        from genomelab.binning.kmer_kernel import profile_block as compiled

        return compiled(seqs)
    ws = workspace if workspace is not None else Workspace()
    # float32 holds counts exactly up to 2**24; blocks with longer contigs use float64.
    exact = np.float32 if max((len(s) for s in seqs), default=0) < 2**24 else np.float64
    counts, totals = count_block(seqs, exact, ws)
    out = np.empty((len(seqs), N_FEATURES), dtype=np.float32)
    for k in KS:
        canon = TABLES[k].fold(counts[k], ws.get(f"fold{k}", (len(seqs), len(TABLES[k].gather)), exact))
        # Rows without a valid k-mer are all zero: 0 / 1 keeps them zero.
        denom = np.maximum(canon.sum(axis=1, keepdims=True), 1)
        np.divide(canon, denom, out=out[:, GROUP_SLICES[f"k{k}"]])
    base = counts[1].astype(np.float64)
    acgt = base.sum(axis=1)
    out[:, GROUP_SLICES["gc"].start] = np.divide(
        base[:, 1] + base[:, 2], acgt, out=np.zeros_like(acgt), where=acgt > 0
    )
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
    # The features step's length filter: FASTA records shorter than this are not profiled.
    min_length: int = 0


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


def min_valid_kmers(min_length: int) -> int:
    """Fewest valid 6-mers a contig needs to be profiled: as many as a contig of
    ``min_length`` bp without N has (``min_length - 5``), at least one. A long contig that
    is mostly N or other non-ACGT letters (a scaffold of gaps) would otherwise be profiled
    from the few hundred bases it holds, a profile as noisy as a contig far below
    ``min_length``; N-free contigs are filtered exactly as by their length."""
    return max(1, min_length - (MAX_K - 1))


def check_profile_args(min_length: int, block_contigs: int, block_bases: int, threads: int) -> None:
    if min_length < 0:
        raise ValueError(f"min_length must be >= 0, not {min_length}")
    if block_contigs < 1 or block_bases < 1:
        raise ValueError("block_contigs and block_bases must be >= 1")
    if threads < 1:
        raise ValueError(f"threads must be >= 1, not {threads}")


def iter_fasta_profiles(
    fasta: str | os.PathLike,
    min_length: int = 0,
    block_contigs: int = 512,
    block_bases: int = 16_000_000,
    stats: ProfileStats | None = None,
    threads: int = 1,
    engine: str = "auto",
) -> Iterator[ProfileBlock]:
    """``ProfileBlock``s of the records of a FASTA file (plain or gzip), as
    ``iter_profiles(read_fasta(fasta), ...)``. With the numba engine the file's bytes go
    straight to the compiled kernel (``kmer_kernel.iter_fasta_profiles``: no Python per
    record or per line); the numpy engine parses with ``read_fasta``. Both give the same
    rows, stats and errors (blocks may be cut at other records)."""
    if resolve_engine(engine) == "numba":
        from genomelab.binning.kmer_kernel import iter_fasta_profiles as compiled

        return compiled(fasta, min_length, block_contigs, block_bases, stats, threads)
    return iter_profiles(read_fasta(fasta), min_length, block_contigs, block_bases, stats, threads, "numpy")


def iter_profiles(
    records: Iterable[tuple[str, bytes]],
    min_length: int = 0,
    block_contigs: int = 512,
    block_bases: int = 16_000_000,
    stats: ProfileStats | None = None,
    threads: int = 1,
    engine: str = "auto",
) -> Iterator[ProfileBlock]:
    """Stream ``ProfileBlock``s for ``records``; contigs shorter than ``min_length`` (or
    with fewer valid 6-mers than ``min_valid_kmers(min_length)``) are skipped and counted
    in ``stats``.

    With ``threads`` > 1, blocks are profiled by a thread pool (numpy releases the GIL in
    its loops) while this thread reads the next records; blocks keep their order and at
    most ``threads + 1`` are in memory. ``engine``: see ``resolve_engine``.
    """
    check_profile_args(min_length, block_contigs, block_bases, threads)
    stats = stats if stats is not None else ProfileStats()
    engine = resolve_engine(engine)

    def kept() -> Iterator[tuple[str, bytes]]:
        for name, seq in records:
            stats.n_records += 1
            if len(seq) < min_length:
                stats.n_short += 1
                continue
            yield name, seq

    for block, (feats, totals) in _profiled(_blocks(kept(), block_contigs, block_bases), threads, engine):
        ok = totals >= min_valid_kmers(min_length)
        stats.n_no_kmers += int((~ok).sum())
        names = [n for (n, _), good in zip(block, ok, strict=True) if good]
        lengths = np.array([len(s) for (_, s), good in zip(block, ok, strict=True) if good], dtype=np.int64)
        stats.n_kept += len(names)
        stats.bp_kept += int(lengths.sum())
        yield ProfileBlock(names, lengths, feats if ok.all() else feats[ok])


def _profiled(
    blocks: Iterable[list[tuple[str, bytes]]], threads: int, engine: str
) -> Iterator[tuple[list[tuple[str, bytes]], tuple[np.ndarray, np.ndarray]]]:
    """``(block, profile_block(block))`` in order, one workspace per thread."""
    if threads == 1:
        workspace = Workspace()
        for block in blocks:
            yield block, profile_block([s for _, s in block], workspace, engine)
        return
    local = threading.local()

    def work(block: list[tuple[str, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(local, "workspace"):
            local.workspace = Workspace()
        return profile_block([s for _, s in block], local.workspace, engine)

    with ThreadPoolExecutor(threads) as pool:
        pending: deque = deque()
        for block in blocks:
            pending.append((block, pool.submit(work, block)))
            if len(pending) > threads:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()


FEATURES_DS, NAMES_DS, LENGTHS_DS = "features", "names", "lengths"


def write_profiles_h5(
    fasta: str | os.PathLike,
    out_path: str | os.PathLike,
    min_length: int,
    block_contigs: int = 512,
    block_bases: int = 16_000_000,
    chunk_rows: int = 1024,
    threads: int = 1,
    engine: str = "auto",
) -> ProfileStats:
    """Profile every contig of ``fasta`` into an HDF5 file, block by block.

    Datasets: ``names`` [n] str, ``lengths`` [n] int64, ``features`` [n, 2761] float32
    (chunked by rows so readers stream it); attributes record the parameters and the
    column layout. ``threads``, ``engine``: see ``iter_profiles`` (the output depends on neither).
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
        blocks = iter_fasta_profiles(fasta, min_length, block_contigs, block_bases, stats, threads, engine)
        for block in blocks:
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
                f"{fasta}: no contig of at least {min_length} bp with {min_valid_kmers(min_length)} "
                "valid 6-mers "
                f"({stats.n_records} records, {stats.n_short} shorter than binning.features.min_length, "
                "--min-length of genomelab predict binning)"
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
    # The features step's length filter: FASTA records shorter than this are not profiled.
    min_length: int = 0


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
        min_length = int(h5.attrs.get("min_length", 0))
    return Profiles(names, lengths, feats, min_length)


def profile_contigs(
    contigs: str | os.PathLike,
    out_h5: str | os.PathLike,
    min_length: int,
    block_contigs: int,
    block_bases: int,
    chunk_rows: int,
    threads: int = 1,
    engine: str = "auto",
) -> ProfileStats:
    """:func:`write_profiles_h5`, with the throughput logged."""
    t0 = time.perf_counter()
    stats = write_profiles_h5(
        contigs, out_h5, min_length, block_contigs, block_bases, chunk_rows, threads=threads, engine=engine
    )
    dt = time.perf_counter() - t0
    logger.info("feature step: %.2f s, %.1f Mbp/s", dt, stats.bp_kept / max(dt, 1e-9) / 1e6)
    return stats
