"""Convert array beta values (e.g. TCGA 450K) into the tissue module's stacked HDF5 input.

The module's input is read-level: int8 calls per position of each region (0/1, 2 =
missing). An array measures one CpG per probe as a beta value (fraction methylated), so
each probe becomes one region of ``n_positions`` positions in which round(beta *
n_positions) randomly placed positions are methylated (1) and the rest unmethylated (0);
its region mean equals beta to within 1 / (2 n_positions). A missing beta gives a region of
2s. Labels go into ``tissue`` (a constant broad class, e.g. "Glioma") and ``subtype`` (the
table's label column), so ``task.label: subtype`` classifies them.

Usage (documented in docs/tissue.md):
    python workflow/scripts/tissue_convert_tcga.py \
        ../shared/data/methylation_tcga_glioma/glioma.idhwt.trainingData.csv.gz \
        data/tcga_idhwt.h5 --tissue Glioma
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import h5py
import numpy as np

from genomelab import __version__
from genomelab.io.atomic import atomic_output
from genomelab.io.ids import refuse_duplicates
from genomelab.io.names import NAME_RULE, is_safe_name

logger = logging.getLogger(__name__)

STR = h5py.string_dtype("utf-8")


# Cells of a beta table that mean "no value" (the ingest array reader's set).
MISSING_BETAS = ("", "NA", "NaN", "nan", "null", ".")


def beta_to_calls(beta: np.ndarray, n_positions: int, rng: np.random.Generator) -> np.ndarray:
    """int8 [n_probes, n_positions] calls whose per-row methylated fraction is round(beta * P) / P.

    ``beta`` float [n_probes] in [0, 1] (NaN = missing -> a row of 2s). Vectorised: the
    methylated positions are the k smallest of a random key per position.
    """
    k = np.rint(np.nan_to_num(beta, nan=0.0) * n_positions).astype(np.int64)
    ranks = np.argsort(np.argsort(rng.random((len(beta), n_positions)), axis=1), axis=1)
    calls = (ranks < k[:, None]).astype(np.int8)
    calls[np.isnan(beta)] = 2
    return calls


def convert_beta_table(
    table: str | os.PathLike,
    out_h5: str | os.PathLike,
    tissue: str = "Glioma",
    n_positions: int = 150,
    sample_column: str = "sample",
    label_column: str | None = "label",
    drop_labels: tuple[str, ...] = ("NA", ""),
    seed: int = 0,
) -> Path:
    """Write a stacked methylation HDF5 from a CSV of samples x probes beta values.

    The table has ``sample_column``, ``label_column`` and one numeric column per probe.
    Rows whose label is in ``drop_labels`` (e.g. "NA") are dropped; duplicate sample names, a
    probe column given twice, betas outside [0, 1] and non-numeric probe columns are errors
    naming the table. ``label_column`` None: new samples to classify (``genomelab predict
    tissue``), whose table has no label column; the HDF5 then has no ``subtype``.
    """
    import pandas as pd

    table = Path(table)
    if not table.is_file():
        raise FileNotFoundError(f"beta table {table} does not exist")
    df = pd.read_csv(table, keep_default_na=False, na_values=[""])
    # pandas renames a repeated column (the second cg1 becomes a probe "cg1.1"), so the
    # probes are checked in the header as written: which column would be the probe's?
    header = pd.read_csv(table, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0]
    refuse_duplicates([c for c in header if c not in (sample_column, label_column)], "probe", str(table))
    for col in (sample_column, label_column):
        if col is not None and col not in df.columns:
            advice = " (a table of new samples without labels: --no-labels)" if col == label_column else ""
            raise ValueError(f"{table}: no {col!r} column (columns start {list(df.columns[:5])}){advice}")
    labels = (
        # An empty label cell reads as NaN, which no drop label matches: "" (dropped by default).
        df[label_column].fillna("").astype(str).str.strip()
        if label_column is not None
        else pd.Series("", index=df.index, dtype=object)
    )
    drop_labels = drop_labels if label_column is not None else ()
    keep = ~labels.isin(drop_labels)
    if (~keep).any():
        logger.info(
            "%s: dropping %d sample(s) labelled %s", table, int((~keep).sum()), sorted(set(labels[~keep]))
        )
    df, labels = df[keep], labels[keep]
    samples = df[sample_column].astype(str).str.strip().to_numpy()
    dup = sorted({s for s in samples if (samples == s).sum() > 1})
    if dup:
        raise ValueError(f"{table}: duplicate sample name(s) {dup[:5]}")
    bad_names = [s for s in samples if not is_safe_name(s)]
    if bad_names:
        raise ValueError(f"{table}: sample name(s) {bad_names[:3]} {NAME_RULE}")
    probes = [c for c in df.columns if c not in (sample_column, label_column)]
    # Missing betas as R writes them (NA: the TCGA tables were exported from R) and as the
    # ingest array reader takes them, besides an empty cell; any other word is an error.
    values = df[probes]
    missing = (values.isna() | values.isin(MISSING_BETAS)).to_numpy()
    beta = values.mask(missing).apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    non_numeric = np.isnan(beta) & ~missing
    if non_numeric.any():
        r, c = np.argwhere(non_numeric)[0]
        # A column of text throughout is a label column read as a probe (--no-labels given
        # for a table that has one, or a label column under another name).
        hint = (
            f"; column {probes[c]!r} holds no number at all: a label column? name it with "
            "--label-column (and leave out --no-labels)"
            if np.isnan(beta[:, c]).all()  # words, and maybe missing cells (an NA label)
            else ""
        )
        raise ValueError(
            f"{table}: non-numeric beta value {df[probes].iat[r, c]!r} (sample {samples[r]}, "
            f"probe {probes[c]}){hint}"
        )
    finite = beta[np.isfinite(beta)]
    if finite.size and (finite.min() < 0 or finite.max() > 1):
        # Percentages put many values above 1; a few betas just over 1 (1.02, a rounding or
        # normalisation artefact) are not percentages.
        percent = finite.min() >= 0 and finite.max() <= 100 and float(np.mean(finite > 1)) > 0.25
        raise ValueError(
            f"{table}: beta values must lie in [0, 1] (found {finite.min():.3g}..{finite.max():.3g})"
            + ("; percentages? divide them by 100" if percent else "")
        )
    rng = np.random.default_rng(seed)
    out_h5 = Path(out_h5)
    n, r = beta.shape
    with atomic_output(out_h5) as tmp, h5py.File(tmp, "w") as h5:
        meth = h5.create_dataset("methylation", (n, r, n_positions), np.int8, chunks=(1, r, n_positions))
        for i in range(n):
            meth[i] = beta_to_calls(beta[i], n_positions, rng)
        h5.create_dataset("samples", data=samples.astype(object), dtype=STR)
        h5.create_dataset("tissue", data=np.full(n, tissue, dtype=object), dtype=STR)
        if label_column is not None:
            h5.create_dataset("subtype", data=labels.to_numpy().astype(object), dtype=STR)
        h5.create_dataset("region_ids", data=np.asarray(probes, dtype=object), dtype=STR)
        h5.attrs.update(
            {
                "source": str(table),
                "encoding": "round(beta * n_positions) methylated positions",
                "n_positions": n_positions,
                "seed": seed,
                "genomelab_version": __version__,
            }
        )
    counts = dict(zip(*np.unique(labels.to_numpy(str), return_counts=True), strict=True))
    logger.info(
        "wrote %d samples x %d probes (x %d positions) to %s; %s",
        n,
        r,
        n_positions,
        out_h5,
        f"classes { {str(k): int(v) for k, v in counts.items()} }"
        if label_column is not None
        else "no labels",
    )
    return out_h5


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("table", help="CSV of samples x probes beta values (sample, label, probe columns)")
    parser.add_argument("out_h5", help="stacked methylation HDF5 to write")
    parser.add_argument("--tissue", default="Glioma", help="broad class stored in 'tissue' (default Glioma)")
    parser.add_argument("--n-positions", type=int, default=150)
    parser.add_argument("--sample-column", default="sample")
    parser.add_argument("--label-column", default="label")
    parser.add_argument(
        "--no-labels",
        action="store_true",
        help="the table has no label column: new samples to classify with genomelab predict tissue",
    )
    parser.add_argument(
        "--drop-label",
        action="append",
        default=None,
        help="label to drop (repeatable; default: NA and empty)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    from genomelab.runtime import setup_logging

    setup_logging()
    try:
        convert_beta_table(
            args.table,
            args.out_h5,
            args.tissue,
            args.n_positions,
            args.sample_column,
            None if args.no_labels else args.label_column,
            tuple(args.drop_label) if args.drop_label else ("NA", ""),
            args.seed,
        )
    except (ValueError, FileNotFoundError) as exc:
        # A bad table is the user's to fix: the message names it; a traceback adds nothing.
        logger.error("%s", exc)
        raise SystemExit(2) from None
