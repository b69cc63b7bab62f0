"""Figures: Miami plot, predicted-vs-true scatter, per-tissue errors, stacked bars.

Tissues keep one colour everywhere (their index in the reference picks it), so a tissue
looks the same above and below the Miami axis and across figures.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from genomelab.io.atomic import atomic_output


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def tissue_colours(tissues: Sequence[str]) -> dict[str, tuple]:
    plt = _plt()
    cmap = plt.get_cmap("tab20")
    colours = {t: cmap(i % 20) for i, t in enumerate(tissues)}
    colours["other"] = (0.75, 0.75, 0.75, 1.0)
    colours["unknown"] = (0.3, 0.3, 0.3, 1.0)
    return colours


def _save(fig, path: str | os.PathLike) -> None:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    _plt().close(fig)


def _stack(
    ax,
    values: np.ndarray,
    tissues: Sequence[str],
    colours: dict,
    sign: float = 1.0,
    labels: bool = False,
    order: Sequence[int] | None = None,
) -> None:
    """Stacked bars of values [N, T] (one bar per sample), upwards or downwards, tissues
    stacked in ``order`` (default: as given) from the axis outwards."""
    x = np.arange(values.shape[0])
    bottom = np.zeros(values.shape[0])
    for i in order if order is not None else range(len(tissues)):
        t = tissues[i]
        ax.bar(
            x,
            sign * values[:, i],
            bottom=sign * bottom,
            color=colours[t],
            width=0.85,
            label=t if labels else None,
            linewidth=0,
        )
        bottom += values[:, i]


def _signed_sqrt(v):
    return np.sign(v) * np.sqrt(np.abs(v))


def _signed_square(v):
    return np.sign(v) * np.square(v)


#: Proportions marked on the Miami plot's square-root axis.
MIAMI_TICKS = (0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0)


def miami_plot(
    true: np.ndarray,
    preds: Mapping[str, np.ndarray],
    tissues: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
    call: float = 0.01,
) -> None:
    """One panel per method: true proportions above the axis, predicted below [N, T].

    The tissues of small share (the solid tissues of a cfDNA sample, at 0.5-10%) sit next to
    the axis and the y axis is square-root scaled, so a 1% share is a tenth of the panel's
    half-height instead of a pixel; the dominant ones (blood) stack outside. Each panel's
    title gives the method's MAE, spurious and missed calls per mixture on the mixtures shown
    (``call``: presence level, as in the module's metrics), and a marker under a bar flags a
    mixture with a spurious (red v) or missed (black ^) call, so methods differ visibly.
    """
    from genomelab.deconv.metrics import per_sample

    plt = _plt()
    colours = tissue_colours(tissues)
    order = np.argsort(np.asarray(true, float).mean(0), kind="stable")  # small shares first
    n = len(preds)
    fig, axes = plt.subplots(n, 1, figsize=(max(7, 0.3 * len(true) + 2), 3.0 * n), squeeze=False)
    ticks = [-t for t in MIAMI_TICKS[:0:-1]] + list(MIAMI_TICKS)
    x = np.arange(len(true))
    for ax, (name, pred) in zip(axes[:, 0], preds.items(), strict=True):
        _stack(ax, true, tissues, colours, 1.0, labels=ax is axes[0, 0], order=order)
        _stack(ax, pred, tissues, colours, -1.0, order=order)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set_yscale("function", functions=(_signed_sqrt, _signed_square))
        ax.set_ylim(-1.25, 1.05)
        ax.set_yticks(ticks, [f"{abs(t):.0%}" for t in ticks], fontsize=7)
        obs = per_sample(true, pred, call)
        for key, marker, colour, y in (("spurious", "v", "red", -1.12), ("missed", "^", "black", -1.2)):
            hit = obs[key] > 0
            ax.scatter(x[hit], np.full(hit.sum(), y), marker=marker, s=14, color=colour, linewidths=0)
        ax.set_title(
            f"{name}: MAE {obs['abs_error'].mean():.4f}, spurious {obs['spurious'].mean():.2f}, "
            f"missed {obs['missed'].mean():.2f} per mixture",
            fontsize=9,
        )
        ax.set_ylabel("predicted | true\nproportion (sqrt scale)", fontsize=8)
        ax.set_xticks([])
    axes[-1, 0].set_xlabel("test mixture (red v: a spurious call, black ^: a missed call)")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles[::-1],
        names[::-1],
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=7,
        frameon=False,
        title="tissue (outermost first)",
        title_fontsize=7,
    )
    fig.suptitle(title or "Miami plot: true (up) vs predicted (down) proportions", y=1.01)
    fig.tight_layout()
    _save(fig, path)


def scatter_plot(
    true: np.ndarray,
    preds: Mapping[str, np.ndarray],
    tissues: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Predicted vs true proportion per (sample, tissue), one panel per method."""
    plt = _plt()
    colours = tissue_colours(tissues)
    n = len(preds)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.4), squeeze=False)
    for ax, (name, pred) in zip(axes[0], preds.items(), strict=True):
        for i, t in enumerate(tissues):
            ax.scatter(true[:, i], pred[:, i], s=5, alpha=0.5, color=colours[t], label=t)
        ax.plot([0, 1], [0, 1], color="black", linewidth=0.6)
        ax.set_xscale("symlog", linthresh=0.01)
        ax.set_yscale("symlog", linthresh=0.01)
        ax.set_xlim(0, 1.05)
        ax.set_ylim(0, 1.05)
        ax.set_title(name)
        ax.set_xlabel("true proportion")
    axes[0, 0].set_ylabel("predicted proportion")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(
        handles,
        labels,
        loc="center left",
        bbox_to_anchor=(1.0, 0.5),
        fontsize=7,
        frameon=False,
        markerscale=2,
    )
    fig.suptitle(title or "Predicted vs true (symlog axes)", y=1.02)
    _save(fig, path)


