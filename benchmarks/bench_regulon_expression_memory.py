"""Peak memory of the regulon data step on a large expression table (genes x samples).

Writes a synthetic gene x sample table (``--genes`` made-up b-numbers, placed on the shipped
E. coli genome by a made-up GFF3) with ``--samples`` columns, then runs the whole data step
(``regulon.data.process_data``: reading the table, the per-gene means, ``log_matrix`` and the
co-expression of adjacent pairs) in a fresh child process per measurement, and prints its
peak as a multiple of the genes x datasets float32 matrix that ``log_matrix`` returns (its
size taken from the same run):

- ``tracemalloc``: the peak of memory allocated by Python and numpy during the step;
- ``rss``: the peak resident set size (VmHWM; not ru_maxrss, which a child inherits from its
  parent's peak across fork and exec) less the resident size before the step (imports), in
  a child without tracemalloc.

    PYTHONPATH=workflow/scripts python benchmarks/bench_regulon_expression_memory.py \\
        [--genes 4600] [--samples 1000 5000] [--fields tpm count] [--out X.json]

Writes ``--out`` (JSON; default benchmarks/results/bench_regulon_expression_memory.json).
It measures the code of the tree it sits in: the committed results' "before" rows came from
a copy of it run in a tree of the older code (main at f4e5745), its "after" rows from branch
h/lowmem (a document per value), its "blocks" rows from h/regspeed (a table tallied a chunk of
rows at a time). Not a test: at 4,600 x 5,000 an ``rss`` measurement takes 10-35 s, a
``tracemalloc`` one 5-6 minutes (every allocation is traced), on 2 loaded cores; with a
document per value they took 3-5 and 14-28 minutes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"
GENOME = ROOT / "resources" / "regulon" / "genome.fna.gz"

CHILD = """
import json, sys, time
sys.path.insert(0, {scripts!r})
import genomelab.regulon.data as data
from genomelab.regulon.flat import FlatSource

table, gff, genome, field, mode, contig, n_bp = sys.argv[1:8]
# The genome's length comes from the parent: reading its FASTA (22 MB at the peak for
# E. coli, after importing the targets module and torch, 110 MB with the imports) does not
# grow with the table and would blur the step's figure.
data.genome_length = lambda fasta, contig=None: (contig_name, int(n_bp))
contig_name = contig

def status_mb(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":")) / 1024

if mode == "tracemalloc":
    import tracemalloc
    tracemalloc.start()
before = status_mb("VmRSS")
t0 = time.perf_counter()
genes, _, _, report = data.process_data(FlatSource(expression=table, value_field=field), genome, field, annotation=gff)
seconds = time.perf_counter() - t0
out = {{"seconds": seconds, "n_datasets": report["n_datasets"], "n_genes_measured": report["n_genes_measured"],
       "n_with_coexpression": report["coexpression"]["n_with_coexpression"],
       "coexpression_sum": float(genes["next_coexpression"].sum())}}
if mode == "tracemalloc":
    out["peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
else:
    out["peak_mb"] = status_mb("VmHWM") - before
print(json.dumps(out))
"""


def write_inputs(folder: Path, n_genes: int, n_samples: int, field: str, seed: int = 0) -> tuple[Path, Path]:
    """A GFF3 of ``n_genes`` made-up genes (b0000, b0001, ...; 800 bp every 1,000 bp, strands in
    runs so that adjacent pairs share one) and a gene x sample TSV of their values: log-normal
    TPM, or integer counts, with pairs of neighbours sharing a profile so that co-expression
    has something to find, and 1% of cells empty."""
    rng = np.random.default_rng(seed)
    bnumbers = [f"b{i:04d}" for i in range(n_genes)]
    gff = folder / "genes.gff3"
    strand = np.where((np.arange(n_genes) // 3) % 2 == 0, "+", "-")
    with open(gff, "w") as fh:
        fh.write("##gff-version 3\n")
        for i, b in enumerate(bnumbers):
            start = 1000 * i + 1
            fh.write(
                f"NC_000913.3\tbench\tgene\t{start}\t{start + 799}\t.\t{strand[i]}\t.\tID=gene-{b};Name=g{i};locus_tag={b}\n"
            )
    table = folder / f"expression_{field}_{n_samples}.tsv"
    with open(table, "w") as fh:
        fh.write("gene\t" + "\t".join(f"S{j}" for j in range(n_samples)) + "\n")
        shared = rng.normal(0, 1, (n_genes // 2 + 1, n_samples))
        for i, b in enumerate(bnumbers):
            log_level = 3 + rng.normal(0, 1) + shared[i // 2] + rng.normal(0, 1, n_samples)
            values = np.exp(log_level)
            cells = (
                np.round(values).astype(np.int64).astype(str)
                if field == "count"
                else np.char.mod("%.4g", values)
            )
            cells[rng.random(n_samples) < 0.01] = ""
            fh.write(b + "\t" + "\t".join(cells) + "\n")
    return table, gff


def measure(table: Path, gff: Path, field: str, mode: str, genome: tuple[str, int]) -> dict:
    code = CHILD.format(scripts=str(SCRIPTS))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            str(table),
            str(gff),
            str(GENOME),
            field,
            mode,
            genome[0],
            str(genome[1]),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    matrix_mb = got["n_genes_measured"] * got["n_datasets"] * 4 / 2**20
    return got | {"matrix_mb": matrix_mb, "ratio": got["peak_mb"] / matrix_mb}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genes", type=int, default=4600)
    p.add_argument("--samples", type=int, nargs="+", default=[1000, 5000])
    p.add_argument("--fields", nargs="+", default=["tpm", "count"], choices=["tpm", "fpkm", "count"])
    p.add_argument("--modes", nargs="+", default=["tracemalloc", "rss"], choices=["tracemalloc", "rss"])
    p.add_argument("--label", default="", help="a name for this code version in the output")
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_regulon_expression_memory.json"
    )
    args = p.parse_args()
    sys.path.insert(0, str(SCRIPTS))
    from genomelab.regulon.data import genome_length

    genome = genome_length(GENOME)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for n_samples in args.samples:
            for field in args.fields:
                t0 = time.perf_counter()
                table, gff = write_inputs(Path(tmp), args.genes, n_samples, field)
                print(f"wrote {table.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
                for mode in args.modes:
                    got = measure(table, gff, field, mode, genome)
                    row = {"genes": args.genes, "samples": n_samples, "field": field, "mode": mode} | got
                    print(json.dumps(row), file=sys.stderr)
                    results.append(row)
                table.unlink()
    summary = {"benchmark": "regulon_expression_memory", "label": args.label, "results": results}
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
