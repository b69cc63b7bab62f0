"""Latent-space plots: a 2-D PCA projection coloured by source genome and by bin."""

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
    """(palette index per point [m], -1 for labels beyond the ``top`` largest; those labels)."""
    values, counts = np.unique(labels, return_counts=True)
    keep = values[np.argsort(-counts, kind="stable")][:top]
    index = {v: i for i, v in enumerate(keep)}
    return np.array([index.get(v, -1) for v in labels]), [str(v) for v in keep]


def _wrap(label: str, width: int = 34) -> str:
    """A legend entry in full, broken over lines rather than cut (genome names are long):
    after a separator (space, ``_``, ``.``, ``-``, ``|``) where one falls within ``width``,
    so words stay whole ("MG1655.first400kb" -> "MG1655." / "first400kb"); a part longer
    than ``width`` with no separator is split at ``width``."""
    import re

    lines, line = [], ""
    for part in re.findall(r"[^ _.|-]*[ _.|-]|[^ _.|-]+", label):
        while len(part) > width:  # no separator within a whole line: split it
            if line:
                lines.append(line)
                line = ""
            lines.append(part[:width])
            part = part[width:]
        if line and len(line) + len(part.rstrip()) > width:
            lines.append(line)
            line = ""
        line += part
    lines.append(line)
    return "\n".join(x.rstrip() for x in lines if x.strip()) or label


# Different palettes for the two panels: a colour in one panel never means the same thing as
# in the other (genome colours are qualitative and dark, bin colours pastel with a black edge).
PANELS = {
    "truth": {"cmap": "tab10", "n": 10, "edge": "none", "what": "source genome", "other": "other genomes"},
    "bins": {"cmap": "Set3", "n": 12, "edge": "black", "what": "bin (largest 20)", "other": "smaller bins"},
}


def _panel(ax, xy: np.ndarray, labels: np.ndarray, kind: str, prefix: str = "") -> None:
    import matplotlib.pyplot as plt

    style = PANELS[kind]
    cmap = plt.get_cmap(style["cmap"])
    idx, keep = _colours(labels)
    other = idx < 0
    if other.any():
        ax.scatter(xy[other, 0], xy[other, 1], s=3, c="lightgrey", label=style["other"])
    markers = "os^D"  # more labels than colours: the marker tells repeated colours apart
    for i, label in enumerate(keep):
        sel = idx == i
        colour = cmap(i % style["n"])
        marker = markers[(i // style["n"]) % len(markers)]
        ax.scatter(
            xy[sel, 0],
            xy[sel, 1],
            s=9,
            color=colour,
            marker=marker,
            edgecolors=style["edge"],
            linewidths=0.3,
            label=_wrap(prefix + label),
        )
    ax.legend(
        fontsize=6,
        markerscale=1.5,
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        frameon=False,
        title=style["what"],
        title_fontsize=7,
    )


def plot_latent(
    latent: np.ndarray,
    bins: np.ndarray,
    truth: np.ndarray | None,
    path: str | os.PathLike,
    title: str = "latent space",
) -> None:
    """Scatter of the 2-D PCA projection of ``latent`` [n, d]: left coloured by source genome
    (with a truth table), right by bin, each panel with its own palette and full legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, xy = project_2d(np.asarray(latent))
    x = np.asarray(latent, dtype=np.float64)[rows]
    total = float(((x - x.mean(axis=0)) ** 2).sum()) or 1.0
    explained = [float((xy[:, k] ** 2).sum()) / total for k in (0, 1)]
    panels = [("truth", np.asarray(truth)[rows], "")] if truth is not None else []
    panels.append(("bins", np.asarray(bins)[rows], "bin "))
    fig, axes = plt.subplots(1, len(panels), figsize=(7.5 * len(panels), 5), squeeze=False)
    for ax, (kind, labels, prefix) in zip(axes[0], panels, strict=True):
        _panel(ax, xy, labels, kind, prefix)
        ax.set_title(f"{title}: coloured by {PANELS[kind]['what']}")
        ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance; unitless)")
        ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance; unitless)")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)
