"""Forms of the temperature compared on the same models: one T, or T per sample profile (round 25).

A model's confidence should mean the same on a sample of one read at 10% of its regions as on
a complete array. Temperature scaling fitted on complete validation samples (one T) cannot do
that when a model's over-confidence grows with the evidence, as the read-profile model's does.
This script takes finished ``bench_tissue_sparse.py`` runs (one per fold seed), the saved
models of one kind (``--model``: reads, masked ...) and, per fold, their uncalibrated
probabilities on

- the validation samples, complete and degraded to every grid point (the stream [seed, i, 1]
  that ``genomelab.tissue.training.profile_inputs`` uses), where each form is fitted, and
- the test samples, complete and degraded to every grid point as the evaluation degrades them
  (stream [seed, i]), where each form is scored: 10-bin ECE of the pooled test predictions
  (every seed and fold) per point.

Forms (u = log fraction of regions observed, v = log reads per observed region; each fitted by
the succession-smoothed NLL of ``genomelab.tissue.calibration``): ``one`` (one T on complete
validation samples, the workflow's calibration before round 25), ``linear`` (log T in u, v),
``interaction`` (u, v, u v), ``quadratic`` (u, v, u v, u^2, v^2: the workflow's
:class:`~genomelab.tissue.calibration.ProfileTemperature` since round 25), ``total`` (u + v
alone: the total reads), ``per_point`` (one T per grid point fitted on that point's validation
copies: an oracle's form, since every test sample of a point shares its profile).

Writes ``<out>/temperature.json`` and prints a table; their ``max`` and ``mean`` are over
full coverage and the grid points together (17 on the default grid), so the mean is not the
mean of the 16 points that docs/tissue.md round 25 gives (from ``ece``). Usage (~1 minute per 10 runs, reads):
    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_temperature.py runs/s* --model reads \
        --out benchmarks/results/tissue_temperature_idhwt
"""

from __future__ import annotations

import argparse
import json
import runpy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from genomelab.predict.tissue import ENSEMBLE, TissuePredictor
from genomelab.tissue.calibration import (
    EPS,
    LOG_T_RANGE,
    apply_temperature,
    ece_of_bins,
    fit_profile_temperature,
    fit_temperature,
    reliability_bins,
    sample_profile,
    succession_nll,
)
from genomelab.tissue.sparse import degrade

SPARSE_SCRIPT = Path(__file__).with_name("bench_tissue_sparse.py")
FORMS = ("one", "linear", "interaction", "quadratic", "total", "per_point")
BIN_SUMS = ("count", "correct", "confidence")


def _terms(observed: np.ndarray, depth: np.ndarray, form: str) -> np.ndarray:
    u, v = np.log(np.maximum(observed, 1e-6)), np.log(np.maximum(depth, 1.0))
    return {
        "linear": lambda: np.stack([u, v], 1),
        "interaction": lambda: np.stack([u, v, u * v], 1),
        "total": lambda: (u + v)[:, None],
    }[form]()


def fit_form(
    p: np.ndarray, y: np.ndarray, o: np.ndarray, d: np.ndarray, form: str, n_samples: int | None = None
) -> Callable[..., np.ndarray]:
    """``form``'s temperature fitted on (proba [n, C], y, observed, depth), the rule of
    succession counting ``n_samples`` samples (the rows are copies of them): (observed,
    depth) -> T [S]."""
    if form == "quadratic":  # the workflow's own
        return fit_profile_temperature(p, y, o, d, n_samples).of
    from scipy.optimize import minimize

    x = _terms(o, d, form)
    mu, sd = x.mean(0), np.where(x.std(0) > 1e-9, x.std(0), 1.0)
    lo, hi = x.min(0), x.max(0)
    logp = np.log(np.clip(p, EPS, 1.0))

    def log_t(theta: np.ndarray, xs: np.ndarray) -> np.ndarray:
        return np.clip(theta[0] + xs @ theta[1:], *LOG_T_RANGE)

    def loss(theta: np.ndarray) -> float:
        z = logp / np.exp(log_t(theta, (x - mu) / sd))[:, None]
        z = z - z.max(1, keepdims=True)
        return succession_nll(z - np.log(np.exp(z).sum(1, keepdims=True)), y, n_samples)

    start = np.r_[np.log(fit_temperature(p, y, n_samples)), np.zeros(x.shape[1])]
    theta = minimize(loss, start, method="L-BFGS-B").x
    return lambda o2, d2: np.exp(log_t(theta, (np.clip(_terms(o2, d2, form), lo, hi) - mu) / sd))


