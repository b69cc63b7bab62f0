"""Marker-gene completeness/contamination measured on real genomes and on TNF-baseline bins.

    nice -n 5 python benchmarks/bench_binning_markers.py [--shred-seed 1] \
        [--out benchmarks/results/bench_binning_markers.json]

1. Each genome of ``../shared/data/binning_genomes/genomes`` as one bin, with the shipped
   marker set (``resources/binning/markers/bacteria_universal31.hmm.gz``) and with a
   leave-one-genome-out set: the same build (``build_markers.py``) without that genome's
   proteins, so the genome is searched by profiles that never saw it (for E. coli, the seed
   genome, its proteins still guide the alignment but are no row of it). Seconds per Mbp are
   for gene calling + search with the shipped set, one thread.
2. The genomes shredded as the workflow's shred rule does (``--shred-seed``), clustered on
   the TNF baseline with the schema defaults; every cluster of at least ``bins.min_bin_bp``
   is a bin: its marker completeness/contamination beside its truth (majority genome, bp
   precision, recall of that genome).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "resources" / "binning" / "markers"))

from bench_binning_contrastive import genome_files, shred_and_profile  # noqa: E402
from build_markers import SEED_GENOME, collect_and_build  # noqa: E402
from genomelab.binning.baselines import BaselineConfig, tnf_embedding  # noqa: E402
from genomelab.binning.cluster import ClusterConfig, cluster_contigs  # noqa: E402
from genomelab.binning.markers import (  # noqa: E402
    DEFAULT_HMM,
    DEFAULT_SETS,
    BinMarkers,
    MarkersConfig,
    bin_markers,
    genome_proteins,
    marker_copies,
    read_marker_hmms,
    read_marker_list,
    read_marker_sets,
    seeds_from_annotation,
)
from genomelab.config import schema_default, schema_defaults  # noqa: E402
from genomelab.io.fasta import read_fasta, write_fasta_record  # noqa: E402

MARKERS = ROOT / "resources" / "binning" / "markers"
# Whole-genome lengths of the two truncated records (NCBI CP001071.1 and NC_009665.1, about):
# a bin holding all of a 500 kb prefix is that share of the organism's genome.
FULL_GENOME_BP = {
    "Akkermansia_muciniphila_ATCC_BAA-835.first500kb": 2_664_102,
    "Shewanella_baltica_OS185.first500kb": 5_229_686,
}


def genome_name(path: Path) -> str:
    return path.name.split(".")[0]


def shipped_set() -> tuple[list, list[str], np.ndarray]:
    """The shipped HMMs, their names and collocated set ids."""
    hmms = read_marker_hmms(ROOT / DEFAULT_HMM)
    names = [h.name.decode() if isinstance(h.name, bytes) else h.name for h in hmms]
    return hmms, names, read_marker_sets(ROOT / DEFAULT_SETS, names)


def estimates(result: BinMarkers, prefix: str = "") -> dict:
    """Completeness/contamination with the collocated sets (as the workflow) and flat."""
    flat = BinMarkers(result.name, result.size_bp, result.n_contigs, result.n_genes, result.copies)
    return {
        f"{prefix}completeness": round(result.completeness, 1),
        f"{prefix}contamination": round(result.contamination, 1),
        f"{prefix}completeness_flat": round(flat.completeness, 1),
        f"{prefix}contamination_flat": round(flat.contamination, 1),
    }


def whole_genomes(files: list[Path], ecoli: Path, cfg: MarkersConfig, loo: bool) -> list[dict]:
    hmms, names, sets = shipped_set()
    seeds = seeds_from_annotation(
        ecoli / "GCF_000005845.2_ASM584v2_genomic.gff.gz",
        ecoli / "GCF_000005845.2_ASM584v2_protein.faa.gz",
        read_marker_list(MARKERS / "marker_genes.tsv"),
    )
    proteomes = {genome_name(p): genome_proteins(p) for p in files}
    # The build's homolog genomes: all but the seed genome and phages.
    homolog_set = {g: p for g, p in proteomes.items() if g != SEED_GENOME and not g.startswith("phage")}
    rows = []
    for path in files:
        g = genome_name(path)
        start = time.perf_counter()
        found = bin_markers(path, hmms, cfg, sets=sets)
        seconds = time.perf_counter() - start
        row = {
            "genome": g,
            "size_bp": found.size_bp,
            "n_genes": found.n_genes,
            **estimates(found),
            "missing": [n for n, c in zip(names, found.copies, strict=True) if c == 0],
            "multi": [n for n, c in zip(names, found.copies, strict=True) if c > 1],
            "seconds": round(seconds, 2),
            "seconds_per_mbp": round(seconds / (found.size_bp / 1e6), 2),
        }
        if loo:
            _, loo_hmms = collect_and_build(seeds, homolog_set, exclude=(g,))
            copies = marker_copies(proteomes[g], loo_hmms, cfg)
            row.update(estimates(BinMarkers(g, 0, 0, 0, copies, sets), "loo_"))
            row["loo_missing"] = [n for n, c in zip(names, copies, strict=True) if c == 0]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def tnf_bins(files: list[Path], work: Path, shred_seed: int, cfg: MarkersConfig) -> list[dict]:
    inputs, genomes, _ = shred_and_profile(files, work, shred_seed)
    emb = tnf_embedding(inputs.x, BaselineConfig.from_dict(schema_defaults("binning.baseline")))
    min_bp = int(schema_default("binning.bins.min_bin_bp"))
    labels = cluster_contigs(
        emb, inputs.lengths, ClusterConfig.from_dict(schema_defaults("binning.cluster"), seed=1), min_bp
    )
    frame = pd.DataFrame({"contig": inputs.names, "bin": labels, "genome": genomes, "bp": inputs.lengths})
    genome_bp = frame.groupby("genome")["bp"].sum()
    sizes = frame[frame["bin"] >= 0].groupby("bin")["bp"].sum()
    keep = set(sizes[sizes >= min_bp].index)
    bin_dir = work / "bins"
    bin_dir.mkdir()
    handles = {b: open(bin_dir / f"bin_{b}.fna", "wb") for b in keep}
    where = dict(zip(frame["contig"], frame["bin"], strict=True))
    for name, seq in read_fasta(work / "contigs.fna.gz"):
        b = where.get(name, -1)
        if b in handles:
            write_fasta_record(handles[b], name, seq)
    for fh in handles.values():
        fh.close()
    hmms, _, sets = shipped_set()
    rows = []
    for b in sorted(keep):
        members = frame[frame["bin"] == b]
        by_genome = members.groupby("genome")["bp"].sum().sort_values(ascending=False)
        major = by_genome.index[0]
        start = time.perf_counter()
        result = bin_markers(bin_dir / f"bin_{b}.fna", hmms, cfg, sets=sets)
        row = {
            "bin": int(b),
            "size_bp": int(members["bp"].sum()),
            "majority_genome": major,
            "precision_bp": round(float(by_genome.iloc[0] / members["bp"].sum()), 3),
            "recall_bp": round(float(by_genome.iloc[0] / genome_bp[major]), 3),
            # The bin's true completeness against the organism's whole genome.
            "true_completeness": round(
                100 * float(by_genome.iloc[0] / FULL_GENOME_BP.get(major, genome_bp[major])), 1
            ),
            **estimates(result),
            "tier": result.row()["tier"],
            "seconds": round(time.perf_counter() - start, 2),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def mean_abs(pairs: list[tuple[float, float]]) -> float | None:
    return float(np.mean([abs(a - b) for a, b in pairs])) if pairs else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--genomes", default=str(ROOT.parent / "shared" / "data" / "binning_genomes" / "genomes")
    )
    parser.add_argument("--ecoli", default=str(ROOT.parent / "shared" / "data" / "ecoli_genome"))
    parser.add_argument("--shred-seed", type=int, default=1)
    parser.add_argument("--skip-bins", action="store_true", help="only the whole genomes")
    parser.add_argument("--skip-loo", action="store_true", help="no leave-one-genome-out builds")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_binning_markers.json"))
    args = parser.parse_args()
    cfg = MarkersConfig.from_dict({})
    files = genome_files(args.genomes)
    result: dict = {"command": "python " + " ".join(sys.argv), "marker_set": DEFAULT_HMM}
    result["genomes"] = whole_genomes(files, Path(args.ecoli), cfg, not args.skip_loo)
    if not args.skip_bins:
        with tempfile.TemporaryDirectory() as tmp:
            result["tnf_bins"] = tnf_bins(files, Path(tmp), args.shred_seed, cfg)
    total_bp = sum(r["size_bp"] for r in result["genomes"])
    total_s = sum(r["seconds"] for r in result["genomes"])
    result["seconds_per_mbp_all_genomes"] = round(total_s / (total_bp / 1e6), 2)
    bins = result.get("tnf_bins") or []
    for kind in ("", "_flat"):
        # How far the estimates sit from the truth: completeness from the bin's share of its
        # genome (the whole genome for the truncated records), contamination from the foreign
        # bp share (100 x (1 - precision)).
        result[f"bins_mean_abs_error{kind or '_sets'}"] = {
            "completeness_vs_true": mean_abs(
                [(r[f"completeness{kind}"], r["true_completeness"]) for r in bins]
            ),
            "contamination_vs_foreign_bp": mean_abs(
                [(r[f"contamination{kind}"], 100 * (1 - r["precision_bp"])) for r in bins]
            ),
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print("seconds per Mbp:", result["seconds_per_mbp_all_genomes"])


if __name__ == "__main__":
    main()
