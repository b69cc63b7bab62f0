"""Inputs of the deconv module and its ``sources.h5`` file.

Accepted inputs (the tissue module's files are read as files, never through its code):

- a sample sheet (TSV: ``sample``, ``file``, ``tissue``, optional ``subtype`` and
  ``source_sample``; ``file`` relative to the sheet's folder unless absolute) of per-sample
  NPZ files with ``methylation`` int8 [n_regions, n_positions] (0 = unmethylated,
  1 = methylated, 2 = missing) and ``region_ids`` str [n_regions];
- a region-means HDF5 (``means`` float32 [n_samples, n_regions], NaN where a region had no
  valid call; ``coverage`` [n_samples, n_regions] valid positions; ``samples``, ``regions``,
  ``tissue`` and optionally ``source_sample`` string datasets);
- a table of regions x columns (CSV or TSV, first column the region IDs), used both for a
  user atlas (columns = tissues) and for MethAtlas-style sample tables (columns = samples).

Every later step reads ``sources.h5``: per-sample methylated and valid counts per region,
so that mixtures can be drawn read by read from each sample's own data.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from genomelab.io.atomic import atomic_output
from genomelab.io.dropped import N_EXAMPLES, Dropped
from genomelab.io.features import read_features
from genomelab.io.hdf5 import STR, h5_strings
from genomelab.io.ids import IdIndex, InputMismatch, match_ids, refuse_duplicates
from genomelab.io.methylation import npz_region_counts
from genomelab.io.sheets import read_sample_sheet

logger = logging.getLogger(__name__)


@dataclass
class Sources:
    """Per-sample methylation of pure samples (the raw material of references and mixtures).

    ``meth`` and ``valid`` are float32 [n_samples, n_regions]: methylated and valid calls per
    region (for region-means inputs ``meth = mean * coverage``), so ``beta = meth / valid``.
    """

    samples: np.ndarray
    tissues: np.ndarray
    groups: np.ndarray
    regions: np.ndarray
    meth: np.ndarray
    valid: np.ndarray
    splits: np.ndarray = field(default_factory=lambda: np.asarray([], dtype=str))

    @property
    def beta(self) -> np.ndarray:
        """[n_samples, n_regions] mean methylation, NaN where no valid call."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.valid > 0, self.meth / np.maximum(self.valid, 1), np.nan).astype(np.float32)

    def subset(self, mask: np.ndarray) -> Sources:
        return Sources(
            self.samples[mask],
            self.tissues[mask],
            self.groups[mask],
            self.regions,
            self.meth[mask],
            self.valid[mask],
            self.splits[mask] if len(self.splits) else self.splits,
        )


def sources_from_sheet(sheet: str | os.PathLike, labels: bool = True) -> Sources:
    """Read every NPZ of a sample sheet file by file (memory: two [S, R] count matrices);
    ``labels`` False: samples to deconvolve, whose ``tissue`` column is optional."""
    rows = read_sample_sheet(sheet, labels=labels)
    regions: np.ndarray | None = None
    meth = valid = None
    for i, row in enumerate(rows):
        n_meth, n_valid, ids = npz_region_counts(row.file)
        if regions is None or not np.array_equal(ids, regions):
            # A region listed twice: which of its rows is the region? (Checked where the IDs
            # change, so once for a sheet of files over the same regions.)
            refuse_duplicates(ids.tolist(), "region", str(row.file))
        if regions is None:
            regions = ids
            meth = np.zeros((len(rows), len(ids)), np.float32)
            valid = np.zeros_like(meth)
        elif not np.array_equal(ids, regions):
            order = _reorder(ids, regions, row.file, rows[0].file)
            n_meth, n_valid = n_meth[order], n_valid[order]
        meth[i], valid[i] = n_meth, n_valid
    return Sources(
        np.asarray([r.sample for r in rows]),
        np.asarray([r.tissue for r in rows]),
        np.asarray([r.source_sample for r in rows]),
        regions,
        meth,
        valid,
    )


def _reorder(ids: np.ndarray, regions: np.ndarray, path: Path, first: Path) -> np.ndarray:
    """Index that puts ``ids`` in the order of ``regions``; error naming mismatches otherwise."""
    if len(ids) == len(regions) and set(ids.tolist()) == set(regions.tolist()):
        pos = {r: i for i, r in enumerate(ids.tolist())}
        return np.asarray([pos[r] for r in regions.tolist()])
    extra = sorted(set(ids.tolist()) - set(regions.tolist()))[:3]
    lacking = sorted(set(regions.tolist()) - set(ids.tolist()))[:3]
    raise ValueError(
        f"{path}: region IDs differ from those of {first} ({len(ids)} vs {len(regions)} "
        f"regions; e.g. only here: {extra}, only there: {lacking})"
    )


