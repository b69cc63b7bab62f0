"""Score a new sequence with a trained regulon network: tracks of its three heads.

A region ``[start, end)`` of a FASTA record (or a whole record, or a raw sequence) is tiled
with non-overlapping windows of the model's ``window_bp``, as the evaluated (val/test)
windows are tiled in training, so a region that is a training block gets the very
predictions training made there. A tail shorter than a window is covered by one last
window ending at the region's last whole bin (it overwrites the overlap); less than a bin
at the end is not scored. Predictions are averaged
with the reverse complement (:meth:`RegulonNet.predict`) and written as bedGraph, one file
per head and strand (sorted, non-overlapping intervals: ready for ``bedGraphToBigWig``).

A model trained with ``regulon.model.inputs: sequence+annotation`` also reads six per-bp
gene-annotation channels (:mod:`genomelab.regulon.features`). Prediction builds them with the
function training used (:func:`~genomelab.regulon.features.annotation_track`, over the
region in contig coordinates) from the genes the user gives: a GFF3 file
(:func:`genomelab.io.gff.read_gff3_loci`: genes, pseudogenes and the CDS no gene owns, of the
FASTA record's seqid) or a gene table in the layout the workflow writes (``genes.tsv``:
0-based half-open start, end, strand). Such a model refuses to predict without genes, and a
sequence-only model refuses genes (it would silently ignore them).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.errors import FormatError
from genomelab.train.device import resolve_device

logger = logging.getLogger(__name__)

HEADS = ("expression", "density", "operon")
STRANDS = ("plus", "minus")
_REGION = re.compile(r"^(?P<contig>[^:]+)(:(?P<start>[\d,]+)-(?P<end>[\d,]+))?$")


# Columns every gene table needs (the workflow's genes.tsv has them, and more).
GENE_TABLE_COLUMNS = ("start", "end", "strand")
NEEDS_GENES = (
    "this regulon model reads gene-annotation channels (regulon.model.inputs: "
    "sequence+annotation): give the genes of the sequence (--gff GFF3 or gene table, "
    "regulon.predict.annotation, or the request's 'genes')"
)
REFUSES_GENES = (
    "this regulon model reads the sequence only (regulon.model.inputs: sequence) and would "
    "ignore the genes given: leave them out, or use a model trained with sequence+annotation"
)


@dataclass
class RegulonTracks:
    """Per head [2, n] (row 0 plus, row 1 minus) over ``[start, end)``; ``step`` bp per value."""

    contig: str
    start: int
    end: int
    tracks: dict[str, np.ndarray]
    steps: dict[str, int]
    n_unknown_bases: int
    n_genes: int | None = None


def _is_gff(path: Path) -> bool:
    from genomelab.io.streams import open_text

    if path.name.lower().removesuffix(".gz").endswith((".gff", ".gff3")):
        return True
    with open_text(path) as fh:
        return fh.readline().startswith("##gff-version")


def _gene_table(path: Path, contig: str | None) -> pd.DataFrame:
    """start, end, strand of a tab-separated gene table (0-based half-open, as ``genes.tsv``);
    rows of other contigs left out when it has a ``contig`` or ``seqid`` column."""
    table = pd.read_csv(path, sep="\t", comment=None, dtype={"strand": str}, keep_default_na=False)
    missing = [c for c in GENE_TABLE_COLUMNS if c not in table.columns]
    if missing:
        raise FormatError(
            path, f"not GFF3 and no gene-table columns {missing} (a header with start, end, strand)"
        )
    for col in ("contig", "seqid"):
        if contig is not None and col in table.columns:
            names = sorted(set(table[col].astype(str)))
            table = table[table[col].astype(str) == contig]
            if table.empty:
                raise FormatError(path, f"no gene on {col} {contig!r} (the table has {names[:5]})")
    if table.empty:
        raise FormatError(path, "the gene table has no rows")
    starts = pd.to_numeric(table["start"], errors="coerce")
    ends = pd.to_numeric(table["end"], errors="coerce")
    bad = ~(
        starts.notna() & ends.notna() & (starts >= 0) & (ends > starts) & table["strand"].isin(["+", "-"])
    )
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        row = table.iloc[i]
        raise FormatError(
            path,
            f"gene start={row['start']!r} end={row['end']!r} strand={row['strand']!r} is not "
            "0 <= start < end with strand + or -",
            int(table.index[i]) + 2,  # the header is line 1
        )
    return pd.DataFrame(
        {"start": starts.astype("int64"), "end": ends.astype("int64"), "strand": table["strand"]}
    ).reset_index(drop=True)


def read_genes_for_prediction(path: str | os.PathLike, contig: str | None = None) -> pd.DataFrame:
    """Genes (start, end: 0-based half-open; strand '+'/'-') of ``contig`` from a GFF3 file or
    a gene table (detected by the name .gff/.gff3 or a ``##gff-version`` first line)."""
    from genomelab.io.gff import read_gff3_loci

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gene annotation {path} does not exist")
    if _is_gff(path):
        return read_gff3_loci(path, contig)[["start", "end", "strand"]]
    return _gene_table(path, contig)


def parse_region(text: str) -> tuple[str, int | None, int | None]:
    """``contig`` or ``contig:start-end`` (0-based, end exclusive) -> parts."""
    m = _REGION.match(text.strip())
    if not m:
        raise ValueError(f"region must be 'contig' or 'contig:start-end', not {text!r}")
    start, end = m.group("start"), m.group("end")
    if start is None:
        return m.group("contig"), None, None
    return m.group("contig"), int(start.replace(",", "")), int(end.replace(",", ""))


def encode(sequence: str) -> np.ndarray:
    """A DNA string -> codes uint8 [L] (A=0 C=1 G=2 T=3, anything else 4), as training reads it."""
    from genomelab.regulon.targets import _LUT

    return _LUT[np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)]


