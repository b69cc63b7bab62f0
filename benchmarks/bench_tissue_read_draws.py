"""How much one draw of reads moves the fair baselines' accuracy at a sparse grid point (issue 18).

The sparsity grid degrades each test sample once per point (one binomial draw of reads per
region). At 1 read per region that draw is a large part of the figure: this script repeats
the draw ``--draws`` times (grid seeds 1000, 1001, ...) at one point, on the same K folds as
``bench_tissue_sparse.py`` (``group_kfold`` + ``fold_split`` with ``--seed``), and reports
each baseline's accuracy over the pooled out-of-fold test samples: full coverage, and at the
point the mean, SD, minimum and maximum over draws. Baselines only (no training), through
the workflow's ``run_baselines``.

    PYTHONPATH=workflow/scripts nice -n 5 python benchmarks/bench_tissue_read_draws.py \
        ../shared/data/methylation_tcga_glioma/glioma.idhwt.trainingData.csv.gz \
        --seed 42 --draws 10 [--depth 1 --observed 1.0] --out draws_s42.json

About 2 minutes per seed on one core (843 probes, 5 folds, 10 draws). Not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tissue_sparse import load, task_of  # noqa: E402
from genomelab.splits import fold_split, group_kfold  # noqa: E402
from genomelab.tissue.baselines import BaselineConfig, run_baselines  # noqa: E402
from genomelab.tissue.sparse import SparsityConfig  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--draws", type=int, default=10)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--observed", type=float, default=1.0)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    samples, labels, probes, betas = load(args.csv)
    folds = group_kfold(samples, args.folds, seed=args.seed, stratify=labels)
    point = SparsityConfig(depths=[args.depth], observed=[args.observed])
    correct: dict[str, np.ndarray] = {}
    full: dict[str, float] = {}
    for k in range(args.folds):
        data = task_of(samples, labels, probes, betas, fold_split(folds, k, samples, 0.25, args.seed, labels))
        n_test = len(data.index("test"))
        for d in range(args.draws):
            base = run_baselines(data, BaselineConfig(refit_budget=0), seed=1000 + d, sparsity=point)
            for name, r in base["methods"].items():
                correct.setdefault(name, np.zeros(args.draws))[d] += r["grid"][0]["accuracy"] * n_test
                if d == 0:
                    full[name] = full.get(name, 0.0) + r["test"]["accuracy"] * n_test
        print(f"fold {k} done", flush=True)
    n = len(samples)
    out = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "methods": {
            m: {
                "full_coverage": full[m] / n,
                "point_mean": float(v.mean() / n),
                "point_sd": float(v.std(ddof=1) / n),
                "point_min": float(v.min() / n),
                "point_max": float(v.max() / n),
                "draws": (v / n).round(4).tolist(),
            }
            for m, v in correct.items()
        },
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for m, r in out["methods"].items():
        print(
            f"{m:28s} full {r['full_coverage']:.3f}  {args.depth} read(s) / {args.observed:g}: "
            f"{r['point_mean']:.3f} +- {r['point_sd']:.3f} ({r['point_min']:.3f}-{r['point_max']:.3f})"
        )


if __name__ == "__main__":
    main()
