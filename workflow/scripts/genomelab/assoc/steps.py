"""Snakemake steps of the assoc module: each unpacks ``smk`` and calls a typed function.

Chain: data (validate, split) -> features (text/sequence encoders) -> diagnostics -> gate ->
baselines (per scheme) -> train (per scheme and grid point) -> select (best run per scheme
on validation) -> summary; infer ranks candidates for new entities with a selected model.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genomelab.assoc import baselines as bl
from genomelab.assoc.data import (
    DIRECTIONS,
    MASKED,
    SCHEMES,
    EntityTable,
    Links,
    SplitAssignment,
    SplitLabels,
    assign_splits,
    read_entities,
    read_links,
    split_labels,
)
from genomelab.assoc.features import FeatureConfig, Featurizer, load_features, save_features, save_featurizer
from genomelab.assoc.metrics import evaluate
from genomelab.config import param
from genomelab.diagnostics import FAIL, PASS, WARN, DiagnosticResult, write_results
from genomelab.diagnostics.checks import group_leakage, initial_loss_vs_chance
from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.metrics import read_json_file
from genomelab.io.tables import LINK_COLUMNS, write_link_table
from genomelab.report import Comparison, ModuleSummary, write_module_summary

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "val", "test")


# ----------------------------------------------------------------------------- data
def run_name(lr: float, batch_size: int, dropout: float, bridge_dim: int) -> str:
    """Name of one grid point, also its Snakemake wildcard values (``{lr:g}`` etc.)."""
    return f"lr{lr:g}_bs{int(batch_size)}_do{dropout:g}_bd{int(bridge_dim)}"


def grid_runs(grid: dict[str, list]) -> list[str]:
    """All run names of the hyper-parameter grid (lr x batch_size x dropout x bridge_dim)."""
    for key in ("lr", "batch_size", "dropout", "bridge_dim"):
        if not grid.get(key):
            raise ValueError(f"assoc.grid.{key} must list at least one value")
    return [
        run_name(lr, bs, do, bd)
        for lr in grid["lr"]
        for bs in grid["batch_size"]
        for do in grid["dropout"]
        for bd in grid["bridge_dim"]
    ]


def prepare_data(
    links_path: str | os.PathLike,
    sources_path: str | os.PathLike,
    targets_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    min_quality: float | None = None,
    allow_unlinked: bool = False,
) -> dict[str, Any]:
    """Validate the inputs and write normalised tables plus the split assignment.

    Writes ``sources.tsv``, ``targets.tsv`` (copies), ``links.tsv`` (one row per link and
    direction, with both schemes' split names), ``splits.npz``, ``heldout_{sources,targets}.tsv``
    (test-split entities of the entities scheme: new entities for the inference demo) and
    ``data.json`` (counts).
    """
    out = Path(out_dir)
    sources, targets = read_entities(sources_path, "source"), read_entities(targets_path, "target")
    links = read_links(links_path, sources, targets, min_quality, allow_unlinked)
    assignment = assign_splits(links, len(sources), len(targets), tuple(fractions), seed)
    for side, path in (("sources", sources_path), ("targets", targets_path)):
        with atomic_output(out / f"{side}.tsv") as tmp:
            shutil.copyfile(path, tmp)
    names = {"s2t": "source->target", "t2s": "target->source"}
    rows = (
        [
            sources.ids[links.source[i]],
            targets.ids[links.target[i]],
            names[links.direction[i]],
            f"{links.confidence[i]:g}",
            links.category[i],
            assignment.links["links"][i],
            assignment.links["entities"][i],
        ]
        for i in range(len(links))
    )
    write_link_table(rows, out / "links.tsv", (*LINK_COLUMNS, "category", "split_links", "split_entities"))
    with atomic_output(out / "splits.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            links_links=assignment.links["links"],
            links_entities=assignment.links["entities"],
            sources=assignment.sources,
            targets=assignment.targets,
        )
    for name, table, path, split in (
        ("sources", sources, sources_path, assignment.sources),
        ("targets", targets, targets_path, assignment.targets),
    ):
        held = [table.ids[i] for i in np.flatnonzero(split == "test")]
        _write_entity_subset(path, out / f"heldout_{name}.tsv", held)
    counts: dict[str, Any] = {"n_sources": len(sources), "n_targets": len(targets), "n_links": len(links)}
    for scheme in SCHEMES:
        counts[f"{scheme}_links_per_split"] = {
            s: int((assignment.links[scheme] == s).sum()) for s in SPLIT_NAMES
        }
    counts["categories"] = {c: int((links.category == c).sum()) for c in np.unique(links.category)}
    atomic_write_json(out / "data.json", counts)
    logger.info("data: %s", counts)
    return counts


def _write_entity_subset(path: str | os.PathLike, out: Path, ids: list[str]) -> None:
    import pandas as pd

    df = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    keep = df[df["id"].isin(set(ids))]
    with atomic_output(out) as tmp:
        keep.to_csv(tmp, sep="\t", index=False)


def load_data(data_dir: str | os.PathLike) -> tuple[EntityTable, EntityTable, Links, SplitAssignment]:
    """Read the data step's outputs back (re-validated) with their split assignment."""
    d = Path(data_dir)
    sources, targets = read_entities(d / "sources.tsv", "source"), read_entities(d / "targets.tsv", "target")
    links = read_links(d / "links.tsv", sources, targets, allow_unlinked=True)
    with np.load(d / "splits.npz", allow_pickle=False) as z:
        assignment = SplitAssignment(
            {"links": z["links_links"], "entities": z["links_entities"]}, z["sources"], z["targets"]
        )
    if len(assignment.links["links"]) != len(links):
        raise ValueError(
            f"{d / 'splits.npz'} has {len(assignment.links['links'])} link splits but "
            f"{d / 'links.tsv'} has {len(links)} links: rerun the data step"
        )
    return sources, targets, links, assignment


def all_labels(
    links: Links, assignment: SplitAssignment, scheme: str, n_s: int, n_t: int
) -> dict[str, SplitLabels]:
    return {s: split_labels(links, assignment, scheme, s, n_s, n_t) for s in SPLIT_NAMES}


def data_step(smk: Any) -> None:
    data = param(smk, "data")
    prepare_data(
        smk.input.links,
        smk.input.sources,
        smk.input.targets,
        Path(smk.output.links).parent,
        int(param(smk, "seed")),
        tuple(data["split_fractions"]),
        data["min_quality"],
        data["allow_unlinked"],
    )


# ------------------------------------------------------------------------- features
def build_features(
    data_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    featurizer_path: str | os.PathLike,
    config: FeatureConfig,
    seed: int,
) -> dict[str, Any]:
    """Fit the featuriser on both vocabularies and write the entity feature arrays."""
    d = Path(data_dir)
    sources, targets = read_entities(d / "sources.tsv", "source"), read_entities(d / "targets.tsv", "target")
    featurizer = Featurizer(config).fit(sources, targets, seed)
    arrays = {"source": featurizer.transform(sources), "target": featurizer.transform(targets)}
    save_features(features_path, arrays)
    save_featurizer(featurizer, featurizer_path)
    shapes = {side: {k: list(v.shape) for k, v in a.items()} for side, a in arrays.items()}
    logger.info("features: %s", shapes)
    return shapes


def features_step(smk: Any) -> None:
    build_features(
        Path(smk.input.links).parent,
        smk.output.features,
        smk.output.featurizer,
        FeatureConfig.from_dict(param(smk, "features")),
        int(param(smk, "seed")),
    )


# ---------------------------------------------------------------------- diagnostics
def run_diagnostics(
    data_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    model_section: dict[str, Any],
    options: dict[str, Any],
    seed: int,
    figure: str | os.PathLike | None = None,
) -> list[DiagnosticResult]:
    """Checks before training: splits, leakage, coverage, features, initial loss, tiny overfit."""
    from genomelab.assoc.training import build_dataset, build_model

    sources, targets, links, assignment = load_data(data_dir)
    feats = load_features(features_path)
    n_s, n_t = len(sources), len(targets)
    results: list[DiagnosticResult] = []
    for side, table in (("source", sources), ("target", targets)):
        if feats[side]["ids"].tolist() != table.ids:
            results.append(
                DiagnosticResult(
                    f"feature_ids[{side}]",
                    FAIL,
                    f"{side} feature rows do not match the entity table order: rerun the features step",
                )
            )
    finite = all(np.isfinite(feats[s][k]).all() for s in feats for k in ("text", "numeric"))
    results.append(
        DiagnosticResult(
            "features_finite",
            PASS if finite else FAIL,
            "all entity features are finite" if finite else "entity features contain NaN/inf",
        )
    )
    labels = {scheme: all_labels(links, assignment, scheme, n_s, n_t) for scheme in SCHEMES}
    empty = [
        f"{scheme}/{s}/{d}"
        for scheme in SCHEMES
        for s in SPLIT_NAMES
        for d in DIRECTIONS
        if len(labels[scheme][s].queries[d]) == 0
    ]
    results.append(
        DiagnosticResult(
            "splits_nonempty",
            FAIL if empty else PASS,
            f"no queries in {empty}: too few links for the split fractions"
            if empty
            else "every scheme, split and direction has queries",
            details={
                f"{scheme}/{s}/{d}": int(len(labels[scheme][s].queries[d]))
                for scheme in SCHEMES
                for s in SPLIT_NAMES
                for d in DIRECTIONS
            },
        )
    )
    pair = np.char.add(np.char.add(links.source.astype(str), ":"), links.target.astype(str))
    results.append(
        group_leakage(
            {s: pair[assignment.links["links"] == s] for s in SPLIT_NAMES},
            name="leakage[links]",
            what="(source, target) pair",
        )
    )
    groups = {
        s: [
            f"{side}:{q}"
            for d, side in (("s2t", "source"), ("t2s", "target"))
            for q in labels["entities"][s].queries[d]
        ]
        for s in SPLIT_NAMES
    }
    results.append(group_leakage(groups, name="leakage[entities]", what="query entity"))
    min_cov = float(options["min_class_coverage"])
    for scheme in SCHEMES:
        train = labels[scheme]["train"]
        for d in DIRECTIONS:
            rows = train.dense_rows(d, train.queries[d])
            cov = float(((rows > 0).any(axis=0)).mean()) if len(rows) else 0.0
            status = PASS if cov >= min_cov else WARN
            results.append(
                DiagnosticResult(
                    f"class_coverage[{scheme}/{d}]",
                    status,
                    f"{cov:.0%} of {d} candidates have a training link "
                    f"(threshold {min_cov:.0%}); the rest can only be ranked "
                    "from their features",
                    blocking=False,
                    details={"coverage": cov},
                )
            )
    # Initial loss of an untrained network vs a prior-only predictor, on the links scheme.
    torch.manual_seed(seed)
    train = labels["links"]["train"]
    model = build_model(model_section, feats, train)
    n_cand = {"s2t": n_t, "t2s": n_s}
    ds = build_dataset(train, n_cand)
    model.eval()
    with torch.no_grad():
        initial = float(model.loss(ds.tensors).loss)
        chance = _prior_loss(model, ds.tensors)
    results.append(
        initial_loss_vs_chance(initial, chance, max_ratio=float(options["max_initial_loss_ratio"]))
    )
    results.append(_overfit(model_section, feats, train, n_cand, options, seed))
    if figure is not None:
        _degree_figure(links, figure)
        for r in results:
            if r.name == "splits_nonempty":
                r.figure = Path(figure).name
    return results


def _prior_loss(model, tensors) -> float:
    """The loss of predicting each direction's label prior for every candidate."""
    from genomelab.assoc.model import DIRECTION_INDEX, weighted_bce

    direction, _, labels = tensors
    total, wsum = 0.0, 0.0
    cfg = model.config
    for name, idx in DIRECTION_INDEX.items():
        sel = direction == idx
        if not bool(sel.any()):
            continue
        prior = cfg.prior_s2t if name == "s2t" else cfg.prior_t2s
        lab = labels[sel]
        logits = torch.full_like(lab, float(np.log(prior / (1 - prior))))
        w = cfg.s2t_weight if name == "s2t" else cfg.t2s_weight
        total += w * float(weighted_bce(logits, lab, cfg.pos_weight))
        wsum += w
    return total / wsum


def _overfit(model_section, feats, train: SplitLabels, n_cand, options, seed) -> DiagnosticResult:
    """Memorise a few training queries; a wiring bug (detached graph, wrong labels) fails it."""
    from genomelab.assoc.training import build_dataset, build_model
    from genomelab.train.overfit import overfit_check

    n_q = int(options["overfit_queries"])
    ds = build_dataset(train, n_cand)
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds), generator=gen)[:n_q]
    sub_feats, batch = _subset_targets(feats, tuple(t[idx] for t in ds.tensors), n_cand, seed)
    torch.manual_seed(seed)
    model = build_model({**model_section, "dropout": 0.0}, sub_feats, train)
    model.eval()
    with torch.no_grad():
        first = float(model.loss(batch).loss)

    def report(model, batch) -> dict[str, float]:
        return {
            "loss": float(model.loss(batch).loss),
            "initial_loss": first,
            "accuracy": _top1_hits(model, batch),
        }

    # Both: the loss must fall well below its start, and the top-ranked candidate must be a
    # true link for most memorised queries (chance is a few in hundreds).
    return overfit_check(
        model,
        batch,
        n_q,
        steps=int(options["overfit_steps"]),
        lr=float(options["overfit_lr"]),
        report=report,
        max_final_loss=float(options["overfit_max_loss_ratio"]) * first,
        min_accuracy=float(options["overfit_min_accuracy"]),
    )


