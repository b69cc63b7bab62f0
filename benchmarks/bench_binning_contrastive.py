"""Contrastive encoder vs beta-VAE vs TNF baseline on shredded real genomes, same clustering.

    nice -n 5 python benchmarks/bench_binning_contrastive.py [--seeds 1 2 3] [--vae-seeds 1]

Shreds every genome of ``../shared/data/binning_genomes/genomes`` (or the demo subsets in
resources/binning) as the workflow's shred rule does (``binning.shred`` schema defaults,
shred seed ``--shred-seed``), profiles the contigs (``binning.features`` defaults), then
for every training seed:

* contrastive: views (random fragments, profiled by the k-mer kernel) -> NT-Xent encoder
  through the shared training run -> embedding -> clustering;
* beta-VAE (``--vae-seeds``; schema defaults, slow): training -> latent means -> clustering;
* TNF baseline: TNF PCA -> clustering.

Clustering is ``binning.cluster`` with the schema defaults and the run's seed for all three.
Each method is scored as the workflow's evaluation does (bins >= ``binning.bins.min_bin_bp``)
plus the bp-weighted ARI (pairs of base pairs, AMBER's definition) and near-complete
(recall >= 0.9, precision >= 0.95) and medium (recall >= 0.5, precision >= 0.9) bins. Wall
times: views, training, encoding+clustering. Paired t-test and Wilcoxon over seeds of the
bp-ARI difference contrastive - TNF. Model and training options come from the schema
defaults; ``--model``/``--train``/``--cluster`` JSON overrides them (exploration). Writes
benchmarks/results/bench_binning_contrastive.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.binning import contrastive_views  # noqa: E402
from genomelab.binning import evaluate as ev  # noqa: E402
from genomelab.binning.baselines import BaselineConfig, tnf_embedding  # noqa: E402
from genomelab.binning.cluster import ClusterConfig, cluster_contigs  # noqa: E402
from genomelab.binning.contrastive_model import ContrastiveConfig  # noqa: E402
from genomelab.binning.contrastive_views import make_views  # noqa: E402
from genomelab.binning.data import load_inputs  # noqa: E402
from genomelab.binning.encode import encode_and_cluster  # noqa: E402
from genomelab.binning.kmers import write_profiles_h5  # noqa: E402
from genomelab.binning.shred import ShredConfig, shred_genomes  # noqa: E402
from genomelab.binning.training import train_contrastive, train_vae  # noqa: E402
from genomelab.config import schema_default, schema_defaults  # noqa: E402
from genomelab.io.tables import read_truth  # noqa: E402
from genomelab.report.stats import paired_t, wilcoxon_signed_rank  # noqa: E402
from genomelab.train import resolve_device  # noqa: E402

MEDIUM_RECALL, MEDIUM_PRECISION = 0.5, 0.9


class Clock:
    """Wall and CPU (user + system of this process, all threads) seconds since creation;
    on a shared machine the CPU seconds are what a quiet one would need (at 1 core)."""

    def __init__(self) -> None:
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def read(self) -> dict[str, float]:
        return {"wall_s": time.perf_counter() - self.wall, "cpu_s": time.process_time() - self.cpu}


def score(labels: np.ndarray, genomes: np.ndarray, lengths: np.ndarray, min_bin_bp: int) -> dict:
    # ari_bp / ari_contigs as the workflow's evaluation computes them (binning/evaluate.py).
    metrics, table = ev.evaluate_binning(labels, genomes, lengths, min_bin_bp)
    metrics["n_medium_bins"] = int(
        ((table["recall"] >= MEDIUM_RECALL) & (table["precision"] >= MEDIUM_PRECISION) & ~table["good"]).sum()
    )
    metrics["n_near_complete_bins"] = metrics.pop("n_good_bins")
    return metrics


def run_contrastive(work, inputs, genomes, args, seed, ccfg, device, model_over, train_over) -> dict:
    cfg = {**schema_defaults("binning.model.contrastive"), **model_over}
    mc = ContrastiveConfig.from_dict(cfg)
    clock = Clock()
    views = make_views(
        work / "contigs.fna.gz", work / "profiles.h5", mc.groups, mc.n_views, mc.min_fraction, mc.min_bp, seed
    )
    t_views = clock.read()
    out = work / f"contrastive{seed}"
    clock = Clock()
    _, payload = train_contrastive(
        inputs,
        views,
        cfg,
        {**schema_defaults("binning.train"), **train_over},
        schema_defaults("binning.split"),
        seed,
        out / "state",
        out / "metrics.json",
        out / "model.pt",
        None,
        device,
    )
    t_train = clock.read()
    clock = Clock()
    _, labels = encode_and_cluster(out / "model.pt", inputs, ccfg, device, args.min_bin_bp)
    t_cluster = clock.read()
    res = score(labels, genomes, inputs.lengths, args.min_bin_bp)
    res.update(
        views_seconds=t_views,
        train_seconds=t_train,
        encode_cluster_seconds=t_cluster,
        total_seconds={k: t_views[k] + t_train[k] + t_cluster[k] for k in t_views},
        epochs=len(payload["history"]),
        best_val=payload.get("best_value"),
        test=payload["test"],
    )
    return res


def run_vae(work, inputs, genomes, args, seed, ccfg, device) -> dict:
    model_cfg = {
        k: v for k, v in schema_defaults("binning.model").items() if k not in ("kind", "contrastive")
    }
    out = work / f"vae{seed}"
    clock = Clock()
    _, payload = train_vae(
        inputs,
        model_cfg,
        schema_defaults("binning.train"),
        schema_defaults("binning.split"),
        seed,
        out / "state",
        out / "metrics.json",
        out / "model.pt",
        None,
        device,
    )
    t_train = clock.read()
    clock = Clock()
    _, labels = encode_and_cluster(out / "model.pt", inputs, ccfg, device, args.min_bin_bp)
    res = score(labels, genomes, inputs.lengths, args.min_bin_bp)
    res.update(train_seconds=t_train, encode_cluster_seconds=clock.read(), epochs=len(payload["history"]))
    return res


def shred_copies(genomes: list[Path], work: Path, seed: int, copies: int) -> None:
    """``work/contigs.fna.gz`` and ``work/truth.tsv``: the genomes shredded ``copies`` times
    (seeds ``seed``, ``seed + 1``...) as the workflow's shred rule does; copy c > 0 prefixes
    its contig names with ``c{c}_`` (its genome labels stay those of the genomes)."""
    import gzip

    from genomelab.io.fasta import read_fasta

    truth_lines: list[str] = []
    with gzip.open(work / "contigs.fna.gz", "wb", compresslevel=1) as out:
        for c in range(copies):
            part = work / f"copy{c}"
            part.mkdir()
            cfg = ShredConfig.from_dict(schema_defaults("binning.shred"), seed=seed + c)
            shred_genomes(genomes, part / "contigs.fna.gz", part / "truth.tsv", cfg)
            prefix = f"c{c}_" if c else ""
            for name, seq in read_fasta(part / "contigs.fna.gz"):
                out.write(b">" + (prefix + name).encode() + b"\n" + seq + b"\n")
            lines = (part / "truth.tsv").read_text().splitlines()
            truth_lines += lines[:1] if c == 0 else []
            truth_lines += [prefix + line for line in lines[1:]]
    (work / "truth.tsv").write_text("\n".join(truth_lines) + "\n")


def add_data_args(parser: argparse.ArgumentParser) -> None:
    """The options every binning benchmark on the shredded genomes takes."""
    parser.add_argument(
        "--genomes", default=str(ROOT.parent / "shared" / "data" / "binning_genomes" / "genomes")
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--shred-seed", type=int, default=1)


def genome_files(genomes: str) -> list[Path]:
    """The genomes of ``genomes``, or the demo subsets in resources/binning where it is absent."""
    genome_dir = Path(genomes)
    if not genome_dir.is_dir():
        genome_dir = ROOT / "resources" / "binning" / "genomes"
    return sorted(genome_dir.glob("*.fna.gz"))


def shred_and_profile(genomes: list[Path], work: Path, shred_seed: int, copies: int = 1):
    """(model inputs, genome label per contig [n], feature Clock reading): :func:`shred_copies`
    then the profiles with the ``binning.features`` defaults, in ``work``."""
    shred_copies(genomes, work, shred_seed, copies)
    clock = Clock()
    write_profiles_h5(
        work / "contigs.fna.gz", work / "profiles.h5", int(schema_default("binning.features.min_length"))
    )
    seconds = clock.read()
    inputs = load_inputs(work / "profiles.h5")
    return inputs, read_truth(work / "truth.tsv").loc[inputs.names].to_numpy().astype(str), seconds


def paired(a: list[float], b: list[float]) -> dict:
    out: dict = {"mean_difference": float(np.mean(np.subtract(a, b)))}
    if len(a) >= 2:
        out["paired_t"] = paired_t(a, b).to_dict()
        out["wilcoxon"] = wilcoxon_signed_rank(a, b).to_dict()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--vae-seeds", type=int, nargs="*", default=[])
    parser.add_argument("--no-contrastive", action="store_true", help="only the VAE and the TNF baseline")
    parser.add_argument(
        "--copies",
        type=int,
        default=1,
        help="shred the genomes this many times (shred seeds shred-seed, +1, ...) into one assembly: "
        "2 copies of the 8 genomes give ~6,300 contigs, for the timing bar on 5,850",
    )
    parser.add_argument("--model", default="{}", help="JSON overrides of binning.model.contrastive")
    parser.add_argument("--train", default="{}", help="JSON overrides of binning.train (contrastive)")
    parser.add_argument("--cluster", default="{}", help="JSON overrides of binning.cluster (every method)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--view-dtype",
        choices=["float16", "float32"],
        default="float16",
        help="precision the views are held in (the workflow's is float16; float32 to compare)",
    )
    parser.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "bench_binning_contrastive.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    contrastive_views.VIEW_DTYPE = np.dtype(args.view_dtype).type
    args.min_bin_bp = int(schema_default("binning.bins.min_bin_bp"))
    genomes_in = genome_files(args.genomes)
    device = resolve_device(args.device)
    model_over, train_over = json.loads(args.model), json.loads(args.train)
    cluster_over = json.loads(args.cluster)
    result: dict = {
        "genomes": [g.name for g in genomes_in],
        "seeds": args.seeds,
        "model_overrides": model_over,
        "train_overrides": train_over,
        "cluster_overrides": cluster_over,
        "threads": args.threads,
        "device": str(device),
        "command": " ".join(sys.argv),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs, genomes, result["feature_seconds"] = shred_and_profile(
            genomes_in, work, args.shred_seed, args.copies
        )
        result.update(n_contigs=len(inputs.names), bp=int(inputs.lengths.sum()))
        runs: dict[str, dict[int, dict]] = {"contrastive": {}, "vae": {}, "tnf": {}}
        for seed in args.seeds:
            ccfg = ClusterConfig.from_dict({**schema_defaults("binning.cluster"), **cluster_over}, seed=seed)
            clock = Clock()
            tnf = tnf_embedding(inputs.x, BaselineConfig.from_dict(schema_defaults("binning.baseline")))
            labels = cluster_contigs(tnf, inputs.lengths, ccfg, args.min_bin_bp)
            runs["tnf"][seed] = {
                **score(labels, genomes, inputs.lengths, args.min_bin_bp),
                "seconds": clock.read(),
            }
            if not args.no_contrastive:
                runs["contrastive"][seed] = run_contrastive(
                    work, inputs, genomes, args, seed, ccfg, device, model_over, train_over
                )
            if seed in args.vae_seeds:
                runs["vae"][seed] = run_vae(work, inputs, genomes, args, seed, ccfg, device)
            for name, by_seed in runs.items():
                if seed in by_seed:
                    r = by_seed[seed]
                    print(
                        seed,
                        name,
                        {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items() if k != "test"},
                        flush=True,
                    )
    result["runs"] = runs
    keys = ("ari_bp", "ari_contigs", "n_near_complete_bins", "n_medium_bins")
    result["mean"] = {
        name: {k: float(np.mean([r[k] for r in by_seed.values()])) for k in keys}
        for name, by_seed in runs.items()
        if by_seed
    }
    for name in ("contrastive", "vae"):
        seeds = sorted(runs[name])
        if seeds:
            result[f"{name}_vs_tnf_ari_bp"] = paired(
                [runs[name][s]["ari_bp"] for s in seeds], [runs["tnf"][s]["ari_bp"] for s in seeds]
            )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(
        json.dumps(
            {k: v for k, v in result.items() if k in ("n_contigs", "mean") or k.endswith("_vs_tnf_ari_bp")},
            indent=2,
            default=float,
        )
    )


if __name__ == "__main__":
    main()
