"""Baselines on exactly the model's positions: k-mer ridge/logistic regression and GC content.

Features of a position are the k-mer frequencies (or the GC fraction) of a context window
centred on it. Minus-strand features are the plus-strand ones with every k-mer replaced by
its reverse complement, so the baselines are strand-aware like the targets.
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from genomelab.config import ConfigSection, from_schema
from genomelab.io.atomic import atomic_write_json
from genomelab.regulon.metrics import gene_means, regression_metrics
from genomelab.regulon.targets import TargetData, _interval_sum, pool_expression, reverse_complement_codes
from genomelab.regulon.tracks import empty_tracks, split_bin_mask, write_tracks

logger = logging.getLogger(__name__)

KMER, GC = "kmer", "gc"
UPSTREAM = "upstream"


@dataclass
class BaselineConfig(ConfigSection):
    """``regulon.baseline`` in config."""

    SECTION = "regulon.baseline"

    k: int = from_schema("regulon.baseline.k")
    context_bp: int = from_schema("regulon.baseline.context_bp")
    ridge_alpha: float = from_schema("regulon.baseline.ridge_alpha")
    logistic_c: float = from_schema("regulon.baseline.logistic_c")
    max_train_rows: int = from_schema("regulon.baseline.max_train_rows")
    upstream_bp: int = from_schema("regulon.baseline.upstream_bp")
    upstream_k: int = from_schema("regulon.baseline.upstream_k")
    upstream_alphas: list[float] = from_schema("regulon.baseline.upstream_alphas")
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.k <= 6:
            raise ValueError(f"regulon.baseline.k must be in 1..6, not {self.k}")
        if self.context_bp < 1 or self.max_train_rows < 100:
            raise ValueError(
                f"regulon.baseline.context_bp must be >= 1 and max_train_rows >= 100, not "
                f"{self.context_bp}/{self.max_train_rows}"
            )
        if not 1 <= self.upstream_k <= 6 or self.upstream_bp < 10 or not self.upstream_alphas:
            raise ValueError(
                f"regulon.baseline.upstream_k must be in 1..6, upstream_bp >= 10 and upstream_alphas "
                f"non-empty, not {self.upstream_k}/{self.upstream_bp}/{self.upstream_alphas}"
            )
        if not (self.ridge_alpha > 0 and self.logistic_c > 0 and min(self.upstream_alphas) > 0):
            raise ValueError(
                f"regulon.baseline.ridge_alpha, logistic_c and upstream_alphas must be > 0, not "
                f"{self.ridge_alpha}/{self.logistic_c}/{self.upstream_alphas}"
            )


def kmer_rc_permutation(k: int) -> np.ndarray:
    """Index j -> index of the reverse complement of k-mer j (codes A0 C1 G2 T3, base-4)."""
    perm = np.empty(4**k, dtype=np.int64)
    for j, kmer in enumerate(itertools.product(range(4), repeat=k)):
        rc = [3 - b for b in reversed(kmer)]
        perm[j] = sum(b * 4 ** (k - 1 - i) for i, b in enumerate(rc))
    return perm


def kmer_bin_counts(codes: np.ndarray, k: int, step_bp: int) -> np.ndarray:
    """Counts of the k-mers starting in each ``step_bp`` bin: [n_bp // step_bp, 4**k] float32.

    k-mers containing N are skipped. Vectorised: one bincount over (bin, k-mer) pairs.
    """
    n = codes.size
    codes = codes.astype(np.int64)
    valid = np.ones(n - k + 1, dtype=bool)
    index = np.zeros(n - k + 1, dtype=np.int64)
    for i in range(k):
        c = codes[i : n - k + 1 + i]
        valid &= c < 4
        index = index * 4 + np.minimum(c, 3)
    n_bins = n // step_bp
    pos = np.arange(n - k + 1)
    keep = valid & (pos < n_bins * step_bp)
    flat = (pos[keep] // step_bp) * 4**k + index[keep]
    return np.bincount(flat, minlength=n_bins * 4**k).reshape(n_bins, 4**k).astype(np.float32)


def context_frequencies(counts: np.ndarray, context_bins: int) -> np.ndarray:
    """Sum counts over ``context_bins`` bins centred on each bin and normalise to frequencies.

    [n_bins, n_features] -> [n_bins, n_features] float32 (cumulative sums, no loop).
    """
    half = context_bins // 2
    csum = np.concatenate(
        [np.zeros((1, counts.shape[1]), np.float64), np.cumsum(counts, axis=0, dtype=np.float64)]
    )
    n = counts.shape[0]
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half + 1, 0, n)
    window = csum[hi] - csum[lo]
    total = window.sum(axis=1, keepdims=True)
    return (window / np.maximum(total, 1.0)).astype(np.float32)


def strand_features(codes: np.ndarray, k: int, step_bp: int, context_bp: int, gc: bool) -> np.ndarray:
    """Features [2, n_bins, n_features] for plus and minus strands."""
    context_bins = max(1, context_bp // step_bp)
    if gc:
        freq = context_frequencies(kmer_bin_counts(codes, 1, step_bp), context_bins)
        f = (freq[:, 1] + freq[:, 2])[:, None]
        return np.stack([f, f])  # GC content is the same on both strands
    freq = context_frequencies(kmer_bin_counts(codes, k, step_bp), context_bins)
    return np.stack([freq, freq[:, kmer_rc_permutation(k)]])


def _rows(
    features: np.ndarray, target: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flatten strand x bin into rows where ``mask`` [2, n] holds; returns X, y, (strand, bin) index."""
    strand, pos = np.nonzero(mask)
    return features[strand, pos], target[strand, pos], np.stack([strand, pos])


def _subsample(n: int, limit: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, limit, replace=False)) if n > limit else np.arange(n)


