"""Temperature fits compared on the test folds of ``bench_tissue_sparse.py`` runs (round 24).

Each variant is a set of runs (one per seed) made with one version of
``genomelab.tissue.calibration.fit_temperature``; the runs of two variants with the same
seeds score the same test samples with the same uncalibrated probabilities, so what differs
is the temperature alone. Per method and variant, over the seeds: the test NLL (mean over
folds, then mean and worst over seeds: a proper scoring rule, which sees the confidently
wrong calls a bad temperature makes), the 10-bin ECE after scaling (mean of the folds' and
pooled over the folds, as ``plots/coverage.json`` has it), the pooled ECE before scaling and
the range of the fitted temperatures.

Usage:
    python benchmarks/bench_tissue_calibration.py plain=runs_plain succession=runs_now \
        --out benchmarks/results/tissue_calibration_variants/idhwt.json
(each folder holds ``s<seed>/`` runs of ``bench_tissue_sparse.py``).
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def variant_figures(root: Path) -> dict[str, dict[str, Any]]:
    """Per method, the figures over the runs ``root/s*/`` (see the module docstring)."""
    runs = sorted(root.glob("s*/summary.json"))
    if not runs:
        raise SystemExit(f"{root}: no s*/summary.json (not a folder of bench_tissue_sparse.py runs?)")
    per: dict[str, dict[str, list[float]]] = {}
    seeds = []
    for path in runs:
        seeds.append(path.parent.name)
        rows = json.loads(path.read_text())["comparisons"][0]["rows"]
        coverage = json.loads((path.parent / "plots" / "coverage.json").read_text())
        for method, row in rows.items():
            cal = coverage.get(method, {})
            cell = per.setdefault(method, {"nll": [], "ece": [], "pooled": [], "before": [], "t": []})
            cell["nll"].append(row["nll"])
            cell["ece"].append(row["ece"])
            cell["pooled"].append(cal.get("ece_after", float("nan")))
            cell["before"].append(cal.get("ece_before", float("nan")))
            cell["t"] += cal.get("temperatures", [])
    out = {}
    for method, cell in per.items():
        out[method] = {
            "seeds": len(cell["nll"]),
            "nll_mean": statistics.fmean(cell["nll"]),
            "nll_worst": max(cell["nll"]),
            "ece_folds_mean": statistics.fmean(cell["ece"]),
            "ece_pooled_mean": statistics.fmean(cell["pooled"]),
            "ece_pooled_worst": max(cell["pooled"]),
            "ece_unscaled_pooled_mean": statistics.fmean(cell["before"]),
            "temperature_min": min(cell["t"]) if cell["t"] else None,
            "temperature_max": max(cell["t"]) if cell["t"] else None,
        }
    return {"runs": seeds, "methods": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("variants", nargs="+", help="NAME=FOLDER of s<seed>/ runs")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    result = {}
    for spec in args.variants:
        name, sep, folder = spec.partition("=")
        if not sep:
            ap.error(f"{spec!r}: give NAME=FOLDER")
        result[name] = variant_figures(Path(folder))
    seeds = {name: sorted(v["runs"]) for name, v in result.items()}
    if len({tuple(s) for s in seeds.values()}) > 1:
        raise SystemExit(f"the variants' runs differ in seeds ({seeds}): their test samples do not pair")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    methods = list(next(iter(result.values()))["methods"])
    for method in methods:
        print(method)
        for name, v in result.items():
            f = v["methods"].get(method)
            if f is None:
                continue
            print(
                f"  {name:>12s}: NLL {f['nll_mean']:.4f} (worst seed {f['nll_worst']:.4f}); ECE per fold "
                f"{f['ece_folds_mean']:.4f}, pooled {f['ece_pooled_mean']:.4f} (worst {f['ece_pooled_worst']:.4f}), "
                f"unscaled {f['ece_unscaled_pooled_mean']:.4f}; T {f['temperature_min']:.2f}-{f['temperature_max']:.2f}"
            )


if __name__ == "__main__":
    main()
