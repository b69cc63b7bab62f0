"""benchmarks/bench_tissue_calibration.py: temperature fits compared over bench_tissue_sparse runs."""

from __future__ import annotations

import json
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_tissue_calibration.py"


def make_run(root: Path, seed: int, nll: float, pooled: float, temperatures: list[float]) -> None:
    run = root / f"s{seed}"
    (run / "plots").mkdir(parents=True)
    rows = {"LR": {"nll": nll, "ece": pooled + 0.02}}
    (run / "summary.json").write_text(json.dumps({"comparisons": [{"rows": rows}]}))
    cal = {"LR": {"ece_after": pooled, "ece_before": 0.05, "temperatures": temperatures}}
    (run / "plots" / "coverage.json").write_text(json.dumps(cal))


def test_a_variant_s_figures_are_the_mean_and_worst_over_its_seeds(tmp_path):
    make_run(tmp_path / "a", 1, 0.2, 0.01, [0.1, 2.0])
    make_run(tmp_path / "a", 2, 0.4, 0.03, [1.5])
    figures = runpy.run_path(str(SCRIPT))["variant_figures"](tmp_path / "a")["methods"]["LR"]
    assert figures["nll_mean"] == pytest.approx(0.3) and figures["nll_worst"] == 0.4
    assert figures["ece_pooled_mean"] == pytest.approx(0.02) and figures["ece_pooled_worst"] == 0.03
    assert (figures["temperature_min"], figures["temperature_max"]) == (0.1, 2.0)


def test_variants_of_other_seeds_are_refused(tmp_path):
    make_run(tmp_path / "a", 1, 0.2, 0.01, [1.0])
    make_run(tmp_path / "b", 2, 0.2, 0.01, [1.0])
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            f"a={tmp_path / 'a'}",
            f"b={tmp_path / 'b'}",
            "--out",
            str(tmp_path / "x.json"),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and "differ in seeds" in done.stderr
