"""Region-means feature HDF5 files (written by the tissue module's feature step, read by the
tissue and deconv modules).

Layout (all string datasets UTF-8):
    means     float32 [n_samples, n_regions]  methylated / valid calls; NaN where no valid call
    coverage  uint16  [n_samples, n_regions]  number of valid (0/1) positions
    samples, tissue, subtype, source_sample   str [n_samples] (subtype, source_sample optional
                                              when read: "" and the sample name by default)
    regions                                   str [n_regions]
    attrs: n_positions, source, genomelab_version
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from genomelab import __version__
from genomelab.io.errors import FormatError
from genomelab.io.hdf5 import STR, h5_strings
from genomelab.io.ids import refuse_duplicates
from genomelab.io.sheets import SampleRecord

REQUIRED = ("means", "coverage", "samples", "tissue", "regions")
LABELS = ("samples", "tissue", "subtype", "source_sample")


def create_features(
    h5: h5py.File, n_samples: int, regions: np.ndarray, n_positions: int, source: str
) -> None:
    """Create the empty ``means``/``coverage`` datasets (filled row by row), ``regions`` and attrs."""
    n_regions = len(regions)
    chunk_rows = max(1, min(n_samples, (1 << 20) // max(4 * n_regions, 1)))
    h5.create_dataset(
        "means", (n_samples, n_regions), np.float32, chunks=(chunk_rows, n_regions), fillvalue=np.nan
    )
    h5.create_dataset("coverage", (n_samples, n_regions), np.uint16, chunks=(chunk_rows, n_regions))
    h5.create_dataset("regions", data=regions.astype(object), dtype=STR)
    h5.attrs.update({"n_positions": n_positions, "source": source, "genomelab_version": __version__})


def write_feature_labels(h5: h5py.File, records: list[SampleRecord]) -> None:
    """Write the per-sample label datasets, one row per record in file order."""
    for key in ("sample", "tissue", "subtype", "source_sample"):
        name = "samples" if key == "sample" else key
        h5.create_dataset(name, data=np.asarray([getattr(r, key) for r in records], dtype=object), dtype=STR)


def read_features(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load a features HDF5 into memory.

    Returns means (float32 [S, R]), coverage ([S, R]), samples, tissue, subtype,
    source_sample (str [S]) and regions (str [R]). Raises ``FileNotFoundError`` for a
    missing file and ``FormatError`` naming it for a missing dataset, shapes that disagree
    or means outside [0, 1], and ``InputMismatch`` naming it for a region listed twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file {path} does not exist")
    try:
        with h5py.File(path, "r") as h5:
            missing = [k for k in REQUIRED if k not in h5]
            if missing:
                raise FormatError(
                    path, f"not a genomelab features file: no dataset(s) {missing} (has {sorted(h5)})"
                )
            out = {k: h5[k][()] for k in ("means", "coverage")}
            for k in ("samples", "tissue", "regions"):
                out[k] = h5_strings(h5[k])
            n = len(out["samples"])
            out["subtype"] = h5_strings(h5["subtype"]) if "subtype" in h5 else np.full(n, "")
            out["source_sample"] = (
                h5_strings(h5["source_sample"]) if "source_sample" in h5 else out["samples"].copy()
            )
    except OSError as exc:
        raise FormatError(path, f"not a readable HDF5 file ({exc})") from exc
    means, coverage = out["means"], out["coverage"]
    if means.ndim != 2 or means.shape != coverage.shape:
        raise FormatError(
            path, f"'means' {means.shape} and 'coverage' {coverage.shape} must be the same 2-D shape"
        )
    if means.shape != (n, len(out["regions"])) or any(len(out[k]) != n for k in LABELS):
        raise FormatError(
            path,
            f"'means' is {means.shape} but there are {n} samples, {len(out['tissue'])} tissue labels "
            f"and {len(out['regions'])} regions",
        )
    # A region listed twice: which of its columns is the region? (Training would keep both, and
    # a model's join would give both the one value of a new sample's region.)
    refuse_duplicates(out["regions"].tolist(), "region", str(path))
    finite = np.isfinite(means)
    if (means[finite] < 0).any() or (means[finite] > 1).any():
        raise FormatError(path, "'means' holds values outside [0, 1]")
    return out


def read_n_positions(path: str | os.PathLike) -> int:
    """The ``n_positions`` attribute of a features HDF5 (0 when absent)."""
    with h5py.File(path, "r") as h5:
        return int(h5.attrs.get("n_positions", 0))
