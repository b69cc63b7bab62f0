"""Write bins: one FASTA per bin above a minimum size, a contig -> bin table, bin summaries."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd

from genomelab.io.fasta import read_fasta, write_fasta_record

logger = logging.getLogger(__name__)


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
    the tables so that no contig disappears from the output.
    """
    frame = pd.DataFrame(
        {
            "contig": np.asarray(names, dtype=object),
            "cluster": np.asarray(labels),
            "length": np.asarray(lengths, dtype=np.int64),
            "gc_bp": np.asarray(gc, dtype=np.float64) * np.asarray(lengths),
        }
    )
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
    contig_table = frame[["contig", "bin", "length", "bin_written"]]
    per_bin = per_bin.reset_index(drop=True)[["bin", "size_bp", "n_contigs", "n50", "gc", "written"]]
    return contig_table, per_bin


def write_bin_fastas(
    contigs_fasta: str | os.PathLike,
    contig_table: pd.DataFrame,
    out_dir: str | os.PathLike,
    max_open: int = 128,
) -> int:
    """Stream ``contigs_fasta`` once and append each contig of a written bin to its FASTA.

    At most ``max_open`` files are open at a time (least recently used closed first), so
    thousands of bins do not exhaust file handles. The folder appears atomically.
    """
    out_dir = Path(out_dir)
    target = dict(
        zip(
            contig_table.loc[contig_table["bin_written"], "contig"],
            contig_table.loc[contig_table["bin_written"], "bin"],
            strict=True,
        )
    )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    handles: OrderedDict[str, BinaryIO] = OrderedDict()
    n_written = 0
    try:
        for name, seq in read_fasta(contigs_fasta):
            bin_name = target.get(name)
            if bin_name is None:
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
    n = write_bin_fastas(contigs, contig_table, fasta_dir)
    write_table(contig_table, contig_bins_out)
    write_table(per_bin, bin_summary_out)
    written = per_bin[per_bin["written"]]
    logger.info(
        "%d bins, %d written (>= %d bp) holding %d contigs and %d bp; %d small bins listed in the TSV only",
        len(per_bin),
        len(written),
        min_bin_bp,
        n,
        int(written["size_bp"].sum()),
        len(per_bin) - len(written),
    )
    return per_bin
