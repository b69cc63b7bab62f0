"""Wall time of the regulon data step on a large BSON dump: its ``geneExpression`` documents
read a block at a time (``_ExpressionTally.add_documents``, what the step does since round
22) against a document at a time (the step as ``--reference``, a commit of this repository
before it, ran it), in the same run on the same dump.

Writes a synthetic mongodump folder: ``geneDatamart`` with ``--genes`` made-up b-numbers on
the shipped E. coli genome (800 bp every 1,000 bp, strands in runs of 3) and
``geneExpression`` with a document per gene and dataset (``--datasets`` of them, dataset by
dataset, as the demo dump; 1% of values missing; neighbouring genes share a profile), 920,000
documents at the defaults. Then, ``--repeats`` times, each in a fresh child process:
decoding the documents alone, the whole data step (``regulon.data.process_data``: reading,
per-gene means, co-expression) with this tree's code, and with the reference's (its
``workflow/scripts`` taken out of git into a temporary folder). Prints the medians, the
ratio and the peak resident memory (VmHWM less VmRSS before the step). Both steps' gene
tables (every bit) and data reports must be identical, or the script fails.

    PYTHONPATH=workflow/scripts nice python benchmarks/bench_regulon_bson_speed.py \\
        [--genes 4600] [--datasets 200] [--fields tpm count] [--repeats 3] [--reference 358fdc9] \\
        [--out X.json]

Writes ``--out`` (JSON; default benchmarks/results/bench_regulon_bson_speed.json). Committed
figures (2 shared and loaded cores, niced): see the JSON and docs/regulon.md. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

import numpy as np
from bench_regulon_expression_memory import GENOME, SCRIPTS
from bench_regulon_expression_speed import write_summary

ROOT = Path(__file__).resolve().parents[1]
# The last commit whose data step tallied a dump's documents one at a time.
REFERENCE = "358fdc9"

CHILD = """
import hashlib, json, sys, time
sys.path.insert(0, {scripts!r})
import genomelab.regulon.data as data
from genomelab.regulon.bsonio import GENE_EXPRESSION, Source

dump, genome, field, mode, contig, n_bp = sys.argv[1:7]
data.genome_length = lambda fasta, contig=None: (contig, int(n_bp))  # as the memory benchmark

def status_mb(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":")) / 1024

before = status_mb("VmRSS")
t0 = time.perf_counter()
if mode == "decode":
    n = sum(1 for _ in Source(dump).iter(GENE_EXPRESSION))
    digest = ""
else:
    genes, _, _, report = data.process_data(Source(dump), genome, field)
    n = report["documents"][GENE_EXPRESSION]
    bits = genes.to_csv(sep="\\t", float_format="%.17g") + json.dumps(report)
    digest = hashlib.sha256(bits.encode()).hexdigest()
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "peak_mb": status_mb("VmHWM") - before, "n_documents": n,
                  "digest": digest}}))
"""


def write_dump(folder: Path, n_genes: int, n_datasets: int, field: str, seed: int = 0) -> Path:
    """A mongodump folder (``<folder>/regulondb/<collection>.bson``) of ``n_genes`` genes and a
    ``geneExpression`` document per gene and dataset."""
    sys.path.insert(0, str(SCRIPTS))
    from genomelab.io.bson import write_bson_file
    from genomelab.regulon.bsonio import GENE_DATAMART, GENE_EXPRESSION

    rng = np.random.default_rng(seed)
    db = folder / "regulondb"
    db.mkdir(parents=True, exist_ok=True)
    bnumbers = [f"b{i:04d}" for i in range(n_genes)]
    strand = np.where((np.arange(n_genes) // 3) % 2 == 0, "forward", "reverse")
    place = [{"leftEndPosition": 1000 * i + 1, "rightEndPosition": 1000 * i + 800} for i in range(n_genes)]
    write_bson_file(
        db / f"{GENE_DATAMART}.bson",
        (
            {"gene": {"id": f"G{i}", "bnumber": b, "name": f"g{i}", "strand": str(strand[i]), **place[i]}}
            for i, b in enumerate(bnumbers)
        ),
    )
    shared = rng.normal(0, 1, (n_genes // 2 + 1, n_datasets))
    level = np.exp(
        3
        + rng.normal(0, 1, (n_genes, 1))
        + shared[np.arange(n_genes) // 2]
        + rng.normal(0, 1, (n_genes, n_datasets))
    )
    values = np.round(level) if field == "count" else level
    missing = rng.random((n_genes, n_datasets)) < 0.01

    def documents():
        for d in range(n_datasets):
            for i, b in enumerate(bnumbers):
                doc = {"_id": f"DS{d},{b}", "datasetIds": [f"DS{d}"], "gene": {"bnumber": b, **place[i]}}
                doc |= dict.fromkeys(("tpm", "fpkm", "count"))
                doc[field] = None if missing[i, d] else float(values[i, d])
                yield doc

    write_bson_file(db / f"{GENE_EXPRESSION}.bson", documents())
    return folder


def reference_scripts(rev: str, folder: Path) -> Path:
    """``workflow/scripts`` of commit ``rev``, written out under ``folder``."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev, "workflow/scripts"], check=True, capture_output=True
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")
    return folder / "workflow" / "scripts"


