"""Throughput of the tissue feature step on a stacked methylation HDF5.

Compares, on the same file, (1) a raw h5py read of every block, (2) the feature step
(``extract_features_from_hdf5``: read + region means + coverage + write) and (3) a naive
Python loop over regions (timed on a subset of regions and extrapolated). The issue's
target: the feature step runs at >= half the raw read rate.

    python benchmarks/bench_tissue_features.py                 # 32 files x 51,089 x 150 (~245 MB)
    python benchmarks/bench_tissue_features.py --full          # 765 files (~5.9 GB, needs the disk)
    python benchmarks/bench_tissue_features.py --n-files 8 --n-regions 5000   # quick look

Writes ``benchmarks/results/bench_tissue_features.json``. Never run by the tests.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.tissue.features import extract_features_from_hdf5  # noqa: E402

STR = h5py.string_dtype("utf-8")


def make_stacked(path: Path, n_files: int, n_regions: int, n_positions: int, seed: int = 0) -> int:
    """Write a random stacked HDF5 (about 40% missing calls) file by file; return its int8 bytes."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as h5:
        meth = h5.create_dataset(
            "methylation", (n_files, n_regions, n_positions), np.int8, chunks=(1, n_regions, n_positions)
        )
        for i in range(n_files):
            meth[i] = rng.choice(
                np.array([0, 1, 2], np.int8), size=(n_regions, n_positions), p=[0.3, 0.3, 0.4]
            )
        h5.create_dataset(
            "samples", data=np.asarray([f"s{i}" for i in range(n_files)], dtype=object), dtype=STR
        )
        h5.create_dataset(
            "tissue", data=np.asarray([f"T{i % 5}" for i in range(n_files)], dtype=object), dtype=STR
        )
    return n_files * n_regions * n_positions


def raw_read(path: Path, block: int) -> float:
    t0 = time.perf_counter()
    with h5py.File(path, "r") as h5:
        meth = h5["methylation"]
        for start in range(0, meth.shape[0], block):
            arr = meth[start : start + block]
            arr.sum(
                dtype=np.int64, axis=None
            ) if arr.size == 0 else None  # keep the read from being optimised away
    return time.perf_counter() - t0


def naive_loop(path: Path, n_regions: int) -> float:
    """Seconds per region for a per-region Python loop (read one file, loop over regions)."""
    with h5py.File(path, "r") as h5:
        arr = h5["methylation"][0]
    t0 = time.perf_counter()
    means = np.empty(n_regions)
    for r in range(n_regions):
        row = arr[r]
        valid = row[row != 2]
        means[r] = valid.mean() if len(valid) else np.nan
    return (time.perf_counter() - t0) / n_regions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-files", type=int, default=32)
    parser.add_argument("--n-regions", type=int, default=51089)
    parser.add_argument("--n-positions", type=int, default=150)
    parser.add_argument("--full", action="store_true", help="765 files x 51,089 regions x 150 positions")
    parser.add_argument("--block", type=int, default=8, help="files per block (as in the feature step)")
    parser.add_argument("--naive-regions", type=int, default=5000, help="regions timed in the naive loop")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads of the feature step")
    parser.add_argument("--workdir", default=None, help="folder for the temporary HDF5 (default: system tmp)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_tissue_features.json"))
    args = parser.parse_args()
    n_files = 765 if args.full else args.n_files
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        src, out = Path(tmp) / "stacked.h5", Path(tmp) / "features.h5"
        n_bytes = make_stacked(src, n_files, args.n_regions, args.n_positions)
        raw_read(src, args.block)  # warm the page cache so both timings read the same way
        raw = min(raw_read(src, args.block) for _ in range(args.repeats))
        feat = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            extract_features_from_hdf5(src, out, block=args.block, threads=args.threads)
            feat.append(time.perf_counter() - t0)
        feature = min(feat)
        per_region = naive_loop(src, min(args.naive_regions, args.n_regions))
    naive = per_region * args.n_regions * n_files
    mb = n_bytes / 1e6
    result = {
        "shape": [n_files, args.n_regions, args.n_positions],
        "threads": args.threads,
        "megabytes": mb,
        "block": args.block,
        "raw_read_s": raw,
        "feature_step_s": feature,
        "naive_loop_s_extrapolated": naive,
        "raw_read_MB_per_s": mb / raw,
        "feature_step_MB_per_s": mb / feature,
        "naive_loop_MB_per_s": mb / naive,
        "feature_vs_raw_ratio": raw / feature,
        "feature_vs_naive_speedup": naive / feature,
        "target_met (feature >= 0.5 raw)": raw / feature >= 0.5,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"{n_files} files x {args.n_regions} regions x {args.n_positions} positions ({mb:.0f} MB int8)")
    print(f"raw h5py read : {mb / raw:8.1f} MB/s ({raw:.2f} s)")
    print(
        f"feature step  : {mb / feature:8.1f} MB/s ({feature:.2f} s) = {raw / feature:.2f} x the raw read rate"
    )
    print(
        f"naive loop    : {mb / naive:8.1f} MB/s (extrapolated {naive:.0f} s); feature step is "
        f"{naive / feature:.0f} x faster"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
