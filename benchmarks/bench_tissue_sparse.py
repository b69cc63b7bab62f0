"""Tissue models vs fair baselines on real TCGA glioma betas, complete and sparse (issue 18).

K-fold cross-validation by sample (the workflow's ``group_kfold`` + ``fold_split``), regions
chosen inside each fold on its training samples (``task.select_regions``), every model and
baseline through the workflow's own functions (``run_baselines``, ``train_model``,
``combine_members``, ``build_fold_summary``), so the figures are what the workflow reports:
paired exact McNemar tests on the pooled out-of-fold predictions, at full coverage and at
each point of the sparsity grid (reads per region x fraction of regions observed).

Usage (about 5-10 CPU-minutes on one thread with the defaults):
    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_sparse.py \
        ../shared/data/methylation_tcga_glioma/glioma.idhwt.trainingData.csv.gz \
        --out benchmarks/results/tissue_sparse_idhwt --folds 5 --regions 200
Writes ``<out>/summary.{json,md}``, ``comparison.tsv``, ``plots/{grid,coverage}.json``,
``plots/grid.tsv`` and ``bench.json`` (timings, config).

The betas enter as region means directly (what ``tissue_convert_tcga.py`` gives, to 1/300),
with 150 calls per region; the grid draws reads from each beta by the binomial read model.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from genomelab.io.tables import write_split_table
from genomelab.splits import fold_split, group_kfold
from genomelab.tissue.baselines import BaselineConfig, run_baselines
from genomelab.tissue.calibration import CalibrationConfig
from genomelab.tissue.kinds import CLOSED_FORM
from genomelab.tissue.report import build_fold_summary
from genomelab.tissue.sparse import SparsityConfig
from genomelab.tissue.task import TissueData, select_regions
from genomelab.tissue.training import combine_members, fit_read_model, train_model

# name -> (kind, model config); the plain MLP is the earlier default model, trained on
# complete data only, the others train with masking and read resampling.
MODELS = {
    "mlp": ("mlp", {"hidden": [128, 64], "sparse_training": 0.0}),
    "mlp_sparse": ("mlp", {"hidden": [128, 64], "sparse_training": 0.8}),
    "attention_sparse": ("attention", {"hidden": [128, 64], "dim": 16, "sparse_training": 0.8}),
    "masked": ("masked", {}),
    "reads": ("reads", {}),
}
TITLES = {
    "mlp": "file-level MLP",
    "mlp_sparse": "file-level MLP (sparse training)",
    "attention_sparse": "region-attention model (sparse training)",
    "masked": "masked single-layer model",
    "reads": "read-profile model",
}


def load(csv: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(samples [n], labels [n], probes [R], betas float32 [n, R]) of a TCGA training CSV."""
    df = pd.read_csv(csv)
    df = df[df["label"].notna() & (df["label"].astype(str) != "NA")]
    probes = np.asarray(df.columns[2:])
    return (
        df["sample"].astype(str).to_numpy(),
        df["label"].astype(str).to_numpy(),
        probes,
        df[probes].to_numpy(np.float32),
    )


def task_of(samples, labels, probes, betas, split) -> TissueData:
    classes, y = np.unique(labels, return_inverse=True)
    return TissueData(
        samples=samples,
        groups=samples.copy(),
        tissue=np.full(len(samples), "Glioma"),
        labels=labels,
        classes=classes,
        y=y.astype(np.int64),
        means=betas,
        coverage=np.full(betas.shape, 150, np.uint16),
        regions=probes,
        n_positions=150,
        split=split,
    )


