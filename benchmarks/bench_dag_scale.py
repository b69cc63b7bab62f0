"""Benchmark: how long Snakemake takes to parse the workflow and build its DAG at real sizes.

Snakemake parses the Snakefile and builds the DAG on the submit host before every run
(``snakemake -n`` is exactly that) and again inside every SLURM job, so any per-sample work
at parse time (reading sheets, opening sample files, loops over samples) is paid by every
job. For each case this writes small but valid own-data inputs for N samples in a temporary
project folder, as docs/<module>.md "Your own data" describes them (tiny files: the DAG does
not look at their size, but a parse-time check that opens a file sees a real header), a
config from ``genomelab init <module>`` with its placeholders filled in, and times
``snakemake -s <repo>/Snakefile --directory <project> -n`` at N and at N/8 in the same run:

- ``tissue``: N NPZ samples in a sample sheet, ``evaluation.folds: 5`` (N = 800);
- ``ingest``: N Bismark coverage files, one ``ingest_sample`` job each (N = 400), and a
  regions BED of 51,089 regions (the main process's parse reads it whole);
- ``deconv``: N pure-sample NPZ files and a plasma CSV of N/2 samples to deconvolve (N = 400).

Besides the whole plan, each case parses the workflow as a cluster job does (one target job,
``--target-jobs ... --allowed-rules ... --mode remote``: not the main process).

Reported per case and N: wall seconds of the dry run (the median of ``--repeats``, every
measurement of a case interleaved repeat by repeat), the
number of jobs planned, seconds per job and per sample, one job's parse, the peak RSS (the
snakemake process's own, from ``wait4``), and the ratios N vs N/8 of time and of time per
sample (1 = linear; growth past linear shows as a ratio of time per sample above 1), and the
ratio to the same dry run of a one-rule Snakefile (Snakemake's own start-up, measured in the
same run). Ratios only: absolute times depend on the machine and its load. With ``--slurm``
each case is also planned at N with a copy of profiles/slurm (placeholders filled in), and the
planned jobs and their resources per rule are saved. Writes benchmarks/results/bench_dag_scale.json.

    nice -n 5 .venv/bin/python benchmarks/bench_dag_scale.py [--cases tissue ingest deconv]
        [--n-tissue 800] [--n-ingest 400] [--n-deconv 400] [--repeats 3] [--slurm]
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# Regions of each tiny NPZ and methylation file (the DAG does not read them)...
N_REGIONS = 8
# ...but the ingest regions BED is read whole at parse time: a real-size one.
N_BED_REGIONS = 51_089
N_POSITIONS = 150
TISSUES = ["Liver", "Colon", "Lung", "Brain", "Kidney", "Neutrophils", "Lymphocytes", "Pancreas"]


def write_npz(path: Path, rng: np.random.Generator) -> None:
    """One sample of the tissue module's NPZ format (methylation int8 [R, 150], region_ids)."""
    calls = rng.integers(0, 3, size=(N_REGIONS, N_POSITIONS), dtype=np.int8)
    ids = np.asarray([f"chr1:{10_000 + 200 * r}-{10_150 + 200 * r}" for r in range(N_REGIONS)], dtype=str)
    np.savez(path, methylation=calls, region_ids=ids)


def npz_sheet(folder: Path, n: int, seed: int) -> Path:
    """``folder/samples.tsv`` over ``n`` NPZ samples in ``folder/npz``, spread over the
    tissues; every tenth sample is a second library of the one before (same source_sample)."""
    rng = np.random.default_rng(seed)
    (folder / "npz").mkdir(parents=True, exist_ok=True)
    lines = ["sample\tfile\ttissue\tsource_sample"]
    for i in range(n):
        donor = i - 1 if i % 10 == 9 else i
        write_npz(folder / "npz" / f"s{i:05d}.npz", rng)
        lines.append(f"s{i:05d}\tnpz/s{i:05d}.npz\t{TISSUES[donor % len(TISSUES)]}\tdonor{donor:05d}")
    sheet = folder / "samples.tsv"
    sheet.write_text("\n".join(lines) + "\n")
    return sheet


