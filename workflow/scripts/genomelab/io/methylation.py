"""Tissue module inputs: the sample sheet, per-sample NPZ files and stacked HDF5 files.

Formats
-------
Sample sheet (TSV, header required): ``sample``, ``file``, ``tissue`` and optionally
``subtype`` and ``source_sample`` (augmented or synthetic copies name the sample they were
made from, so that splits keep them together). ``file`` is relative to the sheet's folder
unless absolute.

Per-sample NPZ: ``methylation`` int8 [n_regions, n_positions] with 0 = unmethylated,
1 = methylated, 2 = missing; optional ``dna_tokens`` [n_regions, n_positions] and
``region_ids`` (str [n_regions]).

Stacked HDF5: ``methylation`` int8 [n_files, n_regions, n_positions], ``samples`` and
``tissue`` (str [n_files]), optional ``region_ids`` (str [n_regions]), ``subtype``,
``source_sample``.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

logger = logging.getLogger(__name__)

METHYLATED, UNMETHYLATED, MISSING = 1, 0, 2
REQUIRED_COLUMNS = ("sample", "file", "tissue")
OPTIONAL_COLUMNS = ("subtype", "source_sample")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


@dataclass(frozen=True)
class SampleRecord:
    """One row of the sample sheet."""

    sample: str
    file: Path
    tissue: str
    subtype: str
    source_sample: str


def read_sample_sheet(path: str | os.PathLike, check_files: bool = True) -> list[SampleRecord]:
    """Read and validate a tissue sample sheet.

    Raises ``ValueError`` naming the sheet and row for missing columns, empty fields,
    unsafe or duplicate sample names; ``FileNotFoundError`` for missing data files.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sample sheet {path} does not exist")
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        if missing:
            raise ValueError(
                f"sample sheet {path} lacks column(s) {missing}; it has {columns} "
                "(tab-separated, header required)"
            )
        records, seen = [], set()
        for line_no, row in enumerate(reader, start=2):
            values = {k: (row.get(k) or "").strip() for k in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)}
            for col in REQUIRED_COLUMNS:
                if not values[col]:
                    raise ValueError(f"sample sheet {path}, line {line_no}: empty {col!r}")
            sample = values["sample"]
            if not NAME_RE.match(sample):
                raise ValueError(
                    f"sample sheet {path}, line {line_no}: sample name {sample!r} may only "
                    "contain letters, digits and _ . + - (it becomes a file name)"
                )
            if sample in seen:
                raise ValueError(f"sample sheet {path}, line {line_no}: duplicate sample {sample!r}")
            seen.add(sample)
            file = Path(values["file"])
            if not file.is_absolute():
                file = path.parent / file
            if check_files and not file.is_file():
                raise FileNotFoundError(
                    f"sample sheet {path}, line {line_no}: file {file} of sample {sample!r} does not exist"
                )
            records.append(
                SampleRecord(
                    sample, file, values["tissue"], values["subtype"], values["source_sample"] or sample
                )
            )
    if not records:
        raise ValueError(f"sample sheet {path} lists no samples")
    return records


def validate_methylation(array: np.ndarray, source: str, n_positions: int | None = None) -> np.ndarray:
    """Check one sample's methylation array; return it as int8 [n_regions, n_positions].

    ``source`` names the file in error messages.
    """
    if array.ndim != 2:
        raise ValueError(
            f"{source}: 'methylation' must be 2-D [n_regions, n_positions], got shape {array.shape}"
        )
    if n_positions is not None and array.shape[1] != n_positions:
        raise ValueError(
            f"{source}: 'methylation' has {array.shape[1]} positions per region, expected {n_positions}"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{source}: 'methylation' must hold integers 0/1/2, got dtype {array.dtype}")
    bad = (array < 0) | (array > 2)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"{source}: 'methylation' holds {int(bad.sum())} values outside {{0, 1, 2}} "
            f"(first: {int(array[r, c])} at region {r}, position {c})"
        )
    return array.astype(np.int8, copy=False)