def rebuild_fold(run: Path, k: int) -> TissueData:
    """Fold ``k``'s task of a finished run (its ``bench.json``: CSV, seed, folds, regions), as
    ``main`` built it: for scripts that score a run's saved models again."""
    args = json.loads((run / "bench.json").read_text())["args"]
    samples, labels, probes, betas = load(Path(args["csv"]))
    seed = int(args["seed"])
    folds = group_kfold(samples, int(args["folds"]), seed=seed, stratify=labels)
    split = fold_split(folds, k, samples, 0.25, seed, labels)
    return select_regions(task_of(samples, labels, probes, betas, split), int(args["regions"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--regions", type=int, default=200, help="in-fold selection (0 = all)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--patience", type=int, default=15)
    ap.add_argument(
        "--refit-budget",
        type=int,
        default=None,
        help="tissue.baselines.refit_budget (default: the schema's; 0 = no refit baseline, a quicker run)",
    )
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument(
        "--members", type=int, default=1, help="ensemble members per model (the workflow's tissue.ensemble)"
    )
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=KIND:JSON",
        help='an extra model, e.g. masked_noclip=masked:{"z_clip": 0} (then list NAME in --models)',
    )
    ap.add_argument(
        "--one-temperature",
        action="store_true",
        help="tissue.calibration.by_profile false: one temperature on complete validation samples",
    )
    ap.add_argument("--device", default="cpu", help="training device of the models (cpu, cuda)")
    ap.add_argument("--depths", nargs="+", type=int, default=[30, 10, 3, 1])
    ap.add_argument("--observed", nargs="+", type=float, default=[1.0, 0.5, 0.1, 0.02])
    args = ap.parse_args()
    for spec in args.variant:
        name, _, rest = spec.partition("=")
        kind, _, cfg = rest.partition(":")
        MODELS[name] = (kind, json.loads(cfg or "{}"))
        TITLES[name] = name  # the config goes to bench.json; a title names plot files
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(1)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    samples, labels, probes, betas = load(args.csv)
    folds = group_kfold(samples, args.folds, seed=args.seed, stratify=labels)
    write_split_table(
        [
            {"sample": s, "source_sample": s, "tissue": "Glioma", "label": lab, "fold": str(f)}
            for s, lab, f in zip(samples, labels, folds, strict=True)
        ],
        out / "folds.tsv",
        kind="fold",
    )
    sparsity = SparsityConfig(depths=args.depths, observed=args.observed)
    cal = CalibrationConfig(by_profile=not args.one_temperature)
    train_cfg = {"max_epochs": args.max_epochs, "batch_size": 32, "lr": args.lr, "patience": args.patience}
    timings: dict[str, float] = {}
    baselines, metrics, diags = [], {m: [] for m in args.models}, {m: [] for m in args.models}
    for k in range(args.folds):
        split = fold_split(folds, k, samples, 0.25, args.seed, labels)
        data = select_regions(task_of(samples, labels, probes, betas, split), args.regions)
        t0 = time.perf_counter()
        base_cfg = (
            BaselineConfig() if args.refit_budget is None else BaselineConfig(refit_budget=args.refit_budget)
        )
        base = run_baselines(data, base_cfg, seed=args.seed, cal=cal, sparsity=sparsity)
        timings["baselines"] = timings.get("baselines", 0) + time.perf_counter() - t0
        path = out / f"folds/{k}/baselines.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(base))
        baselines.append(path)
        for name in args.models:
            kind, cfg = MODELS[name]
            d = out / f"folds/{k}/{name}"
            t0 = time.perf_counter()
            members = [] if kind in CLOSED_FORM else [d / f"m{m}" for m in range(args.members)]
            if kind in CLOSED_FORM:
                # One closed-form fit per fold, as the workflow's tissue_reads rule.
                fit_read_model(data, cfg, d, cal, sparsity, args.seed, args.seed)
            for m, md in enumerate(members):
                # Seeds as the workflow's ensemble members: seed + 1000 x member.
                seed = args.seed + 1000 * m
                train_model(
                    kind, data, cfg, train_cfg, out / ".state" / f"{k}_{name}_{m}", md, args.device, seed
                )
            if members:
                combine_members(
                    kind,
                    data,
                    [md / "model.pt" for md in members],
                    [md / "metrics.json" for md in members],
                    [md / "diagnostics.json" for md in members],
                    d,
                    cal,
                    sparsity,
                    args.seed,
                )
            timings[name] = timings.get(name, 0) + time.perf_counter() - t0
            rec = json.loads((d / "metrics.json").read_text())
            rec["title"] = TITLES[name]  # two MLP variants need two names in one table
            (d / "metrics.json").write_text(json.dumps(rec))
            metrics[name].append(d / "metrics.json")
            diags[name].append(d / "diagnostics.json")
            print(
                f"fold {k} {name}: test acc {rec['test']['accuracy']:.3f} ({timings[name]:.0f} s so far)",
                flush=True,
            )
    build_fold_summary(out / "folds.tsv", baselines, metrics, diags, [], out)
    (out / "bench.json").write_text(
        json.dumps(
            {
                "args": {k: str(v) for k, v in vars(args).items()},
                "models": {m: MODELS[m] for m in args.models},
                "seconds": timings,
                "n_samples": len(samples),
                "n_probes": len(probes),
            },
            indent=2,
        )
    )
    print((out / "summary.md").read_text())


if __name__ == "__main__":
    main()