def raw_proba(model: TissuePredictor, means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
    """The model's uncalibrated probabilities [n, C]: the mean of its members' (or its own)."""
    out = model.predict_arrays(np.asarray(means, np.float32), np.asarray(coverage, np.float32))
    return np.mean([p for name, p in out.items() if name != ENSEMBLE], axis=0)


def _add(bins: dict[int, dict[str, Any]], i: int, proba: np.ndarray, y: np.ndarray) -> None:
    b = reliability_bins(proba, y)
    if i in bins:
        for k in BIN_SUMS:
            bins[i][k] = np.add(bins[i][k], b[k]).tolist()
    else:
        bins[i] = b


def score_runs(
    runs: list[Path], model: str, folds: int
) -> tuple[list[tuple[int, float]], dict[str, list[float]]]:
    """Grid points (depth, observed) and, per form, the pooled test ECE at full coverage then
    at each point, over every run and fold."""
    rebuild = runpy.run_path(str(SPARSE_SCRIPT))["rebuild_fold"]
    bins: dict[str, dict[int, dict[str, Any]]] = {f: {} for f in FORMS}
    points: list[tuple[int, float]] = []
    for run in runs:
        seed = int(json.loads((run / "bench.json").read_text())["args"]["seed"])
        grid = json.loads((run / f"folds/0/{model}/metrics.json").read_text())["grid"]
        points = [(int(p["depth"]), float(p["observed"])) for p in grid]
        for k in range(folds):
            data = rebuild(run, k)
            predictor = TissuePredictor.load(run / f"folds/{k}/{model}/model.pt")
            sets = {}
            for split, stream in (("val", 1), ("test", None)):
                means, cov, y = data.subset(split)
                rows = [(raw_proba(predictor, means, cov), y, *sample_profile(means, cov))]
                for i, (depth, frac) in enumerate(points):
                    rng = np.random.default_rng([seed, i] if stream is None else [seed, i, stream])
                    m, c = degrade(means, depth, frac, rng)
                    rows.append((raw_proba(predictor, m, c), y, *sample_profile(m, c)))
                sets[split] = rows
            val = [np.concatenate([r[j] for r in sets["val"]]) for j in range(4)]
            t_one = fit_temperature(sets["val"][0][0], sets["val"][0][1])
            n_val = len(sets["val"][0][1])
            fitted = {f: fit_form(*val, f, n_val) for f in ("linear", "interaction", "quadratic", "total")}
            t_point = [fit_temperature(r[0], r[1]) for r in sets["val"]]
            for i, (p, y, o, d) in enumerate(sets["test"]):
                _add(bins["one"], i, apply_temperature(p, t_one), y)
                _add(bins["per_point"], i, apply_temperature(p, t_point[i]), y)
                for f, fn in fitted.items():
                    _add(bins[f], i, apply_temperature(p, fn(o, d)), y)
    return points, {f: [ece_of_bins(bins[f][i]) for i in sorted(bins[f])] for f in FORMS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="bench_tissue_sparse.py --out folders, one per seed")
    ap.add_argument("--model", default="reads", help="the runs' model folder name (reads, masked ...)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    points, ece = score_runs(args.runs, args.model, args.folds)
    names = ["full"] + [f"{d}x{f:g}" for d, f in points]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "temperature.json").write_text(
        json.dumps(
            {
                "runs": [str(r) for r in args.runs],
                "model": args.model,
                "points": names,
                "ece": ece,
                "max": {f: max(e) for f, e in ece.items()},
                "mean": {f: float(np.mean(e)) for f, e in ece.items()},
            },
            indent=1,
        )
    )
    print(f"{args.model}: pooled test ECE after scaling, {len(args.runs)} runs x {args.folds} folds")
    print(f"{'form':12s}" + " ".join(f"{n:>7s}" for n in names) + "     max    mean")
    for f in FORMS:
        print(
            f"{f:12s}" + " ".join(f"{x:7.3f}" for x in ece[f]) + f" {max(ece[f]):7.3f} {np.mean(ece[f]):7.3f}"
        )


if __name__ == "__main__":
    main()