def _top1_hits(model, batch) -> float:
    """Fraction of queries in ``batch`` whose top-ranked (unmasked) candidate is a true link."""
    hits = []
    for name, d_idx in (("s2t", 0), ("t2s", 1)):
        sel = batch[0] == d_idx
        if bool(sel.any()):
            logits = model(name, batch[1][sel])
            lab = batch[2][sel, : logits.shape[1]]
            top = logits.masked_fill(lab == MASKED, -torch.inf).argmax(dim=1)
            hits.append((lab.gather(1, top[:, None]) > 0).float().squeeze(1))
    return float(torch.cat(hits).mean()) if hits else 0.0


def _subset_targets(feats, batch, n_cand, seed: int, n_extra: int = 200):
    """Shrink the target vocabulary to what a few examples need plus ``n_extra`` negatives.

    Every training step encodes the whole candidate vocabulary; for a memorisation check
    a few hundred targets show the same wiring at a fraction of the cost.
    Returns (features with the target subset, batch with remapped indices and columns).
    """
    direction, query, labels = batch
    n_t = n_cand["s2t"]
    s2t, t2s = direction == 0, direction == 1
    need = set(query[t2s].tolist())
    need |= set(torch.nonzero(labels[s2t, :n_t] != 0)[:, 1].tolist())
    rng = np.random.default_rng(seed)
    others = np.setdiff1d(np.arange(n_t), np.fromiter(need, np.int64, len(need)))
    extra = rng.choice(others, size=min(n_extra, len(others)), replace=False)
    keep = np.sort(np.concatenate([np.fromiter(need, np.int64, len(need)), extra]))
    remap = torch.full((n_t,), -1, dtype=torch.long)
    remap[torch.as_tensor(keep)] = torch.arange(len(keep))
    width = max(len(keep), n_cand["t2s"])
    new_labels = torch.full((len(query), width), MASKED)
    new_labels[s2t, : len(keep)] = labels[s2t][:, torch.as_tensor(keep)]
    new_labels[t2s, : n_cand["t2s"]] = labels[t2s, : n_cand["t2s"]]
    new_query = torch.where(t2s, remap[query.clamp_max(n_t - 1)], query)
    sub = {"source": feats["source"], "target": {k: v[keep] for k, v in feats["target"].items()}}
    return sub, (direction, new_query, new_labels)


