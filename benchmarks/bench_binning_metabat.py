"""The workflow's bins (default model and TNF baseline) beside MetaBAT2, composition only.

    nice -n 5 python benchmarks/bench_binning_metabat.py [--seeds 1 2 3] \
        [--out benchmarks/results/bench_binning_metabat.json]

Shreds every genome of ``../shared/data/binning_genomes/genomes`` (or the demo subsets in
resources/binning) as the workflow's shred rule does (``binning.shred`` schema defaults,
shred seed ``--shred-seed``) and profiles the contigs (``binning.features`` defaults). Then,
per seed, bins them three ways, all scored by the workflow's evaluation (bins >=
``binning.bins.min_bin_bp``; bp-weighted and contig-count ARI; near-complete = recall >= 0.9
and precision >= 0.95; medium = recall >= 0.5 and precision >= 0.9, not near-complete):

* the workflow's default (``binning.model`` schema defaults: the contrastive encoder) ->
  ``binning.cluster`` defaults, as ``bench_binning_contrastive.py`` runs it;
* the TNF PCA baseline with the same clustering;
* Debian's MetaBAT2 2.15 (``apt-get install metabat``) without a depth file:
  ``metabat2 -i contigs.fna -o out/bin -m 1500 -s <min_bin_bp> --seed <seed> -t 1``
  (``-m 1500`` is MetaBAT2's smallest allowed contig length; every shredded contig is longer).

MetaBAT2 leaves contigs unbinned; they count as unbinned in every metric, as the workflow's
own outliers do. Writes the JSON with the means over seeds and the paired tests (t and
Wilcoxon over seeds) of each method's bp-ARI against MetaBAT2's and the default's against TNF.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_binning_contrastive import (  # noqa: E402
    Clock,
    add_data_args,
    genome_files,
    paired,
    run_contrastive,
    score,
    shred_and_profile,
)
from genomelab.binning.baselines import BaselineConfig, tnf_embedding  # noqa: E402
from genomelab.binning.cluster import ClusterConfig, cluster_contigs  # noqa: E402
from genomelab.config import schema_default, schema_defaults  # noqa: E402
from genomelab.io.fasta import read_fasta  # noqa: E402
from genomelab.train import resolve_device  # noqa: E402

METHODS = ("default", "tnf", "metabat2")


def metabat_version(exe: str) -> str:
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True)
    lines = (proc.stdout + proc.stderr).splitlines()
    return next((line.strip() for line in lines if "version" in line.lower()), "unknown")


def run_metabat(contigs_gz: Path, work: Path, min_bin_bp: int, seed: int) -> tuple[dict[str, str], list[str]]:
    """(contig -> bin name of MetaBAT2's bins, the command)."""
    exe = shutil.which("metabat2")
    if exe is None:
        raise SystemExit("metabat2 not on PATH (apt-get install metabat)")
    plain = work / "contigs.fna"
    if not plain.exists():
        with open(plain, "wb") as fh:
            for name, seq in read_fasta(contigs_gz):
                fh.write(b">" + name.encode() + b"\n" + seq + b"\n")
    out = work / f"metabat{seed}"
    out.mkdir()
    cmd = [exe, "-i", str(plain), "-o", str(out / "bin"), "-m", "1500", "-s", str(min_bin_bp)]
    cmd += ["--seed", str(seed), "-t", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"metabat2 failed: {proc.stderr.strip()[-300:]}")
    labels = {}
    for path in sorted(out.glob("bin*.fa")):
        for name, _ in read_fasta(path):
            labels[name] = path.stem
    return labels, cmd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_data_args(parser)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_binning_metabat.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    args.min_bin_bp = int(schema_default("binning.bins.min_bin_bp"))
    genome_paths = genome_files(args.genomes)
    device = resolve_device(args.device)
    result: dict = {
        "genomes": [g.name for g in genome_paths],
        "seeds": args.seeds,
        "default_model": schema_default("binning.model.kind"),
        "command": "python " + " ".join(sys.argv),
    }
    runs: dict[str, dict[int, dict]] = {m: {} for m in METHODS}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        inputs, genomes, _ = shred_and_profile(genome_paths, work, args.shred_seed)
        result.update(n_contigs=len(inputs.names), bp=int(inputs.lengths.sum()))
        result["metabat2_version"] = metabat_version(shutil.which("metabat2") or "metabat2")
        for seed in args.seeds:
            ccfg = ClusterConfig.from_dict(schema_defaults("binning.cluster"), seed=seed)
            runs["default"][seed] = run_contrastive(work, inputs, genomes, args, seed, ccfg, device, {}, {})
            clock = Clock()
            tnf = tnf_embedding(inputs.x, BaselineConfig.from_dict(schema_defaults("binning.baseline")))
            labels = cluster_contigs(tnf, inputs.lengths, ccfg, args.min_bin_bp)
            runs["tnf"][seed] = {
                **score(labels, genomes, inputs.lengths, args.min_bin_bp),
                "seconds": clock.read(),
            }
            clock = Clock()
            mb, cmd = run_metabat(work / "contigs.fna.gz", work, args.min_bin_bp, seed)
            mb_labels = np.array([mb.get(n, "-1") for n in inputs.names])
            runs["metabat2"][seed] = {
                **score(mb_labels, genomes, inputs.lengths, args.min_bin_bp),
                "seconds": clock.read(),
                "command": " ".join(cmd).replace(tmp, "$TMP"),
            }
            for name in METHODS:
                r = runs[name][seed]
                print(seed, name, {k: round(v, 3) for k, v in r.items() if isinstance(v, float)}, flush=True)
    result["runs"] = runs
    keys = ("ari_bp", "ari_contigs", "binned_bp_fraction", "n_near_complete_bins", "n_medium_bins")
    result["mean"] = {m: {k: float(np.mean([r[k] for r in runs[m].values()])) for k in keys} for m in METHODS}
    seeds = args.seeds
    ari = {m: [runs[m][s]["ari_bp"] for s in seeds] for m in METHODS}
    result["default_vs_tnf_ari_bp"] = paired(ari["default"], ari["tnf"])
    result["default_vs_metabat2_ari_bp"] = paired(ari["default"], ari["metabat2"])
    result["tnf_vs_metabat2_ari_bp"] = paired(ari["tnf"], ari["metabat2"])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2, default=float) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2, default=float))


if __name__ == "__main__":
    main()
