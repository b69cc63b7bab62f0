"""The tissue module's comparison table, plots and ``summary.json`` (a ModuleSummary)."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.diagnostics import read_results
from genomelab.io.atomic import atomic_output
from genomelab.io.metrics import read_json_file, read_metrics
from genomelab.report import Comparison, ModuleSummary, write_module_summary
from genomelab.tissue.metrics import HEADLINE

logger = logging.getLogger(__name__)

TITLE = "Tissue of origin from methylation (whole-sample models vs baselines)"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    plt = _plt()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_confusion(confusion: list[list[int]], classes: list[str], title: str, path: Path) -> None:
    """Row-normalised confusion matrix (rows = true class) with counts in the cells."""
    plt = _plt()
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = max(3.5, 0.45 * len(classes) + 1.5)
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(classes)), classes, fontsize=8)
    for i, j in zip(*np.nonzero(cm), strict=True):
        ax.text(
            j,
            i,
            int(cm[i, j]),
            ha="center",
            va="center",
            fontsize=7,
            color="white" if norm[i, j] > 0.6 else "black",
        )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    _save(fig, path)


def plot_training_curves(
    histories: dict[str, list[dict[str, float]]], chance: dict[str, float], path: Path
) -> None:
    """Training/validation NLL (with the chance level ln C) and validation accuracy per model."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, (name, hist) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = [h["epoch"] for h in hist]
        axes[0].plot(epochs, [h.get("train/nll", np.nan) for h in hist], color=color, ls="--", lw=1)
        axes[0].plot(epochs, [h.get("val/nll", np.nan) for h in hist], color=color, label=name)
        if name in chance:
            axes[0].axhline(chance[name], color=color, ls=":", lw=0.8)
        axes[1].plot(epochs, [h.get("val/accuracy", np.nan) for h in hist], color=color, label=name)
    axes[0].set_title("NLL (solid val, dashed train, dotted chance)", fontsize=9)
    axes[0].set_xlabel("epoch")
    axes[1].set_title("validation accuracy", fontsize=9)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylim(0, 1.02)
    axes[1].legend(frameon=False, fontsize=8)
    _save(fig, path)


def _diag_dicts(path: Path, rel_to: Path) -> list[dict[str, Any]]:
    out = []
    for r in read_results(path):
        d = {"name": r.name, "status": r.status, "message": r.message, "blocking": r.blocking}
        if r.figure:
            d["figure"] = os.path.relpath(path.parent / r.figure, rel_to)
        out.append(d)
    return out


def paired_test(model: dict[str, list], baseline: dict[str, list]) -> dict[str, Any]:
    """Exact McNemar test of two classifiers on the same test samples.

    ``model``/``baseline``: ``{"sample": [...], "true": [...], "pred": [...]}`` (the
    ``predictions`` of a metrics JSON). Only the discordant samples count: ``only_model``
    right by the model alone, ``only_baseline`` by the baseline alone; the two-sided p-value
    is that of a fair coin giving so uneven a split (scipy's exact binomial test; not corrected
    for the several model x baseline pairs a summary shows). On a few dozen test samples a
    difference of one or two samples is noise, which this makes visible.
    """
    from scipy.stats import binomtest

    if sorted(model["sample"]) != sorted(baseline["sample"]):
        raise ValueError("paired test needs predictions on the same test samples")
    if len(set(model["sample"])) != len(model["sample"]):
        raise ValueError("paired test needs unique sample names")
    truth = dict(zip(baseline["sample"], baseline["true"], strict=True))
    if any(truth[s] != t for s, t in zip(model["sample"], model["true"], strict=True)):
        raise ValueError("paired test: the model's and the baseline's true labels differ for some samples")
    right_b = {
        s: t == p for s, t, p in zip(baseline["sample"], baseline["true"], baseline["pred"], strict=True)
    }
    right_m = {s: t == p for s, t, p in zip(model["sample"], model["true"], model["pred"], strict=True)}
    only_model = sum(right_m[s] and not right_b[s] for s in right_m)
    only_baseline = sum(right_b[s] and not right_m[s] for s in right_m)
    n_disc = only_model + only_baseline
    p = 1.0 if n_disc == 0 else float(binomtest(only_model, n_disc, 0.5).pvalue)
    return {"n": len(right_m), "only_model": only_model, "only_baseline": only_baseline, "p_value": p}


