"""Issue 18's bars over many fold assignments, from ``bench_tissue_sparse.py`` runs (round 24).

One run of ``bench_tissue_sparse.py`` is one assignment of the samples to K folds (its
``--seed``); which test samples a fold holds moves logistic regression's figure by several
points, so a bar met with one seed says little. This script reads one run per seed and gives,
for one model (``--model``, by its title in the run's summary), per seed:

- full coverage (the run's complete test samples): the model's and logistic regression's
  accuracy, the exact McNemar p of the model against LR on the pooled out-of-fold predictions,
  and the model's test ECE after temperature scaling: the mean of the folds' ECE (what the
  summary's table gives), the ECE of the pooled out-of-fold predictions
  (``plots/coverage.json``), and for each the *floor*: the mean ECE a perfectly calibrated
  model with the same confidences would score (each test call right with probability equal
  to its confidence, ``--floor-draws`` draws). A 10-bin ECE on a fold's ~86 samples is far
  from 0 even for a perfectly calibrated model, so a per-fold figure means something only
  against its floor;
- at each bar point (``--points``, depth:observed; default 1 read with every region, and 30
  and 1 read(s) with 10% observed): the model's accuracy, LR's, the gap in points and the
  exact McNemar p against LR (as ``plots/grid.json`` has them);
- the model's ECE after scaling at the grid points (runs since round 25: the folds'
  reliability bins pooled per point, ``plots/grid.json``): the worst point and the mean;
- the grid points at which a fair baseline is significantly ahead of the model (favours the
  baseline, raw p < 0.05), and how many stay so after Holm's adjustment across the points
  (the fair baselines are the summary's, ``genomelab.tissue.report.FAIR_BASELINES``: LR, LR
  refit on the observed regions, nearest centroid, naive Bayes and the masked model, which
  is a default model too);
- *reach* at the first bar point: the bar (LR + ``--margin``) against the best accuracy any
  method of the run reaches on complete data (full coverage, or the grid's deepest point with
  every region observed). A degraded sample carries no more information than the complete one,
  so where the bar lies above that figure it asks the degraded input to be classified better
  than any method of the run classifies the whole array (an estimate: another method might
  do better on complete data; but the bar then sits within the spread of the best methods).

Writes ``<out>/seeds.tsv`` (a row per seed) and ``<out>/seeds.json`` (rows, per-column mean,
SD, min and max over seeds, and the counts of seeds meeting each bar) and prints the summary.

Usage (``bench_tissue_sparse.py`` once per seed, 2-4 CPU-minutes each with reads and masked):
    for s in 1 2 3 42; do
        PYTHONPATH=workflow/scripts OMP_NUM_THREADS=1 python benchmarks/bench_tissue_sparse.py \
            $CSV --out runs/s$s --folds 5 --regions 0 --seed $s --models reads masked
    done
    python benchmarks/bench_tissue_seeds.py runs/s* --out benchmarks/results/tissue_seeds_idhwt
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import Any

import numpy as np
from genomelab.tissue.metrics import expected_calibration_error

ALPHA = 0.05
LR = "logistic regression"


def parse_point(text: str) -> tuple[float, float]:
    """``"1:1.0"`` -> (depth 1, observed 1.0)."""
    depth, sep, observed = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"{text!r}: expected depth:observed, e.g. 1:0.1")
    return float(depth), float(observed)


def load_run(run: Path) -> dict[str, Any]:
    """The run's seed, full-coverage comparison and grid points."""
    for name in ("bench.json", "summary.json", "plots/grid.json"):
        if not (run / name).exists():
            raise SystemExit(f"{run / name} is missing (not a finished bench_tissue_sparse.py --out folder?)")
    bench = json.loads((run / "bench.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    grid = json.loads((run / "plots/grid.json").read_text())
    coverage = run / "plots/coverage.json"
    folds = {}
    for path in sorted(run.glob("folds/*/*/metrics.json")):
        rec = json.loads(path.read_text())
        if "title" in rec and "predictions" in rec:
            folds.setdefault(rec["title"], []).append(rec)
    return {
        "seed": int(bench["args"]["seed"]),
        "comparison": summary["comparisons"][0],
        "points": grid["points"],
        "calibration": json.loads(coverage.read_text()) if coverage.exists() else {},
        "folds": folds,
    }


def calibrated_floor(confidence: np.ndarray, draws: int, rng: np.random.Generator) -> float:
    """Mean 10-bin ECE of a perfectly calibrated model with these top-class confidences [n]:
    each call right with probability equal to its confidence."""
    # Column 0 carries the confidence, so it is the top class whatever the number of classes
    # (the ECE reads only the top probability and whether that class is right).
    proba = np.stack([confidence, np.zeros_like(confidence)], axis=1)
    scores = []
    for _ in range(draws):
        right = rng.random(len(confidence)) < confidence
        scores.append(expected_calibration_error(proba, np.where(right, 0, 1)))
    return float(np.mean(scores))


def ece_figures(run: dict[str, Any], model: str, draws: int, seed: int) -> dict[str, float | None]:
    """The model's pooled test ECE and the floors of the per-fold and pooled figures."""
    pooled = run["calibration"].get(model, {}).get("ece_after")
    folds = run["folds"].get(model, [])
    if not folds or draws < 1:
        return {"ece_pooled": pooled, "ece_floor_folds": None, "ece_floor_pooled": None}
    rng = np.random.default_rng(seed)
    confidence = [np.asarray(f["predictions"]["confidence"], float) for f in folds]
    return {
        "ece_pooled": pooled,
        "ece_floor_folds": float(np.mean([calibrated_floor(c, draws, rng) for c in confidence])),
        "ece_floor_pooled": calibrated_floor(np.concatenate(confidence), draws, rng),
    }


def point(points: list[dict[str, Any]], depth: float, observed: float) -> dict[str, Any]:
    for pt in points:
        if float(pt["depth"]) == depth and abs(float(pt["observed"]) - observed) < 1e-9:
            return pt
    have = ", ".join(f"{pt['depth']}:{pt['observed']}" for pt in points)
    raise SystemExit(f"grid point {depth:g}:{observed:g} is not in the run (it has {have})")


def seed_row(
    run: dict[str, Any], model: str, points: list[tuple[float, float]], margin: float, floor_draws: int = 0
) -> dict[str, Any]:
    """One seed's figures for ``model`` (see the module docstring)."""
    comp = run["comparison"]
    rows = comp["rows"]
    if model not in rows:
        raise SystemExit(f"seed {run['seed']}: no method {model!r} (it has {', '.join(rows)})")
    if LR not in rows:
        raise SystemExit(f"seed {run['seed']}: the run has no {LR!r} to compare with")
    test = comp["tests"].get(f"{model} vs {LR}")
    row: dict[str, Any] = {
        "seed": run["seed"],
        "full_model": rows[model]["accuracy"],
        "full_lr": rows[LR]["accuracy"],
        "full_p_vs_lr": test["p_value"] if test else None,
        "full_favours": test["favours"] if test else None,
        "ece_model": rows[model].get("ece"),
        **ece_figures(run, model, floor_draws, run["seed"]),
    }
    for depth, observed in points:
        pt = point(run["points"], depth, observed)
        methods = pt["methods"]
        key = f"d{depth:g}_o{observed:g}"
        row[f"{key}_model"] = methods[model]["accuracy"]
        row[f"{key}_lr"] = methods[LR]["accuracy"]
        row[f"{key}_gap"] = 100 * (methods[model]["accuracy"] - methods[LR]["accuracy"])
        row[f"{key}_p_vs_lr"] = methods[model]["tests"][LR]["p_value"]
    below_raw = below_holm = 0
    for pt in run["points"]:
        behind = [
            t
            for t in pt["methods"][model].get("tests", {}).values()
            if t["favours"] == "baseline" and t["p_value"] < ALPHA
        ]
        below_raw += bool(behind)
        below_holm += any(t["p_value_holm"] < ALPHA for t in behind)
    row["grid_points"] = len(run["points"])
    # ECE after scaling at the grid points (the folds pooled; runs since round 25 record it).
    eces = [pt["methods"][model]["ece"] for pt in run["points"] if "ece" in pt["methods"][model]]
    row["grid_ece_worst"] = max(eces) if eces else None
    row["grid_ece_mean"] = statistics.fmean(eces) if eces else None
    row["below_fair_raw"] = below_raw
    row["below_fair_holm"] = below_holm
    deepest = max(float(pt["depth"]) for pt in run["points"])
    complete = [r["accuracy"] for r in rows.values()]
    complete += [m["accuracy"] for m in point(run["points"], deepest, 1.0)["methods"].values()]
    first = f"d{points[0][0]:g}_o{points[0][1]:g}"
    row["bar"] = row[f"{first}_lr"] + margin / 100
    row["best_complete"] = max(complete)
    row["bar_minus_best_complete"] = 100 * (row["bar"] - row["best_complete"])
    row["bar_minus_model_full"] = 100 * (row["bar"] - row["full_model"])
    return row


def aggregate(rows: list[dict[str, Any]], points: list[tuple[float, float]], margin: float) -> dict[str, Any]:
    """Mean, SD (population SD over the seeds), min and max of every numeric column, and the
    bar counts. A column counts where any seed has a number (a run without fold predictions
    has no ECE floor)."""
    stats = {}
    for key in rows[0]:
        values = [r[key] for r in rows if isinstance(r[key], (int, float)) and not isinstance(r[key], bool)]
        if key == "seed" or not values:
            continue
        stats[key] = {
            "mean": statistics.fmean(values),
            "sd": statistics.pstdev(values),
            "min": min(values),
            "max": max(values),
        }
    counts = {"seeds": len(rows)}
    for depth, observed in points:
        key = f"d{depth:g}_o{observed:g}"
        counts[f"{key}_bar_met"] = sum(
            r[f"{key}_gap"] >= margin and r[f"{key}_p_vs_lr"] < ALPHA for r in rows
        )
    counts["full_significantly_below_lr"] = sum(
        r["full_p_vs_lr"] is not None and r["full_p_vs_lr"] < ALPHA and r["full_favours"] == "baseline"
        for r in rows
    )
    counts["ece_at_most_0.05"] = sum(r["ece_model"] is not None and r["ece_model"] <= 0.05 for r in rows)
    counts["ece_pooled_at_most_0.05"] = sum(
        r["ece_pooled"] is not None and r["ece_pooled"] <= 0.05 for r in rows
    )
    counts["grid_ece_every_point_at_most_0.05"] = sum(
        r["grid_ece_worst"] is not None and r["grid_ece_worst"] <= 0.05 for r in rows
    )
    counts["below_fair_raw_any"] = sum(r["below_fair_raw"] > 0 for r in rows)
    counts["below_fair_holm_any"] = sum(r["below_fair_holm"] > 0 for r in rows)
    counts["bar_above_best_complete"] = sum(r["bar_minus_best_complete"] > 0 for r in rows)
    counts["bar_above_model_full"] = sum(r["bar_minus_model_full"] > 0 for r in rows)
    return {"stats": stats, "counts": counts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="bench_tissue_sparse.py --out folders, one per seed")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="read-profile model", help="the model's title in the summary")
    ap.add_argument("--points", nargs="+", type=parse_point, default=[(1, 1.0), (30, 0.1), (1, 0.1)])
    ap.add_argument("--margin", type=float, default=5.0, help="the bar: points above LR")
    ap.add_argument("--floor-draws", type=int, default=500, help="draws of the ECE floor (0: none)")
    args = ap.parse_args()
    runs = sorted((load_run(r) for r in args.runs), key=lambda r: r["seed"])
    seeds = [r["seed"] for r in runs]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"two runs share a seed ({seeds}): each seed is one fold assignment")
    rows = [seed_row(r, args.model, args.points, args.margin, args.floor_draws) for r in runs]
    summary = aggregate(rows, args.points, args.margin)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "seeds.tsv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in r.items()})
    result = {
        "model": args.model,
        "margin": args.margin,
        "points": [list(p) for p in args.points],
        "runs": [str(r) for r in args.runs],
        "rows": rows,
        **summary,
    }
    (args.out / "seeds.json").write_text(json.dumps(result, indent=1))
    print(f"{args.model}, {len(rows)} seeds ({', '.join(map(str, seeds))})")
    for key, s in summary["stats"].items():
        print(f"  {key}: mean {s['mean']:.4f}, SD {s['sd']:.4f}, range {s['min']:.4f} to {s['max']:.4f}")
    for key, n in summary["counts"].items():
        print(f"  {key}: {n}")


if __name__ == "__main__":
    main()
