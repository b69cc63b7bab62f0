"""The tissue module's pre-training diagnostics (each is one rule and one JSON file).

- labels: label consistency (copies of a source sample share labels, subtypes nest in one
  tissue, every class has enough independent samples to reach every split);
- variance: between/within-class variance ratio per region (does the data carry the labels?);
- leakage: augmented copies across splits (the splits are by source sample, so none), and
  what a sample-level split would have leaked;
- subtypes: separability of subtypes inside each broad class;
- overfit: each configured model memorises 10 samples (its wiring works);
- learnability: region-level vs file-level probes; detects the granularity mismatch of
  region-level examples carrying file-level labels and explains it.
The chance-level-loss and collapsed-prediction checks run after training
(:func:`genomelab.tissue.training.training_checks`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.config import ConfigSection, from_schema
from genomelab.diagnostics import FAIL, PASS, SKIP, WARN, DiagnosticResult, write_results
from genomelab.diagnostics.checks import group_leakage
from genomelab.io.atomic import atomic_output
from genomelab.io.features import read_features
from genomelab.splits import group_split
from genomelab.tissue.kinds import CLOSED_FORM, FILE_LEVEL, MODEL_TITLES
from genomelab.tissue.task import (
    TaskConfig,
    TissueData,
    impute_standardise_params,
    load_task,
    select_task,
    standardise,
)

logger = logging.getLogger(__name__)

CHECKS = ("labels", "variance", "leakage", "subtypes", "learnability", "overfit")
OVERFIT_LR = 3e-3  # full-batch Adam of the memorisation check


@dataclass
class DiagnosticsConfig(ConfigSection):
    """Thresholds of the tissue diagnostics (config ``tissue.diagnostics``)."""

    SECTION = "tissue.diagnostics"

    min_groups_per_class: int = from_schema("tissue.diagnostics.min_groups_per_class")
    variance_alpha: float = from_schema("tissue.diagnostics.variance_alpha")
    subtype_min_informativeness: float = from_schema("tissue.diagnostics.subtype_min_informativeness")
    overfit_samples: int = from_schema("tissue.diagnostics.overfit_samples")
    overfit_steps: int = from_schema("tissue.diagnostics.overfit_steps")
    probe_regions: int = from_schema("tissue.diagnostics.probe_regions")
    region_informative_max: float = from_schema("tissue.diagnostics.region_informative_max")
    file_informative_min: float = from_schema("tissue.diagnostics.file_informative_min")

    def __post_init__(self) -> None:
        if self.min_groups_per_class < 2:
            raise ValueError(
                "tissue.diagnostics.min_groups_per_class must be >= 2 (one source sample "
                f"cannot be in train and test), not {self.min_groups_per_class}"
            )
        if not 0 < self.variance_alpha < 1:
            raise ValueError(
                f"tissue.diagnostics.variance_alpha must be in (0, 1), not {self.variance_alpha}"
            )
        for name in ("overfit_samples", "overfit_steps", "probe_regions"):
            if getattr(self, name) < 1:
                raise ValueError(f"tissue.diagnostics.{name} must be >= 1, not {getattr(self, name)}")
        for name in ("subtype_min_informativeness", "region_informative_max", "file_informative_min"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"tissue.diagnostics.{name} must be in [0, 1], not {getattr(self, name)}")


def informativeness(accuracy: float, chance: float) -> float:
    """Accuracy rescaled so that chance is 0 and perfect is 1: (acc - chance) / (1 - chance)."""
    return float((accuracy - chance) / (1 - chance)) if chance < 1 else 0.0


def _save_figure(fig: Any, path: str | os.PathLike) -> None:
    import matplotlib.pyplot as plt

    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def placeholder_figure(text: str, path: str | os.PathLike) -> None:
    """A figure holding only ``text``, for a check that had nothing to plot (its output is declared)."""
    import textwrap

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 1.6))
    ax.axis("off")
    ax.text(0.5, 0.5, textwrap.fill(text, 70), ha="center", va="center", fontsize=9)
    _save_figure(fig, path)


# ------------------------------------------------------------------------------------ labels
def check_labels(
    features_h5: str | os.PathLike, task: TaskConfig, cfg: DiagnosticsConfig
) -> list[DiagnosticResult]:
    """Label consistency of the task's samples in the features file."""
    feats = read_features(features_h5)
    keep = select_task(feats, task, str(features_h5))
    src, tissue, subtype = feats["source_sample"][keep], feats["tissue"][keep], feats["subtype"][keep]
    labels = feats[task.label][keep]
    results = []
    # Copies of one source sample are the same biological sample: one label.
    conflicts = {}
    for column, values in (("tissue", tissue), ("subtype", subtype)):
        pairs = np.unique(np.stack([src, values], 1), axis=0)
        u, counts = np.unique(pairs[:, 0], return_counts=True)
        for s in u[counts > 1][:5]:
            conflicts[f"{s} ({column})"] = sorted(pairs[pairs[:, 0] == s, 1].tolist())
    if conflicts:
        text = "; ".join(f"{k}: {v}" for k, v in conflicts.items())
        results.append(
            DiagnosticResult(
                "label consistency: copies of a source sample",
                FAIL,
                f"copies of one source sample carry different labels: {text}",
                details={"conflicts": conflicts},
            )
        )
    else:
        results.append(
            DiagnosticResult(
                "label consistency: copies of a source sample",
                PASS,
                f"all copies of each of {len(np.unique(src))} source samples share "
                "their tissue and subtype labels",
            )
        )
    # A subtype under two tissues is a labelling error (or two subtypes sharing a name).
    has_sub = subtype != ""
    pairs = (
        np.unique(np.stack([subtype[has_sub], tissue[has_sub]], 1), axis=0)
        if has_sub.any()
        else np.empty((0, 2))
    )
    u, counts = np.unique(pairs[:, 0], return_counts=True) if len(pairs) else (np.array([]), np.array([]))
    shared = {s: sorted(pairs[pairs[:, 0] == s, 1].tolist()) for s in u[counts > 1]}
    if shared:
        status = FAIL if task.label == "subtype" else WARN
        results.append(
            DiagnosticResult(
                "label consistency: subtypes nest in tissues",
                status,
                f"subtype(s) under more than one tissue: {shared}",
                blocking=task.label == "subtype",
                details={"shared": shared},
            )
        )
    else:
        results.append(
            DiagnosticResult(
                "label consistency: subtypes nest in tissues",
                PASS,
                f"{len(u)} subtype(s), each inside one tissue" if len(u) else "no subtype labels given",
                blocking=False,
            )
        )
    # Groups (not files) per class: augmented copies do not add independent examples.
    classes, first = np.unique(labels, return_index=True)
    # str keys: a message shows {'K4': 1}, not numpy's {np.str_('K4'): 1}.
    n_groups = {str(c): len(np.unique(src[labels == c])) for c in classes}
    n_files = {str(c): int((labels == c).sum()) for c in classes}
    too_few = {c: n for c, n in n_groups.items() if n < 2}
    few = {c: n for c, n in n_groups.items() if 2 <= n < cfg.min_groups_per_class}
    details = {"n_source_samples": n_groups, "n_files": n_files, "n_classes": len(classes)}
    if len(classes) < 2:
        results.append(
            DiagnosticResult(
                "label consistency: classes",
                FAIL,
                f"only {len(classes)} class of {task.label!r}",
                details=details,
            )
        )
    elif too_few:
        results.append(
            DiagnosticResult(
                "label consistency: classes",
                FAIL,
                "class(es) with a single source sample cannot be both trained and tested: "
                + ", ".join(f"{c!r} (source sample {src[labels == c][0]})" for c in too_few),
                details=details,
            )
        )
    elif few:
        results.append(
            DiagnosticResult(
                "label consistency: classes",
                WARN,
                f"class(es) with fewer than {cfg.min_groups_per_class} source samples "
                f"miss the validation or test split: {few}",
                details=details,
            )
        )
    else:
        counts = np.asarray(list(n_groups.values()))
        results.append(
            DiagnosticResult(
                "label consistency: classes",
                PASS,
                f"{len(classes)} classes of {task.label!r}, {counts.min()}-{counts.max()} "
                f"source samples each ({int(keep.sum())} files)",
                details=details,
            )
        )
    # Nearly empty files look like samples but carry nothing.
    frac_missing = np.isnan(feats["means"][keep]).mean(axis=1)
    empty = feats["samples"][keep][frac_missing > 0.95]
    status = WARN if len(empty) else PASS
    results.append(
        DiagnosticResult(
            "label consistency: empty samples",
            status,
            f"{len(empty)} sample(s) have no valid call in >95% of regions"
            + (f" (e.g. {empty[:3].tolist()})" if len(empty) else ""),
            blocking=False,
            details={"median_missing_fraction": float(np.median(frac_missing))},
        )
    )
    return results


