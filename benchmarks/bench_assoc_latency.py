"""Per-query inference latency of the assoc network on the CPU.

Builds the demo-sized model (236 regulators x 2,568 genes from resources/assoc, demo model
sizes: link term 32-d with the knn cold start; untrained weights: latency does not depend
on the weights), caches the candidate vocabulary once, then times ranking one new entity at
a time (featurise + encode + cold-start neighbour search + bridge + score + top-10) and in
batches. Prints the median and p95 per query and the ratios to
the history's target (200 ms) and this project's aim (10 ms); writes
benchmarks/results/bench_assoc_latency.json.

    PYTHONPATH=workflow/scripts python benchmarks/bench_assoc_latency.py [--threads 1] [--repeats 200]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.assoc import data as D  # noqa: E402
from genomelab.assoc import features as Fe  # noqa: E402
from genomelab.assoc.infer import Ranker  # noqa: E402
from genomelab.assoc.training import build_model  # noqa: E402
from genomelab.io.atomic import atomic_write_json  # noqa: E402

TARGET_HISTORY_MS = 200.0
TARGET_AIM_MS = 10.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--d-model", type=int, default=32)
    parser.add_argument("--link-dim", type=int, default=32)
    parser.add_argument("--cold-start", default="knn", choices=("none", "knn", "mlp"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    res = ROOT / "resources" / "assoc"
    src = D.read_entities(res / "sources.tsv", "source")
    tgt = D.read_entities(res / "targets.tsv", "target")
    links = D.read_links(res / "links.tsv", src, tgt)
    asg = D.assign_splits(links, len(src), len(tgt), seed=0)
    train = D.split_labels(links, asg, "links", "train", len(src), len(tgt))
    featurizer = Fe.Featurizer(Fe.FeatureConfig(max_fields=2)).fit(src, tgt)
    feats = {"source": featurizer.transform(src), "target": featurizer.transform(tgt)}
    torch.manual_seed(0)
    section = {
        "d_model": args.d_model,
        "n_layers": 2,
        "bridge_dim": args.d_model,
        "link_dim": args.link_dim,
        "cold_start": args.cold_start,
    }
    model = build_model(section, feats, train)
    t0 = time.perf_counter()
    ranker = Ranker(model, featurizer, src.ids, tgt.ids)
    cache_ms = 1000 * (time.perf_counter() - t0)

    rng = np.random.default_rng(0)
    singles = []
    for _ in range(args.repeats):
        i = int(rng.integers(len(src)))
        query = D.EntityTable("source", [src.ids[i]], [src.descriptions[i]])
        t = time.perf_counter()
        ranker.rank(query, "source", top_k=10)
        singles.append(1000 * (time.perf_counter() - t))
    singles = np.asarray(singles[5:])  # the first calls warm allocator and caches

    # Model part only (features already computed), single and batched.
    arrays = feats["source"]
    one = {k: v[:1] for k, v in arrays.items()}
    model_only = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        ranker.scores(one, "source")
        model_only.append(1000 * (time.perf_counter() - t))
    model_only = np.asarray(model_only[5:])
    t = time.perf_counter()
    for _ in range(5):
        ranker.scores(arrays, "source")
    batched_ms = 1000 * (time.perf_counter() - t) / 5 / len(src)

    median = float(np.median(singles))
    result = {
        "benchmark": "assoc_latency",
        "device": "cpu",
        "threads": args.threads,
        "machine": platform.processor() or platform.machine(),
        # Shared machines: timings are only comparable at a similar load.
        "load_average_1min_at_end": round(os.getloadavg()[0], 2),
        "torch": torch.__version__,
        "n_candidates": len(tgt),
        "d_model": args.d_model,
        "link_dim": args.link_dim,
        "cold_start": args.cold_start,
        "vocabulary_cache_ms": cache_ms,
        "single_query_end_to_end_ms": {"median": median, "p95": float(np.percentile(singles, 95))},
        "single_query_model_only_ms": {
            "median": float(np.median(model_only)),
            "p95": float(np.percentile(model_only, 95)),
        },
        "batched_per_query_ms": batched_ms,
        "ratio_history_target_over_median": TARGET_HISTORY_MS / median,
        "ratio_aim_over_median": TARGET_AIM_MS / median,
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    atomic_write_json(ROOT / "benchmarks" / "results" / "bench_assoc_latency.json", result)


if __name__ == "__main__":
    main()
