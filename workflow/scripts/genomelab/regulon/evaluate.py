"""Step 5 outputs: metrics JSON side by side, plots, bedGraph export, the module summary."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomelab.io.atomic import atomic_output
from genomelab.regulon.data import Normaliser
from genomelab.regulon.targets import TargetData
from genomelab.report.summary import Comparison

logger = logging.getLogger(__name__)

MODEL = "CNN (3 heads, RC-averaged)"
BASELINE_NAMES = {"kmer": "k-mer ridge/logistic", "gc": "GC content"}
COMPARISONS = (
    (
        "Expression (measured positions)",
        "expression_pearson",
        True,
        (
            "expression_pearson",
            "expression_spearman",
            "expression_r2",
            "expression_gene_pearson",
            "expression_gene_spearman",
            "expression_gene_r2",
        ),
    ),
    ("Gene density (128-bp bins)", "density_r2", True, ("density_r2", "density_pearson")),
    ("Operon membership", "operon_auroc", True, ("operon_auroc", "operon_auprc")),
)


def comparisons(metrics: dict[str, dict[str, float]], split: str) -> list[Comparison]:
    """One comparison per head; rows: the model and each baseline on the same positions."""
    out = []
    for title, primary, higher, keys in COMPARISONS:
        rows = {name: {k: m[k] for k in keys} for name, m in metrics.items()}
        kinds = {name: "model" if name == MODEL else "baseline" for name in metrics}
        out.append(Comparison(title, split, primary, higher, rows, kinds))
    return out


def bedgraph_lines(track: np.ndarray, contig: str, region_start: int, step_bp: int) -> pd.DataFrame:
    """Rows (contig, start, end, value) of the finite values of a [n] track."""
    idx = np.nonzero(np.isfinite(track))[0]
    starts = region_start + idx * step_bp
    return pd.DataFrame({"chrom": contig, "start": starts, "end": starts + step_bp, "value": track[idx]})


def write_bedgraphs(
    tracks: dict[str, np.ndarray],
    data: TargetData,
    norm: Normaliser,
    out_dir: str | os.PathLike,
    name: str = "model",
) -> list[Path]:
    """bedGraph files of predicted tracks for genome browsers, one per track and strand.

    Expression is written in log1p(value) units (the saved normalisation inverted), so the
    track reads like the measurement rather than like a z-score.
    """
    out_dir = Path(out_dir)
    paths = []
    cfg = data.config
    for track, step, transform, label in (
        ("expression", cfg.resolution_bp, norm.inverse_log, f"log1p({norm.value_field})"),
        ("operon", cfg.resolution_bp, None, "P(operon)"),
        ("density", cfg.bin_bp, None, "genes per bin"),
    ):
        for row, strand in enumerate(("plus", "minus")):
            values = tracks[track][row].astype(np.float64)
            if transform is not None:
                values = transform(values)
            path = out_dir / f"{name}_{track}_{strand}.bedGraph"
            with atomic_output(path) as tmp:
                with open(tmp, "w") as fh:
                    fh.write(
                        f'track type=bedGraph name="{name} {track} {strand}" description="{label}, '
                        f'{strand} strand, predicted"\n'
                    )
                    bedgraph_lines(values, data.contig, data.region_start, step).to_csv(
                        fh, sep="\t", header=False, index=False, float_format="%.4g"
                    )
            paths.append(path)
    return paths


def plot_tracks(
    path: str | os.PathLike,
    data: TargetData,
    methods: dict[str, dict[str, np.ndarray]],
    split: str,
    length_bp: int,
) -> None:
    """Predicted vs measured tracks over the first ``length_bp`` of the first ``split`` block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = data.config
    block = data.blocks[data.blocks["split"] == split].iloc[0]
    start = int(block["start"])
    end = min(int(block["end"]), start + length_bp)
    r0, r1 = (start - data.region_start) // cfg.resolution_bp, (end - data.region_start) // cfg.resolution_bp
    b0, b1 = (start - data.region_start) // cfg.bin_bp, (end - data.region_start) // cfg.bin_bp
    xr = start + np.arange(r1 - r0) * cfg.resolution_bp
    xb = start + np.arange(b1 - b0) * cfg.bin_bp
    fig, axes = plt.subplots(6, 1, figsize=(12, 11), sharex=True)
    panels = [
        ("expression", 0, "expression + (z)"),
        ("expression", 1, "expression - (z)"),
        ("density", 0, "density + (genes/bin)"),
        ("density", 1, "density - (genes/bin)"),
        ("operon", 0, "operon + (P)"),
        ("operon", 1, "operon - (P)"),
    ]
    truth = {"expression": data.expression, "density": data.density, "operon": data.operon.astype(float)}
    for ax, (track, row, label) in zip(axes, panels, strict=True):
        x, sl = (xb, slice(b0, b1)) if track == "density" else (xr, slice(r0, r1))
        ax.fill_between(x, np.nan_to_num(truth[track][row, sl]), step="post", color="0.8", label="measured")
        for (name, tracks), color in zip(methods.items(), ("C0", "C1", "C2"), strict=False):
            ax.step(x, tracks[track][row, sl], where="post", color=color, lw=0.9, label=name)
        ax.set_ylabel(label, fontsize=8)
    axes[0].legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1].set_xlabel(f"{data.contig} position (bp), {split} block {int(block['block'])}")
    fig.suptitle(f"Predicted vs measured tracks, {split} block (not seen in training)")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_genes(
    path: str | os.PathLike, per_gene: dict[str, tuple[np.ndarray, np.ndarray]], split: str
) -> None:
    """Per-gene predicted vs measured expression scatter, one panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(per_gene), figsize=(4 * len(per_gene), 4), squeeze=False)
    for ax, (name, (pred, true)) in zip(axes[0], per_gene.items(), strict=True):
        ok = np.isfinite(pred) & np.isfinite(true)
        ax.scatter(true[ok], pred[ok], s=4, alpha=0.5)
        r = np.corrcoef(true[ok], pred[ok])[0, 1] if ok.sum() > 2 and np.ptp(pred[ok]) > 0 else float("nan")
        ax.set_title(f"{name}\nPearson {r:.3f} over {int(ok.sum())} {split} genes", fontsize=9)
        ax.set_xlabel("measured z(log1p)")
        ax.set_ylabel("predicted")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def flatten_for_json(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in metrics.items()}