# ---------------------------------------------------------------------------------- variance
def variance_ratio(z: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, int, int]:
    """Per-region F statistic (between-class over within-class mean squares).

    ``z`` float [n, R] (no NaN), ``y`` int [n]. Returns ``(F [R], df_between, df_within)``.
    One matrix product per statistic; no loop over regions.
    """
    n = len(y)
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    counts = onehot.sum(0)
    present = counts > 0
    class_sum = onehot.T @ z
    class_mean = class_sum[present] / counts[present, None]
    grand = z.mean(0)
    between = (counts[present, None] * (class_mean - grand) ** 2).sum(0)
    within = (z**2).sum(0) - (counts[present, None] * class_mean**2).sum(0)
    df_b, df_w = int(present.sum()) - 1, n - int(present.sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        f = (between / max(df_b, 1)) / np.maximum(within / max(df_w, 1), 1e-12)
    return f, df_b, df_w


def check_variance(
    data: TissueData, cfg: DiagnosticsConfig, figure: str | os.PathLike | None = None
) -> list[DiagnosticResult]:
    """Between/within-class variance ratio on the training split (no peeking at test)."""
    from scipy import stats

    train = data.index("train")
    mu, sd = impute_standardise_params(data.means[train])
    z = standardise(data.means[train], mu, sd)
    f, df_b, df_w = variance_ratio(z, data.y[train], len(data.classes))
    name = "between/within-class variance ratio"
    if df_w < 1:
        return [
            DiagnosticResult(
                name,
                WARN,
                "too few training samples per class to estimate within-class variance",
                blocking=False,
            )
        ]
    crit = float(stats.f.ppf(1 - cfg.variance_alpha, df_b, df_w))
    frac = float(np.mean(f > crit))
    med = float(np.median(f))
    top = np.argsort(-f)[:10]
    details = {
        "median_F": med,
        "critical_F": crit,
        "alpha": cfg.variance_alpha,
        "fraction_significant": frac,
        "df_between": df_b,
        "df_within": df_w,
        "n_regions": int(len(f)),
        "top_regions": {str(data.regions[i]): float(f[i]) for i in top},
    }
    if figure is not None:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(5.5, 3.2))
        ax.hist(np.log10(np.maximum(f, 1e-3)), bins=60, color="#4477aa")
        ax.axvline(np.log10(crit), color="#cc3311", ls="--", label=f"F crit (alpha={cfg.variance_alpha:g})")
        ax.set_xlabel("log10 F (between / within class, per region)")
        ax.set_ylabel("regions")
        ax.legend(frameon=False)
        _save_figure(fig, figure)
    fig_name = Path(figure).name if figure is not None else None
    # Under no association only alpha of regions pass by chance; require clearly more.
    if frac <= 2 * cfg.variance_alpha:
        # A class with one training sample (a misspelt label makes one) costs the test a
        # degree of freedom and adds no within-class spread: name it, as the likelier cause.
        n_per = np.bincount(data.y[train], minlength=len(data.classes))
        lone = [str(data.classes[c]) for c in np.flatnonzero(n_per == 1)]
        cause = (
            f"{len(lone)} class(es) with a single training sample ({lone[:5]}; a misspelt label?) "
            "or a shuffled or mismatched sample sheet?"
            if lone
            else "shuffled or mismatched sample sheet?"
        )
        return [
            DiagnosticResult(
                name,
                FAIL,
                f"only {frac:.2%} of regions separate the classes (F > {crit:.3g}, "
                f"expected {cfg.variance_alpha:.2%} by chance): the labels look unrelated to "
                f"the methylation data ({cause})",
                figure=fig_name,
                details=details,
            )
        ]
    # The sentence follows the figures: "a minority" only when fewer than half pass.
    carried = (
        "most regions differ between classes" if frac > 0.5 else "a minority of regions carry the labels"
    )
    return [
        DiagnosticResult(
            name,
            PASS,
            f"{frac:.1%} of {len(f)} regions separate the classes (F > {crit:.3g}, "
            f"{cfg.variance_alpha:.2%} expected by chance); median F {med:.2f}: {carried}",
            figure=fig_name,
            details=details,
        )
    ]


