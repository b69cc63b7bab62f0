"""Step 2, targets over the genome, genome blocks and windows.

Tracks are strand-aware, shape [2, n] with row 0 the plus and row 1 the minus strand, so
that the reverse complement of a window is "reverse positions, swap rows" for sequence and
targets alike:

- expression: per bp over gene bodies, the gene's z-scored log1p value (NaN = no
  measurement, masked in the loss); pooled to ``resolution_bp`` for the model.
- density: genes overlapping each ``bin_bp`` (128 bp) bin.
- operon: 1 inside the span of an operon with at least ``operon_min_genes`` genes.

The region is cut into contiguous blocks; each block goes to one split and windows never
cross a block boundary, so no window overlaps a window of another split.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd

from genomelab.config import ConfigSection, from_schema
from genomelab.io.atomic import atomic_output
from genomelab.io.fasta import read_fasta
from genomelab.regulon.blocks import Heldout, assign_blocks, block_frame, write_blocks_table
from genomelab.regulon.data import read_genes, read_operons
from genomelab.regulon.features import annotation_track
from genomelab.splits import SPLITS

logger = logging.getLogger(__name__)

N_CODE = 4
_LUT = np.full(256, N_CODE, dtype=np.uint8)
for _i, _c in enumerate("ACGT"):
    _LUT[ord(_c)] = _i
    _LUT[ord(_c.lower())] = _i
# Complement of codes 0..4 (A<->T, C<->G, N stays N).
COMPLEMENT = np.array([3, 2, 1, 0, 4], dtype=np.uint8)


def read_genome(path: str | os.PathLike, contig: str | None = None) -> tuple[str, np.ndarray]:
    """Read one contig of a FASTA file (gzip allowed) as codes A=0 C=1 G=2 T=3 other=4.

    Returns (contig name, [n_bp] uint8). ``contig`` None takes the first record. The whole
    file is read: a record name given twice is an error naming the file (which of the two
    would the contig be?), not the first one taken silently.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"genome FASTA {path} does not exist")
    names = []
    found = None
    for name, seq in read_fasta(path, allow_empty=True):  # raises on a duplicated name
        names.append(name)
        if found is None and (contig is None or name == contig):
            if not seq:
                raise ValueError(f"genome FASTA {path}: record {name!r} is empty")
            found = name, _LUT[np.frombuffer(seq, dtype=np.uint8)]
    if found is not None:
        return found
    if not names:
        raise ValueError(f"genome FASTA {path} holds no FASTA record")
    raise ValueError(f"genome FASTA {path} has no contig {contig!r} (has {names[:5]})")


@dataclass
class TargetConfig(ConfigSection):
    """Geometry of targets, blocks and windows (``regulon.targets`` in config)."""

    SECTION = "regulon.targets"

    region_start: int = from_schema("regulon.targets.region_start")
    region_end: int | None = from_schema("regulon.targets.region_end")
    bin_bp: int = from_schema("regulon.targets.bin_bp")
    resolution_bp: int = from_schema("regulon.targets.resolution_bp")
    window_bp: int = from_schema("regulon.targets.window_bp")
    stride_bp: int = from_schema("regulon.targets.stride_bp")
    block_bp: int = from_schema("regulon.targets.block_bp")
    split_fractions: list[float] = from_schema("regulon.targets.split_fractions")
    operon_min_genes: int = from_schema("regulon.targets.operon_min_genes")
    expression_min_fraction: float = from_schema("regulon.targets.expression_min_fraction")
    heldout: dict = from_schema("regulon.targets.heldout")
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("bin_bp", "resolution_bp", "window_bp", "stride_bp", "block_bp", "operon_min_genes"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"regulon.targets.{name} must be >= 1, not {getattr(self, name)}")
        if self.bin_bp % self.resolution_bp:
            raise ValueError(
                f"regulon.targets.bin_bp ({self.bin_bp}) must be a multiple of resolution_bp "
                f"({self.resolution_bp})"
            )
        for name in ("window_bp", "stride_bp", "block_bp", "region_start"):
            if getattr(self, name) % self.bin_bp:
                raise ValueError(
                    f"regulon.targets.{name} ({getattr(self, name)}) must be a multiple of "
                    f"bin_bp ({self.bin_bp}) so that bins align under reverse complement"
                )
        if self.block_bp < self.window_bp:
            raise ValueError(
                f"regulon.targets.block_bp ({self.block_bp}) must be >= window_bp ({self.window_bp})"
            )
        if self.region_start < 0 or (self.region_end is not None and self.region_end <= self.region_start):
            raise ValueError(
                f"regulon.targets region [{self.region_start}, {self.region_end}) is empty or negative"
            )
        if not 0 < self.expression_min_fraction <= 1:
            raise ValueError(
                f"regulon.targets.expression_min_fraction must be in (0, 1], not "
                f"{self.expression_min_fraction}"
            )
        Heldout.from_config(self.heldout)