def build_summary(
    baselines_json: str | os.PathLike,
    model_metrics: dict[str, str | os.PathLike],
    model_diagnostics: dict[str, str | os.PathLike],
    diagnostics: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    task: dict[str, Any] | None = None,
) -> ModuleSummary:
    """Write ``summary.json``/``summary.md``, ``comparison.tsv`` and plots into ``out_dir``."""
    out = Path(out_dir)
    plots_dir = out / "plots"
    base = read_json_file(baselines_json, "baselines metrics file")
    rows: dict[str, dict[str, float]] = {}
    kinds: dict[str, str] = {}
    confusions: dict[str, tuple[list, list]] = {}
    for name, res in base["methods"].items():
        rows[name] = {k: res["test"][k] for k in HEADLINE}
        kinds[name] = "baseline"
        confusions[name] = (res["test"]["confusion"], res["test"]["classes"])
    histories, chance, notes = {}, {}, []
    baseline_predictions = {
        name: res["predictions"] for name, res in base["methods"].items() if "predictions" in res
    }
    n_test = {name: res["test"]["n"] for name, res in base["methods"].items()}
    for path in model_metrics.values():
        m = read_metrics(path, require=("title", "granularity", "test", "history", "chance_nll"))
        title = m["title"]
        rows[title] = {k: m.test[k] for k in HEADLINE}
        kinds[title] = "model" if m["granularity"] == "file" else "ablation"
        n_test[title] = m.test["n"]
        histories[title] = m.history
        chance[title] = m["chance_nll"]
        if m.get("n_members", 1) > 1:
            single = [r["test_accuracy"] for r in m["members"]]
            notes.append(
                f"{title}: average of {m['n_members']} independently seeded runs (seeds "
                f"{', '.join(str(r['seed']) for r in m['members'])}); the single runs scored "
                f"{min(single):.3f}-{max(single):.3f} test accuracy (mean {np.mean(single):.3f}); "
                "the training curves are member 0's."
            )
        if m["granularity"] == "file":
            confusions[title] = (m["test"]["confusion"], m["test"]["classes"])
            for name, preds in baseline_predictions.items():
                t = paired_test(m["predictions"], preds)
                notes.append(
                    f"{title} vs {name}, same {t['n']} test samples: {t['only_model']} right only by "
                    f"the model, {t['only_baseline']} only by the baseline (exact McNemar p = "
                    f"{t['p_value']:.2g})."
                )
        else:
            notes.append(
                f"{title}: metrics are over {m['test']['n']} single-region test examples, each "
                "labelled with its file's class (the granularity mistake kept as an ablation)."
            )
    plots = []
    for name, (cm, classes) in confusions.items():
        file = plots_dir / f"confusion_{name.replace(' ', '_').replace('(', '').replace(')', '')}.png"
        plot_confusion(cm, classes, f"{name} (test split)", file)
        plots.append(str(file.relative_to(out)))
    if histories:
        plot_training_curves(histories, chance, plots_dir / "training_curves.png")
        plots.append("plots/training_curves.png")
    with atomic_output(out / "comparison.tsv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["method", "kind", "n_test", *HEADLINE])
        for name, row in rows.items():
            writer.writerow([name, kinds[name], n_test[name], *(f"{row[k]:.4f}" for k in HEADLINE)])
    diag: list[dict[str, Any]] = []
    for path in diagnostics:
        diag += _diag_dicts(Path(path), out)
    for path in model_diagnostics.values():
        diag += _diag_dicts(Path(path), out)
    plots += [d["figure"] for d in diag if d.get("figure")]
    comparison = Comparison(
        title="tissue classification" if not task else f"{task.get('label', 'tissue')} classification",
        split="test",
        primary="balanced_accuracy",
        higher_is_better=True,
        rows={k: v for k, v in rows.items() if kinds[k] != "ablation"},
        kinds={k: v for k, v in kinds.items() if v != "ablation"},
    )
    comparisons = [comparison]
    ablations = {k: v for k, v in rows.items() if kinds[k] == "ablation"}
    if ablations:
        comparisons.append(
            Comparison(
                title="region-level ablation (single regions with file labels)",
                split="test",
                primary="balanced_accuracy",
                higher_is_better=True,
                rows=ablations,
                kinds={k: "model" for k in ablations},
            )
        )
    if task:
        notes.insert(
            0,
            f"Task: classify {task.get('label', 'tissue')}"
            + (f" within {task['subset']}" if task.get("subset") else "")
            + f"; {task.get('n_classes', '?')} classes; splits by source sample "
            f"({task.get('n_split', {})}).",
        )
    models = {k: v for k, v in rows.items() if kinds[k] == "model"}
    if models and "logistic regression" in rows:
        lr = rows["logistic regression"]["balanced_accuracy"]
        matched = [k for k, v in models.items() if v["balanced_accuracy"] >= lr]
        notes.append(
            (
                "File-level model(s) matching or beating logistic regression on balanced accuracy: "
                + ", ".join(matched)
            )
            if matched
            else "No file-level model matches logistic regression on balanced accuracy on this split."
        )
    summary = ModuleSummary("tissue", TITLE, comparisons, diag, plots, notes)
    write_module_summary(summary, out / "summary.json", out / "summary.md")
    logger.info("tissue summary: %s", comparison.verdict())
    return summary
