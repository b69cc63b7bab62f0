"""The attention model with and without the read likelihood on the demo's tissue data (issue 18).

Reads finished tissue-only workflow runs (one per variant of ``tissue.attention``, made with
the demo's tissue section; commands in benchmarks/results/tissue_sparse_idhwt_r4/README.md)
and writes, per run: the attention ensemble's test accuracy, balanced accuracy and ECE, its
members' test accuracies, its mean accuracy over the sparsity grid, each member's learned
likelihood weight exp(10 (g0 + g1 log1p(observed) + g2 log1p(depth))) at the test samples
(median), and the exact McNemar test of each run against the first on the test samples.

Usage:
    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_readlik_demo.py \\
        --root /work/scratch/tissue_h/demo --runs demo_def demo_in demo_xf demo_xf10 \\
        --out benchmarks/results/tissue_sparse_idhwt_r4/demo_readlik.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from genomelab.report.stats import mcnemar_predictions
from genomelab.tissue.task import load_task
from genomelab.train.export import load_exported


def member_weights(run: Path, coverage: np.ndarray, means: np.ndarray) -> list[float | None]:
    """Median likelihood weight over the given samples, per member (None: no likelihood)."""
    obs = np.isfinite(means) & (coverage > 0)
    n_obs = obs.sum(1)
    depth = (coverage * obs).sum(1) / np.maximum(n_obs, 1)
    out: list[float | None] = []
    for path in sorted(
        (run / "train/attention/members").glob("*/model.pt"), key=lambda p: int(p.parent.name)
    ):
        gate = load_exported(path, kind="attention").weights.get("reads.gate")
        if gate is None:
            out.append(None)
            continue
        g = 10 * gate.double().numpy()
        w = np.exp(np.clip(g[0] + g[1] * np.log1p(n_obs) + g[2] * np.log1p(depth), -12, 4))
        out.append(float(np.median(w)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, required=True, help="the workflow's working directory")
    ap.add_argument(
        "--runs", nargs="+", required=True, help="run names (config `run`); the first is the reference"
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    out, ref = {}, None
    for name in args.runs:
        run = args.root / "results" / name / "tissue"
        m = json.loads((run / "train/attention/metrics.json").read_text())
        data = load_task(run / "features/region_means.h5", run / "splits.tsv")
        test = data.index("test")
        rec = {
            "model_config": {k: m["model_config"][k] for k in ("read_likelihood", "read_likelihood_folds")},
            "test_accuracy": m["test"]["accuracy"],
            "test_balanced_accuracy": m["test"]["balanced_accuracy"],
            "test_ece": m["test"]["ece"],
            "n_test": m["test"]["n"],
            "member_test_accuracy": [x["test_accuracy"] for x in m["members"]],
            "grid_mean_accuracy": float(np.mean([p["accuracy"] for p in m["grid"]])),
            "grid": {f"{p['depth']}/{p['observed']}": p["accuracy"] for p in m["grid"]},
            "member_weight_median_test": member_weights(
                run, data.coverage[test].astype(float), data.means[test].astype(float)
            ),
        }
        if ref is None:
            ref = m["predictions"]
        else:
            t = mcnemar_predictions(m["predictions"], ref)
            rec[f"mcnemar_vs_{args.runs[0]}"] = {"p_value": t.p_value, "favours": t.favours}
        out[name] = rec
        print(name, {k: v for k, v in rec.items() if k != "grid"}, flush=True)
    args.out.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
