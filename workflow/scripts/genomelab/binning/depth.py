"""Contig tables keyed by name: MetaBAT depth tables and truth tables, and name checks."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)


def check_names(
    reference: np.ndarray | list[str],
    other: np.ndarray | list[str],
    ref_label: str,
    other_label: str,
    require_all: bool = True,
    show: int = 5,
) -> None:
    """Raise ``ValueError`` unless every name of ``reference`` occurs in ``other``.

    The message shows the counts and the first mismatches on both sides, which is what a
    user needs to spot a renamed assembly or a header-trimming difference.
    """
    ref = pd.Index(np.asarray(reference, dtype=object))
    oth = pd.Index(np.asarray(other, dtype=object))
    missing = ref.difference(oth, sort=False)
    extra = oth.difference(ref, sort=False)
    if len(missing) and require_all:
        raise ValueError(
            f"contig names differ between {ref_label} ({len(ref)} contigs) and {other_label} "
            f"({len(oth)} contigs): {len(missing)} of {ref_label} are missing from {other_label} "
            f"(first: {list(missing[:show])}); {len(extra)} of {other_label} are not in {ref_label} "
            f"(first: {list(extra[:show])})"
        )
    if len(extra):
        logger.info(
            "%d contigs of %s are not in %s (e.g. %s); ignored",
            len(extra),
            other_label,
            ref_label,
            list(extra[:show]),
        )


def read_depth_table(path: str | os.PathLike) -> tuple[pd.Index, np.ndarray, list[str]]:
    """Read a ``jgi_summarize_bam_contig_depths`` table.

    Returns ``(contig names, [n, n_samples] float32 mean depths, sample names)``; the
    ``-var`` columns, ``contigLen`` and ``totalAvgDepth`` are not model inputs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"depth table {path} does not exist")
    table = pd.read_csv(path, sep="\t", dtype={"contigName": str})
    need = {"contigName", "contigLen", "totalAvgDepth"}
    if not need <= set(table.columns):
        raise ValueError(
            f"depth table {path} lacks columns {sorted(need - set(table.columns))}; "
            "expected the jgi_summarize_bam_contig_depths format"
        )
    samples = [c for c in table.columns[3:] if not c.endswith("-var")]
    if not samples:
        raise ValueError(f"depth table {path} has no per-sample depth columns")
    if table["contigName"].duplicated().any():
        dup = table.loc[table["contigName"].duplicated(), "contigName"].tolist()[:5]
        raise ValueError(f"depth table {path} lists contigs more than once (first: {dup})")
    depth = table[samples].to_numpy(dtype=np.float64)
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise ValueError(f"depth table {path} holds negative or non-finite depths")
    return pd.Index(table["contigName"]), depth.astype(np.float32), samples


def depth_features(names: np.ndarray, depth_path: str | os.PathLike) -> np.ndarray:
    """[n, n_samples] abundance inputs for the contigs ``names`` (in that order).

    Each sample is divided by its mean depth (a library-size normalisation), ``log1p``
    tames the long tail, and each column is z-scored so that an untrained decoder (output
    near 0) starts at the mean abundance; the VAE reconstructs these with MSE.
    """
    index, depth, _ = read_depth_table(depth_path)
    check_names(names, index, "the k-mer profiles", f"depth table {depth_path}")
    rows = index.get_indexer(pd.Index(np.asarray(names, dtype=object)))
    depth = depth[rows].astype(np.float64)
    scale = depth.mean(axis=0, keepdims=True)
    scale[scale == 0] = 1.0
    logged = np.log1p(depth / scale)
    sd = logged.std(axis=0, keepdims=True)
    sd[sd == 0] = 1.0
    return ((logged - logged.mean(axis=0, keepdims=True)) / sd).astype(np.float32)


def read_truth(path: str | os.PathLike) -> pd.Series:
    """contig -> genome from a truth TSV (columns ``contig`` and ``genome``; more allowed)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"truth table {path} does not exist")
    table = pd.read_csv(path, sep="\t", dtype=str)
    if not {"contig", "genome"} <= set(table.columns):
        raise ValueError(f"truth table {path} needs columns 'contig' and 'genome', has {list(table.columns)}")
    if table["contig"].duplicated().any():
        dup = table.loc[table["contig"].duplicated(), "contig"].tolist()[:5]
        raise ValueError(f"truth table {path} lists contigs more than once (first: {dup})")
    return pd.Series(table["genome"].to_numpy(), index=pd.Index(table["contig"]), name="genome")
