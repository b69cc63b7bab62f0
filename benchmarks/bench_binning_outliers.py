"""Are the contigs far from every cluster the mis-binned ones? The outlier rule measured.

    nice -n 5 python benchmarks/bench_binning_outliers.py [--seeds 1 2 3] \
        [--out benchmarks/results/bench_binning_outliers.json]

Shreds the genomes of ``../shared/data/binning_genomes/genomes`` as the workflow's shred rule
does, trains the default model per seed (as ``bench_binning_contrastive.py``) and clusters
its embedding and the TNF baseline's with the schema's ``binning.cluster`` defaults but no
outlier removal. A contig is *mis-binned* when its genome is not the one holding most bp of
its cluster. For every outlier rule (:func:`genomelab.binning.cluster.outlier_mask` with
``outlier_fence`` = k, and the older fixed multiple of the cluster's median) the JSON has:
the contigs and bp left out, the precision of the left-out set (share of left-out bp that
was mis-binned) beside the base rate (share of all bp mis-binned), the recall of mis-binned
bp, and the bp-ARI with and without the rule (unbinned contigs count as singletons).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_binning_contrastive import add_data_args, genome_files, run_contrastive, score, shred_and_profile  # noqa: E402
from genomelab.binning.baselines import BaselineConfig, tnf_embedding  # noqa: E402
from genomelab.binning.cluster import ClusterConfig, cluster_contigs, cluster_points, knn, outlier_mask  # noqa: E402
from genomelab.binning.encode import encode_and_cluster  # noqa: E402
from genomelab.config import schema_default, schema_defaults  # noqa: E402
from genomelab.train import resolve_device  # noqa: E402

RULES = {
    "fence_1.5": {"outlier_fence": 1.5, "outlier_ratio": 0.0},
    "fence_3": {"outlier_fence": 3.0, "outlier_ratio": 0.0},
    "ratio_1.5": {"outlier_fence": 0.0, "outlier_ratio": 1.5},
    "ratio_2": {"outlier_fence": 0.0, "outlier_ratio": 2.0},
}


def misbinned(labels: np.ndarray, genomes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """[n] bool: the contig's genome is not its cluster's majority genome (by bp)."""
    frame = pd.DataFrame({"c": labels, "g": genomes, "bp": lengths})
    major = frame.groupby(["c", "g"])["bp"].sum().reset_index().sort_values("bp").groupby("c").last()["g"]
    return frame["g"].to_numpy() != major.loc[frame["c"]].to_numpy()


def measure(emb, inputs, genomes, seed: int, min_bin_bp: int) -> dict:
    base = schema_defaults("binning.cluster")
    ccfg = ClusterConfig.from_dict({**base, "outlier_fence": 0.0, "outlier_ratio": 0.0}, seed=seed)
    labels = cluster_contigs(emb, inputs.lengths, ccfg, min_bin_bp)
    dist = knn(cluster_points(emb, None, ccfg), ccfg)[1]
    wrong = misbinned(labels, genomes, inputs.lengths)
    bp = inputs.lengths.astype(np.float64)
    out = {
        "no_rule": score(labels, genomes, inputs.lengths, min_bin_bp),
        "misbinned_bp_fraction": float(bp[wrong].sum() / bp.sum()),
    }
    for name, rule in RULES.items():
        cfg = ClusterConfig.from_dict({**base, **rule}, seed=seed)
        left = outlier_mask(labels, dist, cfg)
        kept = np.where(left, -1, labels)
        out[name] = {
            **score(kept, genomes, inputs.lengths, min_bin_bp),
            "n_left_out": int(left.sum()),
            "bp_left_out": int(bp[left].sum()),
            "bp_left_out_fraction": float(bp[left].sum() / bp.sum()),
            "precision_left_out_bp": float(bp[left & wrong].sum() / max(bp[left].sum(), 1)),
            "recall_misbinned_bp": float(bp[left & wrong].sum() / max(bp[wrong].sum(), 1)),
            "left_out_by_genome_bp": {
                str(g): int(bp[left & (genomes == g)].sum()) for g in np.unique(genomes[left])
            },
        }
    return out


MEAN_KEYS = (
    "ari_bp",
    "ari_bp_binned",
    "bp_left_out_fraction",
    "precision_left_out_bp",
    "recall_misbinned_bp",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_binning_outliers.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.min_bin_bp = int(schema_default("binning.bins.min_bin_bp"))
    device = resolve_device("cpu")
    result: dict = {
        "seeds": args.seeds,
        "rules": RULES,
        "command": "python " + " ".join(sys.argv),
        "runs": {},
    }
    runs = result["runs"]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs, genomes, _ = shred_and_profile(genome_files(args.genomes), work, args.shred_seed)
        tnf = tnf_embedding(inputs.x, BaselineConfig.from_dict(schema_defaults("binning.baseline")))
        for seed in args.seeds:
            ccfg = ClusterConfig.from_dict(schema_defaults("binning.cluster"), seed=seed)
            run_contrastive(work, inputs, genomes, args, seed, ccfg, device, {}, {})
            latent, _ = encode_and_cluster(work / f"contrastive{seed}" / "model.pt", inputs, ccfg, device)
            runs[seed] = {
                "default": measure(latent, inputs, genomes, seed, args.min_bin_bp),
                "tnf": measure(tnf, inputs, genomes, seed, args.min_bin_bp),
            }
            for m, r in runs[seed].items():
                print(
                    seed, m, "no rule", round(r["no_rule"]["ari_bp"], 3), round(r["misbinned_bp_fraction"], 3)
                )
                for name in RULES:
                    print("   ", name, {k: round(r[name][k], 3) for k in MEAN_KEYS}, flush=True)

    def mean(m: str, *path: str) -> float:
        values = []
        for s in args.seeds:
            v = runs[s][m]
            for key in path:
                v = v[key]
            values.append(v)
        return float(np.mean(values))

    result["mean"] = {
        m: {
            "no_rule_ari_bp": mean(m, "no_rule", "ari_bp"),
            "misbinned_bp_fraction": mean(m, "misbinned_bp_fraction"),
            **{name: {k: mean(m, name, k) for k in (*MEAN_KEYS, "n_near_complete_bins")} for name in RULES},
        }
        for m in ("default", "tnf")
    }
    Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps(result["mean"], indent=2))


if __name__ == "__main__":
    main()
