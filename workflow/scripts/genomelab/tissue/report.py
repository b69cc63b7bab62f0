"""The tissue module's comparison table, plots and ``summary.json`` (a ModuleSummary)."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.diagnostics import read_results
from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.metrics import read_json_file, read_metrics
from genomelab.io.tables import read_given_assignment, read_split_table
from genomelab.report import Comparison, ModuleSummary, write_module_summary
from genomelab.report.stats import ALPHA, holm, mcnemar_predictions, mean_sd, paired_t, wilcoxon_signed_rank
from genomelab.report.summary import pair_key
from genomelab.tissue.calibration import ece_of_bins, finish_curve
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
    """Row-normalised confusion matrix (rows = true class) with counts in the cells.

    The figure grows with the number of classes up to 18 inches (about 2,000 px, reached at
    37 classes): brain-tumour classifiers have 90-180 classes, and an unbounded figure took
    25 s and 2.3 GB to draw 184 of them. Past about 75 classes cells are narrower than 0.22
    inch: they drop their counts (the colour still shows the fraction; the counts are in the
    summary's confusion matrix) and the x labels stand upright; past about 118 the labels
    shrink below 8 pt (5 pt at 184 classes, 3 pt at the least).
    """
    plt = _plt()
    cm = np.asarray(confusion, dtype=float)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    n = len(classes)
    size = min(max(3.5, 0.45 * n + 1.5), 18.0)
    cell = (size - 1.5) / max(n, 1)  # inches per class
    label_pt = float(np.clip(cell * 72 * 0.8, 3.0, 8.0))
    fig, ax = plt.subplots(figsize=(size + 0.8, size))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    # Upright labels once they are packed: slanted ones overlap their neighbours there.
    slant = {"rotation": 60, "ha": "right"} if cell >= 0.22 else {"rotation": 90, "ha": "center"}
    ax.set_xticks(range(n), classes, fontsize=label_pt, **slant)
    ax.set_yticks(range(n), classes, fontsize=label_pt)
    if cell >= 0.22:
        for i, j in zip(*np.nonzero(cm), strict=True):
            ax.text(
                j,
                i,
                int(cm[i, j]),
                ha="center",
                va="center",
                fontsize=min(7.0, label_pt),
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


def _headline(test: dict[str, Any]) -> dict[str, float]:
    """The table's metrics of a test record; NaN for one not there (``ece_uncalibrated`` of
    an uncalibrated single run, or of a file from before calibration)."""
    return {k: float(test[k]) if test.get(k) is not None else float("nan") for k in HEADLINE}


def _diag_dicts(path: Path, rel_to: Path) -> list[dict[str, Any]]:
    out = []
    for r in read_results(path):
        d = {"name": r.name, "status": r.status, "message": r.message, "blocking": r.blocking}
        if r.figure:
            d["figure"] = os.path.relpath(path.parent / r.figure, rel_to)
        out.append(d)
    return out


def _baseline_rows(base: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per baseline of a baselines metrics file: test ``metrics``, ``confusion`` and
    ``predictions`` (None where the file has none)."""
    return {
        name: {
            "metrics": _headline(res["test"]),
            "n_test": res["test"]["n"],
            "confusion": (res["test"]["confusion"], res["test"]["classes"]),
            "predictions": res.get("predictions"),
            "calibration": res.get("calibration"),
            "grid": res.get("grid"),
        }
        for name, res in base["methods"].items()
    }


