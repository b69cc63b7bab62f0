"""Peak memory of the streaming feature steps as their input grows 10x.

Each measurement runs in a fresh child process and reads its peak resident set size
(ru_maxrss), so imports and earlier runs do not blur the figure. A streaming step's peak
should stay nearly flat (ratio close to 1) when the input grows tenfold; a step that loads
its whole input would grow roughly tenfold.

    python benchmarks/bench_memory.py [--regions 20000] [--small 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"

MAKE_STACKED = """
import sys, h5py, numpy as np
n, r, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(0)
with h5py.File(out, "w") as h5:
    ds = h5.create_dataset("methylation", (n, r, 150), np.int8, chunks=(1, r, 150))
    for i in range(n):
        ds[i] = rng.integers(0, 3, size=(r, 150), dtype=np.int8)
    h5["samples"] = np.array([f"s{i}" for i in range(n)], dtype=object).astype("S")
    h5["tissue"] = np.array([f"t{i % 4}" for i in range(n)], dtype=object).astype("S")
"""

RUN_FEATURES = """
import resource, sys
sys.path.insert(0, {scripts!r})
from genomelab.tissue.features import extract_features_from_hdf5
if sys.argv[1] != "-":
    extract_features_from_hdf5(sys.argv[1], sys.argv[2])
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""


def peak_rss_mb(code: str, *args: str) -> float:
    """Run ``code`` in a fresh child that prints its own peak RSS (KiB on Linux); return MB."""
    out = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return int(out.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--regions", type=int, default=20000)
    p.add_argument("--small", type=int, default=8, help="samples in the small input (the large has 10x)")
    args = p.parse_args()
    result = {"benchmark": "memory", "regions": args.regions, "positions": 150}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        code = RUN_FEATURES.format(scripts=str(SCRIPTS))
        peaks = {}
        imports_only = peak_rss_mb(code, "-", "-")
        result["imports_only_peak_mb"] = imports_only
        for n in (args.small, 10 * args.small):
            src = tmp / f"stacked_{n}.h5"
            subprocess.run(
                [sys.executable, "-c", MAKE_STACKED, str(n), str(args.regions), str(src)], check=True
            )
            peaks[n] = peak_rss_mb(code, str(src), str(tmp / f"features_{n}.h5"))
            result[f"input_mb_{n}_samples"] = n * args.regions * 150 / 1e6
    small, large = args.small, 10 * args.small
    result["tissue_features_peak_mb_small"] = peaks[small]
    result["tissue_features_peak_mb_large"] = peaks[large]
    result["tissue_features_peak_ratio_for_10x_input"] = peaks[large] / peaks[small]
    # Memory the step itself uses beyond the interpreter and its imports.
    result["tissue_features_working_mb_small"] = peaks[small] - imports_only
    result["tissue_features_working_mb_large"] = peaks[large] - imports_only
    out = Path(__file__).resolve().parent / "results" / "memory.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
