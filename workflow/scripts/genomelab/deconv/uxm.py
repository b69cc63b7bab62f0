"""UXM deconvolution: a block-level atlas and per-sample U/X/M fragment counts -> tissue proportions.

Following UXM (Loyfer et al. 2023, Nature 613:355; ``uxm deconv``): each marker block has,
per cell type, the share of its fragments that are unmethylated (``direction`` U) or
methylated (M). A sample's value at a block is the same share of its own fragments
(``U / (U + X + M)`` or ``M / (U + X + M)``, from ``genomelab.ingest.fragments``), and the
proportions solve a non-negative least-squares fit of the sample to the atlas in which
every block's row is multiplied by the sample's fragment count there, as UXM does
(``weighting: counts``; ``sqrt`` gives inverse-variance weights of a binomial share,
``none`` plain NNLS). Blocks without fragments (or fewer than ``min_fragments``) are left
out for that sample; coefficients are scaled to sum 1.

Shapes: atlas ``A`` [R blocks, K cell types], samples ``B`` [N, R], weights ``W`` [N, R].
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from genomelab.config import ConfigSection, from_schema, typed_config
from genomelab.deconv.nnls import NNLSResult, weighted_nnls_batched
from genomelab.deconv.reference import Reference
from genomelab.io.atomic import atomic_write_json
from genomelab.io.blocks import BlockTable, read_block_counts, read_blocks
from genomelab.io.errors import FormatError

logger = logging.getLogger(__name__)

WEIGHTINGS = ("counts", "sqrt", "none")


def _block_keys(t: BlockTable) -> list[tuple]:
    return list(
        zip(t.chrom.tolist(), t.start_cpg.tolist(), t.end_cpg.tolist(), t.direction.tolist(), strict=True)
    )


def atlas_reference(
    atlas: BlockTable, markers: BlockTable | None = None
) -> tuple[Reference, BlockTable, dict]:
    """The atlas as a deconv :class:`Reference` (blocks x cell types), its blocks and a record.

    ``markers`` (optional) restricts the atlas to those blocks (matched on chromosome,
    startCpG and endCpG; a marker BED need not carry the direction). Rows with an unknown value in any cell type are left
    out and counted. Raises ``FormatError`` naming the file when no block remains.
    """
    if not atlas.columns:
        raise FormatError(atlas.source, "the atlas has no cell-type columns")
    rows = np.arange(len(atlas))
    record: dict[str, Any] = {"atlas": atlas.source, "n_atlas_blocks": len(atlas)}
    if markers is not None:
        wanted = {k[:3] for k in _block_keys(markers)}
        keys = [k[:3] for k in _block_keys(atlas)]
        rows = np.asarray([i for i, k in enumerate(keys) if k in wanted], dtype=np.int64)
        record.update(
            markers=markers.source, n_markers=len(markers), n_markers_not_in_atlas=len(wanted - set(keys))
        )
        if not len(rows):
            raise FormatError(
                markers.source,
                f"none of its {len(markers)} blocks is in the atlas {atlas.source} (same chr, startCpG, endCpG)",
            )
    complete = np.isfinite(atlas.values[rows]).all(1)
    record["n_blocks_with_unknown_values"] = int((~complete).sum())
    rows = rows[complete]
    if not len(rows):
        raise FormatError(atlas.source, "no block has a value in every cell type")
    blocks = atlas.subset(rows)
    ref = Reference(blocks.values.astype(np.float64), blocks.name, np.asarray(atlas.columns))
    record["n_blocks_used"] = len(rows)
    record["cell_types"] = list(atlas.columns)
    return ref, blocks, record


def sample_shares(counts: np.ndarray, direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per block the share of U (direction U) or M (direction M) fragments, NaN without any.

    counts: int [R, 3] (U, X, M); direction: str [R]. Returns ``(share [R], total [R])``.
    """
    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum(1)
    pick = np.where(np.asarray(direction) == "M", counts[:, 2], counts[:, 0])
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, pick / np.maximum(total, 1), np.nan)
    return share, total


def row_weights(n_fragments: np.ndarray, weighting: str) -> np.ndarray:
    """Row multipliers from fragment counts: ``counts`` (UXM), ``sqrt`` or ``none`` (1)."""
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")
    n = np.asarray(n_fragments, dtype=np.float64)
    if weighting == "counts":
        return n
    return np.sqrt(n) if weighting == "sqrt" else (n > 0).astype(np.float64)