def _interval_sum(starts: np.ndarray, ends: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Sum of ``values`` over half-open intervals, per position: [n] float64."""
    diff = np.zeros(n + 1, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    np.add.at(diff, np.clip(np.asarray(starts, dtype=np.int64), 0, n), values)
    np.add.at(diff, np.clip(np.asarray(ends, dtype=np.int64), 0, n), -values)
    return np.cumsum(diff[:-1])


def bp_tracks(
    genes: pd.DataFrame, operons: pd.DataFrame, start: int, end: int, operon_min_genes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-bp expression [2, n] float32 (NaN unmeasured) and operon membership [2, n] uint8."""
    n = end - start
    expr = np.full((2, n), np.nan, dtype=np.float32)
    oper = np.zeros((2, n), dtype=np.uint8)
    measured = genes[np.isfinite(genes["z"].to_numpy(dtype=float))]
    big = operons[operons["n_genes"] >= operon_min_genes]
    for row, strand in enumerate("+-"):
        g = measured[measured["strand"] == strand]
        s, e = g["start"].to_numpy() - start, g["end"].to_numpy() - start
        total = _interval_sum(s, e, g["z"].to_numpy(dtype=float), n)
        count = _interval_sum(s, e, np.ones(len(g)), n)
        # Overlapping genes on one strand share the mean of their values.
        hit = count > 0.5
        expr[row, hit] = (total[hit] / count[hit]).astype(np.float32)
        o = big[big["strand"] == strand]
        oper[row] = (
            _interval_sum(o["start"].to_numpy() - start, o["end"].to_numpy() - start, np.ones(len(o)), n)
            > 0.5
        )
    return expr, oper


def density_track(genes: pd.DataFrame, start: int, end: int, bin_bp: int) -> np.ndarray:
    """Genes overlapping each ``bin_bp`` bin, per strand: [2, n_bins] float32."""
    n_bins = (end - start) // bin_bp
    out = np.zeros((2, n_bins), dtype=np.float32)
    for row, strand in enumerate("+-"):
        g = genes[(genes["strand"] == strand) & (genes["end"] > start) & (genes["start"] < end)]
        first = (np.maximum(g["start"].to_numpy(), start) - start) // bin_bp
        last = (np.minimum(g["end"].to_numpy(), end) - 1 - start) // bin_bp
        out[row] = _interval_sum(first, last + 1, np.ones(len(g)), n_bins)
    return out


def pool_expression(expr_bp: np.ndarray, resolution_bp: int, min_fraction: float) -> np.ndarray:
    """Mean over measured bp of each ``resolution_bp`` bin; NaN where less than ``min_fraction``
    of the bin is measured. [2, n_bp] -> [2, n_bp // resolution_bp]."""
    n = expr_bp.shape[1] // resolution_bp
    x = expr_bp[:, : n * resolution_bp].reshape(2, n, resolution_bp)
    ok = np.isfinite(x)
    frac = ok.mean(axis=2)
    total = np.where(ok, x, 0).sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        pooled = total / ok.sum(axis=2)
    return np.where(frac >= min_fraction, pooled, np.nan).astype(np.float32)


def pool_binary(track_bp: np.ndarray, resolution_bp: int) -> np.ndarray:
    """Majority vote per ``resolution_bp`` bin: [2, n_bp] -> [2, n_bp // resolution_bp] uint8."""
    n = track_bp.shape[1] // resolution_bp
    return (track_bp[:, : n * resolution_bp].reshape(2, n, resolution_bp).mean(axis=2) >= 0.5).astype(
        np.uint8
    )


def make_blocks(start: int, end: int, cfg: TargetConfig, contig: str | None = None) -> pd.DataFrame:
    """Contiguous blocks of ``block_bp`` with a split each (block ids are the split groups):
    drawn, or given by ``cfg.heldout`` (see :mod:`genomelab.regulon.blocks`)."""
    blocks = block_frame(start, end, cfg.block_bp)
    blocks["split"] = assign_blocks(
        blocks, Heldout.from_config(cfg.heldout), cfg.split_fractions, cfg.seed, contig
    )
    for s in SPLITS:
        usable = blocks[(blocks["split"] == s) & (blocks["end"] - blocks["start"] >= cfg.window_bp)]
        if usable.empty:
            raise ValueError(
                f"regulon.targets: no {s} block of at least window_bp={cfg.window_bp} bp in region "
                f"[{start}, {end}) with block_bp={cfg.block_bp}; enlarge the region or shrink blocks"
            )
    return blocks


def make_windows(blocks: pd.DataFrame, cfg: TargetConfig) -> pd.DataFrame:
    """Windows inside blocks: training blocks with ``stride_bp``; val/test tiled without overlap
    (every evaluated position appears once)."""
    rows = []
    for b in blocks.itertuples(index=False):
        stride = cfg.stride_bp if b.split == "train" else cfg.window_bp
        for s in range(int(b.start), int(b.end) - cfg.window_bp + 1, stride):
            rows.append((s, int(b.block), b.split))
    return pd.DataFrame(rows, columns=["start", "block", "split"])


def build_targets(
    genes: pd.DataFrame,
    operons: pd.DataFrame,
    codes: np.ndarray,
    contig: str,
    cfg: TargetConfig,
    out_path: str | os.PathLike,
    blocks_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Compute every track over the configured region and write ``targets.h5``, and the
    blocks with their splits to ``blocks_path`` (a TSV reusable as ``heldout.file``).

    ``codes``: [n_genome_bp] uint8 of the whole contig. Returns a small summary dict.
    """
    end = min(cfg.region_end or codes.size, codes.size)
    start = cfg.region_start
    end = start + (end - start) // cfg.bin_bp * cfg.bin_bp
    if end - start < cfg.window_bp:
        raise ValueError(f"regulon.targets region [{start}, {end}) is shorter than window_bp={cfg.window_bp}")
    seq = codes[start:end]
    expr_bp, oper_bp = bp_tracks(genes, operons, start, end, cfg.operon_min_genes)
    dens = density_track(genes, start, end, cfg.bin_bp)
    expr_r = pool_expression(expr_bp, cfg.resolution_bp, cfg.expression_min_fraction)
    oper_r = pool_binary(oper_bp, cfg.resolution_bp)
    blocks = make_blocks(start, end, cfg, contig)
    windows = make_windows(blocks, cfg)
    if blocks_path is not None:
        write_blocks_table(blocks, contig, blocks_path)
    with atomic_output(out_path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["contig"] = contig
        h5.attrs["region_start"] = start
        h5.attrs["region_end"] = end
        h5.attrs["config"] = json.dumps(asdict(cfg), sort_keys=True)
        opts = {"compression": "gzip", "compression_opts": 4, "shuffle": True}
        h5.create_dataset("sequence", data=seq, **opts)
        h5.create_dataset("bp/expression", data=expr_bp, chunks=(2, min(1 << 16, end - start)), **opts)
        h5.create_dataset("bp/operon", data=oper_bp, chunks=(2, min(1 << 16, end - start)), **opts)
        h5.create_dataset("res/expression", data=expr_r, **opts)
        h5.create_dataset("res/operon", data=oper_r, **opts)
        h5.create_dataset("density", data=dens, **opts)
        # Gene bodies and ends per strand, packed bits (features.py): the model's optional input.
        h5.create_dataset("annotation", data=annotation_track(genes, start, end), **opts)
        for col in ("start", "block"):
            h5.create_dataset(f"windows/{col}", data=windows[col].to_numpy(np.int64))
        h5.create_dataset("windows/split", data=windows["split"].to_numpy().astype("S5"))
        for col in ("block", "start", "end"):
            h5.create_dataset(f"blocks/{col}", data=blocks[col].to_numpy(np.int64))
        h5.create_dataset("blocks/split", data=blocks["split"].to_numpy().astype("S5"))
    summary = {
        "region": [start, end],
        "n_windows": {s: int((windows["split"] == s).sum()) for s in SPLITS},
        "n_blocks": {s: int((blocks["split"] == s).sum()) for s in SPLITS},
        "expression_measured_fraction_bp": float(np.isfinite(expr_bp).mean()),
        "operon_fraction_bp": float(oper_bp.mean()),
        "density_mean": float(dens.mean()),
    }
    logger.info("targets over %s:%d-%d: %s", contig, start, end, summary)
    return summary


@dataclass
class WindowTensors:
    """Training arrays of one split.

    codes [n, L] uint8; expression [n, 2, L/r] float32 (0 where masked); expression_mask
    [n, 2, L/r] bool; density [n, 2, L/bin] float32; operon [n, 2, L/r] float32; starts [n];
    annotation [n, L] uint8 packed gene flags (:mod:`genomelab.regulon.features`; None = not given).
    """

    codes: np.ndarray
    expression: np.ndarray
    expression_mask: np.ndarray
    density: np.ndarray
    operon: np.ndarray
    starts: np.ndarray
    annotation: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.starts)


class TargetData:
    """``targets.h5`` loaded into memory (a bacterial genome: tens of MB)."""

    def __init__(self, path: str | os.PathLike) -> None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"targets file {path} does not exist")
        self.path = path
        try:
            with h5py.File(path, "r") as h5:
                self.contig = str(h5.attrs["contig"])
                self.region_start = int(h5.attrs["region_start"])
                self.region_end = int(h5.attrs["region_end"])
                self.config = TargetConfig(**json.loads(h5.attrs["config"]))
                self.sequence = h5["sequence"][:]
                self.expression = h5["res/expression"][:]
                self.operon = h5["res/operon"][:]
                self.density = h5["density"][:]
                self.annotation = h5["annotation"][:]
                self.windows = pd.DataFrame(
                    {
                        "start": h5["windows/start"][:],
                        "block": h5["windows/block"][:],
                        "split": h5["windows/split"][:].astype(str),
                    }
                )
                self.blocks = pd.DataFrame({c: h5[f"blocks/{c}"][:] for c in ("block", "start", "end")})
                self.blocks["split"] = h5["blocks/split"][:].astype(str)
        except (OSError, KeyError) as exc:
            raise ValueError(f"targets file {path} is unreadable or incomplete: {exc}") from exc

    def bp_tracks(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-bp expression and operon tracks [2, n_bp] (read on demand; larger)."""
        with h5py.File(self.path, "r") as h5:
            return h5["bp/expression"][:], h5["bp/operon"][:]

    def split_windows(self, split: str) -> pd.DataFrame:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
        return self.windows[self.windows["split"] == split].reset_index(drop=True)

    def tensors(self, split: str) -> WindowTensors:
        """Gather the windows of ``split`` (vectorised fancy indexing, no per-window loop)."""
        cfg = self.config
        starts = self.split_windows(split)["start"].to_numpy() - self.region_start
        r, b, L = cfg.resolution_bp, cfg.bin_bp, cfg.window_bp
        codes = self.sequence[starts[:, None] + np.arange(L)]
        ri = starts[:, None] // r + np.arange(L // r)
        expr = self.expression[:, ri].transpose(1, 0, 2)
        mask = np.isfinite(expr)
        oper = self.operon[:, ri].transpose(1, 0, 2).astype(np.float32)
        bi = starts[:, None] // b + np.arange(L // b)
        dens = self.density[:, bi].transpose(1, 0, 2)
        return WindowTensors(
            codes,
            np.where(mask, expr, 0).astype(np.float32),
            mask,
            dens.astype(np.float32),
            oper,
            starts + self.region_start,
            self.annotation[starts[:, None] + np.arange(L)],
        )


def reverse_complement_codes(codes: np.ndarray) -> np.ndarray:
    """[..., L] codes -> reverse complement (numpy)."""
    return COMPLEMENT[codes[..., ::-1]]


def reverse_complement_track(track: np.ndarray) -> np.ndarray:
    """[..., 2, n] strand-aware track -> reverse positions and swap strands (numpy)."""
    return track[..., ::-1, ::-1]


def make_targets(
    genes_path: str | os.PathLike,
    operons_path: str | os.PathLike,
    genome: str | os.PathLike,
    targets_cfg: dict[str, Any],
    out: str | os.PathLike,
    contig: str | None = None,
    seed: int = 0,
    blocks_out: str | os.PathLike | None = None,
) -> dict[str, Any]:
    cfg = TargetConfig.from_dict(targets_cfg, seed=seed)
    name, codes = read_genome(genome, contig)
    return build_targets(
        read_genes(genes_path), read_operons(operons_path), codes, name, cfg, out, blocks_out
    )