def init_config(module: str, project: Path, fill: dict[str, str], extra: dict) -> Path:
    """``genomelab init <module>`` with its ``<...>`` placeholders replaced (``fill``: the
    placeholder's key -> value) and ``extra`` merged into the module's section."""
    out = project / f"my_{module}.yaml"
    subprocess.run(
        [str(BIN / "genomelab"), "init", module, "--out", str(out)], check=True, capture_output=True
    )
    text = out.read_text()
    for key, value in fill.items():
        text, n = re.subn(rf"^(\s*{key}:) <[^>]*>", rf"\1 {value}", text, flags=re.M)
        assert n == 1, f"genomelab init {module}: no placeholder for {key}"
    assert "<" not in "".join(ln.split("#")[0] for ln in text.splitlines()), text
    config = yaml.safe_load(text)
    config[module] = merge(config[module], extra)
    out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def make_tissue(project: Path, n: int) -> Path:
    sheet = npz_sheet(project / "data" / "tissue", n, seed=n)
    return init_config(
        "tissue",
        project,
        {"run": f"tissue{n}", "sheet": str(sheet.relative_to(project))},
        {"evaluation": {"folds": 5}},
    )


def make_ingest(project: Path, n: int) -> Path:
    """Bismark coverage files (docs/ingest.md: chrom, 1-based start, end, %, n meth, n unmeth)."""
    data = project / "data" / "ingest"
    (data / "bismark").mkdir(parents=True, exist_ok=True)
    # The first N_REGIONS regions hold the samples' calls; the rest spread over chr1-chr22.
    regions = [f"chr1\t{10_000 + 200 * r}\t{10_150 + 200 * r}\tblock{r}" for r in range(N_REGIONS)]
    per_chrom = -(-(N_BED_REGIONS - N_REGIONS) // 22)
    for r in range(N_BED_REGIONS - N_REGIONS):
        chrom, k = divmod(r, per_chrom)
        start = 1_000_000 + 2_000 * k
        regions.append(f"chr{chrom + 1}\t{start}\t{start + 150}\tblock{N_REGIONS + r}")
    (data / "regions.bed").write_text("\n".join(regions) + "\n")
    lines = ["sample\tpath\ttissue"]
    for i in range(n):
        cov = "".join(f"chr1\t{10_011 + 200 * r}\t{10_011 + 200 * r}\t75.0\t3\t1\n" for r in range(N_REGIONS))
        with gzip.open(data / "bismark" / f"s{i:05d}.bismark.cov.gz", "wt") as fh:
            fh.write(cov)
        lines.append(f"s{i:05d}\tbismark/s{i:05d}.bismark.cov.gz\t{TISSUES[i % len(TISSUES)]}")
    (data / "samples.tsv").write_text("\n".join(lines) + "\n")
    return init_config(
        "ingest",
        project,
        {"run": f"ingest{n}", "samples": "data/ingest/samples.tsv", "regions": "data/ingest/regions.bed"},
        {},
    )


def make_deconv(project: Path, n: int) -> Path:
    """N pure samples (NPZ + sheet) and a plasma CSV (regions x N/2 samples) to deconvolve."""
    data = project / "data" / "deconv"
    sheet = npz_sheet(data, n, seed=n)
    n_plasma = max(2, n // 2)
    rng = np.random.default_rng(n)
    rows = [",".join(["region"] + [f"plasma_{j:04d}" for j in range(n_plasma)])]
    for r in range(N_REGIONS):
        betas = ",".join(f"{b:.2f}" for b in rng.random(n_plasma))
        rows.append(f"chr1:{10_000 + 200 * r}-{10_150 + 200 * r},{betas}")
    (data / "plasma.csv").write_text("\n".join(rows) + "\n")
    return init_config(
        "deconv",
        project,
        {"run": f"deconv{n}", "sample_sheet": str(sheet.relative_to(project))},
        {
            "mixtures": {"phase3": {"background": ["Neutrophils", "Lymphocytes"]}},
            "infer": {"samples": "data/deconv/plasma.csv"},
        },
    )


CASES: dict[str, Callable[[Path, int], Path]] = {
    "tissue": make_tissue,
    "ingest": make_ingest,
    "deconv": make_deconv,
}
# One job of each case as a cluster job starts it: Snakemake parses the workflow again with
# --target-jobs, --allowed-rules and --mode remote (not the main process).
JOBS = {
    "tissue": "tissue_features:",
    "ingest": "ingest_sample:sample=s00000",
    "deconv": "deconv_sources:",
}


def snakemake(
    project: Path, config: Path | None, *args: str, snakefile: Path = ROOT / "Snakefile"
) -> tuple[float, int, str]:
    """Run ``snakemake -n`` on ``project``: (wall seconds, peak RSS in kB, stdout + stderr)."""
    cmd = [str(BIN / "snakemake"), "-s", str(snakefile), "--directory", str(project), "-n", "--cores", "8"]
    cmd += [*(["--configfile", str(config)] if config else []), *args]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    with tempfile.TemporaryFile() as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        # wait4: this child's own rusage (ru_maxrss of RUSAGE_CHILDREN is the largest child's so far).
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        out = log.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}")
    return seconds, usage.ru_maxrss, out


def job_total(output: str) -> int:
    """The dry run's job count (the ``total`` row of its job stats)."""
    found = re.search(r"^total\s+(\d+)", output, flags=re.M)
    if not found:
        raise RuntimeError(f"no job stats in the dry run's output:\n{output[-3000:]}")
    return int(found.group(1))


def one_rule_project(root: Path) -> Path:
    """A project with a one-rule Snakefile: its dry run is what Snakemake itself costs on this
    machine now (start-up, imports, plugins), the floor the workflow's times are read against."""
    project = root / "floor"
    project.mkdir(exist_ok=True)
    (project / "Snakefile").write_text(
        'rule all:\n    output:\n        "x.txt",\n    shell:\n        "touch {output}"\n'
    )
    return project


def summary(runs: list[tuple[float, int, str]]) -> dict:
    return {
        "seconds": round(statistics.median(r[0] for r in runs), 3),
        "all_seconds": [round(r[0], 3) for r in runs],
        "peak_rss_mb": round(max(r[1] for r in runs) / 1024, 1),
    }


def measure(case: str, sizes: tuple[int, int], root: Path, repeats: int) -> dict:
    """Dry runs of ``case`` at both sizes, one cluster job's parse at both, and the floor,
    interleaved repeat by repeat so that a change of load on the machine hits them alike."""
    configs, made = {}, {}
    for n in sizes:
        project = root / f"{case}{n}"
        project.mkdir()
        t0 = time.perf_counter()
        configs[n] = CASES[case](project, n)
        made[n] = round(time.perf_counter() - t0, 2)
    floor = one_rule_project(root)
    target = JOBS[case]
    job_args = ("--target-jobs", target, "--allowed-rules", target.split(":")[0], "--mode", "remote")
    runs: dict[str, list] = {"floor": []} | {f"{k}{n}": [] for n in sizes for k in ("plan", "job")}
    for _ in range(repeats):
        runs["floor"].append(snakemake(floor, None, snakefile=floor / "Snakefile"))
        for n in sizes:
            runs[f"plan{n}"].append(snakemake(configs[n].parent, configs[n], "--quiet", "rules"))
        for n in sizes:
            runs[f"job{n}"].append(snakemake(configs[n].parent, configs[n], *job_args))
    out: dict = {"floor": summary(runs["floor"])}
    for n in sizes:
        plan = summary(runs[f"plan{n}"])
        jobs = job_total(runs[f"plan{n}"][0][2])
        out[n] = {
            "n_samples": n,
            "n_jobs": jobs,
            **plan,
            "seconds_per_job": round(plan["seconds"] / jobs, 5),
            "seconds_per_sample": round(plan["seconds"] / n, 5),
            "job_parse": {"target": target, **summary(runs[f"job{n}"])},
            "inputs_seconds": made[n],
        }
        print(
            f"{case:7s} N={n:5d}: {jobs:5d} jobs, dry run {plan['seconds']:6.2f} s "
            f"({plan['seconds'] / jobs * 1000:5.1f} ms/job), peak RSS {plan['peak_rss_mb']:.0f} MB; "
            f"one job's parse {out[n]['job_parse']['seconds']:.2f} s; one-rule floor {out['floor']['seconds']:.2f} s",
            flush=True,
        )
    return out


def slurm_plan(case: str, n: int, root: Path) -> dict:
    """The ``case`` at ``n`` planned with a copy of profiles/slurm (placeholders filled in, a
    GPU partition in the config): jobs and distinct resources per rule. A dry run does not
    mark localrules (they run on the submit host; tests/test_slurm_profile.py checks them)."""
    project = root / f"slurm_{case}{n}"
    project.mkdir()
    config = CASES[case](project, n)
    profile = root / f"slurm_profile_{case}"
    profile.mkdir()
    text = (ROOT / "profiles" / "slurm" / "config.v8+.yaml").read_text()
    text = text.replace("<your_account>", "lab").replace("<cpu_partition>", "cpu")
    (profile / "config.v8+.yaml").write_text(text)
    extra = project / "gpu.yaml"
    extra.write_text(yaml.safe_dump({"resources": {"gpu_partition": "gpu"}}))
    seconds, rss, out = snakemake(project, config, str(extra), "--profile", str(profile))
    rules: dict[str, dict] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", out):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        entry = rules.setdefault(head.group(1), {"jobs": 0, "resources": []})
        entry["jobs"] += 1
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if res:
            pairs = dict(item.split("=", 1) for item in res.group(1).split(", "))
            # Snakemake's own derived values; the ones sbatch gets are kept.
            pairs = {
                k: v for k, v in pairs.items() if k not in ("tmpdir", "disk_mb", "disk_mib", "mem_mib", "mem")
            }
            if pairs not in entry["resources"]:
                entry["resources"].append(pairs)
    total = job_total(out)
    print(
        f"slurm   {case} N={n}: {total} jobs, dry run {seconds:.2f} s, peak RSS {rss / 1024:.0f} MB",
        flush=True,
    )
    for rule, entry in sorted(rules.items()):
        print(f"  {rule}: {entry['jobs']} job(s) {entry['resources']}")
    return {
        "n_samples": n,
        "n_jobs": total,
        "seconds": round(seconds, 3),
        "peak_rss_mb": round(rss / 1024, 1),
        "rules": rules,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    parser.add_argument("--n-tissue", type=int, default=800)
    parser.add_argument("--n-ingest", type=int, default=400)
    parser.add_argument("--n-deconv", type=int, default=400)
    parser.add_argument(
        "--repeats", type=int, default=3, help="dry runs per size, interleaved (median reported)"
    )
    parser.add_argument("--slurm", action="store_true", help="also plan each case at N with profiles/slurm")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_dag_scale.json")
    args = parser.parse_args()
    sizes = {"tissue": args.n_tissue, "ingest": args.n_ingest, "deconv": args.n_deconv}
    results: dict = {"cases": {}, "repeats": args.repeats, "load_average_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="bench_dag_scale_") as tmp:
        root = Path(tmp)
        for case in args.cases:
            n = sizes[case]
            measured = measure(case, (max(2, n // 8), n), root, args.repeats)
            small, large, floor = measured[max(2, n // 8)], measured[n], measured["floor"]
            ratios = {
                "samples": large["n_samples"] / small["n_samples"],
                "jobs": large["n_jobs"] / small["n_jobs"],
                "seconds": large["seconds"] / small["seconds"],
                "seconds_per_job": large["seconds_per_job"] / small["seconds_per_job"],
                "seconds_per_sample": large["seconds_per_sample"] / small["seconds_per_sample"],
                "peak_rss": large["peak_rss_mb"] / small["peak_rss_mb"],
                "job_parse_seconds": large["job_parse"]["seconds"] / small["job_parse"]["seconds"],
                "large_vs_floor": large["seconds"] / floor["seconds"],
                "large_job_parse_vs_floor": large["job_parse"]["seconds"] / floor["seconds"],
            }
            ratios = {k: round(v, 3) for k, v in ratios.items()}
            print(f"{case:7s} N/(N/8): " + ", ".join(f"{k} x{v}" for k, v in ratios.items()), flush=True)
            results["cases"][case] = {"small": small, "large": large, "floor": floor, "ratios": ratios}
        if args.slurm:
            results["slurm"] = {case: slurm_plan(case, sizes[case], root) for case in args.cases}
    results["load_average_end"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
