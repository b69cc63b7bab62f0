"""Cold start of the assoc network: ranking entities without training links, over seeds.

On the data and features the workflow prepared (``results/demo/assoc/data``,
``results/demo/assoc/features``; make them with ``snakemake --cores 2 --configfile config/demo.yaml
results/demo/assoc/features/entities.npz``), trains the network at the demo's grid point (lr
0.01, batch 512, dropout 0.1, bridge 32, d_model 32, 2 layers, link term 32-d, at most 60
epochs, patience 10, checkpoint on ``val/mrr_mean``) once per cold-start variant and seed,
and records validation and test metrics next to the baselines (popularity, kNN, ridge) on
the same split. Variants are chosen on validation; test is reported, never used to choose.

With ``--split-seeds`` it also draws other random splits of the same data (the workflow's
``assign_splits`` with that seed) and compares the baselines with the variants there: one
split's 35 test regulators make the source -> target MRR noisy.

Writes benchmarks/results/bench_assoc_coldstart.json (one key per scheme, merged with
what is there) and prints a table.

    PYTHONPATH=workflow/scripts python benchmarks/bench_assoc_coldstart.py \\
        [--scheme entities] [--variants none knn mlp knn_dropout] [--seeds 0 1 2] \\
        [--split-seeds 1 2 3] [--results results/demo/assoc]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.assoc import baselines as bl  # noqa: E402
from genomelab.assoc import data as D  # noqa: E402
from genomelab.assoc import training as T  # noqa: E402
from genomelab.assoc.data import assign_splits  # noqa: E402
from genomelab.assoc.features import load_features  # noqa: E402
from genomelab.assoc.metrics import evaluate  # noqa: E402
from genomelab.io.atomic import atomic_write_json  # noqa: E402

DEMO_MODEL = {"d_model": 32, "n_layers": 2, "dropout": 0.1, "bridge_dim": 32, "link_dim": 32}
DEMO_TRAIN = {"lr": 0.01, "batch_size": 512, "max_epochs": 60, "patience": 10}
DEMO_TRAIN |= {"monitor": "val/mrr_mean", "mode": "max"}
VARIANTS = {
    "none": {"cold_start": "none"},
    "knn": {"cold_start": "knn"},
    "knn_k5": {"cold_start": "knn", "cold_start_k": 5},
    "knn_k20": {"cold_start": "knn", "cold_start_k": 20},
    "knn_dropout": {"cold_start": "knn", "cold_start_dropout": 0.3},
    "mlp": {"cold_start": "mlp", "cold_start_dropout": 0.3},
    "mlp_dropout0.5": {"cold_start": "mlp", "cold_start_dropout": 0.5},
}
REPORTED = ("s2t_acc@1", "s2t_acc@5", "s2t_acc@10", "s2t_mrr", "t2s_acc@1", "t2s_acc@5", "t2s_acc@10")
REPORTED += ("t2s_mrr", "mrr_mean", "consistency@10")


def baselines(feats, labels, links, link_split) -> dict:
    vectors = {side: bl.entity_vectors(feats[side]) for side in ("source", "target")}
    out = {}
    for model in (bl.PopularityBaseline(), bl.KnnBaseline(vectors, 10), bl.RidgeBaseline(vectors, 1.0)):
        model.fit(labels["train"])
        out[model.name] = {
            s: {m: evaluate(model, labels[s], links, link_split)[m] for m in REPORTED}
            for s in ("val", "test")
        }
    return out


def network(feats, labels, links, link_split, variant: str, seed: int) -> dict:
    torch.manual_seed(seed)
    model = T.build_model({**DEMO_MODEL, **VARIANTS[variant]}, feats, labels["train"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        paths = T.RunPaths(Path(tmp) / "state", Path(tmp) / "metrics.json", None)
        train_cfg = T.effective_train_config({**DEMO_TRAIN, "seed": seed}, False)
        _, result = T.train_model(model, train_cfg, labels, links, link_split, paths, "cpu")
    return {
        "best_epoch": result["best_epoch"],
        "seconds": time.perf_counter() - start,
        "val": {m: result["val"][f"val/{m}"] for m in REPORTED},
        "test": {m: result["test"][f"test/{m}"] for m in REPORTED},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", default="entities", choices=("links", "entities"))
    parser.add_argument("--variants", nargs="+", default=["none", "knn", "mlp", "knn_dropout"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--split-seeds", type=int, nargs="*", default=[])
    parser.add_argument("--split-variants", nargs="+", default=["none", "knn"])
    parser.add_argument("--results", default=str(ROOT / "results" / "demo" / "assoc"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_assoc_coldstart.json"))
    args = parser.parse_args()
    for v in args.variants + args.split_variants:
        if v not in VARIANTS:
            raise ValueError(f"unknown variant {v!r}; known: {sorted(VARIANTS)}")
    torch.set_num_threads(args.threads)
    res = Path(args.results)
    sources, targets, links, assignment = D.load_data(res / "data")
    feats = load_features(res / "features" / "entities.npz")
    labels = D.all_labels(links, assignment, args.scheme, len(sources), len(targets))
    split = assignment.links[args.scheme]
    out = {
        "scheme": args.scheme,
        "demo_model": DEMO_MODEL,
        "demo_train": DEMO_TRAIN,
        "variants": {v: VARIANTS[v] for v in args.variants},
        "baselines": baselines(feats, labels, links, split),
        "network": {
            v: {s: network(feats, labels, links, split, v, s) for s in args.seeds} for v in args.variants
        },
        "other_splits": {},
    }
    for split_seed in args.split_seeds:
        asg = assign_splits(links, len(sources), len(targets), (0.7, 0.15, 0.15), split_seed)
        lab = D.all_labels(links, asg, args.scheme, len(sources), len(targets))
        out["other_splits"][split_seed] = {
            "baselines": baselines(feats, lab, links, asg.links[args.scheme]),
            "network": {
                v: network(feats, lab, links, asg.links[args.scheme], v, 0) for v in args.split_variants
            },
        }
    out["machine"] = {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__}
    path = Path(args.out)
    merged = json.loads(path.read_text()) if path.is_file() else {}
    merged[args.scheme] = out
    atomic_write_json(path, merged)

    print(f"{args.scheme} scheme: method, val mrr_mean, test " + " ".join(REPORTED))
    rows = [(name, r) for name, r in out["baselines"].items()]
    rows += [(f"{v} s{s}", r) for v, runs in out["network"].items() for s, r in runs.items()]
    for name, r in rows:
        test = " ".join(f"{r['test'][m]:.3f}" for m in REPORTED)
        print(f"{name:>16}: {r['val']['mrr_mean']:.3f} | {test}")
    for split_seed, o in out["other_splits"].items():
        vals = {**{k: v["test"]["mrr_mean"] for k, v in o["baselines"].items()}}
        vals |= {f"network {k}": v["test"]["mrr_mean"] for k, v in o["network"].items()}
        print(
            f"split seed {split_seed}, test mrr_mean: " + ", ".join(f"{k} {v:.3f}" for k, v in vals.items())
        )


if __name__ == "__main__":
    main()
