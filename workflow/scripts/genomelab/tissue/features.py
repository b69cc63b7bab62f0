"""Per-region mean methylation features, streamed sample by sample into one HDF5 file.

Output HDF5 (all string datasets UTF-8):
    means     float32 [n_samples, n_regions]  methylated / valid calls; NaN where no valid call
    coverage  uint16  [n_samples, n_regions]  number of valid calls (see below)
    samples, tissue, subtype, source_sample   str [n_samples]
    regions                                   str [n_regions]
    attrs: n_positions, source, genomelab_version

Two sources of a region's value. NPZ files with per-region counts (``methylated`` and
``coverage``, written by ``ingest``) give the read-level fraction ``methylated / coverage``
and, as ``coverage``, the CpG calls behind it (reads x CpGs, capped at 65,535), so 5 reads at
a probe's one CpG count as 5 calls. Files without counts (simulated samples, stacked HDF5,
NPZ from before the counts were kept) give the mean of the 0/1 calls of the region's
positions and the number of valid positions. The per-position array itself is unchanged, so
models that read positions see the same input either way.

Memory is bounded by two blocks of samples (``block`` x n_regions x n_positions int8 each:
the one being reduced and the next, read meanwhile), so 765 samples x 51,089 regions x 150
positions (5.9 GB) stream through about 200 MB (benchmarks/bench_tissue_features.py --full).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np

from genomelab.io.atomic import atomic_output
from genomelab.io.features import create_features, write_feature_labels
from genomelab.io.ids import refuse_duplicates
from genomelab.io.methylation import (
    SLOTS_FIX,
    StackedHDF5,
    default_region_ids,
    load_npz_counts,
    load_npz_sample,
)
from genomelab.io.sheets import SampleRecord, read_sample_sheet

logger = logging.getLogger(__name__)


# Rows per slice in region_means: ~1.2 MB of int8, so a slice and its temporary stay in the
# CPU's cache while it is read three times (value check, sum, count of missing calls).
_SLICE_ROWS = 8192


def _count_calls(flat: np.ndarray, threads: int, check: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-row sums and counts of missing calls of uint8 rows [N, P] with values 0/1/2.

    Returns ``(total, n_missing, max_value)`` (max_value 0 when ``check`` is off). With P <=
    255 both come out as uint8 sums that wrap modulo 256: n_missing <= P fits a byte, and
    n_meth = total - 2 n_missing (mod 256) is exact because n_meth <= P too, so no
    reduction widens its input. Longer rows use uint16/uint32 sums.
    """
    n_rows, n_positions = flat.shape
    acc = np.uint8 if n_positions <= 255 else np.uint16 if 2 * n_positions < 65536 else np.uint32
    total = np.empty(n_rows, acc)
    n_missing = np.empty(n_rows, acc)

    def count(start: int) -> int:
        stop = min(start + _SLICE_ROWS, n_rows)
        rows = flat[start:stop]
        biggest = int(rows.max()) if check and len(rows) else 0
        if acc is np.uint8:
            # einsum's contiguous sum kernel is ~3x faster than add.reduce over short rows.
            np.einsum("ij->i", rows, out=total[start:stop])
            np.einsum("ij->i", rows >> 1, out=n_missing[start:stop])
        else:
            np.add.reduce(rows, axis=-1, dtype=acc, out=total[start:stop])
            np.add.reduce(rows >> 1, axis=-1, dtype=acc, out=n_missing[start:stop])
        return biggest

    starts = range(0, n_rows, _SLICE_ROWS)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(threads) as pool:
            biggest = max(pool.map(count, starts))
    else:
        biggest = max((count(start) for start in starts), default=0)
    return total, n_missing, biggest