def sources_from_features(path: str | os.PathLike) -> Sources:
    """Read a region-means HDF5 (the tissue module's features file)."""
    feats = read_features(path)
    means, coverage = feats["means"].astype(np.float32), feats["coverage"].astype(np.float32)
    samples, tissues, groups, regions = (
        feats["samples"],
        feats["tissue"],
        feats["source_sample"],
        feats["regions"],
    )
    # read_features has refused a region listed twice, naming the file.
    finite = np.isfinite(means)
    groups = np.where(groups == "", samples, groups)
    # A NaN mean has no valid call whatever the coverage says.
    valid = np.where(finite, np.maximum(coverage, 1.0), 0.0).astype(np.float32)
    meth = np.where(finite, means, 0.0) * valid
    return Sources(samples, tissues, groups, regions, meth.astype(np.float32), valid)


def write_sources(path: str | os.PathLike, src: Sources, attrs: dict | None = None) -> None:
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        for name in ("meth", "valid"):
            h5.create_dataset(name, data=getattr(src, name), compression="gzip", compression_opts=1)
        for name in ("samples", "tissues", "groups", "regions", "splits"):
            h5.create_dataset(name, data=np.asarray(getattr(src, name), dtype=object), dtype=STR)
        h5.attrs.update(attrs or {})


def read_sources(path: str | os.PathLike) -> Sources:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"sources file {path} does not exist")
    with h5py.File(path, "r") as h5:
        return Sources(
            *(h5_strings(h5[k]) for k in ("samples", "tissues", "groups", "regions")),
            h5["meth"][()],
            h5["valid"][()],
            h5_strings(h5["splits"]),
        )


def _out_of_range_hint(finite: np.ndarray, values_are: str) -> str:
    """What the values outside [0, 1] of a table most likely are. Array pipelines also write
    M-values (log2 of methylated over unmethylated intensity, minfi's getM), negative below a
    beta of 0.5: dividing them by 100, the percentage hint, leaves them negative."""
    if finite.min() < 0 and values_are == "methylation fractions":
        return "negative values: M-values (log2 ratios)? convert them to betas, 2**M / (2**M + 1)"
    if finite.min() >= 0 and finite.max() <= 100:
        return "divide percentages by 100"
    return f"not {values_are}"