# ----------------------------------------------------------------------------------- leakage
def check_leakage(data: TissueData, fractions: list[float], seed: int) -> list[DiagnosticResult]:
    """Copies of one source sample must not straddle splits; report what a per-file split would leak."""
    by_split = {s: data.groups[data.split == s] for s in ("train", "val", "test")}
    result = group_leakage(
        by_split, name="augmentation leakage (splits by source sample)", what="source sample"
    )
    n_copies = len(data.groups) - len(np.unique(data.groups))
    naive = group_split(data.samples, fractions, seed=seed, stratify=data.labels)
    straddle = [g for g in np.unique(data.groups) if len(set(naive[data.groups == g])) > 1]
    result.details.update(
        {
            "n_files": len(data.groups),
            "n_source_samples": int(len(np.unique(data.groups))),
            "n_augmented_copies": n_copies,
            "per_file_split_straddling_sources": len(straddle),
        }
    )
    note = (
        f" A split by file instead would have put copies of {len(straddle)} source sample(s) in different "
        "splits, so the test set would contain re-sequenced copies of training samples."
        if straddle
        else ""
    )
    result.message += "." + note
    return [result]


# ---------------------------------------------------------------------------------- subtypes
def _cv_centroid_accuracy(z: np.ndarray, y: np.ndarray, groups: np.ndarray, seed: int) -> float:
    """Group-wise cross-validated nearest-centroid accuracy (up to 3 folds)."""
    from sklearn.model_selection import GroupKFold

    from genomelab.tissue.baselines import CentroidClassifier

    n_folds = min(3, len(np.unique(groups)))
    correct = 0
    for tr, te in GroupKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(z, y, groups):
        if len(np.unique(y[tr])) < 2:
            continue
        correct += int((CentroidClassifier().fit(z[tr], y[tr]).predict(z[te]) == y[te]).sum())
    return correct / len(y)