def fit_baselines(
    data: TargetData,
    cfg: BaselineConfig,
    eval_splits: tuple[str, ...] = ("val", "test"),
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, Any]]:
    """Fit k-mer and GC baselines on training blocks, predict the ``eval_splits`` windows.

    Returns ({method: tracks}, info) with tracks in the shared predictions format.
    """
    rng = np.random.default_rng(cfg.seed)
    res, bin_bp = data.config.resolution_bp, data.config.bin_bp
    train_res, train_bin = split_bin_mask(data, "train", res), split_bin_mask(data, "train", bin_bp)
    eval_res = np.zeros_like(train_res)
    eval_bin = np.zeros_like(train_bin)
    for s in eval_splits:
        eval_res |= split_bin_mask(data, s, res)
        eval_bin |= split_bin_mask(data, s, bin_bp)
    out, info = {}, {"config": cfg.__dict__, "n_train_rows": {}}
    expr_ok = np.isfinite(data.expression)
    for method in (KMER, GC):
        gc = method == GC
        tracks = empty_tracks(data)
        f_res = strand_features(data.sequence, cfg.k, res, cfg.context_bp, gc)
        f_bin = strand_features(data.sequence, cfg.k, bin_bp, cfg.context_bp, gc)
        both = np.ones((2, 1), dtype=bool)
        jobs = [
            ("expression", f_res, data.expression, expr_ok & train_res, "regression"),
            ("operon", f_res, data.operon.astype(np.float32), both & train_res, "binary"),
            ("density", f_bin, data.density, both & train_bin, "regression"),
        ]
        for name, feats, target, mask, kind in jobs:
            if not mask.any():
                # No expression measured at all: nothing to fit; the track stays NaN.
                info["n_train_rows"][f"{method}/{name}"] = 0
                continue
            X, y, _ = _rows(feats, target, mask)
            pick = _subsample(len(y), cfg.max_train_rows, rng)
            X, y = X[pick], y[pick]
            info["n_train_rows"][f"{method}/{name}"] = len(y)
            if kind == "binary":
                if len(np.unique(y)) < 2:
                    raise ValueError(f"baseline {method}/{name}: training blocks hold one class only")
                est = LogisticRegression(C=cfg.logistic_c, max_iter=2000)
            elif gc:
                est = LinearRegression()
            else:
                est = Ridge(alpha=cfg.ridge_alpha)
            model = make_pipeline(StandardScaler(), est).fit(X, y.astype(int) if kind == "binary" else y)
            eval_mask = both & (eval_res if feats is f_res else eval_bin)
            Xe, _, (strand, pos) = _rows(feats, target, eval_mask)
            pred = model.predict_proba(Xe)[:, 1] if kind == "binary" else model.predict(Xe)
            if name == "density":
                pred = np.maximum(pred, 0.0)  # counts are never negative
            tracks[name][strand, pos] = pred
        out[method] = tracks
        logger.info("baseline %s fitted", method)
    return out, info


def run_baselines(
    targets_path: str | os.PathLike,
    baseline_cfg: dict[str, Any],
    out: str | os.PathLike,
    info_out: str | os.PathLike,
    seed: int = 0,
) -> dict[str, Any]:
    data = TargetData(targets_path)
    tracks, info = fit_baselines(data, BaselineConfig.from_dict(baseline_cfg, seed=seed))
    write_tracks(out, tracks, data)
    atomic_write_json(info_out, info)
    return info


