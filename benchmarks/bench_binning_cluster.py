"""The TNF baseline's bins on the real genomes: the new clustering against the old one.

    nice -n 5 python benchmarks/bench_binning_cluster.py [--seeds 0 1 2] [--shred-seed 1]
        [--old-rev 964a01e] [--outlier-ratios 0 2 3]

Shreds every genome of ``../shared/data/binning_genomes`` as the workflow's shred rule does
(schema defaults: log-normal 2-20 kb contigs, median 5 kb; ``ShredConfig(seed=1)`` as in
bench_binning_metabat.py), profiles them, embeds them with the TNF baseline (schema
defaults) and clusters the embedding with

* ``new``: this tree's ``cluster.cluster_contigs`` (exact kNN at this size, Leiden via
  igraph + leidenalg), once per ``--outlier-ratios`` value (0 = every contig binned);
* ``old``: ``cluster.py`` as it was at ``--old-rev`` (hand-written Louvain), read from git;

for each clustering seed, then scores each with ``evaluate.evaluate_binning`` (bins
>= 200 kb): bp-weighted and contig-count ARI, near-complete bins (recall >= 0.9,
precision >= 0.95) and medium-or-better bins (recall >= 0.5, precision >= 0.9, CheckM's
medium-quality thresholds read as bp recall/precision). The paired t-test over seeds
compares each new variant's ``ari_bp`` with the old one's (``report.stats.paired_t``).
Writes benchmarks/results/bench_binning_cluster.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.binning import evaluate as ev  # noqa: E402
from genomelab.binning.baselines import BaselineConfig, tnf_embedding  # noqa: E402
from genomelab.binning.cluster import ClusterConfig, cluster_contigs  # noqa: E402
from genomelab.binning.data import load_inputs  # noqa: E402
from genomelab.binning.kmers import write_profiles_h5  # noqa: E402
from genomelab.binning.shred import ShredConfig, shred_genomes  # noqa: E402
from genomelab.io.tables import read_truth  # noqa: E402
from genomelab.report.stats import paired_t  # noqa: E402

GENOMES = ROOT.parent / "shared" / "data" / "binning_genomes" / "genomes"
MIN_BIN_BP = 200_000
MEDIUM_RECALL, MEDIUM_PRECISION = 0.5, 0.9


def old_cluster_module(rev: str):
    """``binning/cluster.py`` at git revision ``rev``, imported as a module of its own."""
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:workflow/scripts/genomelab/binning/cluster.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = Path(tempfile.mkdtemp()) / "old_cluster.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("old_cluster", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["old_cluster"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def score(labels: np.ndarray, genomes: np.ndarray, lengths: np.ndarray, seconds: float) -> dict:
    metrics, table = ev.evaluate_binning(labels, genomes, lengths, MIN_BIN_BP)
    medium = (table["recall"] >= MEDIUM_RECALL) & (table["precision"] >= MEDIUM_PRECISION)
    keep = ("ari_bp", "ari_contigs", "ari_bp_binned", "n_good_bins", "n_bins", "binned_bp_fraction")
    out = {k: metrics[k] for k in keep}
    out["n_medium_or_better_bins"] = int(medium.sum())
    out["unbinned_outlier_contigs"] = int((np.asarray(labels) == -1).sum())
    out["seconds"] = seconds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--shred-seed", type=int, default=1)
    parser.add_argument("--old-rev", default="964a01e")
    parser.add_argument("--outlier-ratios", type=float, nargs="+", default=[0.0, 2.0, 3.0])
    parser.add_argument("--genomes", default=str(GENOMES))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_binning_cluster.json"))
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    genomes = sorted(Path(args.genomes).glob("*.fna.gz"))
    if not genomes:
        sys.exit(f"no genomes under {args.genomes}")
    old = old_cluster_module(args.old_rev)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shred_genomes(genomes, work / "contigs.fna.gz", work / "truth.tsv", ShredConfig(seed=args.shred_seed))
        write_profiles_h5(work / "contigs.fna.gz", work / "p.h5", min_length=2000)
        inputs = load_inputs(work / "p.h5")
        truth = read_truth(work / "truth.tsv").loc[inputs.names].to_numpy()
    emb = tnf_embedding(inputs.x, BaselineConfig())
    runs: dict[str, list[dict]] = {}
    for seed in args.seeds:
        t0 = time.perf_counter()
        labels = old.cluster_contigs(emb, inputs.lengths, old.ClusterConfig(seed=seed), MIN_BIN_BP)
        runs.setdefault("old_louvain", []).append(
            score(labels, truth, inputs.lengths, time.perf_counter() - t0)
        )
        for ratio in args.outlier_ratios:
            t0 = time.perf_counter()
            cfg = ClusterConfig(seed=seed, outlier_ratio=ratio)
            labels = cluster_contigs(emb, inputs.lengths, cfg, MIN_BIN_BP)
            name = f"new_leiden_outlier_ratio_{ratio:g}"
            runs.setdefault(name, []).append(score(labels, truth, inputs.lengths, time.perf_counter() - t0))
        print(json.dumps({k: v[-1] for k, v in runs.items()}), flush=True)
    result: dict = {
        "n_contigs": len(inputs.names),
        "bp": int(inputs.lengths.sum()),
        "n_genomes": len(genomes),
        "seeds": args.seeds,
        "shred_seed": args.shred_seed,
        "old_rev": args.old_rev,
        "min_bin_bp": MIN_BIN_BP,
        "runs": runs,
        "mean": {k: {m: float(np.mean([r[m] for r in v])) for m in v[0]} for k, v in runs.items()},
    }
    base = [r["ari_bp"] for r in runs["old_louvain"]]
    result["paired_t_ari_bp_vs_old"] = {
        k: dataclasses.asdict(paired_t([r["ari_bp"] for r in v], base))
        for k, v in runs.items()
        if k != "old_louvain"
    }
    Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(json.dumps(result["mean"], indent=2))
    print(json.dumps(result["paired_t_ari_bp_vs_old"], indent=2, default=str))


if __name__ == "__main__":
    main()
