"""Batched NNLS (genomelab.deconv.nnls) against a per-sample scipy.optimize.nnls loop.

Both solve the same samples against the same reference: the Moss 2018 atlas (7,890 CpGs x 25
cell types) from ../shared/data when present, else a random reference of that shape. Samples
are Dirichlet mixtures plus noise; a second round puts 5% missing values in 10% of them (the
scipy loop then slices each sample's valid rows, as MethAtlas does). Prints ms/sample of both,
the speed-up and the largest difference of the answers; writes
benchmarks/results/deconv_nnls.json. Not part of the test suite.

    python benchmarks/bench_deconv_nnls.py [--n 2000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
from scipy.optimize import nnls as scipy_nnls

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
from genomelab.deconv.io import read_table  # noqa: E402
from genomelab.deconv.nnls import nnls_batched  # noqa: E402

ATLAS = (
    ROOT.parent / "shared" / "data" / "methylation_atlas" / "meth_atlas_moss2018" / "reference_atlas.csv.gz"
)


def scipy_loop(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    out = np.zeros((len(B), A.shape[1]))
    for i, b in enumerate(B):
        v = np.isfinite(b)
        out[i] = scipy_nnls(A[v], b[v])[0] if not v.all() else scipy_nnls(A, b)[0]
    return out


def best_of(fn, repeats: int) -> tuple[float, np.ndarray]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    if ATLAS.is_file():
        A, _, tissues = read_table(ATLAS, "atlas")
        source = f"Moss 2018 atlas ({ATLAS})"
    else:
        A = np.random.default_rng(0).uniform(0, 1, (7890, 25))
        source = "random reference 7890 x 25 (Moss atlas not found)"
    rng = np.random.default_rng(1)
    B = rng.dirichlet(np.full(A.shape[1], 0.3), args.n) @ A.T + rng.normal(0, 0.05, (args.n, A.shape[0]))
    rounds = {}
    for name, data in (("complete", B), ("missing", B.copy())):
        if name == "missing":
            rows = rng.random(args.n) < 0.1
            data[rows] = np.where(rng.random((int(rows.sum()), A.shape[0])) < 0.05, np.nan, data[rows])
        nnls_batched(A, data[:64])  # warm-up (BLAS threads, allocations)
        t_fast, x_fast = best_of(lambda d=data: nnls_batched(A, d), args.repeats)
        t_ref, x_ref = best_of(lambda d=data: scipy_loop(A, d), 1)
        rounds[name] = {
            "batched_ms_per_sample": 1e3 * t_fast / args.n,
            "scipy_loop_ms_per_sample": 1e3 * t_ref / args.n,
            "speedup_ratio": t_ref / t_fast,
            "max_abs_diff": float(np.abs(x_fast - x_ref).max()),
        }
    result = {"reference": source, "shape": list(A.shape), "n_samples": args.n, **rounds}
    out = ROOT / "benchmarks" / "results" / "deconv_nnls.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
