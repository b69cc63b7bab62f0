"""Step 5 metrics, each with its axis written down.

Every correlation here is computed over *positions of the held-out genome blocks* (or over
the genes inside them), pooled over both strands, never per batch and never over tracks.
The axis strings below go into the metrics JSON next to the numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from genomelab.regulon.targets import TargetData
from genomelab.regulon.tracks import split_bin_mask

AXES = {
    "expression_position": "measured {r}-bp positions x 2 strands of the {split} blocks (pooled); target = "
    "z-scored log1p({value}) of the gene body covering the position",
    "expression_gene": "genes whose whole body lies in {split} windows; prediction = mean over the gene's "
    "{r}-bp positions on its strand; target = the gene's z-scored log1p({value})",
    "density": "{b}-bp bins x 2 strands of the {split} blocks (pooled); target = genes overlapping the bin",
    "operon": "per strand: {r}-bp positions x 2 strands of the {split} blocks; target = inside a >= "
    "{min_genes}-gene operon on that strand (the gene's strand alone is informative here)",
    "operon_bp": "base pairs of the {split} blocks, strands pooled; target = inside a >= {min_genes}-gene "
    "operon on either strand; score = the larger strand prediction of the bp's {r}-bp bin",
    "pair": "adjacent same-strand gene pairs whose junction lies in one {split} block; target = both "
    "genes in one operon; score = mean prediction over the junction on the pair's strand "
    "(distance rules: minus the intergenic distance, or its train-pair log-likelihood)",
}


def regression_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    """Pearson, Spearman, R2 (1 - SSE/SST) and n over paired finite values."""
    ok = np.isfinite(pred) & np.isfinite(true)
    p, t = np.asarray(pred, float)[ok], np.asarray(true, float)[ok]
    if p.size < 3 or np.ptp(t) == 0:
        return {"pearson": float("nan"), "spearman": float("nan"), "r2": float("nan"), "n": int(p.size)}
    sst = float(((t - t.mean()) ** 2).sum())
    constant = np.ptp(p) == 0
    return {
        "pearson": float("nan") if constant else float(stats.pearsonr(p, t)[0]),
        "spearman": float("nan") if constant else float(stats.spearmanr(p, t)[0]),
        "r2": 1.0 - float(((t - p) ** 2).sum()) / sst,
        "n": int(p.size),
    }


def binary_metrics(prob: np.ndarray, true: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(prob) & np.isfinite(true)
    p, t = np.asarray(prob, float)[ok], np.asarray(true)[ok].astype(int)
    if len(np.unique(t)) < 2:
        return {
            "auroc": float("nan"),
            "auprc": float("nan"),
            "prevalence": float(t.mean()) if t.size else 0.0,
            "n": int(t.size),
        }
    return {
        "auroc": float(roc_auc_score(t, p)),
        "auprc": float(average_precision_score(t, p)),
        "prevalence": float(t.mean()),
        "n": int(t.size),
    }


def gene_means(track: np.ndarray, genes: pd.DataFrame, data: TargetData, covered: np.ndarray) -> np.ndarray:
    """Mean of ``track`` [2, n_res] over each gene body on its strand; NaN unless the whole
    gene lies in ``covered`` [n_res] positions. Vectorised with cumulative sums."""
    r = data.config.resolution_bp
    first = (genes["start"].to_numpy() - data.region_start) // r
    last = (genes["end"].to_numpy() - 1 - data.region_start) // r + 1
    n = track.shape[1]
    inside = (first >= 0) & (last <= n)
    first, last = np.clip(first, 0, n), np.clip(last, 0, n)
    row = (genes["strand"].to_numpy() == "-").astype(int)
    vals = np.nan_to_num(track, nan=0.0).astype(np.float64)
    csum = np.concatenate([np.zeros((2, 1)), np.cumsum(vals, axis=1)], axis=1)
    ccov = np.concatenate([[0], np.cumsum(covered)])
    length = np.maximum(last - first, 1)
    full = inside & ((ccov[last] - ccov[first]) == (last - first)) & (last > first)
    means = (csum[row, last] - csum[row, first]) / length
    return np.where(full, means, np.nan)


def evaluate_tracks(
    tracks: dict[str, np.ndarray],
    data: TargetData,
    genes: pd.DataFrame,
    split: str,
    value_field: str = "tpm",
    block: int | None = None,
) -> dict[str, float]:
    """Flat metrics of one method's prediction tracks on ``split`` blocks (on one ``block``
    of them, when given: the per-block values of the paired tests)."""
    cfg = data.config
    res_mask = split_bin_mask(data, split, cfg.resolution_bp, block)
    bin_mask = split_bin_mask(data, split, cfg.bin_bp, block)
    out: dict[str, float] = {}
    sel = np.broadcast_to(res_mask, data.expression.shape)
    for k, v in regression_metrics(tracks["expression"][sel], data.expression[sel]).items():
        out[f"expression_{k}"] = v
    measured = genes[np.isfinite(genes["z"].to_numpy(dtype=float))]
    pg = gene_means(tracks["expression"], measured, data, res_mask)
    for k, v in regression_metrics(pg, measured["z"].to_numpy(dtype=float)).items():
        out[f"expression_gene_{k}"] = v
    bsel = np.broadcast_to(bin_mask, data.density.shape)
    for k, v in regression_metrics(tracks["density"][bsel], data.density[bsel]).items():
        out[f"density_{k}"] = v
    for k, v in binary_metrics(tracks["operon"][sel], data.operon[sel].astype(float)).items():
        out[f"operon_{k}"] = v
    return out


def axes(data: TargetData, split: str, value_field: str) -> dict[str, str]:
    cfg = data.config
    return {
        k: v.format(
            r=cfg.resolution_bp, b=cfg.bin_bp, split=split, value=value_field, min_genes=cfg.operon_min_genes
        )
        for k, v in AXES.items()
    }