def load_npz_sample(
    path: str | os.PathLike, n_positions: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Load one per-sample NPZ; return ``(methylation int8 [R, P], region_ids or None)``."""
    path = Path(path)
    if path.is_file() and not zipfile.is_zipfile(path):
        # np.load would take a non-zip file for a pickle and fail without naming the file.
        raise ValueError(f"{path}: not a readable NPZ file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "methylation" not in npz.files:
                raise ValueError(f"{path}: no 'methylation' array (found {npz.files})")
            meth = validate_methylation(npz["methylation"], str(path), n_positions)
            region_ids = npz["region_ids"].astype(str) if "region_ids" in npz.files else None
            if "dna_tokens" in npz.files and npz["dna_tokens"].shape != meth.shape:
                raise ValueError(
                    f"{path}: 'dna_tokens' shape {npz['dna_tokens'].shape} differs from "
                    f"'methylation' {meth.shape}"
                )
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not a readable NPZ file ({exc})") from exc
    if region_ids is not None and len(region_ids) != meth.shape[0]:
        raise ValueError(f"{path}: {len(region_ids)} region_ids for {meth.shape[0]} regions")
    return meth, region_ids


def default_region_ids(n_regions: int) -> np.ndarray:
    return np.asarray([f"region_{i}" for i in range(n_regions)])


def _h5_strings(ds: h5py.Dataset) -> np.ndarray:
    return np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]])


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
                        raise ValueError(f"{path}: HDF5 lacks dataset {key!r} (has {sorted(h5)})")
                meth = h5["methylation"]
                if meth.ndim != 3:
                    raise ValueError(
                        f"{path}: 'methylation' must be [n_files, n_regions, n_positions], "
                        f"got shape {meth.shape}"
                    )
                if not np.issubdtype(meth.dtype, np.integer):
                    raise ValueError(f"{path}: 'methylation' must be integer, got {meth.dtype}")
                samples, tissue = _h5_strings(h5["samples"]), _h5_strings(h5["tissue"])
                region_ids = (
                    _h5_strings(h5["region_ids"]) if "region_ids" in h5 else default_region_ids(meth.shape[1])
                )
                optional = {k: _h5_strings(h5[k]) if k in h5 else None for k in ("subtype", "source_sample")}
                shape = meth.shape
        except OSError as exc:
            raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from exc
        if len(samples) != shape[0] or len(tissue) != shape[0]:
            raise ValueError(
                f"{path}: {len(samples)} samples and {len(tissue)} labels for "
                f"{shape[0]} files in 'methylation'"
            )
        if len(region_ids) != shape[1]:
            raise ValueError(f"{path}: {len(region_ids)} region_ids for {shape[1]} regions")
        for key, values in optional.items():
            if values is not None and len(values) != shape[0]:
                raise ValueError(f"{path}: {len(values)} {key} labels for {shape[0]} files")
        if len(set(samples)) != len(samples):
            raise ValueError(f"{path}: duplicate sample names in 'samples'")
        return cls(
            path, samples, tissue, region_ids, shape[2], optional["subtype"], optional["source_sample"]
        )

    def check_labels(self, records: list[SampleRecord]) -> None:
        """Raise if the sheet's tissue labels disagree with the HDF5's for shared samples."""
        h5_labels = {str(s): str(t) for s, t in zip(self.samples, self.tissue, strict=True)}
        bad = [
            (r.sample, r.tissue, h5_labels[r.sample])
            for r in records
            if r.sample in h5_labels and h5_labels[r.sample] != r.tissue
        ]
        if bad:
            shown = ", ".join(f"{s}: sheet {a!r} vs HDF5 {b!r}" for s, a, b in bad[:5])
            raise ValueError(
                f"{self.path}: tissue labels disagree with the sample sheet for {len(bad)} sample(s): {shown}"
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
