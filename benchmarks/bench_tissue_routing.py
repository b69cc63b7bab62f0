"""Would routing samples between the two default tissue models pay? (issue 18, round 25)

On TCGA IDH-wt the masked single-layer model is ahead of the read-profile model on complete,
deep samples (+0.5 points at full coverage over 20 fold seeds, round 24) and far behind on
sparse ones. A router that sends each sample to the model that is better for its kind of data
(its reads per region and fraction of regions observed, both visible before classifying) would
take both models' best points, if the validation split can tell where each is better. This
script measures that on finished ``bench_tissue_sparse.py --models reads masked`` runs, without
retraining anything:

1. per run (one fold seed) and fold, the fold's data are rebuilt as the run built them (its
   ``bench.json``: CSV, seed, folds, regions) and both models' exported files are loaded;
2. each validation sample is degraded to every point of the run's grid (the evaluation's
   binomial read model, :func:`genomelab.tissue.sparse.degrade`, a stream of its own) and each
   model's calibrated probabilities give a validation NLL and accuracy per point;
3. a router variant picks, from that validation table alone, the points where the masked
   ("dense") model classifies; its test accuracy is read from the models' own per-sample test
   predictions at full coverage (complete samples sit at the deepest point with every region
   observed) and at each grid point.

Variants: ``sparse`` / ``dense`` (one model everywhere); ``point_nll`` / ``point_acc`` (the
dense model at each point where its validation NLL is lower / accuracy higher);
``corner_nll`` / ``corner_acc`` (a corner of the grid, every point with at least a depth and
an observed fraction, or none, with the lowest summed validation NLL / errors: a model better
on richer data is taken on all richer data, which damps one point's noise); ``both`` (the
points both corners hold). Writes ``<out>/routing.json`` (per run and variant: accuracy at
full coverage, mean over the grid, per point, dense points chosen, and the exact McNemar test
against the default, the read-profile model everywhere, on the same test samples at full
coverage and over all grid points' samples together; means over runs) and prints a table.

Usage (after ``bench_tissue_sparse.py ... --models reads masked`` per seed; ~10 s per run):
    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_routing.py runs/s* \
        --out benchmarks/results/tissue_routing_idhwt
"""

from __future__ import annotations

import argparse
import json
import runpy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from genomelab.predict.tissue import ENSEMBLE, TissuePredictor
from genomelab.report.stats import exact_mcnemar
from genomelab.tissue.sparse import degrade
from genomelab.tissue.task import TissueData

SPARSE, DENSE = "reads", "masked"
VARIANTS = ("sparse", "dense", "point_nll", "point_acc", "corner_nll", "corner_acc", "both")
SPARSE_SCRIPT = Path(__file__).with_name("bench_tissue_sparse.py")


def fold_data(run: Path, k: int) -> TissueData:
    """Fold ``k``'s task of a bench_tissue_sparse.py run, as that run built it."""
    return runpy.run_path(str(SPARSE_SCRIPT))["rebuild_fold"](run, k)


def validation_table(
    data: TissueData, models: dict[str, TissuePredictor], points: list[tuple[float, float]], seed: int
) -> list[dict[str, Any]]:
    """Each model's validation NLL and accuracy at each grid point (validation samples
    degraded with the stream [seed, i, 1]; the test grid draws with [seed, i])."""
    means, _, y = data.subset("val")
    table = []
    for i, (depth, frac) in enumerate(points):
        m, c = degrade(means, int(depth), float(frac), np.random.default_rng([seed, i, 1]))
        rec: dict[str, Any] = {"depth": depth, "observed": frac}
        for name, model in models.items():
            p = model.predict_arrays(m, c)[ENSEMBLE]
            rec[f"{name}_nll"] = float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, 1)).mean())
            rec[f"{name}_err"] = float((p.argmax(1) != y).mean())
        table.append(rec)
    return table


def corner(table: list[dict[str, Any]], score: str) -> list[bool]:
    """The dense model's points: the corner (every point with depth >= d and observed >= f, both
    grid values) or none with the lowest summed ``score`` (nll or err); ties to the smaller."""
    best, best_cost = [False] * len(table), sum(r[f"{SPARSE}_{score}"] for r in table)
    corners = [
        [r["depth"] >= d and r["observed"] >= f for r in table]
        for d, f in sorted({(r["depth"], r["observed"]) for r in table})
    ]
    for inside in sorted(corners, key=sum):
        cost = sum(r[f"{DENSE if i else SPARSE}_{score}"] for r, i in zip(table, inside, strict=True))
        if cost < best_cost:
            best, best_cost = inside, cost
    return best


def variants(table: list[dict[str, Any]]) -> dict[str, list[bool]]:
    """Dense-model points [P] of each variant (``VARIANTS``), from one fold's validation table."""
    nll, acc = corner(table, "nll"), corner(table, "err")
    return {
        "sparse": [False] * len(table),
        "dense": [True] * len(table),
        "point_nll": [r[f"{DENSE}_nll"] < r[f"{SPARSE}_nll"] for r in table],
        "point_acc": [r[f"{DENSE}_err"] < r[f"{SPARSE}_err"] for r in table],
        "corner_nll": nll,
        "corner_acc": acc,
        "both": [a and b for a, b in zip(nll, acc, strict=True)],
    }


def _right(pred: dict[str, list]) -> np.ndarray:
    return np.asarray(pred["true"]) == np.asarray(pred["pred"])


