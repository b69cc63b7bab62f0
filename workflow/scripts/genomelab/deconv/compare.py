"""The deconv_compare and deconv_evaluate steps: NNLS vs plain vs two-stage network on the same
test mixtures (the phase's own, or an independent set), with paired tests per mixture.

Paired tests (Wilcoxon signed-rank, ``genomelab.report.stats``) compare every network with
every NNLS row on the same mixtures: per-mixture absolute error (mean over tissues) for MAE,
per-mixture counts of spurious calls, missed calls, and both together ("wrong calls").
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import numpy as np

from genomelab.deconv.io import load_predictions
from genomelab.deconv.metrics import headline
from genomelab.deconv.mixtures import read_mixtures
from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.metrics import read_metrics

VARIANTS = {"nnls": "NNLS (MethAtlas)", "plain": "plain network", "sparse": "two-stage sparse network"}
# NNLS on every usable region (independent sets; the NNLS row above uses the markers).
NNLS_ALL = "NNLS, all regions"
# NNLS with a per-sample offset and mean-variance weights on the markers (nnls.deconvolve_weighted;
# independent sets): the sparse network's prior when model.prior_weight_floor > 0.
WEIGHTED = "weighted NNLS + offset"
# Headline metric -> per-mixture observation of its paired test (metrics.per_sample).
PAIRED = {
    "mae": "abs_error",
    "spurious_per_sample": "spurious",
    "missed_per_sample": "missed",
    "wrong_calls_per_sample": "wrong_calls",
}


def paired_tests(
    true: np.ndarray, preds: dict[str, np.ndarray], kinds: dict[str, str], call: float
) -> dict[str, dict[str, dict]]:
    """``{metric: {pair_key(model, baseline): PairedTest dict}}`` for every model x baseline
    pair, Wilcoxon on the per-mixture observations of :data:`PAIRED` (lower is better)."""
    from genomelab.deconv.metrics import per_sample
    from genomelab.report.stats import wilcoxon_signed_rank
    from genomelab.report.summary import pair_key

    obs = {name: per_sample(true, p, call) for name, p in preds.items()}
    out: dict[str, dict[str, dict]] = {m: {} for m in PAIRED}
    for model in (n for n in preds if kinds[n] == "model"):
        for base in (n for n in preds if kinds[n] == "baseline"):
            for metric, key in PAIRED.items():
                test = wilcoxon_signed_rank(obs[model][key], obs[base][key], higher_is_better=False)
                # Per-mixture call counts are mostly equal (median difference 0); the test sides
                # with its larger signed-rank sum, and the mean gain is kept beside it.
                diff = float((obs[base][key] - obs[model][key]).mean())
                test = dataclasses.replace(test, details={**test.details, "mean_gain": diff})
                out[metric][pair_key(model, base)] = test.to_dict()
    return out


def add_wrong_calls(row: dict[str, float]) -> dict[str, float]:
    """A headline row with spurious + missed calls per sample added."""
    return {**row, "wrong_calls_per_sample": row["spurious_per_sample"] + row["missed_per_sample"]}


def compare(
    phase: str,
    mixtures: str | os.PathLike,
    nnls: tuple[str, str],
    runs: dict[str, list[tuple[str, str]]],
    out_json: str | os.PathLike,
    out_tsv: str | os.PathLike,
    plots: dict[str, str],
    n_miami: int = 24,
) -> dict:
    """NNLS vs plain vs two-stage on the same test mixtures: table, spread over repeats, plots.

    ``nnls`` = (metrics JSON, predictions NPZ); ``runs[variant]`` = one pair per repeat (the
    first is the one plotted and tabulated; the rest give mean and SD).
    """
    from genomelab.deconv import plots as P

    assert len({len(pairs) for pairs in runs.values()}) <= 1, "variants differ in their number of repeats"
    ms = read_mixtures(mixtures, "test")
    rows: dict[str, dict[str, float]] = {}
    preds: dict[str, np.ndarray] = {}
    full: dict[str, Any] = {}
    m = read_metrics(nnls[0]).test
    rows[VARIANTS["nnls"]], preds[VARIANTS["nnls"]], full["nnls"] = (
        add_wrong_calls(headline(m)),
        load_predictions(nnls[1]),
        m,
    )
    spread: dict[str, Any] = {}
    for variant, pairs in runs.items():
        all_m = [read_metrics(p).test for p, _ in pairs]
        name = VARIANTS[variant]
        rows[name], preds[name], full[variant] = (
            add_wrong_calls(headline(all_m[0])),
            load_predictions(pairs[0][1]),
            all_m[0],
        )
        if len(all_m) > 1:
            spread[variant] = {
                k: {
                    "mean": float(np.nanmean([headline(a)[k] for a in all_m])),
                    "sd": float(np.nanstd([headline(a)[k] for a in all_m], ddof=1)),
                    "n": len(all_m),
                }
                for k in ("mae", "spurious_per_sample", "missed_per_sample", "presence_accuracy")
            }
    kinds = {n: ("baseline" if n == VARIANTS["nnls"] else "model") for n in rows}
    call = float(full["nnls"].get("call_threshold", 0.01))
    atomic_write_json(
        out_json,
        {
            "phase": phase,
            "set": "phase test split (training generator)",
            "n_test": int(len(ms.proportions)),
            "rows": rows,
            "kinds": kinds,
            "tests": paired_tests(ms.proportions.astype(np.float64), preds, kinds, call),
            "repeats": spread,
            "full": full,
        },
    )
    import pandas as pd

    with atomic_output(out_tsv) as tmp:
        pd.DataFrame(rows).T.rename_axis("method").to_csv(tmp, sep="\t", float_format="%.5g")
    true = ms.proportions.astype(np.float64)
    # The Miami plot shows the first test mixtures (mixture order is random already).
    k = min(n_miami, len(true))
    P.miami_plot(
        true[:k],
        {n: p[:k] for n, p in preds.items()},
        list(ms.tissues),
        plots["miami"],
        f"{phase}: true (up) vs predicted (down), first {k} test mixtures",
        call=call,
    )
    P.scatter_plot(true, preds, list(ms.tissues), plots["scatter"], f"{phase}: predicted vs true")
    P.tissue_error_plot(true, preds, list(ms.tissues), plots["errors"], f"{phase}: per-tissue MAE")
    return rows


def predict_all(
    beta_all: np.ndarray, ref_all: Any, ref: Any, models: dict[str, str]
) -> dict[str, np.ndarray]:
    """Proportions [N, T] of NNLS on all regions, NNLS on the markers and each exported
    network (``models[variant]`` = model.pt) for mixtures ``beta_all`` [N, R_all] on the
    regions of ``ref_all``; the markers (``ref``'s regions) are a subset of them."""
    import torch

    from genomelab.deconv.model import load_model, weighted_floor
    from genomelab.deconv.nnls import WEIGHT_FLOOR, deconvolve_nnls, deconvolve_weighted

    pos = {r: i for i, r in enumerate(ref_all.regions.tolist())}
    missing = [r for r in ref.regions.tolist() if r not in pos]
    if missing or list(ref.tissues) != list(ref_all.tissues):
        raise ValueError(f"markers {missing[:5]} or tissues are not those of the all-region reference")
    cols = np.asarray([pos[r] for r in ref.regions.tolist()])
    beta = beta_all[:, cols].astype(np.float32)
    preds = {
        VARIANTS["nnls"]: deconvolve_nnls(ref.profiles, beta.astype(np.float64)).proportions,
        NNLS_ALL: deconvolve_nnls(ref_all.profiles, beta_all.astype(np.float64)).proportions,
    }
    floors = []
    for variant, path in models.items():
        model, _ = load_model(path, ref.regions, ref.tissues)
        if model.cfg.nnls_prior and model.cfg.prior_weight_floor:
            floors.append(weighted_floor(model))
        with torch.no_grad():
            preds[VARIANTS[variant]] = model.predict(torch.tensor(beta)).double().numpy()
    # The networks' weighted prior alone (their floor; the default one beside plain priors).
    floor = max(floors, default=0.0) or WEIGHT_FLOOR
    preds[WEIGHTED] = deconvolve_weighted(ref.profiles, beta.astype(np.float64), floor).proportions
    return preds


def score_set(true: np.ndarray, preds: dict[str, np.ndarray], tissues: Any, call: float) -> dict[str, Any]:
    """Rows, kinds, paired tests and full metrics of every method on one test set."""
    from genomelab.deconv.metrics import deconv_metrics

    full = {name: deconv_metrics(true, p, tissues, call) for name, p in preds.items()}
    rows = {name: add_wrong_calls(headline(m)) for name, m in full.items()}
    kinds = {n: ("model" if n in (VARIANTS["plain"], VARIANTS["sparse"]) else "baseline") for n in rows}
    return {"rows": rows, "kinds": kinds, "tests": paired_tests(true, preds, kinds, call), "full": full}


def evaluate_independent(
    mixtures: str | os.PathLike,
    reference: str | os.PathLike,
    reference_all: str | os.PathLike,
    models: dict[str, str],
    call: float,
    out_json: str | os.PathLike,
    out_tsv: str | os.PathLike,
    out_curve: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """NNLS (markers and all regions) and the exported networks on an independent test set
    (:mod:`genomelab.deconv.independent`, made on all regions): rows, paired tests, curves."""
    import pandas as pd
    import torch

    from genomelab.deconv.model import load_model
    from genomelab.deconv.reference import load_reference

    ref, ref_all = load_reference(reference), load_reference(reference_all)
    ms = read_mixtures(mixtures, "test")
    if list(ms.regions) != list(ref_all.regions) or list(ms.tissues) != list(ref_all.tissues):
        raise ValueError(f"{mixtures}: regions/tissues differ from the all-region reference {reference_all}")
    true = ms.proportions.astype(np.float64)
    result = score_set(true, predict_all(ms.beta, ref_all, ref, models), ref.tissues, call)
    if "sparse" in models:
        from genomelab.deconv.training import presence_curves

        pos = {r: i for i, r in enumerate(ref_all.regions.tolist())}
        marker_set = dataclasses.replace(ms, beta=ms.beta[:, [pos[r] for r in ref.regions.tolist()]])
        sparse, _ = load_model(models["sparse"], ref.regions, ref.tissues)
        result["full"][VARIANTS["sparse"]]["presence_curve"] = presence_curves(
            sparse, marker_set, call, torch.device("cpu")
        )
    coverage = float(_attrs(mixtures).get("coverage", float("nan")))
    result = {
        "phase": "independent",
        "set": f"independent generator at {coverage:g}x",
        "coverage": coverage,
        "n_test": int(len(true)),
        **result,
    }
    atomic_write_json(out_json, result)
    with atomic_output(out_tsv) as tmp:
        pd.DataFrame(result["rows"]).T.rename_axis("method").to_csv(tmp, sep="\t", float_format="%.5g")
    if out_curve and "sparse" in models:
        from genomelab.deconv import plots as P

        name = result["set"]
        P.presence_curve_plot(
            {name: result["full"][VARIANTS["sparse"]]["presence_curve"]},
            {name: {m: (r["presence_recall"], r["presence_precision"]) for m, r in result["rows"].items()}},
            out_curve,
        )
    return result


def _attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The root attributes of an HDF5 file."""
    import h5py

    with h5py.File(path, "r") as h5:
        return dict(h5.attrs)
