"""Score a new sequence with a trained regulon network: tracks of its three heads.

A region ``[start, end)`` of a FASTA record (or a whole record, or a raw sequence) is tiled
with non-overlapping windows of the model's ``window_bp``, as the evaluated (val/test)
windows are tiled in training, so a region that is a training block gets the very
predictions training made there. A tail shorter than a window is covered by one last
window ending at the region's last whole bin (it overwrites the overlap); less than a bin
at the end is not scored. Predictions are averaged
with the reverse complement (:meth:`RegulonNet.predict`) and written as bedGraph, one file
per head and strand (sorted, non-overlapping intervals: ready for ``bedGraphToBigWig``).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.train.device import resolve_device

logger = logging.getLogger(__name__)

HEADS = ("expression", "density", "operon")
STRANDS = ("plus", "minus")
_REGION = re.compile(r"^(?P<contig>[^:]+)(:(?P<start>[\d,]+)-(?P<end>[\d,]+))?$")


@dataclass
class RegulonTracks:
    """Per head [2, n] (row 0 plus, row 1 minus) over ``[start, end)``; ``step`` bp per value."""

    contig: str
    start: int
    end: int
    tracks: dict[str, np.ndarray]
    steps: dict[str, int]
    n_unknown_bases: int


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

    def predict_codes(
        self, codes: np.ndarray, contig: str, start: int = 0, batch_size: int = 64
    ) -> RegulonTracks:
        """Tracks of the three heads over codes [L] (the region starts at ``start``; a tail
        shorter than ``bin_bp`` is not scored, so the tracks end at a whole bin)."""
        from genomelab.regulon.training import predict_windows

        starts, length = self.window_starts(start, start + len(codes))
        end = start + len(codes) // self.bin_bp * self.bin_bp
        if end < start + len(codes):
            logger.info(
                "%s: the last %d bp (less than a bin) are not scored", contig, start + len(codes) - end
            )
        windows = codes[(starts - start)[:, None] + np.arange(length)]
        pred = predict_windows(self.model, torch.from_numpy(np.ascontiguousarray(windows)), batch_size)
        steps = {"expression": self.resolution_bp, "operon": self.resolution_bp, "density": self.bin_bp}
        tracks = {}
        for head, step in steps.items():
            track = np.full((2, (end - start) // step), np.nan, np.float32)
            for i, s in enumerate(starts):
                first = (s - start) // step
                track[:, first : first + pred[head].shape[-1]] = pred[head][i]
            tracks[head] = track
        n_unknown = int((codes == 4).sum())
        return RegulonTracks(contig, start, end, tracks, steps, n_unknown)

    def predict_fasta(self, fasta: str | os.PathLike, region: str | None = None) -> RegulonTracks:
        """Tracks over ``region`` (``contig[:start-end]``) of ``fasta``, or its first record."""
        from genomelab.regulon.targets import read_genome

        contig, start, end = parse_region(region) if region else (None, None, None)
        name, codes = read_genome(fasta, contig)
        start = 0 if start is None else start
        end = len(codes) if end is None else end
        if not 0 <= start < end <= len(codes):
            raise ValueError(f"{fasta}: region {name}:{start}-{end} is outside the record's {len(codes)} bp")
        return self.predict_codes(codes[start:end], name, start)


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
) -> dict[str, str]:
    """bedGraph tracks (and ``tracks.json``: region, steps, files) of ``fasta``'s ``region``."""
    predictor = RegulonPredictor(model, device)
    tracks = predictor.predict_fasta(fasta, region)
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
            "files": paths,
        },
    )
    if tracks.n_unknown_bases:
        logger.warning("%s: %d bases are not A/C/G/T (scored as N)", fasta, tracks.n_unknown_bases)
    return paths
