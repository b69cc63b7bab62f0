"""The read-count naive Bayes baseline alone on the sparsity grid (issue 18).

Since round 3 the workflow has it as a baseline (`genomelab.tissue.baselines.ReadNaiveBayes`,
in every run's grid); this script scores it quickly without training any model.

Beta-binomial naive Bayes: per class and region a beta distribution fitted by moments to the
training betas; a degraded test region with k methylated of d reads scores
log BetaBinomial(k | d, a, b) per class, summed over the observed regions, plus the log class
prior. At one read it is the Bernoulli likelihood of the class means; it needs no training
on degraded data. Scored on the same folds, regions and degraded test samples as
``bench_tissue_sparse.py`` (``run_baselines`` with the same grid seed), with the exact McNemar
test against logistic regression (mean imputation) and nearest centroid at each point.

Usage (well under 1 CPU-minute):
    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_nb.py \\
        ../shared/data/methylation_tcga_glioma/glioma.idhwt.trainingData.csv.gz \\
        --out benchmarks/results/tissue_nb_idhwt.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from genomelab.report.stats import mcnemar_predictions
from genomelab.splits import fold_split, group_kfold
from genomelab.tissue.baselines import BaselineConfig, ReadNaiveBayes, run_baselines
from genomelab.tissue.sparse import SparsityConfig, grid_inputs
from genomelab.tissue.task import select_regions

sys.path.insert(0, str(Path(__file__).parent))
from bench_tissue_sparse import load, task_of  # noqa: E402


def nb_predict(nb: ReadNaiveBayes, means: np.ndarray, depth: int) -> np.ndarray:
    """Predicted class indices of degraded ``means`` [n, R] at ``depth`` reads per region."""
    return nb.log_likelihood(means, np.full(means.shape, depth, np.float64)).argmax(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--regions", type=int, default=200)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    samples, labels, probes, betas = load(args.csv)
    folds = group_kfold(samples, args.folds, seed=args.seed, stratify=labels)
    grid = SparsityConfig(depths=[30, 10, 3, 1], observed=[1.0, 0.5, 0.1, 0.02])
    pooled: dict[str, list[dict[str, list]]] = {}
    for k in range(args.folds):
        split = fold_split(folds, k, samples, 0.25, args.seed, labels)
        data = select_regions(task_of(samples, labels, probes, betas, split), args.regions)
        base = run_baselines(data, BaselineConfig(refit_budget=0), seed=args.seed, sparsity=grid)
        tr, te = data.index("train"), data.index("test")
        nb = ReadNaiveBayes().fit(data.means[tr], data.y[tr], len(data.classes))
        for i, pt in enumerate(grid_inputs(data.means[te], grid, args.seed)):
            pred = nb_predict(nb, pt["means"], pt["depth"])
            rec = {
                "sample": [str(s) for s in data.samples[te]],
                "true": data.y[te].tolist(),
                "pred": pred.tolist(),
            }
            key = f"{pt['depth']}/{pt['observed']}"
            slot = pooled.setdefault(key, [{"naive Bayes": {}}])[0]
            for name, r in [("naive Bayes", rec)] + [
                (n, base["methods"][n]["grid"][i]["predictions"])
                for n in ("logistic regression", "nearest centroid")
            ]:
                for f in ("sample", "true", "pred"):
                    slot.setdefault(name, {}).setdefault(f, []).extend(r[f])
    out = {}
    for key, (slot,) in pooled.items():
        acc = {n: float(np.mean(np.equal(r["true"], r["pred"]))) for n, r in slot.items()}
        tests = {
            n: mcnemar_predictions(slot["naive Bayes"], slot[n]).p_value
            for n in ("logistic regression", "nearest centroid")
        }
        out[key] = {"accuracy": acc, "p_naive_bayes_vs": tests}
        print(key, {n: round(v, 4) for n, v in acc.items()}, {n: f"{p:.3g}" for n, p in tests.items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "points": out}, indent=2)
    )


if __name__ == "__main__":
    main()
