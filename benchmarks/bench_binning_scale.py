"""Scale of the binning CPU path: k-mer features, encoding and clustering time and peak memory.

    nice -n 5 python benchmarks/bench_binning_scale.py [--target 1000000] [--cluster-n 200000]
        [--feature-contigs 20000] [--encode-n 200000] [--reference-n 20000] [--cluster-dim 20]
        [--stages features encoding clustering reference] [--threads 1] [--seed 0]

A benchmark, not a test. The issue asks for 1M contigs; on the 2 shared cores of the dev
machine that does not fit ~5 CPU-minutes, so each stage runs on as many synthetic contigs
as it allows and the figure for ``--target`` contigs is extrapolated linearly from the
measured per-contig rate and labelled ``extrapolated`` (NN-descent grows a little faster
than linear, ~n^1.14 in Dong et al. 2011, so the extrapolated clustering time is a lower
bound). Stages, each in a fresh process so that its peak resident memory
(``ru_maxrss`` minus the process's size before the stage) is its own:

* ``features``: 2,761-column k-mer profiles (``kmers.profile_block``, numba engine when
  installed) of ``--feature-contigs`` random 2-20 kb contigs (log-normal, median 5 kb,
  as the shred rule cuts them) of varied GC, one 512-contig block at a time as the
  features rule streams them;
* ``encoding``: the contrastive encoder with the schema's sizes (weights as initialised:
  the time does not depend on them) embedding ``--encode-n`` whole-contig profile rows
  [n, 2761] in blocks of 16,384 made on the fly (only a block is ever in memory; the
  encode rule's ``embed`` batches alike), then the rows scaled to unit length as the
  clustering takes them;
* ``clustering``: ``cluster.cluster_contigs`` (approximate kNN with pynndescent above
  ``exact_knn_max``, Leiden, outlier scores) on ``--cluster-n`` 20-dimensional points in
  1,000 Gaussian groups (the TNF baseline's PCA width, genome-like groups);
* ``reference``: on a ``--reference-n`` subset, the previous brute-force exact kNN
  (chunked matrix products, what ``cluster.py`` used for every n) against the approximate
  index on the same points: the time ratio and the approximate index's recall of the exact
  neighbours, measured in the same run.

Writes benchmarks/results/bench_binning_scale.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _encoding_stage(n: int, seed: int, threads: int, queue: mp.Queue) -> None:
    import torch
    from genomelab.binning.contrastive_model import ContrastiveConfig, ContrastiveEncoder
    from genomelab.binning.kmers import N_FEATURES
    from genomelab.config import schema_defaults

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    cfg = ContrastiveConfig.from_dict(schema_defaults("binning.model.contrastive"))
    model = ContrastiveEncoder(cfg).eval()
    rng = np.random.default_rng(seed)
    base = _rss_mb()
    seconds, block = 0.0, 16_384
    for start in range(0, n, block):
        rows = min(block, n - start)
        x = torch.from_numpy(rng.dirichlet(np.ones(N_FEATURES), rows).astype(np.float32))
        t0 = time.perf_counter()
        z = model.embed(x)
        torch.nn.functional.normalize(z, dim=1)
        seconds += time.perf_counter() - t0
    queue.put(
        {
            "n_contigs": n,
            "threads": threads,
            "embedding": cfg.embedding,
            "seconds": seconds,
            "contigs_per_s": n / seconds,
            "peak_extra_rss_mb": _rss_mb() - base,
        }
    )


def _synthetic_points(
    n: int, seed: int, dim: int = 20, n_groups: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_groups, dim)).astype(np.float32)
    group = rng.integers(0, n_groups, n)
    return centres[group] + 0.15 * rng.normal(size=(n, dim)).astype(np.float32), group


def _features_stage(n: int, seed: int, queue: mp.Queue) -> None:
    from genomelab.binning import kmers

    engine = kmers.resolve_engine("auto")
    rng = np.random.default_rng(seed)
    lengths = np.clip(np.exp(rng.normal(np.log(5000), 0.6, n)), 2000, 20000).astype(int)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    kmers.profile_block([letters[rng.integers(0, 4, 3000)].tobytes()], engine=engine)  # compile first
    base = _rss_mb()
    seconds = 0.0
    for start in range(0, n, 512):
        seqs = []
        for length in lengths[start : start + 512]:
            gc = rng.uniform(0.3, 0.7)
            p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
            seqs.append(letters[rng.choice(4, int(length), p=p)].tobytes())
        t0 = time.perf_counter()
        kmers.profile_block(seqs, engine=engine)
        seconds += time.perf_counter() - t0
    queue.put(
        {
            "n_contigs": n,
            "bp": int(lengths.sum()),
            "engine": engine,
            "seconds": seconds,
            "contigs_per_s": n / seconds,
            "mbp_per_s": lengths.sum() / seconds / 1e6,
            "peak_extra_rss_mb": _rss_mb() - base,
        }
    )


def _cluster_stage(n: int, seed: int, dim: int, queue: mp.Queue) -> None:
    import torch
    from genomelab.binning.cluster import ClusterConfig, cluster_contigs
    from sklearn.metrics import adjusted_rand_score

    torch.set_num_threads(1)
    points, group = _synthetic_points(n, seed, dim)
    cfg = ClusterConfig(seed=seed, outlier_ratio=3.0)
    # Compile pynndescent's numba kernels on a small set first: a one-off per process.
    cluster_contigs(points[:2000], np.full(2000, 5000), ClusterConfig(seed=seed, exact_knn_max=100), 0)
    base = _rss_mb()
    t0 = time.perf_counter()
    labels = cluster_contigs(points, np.full(n, 5000), cfg, min_bp=0)
    seconds = time.perf_counter() - t0
    kept = labels >= 0
    queue.put(
        {
            "n_contigs": n,
            "dim": points.shape[1],
            "n_groups": 1000,
            "approximate": n > cfg.exact_knn_max,
            "seconds": seconds,
            "contigs_per_s": n / seconds,
            "peak_extra_rss_mb": _rss_mb() - base,
            "ari_vs_groups": float(adjusted_rand_score(group[kept], labels[kept])),
            "outlier_fraction": float(1 - kept.mean()),
        }
    )


def _reference_stage(n: int, seed: int, queue: mp.Queue) -> None:
    import torch
    from genomelab.binning.cluster import ClusterConfig, _approximate_knn, knn

    torch.set_num_threads(1)
    points, _ = _synthetic_points(n, seed)
    _approximate_knn(points[:2000], 30, seed)  # compile first
    t0 = time.perf_counter()
    exact, _ = knn(points, ClusterConfig(exact_knn_max=n + 1))
    exact_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    approx, _ = _approximate_knn(points, 30, seed)
    approx_s = time.perf_counter() - t0
    recall = np.mean([len(np.intersect1d(a, b)) / 30 for a, b in zip(approx, exact, strict=True)])
    queue.put(
        {
            "n_contigs": n,
            "brute_force_knn_seconds": exact_s,
            "approximate_knn_seconds": approx_s,
            "speedup_approximate_over_brute_force": exact_s / approx_s,
            "approximate_recall_of_exact_neighbours": float(recall),
        }
    )


def _in_fresh_process(stage, *args) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=stage, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result


STAGES = ("features", "encoding", "clustering", "reference")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", type=int, default=1_000_000)
    parser.add_argument("--feature-contigs", type=int, default=20_000)
    parser.add_argument("--cluster-n", type=int, default=200_000)
    parser.add_argument("--encode-n", type=int, default=200_000)
    parser.add_argument("--reference-n", type=int, default=20_000)
    parser.add_argument(
        "--cluster-dim",
        type=int,
        default=20,
        help="20: the TNF baseline's PCA; 64: the contrastive embedding",
    )
    parser.add_argument(
        "--stages", nargs="+", default=["features", "encoding", "clustering", "reference"], choices=STAGES
    )
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the encoding stage")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_binning_scale.json"))
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    result: dict = {"load_average_before": list(os.getloadavg()), "target_contigs": args.target}
    runs = {
        "features": (_features_stage, args.feature_contigs, args.seed),
        "encoding": (_encoding_stage, args.encode_n, args.seed, args.threads),
        "clustering": (_cluster_stage, args.cluster_n, args.seed, args.cluster_dim),
        "reference": (_reference_stage, args.reference_n, args.seed),
    }
    for stage in args.stages:
        result[stage] = _in_fresh_process(*runs[stage])
        print(stage, json.dumps(result[stage]), flush=True)
    scale: dict = {}
    for stage in ("features", "encoding", "clustering"):
        if stage in result:
            measured = result[stage]
            scale[stage] = {
                "extrapolated": measured["n_contigs"] < args.target,
                "seconds": args.target / measured["contigs_per_s"],
            }
    if "reference" in result and "clustering" in scale:
        # Brute force is O(n^2): its time at the target, from the subset, for the ratio.
        ref = result["reference"]
        brute_at_target = ref["brute_force_knn_seconds"] * (args.target / ref["n_contigs"]) ** 2
        scale["brute_force_knn_seconds_extrapolated_n2"] = brute_at_target
        scale["ratio_brute_force_knn_over_new_clustering"] = brute_at_target / scale["clustering"]["seconds"]
    # The feature matrix itself is streamed to HDF5 block by block; its size on disk:
    scale["feature_matrix_gb"] = args.target * 2761 * 4 / 1e9
    scale["knn_graph_mb"] = args.target * 30 * (8 + 4) / 1e6
    result[f"at_{args.target}_contigs"] = scale
    result["load_average_after"] = list(os.getloadavg())
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
