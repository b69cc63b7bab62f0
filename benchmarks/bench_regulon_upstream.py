"""The CNN's expression against the issue-20 baseline "4-mer ridge, 300 bp upstream".

    PYTHONPATH=workflow/scripts nice -n 5 python benchmarks/bench_regulon_upstream.py \\
        /tmp/bench_regulon_operons/demo [/tmp/bench_regulon_operons/wide ...]

Each argument is a copy of a finished run of benchmarks/bench_regulon_operons.py (the CLI's layout:
real E. coli genes and PRECISE expression, fixed held-out blocks). The evaluation step is
run again there with ``regulon.baseline`` at its schema defaults, which fits the per-gene
upstream baseline; prints the expression rows (per position and per gene Pearson) and the
per-gene Wilcoxon test of the CNN against each baseline, and writes them to
benchmarks/results/bench_regulon_upstream.json. No training; about 10 s per run.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def add_annotation(targets: Path, genes: Path) -> None:
    """Targets files written before the annotation channels lack them; the evaluation does not
    use them but TargetData reads them: add them from the run's own gene table (a copy of the
    run is meant, the other datasets are left as they are)."""
    import h5py
    from genomelab.regulon.data import read_genes
    from genomelab.regulon.features import annotation_track

    with h5py.File(targets, "a") as h5:
        if "annotation" not in h5:
            start, end = int(h5.attrs["region_start"]), int(h5.attrs["region_end"])
            h5.create_dataset("annotation", data=annotation_track(read_genes(genes), start, end))


def reevaluate(out: Path) -> dict:
    from genomelab.regulon.evaluate import evaluate

    d = out / "data"
    add_annotation(d / "targets.h5", d / "genes.tsv")
    payload = evaluate(
        *(d / "targets.h5", d / "genes.tsv", d / "norm_stats.json"),
        *(out / "model" / "predictions.h5", out / "baselines" / "predictions.h5", out, 20000, "test"),
        out / "model" / "metrics.json",
        (out / "diagnostics" / "checks.json",),
        *(d / "data_report.json", out / "summary.json", out / "summary.md"),
        baseline_cfg={},
    )
    summary = json.loads((out / "summary.json").read_text())
    comp = next(c for c in summary["comparisons"] if c["primary"] == "expression_pearson")
    return {
        "run": str(out),
        "upstream_baseline": payload["upstream_baseline"],
        "rows": {
            name: {
                k: row.get(k)
                for k in ("expression_pearson", "expression_gene_pearson", "expression_gene_spearman")
            }
            for name, row in comp["rows"].items()
        },
        "tests": {
            k: {"p": t["p_value"], "favours": t["favours"], "n": t["n"]} for k, t in comp["tests"].items()
        },
        "verdict": comp.get("verdict"),
    }


def main() -> None:
    from genomelab.runtime import setup_logging

    results = []
    for arg in sys.argv[1:]:
        t0 = time.perf_counter()
        setup_logging(Path(arg) / "bench_upstream.log")
        found = reevaluate(Path(arg))
        found["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(found, indent=1))
        results.append(found)
    dest = ROOT / "benchmarks" / "results" / "bench_regulon_upstream.json"
    dest.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
