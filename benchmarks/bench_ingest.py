"""Benchmark: samples/hour of the ingest step for a whole-genome Bismark coverage file.

A whole human genome has ~28M CpGs; an unmerged Bismark ``.cov.gz`` lists both strands'
Cs, ~2 lines per covered CpG. Writing and reading 56M lines takes long, so by default a
contiguous fraction of the genome (``--n-cpgs``, 2M CpGs = 7%) is generated with realistic
density (one CpG per ~100 bp), coverage (Poisson, mean 15x) and region density (51,089
regions of 150 bp genome-wide, scaled to the fraction), and the time is extrapolated
linearly to 28M CpGs (the conversion streams line by line, so time is linear in lines).

Reported: ingest seconds for the generated file, the extrapolated whole-genome seconds and
samples/hour per core, the peak memory of the conversion process, and the ratio of ingest
time to merely decompressing the file and counting its lines (the floor of any reader), i.e.
what parsing, validation and placement cost on top of reading. Writes benchmarks/results/bench_ingest.json.

    PYTHONPATH=workflow/scripts python benchmarks/bench_ingest.py [--n-cpgs 2000000]
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
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
GENOME_CPGS = 28_000_000
GENOME_REGIONS = 51_089

CONVERT = """
import sys, time
from genomelab.ingest.builds import genome_build
from genomelab.ingest.convert import IngestConfig, convert_sample
from genomelab.ingest.regions import read_regions
regions = read_regions(sys.argv[1], genome_build("hg38"))
t0 = time.perf_counter()
convert_sample(sys.argv[2], "", "bench", regions, IngestConfig(), sys.argv[3])
# VmHWM is this process's own peak (ru_maxrss would include the forking parent's on Linux).
hwm_kb = int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0])
print(time.perf_counter() - t0, hwm_kb)
"""

DECOMPRESS = """
import gzip, sys, time
t0 = time.perf_counter()
n = 0
with gzip.open(sys.argv[1], "rb") as fh:
    while block := fh.read(1 << 24):
        n += block.count(b"\\n")
print(time.perf_counter() - t0, n)
"""


def make_inputs(out: Path, n_cpgs: int, seed: int = 0) -> tuple[Path, Path, int]:
    rng = np.random.default_rng(seed)
    # CpGs one per ~100 bp on chr1 (2 bp minimum spacing: a CpG's C cannot be another's G).
    pos = 10_000 + np.cumsum(rng.integers(2, 199, size=n_cpgs)).astype(np.int64)
    cov_plus, cov_minus = rng.poisson(7.5, size=n_cpgs), rng.poisson(7.5, size=n_cpgs)
    level = rng.beta(0.4, 0.4, size=n_cpgs)
    lines = []
    for offset, cov in ((0, cov_plus), (1, cov_minus)):
        keep = cov > 0
        m = rng.binomial(cov[keep], level[keep])
        lines.append(
            pd.DataFrame(
                {
                    "chrom": "chr1",
                    "start": pos[keep] + 1 + offset,
                    "end": pos[keep] + 1 + offset,
                    "pct": 100.0 * m / cov[keep],
                    "m": m,
                    "u": cov[keep] - m,
                }
            )
        )
    df = pd.concat(lines).sort_values("start", kind="stable")
    cov_path = out / "bench.cov.gz"
    df.to_csv(
        cov_path, sep="\t", header=False, index=False, compression={"method": "gzip", "compresslevel": 3}
    )
    n_regions = max(1, round(GENOME_REGIONS * n_cpgs / GENOME_CPGS))
    starts = np.sort(rng.choice(np.arange(pos[0], pos[-1] - 150, 1000), size=n_regions, replace=False))
    bed = out / "regions.bed"
    bed.write_text("".join(f"chr1\t{s}\t{s + 150}\tr{i}\n" for i, s in enumerate(starts)))
    return cov_path, bed, len(df)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-cpgs", type=int, default=2_000_000)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "bench_ingest.json"))
    args = parser.parse_args(argv)
    env = {"PYTHONPATH": str(ROOT / "workflow" / "scripts")}
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        t0 = time.perf_counter()
        cov, bed, n_lines = make_inputs(tmp_path, args.n_cpgs)
        gen_s = time.perf_counter() - t0
        run = subprocess.run(
            [sys.executable, "-c", CONVERT, str(bed), str(cov), str(tmp_path / "o.npz")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        ingest_s, maxrss_kb = (float(x) for x in run.stdout.split())
        parse = subprocess.run(
            [sys.executable, "-c", DECOMPRESS, str(cov)], capture_output=True, text=True, env=env, check=True
        )
        parse_s = float(parse.stdout.split()[0])
        size_mb = cov.stat().st_size / 1e6
    scale = GENOME_CPGS / args.n_cpgs
    result = {
        "n_cpgs": args.n_cpgs,
        "n_lines": n_lines,
        "file_mb_gz": round(size_mb, 1),
        "generate_s": round(gen_s, 1),
        "ingest_s": round(ingest_s, 2),
        "decompress_only_s": round(parse_s, 2),
        "ratio_ingest_to_decompress_only": round(ingest_s / parse_s, 2),
        "lines_per_s": round(n_lines / ingest_s),
        "whole_genome_scale": round(scale, 2),
        "whole_genome_s_extrapolated": round(ingest_s * scale, 1),
        "samples_per_hour_per_core": round(3600 / (ingest_s * scale), 1),
        "peak_rss_mb": round(maxrss_kb / 1024, 1),
        "note": "one core; time extrapolated linearly from n_cpgs to 28M CpGs; peak memory does not grow with "
        "the file (bounded by regions x slots and one chunk)",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for k, v in result.items():
        print(f"{k}: {v}")
    return result


if __name__ == "__main__":
    main()
