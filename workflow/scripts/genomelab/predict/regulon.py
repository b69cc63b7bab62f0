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
sequence-only model refuses genes (it would silently ignore them) unless it carries a pair
readout (below), which reads them.

A model trained by the workflow carries its **operon pair readout** (``extra["operon_readout"]``:
:class:`~genomelab.regulon.operons.OperonReadout`, logistic regressions fitted on the training
pairs after training, plain numbers). Given genes, prediction then also scores every adjacent
same-strand gene pair whose junction lies in the region (``operon_pairs.tsv``: P(same operon)
from the readout with the distance log-likelihood, and from the network's output alone) and
writes the readout's per-bp track (``operon_readout.<strand>.bedGraph``: a junction's bins
take its pair's probability, the co-expression readout's where the model has one for the
pair, else the combined readout's; a gene's 1 - (1 - p_left)(1 - p_right), 0 elsewhere), the
calls evaluation scores. A pair whose junction the predicted track misses (a region tail
shorter than a bin; for the track, also the pair beyond the region of a gene at its edge) gets
the readouts' annotation fallback (``p_operon_network`` stays NA).
Older exports without a readout predict their tracks as before.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.errors import FormatError
from genomelab.regulon.operons import OperonReadout
from genomelab.train.device import resolve_device
from genomelab.train.export import model_files, refuse_repeated_files

logger = logging.getLogger(__name__)

HEADS = ("expression", "density", "operon")
# Key of the exported model's extra holding the operon pair readout (regulon/training.py).
READOUT_KEY = "operon_readout"
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
    "this regulon model reads the sequence only (regulon.model.inputs: sequence) and carries "
    "no operon pair readout, so it would ignore the genes given: leave them out, or use a model "
    "trained with sequence+annotation"
)
# Files written only with genes and a pair readout (keys of write_bedgraphs's paths + suffix).
PAIR_FILES = ("operon_pairs.tsv", "operon_readout.plus.bedGraph", "operon_readout.minus.bedGraph")
# operon_pairs.tsv: coordinates 0-based half-open; distance = downstream start - upstream end.
PAIR_TABLE_COLUMNS = (
    "contig", "upstream_id", "upstream_start", "upstream_end", "downstream_id", "downstream_start",
    "downstream_end", "strand", "distance", "p_operon", "p_operon_network", "coexpression",
    "p_operon_coexpression",
)  # fmt: skip


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
    # With a pair readout and genes: the scored pairs (PAIR_TABLE_COLUMNS) and the readout's
    # per-bp track [2, n_res] (P(operon), at the operon head's step).
    pairs: pd.DataFrame | None = None
    readout: np.ndarray | None = None


def _is_gff(path: Path) -> bool:
    from genomelab.io.streams import open_text

    if path.name.lower().removesuffix(".gz").endswith((".gff", ".gff3")):
        return True
    with open_text(path) as fh:
        return fh.readline().startswith("##gff-version")


