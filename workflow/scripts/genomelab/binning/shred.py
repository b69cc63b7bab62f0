"""Shred genomes into contigs of realistic lengths, with a truth table (for benchmarking).

Contig lengths are drawn from a log-normal distribution (median and sigma in config) and
clipped to ``[min_length, max_length]``; each record of each genome is cut left to right
into consecutive pieces, and a trailing piece shorter than ``min_length`` is dropped, as
an assembler's smallest fragments would be. Optionally a MetaBAT-format depth table is
simulated: every genome gets one abundance per sample, every contig that abundance times
Poisson-like noise, so that the abundance path of the VAE can be exercised without reads.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genomelab.config import ConfigSection, from_schema
from genomelab.io.atomic import atomic_output
from genomelab.io.fasta import read_fasta, write_fasta_record
from genomelab.io.names import is_safe_name

logger = logging.getLogger(__name__)

TRUTH_COLUMNS = ("contig", "genome", "record", "start", "end", "length")


@dataclass
class ShredConfig(ConfigSection):
    SECTION = "binning.shred"

    median_length: int = from_schema("binning.shred.median_length")
    sigma: float = from_schema("binning.shred.sigma")
    min_length: int = from_schema("binning.shred.min_length")
    max_length: int = from_schema("binning.shred.max_length")
    max_bp_per_genome: int | None = from_schema("binning.shred.max_bp_per_genome")
    depth_samples: int = from_schema("binning.shred.depth_samples")
    seed: int = 0

    def __post_init__(self) -> None:
        if self.min_length < 1:
            raise ValueError(f"shred.min_length must be >= 1, not {self.min_length}")
        if self.max_length < self.min_length:
            raise ValueError(
                f"shred.max_length ({self.max_length}) must be >= min_length ({self.min_length})"
            )
        if not self.min_length <= self.median_length <= self.max_length:
            raise ValueError(
                f"shred.median_length {self.median_length} must lie in [{self.min_length}, {self.max_length}]"
            )
        if self.sigma < 0:
            raise ValueError(f"shred.sigma must be >= 0, not {self.sigma}")
        if self.max_bp_per_genome is not None and self.max_bp_per_genome < self.min_length:
            raise ValueError(f"shred.max_bp_per_genome must be >= min_length, not {self.max_bp_per_genome}")
        if self.depth_samples < 0:
            raise ValueError(f"shred.depth_samples must be >= 0, not {self.depth_samples}")


def cut_points(length: int, cfg: ShredConfig, rng: np.random.Generator) -> list[tuple[int, int]]:
    """[(start, end)] half-open pieces of a record of ``length`` bp."""
    pieces = []
    start = 0
    while length - start >= cfg.min_length:
        draw = int(round(cfg.median_length * np.exp(cfg.sigma * rng.standard_normal())))
        size = min(max(draw, cfg.min_length), cfg.max_length, length - start)
        pieces.append((start, start + size))
        start += size
    return pieces


def genome_name(path: str | os.PathLike) -> str:
    """Genome id from a file name: ``E_coli.fna.gz`` -> ``E_coli``."""
    name = Path(path).name
    for suffix in (".gz", ".fna", ".fasta", ".fa", ".fsa"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    if not is_safe_name(name):
        raise ValueError(
            f"genome file {path}: its name {name!r} is not a plain identifier (letters, digits, _ . + -)"
        )
    return name


def shred_genomes(
    genomes: list[str | os.PathLike],
    contigs_out: str | os.PathLike,
    truth_out: str | os.PathLike,
    cfg: ShredConfig,
    depth_out: str | os.PathLike | None = None,
) -> dict[str, int]:
    """Cut every genome FASTA into contigs; write contigs (gzip FASTA) and the truth TSV.

    Returns counts per genome. Contig names are ``{genome}_{record index}_{piece index}``.
    """
    if not genomes:
        raise ValueError("no genome files given to shred")
    names = [genome_name(g) for g in genomes]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"genome files share the names {dup}: genome ids must be unique")
    rng = np.random.default_rng(cfg.seed)
    truth_rows: list[tuple] = []
    counts: dict[str, int] = {}
    with atomic_output(contigs_out) as tmp:
        with gzip.open(tmp, "wb", compresslevel=1) as fh:
            for path, genome in zip(genomes, names, strict=True):
                budget = cfg.max_bp_per_genome
                counts[genome] = 0
                for r_idx, (record, seq) in enumerate(read_fasta(path)):
                    if budget is not None:
                        seq = seq[:budget]
                        budget -= len(seq)
                    for p_idx, (start, end) in enumerate(cut_points(len(seq), cfg, rng)):
                        contig = f"{genome}_{r_idx}_{p_idx}"
                        write_fasta_record(fh, contig, seq[start:end])
                        truth_rows.append((contig, genome, record, start, end, end - start))
                        counts[genome] += 1
                    if budget is not None and budget <= 0:
                        break
                if counts[genome] == 0:
                    raise ValueError(f"genome {path} yields no contig of at least {cfg.min_length} bp")
    with atomic_output(truth_out) as tmp:
        with open(tmp, "w") as fh:
            fh.write("\t".join(TRUTH_COLUMNS) + "\n")
            for row in truth_rows:
                fh.write("\t".join(map(str, row)) + "\n")
    if depth_out is not None:
        write_simulated_depth(depth_out, truth_rows, names, cfg, rng)
    logger.info("shredded %d genomes into %d contigs: %s", len(genomes), len(truth_rows), counts)
    return counts


def write_simulated_depth(
    path: str | os.PathLike,
    truth_rows: list[tuple],
    genomes: list[str],
    cfg: ShredConfig,
    rng: np.random.Generator,
) -> None:
    """A ``jgi_summarize_bam_contig_depths``-format table with simulated abundances."""
    n_samples = max(cfg.depth_samples, 1)
    # Log-normal genome abundances per sample, the usual shape of community profiles.
    abundance = {g: np.exp(rng.normal(2.0, 1.0, n_samples)) for g in genomes}
    samples = [f"sample{i + 1}.bam" for i in range(n_samples)]
    header = ["contigName", "contigLen", "totalAvgDepth"]
    for s in samples:
        header += [s, f"{s}-var"]
    with atomic_output(path) as tmp, open(tmp, "w") as fh:
        fh.write("\t".join(header) + "\n")
        for contig, genome, _record, _start, _end, length in truth_rows:
            mean = abundance[genome]
            # Coverage of a contig fluctuates around its genome's abundance (Gamma noise
            # whose spread shrinks with contig length, like averaged read depth).
            shape = max(length / 500.0, 1.0)
            depth = rng.gamma(shape, mean / shape)
            cells = [contig, str(length), f"{depth.sum():.4f}"]
            for d in depth:
                cells += [f"{d:.4f}", f"{d:.4f}"]
            fh.write("\t".join(cells) + "\n")
