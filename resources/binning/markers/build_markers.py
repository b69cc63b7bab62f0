"""Rebuild the default marker set, resources/binning/markers/bacteria_universal31.hmm.gz.

    python resources/binning/markers/build_markers.py \
        --ecoli ../shared/data/ecoli_genome --genomes ../shared/data/binning_genomes/genomes

Seeds: the E. coli K-12 MG1655 protein (RefSeq GCF_000005845.2) of each gene in
marker_genes.tsv. Homologs: for each other bacterial genome in --genomes (E. coli itself and
phages skipped), genes are called with pyrodigal (metagenomic mode), each protein is assigned
to the seed profile it scores best on (E <= 1e-10, domains covering >= 40% of the model),
and the best protein per marker and genome is kept. Each marker's profile is built by HMMER's
Builder from the seed plus its homologs aligned to the seed's profile (genomelab.binning.markers).
Writes the gzipped HMM file and homologs.tsv (which genome gave which marker). See PROVENANCE.md.
"""

from __future__ import annotations

import argparse
import gzip
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2] / "workflow" / "scripts"))

from genomelab.binning.markers import (  # noqa: E402
    MarkersConfig,
    MarkerSeed,
    best_homologs,
    build_marker_hmms,
    collocated_sets,
    genome_proteins,
    read_marker_list,
    seeds_from_annotation,
    write_hmms,
)

SEED_GENOME = "Escherichia_coli_K12_MG1655"
HOMOLOG_COVERAGE = 0.4
SET_GAP = 5000


def homolog_genomes(genomes_dir: Path) -> dict[str, Path]:
    """Bacterial genomes other than the seed's: every *.fna.gz but E. coli and phages."""
    out = {}
    for path in sorted(genomes_dir.glob("*.fna.gz")):
        name = path.name.split(".")[0]
        if name != SEED_GENOME and not name.startswith("phage"):
            out[name] = path
    return out


def write_gzip(plain: Path, out: Path) -> None:
    """gzip ``plain`` to ``out`` with no file name and mtime 0 in the header: same bytes each time."""
    with open(plain, "rb") as src, open(out, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", compresslevel=9, fileobj=raw, mtime=0) as dst:
            shutil.copyfileobj(src, dst)


def collect_and_build(
    seeds: list[MarkerSeed], proteomes: dict[str, list[tuple[str, str]]], exclude: tuple[str, ...] = ()
) -> tuple[dict[str, dict[str, str]], list]:
    """Homologs and profiles in two rounds, as jackhmmer iterates: the seeds' single-sequence
    profiles find homologs, a profile is built from them, and that profile searches again.
    The homolog search accepts hits covering HOMOLOG_COVERAGE of the model (not the 0.7 used
    on bins): distant homologs lack the E. coli protein's lineage-specific insertions (RpoB,
    NusA), and the built profile drops columns most homologs lack, so they then pass 0.7."""
    cfg = MarkersConfig.from_dict({"min_coverage": HOMOLOG_COVERAGE})
    used = {g: p for g, p in proteomes.items() if g not in exclude}
    homologs = best_homologs(seeds, used, cfg)
    hmms = build_marker_hmms(seeds, homologs, exclude, seed_genome=SEED_GENOME)
    homologs = best_homologs(seeds, used, cfg, hmms)
    return homologs, build_marker_hmms(seeds, homologs, exclude, seed_genome=SEED_GENOME)


def write_sets(gff: Path, genes: list[str], hmm_out: Path) -> None:
    """The collocated sets (markers within SET_GAP bp on one strand in E. coli) beside the HMM file."""
    sets = collocated_sets(gff, genes, SET_GAP)
    out = hmm_out.with_name(hmm_out.name.removesuffix(".gz").removesuffix(".hmm") + ".sets.tsv")
    pd.DataFrame({"marker": genes, "set": [sets[g] for g in genes]}).to_csv(out, sep="\t", index=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--ecoli", type=Path, required=True, help="folder with the GCF_000005845.2 GFF3 and protein FASTA"
    )
    ap.add_argument("--genomes", type=Path, required=True, help="folder of genome FASTA files (*.fna.gz)")
    ap.add_argument("--out", type=Path, default=HERE / "bacteria_universal31.hmm.gz")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    genes = read_marker_list(HERE / "marker_genes.tsv")
    seeds = seeds_from_annotation(
        args.ecoli / "GCF_000005845.2_ASM584v2_genomic.gff.gz",
        args.ecoli / "GCF_000005845.2_ASM584v2_protein.faa.gz",
        genes,
    )
    proteomes = {name: genome_proteins(path) for name, path in homolog_genomes(args.genomes).items()}
    homologs, hmms = collect_and_build(seeds, proteomes)
    for hmm in hmms:
        # No DATE and COM lines: the same inputs give the same bytes.
        hmm.creation_time = None
        hmm.command_line = None
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "markers.hmm"
        write_hmms(hmms, plain)
        write_gzip(plain, args.out)
    table = pd.DataFrame(
        [
            {"gene": s.name, "product": s.product, **{g: int(g in homologs[s.name]) for g in proteomes}}
            for s in seeds
        ]
    )
    table.to_csv(HERE / "homologs.tsv", sep="\t", index=False)
    write_sets(args.ecoli / "GCF_000005845.2_ASM584v2_genomic.gff.gz", genes, args.out)
    logging.info("%d models -> %s (%d bytes)", len(hmms), args.out, args.out.stat().st_size)


if __name__ == "__main__":
    main()
