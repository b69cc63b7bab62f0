"""Wall time of the regulon data step on a large expression table: the table read a block of
rows at a time (``_ExpressionTally.add_block``, what the step does) against its documents, one
per value (``_ExpressionTally.add_documents``, the path a BSON dump or a database takes, and
the one every table took before), in the same run on the same table. Since round 22 those
documents are tallied a block of documents at a time, not by a call per value as in the
committed figures; ``bench_regulon_bson_speed.py`` times that change on a dump.

Writes the synthetic gene x sample table of ``bench_regulon_expression_memory.py``
(``--genes`` made-up b-numbers placed on the shipped E. coli genome by a made-up GFF3, 1% of
cells empty) with ``--samples`` columns, then runs the whole data step
(``regulon.data.process_data``: reading, per-gene means, co-expression) once per path, each
in a fresh child process, and prints the seconds, the ratio and the peak resident memory
(VmHWM less VmRSS before the step). The two paths' gene tables (every bit) and data reports
must be identical, or the script fails.

    PYTHONPATH=workflow/scripts nice python benchmarks/bench_regulon_expression_speed.py \\
        [--genes 4600] [--samples 1000 5000] [--fields tpm count] [--before ../main/workflow/scripts] \\
        [--out X.json]

``--before``: the step as another checkout's code runs it (a table then still went through a
document per value, and ``DataFrame.astype`` a column at a time), timed in the same run; its
outputs must be identical too.

Writes ``--out`` (JSON; default benchmarks/results/bench_regulon_expression_speed.json).
Committed figures (4,600 genes, 2 shared and loaded cores, niced): see the JSON and
docs/regulon.md. Not a test: the document path takes minutes at 5,000 samples.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_regulon_expression_memory import GENOME, SCRIPTS, write_inputs

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import hashlib, json, sys, time, types
sys.path.insert(0, {scripts!r})
import genomelab.regulon.data as data
from genomelab.regulon.flat import FlatSource

table, gff, genome, field, path, contig, n_bp = sys.argv[1:8]
data.genome_length = lambda fasta, contig=None: (contig_name, int(n_bp))  # as the memory benchmark
contig_name = contig

def status_mb(key):
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(key + ":")) / 1024

source = FlatSource(expression=table, value_field=field)
if path == "documents":  # the same source without expression_blocks: a document per value
    source = types.SimpleNamespace(has=source.has, iter=source.iter, describe=source.describe)
before = status_mb("VmRSS")
t0 = time.perf_counter()
genes, _, _, report = data.process_data(source, genome, field, annotation=gff)
seconds = time.perf_counter() - t0
bits = genes.to_csv(sep="\\t", float_format="%.17g") + json.dumps(report)
print(json.dumps({{"seconds": seconds, "peak_mb": status_mb("VmHWM") - before,
                  "n_datasets": report["n_datasets"], "n_documents": report["documents"]["geneExpression"],
                  "digest": hashlib.sha256(bits.encode()).hexdigest()}}))
"""


def measure(
    table: Path, gff: Path, field: str, path: str, genome: tuple[str, int], scripts: Path = SCRIPTS
) -> dict:
    code = CHILD.format(scripts=str(scripts))
    args = [str(table), str(gff), str(GENOME), field, path, genome[0], str(genome[1])]
    # No bytecode written into another checkout's tree (--before).
    env = os.environ | {"PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, env=env
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def write_summary(name: str, what: str, speedup: dict, results: list, out: Path) -> None:
    """Write the benchmark's summary (its command line, speed-ups and result rows) to ``out``
    (JSON) and print it."""
    summary = {
        "benchmark": name,
        "what": what,
        "command": " ".join(["python", f"benchmarks/bench_{name}.py", *sys.argv[1:]]),
        "speedup": speedup,
        "results": results,
    }
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--genes", type=int, default=4600)
    p.add_argument("--samples", type=int, nargs="+", default=[1000])
    p.add_argument("--fields", nargs="+", default=["tpm", "count"], choices=["tpm", "fpkm", "count"])
    p.add_argument(
        "--before",
        type=Path,
        help="workflow/scripts of a checkout of older code (e.g. main before blocks): its data step "
        "is timed too, and its outputs must be identical",
    )
    p.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_regulon_expression_speed.json"
    )
    args = p.parse_args()
    sys.path.insert(0, str(SCRIPTS))
    from genomelab.regulon.data import genome_length

    genome = genome_length(GENOME)
    results, speedup = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        for n_samples in args.samples:
            for field in args.fields:
                table, gff = write_inputs(Path(tmp), args.genes, n_samples, field)
                got = {path: measure(table, gff, field, path, genome) for path in ("blocks", "documents")}
                if args.before:
                    got["before"] = measure(table, gff, field, "blocks", genome, args.before.resolve())
                table.unlink()
                if len({g["digest"] for g in got.values()}) > 1:
                    raise SystemExit(f"{n_samples} samples, {field}: the paths' outputs differ: {got}")
                ratio = got["documents"]["seconds"] / got["blocks"]["seconds"]
                row = {
                    "genes": args.genes,
                    "samples": n_samples,
                    "field": field,
                    "n_documents": got["blocks"]["n_documents"],
                    "seconds_blocks": round(got["blocks"]["seconds"], 2),
                    "seconds_documents": round(got["documents"]["seconds"], 2),
                    "speedup": round(ratio, 1),
                    "peak_mb_blocks": round(got["blocks"]["peak_mb"], 1),
                    "peak_mb_documents": round(got["documents"]["peak_mb"], 1),
                    "identical_outputs": True,
                }
                if args.before:
                    row["seconds_before"] = round(got["before"]["seconds"], 2)
                    row["speedup_vs_before"] = round(got["before"]["seconds"] / got["blocks"]["seconds"], 1)
                    row["peak_mb_before"] = round(got["before"]["peak_mb"], 1)
                print(json.dumps(row), file=sys.stderr)
                results.append(row)
                speedup[f"{args.genes}x{n_samples}_{field}"] = row["speedup"]
    what = (
        "seconds of regulon.data.process_data on a synthetic genes x samples table, read by blocks of "
        "rows vs a document per value, each in a fresh child process; peak_mb: VmHWM less VmRSS before "
        "the step"
    )
    write_summary("regulon_expression_speed", what, speedup, results, args.out)


if __name__ == "__main__":
    main()
