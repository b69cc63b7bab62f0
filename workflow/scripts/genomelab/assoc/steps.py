"""Snakemake steps of the assoc module: each unpacks ``smk`` and calls one typed function.

Chain: data (validate, split) -> features (text/sequence encoders) -> diagnostics -> gate ->
baselines (per scheme) -> train (per scheme and grid point) -> select (best run per scheme
on validation) -> summary; infer ranks candidates for new entities with a selected model.
Logic modules are imported inside the steps, so CPU rules never import torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genomelab.config import param
from genomelab.entry import limit_threads


def data_step(smk: Any) -> None:
    from genomelab.assoc.data import prepare_data

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
        data["splits"] or None,
        data["confidence_words"],
        data["exclude_known"] or None,
        int(param(smk, "folds")),
    )


def features_step(smk: Any) -> None:
    from genomelab.assoc.features import FeatureConfig, build_features

    build_features(
        Path(smk.input.links).parent,
        smk.output.features,
        smk.output.featurizer,
        FeatureConfig.from_dict(param(smk, "features")),
        int(param(smk, "seed")),
    )


def diagnostics_step(smk: Any) -> None:
    from genomelab.assoc.diagnostics import diagnose

    # torch came with the import above: exactly the rule's threads for it too.
    limit_threads(int(smk.threads))
    diagnose(
        Path(smk.input.links).parent,
        smk.input.features,
        param(smk, "model"),
        param(smk, "options"),
        int(param(smk, "seed")),
        smk.output.json,
        smk.output.figure,
    )


def baselines_step(smk: Any) -> None:
    from genomelab.assoc.baselines import write_baselines

    b = param(smk, "baselines")
    write_baselines(
        Path(smk.input.links).parent,
        smk.input.features,
        smk.wildcards.scheme,
        int(b["knn_k"]),
        float(b["ridge_alpha"]),
        smk.output[0],
        smk.input.splits,
    )


def train_step(smk: Any) -> None:
    from genomelab.assoc.training import train_run
    from genomelab.train.run import train_param

    # torch came with the import above: exactly the rule's threads for it too.
    limit_threads(int(smk.threads))
    wc = smk.wildcards
    train_run(
        Path(smk.input.links).parent,
        smk.input.features,
        wc.scheme,
        param(smk, "model"),
        # The run's seed drives batch order and dropout, as in every other module.
        {**train_param(smk, "assoc", param(smk, "train")), "seed": int(smk.params.seed)},
        {
            "lr": float(wc.lr),
            "batch_size": int(wc.bs),
            "dropout": float(wc.dropout),
            "bridge_dim": int(wc.bd),
        },
        Path(smk.output.report).parent,
        smk.params.state_dir,
        smk.params.device,
        bool(smk.params.quick_test),
        smk.input.splits,
    )


def select_step(smk: Any) -> None:
    from genomelab.assoc.grid import select_model

    s = param(smk, "selection")
    select_model(
        list(smk.input.reports),
        s["metric"],
        s["mode"],
        smk.wildcards.scheme,
        smk.output.model,
        smk.output.json,
    )


def summary_step(smk: Any) -> None:
    from genomelab.assoc.summary import write_summary

    # Scheme-major lists: each scheme's folds in order (one file each without folds).
    n_folds = {s: int(k) for s, k in param(smk, "scheme_folds")}
    grids, baselines = list(smk.input.grids), list(smk.input.baselines)
    if len(grids) != sum(n_folds.values()) or len(baselines) != len(grids):
        raise ValueError(
            f"assoc summary: {len(grids)} grids and {len(baselines)} baselines for folds {n_folds}"
        )
    by_scheme: dict[str, tuple[list, list]] = {}
    start = 0
    for scheme, k in n_folds.items():
        by_scheme[scheme] = (grids[start : start + k], baselines[start : start + k])
        start += k
    write_summary(
        {s: g if len(g) > 1 else g[0] for s, (g, _) in by_scheme.items()},
        {s: b if len(b) > 1 else b[0] for s, (_, b) in by_scheme.items()},
        smk.input.diagnostics,
        smk.output.json,
        smk.output.md,
        smk.output.plot,
    )


def infer_step(smk: Any) -> None:
    from genomelab.assoc.infer import predict_new_entities

    # torch came with the import above: exactly the rule's threads for it too.
    limit_threads(int(smk.threads))
    p = param(smk, "infer")
    predict_new_entities(
        # One file (a str) exactly as before; a list (every fold's model of the cross-validated
        # links scheme): ranked by the mean of their link probabilities.
        smk.input.model if isinstance(smk.input.model, str) else list(smk.input.model),
        smk.input.featurizer,
        smk.input.queries,
        p["side"],
        int(p["top_k"]),
        smk.output[0],
        known_links=smk.input.links,
        device=smk.params.device,
    )
