"""Benchmarks of the regulon module's hot paths (prints ratios, writes JSON; never run by tests).

    python benchmarks/bench_regulon.py [--n-bp 400000]

1. Target tracks: vectorised difference arrays vs a per-gene Python loop.
2. k-mer bin counts: one bincount vs a per-position loop.
3. BSON streaming: documents per second through the dump reader (bounded memory).
4. Model: training windows per second (forward+backward) on this machine's CPU/GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
from genomelab.regulon.baselines import kmer_bin_counts  # noqa: E402
from genomelab.regulon.bsonio import GENE_EXPRESSION, iter_dump  # noqa: E402
from genomelab.regulon.model import RegulonModelConfig, RegulonNet  # noqa: E402
from genomelab.regulon.synthetic import make_synthetic  # noqa: E402
from genomelab.regulon.targets import bp_tracks  # noqa: E402

OUT = Path(__file__).parent / "results" / "bench_regulon.json"


def _time(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def naive_tracks(genes: pd.DataFrame, n: int) -> np.ndarray:
    sums, counts = np.zeros((2, n)), np.zeros((2, n))
    for g in genes.itertuples():
        row = 0 if g.strand == "+" else 1
        for p in range(g.start, g.end):
            sums[row, p] += g.z
            counts[row, p] += 1
    return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def naive_kmers(codes: np.ndarray, k: int, step: int) -> np.ndarray:
    out = np.zeros((len(codes) // step, 4**k))
    for p in range(len(codes) - k + 1):
        if p >= out.shape[0] * step:
            break
        word = codes[p : p + k]
        if (word < 4).all():
            out[p // step, int(sum(int(b) * 4 ** (k - 1 - i) for i, b in enumerate(word)))] += 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n-bp", type=int, default=400_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    results: dict = {"machine": platform.node(), "torch_threads": torch.get_num_threads(), "n_bp": args.n_bp}

    n_genes = args.n_bp // 1000
    starts = np.sort(rng.integers(0, args.n_bp - 2000, n_genes))
    genes = pd.DataFrame(
        {
            "start": starts,
            "end": starts + rng.integers(300, 1500, n_genes),
            "strand": rng.choice(["+", "-"], n_genes),
            "z": rng.normal(size=n_genes),
        }
    )
    ops = pd.DataFrame({"start": [], "end": [], "strand": [], "n_genes": []})
    fast = _time(lambda: bp_tracks(genes, ops, 0, args.n_bp, 2))
    slow = _time(lambda: naive_tracks(genes, args.n_bp), repeat=1)
    np.testing.assert_allclose(
        bp_tracks(genes, ops, 0, args.n_bp, 2)[0], naive_tracks(genes, args.n_bp), rtol=1e-5
    )
    results["tracks"] = {"vectorised_s": fast, "loop_s": slow, "speedup": slow / fast}

    codes = rng.integers(0, 4, args.n_bp).astype(np.uint8)
    m = min(args.n_bp, 100_000)
    fast = _time(lambda: kmer_bin_counts(codes[:m], 3, 16))
    slow = _time(lambda: naive_kmers(codes[:m], 3, 16), repeat=1)
    results["kmer_counts"] = {"n_bp": m, "vectorised_s": fast, "loop_s": slow, "speedup": slow / fast}

    shipped = Path(__file__).resolve().parents[1] / "resources" / "regulon" / "dump"
    with tempfile.TemporaryDirectory() as tmp:
        # The shipped demo dump (7,730 gzipped geneExpression documents) when present.
        dump = shipped if shipped.is_dir() else make_synthetic(tmp, n_bp=args.n_bp, seed=0)["dump"]
        t0 = time.perf_counter()
        n_docs = sum(1 for _ in iter_dump(dump, GENE_EXPRESSION))
        dt = time.perf_counter() - t0
    results["bson"] = {"dump": str(dump.name), "documents": n_docs, "seconds": dt, "docs_per_s": n_docs / dt}

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = RegulonNet(RegulonModelConfig()).to(device)
    batch = (
        torch.randint(0, 4, (32, 2048), dtype=torch.uint8, device=device),
        torch.randn(32, 2, 128, device=device),
        torch.ones(32, 2, 128, dtype=torch.bool, device=device),
        torch.rand(32, 2, 16, device=device),
        (torch.rand(32, 2, 128, device=device) < 0.3).float(),
        # Packed gene-annotation flags (6 bits per bp): the default input is
        # sequence+annotation, so the model refuses a batch without them.
        torch.randint(0, 64, (32, 2048), dtype=torch.uint8, device=device),
    )

    def step() -> None:
        model.loss(batch).loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()
    dt = _time(lambda: [step() for _ in range(5)], repeat=2) / 5
    results["model"] = {
        "device": str(device),
        "batch": 32,
        "window_bp": 2048,
        "s_per_step": dt,
        "windows_per_s": 32 / dt,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(results, indent=2) + "\n")
    for name in ("tracks", "kmer_counts"):
        print(
            f"{name}: vectorised {results[name]['vectorised_s']:.4f} s vs loop {results[name]['loop_s']:.2f} s "
            f"-> {results[name]['speedup']:.0f}x"
        )
    print(
        f"bson: {results['bson']['docs_per_s']:.0f} documents/s; model: {results['model']['windows_per_s']:.0f} "
        f"windows/s on {device}"
    )


if __name__ == "__main__":
    main()
