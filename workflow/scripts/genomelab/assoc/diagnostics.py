"""Checks of the assoc inputs before training: splits, leakage, class coverage, features,
the untrained network's loss against a prior-only predictor, and a tiny overfit."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genomelab.assoc.data import (
    DIRECTIONS,
    MASKED,
    SCHEMES,
    SPLIT_NAMES,
    Links,
    SplitLabels,
    all_labels,
    load_data,
)
from genomelab.assoc.features import load_features
from genomelab.diagnostics import FAIL, PASS, WARN, DiagnosticResult, write_results
from genomelab.diagnostics.checks import group_leakage, initial_loss_vs_chance
from genomelab.io.atomic import atomic_output

logger = logging.getLogger(__name__)


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


def diagnose(
    data_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    model_section: dict[str, Any],
    options: dict[str, Any],
    seed: int,
    out_json: str | os.PathLike,
    figure: str | os.PathLike | None = None,
) -> list[DiagnosticResult]:
    """:func:`run_diagnostics`, written to ``out_json``."""
    results = run_diagnostics(data_dir, features_path, model_section, options, seed, figure)
    write_results(out_json, "assoc", results)
    return results
