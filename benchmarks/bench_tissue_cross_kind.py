"""Would averaging two kinds of tissue model help? The read-profile and masked models, per
grid point, on the folds of a ``bench_tissue_sparse.py`` run (issue 18, round 22).

Round 21 found the two models good in different places on TCGA IDH-wt (the masked model at
10 reads and more with every probe, the read-profile model at one to three reads and on
sparse subsets). The workflow can average exported models of one class list
(``AveragedPredictor``, what ``genomelab predict tissue --model a.pt b.pt`` uses), so a
cross-kind average costs nothing to build; this script measures whether it is worth
recommending. Per fold of the run it loads each model's exported ``model.pt`` (calibrated
with its own temperature, as ``tissue_predict`` reads it), draws every grid point's test
inputs exactly as the run did (``grid_inputs`` with the run's seed, so each model sees the
inputs it was scored on in the run), and scores:

- each model alone;
- ``mean w``: w x P(first) + (1 - w) x P(second), the arithmetic mean of the calibrated
  probabilities (w = 0.5 is what ``AveragedPredictor`` does);
- ``geometric w``: the same weights on the log-probabilities.

Accuracy is pooled over the folds' test samples; each average is compared with each model
alone by the exact McNemar test on the same samples. The baselines' grid figures come from
the run's ``folds/<k>/baselines.json``.

Usage (after ``bench_tissue_sparse.py ... --models reads masked --out RUN --seed S``; about
1 CPU-minute at 843 probes):
    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_cross_kind.py \
        ../shared/data/methylation_tcga_glioma/glioma.idhwt.trainingData.csv.gz \
        --run RUN --seed S --out benchmarks/results/tissue_cross_kind/seedS.json
Round 22's results: ``benchmarks/results/tissue_cross_kind/``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_tissue_sparse import load, task_of
from genomelab.predict.tissue import ENSEMBLE, TissuePredictor
from genomelab.report.stats import exact_mcnemar
from genomelab.splits import fold_split, group_kfold
from genomelab.tissue.sparse import SparsityConfig, grid_inputs
from genomelab.tissue.task import select_regions

BASELINES = ("logistic regression", "naive Bayes (read counts)", "nearest centroid")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--run", type=Path, required=True, help="a bench_tissue_sparse.py --out folder")
    ap.add_argument("--seed", type=int, required=True, help="the run's --seed")
    ap.add_argument("--models", nargs=2, default=["reads", "masked"])
    ap.add_argument("--weights", nargs="+", type=float, default=[0.5, 0.7], help="weight of the first model")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    bench = json.loads((args.run / "bench.json").read_text())["args"]
    if int(bench["seed"]) != args.seed:
        raise SystemExit(f"{args.run} ran with --seed {bench['seed']}, not {args.seed}")
    folds_n, regions = int(bench["folds"]), int(bench["regions"])
    sparsity = SparsityConfig(depths=json.loads(bench["depths"]), observed=json.loads(bench["observed"]))
    samples, labels, probes, betas = load(args.csv)
    folds = group_kfold(samples, folds_n, seed=args.seed, stratify=labels)
    first, second = args.models
    names = [first, second]
    names += [f"{kind} {w:g}" for w in args.weights for kind in ("mean", "geometric")]
    names += list(BASELINES)
    points = sparsity.points()
    right: dict[str, list[list[np.ndarray]]] = {n: [[] for _ in points] for n in names}
    for k in range(folds_n):
        split = fold_split(folds, k, samples, 0.25, args.seed, labels)
        data = select_regions(task_of(samples, labels, probes, betas, split), regions)
        test = data.index("test")
        y = data.y[test]
        predictors = {m: TissuePredictor.load(args.run / f"folds/{k}/{m}/model.pt") for m in args.models}
        base = json.loads((args.run / f"folds/{k}/baselines.json").read_text())["methods"]
        for i, point in enumerate(grid_inputs(data.means[test], sparsity, args.seed)):
            p = {
                m: predictors[m].predict_arrays(point["means"], point["coverage"])[ENSEMBLE]
                for m in args.models
            }
            right[first][i].append(p[first].argmax(1) == y)
            right[second][i].append(p[second].argmax(1) == y)
            logs = {m: np.log(np.clip(p[m], 1e-300, None)) for m in args.models}
            for w in args.weights:
                mean = w * p[first] + (1 - w) * p[second]
                geometric = w * logs[first] + (1 - w) * logs[second]
                right[f"mean {w:g}"][i].append(mean.argmax(1) == y)
                right[f"geometric {w:g}"][i].append(geometric.argmax(1) == y)
            for b in BASELINES:
                g = base[b]["grid"][i]
                if (g["depth"], g["observed"]) != (point["depth"], point["observed"]):
                    raise SystemExit(f"{args.run}: fold {k}'s baselines grid is not in the run's order")
                right[b][i].append(
                    np.asarray(g["predictions"]["pred"]) == np.asarray(g["predictions"]["true"])
                )
    out = []
    print("depth x observed  " + "  ".join(f"{n[:14]:>14s}" for n in names))
    for i, (depth, frac) in enumerate(points):
        r = {n: np.concatenate(right[n][i]) for n in names}
        row = {
            "depth": depth,
            "observed": frac,
            "accuracy": {n: round(float(r[n].mean()), 4) for n in names},
            "mcnemar": {
                n: {m: exact_mcnemar(r[n], r[m]).to_dict() for m in args.models}
                for n in names
                if n.startswith(("mean", "geometric"))
            },
        }
        out.append(row)
        print(f"{depth:>5d} x {frac:<9g} " + "  ".join(f"{row['accuracy'][n]:>14.3f}" for n in names))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"run": str(args.run), "seed": args.seed, "models": args.models, "grid": out}, indent=1)
        + "\n"
    )


if __name__ == "__main__":
    main()