def check_subtypes(
    features_h5: str | os.PathLike,
    task: TaskConfig,
    cfg: DiagnosticsConfig,
    seed: int,
    figure: str | os.PathLike | None = None,
) -> list[DiagnosticResult]:
    """Are subtypes inside each broad tissue separable? Group-CV nearest centroid per tissue."""
    feats = read_features(features_h5)
    keep = select_task(feats, TaskConfig(label="tissue", subset=task.subset), str(features_h5))
    tissue, subtype, groups = feats["tissue"][keep], feats["subtype"][keep], feats["source_sample"][keep]
    mu, sd = impute_standardise_params(feats["means"][keep])
    z = standardise(feats["means"][keep], mu, sd)
    per_tissue: dict[str, dict[str, float]] = {}
    for t in np.unique(tissue):
        rows = (tissue == t) & (subtype != "")
        subs, y = np.unique(subtype[rows], return_inverse=True)
        n_groups = {s: len(np.unique(groups[rows][subtype[rows] == s])) for s in subs}
        if len(subs) < 2 or min(n_groups.values()) < 2:
            continue
        acc = _cv_centroid_accuracy(z[rows], y, groups[rows], seed)
        chance = float(np.bincount(y).max() / len(y))
        per_tissue[str(t)] = {
            "n_subtypes": len(subs),
            "accuracy": acc,
            "chance": chance,
            "informativeness": informativeness(acc, chance),
        }
    name = "subtype separability within tissues"
    blocking = task.label == "subtype"
    if not per_tissue:
        return [
            DiagnosticResult(
                name,
                WARN if blocking else SKIP,
                "skipped: no tissue has two subtypes with >= 2 source samples each, so nothing was tested",
                blocking=blocking,
            )
        ]
    if figure is not None:
        plt = _plt()
        names = list(per_tissue)
        fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(names) + 2), 3.2))
        ax.bar(
            names,
            [per_tissue[n]["accuracy"] for n in names],
            color="#4477aa",
            label="nearest centroid (group CV)",
        )
        ax.scatter(
            names,
            [per_tissue[n]["chance"] for n in names],
            color="#cc3311",
            marker="_",
            s=300,
            label="chance",
            zorder=3,
        )
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("subtype accuracy")
        ax.tick_params(axis="x", rotation=45)
        ax.legend(frameon=False, fontsize=8)
        _save_figure(fig, figure)
    weak = {t: v for t, v in per_tissue.items() if v["informativeness"] < cfg.subtype_min_informativeness}
    text = ", ".join(f"{t} {v['accuracy']:.0%} (chance {v['chance']:.0%})" for t, v in per_tissue.items())
    fig_name = Path(figure).name if figure is not None else None
    if weak:
        status = FAIL if blocking else WARN
        msg = f"subtypes of {sorted(weak)} are not separable by a nearest centroid ({text})" + (
            "; fine-grained classification of them will not work"
            if blocking
            else "; they form no distinct structure inside their tissue"
        )
        return [DiagnosticResult(name, status, msg, blocking=blocking, figure=fig_name, details=per_tissue)]
    return [
        DiagnosticResult(
            name,
            PASS,
            f"subtypes separable inside each tissue: {text}",
            blocking=blocking,
            figure=fig_name,
            details=per_tissue,
        )
    ]