def weighted_nnls(A: np.ndarray, B: np.ndarray, W: np.ndarray) -> NNLSResult:
    """min_x || diag(w_n) (A x - b_n) ||, x >= 0, for every sample ``n``; x scaled to sum 1.

    A: [R, K]; B: [N, R] (NaN = no value); W: [N, R] row multipliers (0 = left out).
    ``residual`` is the weighted RMS over the rows used, ``n_valid`` their number.
    """
    A = np.asarray(A, dtype=np.float64)
    B, W = np.asarray(B, dtype=np.float64), np.asarray(W, dtype=np.float64)
    if B.shape != W.shape or B.ndim != 2 or B.shape[1] != A.shape[0]:
        raise ValueError(f"weighted NNLS: samples {B.shape} and weights {W.shape} must be [n, {A.shape[0]}]")
    if (W < 0).any() or not np.isfinite(W).all():
        raise ValueError("weighted NNLS: weights must be finite and >= 0")
    n, k = B.shape[0], A.shape[1]
    used = np.isfinite(B) & (W > 0)
    for i in np.flatnonzero(used.sum(1) < k):
        logger.warning("weighted NNLS: sample %d has %d usable blocks for %d cell types", i, used[i].sum(), k)
    # Row multipliers w are squared weights of the least-squares terms (the shared solver's form).
    raw = weighted_nnls_batched(A, np.where(used, B, np.nan), W**2)
    err = np.where(used, (raw @ A.T - np.where(used, B, 0.0)) * W, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        residual = np.sqrt((err**2).sum(1) / used.sum(1))  # NaN for a sample without rows
    total = raw.sum(1)
    props = raw / np.where(total > 0, total, 1.0)[:, None]
    return NNLSResult(raw, props, np.zeros(n), residual, used.sum(1))


@dataclass(frozen=True)
class UxmDeconvConfig(ConfigSection):
    """``weighting`` and ``min_fragments`` of the ``ingest.uxm`` section."""

    SECTION = "ingest.uxm"

    weighting: str = from_schema("ingest.uxm.weighting")
    min_fragments: int = from_schema("ingest.uxm.min_fragments")

    def __post_init__(self) -> None:
        if self.weighting not in WEIGHTINGS:
            raise ValueError(f"ingest.uxm.weighting must be one of {WEIGHTINGS}, not {self.weighting!r}")
        if self.min_fragments < 1:
            raise ValueError(f"ingest.uxm.min_fragments must be >= 1, not {self.min_fragments}")

    @classmethod
    def from_dict(
        cls, section: Mapping[str, Any], *, where: str | None = None, **extra: Any
    ) -> UxmDeconvConfig:
        """From the ``ingest.uxm`` section; its other keys (inputs, classification) are not this step's."""
        keys = {f.name for f in dataclasses.fields(cls)}
        return typed_config(
            cls, {k: v for k, v in section.items() if k in keys}, where=where or cls.SECTION, **extra
        )


def deconvolve_samples(
    atlas_path: str | os.PathLike,
    markers_path: str | os.PathLike | None,
    counts_paths: list[str | os.PathLike],
    samples: list[str],
    cfg: UxmDeconvConfig,
) -> tuple[NNLSResult, Reference, dict]:
    """Proportions [N, K] of every sample's block counts file against the atlas."""
    atlas = read_blocks(atlas_path, "atlas", need_values=True)
    markers = read_blocks(markers_path, "marker blocks") if markers_path else None
    ref, blocks, record = atlas_reference(atlas, markers)
    # A counts file has no direction: each of its blocks feeds every atlas row on it (U and M rows).
    rows_of: dict[tuple, list[int]] = {}
    for j, key in enumerate(_block_keys(blocks)):
        rows_of.setdefault(key[:3], []).append(j)
    B = np.full((len(samples), len(blocks)), np.nan)
    W = np.zeros_like(B)
    per_sample = {}
    for s, (sample, path) in enumerate(zip(samples, counts_paths, strict=True)):
        table, counts = read_block_counts(path)
        pairs = [(i, j) for i, key in enumerate(_block_keys(table)) for j in rows_of.get(key[:3], [])]
        if not pairs:
            raise FormatError(path, f"none of its {len(table)} blocks is a block of the atlas {atlas_path}")
        src, dst = (np.asarray(x, dtype=np.int64) for x in zip(*pairs, strict=True))
        share, total = sample_shares(counts[src], blocks.direction[dst])
        enough = total >= cfg.min_fragments
        B[s, dst[enough]] = share[enough]
        W[s, dst[enough]] = row_weights(total[enough], cfg.weighting)
        per_sample[sample] = {
            "counts": str(path),
            "blocks_used": int(enough.sum()),
            "fragments_used": int(total[enough].sum()),
            "blocks_below_min_fragments": int((~enough).sum()),
            "atlas_blocks_not_counted": int(len(blocks) - len(set(dst.tolist()))),
        }
    result = weighted_nnls(ref.profiles, B, W)
    for s, sample in enumerate(samples):
        per_sample[sample]["residual"] = float(result.residual[s])
    record.update(weighting=cfg.weighting, min_fragments=cfg.min_fragments, samples=per_sample)
    return result, ref, record


def write_proportions(
    out_csv: str | os.PathLike,
    out_json: str | os.PathLike,
    result: NNLSResult,
    ref: Reference,
    samples: list[str],
    record: dict,
) -> None:
    """Samples x cell types CSV (``sample`` column first) and the run's record JSON."""
    from genomelab.deconv.io import write_table

    write_table(out_csv, result.proportions, samples, ref.tissues.tolist(), index_name="sample")
    atomic_write_json(out_json, record)
