"""Write bins: one FASTA per bin above a minimum size, a contig -> bin table, bin summaries.

The contig table lists every contig of the assembly. Contigs the clustering left out and
contigs the features step did not profile are listed too: ``bin`` is ``"unbinned"`` and
``status`` says why (``outlier``: far from every cluster, see
``genomelab.binning.cluster.outlier_scores``; ``short``: shorter than
``binning.features.min_length``; ``no_kmers``: fewer valid 6-mers than a contig of that
length without N, e.g. mostly N); binned contigs
have ``status`` ``"binned"``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from genomelab.io.atomic import staging_dir
from genomelab.io.dropped import Dropped, count_dropped
from genomelab.io.fasta import read_fasta, write_fasta_record
from genomelab.io.tables import CONTIG_BINS_COLUMNS

logger = logging.getLogger(__name__)


CONTIG_COLUMNS = list(CONTIG_BINS_COLUMNS)
BINNED, UNBINNED = "binned", "unbinned"
OUTLIER_LABEL = -1  # the cluster id of contigs the clustering leaves out
# Why a contig of the assembly has no bin (values of ``status``): the step that left it out
# and the reason as the summary words it.
UNBINNED_REASONS = {
    "outlier": (
        "binning_encode",
        "far from every cluster (mean neighbour distance above its cluster's binning.cluster.outlier_fence or outlier_ratio), not binned",
    ),
    "short": ("binning_features", "shorter than binning.features.min_length, not profiled"),
    "no_kmers": (
        "binning_features",
        "fewer valid 6-mers than a binning.features.min_length contig (mostly N or other non-ACGT letters), "
        "not profiled",
    ),
}


def n50(lengths: np.ndarray) -> int:
    """Length L such that contigs of at least L bp hold half of the bases."""
    lengths = np.sort(np.asarray(lengths, dtype=np.int64))[::-1]
    if len(lengths) == 0:
        return 0
    cum = np.cumsum(lengths)
    return int(lengths[np.searchsorted(cum, cum[-1] / 2)])


def bin_summary(
    names: np.ndarray, labels: np.ndarray, lengths: np.ndarray, gc: np.ndarray, min_bin_bp: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(contig table, per-bin table).

    Bins are renamed ``bin_00001``... by decreasing size; ``written`` marks bins of at
    least ``min_bin_bp`` bp (written as FASTA, like MetaBAT2's ``-s``); small bins stay in
    the tables so that no contig disappears from the output. Contigs labelled
    ``OUTLIER_LABEL`` are listed with ``bin`` ``"unbinned"`` and ``status`` ``"outlier"``.
    """
    frame = pd.DataFrame(
        {
            "contig": np.asarray(names, dtype=object),
            "cluster": np.asarray(labels),
            "length": np.asarray(lengths, dtype=np.int64),
            "gc_bp": np.asarray(gc, dtype=np.float64) * np.asarray(lengths),
        }
    )
    outlier = frame["cluster"].to_numpy() == OUTLIER_LABEL
    left_out, frame = frame[outlier].copy(), frame[~outlier].copy()
    grouped = frame.groupby("cluster")
    per_bin = pd.DataFrame(
        {
            "size_bp": grouped["length"].sum(),
            "n_contigs": grouped.size(),
            "n50": grouped["length"].agg(n50),
            "gc": grouped["gc_bp"].sum() / grouped["length"].sum(),
        }
    )
    per_bin = per_bin.sort_values(["size_bp", "n_contigs"], ascending=False)
    width = max(5, len(str(len(per_bin))))
    per_bin["bin"] = [f"bin_{i + 1:0{width}d}" for i in range(len(per_bin))]
    per_bin["written"] = per_bin["size_bp"] >= min_bin_bp
    frame["bin"] = per_bin.loc[frame["cluster"], "bin"].to_numpy()
    frame["bin_written"] = per_bin.loc[frame["cluster"], "written"].to_numpy()
    frame["status"] = BINNED
    left_out["bin"], left_out["bin_written"], left_out["status"] = UNBINNED, False, "outlier"
    contig_table = pd.concat([frame[CONTIG_COLUMNS], left_out[CONTIG_COLUMNS]], ignore_index=True)
    per_bin = per_bin.reset_index(drop=True)[["bin", "size_bp", "n_contigs", "n50", "gc", "written"]]
    return contig_table, per_bin