def upstream_codes(
    codes: np.ndarray, region_start: int, genes: pd.DataFrame, length: int
) -> list[np.ndarray]:
    """The ``length`` bp before each gene's start on its own strand, 5' to 3' of that strand.

    codes: [n] of the region starting at genome coordinate ``region_start``; genes: start/end
    (0-based, end exclusive) and strand. Plus: codes[start - length, start); minus: the reverse
    complement of codes[end, end + length). Clipped at the region ends (shorter or empty).
    """
    n = codes.size
    out = []
    for start, end, strand in zip(
        genes["start"].to_numpy() - region_start,
        genes["end"].to_numpy() - region_start,
        genes["strand"],
        strict=True,
    ):
        if strand == "-":
            lo, hi = int(np.clip(end, 0, n)), int(np.clip(end + length, 0, n))
            out.append(reverse_complement_codes(codes[lo:hi]))
        else:
            lo, hi = int(np.clip(start - length, 0, n)), int(np.clip(start, 0, n))
            out.append(codes[lo:hi])
    return out


def upstream_features(
    codes: np.ndarray, region_start: int, genes: pd.DataFrame, length: int, k: int
) -> np.ndarray:
    """k-mer frequencies of each gene's upstream sequence: [n_genes, 4**k] float32 (rows of
    genes at a region end with fewer than k bases are zero)."""
    feats = np.zeros((len(genes), 4**k), dtype=np.float32)
    for i, seq in enumerate(upstream_codes(codes, region_start, genes, length)):
        if seq.size >= k:
            counts = kmer_bin_counts(seq, k, seq.size)[0]
            feats[i] = counts / max(float(counts.sum()), 1.0)
    return feats


def fit_upstream(
    data: TargetData, genes: pd.DataFrame, cfg: BaselineConfig
) -> tuple[np.ndarray, dict[str, Any]]:
    """Ridge on upstream k-mer frequencies -> each gene's z-scored expression.

    genes: the measured genes (finite ``z``). Fitted on genes whose whole body lies in training
    windows; alpha is the grid value with the highest Pearson on validation-window genes (the
    first grid value when no validation gene exists). Returns predictions [n_genes] for every
    gene (the caller keeps the held-out ones) and the fit's info.
    """
    feats = upstream_features(data.sequence, data.region_start, genes, cfg.upstream_bp, cfg.upstream_k)
    z = genes["z"].to_numpy(dtype=float)
    n_res = data.expression.shape[1]
    inside = {
        s: np.isfinite(
            gene_means(np.zeros((2, n_res)), genes, data, split_bin_mask(data, s, data.config.resolution_bp))
        )
        for s in ("train", "val")
    }
    train, val = inside["train"], inside["val"] & ~inside["train"]
    if train.sum() < 3:
        raise ValueError(f"upstream baseline: only {int(train.sum())} measured genes lie in training blocks")
    scores = {}
    for alpha in cfg.upstream_alphas:
        model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(feats[train], z[train])
        scores[alpha] = (
            regression_metrics(model.predict(feats[val]), z[val])["pearson"] if val.any() else float("nan")
        )
    finite = {a: v for a, v in scores.items() if np.isfinite(v)}
    alpha = max(finite, key=finite.get) if finite else cfg.upstream_alphas[0]
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha)).fit(feats[train], z[train])
    info = {
        "upstream_bp": cfg.upstream_bp,
        "k": cfg.upstream_k,
        "alpha": float(alpha),
        "val_pearson_per_alpha": {str(a): v for a, v in scores.items()},
        "n_train_genes": int(train.sum()),
        "n_val_genes": int(val.sum()),
    }
    logger.info("upstream baseline: alpha %g chosen on %d validation genes", alpha, int(val.sum()))
    return model.predict(feats), info


def gene_track(pred: np.ndarray, genes: pd.DataFrame, data: TargetData) -> dict[str, np.ndarray]:
    """Per-gene predictions painted like the expression target (overlapping genes on a strand
    share their mean, pooled to the resolution) -> tracks with only ``expression`` filled."""
    n = data.region_end - data.region_start
    tracks = empty_tracks(data)
    expr = np.full((2, n), np.nan, dtype=np.float32)
    for row, strand in enumerate("+-"):
        on = (genes["strand"] == strand).to_numpy()
        s = genes["start"].to_numpy()[on] - data.region_start
        e = genes["end"].to_numpy()[on] - data.region_start
        total = _interval_sum(s, e, pred[on], n)
        count = _interval_sum(s, e, np.ones(int(on.sum())), n)
        hit = count > 0.5
        expr[row, hit] = (total[hit] / count[hit]).astype(np.float32)
    tracks["expression"] = pool_expression(
        expr, data.config.resolution_bp, data.config.expression_min_fraction
    )
    return tracks
