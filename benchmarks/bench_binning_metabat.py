"""The workflow's bins against MetaBAT2 (composition only) on shredded real genomes.

    python benchmarks/bench_binning_metabat.py [--epochs 60] [--device auto]

Shreds every genome of ``../shared/data/binning_genomes`` (or the demo subsets in
resources/binning) into 2-20 kb log-normal contigs with a truth table, then bins them
three ways and evaluates all three identically (bp-weighted AMBER-style precision/recall,
ARI, bins with recall >= 0.9 and precision >= 0.95), counting only bins >= 200 kb:

* the workflow: k-mer profiles -> beta-VAE (issue architecture) -> clustering
  (``--cluster-method``: the kNN-graph Louvain default, or VAMB-style medoids);
* the TNF PCA baseline with the same clustering;
* Debian's MetaBAT2 (``apt-get install metabat``) without a depth file: ``metabat2 -i
  contigs.fna -o out/bin -m 1500 -s 200000 --seed 1``.

Also records, per embedding, the share of each contig's 10 nearest neighbours from its own
genome, which separates embedding quality from clustering quality. Writes
benchmarks/results/bench_binning_metabat.json. The bar (issue 5): the workflow
reaches at least MetaBAT2's ARI and its number of good bins.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.binning import evaluate as ev  # noqa: E402
from genomelab.binning.baselines import BaselineConfig, tnf_embedding  # noqa: E402
from genomelab.binning.cluster import ClusterConfig, cluster_contigs, knn_cosine  # noqa: E402
from genomelab.binning.data import load_inputs  # noqa: E402
from genomelab.binning.encode import encode_and_cluster  # noqa: E402
from genomelab.binning.kmers import write_profiles_h5  # noqa: E402
from genomelab.binning.shred import ShredConfig, shred_genomes  # noqa: E402
from genomelab.binning.training import train_vae  # noqa: E402
from genomelab.io.fasta import read_fasta  # noqa: E402
from genomelab.io.tables import read_truth  # noqa: E402
from genomelab.train import resolve_device  # noqa: E402


def run_metabat(
    contigs_gz: Path, work: Path, min_bin_bp: int, seed: int
) -> tuple[dict[str, str] | None, str]:
    exe = shutil.which("metabat2")
    if exe is None:
        return None, "metabat2 not on PATH (apt-get install metabat)"
    plain = work / "contigs.fna"
    with open(plain, "wb") as fh:
        for name, seq in read_fasta(contigs_gz):
            fh.write(b">" + name.encode() + b"\n" + seq + b"\n")
    out = work / "metabat"
    out.mkdir()
    cmd = [
        exe,
        "-i",
        str(plain),
        "-o",
        str(out / "bin"),
        "-m",
        "1500",
        "-s",
        str(min_bin_bp),
        "--seed",
        str(seed),
        "-t",
        "2",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"metabat2 failed: {proc.stderr.strip()[-300:]}"
    labels = {}
    for path in sorted(out.glob("bin*.fa")):
        for name, _ in read_fasta(path):
            labels[name] = path.stem
    return labels, " ".join(cmd)


def knn_purity(z: np.ndarray, genomes: np.ndarray, k: int = 10) -> float:
    """Fraction of each row's ``k`` nearest other rows (cosine) with the same genome."""
    neighbours = knn_cosine(z, k)
    return float((genomes[neighbours] == genomes[:, None]).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--genomes", default=str(ROOT.parent / "shared" / "data" / "binning_genomes" / "genomes")
    )
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--hidden", type=int, nargs="+", default=[1024, 512], help="encoder sizes (issue: 1024 512)"
    )
    parser.add_argument("--latent", type=int, default=256, help="latent size (issue: 256)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--min-bin-bp", type=int, default=200_000)
    parser.add_argument("--cluster-method", default="graph", choices=["graph", "medoid"])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_binning_metabat.json"))
    args = parser.parse_args()
    genome_dir = Path(args.genomes)
    if not genome_dir.is_dir():
        genome_dir = ROOT / "resources" / "binning" / "genomes"
    genomes = sorted(genome_dir.glob("*.fna.gz"))
    device = resolve_device(args.device)
    result: dict = {
        "genomes": [g.name for g in genomes],
        "min_bin_bp": args.min_bin_bp,
        "device": str(device),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shred_genomes(genomes, work / "contigs.fna.gz", work / "truth.tsv", ShredConfig(seed=args.seed))
        t0 = time.perf_counter()
        write_profiles_h5(work / "contigs.fna.gz", work / "profiles.h5", 1500)
        result["feature_seconds"] = time.perf_counter() - t0
        inputs = load_inputs(work / "profiles.h5")
        truth = read_truth(work / "truth.tsv").loc[inputs.names].to_numpy()
        result["n_contigs"] = len(inputs.names)
        result["bp"] = int(inputs.lengths.sum())
        model_cfg = {"hidden": args.hidden, "latent": args.latent, "beta": 0.1, "kl_warmup_steps": 200}
        train_cfg = {
            "max_epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": 0.001,
            "weight_decay": 0.0,
            "patience": 20,
        }
        t0 = time.perf_counter()
        model, metrics = train_vae(
            inputs,
            model_cfg,
            train_cfg,
            {"val_fraction": 0.1, "test_fraction": 0.1},
            args.seed,
            work / "state",
            work / "metrics.json",
            work / "vae.pt",
            None,
            device,
        )
        result["train_seconds"] = time.perf_counter() - t0
        result["test_terms"] = metrics["test"]
        ccfg = ClusterConfig(seed=args.seed, method=args.cluster_method)
        result["cluster"] = {
            "method": ccfg.method,
            "n_neighbors": ccfg.n_neighbors,
            "resolution": ccfg.resolution,
        }
        latent, vae_labels = encode_and_cluster(work / "vae.pt", inputs, ccfg, device, args.min_bin_bp)
        np.save(Path(tempfile.gettempdir()) / "bench_binning_metabat.latent.npy", latent)
        tnf = tnf_embedding(inputs.x, BaselineConfig())
        tnf_labels = cluster_contigs(tnf, inputs.lengths, ccfg, args.min_bin_bp)
        # Embedding quality apart from the clustering: how many of each contig's 10 nearest
        # neighbours (cosine) come from its own genome.
        result["knn10_same_genome"] = {
            "workflow beta-VAE": knn_purity(latent, truth),
            "TNF PCA baseline": knn_purity(tnf, truth),
        }
        methods = {"workflow beta-VAE": vae_labels, "TNF PCA baseline": tnf_labels}
        mb_labels, mb_info = run_metabat(work / "contigs.fna.gz", work, args.min_bin_bp, args.seed)
        result["metabat2"] = mb_info
        if mb_labels is not None:
            methods["MetaBAT2 (composition only)"] = np.array([mb_labels.get(n, "-1") for n in inputs.names])
        for name, labels in methods.items():
            metrics_, _ = ev.evaluate_binning(labels, truth, inputs.lengths, args.min_bin_bp)
            result[name] = metrics_
            print(name, {k: round(v, 3) for k, v in metrics_.items()}, flush=True)
    if "MetaBAT2 (composition only)" in result:
        ours, mb = result["workflow beta-VAE"], result["MetaBAT2 (composition only)"]
        result["bar_met"] = bool(ours["ari_bp"] >= mb["ari_bp"] and ours["n_good_bins"] >= mb["n_good_bins"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "test_terms"}, indent=2, default=float))


if __name__ == "__main__":
    torch.set_num_threads(2)
    main()