# ------------------------------------------------------------------------------ learnability
def region_probe(data: TissueData, n_regions: int, seed: int) -> dict[str, float]:
    """Best-case region-level classifier: one region (identity and value) -> the file's label.

    Per region, a Gaussian class-conditional model of the standardised mean (class means,
    pooled within-class variance; linear discriminant analysis in one dimension) is fitted on
    the training split, and every covered (sample, region) pair of the validation split is
    classified from that region alone. This is the most a model that sees one region at a time
    can extract from region means, so its accuracy bounds the region-level paradigm.
    """
    rng = np.random.default_rng(seed)
    n_r = len(data.regions)
    cols = np.sort(rng.choice(n_r, size=min(n_regions, n_r), replace=False))
    train, val = data.index("train"), data.index("val")
    mu, sd = impute_standardise_params(data.means[train][:, cols])
    n_c = len(data.classes)
    zt = (data.means[train][:, cols] - mu) / sd
    obs_t = np.isfinite(zt)
    zt0 = np.where(obs_t, zt, 0.0)
    onehot = np.zeros((len(train), n_c))
    onehot[np.arange(len(train)), data.y[train]] = 1
    cnt = onehot.T @ obs_t  # [C, P] covered training samples
    class_mean = np.divide(onehot.T @ zt0, cnt, out=np.zeros_like(cnt, dtype=float), where=cnt > 0)
    resid = (zt0**2).sum(0) - (cnt * class_mean**2).sum(0)
    var = np.maximum(resid / np.maximum(obs_t.sum(0) - n_c, 1), 1e-3)  # [P]
    prior = np.log(np.maximum(np.bincount(data.y[train], minlength=n_c), 1) / len(train))
    zv = (data.means[val][:, cols] - mu) / sd  # [V, P]
    obs_v = np.isfinite(zv)
    # Classes never seen covered at a region get its overall mean (no evidence either way).
    class_mean = np.where(cnt > 0, class_mean, 0.0)
    loglik = -((np.where(obs_v, zv, 0.0)[:, :, None] - class_mean.T[None]) ** 2) / (2 * var[None, :, None])
    pred = (loglik + prior).argmax(-1)  # [V, P]
    truth = np.broadcast_to(data.y[val][:, None], pred.shape)
    acc = float((pred == truth)[obs_v].mean()) if obs_v.any() else float("nan")
    majority = int(np.argmax(np.bincount(data.y[train], minlength=n_c)))
    chance = float((truth == majority)[obs_v].mean()) if obs_v.any() else float("nan")
    # The best single region (among those covered in at least half of the validation samples):
    # how far the most informative region gets on its own.
    well_covered = obs_v.sum(0) >= max(1, obs_v.shape[0] // 2)
    hits = np.where(obs_v, pred == truth, 0).sum(0)
    best_region = (
        float((hits[well_covered] / obs_v.sum(0)[well_covered]).max()) if well_covered.any() else float("nan")
    )
    return {
        "accuracy": acc,
        "chance": chance,
        "n_examples": int(obs_v.sum()),
        "n_regions": int(len(cols)),
        "best_single_region_accuracy": best_region,
    }


def file_probe(data: TissueData, seed: int) -> dict[str, float]:
    """Logistic regression on whole samples (all region means), train -> validation."""
    from genomelab.tissue.baselines import fit_logreg

    train, val = data.index("train"), data.index("val")
    mu, sd = impute_standardise_params(data.means[train])
    x = standardise(data.means, mu, sd)
    model = fit_logreg(x[train], data.y[train], 0.1, 1000, seed)
    acc = float((model.predict(x[val]) == data.y[val]).mean())
    majority = int(np.argmax(np.bincount(data.y[train], minlength=len(data.classes))))
    return {"accuracy": acc, "chance": float((data.y[val] == majority).mean()), "n_examples": int(len(val))}


def check_learnability(
    data: TissueData,
    models: list[str],
    cfg: DiagnosticsConfig,
    seed: int,
    figure: str | os.PathLike | None = None,
) -> list[DiagnosticResult]:
    """Region-level vs file-level learnability; fail when a configured model is region-level and regions are uninformative.

    ``models``: the configured models, or only their region-level ones (the workflow passes
    those, so that adding a file-level model does not rerun this check): the verdict and
    the details depend on the region-level ones alone.
    """
    region = region_probe(data, cfg.probe_regions, seed)
    file = file_probe(data, seed)
    info_r = informativeness(region["accuracy"], region["chance"])
    info_f = informativeness(file["accuracy"], file["chance"])
    region_models = [m for m in models if m not in FILE_LEVEL]
    details = {
        "region_probe": region,
        "file_probe": file,
        "region_informativeness": info_r,
        "file_informativeness": info_f,
        "region_level_models": region_models,
        "n_classes": len(data.classes),
    }
    if figure is not None:
        plt = _plt()
        fig, ax = plt.subplots(figsize=(4.8, 3.2))
        names = ["one region\n(region-level)", "whole sample\n(file-level)"]
        ax.bar(names, [region["accuracy"], file["accuracy"]], color=["#cc3311", "#4477aa"])
        ax.scatter(
            names,
            [region["chance"], file["chance"]],
            marker="_",
            s=600,
            color="black",
            zorder=3,
            label="majority-class chance",
        )
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("validation accuracy of a quick probe")
        ax.legend(frameon=False, fontsize=8)
        _save_figure(fig, figure)
    fig_name = Path(figure).name if figure is not None else None
    name = "region-level vs file-level learnability"
    summary = (
        f"a probe that sees one region at a time reaches {region['accuracy']:.1%} (chance "
        f"{region['chance']:.1%}, best single region {region['best_single_region_accuracy']:.1%}); "
        f"a logistic regression on whole samples reaches {file['accuracy']:.1%} (chance {file['chance']:.1%})"
    )
    if info_f < cfg.file_informative_min:
        return [
            DiagnosticResult(
                name,
                FAIL,
                f"{summary}: even whole samples barely predict the labels, so no "
                "model granularity will learn them; check labels and data first",
                figure=fig_name,
                details=details,
            )
        ]
    mismatch = info_r < cfg.region_informative_max
    explanation = (
        "the labels belong to whole files, not to regions: a single region's values overlap "
        "between classes (few regions differ between classes, and each is measured with few "
        "reads or noisily), so one region carries little class information, while a sample's many "
        "regions together carry a lot. A region-level model given file labels sees near-identical "
        "inputs with different labels, its loss stays near ln(C) and its predictions collapse to "
        "the commonest classes"
    )
    if mismatch and region_models:
        return [
            DiagnosticResult(
                name,
                FAIL,
                f"granularity mismatch: {summary}. {explanation[0].upper()}"
                f"{explanation[1:]}. The configured model(s) {region_models} classify single "
                "regions: use the file-level models (tissue.models: [reads, masked], the default) or set "
                "diagnostics.strict: false to run the region-level ablation anyway",
                figure=fig_name,
                details=details,
            )
        ]
    if mismatch:
        return [
            DiagnosticResult(
                name,
                PASS,
                f"{summary}. Regions alone are not learnable but whole samples are: "
                f"{explanation}. No configured model is region-level: they classify whole "
                "samples, which is the right granularity",
                figure=fig_name,
                details=details,
            )
        ]
    return [
        DiagnosticResult(
            name,
            PASS,
            f"{summary}: single regions are informative here, so both granularities can learn",
            figure=fig_name,
            details=details,
        )
    ]


# ----------------------------------------------------------------------------------- overfit
def _tiny_subset(data: TissueData, n: int) -> np.ndarray:
    """Up to ``n`` training rows, round-robin over classes so that several classes appear."""
    train = data.index("train")
    by_class = [list(train[data.y[train] == c]) for c in range(len(data.classes))]
    picked: list[int] = []
    while len(picked) < min(n, len(train)):
        for rows in by_class:
            if rows and len(picked) < n:
                picked.append(rows.pop(0))
    return np.asarray(picked)


def tiny_model_and_batch(
    kind: str, model_cfg: dict[str, Any], data: TissueData, n: int, seed: int
) -> tuple[Any, tuple[Any, ...]]:
    """A fresh model ``kind`` (initialised from ``seed``) and the full batch of ``n`` training samples."""
    import torch

    from genomelab.tissue.models import CONFIGS, build_model  # torch: the overfit rule's env only
    from genomelab.tissue.training import file_examples, masked_kappa, region_examples

    torch.manual_seed(seed)
    rows = _tiny_subset(data, n)
    mu, sd = impute_standardise_params(data.means[data.index("train")])
    cfg = CONFIGS[kind].from_dict(model_cfg)
    kappa = masked_kappa(kind, cfg, data)
    model = build_model(
        kind, cfg, len(data.regions), len(data.classes), mu, sd, data.n_positions, kappa=kappa
    )
    # Memorising a fixed batch tests the wiring; sparse augmentation would change the batch.
    model.augment = False
    tiny = TissueData(
        **{**data.__dict__, "split": np.where(np.isin(np.arange(len(data.y)), rows), "train", "")}
    )
    if kind in FILE_LEVEL:
        ds = file_examples(tiny, "train")
    else:
        ds = region_examples(tiny, "train", 1, seed)
    return model, ds.tensors


def _overfit_report(model: Any, batch: tuple[Any, ...]) -> dict[str, float]:
    """Final ``loss`` (NLL) and ``accuracy`` on the memorised batch, its size and class count."""
    out = model.loss(batch)
    return {
        "loss": float(out.terms["nll"]),
        "accuracy": float(out.terms["accuracy"]),
        "n": len(batch[-1]),
        "n_classes": int(len(np.unique(batch[-1].numpy()))),
    }


def _closed_form_overfit(
    kind: str, model_cfg: dict[str, Any], data: TissueData, n: int, seed: int
) -> DiagnosticResult:
    """The closed-form model's wiring: fitted on ``n`` training samples (its settings chosen
    on them too), it must classify every one of them at full coverage."""
    import torch

    from genomelab.tissue.read_profiles import ReadsConfig, fit_read_profiles

    rows = _tiny_subset(data, n)
    # Only the classes the tiny set holds: each needs samples to have profiles.
    present, y = np.unique(data.y[rows], return_inverse=True)
    means = data.means[rows]
    model, _ = fit_read_profiles(means, y, means, y, len(present), ReadsConfig.from_dict(model_cfg), seed)
    coverage = np.where(np.isfinite(means), np.asarray(data.coverage[rows], np.float32), 0)
    pred = model(torch.as_tensor(means, dtype=torch.float32), torch.as_tensor(coverage, dtype=torch.float32))
    right = int((pred.argmax(1).numpy() == y).sum())
    name = f"overfit {n} samples: {MODEL_TITLES[kind]}"
    details = {"n": len(rows), "n_classes": len(present), "right": right}
    if right == len(rows):
        return DiagnosticResult(
            name,
            PASS,
            f"fitted on {len(rows)} training samples of {len(present)} classes, it classifies all of them",
            details=details,
        )
    return DiagnosticResult(
        name,
        FAIL,
        f"fitted on {len(rows)} training samples of {len(present)} classes, it classifies only {right} "
        "of them: its profiles or read counts are wired wrongly (or the samples are identical across "
        "classes)",
        details=details,
    )


def check_overfit(
    data: TissueData,
    models: list[str],
    model_cfgs: dict[str, dict[str, Any]],
    cfg: DiagnosticsConfig,
    seed: int,
) -> list[DiagnosticResult]:
    """Each configured model must memorise ``overfit_samples`` training examples."""
    from genomelab.train.overfit import overfit_check

    results = []
    for kind in models:
        if kind in CLOSED_FORM:
            results.append(
                _closed_form_overfit(kind, model_cfgs.get(kind, {}), data, cfg.overfit_samples, seed)
            )
            continue
        model, batch = tiny_model_and_batch(kind, model_cfgs.get(kind, {}), data, cfg.overfit_samples, seed)
        result = overfit_check(
            model,
            batch,
            cfg.overfit_samples,
            steps=cfg.overfit_steps,
            lr=OVERFIT_LR,
            report=_overfit_report,
            max_final_loss=0.5,
            min_accuracy=1.0,
            name=f"overfit {cfg.overfit_samples} samples: {MODEL_TITLES[kind]}",
        )
        results.append(result)
    return results


def run_check(
    check: str,
    features_h5: str | os.PathLike,
    splits: str | os.PathLike | None,
    task: TaskConfig,
    cfg: DiagnosticsConfig,
    models: list[str],
    model_configs: dict[str, Any] | None,
    seed: int,
    out_json: str | os.PathLike,
    figure: str | os.PathLike | None = None,
) -> list[DiagnosticResult]:
    """Run the check named ``check`` (one of :data:`CHECKS`) and write its results.

    ``figure``, when given, is always written (a placeholder naming the outcome when the
    check draws none); ``model_configs`` is needed by the overfit check only.
    """
    figure = Path(figure) if figure is not None else None
    if check == "labels":
        results = check_labels(features_h5, task, cfg)
    elif check == "subtypes":
        results = check_subtypes(features_h5, task, cfg, seed, figure)
    else:
        if splits is None:
            raise ValueError(f"the tissue {check!r} check needs the splits table as input")
        data = load_task(features_h5, splits)
        if check == "variance":
            results = check_variance(data, cfg, figure)
        elif check == "leakage":
            results = check_leakage(data, task.fractions, seed)
        elif check == "learnability":
            results = check_learnability(data, models, cfg, seed, figure)
        elif check == "overfit":
            results = check_overfit(data, models, model_configs, cfg, seed)
        else:
            raise ValueError(f"unknown tissue diagnostic {check!r}; known: {CHECKS}")
    if figure is not None and not figure.exists():
        placeholder_figure(results[0].message if results else check, figure)
    write_results(out_json, "tissue", results)
    return results
