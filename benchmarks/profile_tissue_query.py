"""Where one full-coverage tissue query's time goes (issue 17; not a test): a torch profile
of the attention ensemble's per-query path (genomelab.tissue.inference.AttentionEnsemble)
at the schema's sizes, untrained weights (the cost depends on shapes only), one CPU thread.

Prints the milliseconds per query by operator, and the sigmoid count per query
(members x regions x 2 gate_hidden) that bounds the gate from below on the CPU. With
``--attention`` (JSON overriding ``tissue.attention`` keys, e.g. narrower layers) the schema's
sizes are timed in the same run too, and the ratio printed.

    PYTHONPATH=workflow/scripts python benchmarks/profile_tissue_query.py \\
        [--regions 51089] [--members 5] [--queries 5] [--threads 1] [--coverage 30] \\
        [--attention '{"hidden": [64, 32], "gate_hidden": 16, "dim": 16}']
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.config import schema_defaults  # noqa: E402
from genomelab.tissue.inference import AttentionEnsemble  # noqa: E402
from genomelab.tissue.models import CONFIGS, build_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--regions", type=int, default=51089)
    ap.add_argument("--members", type=int, default=5)
    ap.add_argument("--queries", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--coverage",
        type=float,
        default=30.0,
        help="reads per region (1: a request without coverage, as bench_serve.py sends)",
    )
    ap.add_argument(
        "--attention", type=json.loads, default={}, help="JSON: tissue.attention keys to override"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(0, 1, (1, args.regions)), dtype=torch.float32)
    cov = torch.full((1, args.regions), args.coverage)
    mu = rng.uniform(0.2, 0.8, args.regions).astype(np.float32)
    sd = np.full(args.regions, 0.2, np.float32)

    def ensemble_of(overrides: dict) -> tuple[AttentionEnsemble, object]:
        cfg = CONFIGS["attention"].from_dict({**schema_defaults("tissue.attention"), **overrides})
        members = [
            build_model("attention", cfg, args.regions, 8, mu, sd, 150).eval() for _ in range(args.members)
        ]
        found = AttentionEnsemble.build(members)
        if found is None:
            raise SystemExit("the members do not take the per-query path")
        return found, cfg

    def median_ms(ens: AttentionEnsemble) -> float:
        ens.proba(x, cov)  # warm-up
        walls = []
        for _ in range(args.queries):  # unprofiled: the profiler adds its own overhead
            start = time.perf_counter()
            ens.proba(x, cov)
            walls.append(time.perf_counter() - start)
        return 1000 * float(np.median(walls))

    ensemble, cfg = ensemble_of(args.attention)
    wall = median_ms(ensemble) / 1000
    if args.attention:
        reference = median_ms(ensemble_of({})[0])
        print(
            f"{args.attention}: {1000 * wall:.1f} ms per query; the schema's sizes {reference:.1f} ms "
            f"in the same run (ratio {1000 * wall / reference:.2f})"
        )
    with torch.profiler.profile() as prof:
        for _ in range(args.queries):
            ensemble.proba(x, cov)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    print(
        f"{args.members} members x {args.regions} regions, {args.threads} thread(s): {1000 * wall:.1f} ms per query (median, unprofiled); self CPU time by operator"
    )
    for e in rows[:10]:
        print(f"  {e.key:<24} {e.self_cpu_time_total / 1000 / args.queries:7.2f} ms per query")
    sigmoids = args.members * args.regions * 2 * cfg.gate_hidden
    print(f"sigmoids per query: {sigmoids / 1e6:.1f} M (members x regions x 2 gate_hidden)")


if __name__ == "__main__":
    main()
