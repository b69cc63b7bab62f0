"""Why does the assoc network lose to ridge? Learning curves and a matrix-factorisation probe.

On one scheme of the data and features the workflow prepared (``results/demo/assoc/data``,
``results/demo/assoc/features``; make them with ``snakemake --cores 2 --configfile config/demo.yaml
results/demo/assoc/features/entities.npz``):

1. **Learning curves** of the network at the demo's grid point, early stopping switched off
   (patience = max_epochs) so the whole curve shows: per epoch train loss, val loss and
   val MRR per direction. The test metrics are those of the engine's best checkpoint (best
   validation loss), as in the workflow.
2. **Matrix-factorisation probe**: free per-entity vectors, score = e_s . e_t + bias, the
   *same* confidence-weighted BCE (``weighted_bce``, 0.6 s2t + 0.4 t2s), full-batch Adam,
   an L2 penalty on the vectors chosen on validation. It measures how much link structure
   the held-out-links split holds beyond what features give (ridge, kNN).
3. The baselines (popularity, kNN, ridge) on the same split.

Prints a table per seed and writes benchmarks/results/bench_assoc_probe.json.

    PYTHONPATH=workflow/scripts python benchmarks/bench_assoc_probe.py [--scheme links]
        [--seeds 0 1 2] [--epochs 60] [--results results/demo/assoc]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.assoc import baselines as bl  # noqa: E402
from genomelab.assoc import data as D  # noqa: E402
from genomelab.assoc import training as T  # noqa: E402
from genomelab.assoc.data import DIRECTIONS  # noqa: E402
from genomelab.assoc.features import load_features  # noqa: E402
from genomelab.assoc.metrics import evaluate  # noqa: E402
from genomelab.assoc.model import weighted_bce  # noqa: E402
from genomelab.io.atomic import atomic_write_json  # noqa: E402

DEMO_MODEL = {"d_model": 32, "n_layers": 2, "dropout": 0.1, "bridge_dim": 32}
DEMO_POINT = {"lr": 0.01, "batch_size": 512}
REPORTED = ("s2t_acc@1", "s2t_acc@5", "s2t_acc@10", "s2t_mrr", "t2s_acc@1", "t2s_acc@5", "t2s_acc@10")
REPORTED += ("t2s_mrr", "mrr_mean")


def network_curve(data, feats, scheme: str, seed: int, epochs: int) -> dict:
    sources, targets, links, assignment = data
    labels = D.all_labels(links, assignment, scheme, len(sources), len(targets))
    train = {"max_epochs": epochs, "patience": epochs, "seed": seed, **DEMO_POINT}
    torch.manual_seed(seed)
    model = T.build_model(DEMO_MODEL, feats, labels["train"])
    with tempfile.TemporaryDirectory() as tmp:
        paths = T.RunPaths(Path(tmp) / "state", Path(tmp) / "metrics.json", None)
        _, result = T.train_model(
            model,
            T.effective_train_config(train, False),
            labels,
            links,
            assignment.links[scheme],
            paths,
            "cpu",
        )
        history = json.loads(paths.metrics.read_text())["history"]
    keys = ("epoch", "train/loss", "val/loss", "val/s2t_mrr", "val/t2s_mrr", "val/mrr_mean")
    return {
        "best_epoch": result["best_epoch"],
        "test": {m: result["test"][f"test/{m}"] for m in REPORTED},
        "curve": [{k: h.get(k) for k in keys} for h in history],
    }


def mf_probe(data, scheme: str, seed: int, lambdas: list[float], dim: int = 32, steps: int = 150) -> dict:
    """Plain matrix factorisation on the training links; lambda picked on val mrr_mean."""
    sources, targets, links, assignment = data
    labels = D.all_labels(links, assignment, scheme, len(sources), len(targets))
    train = labels["train"]
    y = {d: torch.from_numpy(train.dense_rows(d, np.arange(train.labels[d].shape[0]))) for d in DIRECTIONS}
    runs = []
    for lam in lambdas:
        torch.manual_seed(seed)
        e_s = torch.nn.Parameter(0.1 * torch.randn(len(sources), dim))
        e_t = torch.nn.Parameter(0.1 * torch.randn(len(targets), dim))
        b_t = torch.nn.Parameter(torch.full((len(targets),), -4.0))
        b_s = torch.nn.Parameter(torch.full((len(sources),), -4.0))
        opt = torch.optim.Adam([e_s, e_t, b_t, b_s], lr=0.01)
        for _ in range(steps):
            inter = e_s @ e_t.T
            loss = 0.6 * weighted_bce(inter + b_t, y["s2t"]) + 0.4 * weighted_bce(
                inter.T + b_s[None], y["t2s"]
            )
            loss = loss + lam * ((e_s**2).sum(1).mean() + (e_t**2).sum(1).mean())
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            inter = (e_s @ e_t.T).numpy()
            s2t, t2s = inter + b_t.numpy(), inter.T + b_s.numpy()[None]

        def score(direction, q, s2t=s2t, t2s=t2s):
            return s2t[q] if direction == "s2t" else t2s[q]

        val = evaluate(score, labels["val"], links, assignment.links[scheme])
        test = evaluate(score, labels["test"], links, assignment.links[scheme])
        runs.append({"lambda": lam, "val_mrr_mean": val["mrr_mean"], "test": {m: test[m] for m in REPORTED}})
    best = max(runs, key=lambda r: r["val_mrr_mean"])
    return {"best_lambda": best["lambda"], "test": best["test"], "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scheme", default="links", choices=("links", "entities"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lambdas", type=float, nargs="+", default=[1e-4, 1e-3, 3e-3])
    parser.add_argument("--results", default=str(ROOT / "results" / "demo" / "assoc"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_assoc_probe.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    res = Path(args.results)
    data = D.load_data(res / "data")
    feats = load_features(res / "features" / "entities.npz")
    start = time.perf_counter()
    baselines = bl.run_baselines(res / "data", res / "features" / "entities.npz", args.scheme)
    out = {
        "scheme": args.scheme,
        "baselines": {name: {m: r["test"][m] for m in REPORTED} for name, r in baselines.items()},
        "network": {},
        "mf_probe": {},
    }
    for seed in args.seeds:
        out["network"][seed] = network_curve(data, feats, args.scheme, seed, args.epochs)
        if args.scheme == "links":  # free vectors say nothing about entities without links
            out["mf_probe"][seed] = mf_probe(data, args.scheme, seed, args.lambdas)
    out["seconds"] = time.perf_counter() - start
    out["machine"] = {"platform": platform.platform(), "threads": args.threads, "torch": torch.__version__}
    atomic_write_json(args.out, out)

    cols = ("s2t_acc@1", "s2t_acc@5", "s2t_acc@10", "s2t_mrr", "t2s_acc@1", "t2s_acc@5", "t2s_acc@10")
    cols += ("t2s_mrr", "mrr_mean")
    print(f"{args.scheme} scheme, test split: " + " ".join(f"{c:>10}" for c in cols))
    rows = [(name, r) for name, r in out["baselines"].items()]
    for seed in args.seeds:
        rows.append((f"network s{seed}", out["network"][seed]["test"]))
        if seed in out["mf_probe"]:
            rows.append((f"MF probe s{seed}", out["mf_probe"][seed]["test"]))
    for name, r in rows:
        print(f"{name:>22}: " + " ".join(f"{r[c]:10.4f}" for c in cols))
    print(f"network learning curve (seed {args.seeds[0]}): epoch train/loss val/loss val/s2t_mrr val/t2s_mrr")
    for h in out["network"][args.seeds[0]]["curve"][:: max(1, args.epochs // 12)]:
        print(
            f"  {int(h['epoch']):3d} {h['train/loss']:.4f} {h['val/loss']:.4f} "
            f"{h['val/s2t_mrr']:.4f} {h['val/t2s_mrr']:.4f}"
        )


if __name__ == "__main__":
    main()