class RegulonPredictor:
    """An exported regulon network with the window geometry it was trained on."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        from genomelab.regulon.training import load_model

        self.path = str(path)
        self.model, self.exported = load_model(path)
        self.device = resolve_device(str(device))
        self.model.to(self.device)
        targets = self.exported.extra.get("targets_config") or {}
        if "window_bp" not in targets:
            raise ValueError(f"{path}: the model records no window geometry (targets_config)")
        self.window_bp = int(targets["window_bp"])
        self.resolution_bp = int(self.model.config.resolution_bp)
        self.bin_bp = int(self.model.config.bin_bp)
        self.uses_annotation = bool(self.model.uses_annotation)

    def check_genes(self, given: bool) -> None:
        """Genes given exactly when the model reads annotation channels (else ValueError)."""
        if self.uses_annotation and not given:
            raise ValueError(f"{self.path}: {NEEDS_GENES}")
        if not self.uses_annotation and given:
            raise ValueError(f"{self.path}: {REFUSES_GENES}")

    def window_starts(self, start: int, end: int) -> tuple[np.ndarray, int]:
        """Window starts over ``[start, end)`` and the window length (``window_bp``, or the
        region's length rounded down to ``bin_bp`` when it is shorter than a window). Only
        whole bins are scored: the region is cut to a multiple of ``bin_bp``."""
        length = (end - start) // self.bin_bp * self.bin_bp
        if length == 0:
            raise ValueError(
                f"region of {end - start} bp is shorter than the model's bin of {self.bin_bp} bp"
            )
        if length < self.window_bp:
            return np.asarray([start]), length
        starts = list(range(start, start + length - self.window_bp + 1, self.window_bp))
        if starts[-1] + self.window_bp < start + length:
            starts.append(start + length - self.window_bp)  # on the bin grid: both are multiples
        return np.asarray(starts), self.window_bp

    def window_inputs(
        self, codes: np.ndarray, start: int, genes: pd.DataFrame | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Window starts [n], codes [n, W] and packed annotation [n, W] (None without
        ``genes``) of the region ``[start, start + len(codes))``: the network's inputs."""
        from genomelab.regulon.features import annotation_track

        starts, length = self.window_starts(start, start + len(codes))
        index = (starts - start)[:, None] + np.arange(length)
        annotation = None
        if genes is not None:
            # The region's track, then cut into windows: as training cuts its region's track.
            annotation = annotation_track(genes, start, start + len(codes))[index]
        return starts, codes[index], annotation

    def predict_codes(
        self,
        codes: np.ndarray,
        contig: str,
        start: int = 0,
        batch_size: int = 64,
        genes: pd.DataFrame | None = None,
    ) -> RegulonTracks:
        """Tracks of the three heads over codes [L] (the region starts at ``start``; a tail
        shorter than ``bin_bp`` is not scored, so the tracks end at a whole bin).

        ``genes`` (start, end, strand in contig coordinates): required by, and only by, a
        model with annotation inputs; the channels are those training built for the same bp."""
        from genomelab.regulon.training import predict_windows

        self.check_genes(genes is not None)
        starts, windows, annotation = self.window_inputs(codes, start, genes)
        end = start + len(codes) // self.bin_bp * self.bin_bp
        if end < start + len(codes):
            logger.info(
                "%s: the last %d bp (less than a bin) are not scored", contig, start + len(codes) - end
            )
        pred = predict_windows(
            self.model,
            torch.from_numpy(np.ascontiguousarray(windows)),
            batch_size,
            annotation=None if annotation is None else torch.from_numpy(np.ascontiguousarray(annotation)),
        )
        steps = {"expression": self.resolution_bp, "operon": self.resolution_bp, "density": self.bin_bp}
        tracks = {}
        for head, step in steps.items():
            track = np.full((2, (end - start) // step), np.nan, np.float32)
            for i, s in enumerate(starts):
                first = (s - start) // step
                track[:, first : first + pred[head].shape[-1]] = pred[head][i]
            tracks[head] = track
        n_unknown = int((codes == 4).sum())
        n_genes = None if genes is None else int(((genes["end"] > start) & (genes["start"] < end)).sum())
        return RegulonTracks(contig, start, end, tracks, steps, n_unknown, n_genes)

    def predict_fasta(
        self,
        fasta: str | os.PathLike,
        region: str | None = None,
        annotation: str | os.PathLike | None = None,
    ) -> RegulonTracks:
        """Tracks over ``region`` (``contig[:start-end]``) of ``fasta``, or its first record;
        ``annotation``: GFF3 or gene table of its genes (models with annotation inputs)."""
        from genomelab.regulon.targets import read_genome

        self.check_genes(annotation is not None)

        contig, start, end = parse_region(region) if region else (None, None, None)
        name, codes = read_genome(fasta, contig)
        start = 0 if start is None else start
        end = len(codes) if end is None else end
        if not 0 <= start < end <= len(codes):
            raise ValueError(f"{fasta}: region {name}:{start}-{end} is outside the record's {len(codes)} bp")
        genes = None if annotation is None else read_genes_for_prediction(annotation, name)
        return self.predict_codes(codes[start:end], name, start, genes=genes)


def write_bedgraphs(tracks: RegulonTracks, out_dir: str | os.PathLike) -> dict[str, str]:
    """One bedGraph per head and strand (``<head>.<strand>.bedGraph``); NaN values are left
    out. Returns {``head.strand``: path}."""
    out_dir = Path(out_dir)
    paths = {}
    for head, track in tracks.tracks.items():
        step = tracks.steps[head]
        for row, strand in enumerate(STRANDS):
            path = out_dir / f"{head}.{strand}.bedGraph"
            values = track[row]
            keep = np.flatnonzero(np.isfinite(values))
            starts = tracks.start + keep * step
            lines = [
                f"{tracks.contig}\t{s}\t{s + step}\t{v:.6g}\n"
                for s, v in zip(starts, values[keep], strict=True)
            ]
            with atomic_output(path) as tmp:
                Path(tmp).write_text(f'track type=bedGraph name="{head} {strand}"\n' + "".join(lines))
            paths[f"{head}.{strand}"] = str(path)
    return paths


def predict_files(
    model: str | os.PathLike,
    fasta: str | os.PathLike,
    out_dir: str | os.PathLike,
    region: str | None = None,
    device: str = "cpu",
    annotation: str | os.PathLike | None = None,
) -> dict[str, str]:
    """bedGraph tracks (and ``tracks.json``: region, steps, files, genes) of ``fasta``'s
    ``region``; ``annotation``: GFF3 or gene table, for models with annotation inputs."""
    predictor = RegulonPredictor(model, device)
    tracks = predictor.predict_fasta(fasta, region, annotation)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = write_bedgraphs(tracks, out_dir)
    atomic_write_json(
        Path(out_dir) / "tracks.json",
        {
            "model": str(model),
            "contig": tracks.contig,
            "start": tracks.start,
            "end": tracks.end,
            "steps_bp": tracks.steps,
            "n_unknown_bases": tracks.n_unknown_bases,
            "annotation": None if annotation is None else str(annotation),
            "n_genes_in_region": tracks.n_genes,
            "files": paths,
        },
    )
    if tracks.n_unknown_bases:
        logger.warning("%s: %d bases are not A/C/G/T (scored as N)", fasta, tracks.n_unknown_bases)
    return paths
