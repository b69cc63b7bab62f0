"""Assoc on real E. coli regulator -> gene links with K-fold cross-validation of the links.

The data, features, known source (iModulon membership) and network settings of
``bench_assoc_linkpred.py`` (PRECISE ``trn.csv`` in ``resources/assoc``: 236 regulators, 2,568
genes, 7,897 pairs used in both directions), but instead of one drawn 70/15/15 split the
pairs are dealt into K folds with ``--seed`` exactly as ``assoc.evaluation.folds`` does
(``genomelab.assoc.data.prepare_data``): fold f tests its pairs, validation pairs (early
stopping) come from the other folds. Popularity, kNN and ridge see each fold's split too.
The tables are the workflow summary's (``fold_scheme_comparisons``): per-link MRR and
Hits@10 in both directions as mean +- SD over folds, a paired t-test across folds, and
each fold's own Wilcoxon test over its links in the details.

    PYTHONPATH=workflow/scripts nice -n 5 python benchmarks/bench_assoc_folds.py \\
        --shared ../shared/data --out /tmp/assoc_folds [--folds 5] [--seed 42] [--max-epochs 60] \\
        [--variant t2sw0.8_ld128 s2t_weight=0.2 t2s_weight=0.8 link_dim=128] [--save]

``--variant`` as in ``bench_assoc_linkpred.py`` (a name, then model keys, ``train.key`` or
``point.key`` = JSON values); without it the demo grid point of that script. Each fold's
outputs are kept under ``--out``/<variant>_e<max epochs>/; a rerun skips finished folds.
The result is written there to results.json and, with ``--save``, under the run's name into
benchmarks/results/bench_assoc_folds.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_assoc_linkpred import (  # noqa: E402
    DEMO_MODEL,
    DEMO_POINT,
    DEMO_TRAIN,
    imodulon_links,
    parse_variant,
)
from genomelab.assoc import baselines as bl  # noqa: E402
from genomelab.assoc import data as D  # noqa: E402
from genomelab.assoc import features as Fe  # noqa: E402
from genomelab.assoc import summary as Su  # noqa: E402
from genomelab.assoc import training as T  # noqa: E402
from genomelab.config import schema_defaults  # noqa: E402
from genomelab.io.atomic import atomic_write_json  # noqa: E402


def prepare(shared: Path, out: Path, seed: int, k: int) -> Path:
    """The links in ``k`` folds (``data/folds/<f>/splits.npz``) and the entity features."""
    # One data folder per fold count and seed: runs sharing --out must not reuse another
    # draw's folds (the saved 5-fold seed-42 run used out/data).
    data_dir = out / ("data" if (k, seed) == (5, 42) else f"data_k{k}_s{seed}")
    if not (data_dir / "feat.npz").exists():
        res = ROOT / "resources" / "assoc"
        D.prepare_data(
            res / "links.tsv",
            res / "sources.tsv",
            res / "targets.tsv",
            data_dir,
            seed,
            confidence_words=schema_defaults("assoc.data")["confidence_words"],
            exclude_known=imodulon_links(shared, out),
            folds=k,
        )
        cfg = Fe.FeatureConfig.from_dict(schema_defaults("assoc.features"))
        Fe.build_features(data_dir, data_dir / "feat.npz", data_dir / "featurizer.npz", cfg, seed)
    return data_dir


def run_fold(data_dir: Path, out: Path, fold: int, max_epochs: int, variant: list[str]) -> tuple[Path, Path]:
    """Baselines and the network on one fold: (grid selection JSON, baselines JSON)."""
    fold_dir = out / f"fold{fold}"
    splits = data_dir / "folds" / str(fold) / "splits.npz"
    # The baselines do not depend on the network variant: one file per fold for all runs.
    base_path, grid_path = data_dir / "folds" / str(fold) / "baselines.json", fold_dir / "grid.json"
    if not base_path.exists():
        atomic_write_json(
            base_path, bl.run_baselines(data_dir, data_dir / "feat.npz", "links", splits_path=splits)
        )
    if not grid_path.exists():
        name, model_over, train_over, point_over = parse_variant(variant)
        model = {**schema_defaults("assoc.model"), **DEMO_MODEL, **model_over}
        train = {
            **schema_defaults("assoc.train"),
            **DEMO_TRAIN,
            "max_epochs": max_epochs,
            **train_over,
            "seed": 0,
        }
        t0 = time.time()
        report = T.train_run(
            data_dir,
            data_dir / "feat.npz",
            "links",
            model,
            train,
            {**DEMO_POINT, **point_over},
            fold_dir / "run",
            fold_dir / "state",
            "cpu",
            splits_path=splits,
        )
        value = report["val"].get("val/link_mrr_mean", float("nan"))
        grid = {
            "metric": "val/link_mrr_mean",
            "best_run": name,
            "best": {"test": report["test"]},
            "runs": [{"run": name, "value": value}],
            "test_ranks": report["test_ranks"],
            "seconds": time.time() - t0,
            "epochs_run": report["epochs_run"],
            "best_epoch": report["best_epoch"],
        }
        atomic_write_json(grid_path, grid)
    return grid_path, base_path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--max-epochs", type=int, default=60)
    ap.add_argument("--variant", nargs="*", default=[])
    ap.add_argument(
        "--save", action="store_true", help="also write benchmarks/results/bench_assoc_folds.json"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    data_dir = prepare(args.shared, args.out, args.seed, args.folds)
    run = f"{parse_variant(args.variant)[0]}_e{args.max_epochs}"
    if args.folds != 5 or args.seed != 42:  # the saved runs' names before other fold counts
        run += f"_k{args.folds}_s{args.seed}"
    run_dir = args.out / run
    paths = [run_fold(data_dir, run_dir, f, args.max_epochs, args.variant) for f in range(args.folds)]
    grids = [json.loads(g.read_text()) for g, _ in paths]
    bases = [json.loads(b.read_text()) for _, b in paths]
    comps = Su.fold_scheme_comparisons("links", grids, bases)
    result = {
        "run": run,
        "variant": args.variant,
        "folds": args.folds,
        "seed": args.seed,
        "max_epochs": args.max_epochs,
        "per_fold": [{k: g[k] for k in ("seconds", "epochs_run", "best_epoch")} for g in grids],
        "comparisons": [c.to_dict() for c in comps],
        "verdicts": [f"{c.title}: {c.verdict()}" for c in comps],
    }
    atomic_write_json(run_dir / "results.json", result)
    if args.save:
        saved = ROOT / "benchmarks" / "results" / "bench_assoc_folds.json"
        runs = json.loads(saved.read_text()) if saved.exists() else {}
        atomic_write_json(saved, {**runs, run: result})
    for c in comps:
        print(f"\n## {c.title}")
        net = next(iter(c.rows))
        for method, row in c.rows.items():
            sd = c.spread.get(method, {})
            cells = " ".join(f"{k}={v:.4f}+-{sd.get(k, float('nan')):.4f}" for k, v in row.items())
            test = c.tests.get(Su.pair_key(net, method))
            extra = ""
            if test:
                d = test["details"]
                within = ",".join(f"{w['p_value']:.2g}" for w in d["within_folds"] if w)
                pooled = d.get("pooled_folds") or {}
                extra = (
                    f" | paired t across folds p={test['p_value']:.2g} ({test['favours']}),"
                    f" Wilcoxon across folds p={d['wilcoxon_across_folds']['p_value']:.2g},"
                    f" within folds p=[{within}], pooled p={pooled.get('p_value', float('nan')):.2g}"
                )
            print(f"{method}: {cells}{extra}")
        print("verdict:", c.verdict())


if __name__ == "__main__":
    main()