def _degree_figure(links: Links, path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for ax, (name, idx) in zip(
        axes,
        (
            ("source", links.source[links.direction == "s2t"]),
            ("target", links.target[links.direction == "s2t"]),
        ),
        strict=True,
    ):
        counts = np.bincount(idx)
        counts = counts[counts > 0]
        ax.hist(
            counts, bins=np.unique(np.geomspace(1, max(counts.max(), 2), 30).astype(int)), color="#4477aa"
        )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"links per {name}")
        ax.set_ylabel("entities")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def diagnostics_step(smk: Any) -> None:
    torch.set_num_threads(max(1, int(smk.threads)))
    results = run_diagnostics(
        Path(smk.input.links).parent,
        smk.input.features,
        param(smk, "model"),
        param(smk, "options"),
        int(param(smk, "seed")),
        smk.output.figure,
    )
    write_results(smk.output.json, "assoc", results)


# ------------------------------------------------------------------------ baselines
def run_baselines(
    data_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    scheme: str,
    knn_k: int = 10,
    ridge_alpha: float = 1.0,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of popularity, kNN and ridge on the val and test splits of ``scheme``."""
    sources, targets, links, assignment = load_data(data_dir)
    feats = load_features(features_path)
    vectors = {side: bl.entity_vectors(feats[side]) for side in ("source", "target")}
    labels = all_labels(links, assignment, scheme, len(sources), len(targets))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for model in (
        bl.PopularityBaseline(),
        bl.KnnBaseline(vectors, knn_k),
        bl.RidgeBaseline(vectors, ridge_alpha),
    ):
        model.fit(labels["train"])
        out[model.name] = {
            s: evaluate(model, labels[s], links, assignment.links[scheme]) for s in ("val", "test")
        }
        logger.info("%s on %s: test mrr_mean %.4f", model.name, scheme, out[model.name]["test"]["mrr_mean"])
    return out


def baselines_step(smk: Any) -> None:
    b = param(smk, "baselines")
    atomic_write_json(
        smk.output[0],
        run_baselines(
            Path(smk.input.links).parent,
            smk.input.features,
            smk.wildcards.scheme,
            int(b["knn_k"]),
            float(b["ridge_alpha"]),
        ),
    )


# ------------------------------------------------------------------------- training
def train_run(
    data_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    scheme: str,
    model_section: dict[str, Any],
    train_section: dict[str, Any],
    grid_point: dict[str, Any],
    out_dir: str | os.PathLike,
    state_dir: str | os.PathLike,
    device: str = "auto",
    quick_test: bool = False,
) -> dict[str, Any]:
    """Train one grid point on one scheme; write model.pt, metrics.json, training_report.json."""
    from genomelab.assoc import training as T
    from genomelab.train.device import resolve_device
    from genomelab.train.export import data_fingerprint

    out = Path(out_dir)
    sources, targets, links, assignment = load_data(data_dir)
    feats = load_features(features_path)
    labels = all_labels(links, assignment, scheme, len(sources), len(targets))
    model_cfg = {
        **model_section,
        "dropout": float(grid_point["dropout"]),
        "bridge_dim": int(grid_point["bridge_dim"]),
    }
    train_cfg = T.effective_train_config(
        {**train_section, "lr": float(grid_point["lr"]), "batch_size": int(grid_point["batch_size"])},
        quick_test,
    )
    config = T.model_config(model_cfg, feats, labels["train"]).to_dict()
    dev = resolve_device(device)

    def make_report(model: torch.nn.Module, result: dict[str, Any]) -> dict[str, Any]:
        return {
            "module": "assoc",
            "scheme": scheme,
            "run": run_name(**grid_point),
            "quick_test": quick_test,
            "device": str(dev),
            "hyperparameters": {**grid_point, **result.pop("train_config")},
            "model_config": config,
            "n_parameters": int(sum(p.numel() for p in model.parameters())),
            **result,
        }

    # The state folder is keyed by the inputs' content and the configuration: changed data
    # or settings start a fresh run instead of resuming (or reusing) a stale last.pt.
    return T.train_model(
        lambda: T.build_model(model_cfg, feats, labels["train"]),
        config,
        train_cfg,
        labels,
        links,
        assignment.links[scheme],
        {"sources": sources.ids, "targets": targets.ids},
        data_fingerprint(Path(features_path), Path(data_dir) / "splits.npz", Path(data_dir) / "links.tsv"),
        out,
        state_dir,
        dev,
        {"scheme": scheme, "quick_test": quick_test},
        make_report,
    )


def train_step(smk: Any) -> None:
    torch.set_num_threads(max(1, int(smk.threads)))
    wc = smk.wildcards
    point = {
        "lr": float(wc.lr),
        "batch_size": int(wc.bs),
        "dropout": float(wc.dropout),
        "bridge_dim": int(wc.bd),
    }
    train_run(
        Path(smk.input.links).parent,
        smk.input.features,
        wc.scheme,
        param(smk, "model"),
        # The run's seed drives batch order and dropout, as in every other module.
        {**param(smk, "train"), "seed": int(smk.params.seed)},
        point,
        Path(smk.output.report).parent,
        smk.params.state_dir,
        smk.params.device,
        bool(smk.params.quick_test),
    )


# --------------------------------------------------------------------------- select
def select_best(
    reports: list[str | os.PathLike], metric: str = "val/mrr_mean", mode: str = "max"
) -> dict[str, Any]:
    """Pick the run with the best validation ``metric`` among training reports."""
    if mode not in ("min", "max"):
        raise ValueError(f"selection mode must be 'min' or 'max', not {mode!r}")
    runs = []
    for path in reports:
        rep = read_json_file(path, "training report")
        value = rep["val"].get(metric) if metric != "val/loss" else rep["best_val_loss"]
        if value is None:
            raise ValueError(f"{path} has no validation metric {metric!r} (has {sorted(rep['val'])})")
        runs.append(
            {
                "run": rep["run"],
                "report": str(path),
                "value": float(value),
                "hyperparameters": rep["hyperparameters"],
                "val": rep["val"],
                "test": rep["test"],
                "best_epoch": rep["best_epoch"],
                "epochs_run": rep["epochs_run"],
            }
        )
    if not runs:
        raise ValueError("no training reports to select from")
    sign = 1 if mode == "max" else -1
    finite = [r for r in runs if np.isfinite(r["value"])]
    if not finite:
        raise ValueError(f"every run has a non-finite {metric}")
    best = max(finite, key=lambda r: sign * r["value"])
    return {"metric": metric, "mode": mode, "best_run": best["run"], "best": best, "runs": runs}


def select_step(smk: Any) -> None:
    s = param(smk, "selection")
    result = select_best(list(smk.input.reports), s["metric"], s["mode"])
    best_model = Path(result["best"]["report"]).parent / "model.pt"
    with atomic_output(smk.output.model) as tmp:
        shutil.copyfile(best_model, tmp)
    atomic_write_json(smk.output.json, result)
    logger.info(
        "best %s run: %s (%s %.4f)",
        smk.wildcards.scheme,
        result["best_run"],
        result["metric"],
        result["best"]["value"],
    )


# -------------------------------------------------------------------------- summary
SUMMARY_METRICS = (
    "s2t_acc@1",
    "s2t_acc@5",
    "s2t_acc@10",
    "s2t_mrr",
    "t2s_acc@1",
    "t2s_acc@5",
    "t2s_acc@10",
    "t2s_mrr",
    "mrr_mean",
    "consistency@10",
)
SCHEME_TITLES = {"links": "held-out links (entities seen)", "entities": "held-out entities (unseen)"}


def build_summary(
    grids: dict[str, str | os.PathLike],
    baselines: dict[str, str | os.PathLike],
    diagnostics: str | os.PathLike,
    plot: str | os.PathLike | None,
    results_dir: str | os.PathLike,
) -> ModuleSummary:
    comps = []
    for scheme, grid_path in grids.items():
        grid = read_json_file(grid_path, "grid selection")
        base = read_json_file(baselines[scheme], "baselines metrics file")
        net = {m: grid["best"]["test"].get(f"test/{m}") for m in SUMMARY_METRICS}
        rows = {f"network ({grid['best_run']})": net}
        kinds = {f"network ({grid['best_run']})": "model"}
        for name, res in base.items():
            rows[name] = {m: res["test"].get(m) for m in SUMMARY_METRICS}
            kinds[name] = "baseline"
        comps.append(
            Comparison(f"Ranking, {SCHEME_TITLES.get(scheme, scheme)}", "test", "mrr_mean", True, rows, kinds)
        )
    from genomelab.diagnostics import read_results

    diags = [{"name": r.name, "status": r.status, "message": r.message} for r in read_results(diagnostics)]
    notes = [
        "Acc@K = share of queries whose best-ranked held-out positive is in the top K (filtered ranking); "
        "MRR = mean reciprocal rank of that positive; consistency@10 = share of held-out links ranked in the "
        "top 10 from both ends.",
        "The network row is the grid point with the best validation mrr_mean; all numbers are on the test split.",
    ]
    for scheme, grid_path in grids.items():
        grid = read_json_file(grid_path, "grid selection")
        runs = ", ".join(f"{r['run']} {r['value']:.4f}" for r in grid["runs"])
        notes.append(f"Grid ({scheme} scheme, {grid['metric']}): {runs}; best {grid['best_run']}.")
    plots = [str(Path(plot).relative_to(results_dir))] if plot else []
    return ModuleSummary("assoc", "assoc: bidirectional association model", comps, diags, plots, notes)


def _summary_plot(comps: list[Comparison], path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(comps), figsize=(5 * len(comps), 3.2), squeeze=False)
    for ax, comp in zip(axes[0], comps, strict=True):
        names = list(comp.rows)
        x = np.arange(len(names))
        for k, (metric, color) in enumerate((("s2t_mrr", "#4477aa"), ("t2s_mrr", "#ee6677"))):
            vals = [comp.rows[n].get(metric) or 0.0 for n in names]
            ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=metric, color=color)
        ax.set_xticks(x, [n.split(" (")[0] for n in names], rotation=20)
        ax.set_title(comp.title, fontsize=9)
        ax.set_ylabel("test MRR")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def summary_step(smk: Any) -> None:
    schemes = list(param(smk, "schemes"))
    grids = dict(zip(schemes, smk.input.grids, strict=True))
    bases = dict(zip(schemes, smk.input.baselines, strict=True))
    results_dir = Path(smk.output.json).parent
    summary = build_summary(grids, bases, smk.input.diagnostics, smk.output.plot, results_dir)
    _summary_plot(summary.comparisons, smk.output.plot)
    write_module_summary(summary, smk.output.json, smk.output.md)


# ---------------------------------------------------------------------------- infer
def infer_step(smk: Any) -> None:
    from genomelab.assoc.infer import rank_new_entities, write_predictions

    torch.set_num_threads(max(1, int(smk.threads)))
    p = param(smk, "infer")
    table = rank_new_entities(
        smk.input.model, smk.input.featurizer, smk.input.queries, p["side"], int(p["top_k"])
    )
    write_predictions(table, smk.output[0], known_links=smk.input.links)
