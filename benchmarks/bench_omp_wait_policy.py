"""What ``OMP_WAIT_POLICY=PASSIVE`` costs a torch training job, and what it saves jobs that
share cores.

Torch's CPU kernels run on an OpenMP pool (GNU libgomp in the PyPI and conda-forge builds).
Between two parallel regions an idle pool thread spins for a while before it sleeps, unless
``OMP_WAIT_POLICY=PASSIVE`` makes it sleep at once. Within a job that owns its cores the
spinning costs nothing but CPU accounting; where jobs share cores without binding (a local
``snakemake --cores N`` running several training jobs, a SLURM node without task affinity)
a spinning thread takes cycles another job's thread needed. PASSIVE can in turn slow a job
alone, since a sleeping thread takes longer to wake.

Each run is a fresh interpreter running ``bench_tissue_throughput.py`` (the workflow's own
``train_model``, schema-default configs, ``--kinds``) on a synthetic cohort, with the policy
set in its environment (libgomp reads it once, when torch loads). Two settings:

* ``alone``: one job with ``--threads`` threads;
* ``shared``: ``--jobs`` such jobs started together on the same cores.

Policies run interleaved (default, PASSIVE, default, ...), ``--repeats`` times each, and the
figures are medians: the steady epoch time each job reports, and its CPU seconds (user +
system, from ``wait4``). The reference is the same setting without the variable, measured in
the same run: ratios are PASSIVE / default.

    PYTHONPATH=workflow/scripts python benchmarks/bench_omp_wait_policy.py \
        [--kinds mlp masked] [--samples 160] [--regions 20000] [--epochs 4] [--threads 2] \
        [--jobs 2] [--repeats 3] [--settings alone shared]

Writes ``benchmarks/results/bench_omp_wait_policy.json``. Not a test.
``bench_omp_wait_policy_51089.json`` is the same at the real panel's size, on a busier
machine (load 4.0 on 2 cores at its end): ``--samples 320 --regions 51089 --epochs 3 --out
benchmarks/results/bench_omp_wait_policy_51089.json``; ``_51089_alone.json`` and
``_51089_shared.json`` repeat it on a quiet machine, one setting each (``--settings alone``,
``--settings shared``), and are the figures docs/slurm.md gives. The machine's other work shows in
the runs, not only in the medians: compare ``runs`` before trusting a wall-time ratio (the
CPU seconds per job separate the policies in every shared run of both files).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
THROUGHPUT = HERE / "bench_tissue_throughput.py"
POLICIES = ("default", "PASSIVE")


def start_job(args: argparse.Namespace, policy: str, out: Path) -> subprocess.Popen:
    """One training job in a fresh interpreter, ``OMP_WAIT_POLICY`` set as ``policy`` says
    (``default``: removed from the environment)."""
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    cmd = [
        sys.executable,
        str(THROUGHPUT),
        "--kinds",
        *args.kinds,
        "--samples",
        str(args.samples),
        "--regions",
        str(args.regions),
        "--epochs",
        str(args.epochs),
        "--threads",
        str(args.threads),
        "--out",
        str(out),
    ]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def run_setting(args: argparse.Namespace, policy: str, n_jobs: int, tmp: Path) -> dict:
    """``n_jobs`` jobs started together; their wall time, CPU seconds and epoch times."""
    outs = [tmp / f"{policy}_{n_jobs}_{i}_{time.monotonic_ns()}.json" for i in range(n_jobs)]
    t0 = time.perf_counter()
    procs = [start_job(args, policy, out) for out in outs]
    cpu = []
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise RuntimeError(
                f"a {policy} job failed (exit {proc.returncode}):\n{proc.stderr.read()[-3000:]}"
            )
        cpu.append(usage.ru_utime + usage.ru_stime)
    wall = time.perf_counter() - t0
    epochs = {
        kind: [json.loads(out.read_text())["models"][kind]["steady_epoch_s"] for out in outs]
        for kind in args.kinds
    }
    return {"wall_s": wall, "cpu_s": cpu, "epoch_s": epochs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kinds", nargs="+", default=["mlp", "masked"], choices=["mlp", "masked", "attention"])
    ap.add_argument("--samples", type=int, default=160)
    ap.add_argument("--regions", type=int, default=20000)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--jobs", type=int, default=2, help="jobs sharing the cores in the 'shared' setting")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--settings", nargs="+", default=["alone", "shared"], choices=["alone", "shared"])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "bench_omp_wait_policy.json")
    args = ap.parse_args()
    settings = {s: n for s, n in {"alone": 1, "shared": args.jobs}.items() if s in args.settings}
    runs: dict[str, dict[str, list[dict]]] = {s: {p: [] for p in POLICIES} for s in settings}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for setting, n_jobs in settings.items():
                for policy in POLICIES if rep % 2 == 0 else POLICIES[::-1]:
                    r = run_setting(args, policy, n_jobs, Path(tmp))
                    runs[setting][policy].append(r)
                    print(
                        f"repeat {rep} {setting:6s} {policy:8s} wall {r['wall_s']:6.1f} s, CPU "
                        + " + ".join(f"{c:.1f}" for c in r["cpu_s"])
                        + " s, epochs "
                        + ", ".join(f"{k} {statistics.mean(v):.2f} s" for k, v in r["epoch_s"].items()),
                        flush=True,
                    )
    summary: dict[str, dict] = {}
    for setting, by_policy in runs.items():
        med = {
            p: {
                "wall_s": statistics.median(r["wall_s"] for r in rs),
                "cpu_s_per_job": statistics.median(statistics.mean(r["cpu_s"]) for r in rs),
                **{
                    f"epoch_s_{k}": statistics.median(statistics.mean(r["epoch_s"][k]) for r in rs)
                    for k in args.kinds
                },
            }
            for p, rs in by_policy.items()
        }
        ratios = {key: med["PASSIVE"][key] / med["default"][key] for key in med["default"]}
        summary[setting] = {"median": med, "passive_over_default": ratios}
        print(
            f"{setting:6s} PASSIVE / default: "
            + ", ".join(f"{key} {ratio:.2f}" for key, ratio in ratios.items())
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "benchmark": "omp_wait_policy",
                "settings": {k: v for k, v in vars(args).items() if k != "out"},
                "cpus": os.cpu_count(),
                "machine": platform.machine(),
                "load_average_1min_at_end": os.getloadavg()[0],
                "summary": summary,
                "runs": runs,
            },
            indent=1,
        )
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