def write_bin_fastas(
    contigs_fasta: str | os.PathLike,
    contig_table: pd.DataFrame,
    out_dir: str | os.PathLike,
    max_open: int = 128,
    unlisted: list[tuple[str, int]] | None = None,
) -> int:
    """Stream ``contigs_fasta`` once and append each contig of a written bin to its FASTA.

    At most ``max_open`` files are open at a time (least recently used closed first), so
    thousands of bins do not exhaust file handles. The folder appears atomically.
    ``unlisted``, when given, receives ``(name, length)`` of every record that
    ``contig_table`` does not list (contigs the features step did not profile).
    """
    listed = set(contig_table["contig"]) if unlisted is not None else set()
    out_dir = Path(out_dir)
    target = dict(
        zip(
            contig_table.loc[contig_table["bin_written"], "contig"],
            contig_table.loc[contig_table["bin_written"], "bin"],
            strict=True,
        )
    )
    # Beside out_dir, renamed onto it when whole; a folder left by a kill -9 goes first.
    tmp = staging_dir(out_dir)
    handles: OrderedDict[str, BinaryIO] = OrderedDict()
    n_written = 0
    try:
        for name, seq in read_fasta(contigs_fasta):
            bin_name = target.get(name)
            if bin_name is None:
                if unlisted is not None and name not in listed:
                    unlisted.append((name, len(seq)))
                continue
            fh = handles.pop(bin_name, None)
            if fh is None:
                if len(handles) >= max_open:
                    handles.popitem(last=False)[1].close()
                fh = open(tmp / f"{bin_name}.fna", "ab")
            handles[bin_name] = fh
            write_fasta_record(fh, name, seq)
            n_written += 1
        for fh in handles.values():
            fh.close()
        handles.clear()
        if n_written != len(target):
            raise ValueError(f"{contigs_fasta}: {len(target) - n_written} binned contigs were not found")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    except BaseException:
        for fh in handles.values():
            fh.close()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n_written


def add_unbinned(
    contig_table: pd.DataFrame, unlisted: list[tuple[str, int]], min_length: int
) -> pd.DataFrame:
    """``contig_table`` followed by one ``unbinned`` row per contig in ``unlisted``
    (``(name, length)`` in FASTA order); ``status`` is ``short`` below ``min_length`` bp,
    ``no_kmers`` otherwise (the features step skips both, see ``kmers.iter_profiles``)."""
    if not unlisted:
        return contig_table
    names, lengths = zip(*unlisted, strict=True)
    lengths = np.asarray(lengths, dtype=np.int64)
    extra = pd.DataFrame(
        {
            "contig": np.asarray(names, dtype=object),
            "bin": UNBINNED,
            "length": lengths,
            "bin_written": False,
            "status": np.where(lengths < min_length, "short", "no_kmers"),
        }
    )
    return pd.concat([contig_table, extra[CONTIG_COLUMNS]], ignore_index=True)


def unbinned_dropped(contig_table: pd.DataFrame) -> list[Dropped]:
    """One ``Dropped`` entry per reason of the table's unbinned contigs (FASTA order)."""
    out = []
    for status, (step, reason) in UNBINNED_REASONS.items():
        ids = contig_table.loc[contig_table["status"] == status, "contig"]
        entry = count_dropped(step, "contigs", reason, ids)
        if entry is not None:
            out.append(entry)
    return out


def empty_bins_reason(per_bin: pd.DataFrame, contig_table: pd.DataFrame, min_bin_bp: int) -> str:
    """Why no bin was written: the largest cluster beside ``min_bin_bp`` and the assembly."""
    total = int(contig_table["length"].sum())
    largest = int(per_bin["size_bp"].max()) if len(per_bin) else 0
    return (
        f"no bin written: no cluster reaches bins.min_bin_bp = {min_bin_bp} bp (largest {largest} bp, "
        f"{len(per_bin)} clusters; the {len(contig_table)} listed contigs hold {total} bp"
        + ("; the assembly is smaller than one bin" if total < min_bin_bp else "")
        + ")"
    )


def write_bins(
    features_h5: str | os.PathLike,
    clusters: str | os.PathLike,
    contigs: str | os.PathLike,
    min_bin_bp: int,
    fasta_dir: str | os.PathLike,
    contig_bins_out: str | os.PathLike,
    bin_summary_out: str | os.PathLike,
) -> pd.DataFrame:
    """Bins of the clustered contigs: one FASTA per bin of >= ``min_bin_bp`` bp, the contig ->
    bin table and the per-bin summary (every bin, written or not). Returns the summary."""
    from genomelab.binning.kmers import GROUP_SLICES, read_profiles_h5
    from genomelab.io.tables import read_clusters, write_table

    prof = read_profiles_h5(features_h5)
    labels = read_clusters(clusters, prof.names)
    contig_table, per_bin = bin_summary(
        prof.names,
        labels,
        prof.lengths,
        prof.features[:, GROUP_SLICES["gc"].start],
        min_bin_bp,
    )
    unlisted: list[tuple[str, int]] = []
    n = write_bin_fastas(contigs, contig_table, fasta_dir, unlisted=unlisted)
    # Contigs the features step skipped are listed as unbinned, not left out.
    write_table(add_unbinned(contig_table, unlisted, prof.min_length), contig_bins_out)
    write_table(per_bin, bin_summary_out)
    written = per_bin[per_bin["written"]]
    if written.empty:
        logger.warning("%s", empty_bins_reason(per_bin, contig_table, min_bin_bp))
    logger.info(
        "%d bins, %d written (>= %d bp) holding %d contigs and %d bp; %d small bins listed in the TSV only; "
        "%d contigs not profiled listed as unbinned",
        len(per_bin),
        len(written),
        min_bin_bp,
        n,
        int(written["size_bp"].sum()),
        len(per_bin) - len(written),
        len(unlisted),
    )
    return per_bin
