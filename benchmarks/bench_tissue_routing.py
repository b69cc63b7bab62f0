"""Router variants on the same runs: which rule for sending samples to the dense model pays?

Reads ``bench_tissue_sparse.py --models reads masked routed`` runs (one per fold seed). Each
fold's routed model recorded, per grid point, both models' validation NLL and accuracy
(``routing.points`` in its metrics.json); each model's metrics.json holds its per-sample test
predictions at full coverage and at every grid point. So any rule that decides per point from
those validation figures can be scored on the test samples without refitting anything:

- ``sparse`` / ``dense``: one model everywhere (the read-profile / the masked model);
- ``point``: the dense model at each point where its validation NLL is lower (round 25's first
  router);
- ``corner``: the workflow's router (:func:`genomelab.tissue.routing._best_corner`): a corner
  of the grid, richer data in, or none, with the lowest summed validation NLL;
- ``accuracy``: the dense model where its validation accuracy is higher (ties: sparse).

Full coverage is scored from the models' test predictions (complete samples sit at the grid's
deepest point with every region observed, which is where the router places them); the grid
from each point's test predictions. Writes ``<out>/routing.json`` (per seed and variant:
accuracy at full coverage, mean over the grid, per point; means over seeds) and prints a table.

Usage:
    python benchmarks/bench_tissue_routing.py runs/s* --out benchmarks/results/tissue_routed_idhwt
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from genomelab.tissue.routing import _best_corner

MODELS = {"sparse": "reads", "dense": "masked"}


def variants(points: list[dict[str, Any]]) -> dict[str, list[bool]]:
    """Dense-model points [P] of each rule (the names ``main`` lists), from one fold's routing table."""
    return {
        "sparse": [False] * len(points),
        "dense": [True] * len(points),
        "point": [p["dense_nll"] < p["sparse_nll"] for p in points],
        "corner": _best_corner(points),
        "accuracy": [p["dense_accuracy"] > p["sparse_accuracy"] for p in points],
    }


def _right(pred: dict[str, list]) -> np.ndarray:
    return np.asarray(pred["true"]) == np.asarray(pred["pred"])


def score_run(run: Path, folds: int) -> dict[str, Any]:
    """Each variant's accuracy (full coverage, grid mean, per point) pooled over ``run``'s folds."""
    full: dict[str, list[np.ndarray]] = {}
    grid: dict[str, dict[int, list[np.ndarray]]] = {}
    n_dense: dict[str, int] = {}
    points: list[dict[str, Any]] = []
    for k in range(folds):
        ms = {
            role: json.loads((run / f"folds/{k}/{m}/metrics.json").read_text()) for role, m in MODELS.items()
        }
        points = json.loads((run / f"folds/{k}/routed/metrics.json").read_text())["routing"]["points"]
        top = max(range(len(points)), key=lambda i: (points[i]["observed"], points[i]["depth"]))
        for name, dense in variants(points).items():
            n_dense[name] = n_dense.get(name, 0) + sum(dense)
            full.setdefault(name, []).append(_right(ms["dense" if dense[top] else "sparse"]["predictions"]))
            for i, d in enumerate(dense):
                g = ms["dense" if d else "sparse"]["grid"][i]
                if (g["depth"], g["observed"]) != (points[i]["depth"], points[i]["observed"]):
                    raise ValueError(f"{run} fold {k}: grid point {i} differs from the routing table's")
                grid.setdefault(name, {}).setdefault(i, []).append(_right(g["predictions"]))
    out = {}
    for name in full:
        per_point = [float(np.concatenate(grid[name][i]).mean()) for i in sorted(grid[name])]
        out[name] = {
            "full": float(np.concatenate(full[name]).mean()),
            "grid_mean": float(np.mean(per_point)),
            "points": per_point,
            "dense_points": n_dense[name],
        }
    out["grid_points"] = [[p["depth"], p["observed"]] for p in points]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="bench_tissue_sparse.py --out folders, one per seed")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    args = ap.parse_args()
    seeds = {run.name: score_run(run, args.folds) for run in args.runs}
    names = ["sparse", "dense", "point", "corner", "accuracy"]
    first = next(iter(seeds.values()))
    mean = {
        name: {
            "full": float(np.mean([s[name]["full"] for s in seeds.values()])),
            "grid_mean": float(np.mean([s[name]["grid_mean"] for s in seeds.values()])),
            "points": np.mean([s[name]["points"] for s in seeds.values()], axis=0).tolist(),
            "dense_points": float(np.mean([s[name]["dense_points"] for s in seeds.values()])),
        }
        for name in names
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "routing.json").write_text(
        json.dumps({"runs": [str(r) for r in args.runs], "mean": mean, "seeds": seeds}, indent=1)
    )
    print(
        f"{len(seeds)} runs; accuracy, mean over runs (dense points: of {len(first['grid_points'])} x folds)"
    )
    print("variant   full    grid   dense points")
    for name in names:
        m = mean[name]
        print(f"{name:9s} {m['full']:.4f} {m['grid_mean']:.4f} {m['dense_points']:.1f}")
    print("per point (depth x observed):", " ".join(f"{d:g}x{f:g}" for d, f in first["grid_points"]))
    for name in names:
        print(f"{name:9s}", " ".join(f"{x:.3f}" for x in mean[name]["points"]))


if __name__ == "__main__":
    main()
