"""Training throughput of the binning VAE on many synthetic contigs, and how input-bound it is.

    python benchmarks/bench_binning_gpu.py [--n 1000000] [--epochs 2] [--device auto]
    python benchmarks/bench_binning_gpu.py --n 5000 --device cpu   # a quick check anywhere

Synthetic k-mer profiles (each k group a softmax of genome-specific logits plus contig noise,
GC in (0.2, 0.8)) for ``--n`` contigs are trained through the workflow's own path
(``training.train_vae``: the shared engine, the issue architecture, the input matrix kept
on the GPU unless ``--no-preload``). Reported per epoch: seconds, training contigs per second,
and the share of the epoch spent waiting on input, estimated two ways:

* ``input_only_s``: one epoch of only the engine's batch slicing (synchronised), i.e. the
  time the input path costs if nothing overlaps it;
* ``compute_only_s``: the same number of optimiser steps on one batch already in place, i.e.
  the epoch without any input work; ``non_compute_share = 1 - compute_only_s / epoch_s``
  bounds the waiting from above (it also holds the engine's bookkeeping; the engine's
  validation pass is excluded from ``epoch_s`` for this), ``input_only_share =
  input_only_s / epoch_s`` is the input path's own cost.

Writes benchmarks/results/bench_binning_gpu.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.binning.data import ModelInputs, split_indices  # noqa: E402
from genomelab.binning.kmers import GROUP_SLICES, N_FEATURES  # noqa: E402
from genomelab.binning.model import KmerVAE, VAEConfig  # noqa: E402
from genomelab.binning.training import train_vae  # noqa: E402
from genomelab.train import resolve_device  # noqa: E402


def synthetic_profiles(
    n: int, n_genomes: int, device: torch.device, seed: int, chunk: int = 65536
) -> np.ndarray:
    """[n, N_FEATURES] float32 profiles: per k group softmax(genome logits + noise), GC."""
    gen = torch.Generator(device=device).manual_seed(seed)
    centres = torch.randn(n_genomes, N_FEATURES, generator=gen, device=device)
    gc_centre = 0.2 + 0.6 * torch.rand(n_genomes, generator=gen, device=device)
    out = np.empty((n, N_FEATURES), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        genome = torch.randint(0, n_genomes, (m,), generator=gen, device=device)
        logits = centres[genome] + 0.3 * torch.randn(m, N_FEATURES, generator=gen, device=device)
        x = torch.empty(m, N_FEATURES, device=device)
        for name, sl in GROUP_SLICES.items():
            if name != "gc":
                x[:, sl] = torch.softmax(logits[:, sl], dim=1)
        noise = 0.02 * torch.randn(m, generator=gen, device=device)
        x[:, GROUP_SLICES["gc"]] = (gc_centre[genome] + noise).clamp(0.01, 0.99)[:, None]
        out[start : start + m] = x.cpu().numpy()
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def input_only_seconds(x: torch.Tensor, batch_size: int, device: torch.device) -> float:
    """One epoch of the engine's TensorDataset fast path: gather each batch by index."""
    order = torch.randperm(len(x))
    _sync(device)
    t0 = time.perf_counter()
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        _ = x[idx.to(x.device)]
    _sync(device)
    return time.perf_counter() - t0


def compute_only_seconds(model_cfg: dict, x: torch.Tensor, n_steps: int, batch_size: int, device) -> float:
    """``n_steps`` optimiser steps of a fresh model on one batch that is already in place."""
    torch.manual_seed(0)
    model = KmerVAE(VAEConfig.from_dict(model_cfg)).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    batch = (x[:batch_size].to(device),)
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        loss = model.loss(batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--genomes", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[1024, 512])
    parser.add_argument("--latent", type=int, default=256)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-preload", action="store_true", help="keep the matrix in host memory")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--precision", default=None, help="engine precision (default: the engine's)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_binning_gpu.json"))
    args = parser.parse_args()
    device = resolve_device(args.device)
    t0 = time.perf_counter()
    x = synthetic_profiles(args.n, args.genomes, device, args.seed)
    make_s = time.perf_counter() - t0
    inputs = ModelInputs(
        np.array([f"c{i}" for i in range(args.n)], dtype=object), np.full(args.n, 5000), x, 0
    )
    model_cfg = {"hidden": args.hidden, "latent": args.latent, "beta": 0.1, "kl_warmup_steps": 1000}
    train_cfg = {"max_epochs": args.epochs, "batch_size": args.batch_size, "lr": 0.001, "weight_decay": 0.0}
    if args.precision:
        train_cfg["precision"] = args.precision
    split_cfg = {"val_fraction": 0.01, "test_fraction": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        _, metrics = train_vae(
            inputs,
            model_cfg,
            train_cfg,
            split_cfg,
            args.seed,
            Path(tmp) / "state",
            Path(tmp) / "metrics.json",
            None,
            device,
            preload=not args.no_preload,
        )
    n_train = len(
        split_indices(args.n, split_cfg["val_fraction"], split_cfg["test_fraction"], args.seed)["train"]
    )
    epoch_s = [h["time/epoch_s"] for h in metrics["history"]] if "history" in metrics else []
    # The engine's epoch time includes its validation pass; time one alone to subtract it.
    val_rows = max(1, round(split_cfg["val_fraction"] * args.n))
    resident = torch.from_numpy(x[:n_train])
    if device.type == "cuda" and not args.no_preload:
        resident = resident.to(device)
    n_steps = -(-n_train // args.batch_size)
    input_s = input_only_seconds(resident, args.batch_size, device)
    compute_s = compute_only_seconds(model_cfg, resident, n_steps, args.batch_size, device)
    model = KmerVAE(VAEConfig.from_dict(model_cfg)).to(device).eval()
    xv = torch.from_numpy(x[:val_rows]).to(device)
    _sync(device)
    t1 = time.perf_counter()
    with torch.no_grad():
        for start in range(0, val_rows, args.batch_size):
            model.loss((xv[start : start + args.batch_size],))
    _sync(device)
    val_s = time.perf_counter() - t1
    best_epoch = min(epoch_s) if epoch_s else float("nan")
    train_epoch = best_epoch - val_s
    result = {
        "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "load_average": os.getloadavg(),
        "n_contigs": args.n,
        "n_train": n_train,
        "batch_size": args.batch_size,
        "model": model_cfg,
        "preload": not args.no_preload,
        "precision": metrics.get("precision"),
        "make_data_s": make_s,
        "epoch_s": epoch_s,
        "best_epoch_s": best_epoch,
        "train_contigs_per_s": n_train / train_epoch,
        "validation_s": val_s,
        "input_only_s": input_s,
        "compute_only_s": compute_s,
        # Upper bound on waiting for input: all the epoch that the optimiser steps alone do
        # not explain (input, the engine's bookkeeping, Python overhead between kernels).
        "non_compute_share": max(0.0, 1 - compute_s / train_epoch),
        # The input path's own cost relative to the epoch (if nothing overlapped it).
        "input_only_share": input_s / train_epoch,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
