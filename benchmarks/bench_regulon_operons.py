"""Operon prediction on real E. coli data: the CNN against the classic rules, on fixed blocks.

    PYTHONPATH=workflow/scripts nice -n 5 python benchmarks/bench_regulon_operons.py \
        --variant demo --epochs 4 [--shared ../shared/data]

Inputs: the demo dump (resources/regulon: NCBI RefSeq genes, PRECISE/BioCyc operon labels,
see its PROVENANCE.md) and, from ../shared/data/ecoli_expression, PRECISE's log_tpm.csv.gz
(all 278 samples, read as a gene x sample table, ``table_transform: log2p1``). The whole
chromosome, 46 blocks of 102,400 bp, the fixed default held-out blocks (test 3, 9, 16, 23,
29, 36, 42). Variants:

- ``demo``: the demo model (2,048-bp windows, 6 dilated blocks: receptive field ~2 kb);
- ``wide``: 8,192-bp windows and 8 dilated blocks (receptive field ~8 kb: neighbouring
  genes and their intergenic regions in view).

Prints the operon comparisons (per bp with strands pooled, adjacent same-strand pairs, the
per-strand 16-bp figure) with each method's AUROC/AUPRC and the paired per-block tests, and
writes them to benchmarks/results/bench_regulon_operons_<variant>.json. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
from genomelab.regulon.cli import run  # noqa: E402
from genomelab.runtime import setup_logging  # noqa: E402

VARIANTS = {
    "demo": {
        "targets": {"window_bp": 2048, "stride_bp": 1024},
        "model": {"channels": 64, "n_layers": 6, "dropout": 0.2},
    },
    "wide": {
        "targets": {"window_bp": 8192, "stride_bp": 4096},
        "model": {"channels": 48, "n_layers": 8, "dropout": 0.2},
    },
}
OPERON_VIEWS = ("operon_bp_auroc", "pair_auroc", "operon_auroc", "expression_pearson")


def config(variant: str, epochs: int, shared: Path) -> dict:
    v = VARIANTS[variant]
    return {
        "expression": {
            "value": "tpm",
            "table": str(shared / "ecoli_expression" / "log_tpm.csv.gz"),
            "table_transform": "log2p1",
        },
        "targets": {"block_bp": 102400, "resolution_bp": 16, "operon_min_genes": 2, **v["targets"]},
        "model": v["model"],
        "baseline": {"k": 3, "context_bp": 512},
        "train": {"max_epochs": epochs, "batch_size": 32, "lr": 0.002, "weight_decay": 0.05, "patience": 6},
        "plot_bp": 20000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="demo")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", default="/tmp/bench_regulon_operons")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out) / args.variant
    setup_logging(out / "bench.log")
    t0 = time.perf_counter()
    run(
        str(ROOT / "resources" / "regulon" / "dump"),
        str(ROOT / "resources" / "regulon" / "genome.fna.gz"),
        out,
        config(args.variant, args.epochs, Path(args.shared)),
        device="cpu",
        seed=args.seed,
    )
    summary = json.loads((out / "summary.json").read_text())
    result = {
        "variant": args.variant,
        "epochs": args.epochs,
        "seed": args.seed,
        "seconds": 0.0,
        "comparisons": [],
    }
    for comp in summary["comparisons"]:
        if comp["primary"] not in OPERON_VIEWS:
            continue
        result["comparisons"].append(
            {
                "title": comp["title"],
                "primary": comp["primary"],
                "rows": comp["rows"],
                "tests": {
                    k: {"p": t["p_value"], "favours": t["favours"], "n": t["n"]}
                    for k, t in comp["tests"].items()
                },
                "verdict": comp.get("verdict"),
            }
        )
    result["seconds"] = round(time.perf_counter() - t0, 1)
    dest = ROOT / "benchmarks" / "results" / f"bench_regulon_operons_{args.variant}.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=1) + "\n")
    for comp in result["comparisons"]:
        print(f"\n{comp['title']} ({comp['primary']})")
        for name, row in comp["rows"].items():
            print(
                f"  {name:55s} " + "  ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float))
            )
        for k, t in comp["tests"].items():
            print(f"  paired {k}: p={t['p']:.3g} favours {t['favours']} (n={t['n']})")
    print(f"\n{result['seconds']} s; written {dest}")


if __name__ == "__main__":
    main()