def read_table(
    path: str | os.PathLike, what: str = "table", values_are: str = "methylation fractions"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read a regions x columns CSV/TSV (optionally gzipped); first column = region IDs
    (``values_are``: what the values are, for the out-of-range message).

    Returns ``(values float64 [R, C], region_ids [R], column_names [C])``. Empty cells and
    ``NA`` become NaN. Percent tables (values up to 100) are an error: betas are in [0, 1];
    so is a column name (sample, tissue) given twice.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    name = path.name.lower().removesuffix(".gz")
    sep = "\t" if name.endswith((".tsv", ".txt")) else ","
    try:
        df = pd.read_csv(path, sep=sep, index_col=0)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{what} {path} is not a readable table ({exc})") from exc
    if df.shape[1] == 0 or df.shape[0] == 0:
        raise ValueError(f"{what} {path} has no data columns or rows (shape {df.shape})")
    # pandas renames a repeated column (a second sample p1 becomes "p1.1", a sample nobody
    # named), so the header is checked as written: which column would be p1's?
    header = pd.read_csv(path, sep=sep, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
    refuse_duplicates(header.tolist()[1:], "column", f"{what} {path}")
    # is_numeric_dtype, not np.issubdtype: pandas' own string dtype is not a numpy dtype.
    bad = [c for c in df.columns if not pd.api.types.is_numeric_dtype(df[c])]
    if bad:
        raise ValueError(f"{what} {path}: column(s) {bad[:5]} are not numeric")
    values = df.to_numpy(dtype=np.float64)
    infinite = np.argwhere(np.isinf(values))
    if len(infinite):
        r, c = infinite[0]
        raise ValueError(
            f"{what} {path}: {len(infinite)} infinite value(s), first at row {df.index[r]!s} column "
            f"{df.columns[c]!s}; leave a missing value empty or NA"
        )
    finite = values[np.isfinite(values)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        raise ValueError(
            f"{what} {path}: values must be {values_are} in [0, 1] "
            f"(found {finite.min():g}..{finite.max():g}; {_out_of_range_hint(finite, values_are)})"
        )
    ids = df.index.astype(str).to_numpy()
    if len(set(ids.tolist())) != len(ids):
        # Published atlases repeat rows (the Moss atlas lists 1,270 CpGs two to eight times,
        # identically: 1,785 extra rows): identical repeats are dropped, conflicting ones are
        # an error.
        dup = df.index.duplicated(keep="first")
        grouped = df.groupby(level=0, sort=False)
        spread = (grouped.max() - grouped.min()).fillna(0).abs().max(axis=1)
        conflict = spread.index[spread.to_numpy() > 1e-9].tolist()
        if conflict:
            raise ValueError(f"{what} {path}: region IDs repeated with different values, e.g. {conflict[:5]}")
        logger.warning("%s %s: dropped %d identical repeated rows", what, path, int(dup.sum()))
        values, ids = values[~dup], ids[~dup]
    # Unicode arrays, not object arrays: they must survive np.savez without pickling.
    return values, np.asarray(ids, dtype=str), np.asarray(df.columns.astype(str), dtype=str)


def write_table(
    path: str | os.PathLike,
    values: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    index_name: str = "region",
) -> None:
    """Write a rows x columns CSV (or TSV for .tsv) atomically."""
    import pandas as pd

    df = pd.DataFrame(np.asarray(values), index=pd.Index(list(rows), name=index_name), columns=list(columns))
    sep = "\t" if str(path).endswith(".tsv") else ","
    with atomic_output(path) as tmp:
        df.to_csv(tmp, sep=sep, float_format="%.6g")


@dataclass
class JoinReport:
    """How a sample's regions lined up with the reference's."""

    n_reference: int
    n_input: int
    n_matched: int
    dropped: list[str]
    missing_per_sample: dict[str, int]

    def to_dict(self) -> dict:
        return {
            "n_reference_regions": self.n_reference,
            "n_input_regions": self.n_input,
            "n_matched": self.n_matched,
            "n_dropped": len(self.dropped),
            "dropped_examples": self.dropped[:20],
            "n_missing_reference_regions": self.n_reference - self.n_matched,
            "missing_per_sample": self.missing_per_sample,
        }


def join_dropped(join: dict) -> Dropped | None:
    """The input regions an inference join left out (``JoinReport.to_dict()``), as a
    ``Dropped`` entry of the summary; ``None`` when every input region was used."""
    if not join["n_dropped"]:
        return None
    return Dropped(
        "deconv_infer",
        "input regions",
        "not a region of the reference (its markers)",
        int(join["n_dropped"]),
        list(join["dropped_examples"][:N_EXAMPLES]),
    )


def transposed_hint(ref_regions: np.ndarray | IdIndex, samples: Sequence[str]) -> str:
    """Why no input region matched when the input's column names are the reference's regions:
    a samples x regions table (a transposed MethAtlas input); else ""."""
    index = ref_regions if isinstance(ref_regions, IdIndex) else IdIndex(ref_regions)
    n = sum(str(s) in index.pos for s in samples)
    # Half of the columns, or half of the reference: a transposed whole-array table (450K
    # probes as columns) holds every marker of a reference of a few thousand, but those are
    # a small share of its columns.
    if n < max(1, min(len(samples), len(index)) // 2):
        return ""
    return (
        f". {n} of the input's {len(samples)} column names are regions of the reference: the table "
        "looks transposed (samples as rows); write one row per region and one column per sample"
    )


def join_regions(
    ref_regions: np.ndarray | IdIndex,
    in_regions: np.ndarray,
    values: np.ndarray,
    samples: Sequence[str],
    min_fraction: float,
    source: str,
) -> tuple[np.ndarray, JoinReport]:
    """Align ``values`` [S, R_in] to ``ref_regions`` (the IDs or their :class:`IdIndex`);
    NaN where a reference region is absent.

    The join of the predict layer (:func:`genomelab.io.ids.match_ids`): an input region
    listed twice is an error (which value would be used?), and fewer than ``min_fraction``
    of the reference regions found raises :class:`~genomelab.io.ids.TooFewMatched` (``ValueError`` when none
    is: usually a different ID scheme, e.g. probe IDs against coordinates), naming the first
    mismatched IDs of both sides and counting them.
    """
    in_regions = np.asarray(in_regions)
    try:
        match = match_ids(ref_regions, in_regions, "regions", source, min_fraction, holder="reference")
    except InputMismatch as exc:
        # The same error (a TooFewMatched stays one, for the option that relaxes it).
        exc.args = (f"{exc}{transposed_hint(ref_regions, samples)}",)
        raise
    found = match.index >= 0
    out = np.full((values.shape[0], match.n_model), np.nan, dtype=np.float64)
    out[:, found] = values[:, match.index[found]]
    # Input regions no reference region took, in the input's order.
    unused = np.ones(len(in_regions), dtype=bool)
    unused[match.index[found]] = False
    dropped = [str(r) for r in in_regions[unused].tolist()]
    n_missing = (~np.isfinite(out)).sum(axis=1)
    missing = {str(s): int(n) for s, n in zip(samples, n_missing, strict=True)}
    return out, JoinReport(match.n_model, len(in_regions), match.n_matched, dropped, missing)


def iter_chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def save_predictions(
    path: str | os.PathLike, proportions: np.ndarray, tissues: np.ndarray, **extra: np.ndarray
) -> None:
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            proportions=np.asarray(proportions, np.float32),
            tissues=np.asarray(tissues, dtype=str),
            **extra,
        )


def load_predictions(path: str | os.PathLike) -> np.ndarray:
    with np.load(path, allow_pickle=False) as npz:
        return npz["proportions"].astype(np.float64)