def _gene_table(path: Path, contig: str | None) -> pd.DataFrame:
    """id, start, end, strand of a tab-separated gene table (0-based half-open, as ``genes.tsv``);
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
    found = next((c for c in ("bnumber", "gene_id", "name") if c in table.columns), None)
    return pd.DataFrame(
        {
            "id": table[found].astype(str) if found else "",
            "start": starts.astype("int64"),
            "end": ends.astype("int64"),
            "strand": table["strand"],
        }
    ).reset_index(drop=True)


def read_gene_loci(path: str | os.PathLike, contig: str | None = None) -> pd.DataFrame:
    """Genes (id, start, end: 0-based half-open; strand '+'/'-') of ``contig`` from a GFF3
    file or a gene table (detected by the name .gff/.gff3 or a ``##gff-version`` first line).
    ``id``: a GFF3 locus's locus_tag, else Name, else ID; a table's bnumber, gene_id or name
    column; else ``start-end(strand)``."""
    from genomelab.io.gff import read_gff3_loci

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"gene annotation {path} does not exist")
    if _is_gff(path):
        loci = read_gff3_loci(path, contig).reset_index(drop=True)
        ids = loci["locus_tag"].where(loci["locus_tag"] != "", loci["name"])
        ids = ids.where(ids != "", loci["id"]).astype(str)
    else:
        loci = _gene_table(path, contig)
        ids = loci["id"]
    coords = loci["start"].astype(str) + "-" + loci["end"].astype(str) + "(" + loci["strand"] + ")"
    ids = ids.where(ids != "", coords).to_numpy()
    return pd.DataFrame(
        {
            "id": ids,
            "start": loci["start"].to_numpy(),
            "end": loci["end"].to_numpy(),
            "strand": loci["strand"].to_numpy(),
        }
    )


def read_genes_for_prediction(path: str | os.PathLike, contig: str | None = None) -> pd.DataFrame:
    """Genes (start, end: 0-based half-open; strand '+'/'-') of ``contig`` (:func:`read_gene_loci`)."""
    return read_gene_loci(path, contig)[["start", "end", "strand"]]


def operon_calls(
    readout: OperonReadout,
    track: np.ndarray,
    genes: pd.DataFrame,
    contig: str,
    start: int,
    end: int,
    resolution_bp: int,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Pairs (PAIR_TABLE_COLUMNS) and the readout's per-bp track [2, (end - start) //
    resolution_bp] over ``[start, end)`` from the network's operon ``track`` there.

    Pairs are adjacent on the whole contig (``genes``: all of it, with ``id`` when known),
    as evaluation pairs genes over the genome; those whose junction lies in the region are
    listed (NaN where the track misses part of it, a tail shorter than a bin, and the readout
    has no annotation fallback). The track also scores the pairs beyond the region of the
    genes at its edges (from the readouts' fallback), so each gene combines both its
    neighbour pairs as evaluation's track does."""
    from genomelab.regulon.operons import (
        COEXPRESSED,
        COMBINED,
        PAIR_READOUT,
        TrackFrame,
        gene_pairs,
        pair_track,
    )

    g = genes.reset_index(drop=True)
    # A unique key per gene (ids may repeat or be empty); the table shows the ids.
    keyed = g.assign(bnumber=[f"g{i}" for i in range(len(g))])
    ids = dict(zip(keyed["bnumber"], g["id"] if "id" in g else keyed["bnumber"], strict=True))
    inside = keyed[(keyed["end"] > start) & (keyed["start"] < end)]
    pairs = gene_pairs(keyed)
    # Scored: the pairs of the genes in the region, so that a gene at its edge combines both
    # its neighbour pairs, as evaluation's track over the genome does (a junction the track
    # misses takes the readouts' annotation fallback there as here); the table lists those
    # whose junction lies in the region.
    scored = pairs["upstream"].isin(inside["bnumber"]) | pairs["downstream"].isin(inside["bnumber"])
    scored |= (pairs["lo"] < end) & (pairs["hi"] > start)  # a junction across the whole region
    in_region = (pairs["lo"] >= start) & (pairs["hi"] <= end)
    pairs = pairs[scored | in_region].reset_index(drop=True)
    listed = in_region[scored | in_region].to_numpy()
    # The training genome's co-expression of the pair, by the genes' IDs (NaN elsewhere).
    pairs = readout.with_coexpression(pairs, pairs["upstream"].map(ids), pairs["downstream"].map(ids))
    frame = TrackFrame(start, resolution_bp)
    p_both = readout.probability(track, pairs, frame, COMBINED)
    # Only on the training genome's pairs (as evaluation scores them: those without
    # co-expression with its flag 0): elsewhere p_operon is the call.
    known = pairs["training_pair"].to_numpy(bool)
    p_coexpressed = np.full(len(pairs), np.nan)
    if COEXPRESSED in readout.readouts and known.any():
        p_coexpressed[known] = readout.probability(track, pairs[known], frame, COEXPRESSED)
    elif listed.any():
        # Say why the column is empty: it looks like a failure otherwise.
        logger.info(
            "p_operon_coexpression is NA for all %d pairs: %s; use p_operon",
            int(listed.sum()),
            "none is an adjacent pair of the model's training genome (matched by the genes' IDs)"
            if COEXPRESSED in readout.readouts
            else "the model carries no co-expression readout (its training data gave too few pairs a "
            "co-expression: data/data_report.json's coexpression.note says why)",
        )
    # The best call per pair: the co-expression readout's where given (the training genome's
    # pairs; its per-bp track is then the one the evaluation scores), the combined one elsewhere.
    best = np.where(np.isfinite(p_coexpressed), p_coexpressed, p_both)
    bp_track = pair_track(best, pairs, inside, (start, end), resolution_bp, floor=0.0, combine="any")
    coords = keyed.set_index("bnumber")[["start", "end"]]
    up, down = coords.loc[pairs["upstream"]], coords.loc[pairs["downstream"]]
    table = pd.DataFrame(
        {
            "contig": contig,
            "upstream_id": pairs["upstream"].map(ids).to_numpy(),
            "upstream_start": up["start"].to_numpy(),
            "upstream_end": up["end"].to_numpy(),
            "downstream_id": pairs["downstream"].map(ids).to_numpy(),
            "downstream_start": down["start"].to_numpy(),
            "downstream_end": down["end"].to_numpy(),
            "strand": pairs["strand"].to_numpy(),
            "distance": pairs["distance"].to_numpy(),
            "p_operon": p_both,
            "p_operon_network": readout.probability(track, pairs, frame, PAIR_READOUT),
            "coexpression": pairs["coexpression"].to_numpy(),
            "p_operon_coexpression": p_coexpressed,
        },
        columns=list(PAIR_TABLE_COLUMNS),
    )
    return table[listed].reset_index(drop=True), bp_track


def parse_region(text: str) -> tuple[str, int | None, int | None]:
    """``contig`` or ``contig:start-end`` (0-based, end exclusive) -> parts."""
    m = _REGION.match(text.strip())
    if not m:
        raise ValueError(f"region must be 'contig' or 'contig:start-end', not {text!r}")
    start, end = m.group("start"), m.group("end")
    if start is None:
        return m.group("contig"), None, None
    first, last = int(start.replace(",", "")), int(end.replace(",", ""))
    if last <= first:
        raise ValueError(f"region {text!r}: end {last} is not after start {first} (0-based, end exclusive)")
    return m.group("contig"), first, last


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
        saved = self.exported.extra.get(READOUT_KEY)
        self.readout = None if saved is None else OperonReadout.from_dict(saved, self.path)

    def check_genes(self, given: bool) -> None:
        """Genes required by a model that reads annotation channels, refused by one that
        neither reads them nor carries a pair readout (else ValueError)."""
        if self.uses_annotation and not given:
            raise ValueError(f"{self.path}: {NEEDS_GENES}")
        if not self.uses_annotation and self.readout is None and given:
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
        if genes is not None and self.uses_annotation:
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
        model with annotation inputs (the channels are those training built for the same bp),
        and what the pair readout scores when the model carries one (all genes of the contig:
        pairs are formed there, then those in the region scored)."""
        from genomelab.regulon.training import predict_windows

        self.check_genes(genes is not None)
        if genes is not None:
            # Integer coordinates even without rows (an empty list, e.g. a server request's
            # "genes": [], gives object columns, which cannot index the tracks).
            genes = genes.astype({"start": np.int64, "end": np.int64})
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
        found = RegulonTracks(contig, start, end, tracks, steps, n_unknown, n_genes)
        if genes is not None and self.readout is not None:
            found.pairs, found.readout = operon_calls(
                self.readout, tracks["operon"], genes, contig, start, end, self.resolution_bp
            )
        return found

    def predict_fasta(
        self,
        fasta: str | os.PathLike,
        region: str | None = None,
        annotation: str | os.PathLike | None = None,
    ) -> RegulonTracks:
        """Tracks over ``region`` (``contig[:start-end]``) of ``fasta``, or its first record;
        ``annotation``: GFF3 or gene table of its genes (models with annotation inputs)."""
        self.check_genes(annotation is not None)
        name, codes, start, genes = read_region(fasta, region, annotation)
        return self.predict_codes(codes, name, start, genes=genes)


def read_region(
    fasta: str | os.PathLike, region: str | None = None, annotation: str | os.PathLike | None = None
) -> tuple[str, np.ndarray, int, pd.DataFrame | None]:
    """(record name, codes [end - start] of ``region`` (``contig[:start-end]``, or the first
    record whole), start, genes of ``annotation`` on the record or None): what a network
    scores, read once however many networks score it."""
    from genomelab.regulon.targets import read_genome

    contig, start, end = parse_region(region) if region else (None, None, None)
    name, codes = read_genome(fasta, contig)
    start = 0 if start is None else start
    end = len(codes) if end is None else end
    if not 0 <= start < end <= len(codes):
        raise ValueError(f"{fasta}: region {name}:{start}-{end} is outside the record's {len(codes)} bp")
    genes = None if annotation is None else read_gene_loci(annotation, name)
    if genes is not None:
        beyond = genes[genes["start"] >= len(codes)]
        if len(beyond):
            # Another sequence's genes (a whole genome's table given with a FASTA of one
            # part of it, or of another genome): their channels would sit at wrong places.
            first = beyond.iloc[0]
            raise ValueError(
                f"{annotation}: {len(beyond)} of its {len(genes)} genes start past the end of "
                f"{fasta}'s record {name!r} ({len(codes)} bp), first {first['id']} at "
                f"{first['start']}: not this sequence's genes (coordinates are the record's, "
                "0-based)"
            )
    return name, codes[start:end], start, genes


def check_same_geometry(predictors: Sequence[RegulonPredictor]) -> None:
    """Refuse networks whose tracks cannot be averaged (ValueError naming both files): other
    window, resolution or bin sizes, or annotation inputs in one only (their outputs would
    not lie on one grid, or read other inputs). A pair readout in some only is no refusal: a
    fold whose training split gave no pairs of both classes saves none (``fit_readout``),
    and the pair calls are then those of the networks that carry one."""
    first = predictors[0]
    refuse_repeated_files([p.path for p in predictors], "regulon models")
    for p in predictors:
        for what, mine, theirs in (
            ("window_bp", first.window_bp, p.window_bp),
            ("resolution_bp", first.resolution_bp, p.resolution_bp),
            ("bin_bp", first.bin_bp, p.bin_bp),
            ("annotation inputs", first.uses_annotation, p.uses_annotation),
        ):
            if mine != theirs:
                raise ValueError(
                    f"{p.path} and {first.path} cannot be averaged: {what} {theirs} and {mine}; average "
                    "the networks of one run's folds (regulon/folds/<k>/model/best.pt)"
                )


def _nanmean(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Element-wise mean over ``arrays`` of what is finite; NaN where none is."""
    stack = np.stack([np.asarray(a, np.float64) for a in arrays])
    finite = np.isfinite(stack)
    n = finite.sum(0)
    total = np.where(finite, stack, 0.0).sum(0)
    return np.where(n > 0, total / np.maximum(n, 1), np.nan)


def average_tracks(found: Sequence[RegulonTracks]) -> RegulonTracks:
    """The mean of several networks' :class:`RegulonTracks` over one region (a
    cross-validated run's folds, as replicate models are averaged): each head's track, and
    with genes and pair readouts each pair's probabilities and the readout's per-bp track,
    every fold's readout applied to its own network's operon track first, over the networks
    that carry a readout (a fold whose training split gave no pairs of both classes has
    none). A pair's co-expression call averages the folds whose readout gives one (a fold
    whose training split gave too few co-expressed pairs carries no co-expression readout)."""
    first = found[0]
    out = RegulonTracks(
        first.contig,
        first.start,
        first.end,
        {head: np.mean([f.tracks[head] for f in found], axis=0).astype(np.float32) for head in first.tracks},
        dict(first.steps),
        first.n_unknown_bases,
        first.n_genes,
    )
    called = [f for f in found if f.pairs is not None]
    if called:
        pairs = called[0].pairs.copy()  # type: ignore[union-attr]
        for column in ("p_operon", "p_operon_network", "coexpression", "p_operon_coexpression"):
            pairs[column] = _nanmean([f.pairs[column] for f in called])  # type: ignore[index]
        out.pairs = pairs
        out.readout = _nanmean([f.readout for f in called])  # type: ignore[misc]
    return out


def load_predictors(
    files: Sequence[str | os.PathLike], device: str | torch.device = "cpu"
) -> list[RegulonPredictor]:
    """The networks of ``files``: one, or several whose tracks can be averaged
    (:func:`check_same_geometry`)."""
    if not files:
        raise ValueError("no regulon model file given")
    predictors = [RegulonPredictor(f, device) for f in files]
    if len(predictors) > 1:
        check_same_geometry(predictors)
    return predictors


def route_genes(predictors: Sequence[RegulonPredictor], given: bool) -> list[bool]:
    """Whether each network gets the genes, when ``given``: those that read them (annotation
    inputs, or a pair readout); with none that does, all, which refuse them as one network
    does. Each is checked (:meth:`RegulonPredictor.check_genes`: ValueError naming its file)."""
    reads = [p.uses_annotation or p.readout is not None for p in predictors]
    routed = [given and (ok or not any(reads)) for ok in reads]
    for p, g in zip(predictors, routed, strict=True):
        p.check_genes(g)
    return routed


def predict_averaged(
    predictors: Sequence[RegulonPredictor],
    routed: Sequence[bool],
    codes: np.ndarray,
    contig: str,
    start: int,
    genes: pd.DataFrame | None,
) -> RegulonTracks:
    """Every network's tracks of one region (``genes`` to those :func:`route_genes` gave them),
    or one network's; several averaged (:func:`average_tracks`)."""
    found = [
        p.predict_codes(codes, contig, start, genes=genes if g else None)
        for p, g in zip(predictors, routed, strict=True)
    ]
    called = [p.readout is not None for p in predictors]
    if genes is not None and any(called) and not all(called):
        logger.warning(
            "%s carry no operon pair readout: the pair calls are the mean of the other %d network(s)",
            ", ".join(p.path for p, ok in zip(predictors, called, strict=True) if not ok),
            sum(called),
        )
    if len(found) == 1:
        return found[0]
    logger.info("averaged the tracks of %d networks: %s", len(found), ", ".join(p.path for p in predictors))
    return average_tracks(found)


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
    if tracks.readout is not None:
        step = tracks.steps["operon"]
        for row, strand in enumerate(STRANDS):
            path = out_dir / f"operon_readout.{strand}.bedGraph"
            starts = tracks.start + np.arange(tracks.readout.shape[1]) * step
            lines = [
                f"{tracks.contig}\t{s}\t{s + step}\t{v:.6g}\n"
                for s, v in zip(starts, tracks.readout[row], strict=True)
            ]
            with atomic_output(path) as tmp:
                Path(tmp).write_text(
                    f'track type=bedGraph name="operon readout {strand}" description="P(operon) from the pair readout"\n'
                    + "".join(lines)
                )
            paths[f"operon_readout.{strand}"] = str(path)
    if tracks.pairs is not None:
        path = out_dir / "operon_pairs.tsv"
        with atomic_output(path) as tmp:
            tracks.pairs.to_csv(tmp, sep="\t", index=False, na_rep="NA", float_format="%.6g")
        paths["operon_pairs"] = str(path)
    return paths


def predict_files(
    model: str | os.PathLike | Sequence[str | os.PathLike],
    fasta: str | os.PathLike,
    out_dir: str | os.PathLike,
    region: str | None = None,
    device: str = "cpu",
    annotation: str | os.PathLike | None = None,
) -> dict[str, str]:
    """bedGraph tracks (and ``tracks.json``: region, steps, files, genes) of ``fasta``'s
    ``region``; ``annotation``: GFF3 or gene table, for models with annotation inputs.
    ``model``: one exported network, or several (a cross-validated run's folds, the
    ``regulon_predict`` rule's default with K > 1), whose tracks and pair calls are averaged
    (:func:`average_tracks`); ``tracks.json`` then lists them under ``model_files``."""
    # The pair files of an earlier prediction into this folder (the regulon_predict rule's,
    # which does not declare them, so Snakemake keeps them) would sit beside tracks of
    # another region or without genes, or alone when this prediction fails: removed first.
    for name in PAIR_FILES:
        stale = Path(out_dir) / name
        if stale.is_file():
            stale.unlink()
            logger.info("removed %s of an earlier prediction", stale)
    files = model_files(model, "regulon model")
    predictors = load_predictors(files, device)
    given = route_genes(predictors, annotation is not None)  # before the genome is read
    # The region and its genes read once, scored by every network.
    name, codes, start, genes = read_region(fasta, region, annotation)
    tracks = predict_averaged(predictors, given, codes, name, start, genes)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    paths = write_bedgraphs(tracks, out_dir)
    atomic_write_json(
        Path(out_dir) / "tracks.json",
        {
            # One model file, or the networks averaged (as tissue's predictions.json lists them).
            **({"model": files[0]} if len(files) == 1 else {"model_files": files}),
            "contig": tracks.contig,
            "start": tracks.start,
            "end": tracks.end,
            "steps_bp": tracks.steps,
            "n_unknown_bases": tracks.n_unknown_bases,
            "annotation": None if annotation is None else str(annotation),
            "n_genes_in_region": tracks.n_genes,
            # The pair readout's calls (None: the model carries no readout, or no genes given).
            "operon_pairs_scored": None
            if tracks.pairs is None
            else int(tracks.pairs["p_operon"].notna().sum()),
            # Those whose junction the network scored (p_operon_network); the others' p_operon
            # is the readout's annotation fallback (FALLBACK_FEATURES).
            "operon_pairs_network_scored": None
            if tracks.pairs is None
            else int(tracks.pairs["p_operon_network"].notna().sum()),
            # Those with the co-expression readout's call (0: the log says why).
            "operon_pairs_coexpression_scored": None
            if tracks.pairs is None
            else int(tracks.pairs["p_operon_coexpression"].notna().sum()),
            "files": paths,
        },
    )
    if tracks.n_unknown_bases:
        logger.warning("%s: %d bases are not A/C/G/T (scored as N)", fasta, tracks.n_unknown_bases)
    return paths
