"""Training throughput of each tissue model at the real region count (issue 18).

Every model kind is trained through the workflow's own ``train_model`` (the engine, sparse
training, early-stopping bookkeeping and exports included) with its schema-default config,
on a synthetic cohort of ``--samples`` samples x ``--regions`` regions (default 51,089, the
real panel) with class-specific region means. The dataset is built once in memory; on a
GPU the engine keeps it resident on the device. Each model runs ``--epochs`` epochs with
patience off, and the figure is the median ``time/epoch_s`` of the epochs after the first
(the first pays allocation and warm-up). Samples/s counts training samples per epoch.
The read-profile model (``reads``) has no epochs: it is fitted in closed form by the
workflow's ``fit_read_model`` (its settings chosen on the validation split, no sparsity
grid), and its figure is that whole fit, on the CPU whatever ``--device`` says (as the rule
``tissue_reads``); ``bench_tissue_reads_scale.py`` splits its cost and times its scoring.

The reference measured in the same run is the masked single-layer model (the linear
baseline of the sparsity grid): each model's epoch time is also printed as a ratio to it,
so figures from a loaded or a quiet machine compare.

    PYTHONPATH=workflow/scripts python benchmarks/bench_tissue_throughput.py \
        [--device cpu|cuda] [--samples 320] [--regions 51089] [--epochs 3] [--threads 2] \
        [--precision auto|fp32|bf16]

Writes ``benchmarks/results/bench_tissue_throughput_<device>.json``. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from genomelab.config_schema import fill_defaults
from genomelab.tissue.training import fit_read_model, train_model

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _cohort import synthetic_cohort  # noqa: E402

KINDS = ("masked", "mlp", "attention", "reads")
SCHEMA = Path(__file__).resolve().parents[1] / "workflow" / "schemas" / "tissue.schema.yaml"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--samples", type=int, default=320)
    ap.add_argument("--regions", type=int, default=51089)
    ap.add_argument("--classes", type=int, default=6)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    ap.add_argument(
        "--precision",
        default=None,
        choices=["auto", "fp32", "bf16", "fp16"],
        help="engine precision (default: the schema's, auto = bf16 autocast on CUDA)",
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tissue = fill_defaults({}, SCHEMA)
    train_cfg = {**tissue["train"], "max_epochs": args.epochs, "patience": args.epochs + 1}
    if args.precision:
        train_cfg["precision"] = args.precision
    on_cuda = torch.device(args.device).type == "cuda"
    data = synthetic_cohort(args.samples, args.regions, args.classes, seed=0)
    n_train = len(data.index("train"))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            if on_cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            if kind == "reads":
                fit_read_model(data, tissue[kind], Path(tmp) / kind)
            else:
                train_model(
                    kind,
                    data,
                    tissue[kind],
                    train_cfg,
                    Path(tmp) / "state" / kind,
                    Path(tmp) / kind,
                    args.device,
                )
            wall = time.perf_counter() - t0
            history = json.loads((Path(tmp) / kind / "metrics.json").read_text())["history"]
            # The closed-form fit is its one "epoch": the whole fit, once.
            epochs = [h["time/epoch_s"] for h in history] if history else [wall]
            steady = float(np.median(epochs[1:] if len(epochs) > 1 else epochs))
            results[kind] = {
                "config": tissue[kind],
                "epoch_seconds": epochs,
                "steady_epoch_s": steady,
                "train_samples_per_s": n_train / steady,
                "wall_s": wall,
            }
            if on_cuda:
                # The cohort lives on the device (the engine's resident dataset): this peak
                # holds it, the model, optimiser state and the activations of one batch.
                results[kind]["cuda_peak_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
            print(
                f"{kind:10s} {'fit  ' if kind == 'reads' else 'epoch'} {steady:7.2f} s  "
                f"{n_train / steady:8.1f} train samples/s  (run {wall:.0f} s)"
                + (f"  peak {results[kind]['cuda_peak_allocated_gb']:.2f} GiB" if on_cuda else "")
            )
    ref = results.get("masked", next(iter(results.values())))["steady_epoch_s"]
    for kind, r in results.items():
        r["epoch_time_over_masked"] = r["steady_epoch_s"] / ref
        what = "fit" if kind == "reads" else "epoch time"
        print(f"{kind:10s} {what} / masked model's epoch: {r['epoch_time_over_masked']:.1f}x")
    out = (
        args.out
        or Path(__file__).parent
        / "results"
        / f"bench_tissue_throughput_{torch.device(args.device).type}.json"
    )
    out.write_text(
        json.dumps(
            {
                "benchmark": "tissue_training_throughput",
                "device": args.device,
                "threads": args.threads,
                "samples": args.samples,
                "train_samples": n_train,
                "regions": args.regions,
                "batch_size": train_cfg.get("batch_size"),
                "precision": train_cfg.get("precision"),
                "gpu": torch.cuda.get_device_name() if on_cuda else None,
                "torch": torch.__version__,
                "machine": platform.machine(),
                "load_average_1min_at_end": os.getloadavg()[0],
                "models": results,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
