"""Latent-space plots: a 2-D PCA projection coloured by bin and by truth."""

from __future__ import annotations

import os

import numpy as np

from genomelab.io.atomic import atomic_output


def project_2d(latent: np.ndarray, max_points: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(row indices [m], coordinates [m, 2]) of a random subset projected on 2 principal axes.

    PCA rather than t-SNE/UMAP: it is linear in n and deterministic, so the plot scales to
    millions of contigs (a subset is drawn anyway, to keep the figure readable).
    """
    n = len(latent)
    rows = np.sort(np.random.default_rng(seed).choice(n, min(n, max_points), replace=False))
    x = np.asarray(latent[rows], dtype=np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return rows, x @ vt[:2].T


def _colours(labels: np.ndarray, top: int = 20) -> tuple[np.ndarray, list[str]]:
    values, counts = np.unique(labels, return_counts=True)
    keep = values[np.argsort(-counts)][:top]
    index = {v: i for i, v in enumerate(keep)}
    return np.array([index.get(v, -1) for v in labels]), [str(v) for v in keep]


def plot_latent(
    latent: np.ndarray,
    bins: np.ndarray,
    truth: np.ndarray | None,
    path: str | os.PathLike,
    title: str = "latent space",
) -> None:
    """Scatter of the 2-D projection, one panel coloured by bin and one by truth genome."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, xy = project_2d(np.asarray(latent))
    panels = [("bin (largest 20)", np.asarray(bins)[rows])]
    if truth is not None:
        panels.append(("truth genome", np.asarray(truth)[rows]))
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 5), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for ax, (name, labels) in zip(axes[0], panels, strict=True):
        idx, keep = _colours(labels)
        other = idx < 0
        ax.scatter(xy[other, 0], xy[other, 1], s=3, c="lightgrey", label="other")
        for i, label in enumerate(keep):
            sel = idx == i
            ax.scatter(xy[sel, 0], xy[sel, 1], s=4, color=cmap(i % 20), label=label[:28])
        ax.set_title(f"{title}: coloured by {name}")
        ax.set_xlabel("PC 1")
        ax.set_ylabel("PC 2")
        if len(keep) <= 12:
            ax.legend(fontsize=6, markerscale=2, loc="best")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
