"""Overhead of the shared training engine against a bare PyTorch loop on the same model.

Both train the same MLP on the same in-memory data for the same number of steps; the ratio
engine_time / bare_time shows what checkpoints, metrics and the loop's bookkeeping cost (the
engine must not starve a GPU). Run on the GPU machine with --device cuda for GPU figures.

    python benchmarks/bench_engine.py [--device cpu|cuda] [--n 20000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
from genomelab.train import LossOutput, TrainConfig, Trainer  # noqa: E402


class MLP(nn.Module):
    def __init__(self, d_in: int, n_classes: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(d_in, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, n_classes)
        )

    def forward(self, x):
        return self.net(x)

    def loss(self, batch) -> LossOutput:
        x, y = batch
        ce = nn.functional.cross_entropy(self(x), y)
        return LossOutput(ce, {"ce": ce}, len(y))


def bare_loop(model, x, y, epochs: int, bs: int, device) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    t0 = time.perf_counter()
    for epoch in range(epochs):
        perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(epoch))
        for start in range(0, len(x), bs):
            idx = perm[start : start + bs].to(device)
            loss = model.loss((x[idx], y[idx])).loss
            opt.zero_grad()
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("--n", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=256)
    args = p.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.n, 256, generator=g).to(device)
    y = torch.randint(0, 10, (args.n,), generator=g).to(device)
    val = TensorDataset(x[:1000], y[:1000])
    torch.manual_seed(0)
    bare = bare_loop(MLP(256, 10).to(device), x, y, args.epochs, args.batch_size, device)
    with tempfile.TemporaryDirectory() as tmp:
        torch.manual_seed(0)
        cfg = TrainConfig(
            max_epochs=args.epochs,
            batch_size=args.batch_size,
            lr=1e-3,
            precision="fp32",
            grad_clip=None,
            patience=100,
        )
        trainer = Trainer(MLP(256, 10), cfg, Path(tmp) / "state", Path(tmp) / "m.json", device=device)
        t0 = time.perf_counter()
        trainer.fit(TensorDataset(x, y), val)
        engine = time.perf_counter() - t0
    result = {
        "benchmark": "engine",
        "device": str(device),
        "n_examples": args.n,
        "epochs": args.epochs,
        "bare_loop_s": bare,
        "engine_s": engine,
        "engine_over_bare_ratio": engine / bare,
        "engine_examples_per_s": args.n * args.epochs / engine,
    }
    out = Path(__file__).resolve().parent / "results" / "engine.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