def tissue_error_plot(
    true: np.ndarray,
    preds: Mapping[str, np.ndarray],
    tissues: Sequence[str],
    path: str | os.PathLike,
    title: str = "",
) -> None:
    """Mean absolute error per tissue and method, with standard-error bars."""
    plt = _plt()
    n = len(preds)
    width = 0.8 / n
    x = np.arange(len(tissues))
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(tissues) + 2), 3.6))
    for j, (name, pred) in enumerate(preds.items()):
        err = np.abs(pred - true)
        ax.bar(
            x + (j - (n - 1) / 2) * width,
            err.mean(0),
            width,
            yerr=err.std(0) / np.sqrt(len(err)),
            label=name,
            capsize=2,
        )
    ax.set_xticks(x, list(tissues), rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("mean absolute error")
    ax.legend(fontsize=8, frameon=False)
    ax.set_title(title or "Per-tissue error (bars: standard error)")
    _save(fig, path)


def group_other(props: np.ndarray, tissues: Sequence[str], threshold: float) -> tuple[np.ndarray, list[str]]:
    """Merge tissues whose proportion never reaches ``threshold`` in any sample into "other".

    props: [N, T]. Returns ([N, T'] with the "other" column last when any was merged, names).
    """
    keep = (props >= threshold).any(0)
    names = [t for t, k in zip(tissues, keep, strict=True) if k]
    out = props[:, keep]
    if (~keep).any():
        out = np.concatenate([out, props[:, ~keep].sum(1, keepdims=True)], axis=1)
        names.append("other")
    return out, names


def stacked_bar_plot(
    props: Mapping[str, np.ndarray],
    samples: Sequence[str],
    tissues: Sequence[str],
    path: str | os.PathLike,
    threshold: float = 0.02,
    title: str = "",
) -> None:
    """Stacked bars per sample for each method [N, T]; tissues below ``threshold`` in every
    sample and method are grouped as "other"."""
    plt = _plt()
    colours = tissue_colours(list(tissues))
    stacked = np.concatenate(list(props.values()), axis=0)
    keep = (stacked >= threshold).any(0)
    n = len(props)
    fig, axes = plt.subplots(1, n, figsize=(max(4, 0.5 * len(samples) + 1.5) * n, 3.6), squeeze=False)
    for ax, (name, p) in zip(axes[0], props.items(), strict=True):
        merged = np.concatenate([p[:, keep], p[:, ~keep].sum(1, keepdims=True)], axis=1)
        names = [t for t, k in zip(tissues, keep, strict=True) if k] + ["other"]
        _stack(ax, merged, names, colours, labels=ax is axes[0, 0])
        ax.set_xticks(np.arange(len(samples)), list(samples), rotation=60, ha="right", fontsize=8)
        ax.set_ylim(0, 1.0)
        ax.set_title(name)
    axes[0, 0].set_ylabel("proportion")
    fig.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    fig.suptitle(
        title or f"Estimated composition (tissues < {threshold:.0%} everywhere grouped as other)", y=1.02
    )
    _save(fig, path)


def curves_plot(
    histories: Mapping[str, list[dict]],
    path: str | os.PathLike,
    keys: Sequence[str] = ("train/total_loss", "val/total_loss", "val/mae"),
) -> None:
    """Training curves of several runs (one panel per key)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.2), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=True):
        for name, hist in histories.items():
            ys = [h.get(key) for h in hist]
            if any(y is not None for y in ys):
                ax.plot([h.get("epoch", i) for i, h in enumerate(hist)], ys, label=name)
        ax.set_title(key)
        ax.set_xlabel("epoch")
    axes[0, 0].legend(fontsize=7, frameon=False)
    _save(fig, path)


def presence_curve_plot(
    curves: Mapping[str, Mapping[str, list[dict]]],
    points: Mapping[str, Mapping[str, tuple[float, float]]],
    path: str | os.PathLike,
) -> None:
    """Precision vs recall of presence calls as the decision threshold sweeps, one panel per
    test set: ``curves[set]`` = {"model": [...], "nnls": [...]} (calibrate.presence_curve
    rows), ``points[set][method]`` = (recall, precision) of each method as run."""
    plt = _plt()
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(3.8 * n, 3.4), squeeze=False)
    for ax, (name, c) in zip(axes[0], curves.items(), strict=False):
        for key, label, style in (
            ("model", "two-stage presence threshold", "-o"),
            ("nnls", "NNLS cut-off", "-s"),
        ):
            rows = c.get(key, [])
            ax.plot([r["recall"] for r in rows], [r["precision"] for r in rows], style, ms=3, label=label)
        for method, (rec, prec) in points.get(name, {}).items():
            ax.plot([rec], [prec], "k*", ms=8)
            ax.annotate(method, (rec, prec), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("recall (present >= 1%)")
        ax.set_ylabel("precision")
    axes[0, 0].legend(fontsize=7, frameon=False)
    _save(fig, path)