def score(
    metrics: dict[str, dict[str, Any]], chosen: dict[str, list[bool]]
) -> dict[str, tuple[np.ndarray, list[np.ndarray]]]:
    """Per variant, right/wrong [n_test] at full coverage and per grid point, from the two
    models' metrics.json (``metrics[SPARSE]``, ``metrics[DENSE]``)."""
    grid = metrics[SPARSE]["grid"]
    top = max(range(len(grid)), key=lambda i: (grid[i]["observed"], grid[i]["depth"]))
    out = {}
    for name, dense in chosen.items():
        full = _right(metrics[DENSE if dense[top] else SPARSE]["predictions"])
        points = [
            _right(metrics[DENSE if d else SPARSE]["grid"][i]["predictions"]) for i, d in enumerate(dense)
        ]
        out[name] = (full, points)
    return out


def score_run(run: Path, folds: int) -> dict[str, Any]:
    """Every variant on ``run``'s folds, pooled: accuracy at full coverage, per point, the mean
    over the grid, and the dense points chosen; the folds' validation tables."""
    seed = int(json.loads((run / "bench.json").read_text())["args"]["seed"])
    full: dict[str, list[np.ndarray]] = {v: [] for v in VARIANTS}
    points: dict[str, list[list[np.ndarray]]] = {v: [] for v in VARIANTS}
    n_dense = dict.fromkeys(VARIANTS, 0)
    tables = []
    for k in range(folds):
        data = fold_data(run, k)
        metrics = {m: json.loads((run / f"folds/{k}/{m}/metrics.json").read_text()) for m in (SPARSE, DENSE)}
        test = data.samples[data.index("test")].tolist()
        for m, rec in metrics.items():
            if rec["predictions"]["sample"] != test:
                raise ValueError(f"{run}: fold {k}'s {m} test samples are not the rebuilt fold's")
        models = {m: TissuePredictor.load(run / f"folds/{k}/{m}/model.pt") for m in (SPARSE, DENSE)}
        grid = [(float(p["depth"]), float(p["observed"])) for p in metrics[SPARSE]["grid"]]
        table = validation_table(data, models, grid, seed)
        tables.append(table)
        chosen = variants(table)
        for name, (f, pts) in score(metrics, chosen).items():
            full[name].append(f)
            points[name].append(pts)
            n_dense[name] += sum(chosen[name])
    out: dict[str, Any] = {"grid_points": [[r["depth"], r["observed"]] for r in tables[0]], "tables": tables}
    pooled = {
        name: (np.concatenate(full[name]), np.concatenate([np.concatenate(pts) for pts in points[name]]))
        for name in VARIANTS
    }
    for name in VARIANTS:
        per_point = [
            float(np.concatenate([f[i] for f in points[name]]).mean()) for i in range(len(tables[0]))
        ]
        # Against the default (the read-profile model everywhere), paired on the same test
        # samples: at full coverage, and over every grid point's samples together.
        tests = {
            where: exact_mcnemar(pooled[name][j], pooled["sparse"][j]).to_dict()
            for j, where in enumerate(("full", "grid"))
        }
        out[name] = {
            "full": float(pooled[name][0].mean()),
            "grid_mean": float(np.mean(per_point)),
            "points": per_point,
            "dense_points": n_dense[name],
            "vs_default": tests,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "runs", nargs="+", type=Path, help="bench_tissue_sparse.py --out folders (reads and masked)"
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    torch.set_num_threads(1)
    runs = {run.name: score_run(run, args.folds) for run in args.runs}
    first = next(iter(runs.values()))
    mean = {
        v: {
            key: float(np.mean([r[v][key] for r in runs.values()]))
            for key in ("full", "grid_mean", "dense_points")
        }
        | {"points": np.mean([r[v]["points"] for r in runs.values()], axis=0).tolist()}
        for v in VARIANTS
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "routing.json").write_text(
        json.dumps({"runs": [str(r) for r in args.runs], "mean": mean, "per_run": runs}, indent=1)
    )
    n_points = len(first["grid_points"])
    print(
        f"{len(runs)} runs x {args.folds} folds; accuracy, mean over runs; dense points of {n_points} per fold"
    )
    print(f"{'variant':11s} full    grid    dense points")
    for v in VARIANTS:
        print(f"{v:11s} {mean[v]['full']:.4f}  {mean[v]['grid_mean']:.4f}  {mean[v]['dense_points']:.1f}")
    print(
        "exact McNemar against the default per run, runs with p < 0.05 (which is ahead): full coverage; grid"
    )
    side = {"model": "the variant", "baseline": "the default"}
    for v in VARIANTS[1:]:
        cells = []
        for where in ("full", "grid"):
            sig = [
                r[v]["vs_default"][where]
                for r in runs.values()
                if r[v]["vs_default"][where]["p_value"] < 0.05
            ]
            sides = ", ".join(sorted({side.get(t["favours"], t["favours"]) for t in sig})) or "-"
            cells.append(f"{len(sig)} of {len(runs)} ({sides})")
        print(f"{v:11s} " + "; ".join(cells))
    print("per point:", " ".join(f"{d:g}x{f:g}" for d, f in first["grid_points"]))
    for v in VARIANTS:
        print(f"{v:11s}", " ".join(f"{x:.3f}" for x in mean[v]["points"]))


if __name__ == "__main__":
    main()