def region_means(
    block: np.ndarray, threads: int = 1, source: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Mean methylation and number of valid calls per region.

    ``block``: int8 [..., n_regions, n_positions] with 0/1/2. Returns ``(means float32
    [..., n_regions] with NaN where nothing is valid, valid uint16 [..., n_regions])``.
    Vectorised, no loop over regions: with values in {0, 1, 2}, the row sum S = n_meth +
    2 n_missing and the sum of (value >> 1) = n_missing, so two byte-wise reductions give
    both counts. Rows are processed in cache-sized slices on ``threads`` threads (numpy
    releases the GIL in reductions). With ``source``, values outside {0, 1, 2} are an error
    naming it (checked slice by slice while the slice is in cache).
    """
    n_positions = block.shape[-1]
    flat = block.reshape(-1, n_positions).view(np.uint8)
    total, n_missing, biggest = _count_calls(flat, threads, check=source is not None)
    if biggest > 2:
        _check_values(block, source)
    shape = block.shape[:-1]
    n_meth = (total - 2 * n_missing).astype(np.float32).reshape(shape)
    valid = np.subtract(n_positions, n_missing, dtype=np.uint16).reshape(shape)
    # No valid call means no methylated call either, and 0 / 0 is NaN.
    with np.errstate(invalid="ignore"):
        means = np.divide(n_meth, valid, dtype=np.float32)
    return means, valid


def _check_values(block: np.ndarray, source: str) -> None:
    # One reduction over a uint8 view catches negatives (>= 128) and values > 2 together.
    if block.size and block.view(np.uint8).max() > 2:
        bad = (block < 0) | (block > 2)
        raise ValueError(f"{source}: 'methylation' holds {int(bad.sum())} values outside {{0, 1, 2}}")


def count_means(methylated: np.ndarray, coverage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Region values from read counts (``methylated``, ``coverage`` [..., n_regions]): ``(means
    float32 [..., R] = methylated / coverage with NaN where coverage is 0, valid uint16 [..., R]
    = coverage capped at 65,535)``."""
    coverage = np.asarray(coverage, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(coverage > 0, np.asarray(methylated, np.float64) / coverage, np.nan)
    valid = np.minimum(coverage, np.iinfo(np.uint16).max).astype(np.uint16)
    return means.astype(np.float32), valid


def npz_features(
    path: str | os.PathLike, n_positions: int | None = None, threads: int = 1, slots_fix: str = SLOTS_FIX
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One NPZ's ``(means float32 [R], valid uint16 [R], region_ids [R])``: from its read counts
    when it has them, else from its per-position calls (module docstring). ``slots_fix``: what
    the error of another slot count per region says to do (:func:`validate_methylation`)."""
    meth, ids = load_npz_sample(path, n_positions, slots_fix)
    counts = load_npz_counts(path, meth.shape[0])
    if counts is not None:
        means, valid = count_means(*counts)
    else:
        # load_npz_sample has checked the values already.
        means, valid = region_means(meth, threads)
    return means, valid, ids if ids is not None else default_region_ids(meth.shape[0])


def extract_features_from_sheet(
    sheet: str | os.PathLike,
    out_h5: str | os.PathLike,
    n_positions: int = 150,
    threads: int = 1,
    labels: bool = True,
) -> Path:
    """Stream every NPZ of a sample sheet into the features HDF5 (see module docstring).

    Region IDs must agree across files (a file with other regions is an error naming it) and
    list each region once (a file listing one twice is an error naming it and the region).
    ``labels`` False: new samples, whose sheet may leave out ``tissue`` (written as "").
    """
    records = read_sample_sheet(sheet, labels=labels)
    out_h5 = Path(out_h5)
    regions: np.ndarray | None = None
    with atomic_output(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        for i, rec in enumerate(records):
            means, valid, ids = npz_features(rec.file, n_positions, threads)
            if regions is None or not np.array_equal(ids, regions):
                # A region listed twice: which of its rows is the region? Checked where the IDs
                # change (the first file, a file that differs), so once for a sheet over one set.
                refuse_duplicates(ids.tolist(), "region", str(rec.file))
            if regions is None:
                regions = ids
                create_features(h5, len(records), regions, n_positions, str(sheet))
            elif not np.array_equal(ids, regions):
                raise ValueError(
                    f"{rec.file}: region IDs differ from those of {records[0].file} "
                    f"({len(ids)} vs {len(regions)} regions); all samples must share one region set"
                )
            h5["means"][i] = means
            h5["coverage"][i] = valid
            if (i + 1) % 50 == 0:
                logger.info("features: %d/%d samples", i + 1, len(records))
        write_feature_labels(h5, records)
    logger.info("wrote features of %d samples x %d regions to %s", len(records), len(regions), out_h5)
    return out_h5


def extract_features_from_hdf5(
    stacked: str | os.PathLike,
    out_h5: str | os.PathLike,
    sheet: str | os.PathLike | None = None,
    block: int = 8,
    threads: int = 1,
) -> Path:
    """Stream a stacked methylation HDF5 ([n_files, n_regions, n_positions]) into features.

    When a sample sheet is given, labels must agree with the HDF5's (an error lists the
    disagreeing samples) and the sheet's subtype/source_sample columns are used.
    """
    src = StackedHDF5.open(stacked)
    records = hdf5_records(src, sheet)
    out_h5 = Path(out_h5)
    with atomic_output(out_h5) as tmp, h5py.File(tmp, "w") as h5, h5py.File(src.path, "r") as h5in:
        create_features(h5, len(records), src.region_ids, src.n_positions, str(stacked))
        for start, arr in _read_blocks(h5in["methylation"], block):
            means, valid = region_means(arr, threads, f"{src.path} (files {start}..{start + len(arr) - 1})")
            h5["means"][start : start + len(arr)] = means
            h5["coverage"][start : start + len(arr)] = valid
        write_feature_labels(h5, records)
    logger.info("wrote features of %d samples x %d regions to %s", len(records), len(src.region_ids), out_h5)
    return out_h5


def hdf5_records(src: StackedHDF5, sheet: str | os.PathLike | None = None) -> list[SampleRecord]:
    """The labels of a stacked HDF5's samples, in its order: its own ``tissue``, ``subtype`` and
    ``source_sample``, or a sample sheet's row where the sheet names the sample (the sheet's
    tissue labels must agree with the HDF5's; its ``file`` column is optional and unread: the
    data are the HDF5's)."""
    by_name: dict[str, SampleRecord] = {}
    if sheet is not None:
        records = [
            replace(r, file=src.path) for r in read_sample_sheet(sheet, check_files=False, files=False)
        ]
        src.check_labels(records, sheet)
        by_name = {r.sample: r for r in records}
    subtype = src.subtype if src.subtype is not None else np.full(len(src.samples), "")
    source = src.source_sample if src.source_sample is not None else src.samples
    return [
        by_name.get(s, SampleRecord(s, src.path, t, st, g or s))
        for s, t, st, g in zip(src.samples, src.tissue, subtype, source, strict=True)
    ]


def _read_blocks(meth: h5py.Dataset, block: int) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first file, int8 [<= block, n_regions, n_positions])`` blocks of a stacked dataset.

    A background thread reads the next block while the caller reduces the current one (numpy
    releases the GIL in reductions). Two buffers are reused in turn, so memory stays at two
    blocks and no fresh pages are faulted in per block; a yielded block is valid until the
    next one is requested.
    """
    n_files = meth.shape[0]
    buffers = [np.empty((min(block, n_files), *meth.shape[1:]), np.int8) for _ in range(2)]

    def read(start: int, buf: np.ndarray) -> np.ndarray:
        out = buf[: min(block, n_files - start)]
        if len(out):
            meth.read_direct(out, np.s_[start : start + len(out)])
        return out

    starts = list(range(0, n_files, block))
    with ThreadPoolExecutor(1) as reader:
        pending = reader.submit(read, starts[0], buffers[0]) if starts else None
        for k, start in enumerate(starts):
            arr = pending.result()
            if k + 1 < len(starts):
                pending = reader.submit(read, starts[k + 1], buffers[(k + 1) % 2])
            yield start, arr
