"""Methylation calls: per-sample NPZ files and stacked HDF5 files (listed by a sample
sheet, :mod:`genomelab.io.sheets`; written by the ingest and convert steps).

Formats
-------
Per-sample NPZ: ``methylation`` int8 [n_regions, n_positions] with 0 = unmethylated,
1 = methylated, 2 = missing; optional ``dna_tokens`` [n_regions, n_positions] and
``region_ids`` (str [n_regions]). Optional per-region counts (the ingest step writes both):
``coverage`` [n_regions] CpG calls in the region (reads x CpGs) and ``methylated``
[n_regions] methylated calls among them; a file with ``coverage`` but no ``methylated``
(written before the counts were kept) has no counts (:func:`load_npz_counts`).

Stacked HDF5: ``methylation`` int8 [n_files, n_regions, n_positions], ``samples`` and
``tissue`` (str [n_files]), optional ``region_ids`` (str [n_regions]), ``subtype``,
``source_sample``.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from genomelab.io.errors import FormatError
from genomelab.io.hdf5 import h5_strings
from genomelab.io.ids import refuse_duplicates
from genomelab.io.sheets import SampleRecord

logger = logging.getLogger(__name__)

METHYLATED, UNMETHYLATED, MISSING = 1, 0, 2


# What to do about a file whose slot count per region is not the expected one (tissue
# training and `genomelab tissue-features`); {found} and {expected} are filled in.
SLOTS_FIX = (
    "every file must have the same count: if all your files have {found}, set "
    "tissue.input.n_positions: {found} (genomelab tissue-features --n-positions {found}); else "
    "make this file again with genomelab ingest at ingest.n_positions: {expected} "
    "(docs/ingest.md, 'What happens to a sample')"
)


def validate_methylation(
    array: np.ndarray, source: str, n_positions: int | None = None, slots_fix: str = SLOTS_FIX
) -> np.ndarray:
    """Check one sample's methylation array; return it as int8 [n_regions, n_positions].

    ``source`` names the file in error messages; ``slots_fix`` says what to do when its
    slot count is not ``n_positions`` (formatted with ``found`` and ``expected``).
    """
    if array.ndim != 2:
        raise FormatError(
            source, f"'methylation' must be 2-D [n_regions, n_positions], got shape {array.shape}"
        )
    if n_positions is not None and array.shape[1] != n_positions:
        raise FormatError(
            source,
            f"'methylation' has {array.shape[1]} positions per region, expected {n_positions}; "
            + slots_fix.format(found=array.shape[1], expected=n_positions),
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise FormatError(source, f"'methylation' must hold integers 0/1/2, got dtype {array.dtype}")
    bad = (array < 0) | (array > 2)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise FormatError(
            source,
            f"'methylation' holds {int(bad.sum())} values outside {{0, 1, 2}} "
            f"(first: {int(array[r, c])} at region {r}, position {c})",
        )
    return array.astype(np.int8, copy=False)


def npz_array(npz: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    """``npz[key]``, or a ``FormatError`` naming the file and array when it was saved as a
    Python object array (``np.savez(..., region_ids=df.columns.to_numpy())`` pickles the
    strings), which is not loaded: unpickling a file can run code from it."""
    try:
        return np.asarray(npz[key])
    except ValueError as exc:
        if "allow_pickle" not in str(exc):
            raise
        raise FormatError(
            path,
            f"{key!r} is an array of Python objects (pickled), which is not loaded; save it "
            f"as strings or numbers, e.g. np.savez(..., {key}=np.asarray(values, dtype=str))",
        ) from None


def load_npz_sample(
    path: str | os.PathLike, n_positions: int | None = None, slots_fix: str = SLOTS_FIX
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load one per-sample NPZ; return ``(methylation int8 [R, P], region_ids or None)``
    (``slots_fix``: as for :func:`validate_methylation`)."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        # np.load would take a non-zip file for a pickle and fail without naming the file.
        raise FormatError(path, "not a readable NPZ file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "methylation" not in npz.files:
                raise FormatError(path, f"no 'methylation' array (found {npz.files})")
            meth = validate_methylation(
                npz_array(npz, "methylation", path), str(path), n_positions, slots_fix
            )
            region_ids = npz_array(npz, "region_ids", path).astype(str) if "region_ids" in npz.files else None
            if "dna_tokens" in npz.files and npz_array(npz, "dna_tokens", path).shape != meth.shape:
                raise FormatError(
                    path,
                    f"'dna_tokens' shape {npz['dna_tokens'].shape} differs from 'methylation' {meth.shape}",
                )
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise FormatError(path, f"not a readable NPZ file ({exc})") from exc
    if region_ids is not None and len(region_ids) != meth.shape[0]:
        raise FormatError(path, f"{len(region_ids)} region_ids for {meth.shape[0]} regions")
    return meth, region_ids


def default_region_ids(n_regions: int) -> np.ndarray:
    return np.asarray([f"region_{i}" for i in range(n_regions)])


@dataclass
class StackedHDF5:
    """Header of a stacked methylation HDF5 (arrays are read in blocks, never whole)."""

    path: Path
    samples: np.ndarray
    tissue: np.ndarray
    region_ids: np.ndarray
    n_positions: int
    subtype: np.ndarray | None = None
    source_sample: np.ndarray | None = None

    @classmethod
    def open(cls, path: str | os.PathLike) -> StackedHDF5:
        path = Path(path)
        try:
            with h5py.File(path, "r") as h5:
                for key in ("methylation", "samples", "tissue"):
                    if key not in h5:
                        raise FormatError(path, f"HDF5 lacks dataset {key!r} (has {sorted(h5)})")
                meth = h5["methylation"]
                if meth.ndim != 3:
                    raise FormatError(
                        path,
                        f"'methylation' must be [n_files, n_regions, n_positions], got shape {meth.shape}",
                    )
                if not np.issubdtype(meth.dtype, np.integer):
                    raise FormatError(path, f"'methylation' must be integer, got {meth.dtype}")
                samples, tissue = h5_strings(h5["samples"]), h5_strings(h5["tissue"])
                region_ids = (
                    h5_strings(h5["region_ids"]) if "region_ids" in h5 else default_region_ids(meth.shape[1])
                )
                optional = {k: h5_strings(h5[k]) if k in h5 else None for k in ("subtype", "source_sample")}
                shape = meth.shape
        except OSError as exc:
            raise FormatError(path, f"not a readable HDF5 file ({exc})") from exc
        if len(samples) != shape[0] or len(tissue) != shape[0]:
            raise FormatError(
                path, f"{len(samples)} samples and {len(tissue)} labels for {shape[0]} files in 'methylation'"
            )
        if len(region_ids) != shape[1]:
            raise FormatError(path, f"{len(region_ids)} region_ids for {shape[1]} regions")
        for key, values in optional.items():
            if values is not None and len(values) != shape[0]:
                raise FormatError(path, f"{len(values)} {key} labels for {shape[0]} files")
        if len(set(samples)) != len(samples):
            raise FormatError(path, "duplicate sample names in 'samples'")
        refuse_duplicates(region_ids.tolist(), "region", str(path))
        return cls(
            path, samples, tissue, region_ids, shape[2], optional["subtype"], optional["source_sample"]
        )

    def check_labels(self, records: list[SampleRecord], sheet: str | os.PathLike = "") -> None:
        """Raise if the sheet names samples the HDF5 lacks (a misspelt name would silently
        keep the HDF5's labels) or its tissue labels disagree with the HDF5's."""
        h5_labels = {str(s): str(t) for s, t in zip(self.samples, self.tissue, strict=True)}
        unknown = [r.sample for r in records if r.sample not in h5_labels]
        if unknown:
            raise FormatError(
                self.path,
                f"the sample sheet {sheet} names {len(unknown)} sample(s) this HDF5 lacks: {unknown[:5]} "
                f"(its samples start {[str(s) for s in self.samples[:5]]})",
            )
        bad = [
            (r.sample, r.tissue, h5_labels[r.sample])
            for r in records
            if r.sample in h5_labels and h5_labels[r.sample] != r.tissue
        ]
        if bad:
            shown = ", ".join(f"{s}: sheet {a!r} vs HDF5 {b!r}" for s, a, b in bad[:5])
            raise FormatError(
                self.path, f"tissue labels disagree with the sample sheet for {len(bad)} sample(s): {shown}"
            )

    def iter_blocks(self, block: int = 8) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(first_index, int8 [b, R, P])`` blocks of files, validated."""
        with h5py.File(self.path, "r") as h5:
            meth = h5["methylation"]
            for start in range(0, meth.shape[0], block):
                arr = meth[start : start + block]
                for i in range(arr.shape[0]):
                    validate_methylation(arr[i], f"{self.path} (file {self.samples[start + i]})")
                yield start, arr.astype(np.int8, copy=False)


def npz_region_counts(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-region calls of one NPZ: ``(n_methylated int32 [R], n_valid int32 [R], region_ids [R])``
    (``region_<i>`` IDs when the file has none)."""
    meth, ids = load_npz_sample(path)
    if ids is None:
        ids = default_region_ids(meth.shape[0])
    n_meth = (meth == METHYLATED).sum(axis=1, dtype=np.int32)
    n_valid = (meth != MISSING).sum(axis=1, dtype=np.int32)
    return n_meth, n_valid, ids


def load_npz_counts(path: str | os.PathLike, n_regions: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-region read counts of one NPZ: ``(methylated float64 [R], coverage float64 [R])``, or
    None when the file has no ``methylated`` array (older ingest output, simulated samples).

    ``n_regions`` is the length of the file's ``methylation`` (checked)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "methylated" not in npz.files:
                return None
            if "coverage" not in npz.files:
                raise FormatError(path, "'methylated' counts without 'coverage' (all CpG calls)")
            meth, cov = npz_array(npz, "methylated", path), npz_array(npz, "coverage", path)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise FormatError(path, f"not a readable NPZ file ({exc})") from exc
    for key, arr in (("methylated", meth), ("coverage", cov)):
        if arr.shape != (n_regions,) or not np.issubdtype(arr.dtype, np.number):
            raise FormatError(
                path, f"{key!r} must be numeric [{n_regions}] (one per region), got {arr.dtype} {arr.shape}"
            )
    meth, cov = meth.astype(np.float64), cov.astype(np.float64)
    # Tolerance: array betas summed in float64.
    bad = ~np.isfinite(meth) | (meth < 0) | (meth > cov + 1e-6)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise FormatError(
            path,
            f"'methylated' must be in [0, coverage]: {int(bad.sum())} region(s) are not "
            f"(first: region {r}, {meth[r]} methylated of {cov[r]} calls)",
        )
    return meth, cov