def measure(dump: Path, field: str, mode: str, genome: tuple[str, int], scripts: Path) -> dict:
    code = CHILD.format(scripts=str(scripts))
    args = [str(dump), str(GENOME), field, mode, genome[0], str(genome[1])]
    # No bytecode written into the reference's tree.
    env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genes", type=int, default=4600)
    p.add_argument("--datasets", type=int, default=200)
    p.add_argument("--fields", nargs="+", default=["tpm", "count"], choices=["tpm", "fpkm", "count"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reference", default=REFERENCE, help="commit whose data step is timed as the reference")
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_regulon_bson_speed.json"
    )
    args = p.parse_args()
    sys.path.insert(0, str(SCRIPTS))
    from genomelab.regulon.data import genome_length

    genome = genome_length(GENOME)
    results, speedup = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        before_scripts = reference_scripts(args.reference, Path(tmp) / "reference")
        for field in args.fields:
            dump = write_dump(Path(tmp) / f"dump_{field}", args.genes, args.datasets, field)
            runs: dict[str, list[dict]] = {"decode": [], "blocks": [], "reference": []}
            for _ in range(args.repeats):  # interleaved, so that the machine's load falls on both
                runs["decode"].append(measure(dump, field, "decode", genome, SCRIPTS))
                runs["blocks"].append(measure(dump, field, "step", genome, SCRIPTS))
                runs["reference"].append(measure(dump, field, "step", genome, before_scripts))
            digests = {r["digest"] for r in runs["blocks"] + runs["reference"]}
            if len(digests) > 1:
                raise SystemExit(f"{field}: the two steps' outputs differ: {runs}")
            seconds = {k: statistics.median(r["seconds"] for r in v) for k, v in runs.items()}
            ratio = seconds["blocks"] / seconds["reference"]
            row = {
                "genes": args.genes,
                "datasets": args.datasets,
                "field": field,
                "n_documents": runs["blocks"][0]["n_documents"],
                "seconds_blocks": round(seconds["blocks"], 2),
                "seconds_reference": round(seconds["reference"], 2),
                "seconds_decode": round(seconds["decode"], 2),
                "ratio_blocks_to_reference": round(ratio, 2),
                "ratio_after_decoding": round(
                    (seconds["blocks"] - seconds["decode"]) / (seconds["reference"] - seconds["decode"]), 2
                ),
                "seconds_all": {k: [round(r["seconds"], 2) for r in v] for k, v in runs.items()},
                "peak_mb_blocks": round(max(r["peak_mb"] for r in runs["blocks"]), 1),
                "peak_mb_reference": round(max(r["peak_mb"] for r in runs["reference"]), 1),
                "identical_outputs": True,
            }
            print(json.dumps(row), file=sys.stderr)
            results.append(row)
            speedup[f"{args.genes}x{args.datasets}_{field}"] = round(1 / ratio, 2)
    what = (
        "seconds of regulon.data.process_data on a synthetic mongodump (a geneExpression document per "
        "gene and dataset), its documents tallied a block at a time vs one at a time (the step as commit "
        f"{args.reference} ran it), each in a fresh child process, medians of {args.repeats} interleaved "
        "runs; seconds_decode: decoding the documents alone; ratio_after_decoding: the rest of the step, "
        "new over old; peak_mb: VmHWM less VmRSS before the step (the largest run)"
    )
    write_summary("regulon_bson_speed", what, speedup, results, args.out)


if __name__ == "__main__":
    main()
