"""A small ``benchmarks/bench_tissue_sparse.py`` run for the tests of the scripts that read its
output folders again (bench_tissue_routing.py, bench_tissue_temperature.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENV = {"PYTHONPATH": str(ROOT / "workflow/scripts"), "OMP_NUM_THREADS": "1"}


def small_bench_run(tmp_path: Path, folds: int = 3) -> Path:
    """bench_tissue_sparse.py with the read-profile and masked models (3 epochs) on a CSV of
    60 samples x 24 probes, 3 classes of 6 marker probes each, a 2 x 2 grid; its --out folder."""
    rng = np.random.default_rng(0)
    n, r = 60, 24
    labels = np.repeat(["A", "B", "C"], n // 3)
    betas = rng.uniform(0.2, 0.8, (n, r))
    for c, lab in enumerate("ABC"):
        betas[labels == lab, 6 * c : 6 * c + 6] = rng.uniform(0.85, 0.95, ((labels == lab).sum(), 6))
    header = "sample,label," + ",".join(f"cg{j}" for j in range(r))
    rows = [f"s{i},{labels[i]}," + ",".join(f"{b:.3f}" for b in betas[i]) for i in range(n)]
    (tmp_path / "t.csv").write_text("\n".join([header, *rows]) + "\n")
    run = tmp_path / "run"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks/bench_tissue_sparse.py"), str(tmp_path / "t.csv"), "--out", str(run),
         "--folds", str(folds), "--regions", "0", "--max-epochs", "3", "--refit-budget", "0", "--models", "reads",
         "masked", "--depths", "30", "1", "--observed", "1.0", "0.1"],
        check=True, capture_output=True, env=ENV,
    )  # fmt: skip
    return run