def _grid_methods(base: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per grid-only baseline of a baselines metrics file (one that exists only on degraded
    inputs, such as logistic regression refit on the observed regions): its grid."""
    return {name: res["grid"] for name, res in base.get("grid_methods", {}).items()}


def _read_model(path: str | os.PathLike):
    return read_metrics(path, require=("title", "granularity", "test", "history", "chance_nll"))


def _members_note(title: str, m: Any) -> str | None:
    if m.get("n_members", 1) <= 1:
        return None
    single = [r["test_accuracy"] for r in m["members"]]
    return (
        f"{title}: average of {m['n_members']} independently seeded runs (seeds "
        f"{', '.join(str(r['seed']) for r in m['members'])}); the single runs scored "
        f"{min(single):.3f}-{max(single):.3f} test accuracy (mean {np.mean(single):.3f}); "
        "the training curves are member 0's."
    )


def _ablation_note(title: str, n_test: int) -> str:
    return (
        f"{title}: metrics are over {n_test} single-region test examples, each "
        "labelled with its file's class (the granularity mistake kept as an ablation)."
    )


def _plot_confusions(confusions: dict[str, tuple[list, list]], out: Path, what: str) -> list[str]:
    plots = []
    for name, (cm, classes) in confusions.items():
        file = out / "plots" / f"confusion_{name.replace(' ', '_').replace('(', '').replace(')', '')}.png"
        plot_confusion(cm, classes, f"{name} ({what})", file)
        plots.append(str(file.relative_to(out)))
    return plots


def _pool(records: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """Sum the count fields of per-fold reliability bins or coverage curves."""
    first = records[0][key]
    out = dict(first)
    for field in ("count", "correct", "confidence", "n_classified", "n_correct", "n"):
        if field in first:
            out[field] = np.sum([np.asarray(r[key][field], float) for r in records], axis=0).tolist()
    return out


def write_calibration(records: dict[str, list[dict[str, Any]]], out: Path, notes: list[str]) -> list[str]:
    """Reliability diagram (``plots/reliability.png``), accuracy/coverage trade-off
    (``plots/coverage.png`` and ``plots/coverage.json``) of every method's test calls, pooled
    over folds; one note per method. ``records``: per method, its calibration record per fold."""
    records = {k: v for k, v in records.items() if v}
    if not records:
        return []
    pooled = {}
    for name, recs in records.items():
        before, after = _pool(recs, "reliability_before"), _pool(recs, "reliability_after")
        curve = finish_curve(_pool(recs, "coverage_curve"))
        n_cls = int(sum(r["n_classified"] for r in recs))
        n_right = sum(r["accuracy_classified"] * r["n_classified"] for r in recs if r["n_classified"])
        pooled[name] = {
            "temperatures": [r["temperature"] for r in recs],
            "ece_before": ece_of_bins(before),
            "ece_after": ece_of_bins(after),
            "reliability_before": before,
            "reliability_after": after,
            "coverage_curve": curve,
            "threshold": recs[0]["threshold"],
            "coverage": n_cls / max(sum(r["n_test"] for r in recs), 1),
            "accuracy_classified": n_right / n_cls if n_cls else float("nan"),
        }
        p = pooled[name]
        temps = p["temperatures"]
        t_text = (
            f"T = {temps[0]:.2f}" if len(temps) == 1 else f"T = {min(temps):.2f}-{max(temps):.2f} over folds"
        )
        if any("temperature_model" in r for r in recs):
            # calibration.by_profile: the recorded T is the median of the complete validation samples'.
            t_text = f"T per sample profile; complete samples' median {t_text}"
        notes.append(
            f"{name}: temperature scaling on validation ({t_text}) takes test ECE from "
            f"{p['ece_before']:.3f} to {p['ece_after']:.3f}; at confidence threshold {p['threshold']:.2f} "
            f"{p['coverage']:.0%} of test samples are classified, {p['accuracy_classified']:.3f} of them "
            "correctly (plots/coverage.json: the whole trade-off)."
        )
    atomic_write_json(out / "plots" / "coverage.json", pooled)
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    ax.plot([0, 1], [0, 1], color="0.6", lw=0.8, ls=":")
    for i, (name, p) in enumerate(pooled.items()):
        for key, style in (("reliability_before", "--"), ("reliability_after", "-")):
            b = p[key]
            count = np.asarray(b["count"])
            nz = count > 0
            ax.plot(
                np.asarray(b["confidence"])[nz] / count[nz],
                np.asarray(b["correct"])[nz] / count[nz],
                style,
                marker="o",
                ms=3,
                color=f"C{i}",
                label=f"{name} ({'scaled' if key.endswith('after') else 'raw'}, ECE {p[key.replace('reliability', 'ece')]:.3f})",
            )
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.legend(frameon=False, fontsize=6)
    _save(fig, out / "plots" / "reliability.png")
    fig, ax = plt.subplots(figsize=(4.6, 3.6))
    for i, (name, p) in enumerate(pooled.items()):
        c = p["coverage_curve"]
        ax.plot(c["coverage"], c["accuracy"], marker="o", ms=3, color=f"C{i}", label=name)
    ax.set_xlabel("fraction classified (confidence >= threshold)")
    ax.set_ylabel("accuracy of the classified")
    ax.legend(frameon=False, fontsize=7)
    _save(fig, out / "plots" / "coverage.png")
    return ["plots/reliability.png", "plots/coverage.png"]


FAIR_BASELINES = (
    "logistic regression",
    "logistic regression (refit on observed)",
    "nearest centroid",
    "naive Bayes (read counts)",
    "masked single-layer model",
)


def _grid_point_tests(
    name: str, methods: dict[str, dict[str, Any]], kinds: dict[str, str]
) -> dict[str, dict[str, Any]]:
    """Exact McNemar of model ``name`` against every fair baseline at one grid point."""
    tests = {}
    for other in FAIR_BASELINES:
        if other == name or other not in methods:
            continue
        t = mcnemar_predictions(methods[name]["pooled"], methods[other]["pooled"])
        tests[other] = {"p_value": t.p_value, "favours": t.favours, **t.details}
    return tests


def write_grid(
    grids: dict[str, list[list[dict[str, Any]]]], kinds: dict[str, str], out: Path, notes: list[str]
) -> list[str]:
    """The sparsity grid: per (depth, observed) point and method, accuracy and balanced
    accuracy (mean and SD over folds) and, for each model, the exact McNemar test on the
    pooled test predictions against each fair baseline. Writes ``plots/grid.json``,
    ``plots/grid.tsv`` and ``plots/grid.png``. ``grids``: per method, its grid per fold."""
    grids = {k: v for k, v in grids.items() if v and all(v)}
    if not grids:
        return []
    first = next(iter(grids.values()))[0]
    points = []
    for i, pt in enumerate(first):
        methods: dict[str, dict[str, Any]] = {}
        for name, folds in grids.items():
            recs = [f[i] for f in folds]
            if any((r["depth"], r["observed"]) != (pt["depth"], pt["observed"]) for r in recs):
                raise ValueError(f"{name}: grid points differ from the other methods'; rerun with one config")
            pooled = {k: [v for r in recs for v in r["predictions"][k]] for k in ("sample", "true", "pred")}
            acc = mean_sd([r["accuracy"] for r in recs])
            bal = mean_sd([r["balanced_accuracy"] for r in recs])
            methods[name] = {
                "kind": kinds.get(name, "model"),
                "accuracy": acc[0],
                "accuracy_sd": acc[1],
                "balanced_accuracy": bal[0],
                "balanced_accuracy_sd": bal[1],
                "pooled_accuracy": float(np.mean(np.equal(pooled["true"], pooled["pred"]))),
                "pooled": pooled,
            }
            if all("reliability" in r for r in recs):
                # Calibrated models: ECE of the folds' reliability bins pooled (sums add up).
                bins = {k: np.sum([r["reliability"][k] for r in recs], axis=0).tolist() for k in _BIN_SUMS}
                methods[name]["ece"] = ece_of_bins(bins)
        for name in methods:
            if methods[name]["kind"] == "model":
                methods[name]["tests"] = _grid_point_tests(name, methods, kinds)
        for m in methods.values():
            m.pop("pooled")
        points.append({"depth": pt["depth"], "observed": pt["observed"], "methods": methods})
    _add_holm(points)
    n_folds = len(next(iter(grids.values())))
    atomic_write_json(out / "plots" / "grid.json", {"n_folds": n_folds, "points": points})
    with atomic_output(out / "plots" / "grid.tsv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(
            [
                "depth",
                "observed",
                "method",
                "kind",
                "accuracy",
                "accuracy_sd",
                "balanced_accuracy",
                "p_vs_logistic_regression",
                "p_vs_logistic_regression_holm",
                "p_vs_best_fair_baseline",
                "p_vs_best_fair_baseline_holm",
                "ece",
            ]
        )
        for pt in points:
            for name, m in pt["methods"].items():
                tests = m.get("tests", {})
                lr = tests.get("logistic regression", {})
                fair = [n for n in tests if n in pt["methods"]]
                best = max(fair, key=lambda n: pt["methods"][n]["accuracy"]) if fair else None
                writer.writerow(
                    [
                        pt["depth"],
                        pt["observed"],
                        name,
                        m["kind"],
                        f"{m['accuracy']:.4f}",
                        f"{m['accuracy_sd']:.4f}",
                        f"{m['balanced_accuracy']:.4f}",
                        f"{lr['p_value']:.3g}" if lr else "",
                        f"{lr['p_value_holm']:.3g}" if lr else "",
                        "" if best is None else f"{tests[best]['p_value']:.3g} ({best})",
                        "" if best is None else f"{tests[best]['p_value_holm']:.3g} ({best})",
                        f"{m['ece']:.4f}" if "ece" in m else "",
                    ]
                )
    _plot_grid(points, out / "plots" / "grid.png")
    notes += _refit_notes(grids)
    notes.append(
        f"Sparsity grid ({len(points)} points: reads per region x fraction of regions observed, test "
        "samples degraded alike for every method): plots/grid.tsv, with the exact McNemar test of each "
        "model against logistic regression (mean imputation) and the other fair baselines at each point, "
        f"and its p-value adjusted by Holm's method across the {len(points)} points (per model and "
        "baseline: the family of tests behind a claim about every point)."
    )
    notes += _grid_below_notes(points)
    notes += _grid_ece_notes(points)
    return ["plots/grid.png"]


# The reliability-bin sums that pool over folds by adding (``edges`` is the same in every fold).
_BIN_SUMS = ("count", "correct", "confidence")


def _grid_ece_notes(points: list[dict[str, Any]]) -> list[str]:
    """Per model with calibrated grid probabilities: its ECE over the grid points (pooled
    over folds), the worst point named."""
    notes = []
    names = [n for n, m in points[0]["methods"].items() if "ece" in m] if points else []
    for name in names:
        eces = [(pt["methods"][name]["ece"], pt["depth"], pt["observed"]) for pt in points]
        worst = max(eces)
        notes.append(
            f"{name}: ECE after scaling at the grid points {min(eces)[0]:.3f}-{worst[0]:.3f} (worst at "
            f"{worst[1]} read(s) / {100 * worst[2]:g}% observed; plots/grid.tsv, column ece)."
        )
    return notes


def _add_holm(points: list[dict[str, Any]]) -> None:
    """Each grid test's ``p_value_holm``: Holm's adjustment over the points at which the same
    model was tested against the same baseline (in place)."""
    families: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for pt in points:
        for name, m in pt["methods"].items():
            for other, test in m.get("tests", {}).items():
                families.setdefault((name, other), []).append(test)
    for tests in families.values():
        for test, adjusted in zip(tests, holm([t["p_value"] for t in tests]), strict=True):
            test["p_value_holm"] = adjusted


def _grid_below_notes(points: list[dict[str, Any]]) -> list[str]:
    """Per model: the grid points at which a fair baseline is significantly ahead of it, by
    the raw exact McNemar p and after Holm's adjustment across the points."""
    notes = []
    models = [n for n, m in points[0]["methods"].items() if m.get("tests")]
    for name in models:
        raw, adjusted = [], 0
        for pt in points:
            below = {
                other: t
                for other, t in pt["methods"][name].get("tests", {}).items()
                if t["favours"] == "baseline" and t["p_value"] < ALPHA
            }
            if below:
                where = f"{pt['depth']:g} read(s) / {pt['observed']:.0%} observed"
                raw.append(
                    f"{where}: " + ", ".join(f"{o} (p = {t['p_value']:.2g})" for o, t in below.items())
                )
                adjusted += any(t["p_value_holm"] < ALPHA for t in below.values())
        notes.append(
            f"{name}: significantly below a fair baseline at {len(raw)} of {len(points)} grid points "
            f"by the raw p (< {ALPHA})"
            + (f" ({'; '.join(raw)})" if raw else "")
            + f", at {adjusted} after Holm's adjustment across the points."
        )
    return notes


def _refit_notes(grids: dict[str, list[list[dict[str, Any]]]]) -> list[str]:
    """How many test patterns a refit baseline refitted and how many samples it imputed
    instead (past its budget), over all folds and grid points."""
    notes = []
    for name, folds in grids.items():
        recs = [p for f in folds for p in f if "refits" in p]
        if recs:
            n_fit = sum(int(p["refits"]) for p in recs)
            n_fallback = sum(int(p["fallback_samples"]) for p in recs)
            notes.append(
                f"{name}: {n_fit} refits over {len(recs)} fold x grid points; {n_fallback} degraded "
                "test samples past the refit budget were mean-imputed instead "
                "(tissue.baselines.refit_budget)."
            )
    return notes


def _plot_grid(points: list[dict[str, Any]], path: Path) -> None:
    plt = _plt()
    depths = sorted({p["depth"] for p in points}, reverse=True)
    fig, axes = plt.subplots(1, len(depths), figsize=(3.0 * len(depths), 3.0), sharey=True, squeeze=False)
    names = list(points[0]["methods"])
    for ax, depth in zip(axes[0], depths, strict=True):
        pts = sorted((p for p in points if p["depth"] == depth), key=lambda p: p["observed"])
        for i, name in enumerate(names):
            ax.plot(
                [p["observed"] for p in pts],
                [p["methods"][name]["accuracy"] for p in pts],
                marker="o",
                ms=3,
                color=f"C{i}",
                label=name,
            )
        ax.set_xscale("log")
        ax.set_title(f"{depth} read(s) per region", fontsize=9)
        ax.set_xlabel("fraction of regions observed")
    axes[0][0].set_ylabel("accuracy")
    axes[0][-1].legend(frameon=False, fontsize=6)
    _save(fig, path)


def _comparisons(
    rows: dict[str, dict[str, float]], kinds: dict[str, str], task: dict[str, Any] | None, **extra: Any
) -> list[Comparison]:
    """The models-vs-baselines comparison and, when the region ablation ran, its own table."""
    keep = [k for k in rows if kinds[k] != "ablation"]
    comparisons = [
        Comparison(
            title="tissue classification" if not task else f"{task.get('label', 'tissue')} classification",
            split="test",
            primary="balanced_accuracy",
            higher_is_better=True,
            rows={k: rows[k] for k in keep},
            kinds={k: kinds[k] for k in keep},
            tests=extra.get("tests", {}),
            spread={k: v for k, v in extra.get("spread", {}).items() if k in keep},
            folds=extra.get("folds", 1),
        )
    ]
    ablations = [k for k in rows if kinds[k] == "ablation"]
    if ablations:
        comparisons.append(
            Comparison(
                title="region-level ablation (single regions with file labels)",
                split="test",
                primary="balanced_accuracy",
                higher_is_better=True,
                rows={k: rows[k] for k in ablations},
                kinds={k: "model" for k in ablations},
                spread={k: v for k, v in extra.get("spread", {}).items() if k in ablations},
                folds=extra.get("folds", 1),
            )
        )
    return comparisons


def _task_note(task: dict[str, Any], how: str) -> str:
    return (
        f"Task: classify {task.get('label', 'tissue')}"
        + (f" within {task['subset']}" if task.get("subset") else "")
        + f"; {task.get('n_classes', '?')} classes; {how}."
    )


def _diagnostics(
    diagnostics: list, model_diagnostics: list[tuple[str, Path]], out: Path
) -> list[dict[str, Any]]:
    """Diagnostics of the run, then of the trained models (names prefixed, e.g. with the fold)."""
    diag: list[dict[str, Any]] = []
    for path in diagnostics:
        diag += _diag_dicts(Path(path), out)
    for prefix, path in model_diagnostics:
        diag += [{**d, "name": prefix + d["name"]} for d in _diag_dicts(Path(path), out)]
    return diag


def build_summary(
    baselines_json: str | os.PathLike,
    model_metrics: dict[str, str | os.PathLike],
    model_diagnostics: dict[str, str | os.PathLike],
    diagnostics: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    task: dict[str, Any] | None = None,
) -> ModuleSummary:
    """Write ``summary.json``/``summary.md``, ``comparison.tsv`` and plots into ``out_dir``
    (one train/val/test split; paired tests: exact McNemar on the test samples)."""
    out = Path(out_dir)
    base_json = read_json_file(baselines_json, "baselines metrics file")
    base = _baseline_rows(base_json)
    rows = {name: b["metrics"] for name, b in base.items()}
    kinds = {name: "baseline" for name in base}
    n_test = {name: b["n_test"] for name, b in base.items()}
    confusions = {name: b["confusion"] for name, b in base.items()}
    calib = {name: [b["calibration"]] if b["calibration"] else [] for name, b in base.items()}
    grids = {name: [b["grid"]] if b["grid"] else [] for name, b in base.items()}
    grid_only = _grid_methods(base_json)
    grids.update({name: [g] for name, g in grid_only.items()})
    histories, chance, notes = {}, {}, []
    tests: dict[str, dict[str, Any]] = {}
    for path in model_metrics.values():
        m = _read_model(path)
        title = m["title"]
        rows[title] = _headline(m.test)
        if m.get("calibration") and m["granularity"] == "file":
            calib[title] = [m["calibration"]]
        if m.get("grid"):
            grids[title] = [m["grid"]]
        kinds[title] = "model" if m["granularity"] == "file" else "ablation"
        n_test[title] = m.test["n"]
        histories[title] = m.history
        chance[title] = m["chance_nll"]
        note = _members_note(title, m)
        if note:
            notes.append(note)
        if m["granularity"] == "file":
            confusions[title] = (m["test"]["confusion"], m["test"]["classes"])
            for name, b in base.items():
                if b["predictions"] is None:
                    continue
                t = mcnemar_predictions(m["predictions"], b["predictions"])
                tests[pair_key(title, name)] = t.to_dict()
                notes.append(
                    f"{title} vs {name}, same {t.n} test samples: {t.details['only_model']} right only by "
                    f"the model, {t.details['only_baseline']} only by the baseline (exact McNemar p = "
                    f"{t.p_value:.2g})."
                )
        else:
            notes.append(_ablation_note(title, m["test"]["n"]))
    plots = _plot_confusions(confusions, out, "test split")
    plots += write_calibration(calib, out, notes)
    plots += write_grid(grids, {**kinds, **dict.fromkeys(grid_only, "baseline")}, out, notes)
    # A closed-form fit (the read-profile model) has no curve to draw.
    histories = {title: h for title, h in histories.items() if h}
    if histories:
        plot_training_curves(histories, chance, out / "plots" / "training_curves.png")
        plots.append("plots/training_curves.png")
    with atomic_output(out / "comparison.tsv") as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(["method", "kind", "n_test", *HEADLINE])
        for name, row in rows.items():
            writer.writerow([name, kinds[name], n_test[name], *(f"{row[k]:.4f}" for k in HEADLINE)])
    diag = _diagnostics(diagnostics, [("", Path(p)) for p in model_diagnostics.values()], out)
    plots += [d["figure"] for d in diag if d.get("figure")]
    comparisons = _comparisons(rows, kinds, task, tests=tests)
    if task:
        notes.insert(0, _task_note(task, f"splits by source sample ({task.get('n_split', {})})"))
    models = {k: v for k, v in rows.items() if kinds[k] == "model"}
    if models and "logistic regression" in rows:
        lr = rows["logistic regression"]["balanced_accuracy"]
        matched = [k for k, v in models.items() if v["balanced_accuracy"] >= lr]
        notes.append(
            (
                "File-level model(s) at or above logistic regression's balanced accuracy on this split: "
                + ", ".join(matched)
                + " (a point estimate; the verdict says whether a paired test supports a difference)"
            )
            if matched
            else "No file-level model matches logistic regression on balanced accuracy on this split."
        )
    summary = ModuleSummary("tissue", TITLE, comparisons, diag, plots, notes)
    write_module_summary(summary, out / "summary.json", out / "summary.md")
    logger.info("tissue summary: %s", comparisons[0].verdict())
    return summary


class _FoldResults:
    """Per-fold metrics, test sizes, confusions and pooled test predictions of every method."""

    def __init__(self, fold_of: dict[str, Any], folds_tsv: str | os.PathLike) -> None:
        self.fold_of, self.folds_tsv = fold_of, folds_tsv
        self.per_fold: dict[str, list[dict[str, float]]] = {}
        self.kinds: dict[str, str] = {}
        self.n_test: dict[str, list[int]] = {}
        self.pooled: dict[str, dict[str, list]] = {}
        self.confusions: dict[str, tuple[np.ndarray, list]] = {}

    def add(
        self, name: str, kind: str, fold: int, metrics: dict[str, float], n: int, confusion, predictions
    ) -> None:
        self.kinds[name] = kind
        self.per_fold.setdefault(name, []).append(metrics)
        self.n_test.setdefault(name, []).append(n)
        if confusion is not None:
            cm, classes = confusion
            prev = self.confusions.get(name, (np.zeros_like(np.asarray(cm)), classes))[0]
            self.confusions[name] = (prev + np.asarray(cm), classes)
        if predictions is not None:
            wrong = [s for s in predictions["sample"] if self.fold_of.get(s) != fold]
            if wrong:
                raise ValueError(
                    f"{name}: fold {fold}'s test predictions include samples of other folds in "
                    f"{self.folds_tsv} (e.g. {wrong[:3]}); rerun the fold's jobs"
                )
            rec = self.pooled.setdefault(name, {"sample": [], "true": [], "pred": []})
            for key in rec:
                rec[key] += list(predictions[key])

    def mean_and_sd(self) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
        rows, spread = {}, {}
        for name, folds in self.per_fold.items():
            stats = {metric: mean_sd([f[metric] for f in folds]) for metric in HEADLINE}
            rows[name] = {metric: v[0] for metric, v in stats.items()}
            spread[name] = {metric: v[1] for metric, v in stats.items()}
        return rows, spread

    def paired_tests(self, k: int, notes: list[str]) -> dict[str, dict[str, Any]]:
        """Exact McNemar on pooled out-of-fold predictions of each model x baseline pair, with
        the paired t and Wilcoxon tests on per-fold balanced accuracy in its details."""
        tests: dict[str, dict[str, Any]] = {}
        models = [n for n in self.per_fold if self.kinds[n] == "model" and n in self.pooled]
        baselines = [n for n in self.per_fold if self.kinds[n] == "baseline" and n in self.pooled]
        for model in models:
            if sorted(self.pooled[model]["sample"]) != sorted(self.fold_of):
                raise ValueError(
                    f"{model}: the folds' test predictions do not cover {self.folds_tsv} once each"
                )
            for baseline in baselines:
                test = mcnemar_predictions(self.pooled[model], self.pooled[baseline])
                test.test = "exact McNemar (pooled out-of-fold predictions)"
                primary = (
                    [f["balanced_accuracy"] for f in self.per_fold[model]],
                    [f["balanced_accuracy"] for f in self.per_fold[baseline]],
                )
                test.details["across_folds"] = {
                    t.test: t.to_dict() for t in (paired_t(*primary), wilcoxon_signed_rank(*primary))
                }
                tests[pair_key(model, baseline)] = test.to_dict()
                across = test.details["across_folds"]
                notes.append(
                    f"{model} vs {baseline}, all {test.n} samples out of fold: {test.details['only_model']} "
                    f"right only by the model, {test.details['only_baseline']} only by the baseline (exact "
                    f"McNemar p = {test.p_value:.2g}); per-fold balanced accuracy: paired t p = "
                    f"{across['paired t-test']['p_value']:.2g}, Wilcoxon p = "
                    f"{across['Wilcoxon signed-rank']['p_value']:.2g} ({k} folds)."
                )
        return tests

    def write_table(
        self, path: Path, rows: dict[str, dict[str, float]], spread: dict[str, dict[str, float]]
    ) -> None:
        """``comparison.tsv``: every fold of every method, then its mean and SD."""
        with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
            writer.writerow(["method", "kind", "fold", "n_test", *HEADLINE])
            for name, folds in self.per_fold.items():
                kind, n_test = self.kinds[name], self.n_test[name]
                for fold, row in enumerate(folds):
                    writer.writerow([name, kind, fold, n_test[fold], *(f"{row[m]:.4f}" for m in HEADLINE)])
                writer.writerow(
                    [name, kind, "mean", sum(n_test), *(f"{rows[name][m]:.4f}" for m in HEADLINE)]
                )
                writer.writerow([name, kind, "sd", "", *(f"{spread[name][m]:.4f}" for m in HEADLINE)])


def _add_model_folds(
    results: _FoldResults,
    paths: list[str | os.PathLike],
    k: int,
    histories: dict,
    chance: dict,
    notes: list[str],
) -> None:
    """One model's metrics files [K], in fold order; fold 0 gives the curves and notes."""
    if len(paths) != k:
        raise ValueError(f"{len(paths)} metrics files for {k} folds: {paths}")
    for fold, path in enumerate(paths):
        m = _read_model(path)
        title, file_level = m["title"], m["granularity"] == "file"
        results.add(
            title,
            "model" if file_level else "ablation",
            fold,
            _headline(m.test),
            m.test["n"],
            (m["test"]["confusion"], m["test"]["classes"]) if file_level else None,
            m["predictions"] if file_level else None,
        )
        if fold == 0:
            histories[title], chance[title] = m.history, m["chance_nll"]
            note = _members_note(title, m)
            if note:
                notes.append(f"Fold 0: {note}")
            if not file_level:
                notes.append(_ablation_note(title, m["test"]["n"]))


def build_fold_summary(
    folds_tsv: str | os.PathLike,
    baselines_json: list[str | os.PathLike],
    model_metrics: dict[str, list[str | os.PathLike]],
    model_diagnostics: dict[str, list[str | os.PathLike]],
    diagnostics: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    task: dict[str, Any] | None = None,
) -> ModuleSummary:
    """The summary of K-fold cross-validation: mean +- SD over folds per model and baseline,
    and paired tests of every file-level model against every baseline.

    ``baselines_json`` [K] and ``model_metrics[model]`` [K] are in fold order; every sample is
    in one fold's test split (``folds_tsv``). The verdict's test is the exact McNemar test on
    the pooled out-of-fold predictions (one per sample, each from a model that did not train
    on it): with K = 3-5 folds a test across the K fold metrics has too few pairs (the
    signed-rank test cannot reach p < 0.05 below six), and fold metrics are not independent.
    The paired t-test and the Wilcoxon signed-rank test on the per-fold balanced accuracy are
    reported beside it. ``comparison.tsv`` lists every fold, then the mean and SD.
    """
    out = Path(out_dir)
    results = _FoldResults(read_given_assignment(folds_tsv, ("sample",), "folds file").values, folds_tsv)
    k = len(baselines_json)
    histories: dict[str, Any] = {}
    chance: dict[str, Any] = {}
    notes: list[str] = []
    calib: dict[str, list[dict[str, Any]]] = {}
    grids: dict[str, list[Any]] = {}
    grid_kinds: dict[str, str] = {}
    for fold, path in enumerate(baselines_json):
        base_json = read_json_file(path, "baselines metrics file")
        for name, b in _baseline_rows(base_json).items():
            results.add(name, "baseline", fold, b["metrics"], b["n_test"], b["confusion"], b["predictions"])
            if b["calibration"]:
                calib.setdefault(name, []).append(b["calibration"])
            grids.setdefault(name, []).append(b["grid"])
        for name, grid in _grid_methods(base_json).items():
            grids.setdefault(name, []).append(grid)
            grid_kinds[name] = "baseline"
    for paths in model_metrics.values():
        for path in paths:
            m = _read_model(path)
            if m.get("calibration") and m["granularity"] == "file":
                calib.setdefault(m["title"], []).append(m["calibration"])
            if m["granularity"] == "file":
                grids.setdefault(m["title"], []).append(m.get("grid"))
    for paths in model_metrics.values():
        _add_model_folds(results, list(paths), k, histories, chance, notes)
    rows, spread = results.mean_and_sd()
    tests = results.paired_tests(k, notes)
    plots = _plot_confusions(
        {n: (c.tolist(), classes) for n, (c, classes) in results.confusions.items()},
        out,
        f"pooled over {k} folds",
    )
    plots += write_calibration(calib, out, notes)
    plots += write_grid(grids, {**results.kinds, **grid_kinds}, out, notes)
    # A closed-form fit (the read-profile model) has no curve to draw.
    histories = {title: h for title, h in histories.items() if h}
    if histories:
        plot_training_curves(histories, chance, out / "plots" / "training_curves.png")
        plots.append("plots/training_curves.png")
    results.write_table(out / "comparison.tsv", rows, spread)
    model_diag = [
        (f"fold {f}: ", Path(p)) for paths in model_diagnostics.values() for f, p in enumerate(paths)
    ]
    diag = _diagnostics(diagnostics, model_diag, out)
    plots += [d["figure"] for d in diag if d.get("figure")]
    comparisons = _comparisons(rows, results.kinds, task, tests=tests, spread=spread, folds=k)
    if task:
        notes.insert(
            0,
            _task_note(
                task,
                f"{k}-fold cross-validation by source sample (folds in folds.tsv); the "
                "pre-training diagnostics looked at fold 0's split",
            ),
        )
    summary = ModuleSummary("tissue", TITLE, comparisons, diag, plots, notes)
    write_module_summary(summary, out / "summary.json", out / "summary.md")
    logger.info("tissue summary: %s", comparisons[0].verdict())
    return summary


def summarise(
    models: list[str],
    task: dict[str, Any],
    splits_tsv: str | os.PathLike,
    baselines_json: list[str | os.PathLike],
    model_metrics: list[str | os.PathLike],
    model_diagnostics: list[str | os.PathLike],
    diagnostics: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    folds_tsv: str | os.PathLike | None = None,
) -> ModuleSummary:
    """The tissue summary of one split or, with ``folds_tsv``, of K folds.

    ``baselines_json`` [K]; ``model_metrics``/``model_diagnostics`` [len(models) * K],
    model-major (each model's folds in order); ``splits_tsv`` is the split the diagnostics
    used (fold 0's with folds).
    """
    rows = read_split_table(splits_tsv)
    task = {**task, "n_classes": len({r["label"] for r in rows})}
    task["n_split"] = {s: int(np.sum([r["split"] == s for r in rows])) for s in ("train", "val", "test")}
    k = len(baselines_json)
    if len(model_metrics) != len(models) * k or len(model_diagnostics) != len(models) * k:
        raise ValueError(
            f"{len(models)} models x {k} folds need as many metrics files, got {len(model_metrics)}"
        )
    metrics = {m: model_metrics[i * k : (i + 1) * k] for i, m in enumerate(models)}
    diag = {m: model_diagnostics[i * k : (i + 1) * k] for i, m in enumerate(models)}
    if folds_tsv is None:
        if k != 1:
            raise ValueError(f"{k} baselines files without a folds table")
        return build_summary(
            baselines_json[0],
            {m: v[0] for m, v in metrics.items()},
            {m: v[0] for m, v in diag.items()},
            diagnostics,
            out_dir,
            task,
        )
    return build_fold_summary(folds_tsv, baselines_json, metrics, diag, diagnostics, out_dir, task)
