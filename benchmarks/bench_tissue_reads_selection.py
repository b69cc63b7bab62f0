"""Is the read-profile model's one-read figure held down by how it chooses its settings?
(issue 18, round 22).

``fit_read_profiles`` picks each family's setting (mixture K x shrinkage, factor d x scale)
by accuracy on ``tissue.reads.validation_draws`` (5) one-read draws of each validation
sample, about 86 samples of TCGA IDH-wt per fold: a noisy criterion, with ties broken by grid
order. This script refits the model per fold with other criteria and scores it on the
one-read test draws of ``bench_tissue_one_read_ceiling.py`` (draw d of fold k from
``default_rng([1000 + d, k])``, every probe), so its figures pair with that script's per
seed (logistic regression included, read from its results):

- ``default``: the workflow's fit as it is;
- ``nll``: the setting with the lowest validation log-loss after its own temperature
  (a smooth criterion, no ties);
- ``draws10``: accuracy on 10 validation draws instead of 5;
- ``nll_draws10``: both;
- ``depth3``, ``depth5``, ``depth10``, ``depth30``: settings and temperatures chosen on
  validation draws of 3, 5, 10 or 30 reads per region (``tissue.reads.choose_depth``; the
  default is 1, the depth the model is for).

Besides the one-read draws each variant is scored on the complete test samples (``full``,
the betas at 150 calls) and on one draw of 30 reads per region (``r30``, from
``default_rng([2000, k])``). ``--variants`` picks some; ``--csv``-style cohorts other than
TCGA IDH-wt work too (then give no ``--ceiling``: logistic regression's figures are only
taken from it).

The criterion is swapped by replacing ``read_profiles._accuracy`` (what the fit ranks
settings by) for the fit only; the reported setting accuracies then hold the criterion's
values. A benchmark, not a workflow option: none of the variants moved the figure (round 22).

Usage (about 20 s per seed for the four variants, one thread):
    PYTHONPATH=workflow/scripts OMP_NUM_THREADS=1 python benchmarks/bench_tissue_reads_selection.py \
        ../shared/data/methylation_tcga_glioma/glioma.idhwt.trainingData.csv.gz --seed 42 \
        --ceiling benchmarks/results/tissue_one_read_ceiling/r20_seeds_final/s42.json \
        >> benchmarks/results/tissue_reads_selection/criteria_idhwt.jsonl
then ``--summarise benchmarks/results/tissue_reads_selection/criteria_idhwt.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import genomelab.tissue.read_profiles as rp
import numpy as np
import torch
from bench_tissue_sparse import load
from genomelab.splits import fold_split, group_kfold
from genomelab.tissue.read_profiles import ReadsConfig, fit_read_profiles
from genomelab.tissue.sparse import degrade
from scipy.special import log_softmax

LR = "logistic regression (C on validation)"
READS = "read-profile model (the workflow's reads)"


def validation_nll(scores: np.ndarray, y: np.ndarray) -> float:
    """Minus the log-loss of ``scores`` [n, C] after their own temperature (higher is better,
    as the accuracy the fit ranks by)."""
    t = rp.temperature(scores, y)
    return float(log_softmax(scores / t, axis=1)[np.arange(len(y)), y].mean())


VARIANTS: dict[str, tuple[dict, Callable[[np.ndarray, np.ndarray], float]]] = {
    "default": ({}, rp._accuracy),
    "nll": ({}, validation_nll),
    "draws10": ({"validation_draws": 10}, rp._accuracy),
    "nll_draws10": ({"validation_draws": 10}, validation_nll),
    **{f"depth{d}": ({"choose_depth": d}, rp._accuracy) for d in (3, 5, 10, 30)},
}


def run_seed(
    csv: Path, seed: int, ceiling: Path | None, variants: list[str], folds_n: int = 5, draws: int = 5
) -> dict:
    samples, labels, _, betas = load(csv)
    classes, y = np.unique(labels, return_inverse=True)
    folds = group_kfold(samples, folds_n, seed=seed, stratify=labels)
    right = {v: np.zeros((draws, len(y)), bool) for v in variants}
    full = {v: np.zeros(len(y), bool) for v in variants}
    r30 = {v: np.zeros(len(y), bool) for v in variants}
    t0 = time.time()
    original = rp._accuracy
    for k in range(folds_n):
        split = np.asarray(fold_split(folds, k, samples, 0.25, seed, labels))
        tr, va, te = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
        for name in variants:
            overrides, criterion = VARIANTS[name]
            rp._accuracy = criterion
            try:
                model, _ = fit_read_profiles(
                    betas[tr], y[tr], betas[va], y[va], len(classes), ReadsConfig.from_dict(overrides), seed
                )
            finally:
                rp._accuracy = original
            with torch.no_grad():
                for d in range(draws):
                    means, _ = degrade(betas[te], 1, 1.0, np.random.default_rng([1000 + d, k]))
                    pred = model(torch.as_tensor(means), torch.ones(means.shape)).argmax(1).numpy()
                    right[name][d, te] = pred == y[te]
                pred = model(torch.as_tensor(betas[te]), torch.full(betas[te].shape, 150.0)).argmax(1).numpy()
                full[name][te] = pred == y[te]
                means, cover = degrade(betas[te], 30, 1.0, np.random.default_rng([2000, k]))
                pred = model(torch.as_tensor(means), torch.as_tensor(cover)).argmax(1).numpy()
                r30[name][te] = pred == y[te]
    out = {
        "seed": seed,
        **{v: right[v].mean(1).round(4).tolist() for v in variants},
        "full": {v: round(float(full[v].mean()), 4) for v in variants},
        "r30": {v: round(float(r30[v].mean()), 4) for v in variants},
        "seconds": round(time.time() - t0),
    }
    if ceiling is not None:
        methods = json.loads(ceiling.read_text())["methods"]
        out["LR"] = methods[LR]["draws"]
        out["ceiling_reads"] = methods[READS]["draws"]
    return out


def summarise(path: Path) -> None:
    """Per variant: one-read accuracy (and its gap to LR where the lines have it), and where
    the lines have them the complete and 30-read figures, each against the default."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    variants = [v for v in VARIANTS if all(v in r for r in rows)]  # those every line has
    default = np.array([np.mean(r["default"]) for r in rows])
    has_lr = all("LR" in r for r in rows)
    lr = np.array([np.mean(r["LR"]) for r in rows]) if has_lr else None
    print(f"{len(rows)} seeds" + (f"; logistic regression {lr.mean():.4f}" if lr is not None else ""))
    for v in variants:
        acc = np.array([np.mean(r[v]) for r in rows])
        moved = (acc - default) * 100
        line = f"{v:12s} one read {acc.mean():.4f} (SD {acc.std(ddof=1):.4f})"
        if lr is not None:
            gap = (acc - lr) * 100
            line += f"  minus LR {gap.mean():+.2f} points (+5 or more with {(gap >= 5).sum()} seeds)"
        line += f"  minus default {moved.mean():+.2f} (SD {moved.std(ddof=1):.2f})"
        for key in ("full", "r30"):
            if all(key in r for r in rows):
                a = np.array([r[key][v] for r in rows])
                d = (a - np.array([r[key]["default"] for r in rows])) * 100
                line += f"; {key} {a.mean():.4f} ({d.mean():+.2f}, SD {d.std(ddof=1):.2f})"
        print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path, nargs="?")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument(
        "--ceiling", type=Path, help="bench_tissue_one_read_ceiling.py's JSON of this seed (its LR figures)"
    )
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--summarise", type=Path, help="a JSON-lines file of this script's output")
    args = ap.parse_args()
    if args.summarise:
        summarise(args.summarise)
        return
    if args.csv is None:
        ap.error("give the cohort CSV (or --summarise)")
    variants = list(dict.fromkeys(["default", *args.variants]))  # the reference is always run
    torch.set_num_threads(1)
    print(json.dumps(run_seed(args.csv, args.seed, args.ceiling, variants)), flush=True)


if __name__ == "__main__":
    main()
