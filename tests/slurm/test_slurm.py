"""The workflow on a real (single-node) SLURM cluster, through profiles/slurm.

The session fixture ``slurm_cluster`` (conftest.py) installs and starts SLURM with
accounting; these tests then run ``config/test.yaml`` with a copy of ``profiles/slurm``
whose placeholders point at the test cluster's account and partitions, in a copy of the
repository, next to a local run of the same config in another copy (at the same time: the
SLURM run mostly waits on the scheduler; the local copy starts from the session's run of
``config/test.yaml``, tests/shared_run.py, which tests/test_workflow.py uses too). They
check that every rule job went through ``sbatch`` (``sacct`` lists it), that GPU rules
asked for GPUs, that deterministic outputs equal the local run's, and that a training job
requeued by ``scontrol requeue`` while running resumes from ``last.pt`` and ends with the
same metrics and weights as an uninterrupted run.

Debugging aids (both runs get them): ``GENOMELAB_SLURM_TARGETS="a b"`` limits the runs to
these targets; ``GENOMELAB_SLURM_EXTRA_CONFIG=file.yaml`` layers a config file on
``config/test.yaml``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from shared_run import copy_repo, copy_run
from slurm_cluster import SlurmCluster
from test_slurm_profile import LOCAL_RULES, planned_resources

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
PROFILE = ROOT / "profiles" / "slurm" / "config.v8+.yaml"
DEFAULT_PROFILE = ROOT / "profiles" / "default" / "config.v8+.yaml"
CONFIG = "config/test.yaml"
RESULTS = "results/test"  # CONFIG's run: test
# Generous ceilings so that a hung scheduler fails the test instead of hanging CI.
RUN_TIMEOUT_S = 1500
# How long the requeue test's training should last on its own (epochs are scaled to it).
REQUEUE_TRAIN_S = 15.0
# Keys of metric JSON that hold wall-clock measurements, not results.
VOLATILE_KEY = re.compile(r"time|second|duration|elapsed|date|host|memory|rss|peak", re.IGNORECASE)


# --------------------------------------------------------------------------- helpers
def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def run_env(cluster: SlurmCluster | None = None) -> dict[str, str]:
    env = cluster.env() if cluster is not None else dict(os.environ)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONWARNINGS"] = "ignore"
    return env


def make_profile(cluster: SlurmCluster, dest: Path) -> tuple[Path, Path, list[str]]:
    """profiles/slurm with its placeholders filled in for the test cluster, and a config.

    What a user does for their own cluster (docs/slurm.md): replace the profile's ``<...>``
    placeholders (account, CPU partition) and give the training jobs' sizes and GPU partition
    in the config (``resources``), here clamped to the one small node; plus faster status
    polling. Returns the profile folder, the config file and the list of changes, so that a
    failure shows exactly what differed from the shipped profile and config.
    """
    profile = yaml.safe_load(PROFILE.read_text())
    changes: list[str] = []
    fill = {"slurm_account": cluster.account, "slurm_partition": cluster.cpu_partition}
    for key, value in profile.setdefault("default-resources", {}).items():
        if isinstance(value, str) and re.fullmatch(r"<.*>", value):
            if key not in fill:
                raise AssertionError(f"{PROFILE}: unknown placeholder {key}: {value}")
            profile["default-resources"][key] = fill[key]
            changes.append(f"default-resources.{key}: {value!r} -> {fill[key]!r}")
    if profile.get("software-deployment-method") == "conda" and shutil.which("conda") is None:
        # No conda here; the jobs use this Python environment instead.
        del profile["software-deployment-method"]
        changes.append("software-deployment-method: conda -> (none: conda not installed)")
    # Test speed only: poll the scheduler every few seconds instead of every 40 s.
    profile["slurm-init-seconds-before-status-checks"] = 1
    profile["seconds-between-status-checks"] = 2
    profile["slurm-keep-successful-logs"] = True
    dest.mkdir(parents=True, exist_ok=True)
    (dest / PROFILE.name).write_text(yaml.safe_dump(profile, sort_keys=False))
    # Half the node per training job, so that a GPU job and a CPU job can run side by side.
    resources = {
        "gpu_partition": cluster.gpu_partition,
        "gpus_per_training_job": min(1, cluster.n_gpus),
        "cpus_per_gpu": max(1, cluster.cpus // 2),
        "training_mem_mb": cluster.mem_mb // 2,
    }
    changes += [f"config resources.{k}: {v!r}" for k, v in resources.items()]
    config = dest / "cluster.yaml"
    config.write_text(yaml.safe_dump({"resources": resources}))
    return dest, config, changes


@dataclass
class Plan:
    """Jobs per rule of a dry run: those that go to SLURM and those run on the submit host,
    and the GPUs each rule's jobs ask for (from the config, through train_resources)."""

    remote: Counter = field(default_factory=Counter)
    local: Counter = field(default_factory=Counter)
    gpus: dict[str, int] = field(default_factory=dict)


def parse_plan(dry_run_output: str) -> Plan:
    plan = Plan()
    for rule, jobs in planned_resources(dry_run_output).items():
        plan.remote[rule] = len(jobs)
        plan.gpus[rule] = max(int(job.get("gpu", 0)) for job in jobs)
    return plan


def rule_of_comment(comment: str) -> str:
    """The executor's job comment is ``rule_<name>`` or ``rule_<name>_wildcards_<values>``."""
    assert comment.startswith("rule_"), comment
    return comment[len("rule_") :].split("_wildcards_")[0]


def sbatch_lines(output: str) -> dict[str, list[str]]:
    """``sbatch`` calls logged by the executor (``--verbose``), by rule, without ``--wrap``."""
    lines: dict[str, list[str]] = {}
    for line in output.splitlines():
        if "sbatch call: " not in line:
            continue
        call = line.split("sbatch call: ", 1)[1].split(" --wrap=", 1)[0]
        rule = rule_of_comment(re.search(r"--comment (\S+)", call).group(1).strip("'\""))
        lines.setdefault(rule, []).append(re.sub(r"\s+", " ", call))
    return lines


def sacct(cluster: SlurmCluster, *args: str) -> list[dict[str, str]]:
    fields = "JobID,JobName%60,State,Partition,ReqTRES%120,Comment%200"
    # Without --starttime sacct only looks back to midnight.
    since = time.strftime("%Y-%m-%dT%H:%M", time.localtime(time.time() - 2 * 86400))
    res = cluster.run(
        "sacct", "-X", "--parsable2", "--noheader", f"--format={fields}", f"--starttime={since}", *args
    )
    names = [f.split("%")[0] for f in fields.split(",")]
    return [dict(zip(names, line.split("|"), strict=True)) for line in res.stdout.splitlines() if line]


def snakemake(cwd: Path, *args: str, env: dict[str, str], log: Path, timeout: int = RUN_TIMEOUT_S):
    with open(log, "w") as fh:
        res = subprocess.run(
            [tool("snakemake"), *args], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env, timeout=timeout
        )
    return res.returncode, log.read_text(errors="replace")


def start_snakemake(cwd: Path, *args: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = open(log, "w")  # noqa: SIM115 - closed by wait_snakemake
    proc = subprocess.Popen([tool("snakemake"), *args], cwd=cwd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    proc.log_handle = fh  # type: ignore[attr-defined]
    return proc


def wait_snakemake(proc: subprocess.Popen, log: Path, timeout: int = RUN_TIMEOUT_S) -> tuple[int, str]:
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.log_handle.close()  # type: ignore[attr-defined]
    return rc, log.read_text(errors="replace")


def tail(text: str, n: int = 6000) -> str:
    return text[-n:]


# ------------------------------------------------------------------ output comparison
def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """JSON leaves by path, without wall-clock keys (epoch times, dates, hosts, memory)."""
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not VOLATILE_KEY.search(str(key)):
                out.update(flatten(value, f"{prefix}/{key}"))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}[{i}]"))
    else:
        out[prefix] = obj
    return out


def json_differences(a: Any, b: Any, rtol: float = 1e-6) -> list[str]:
    fa, fb = flatten(a), flatten(b)
    diffs = [f"{k}: only in one run" for k in sorted(set(fa) ^ set(fb))]
    for key in sorted(set(fa) & set(fb)):
        x, y = fa[key], fb[key]
        if isinstance(x, (int, float)) and isinstance(y, (int, float)) and not isinstance(x, bool):
            if not (math.isclose(x, y, rel_tol=rtol, abs_tol=1e-9) or (math.isnan(x) and math.isnan(y))):
                diffs.append(f"{key}: {x!r} != {y!r}")
        elif x != y:
            diffs.append(f"{key}: {x!r} != {y!r}")
    return diffs


def is_engine_metrics(data: Any) -> bool:
    return isinstance(data, dict) and "history" in data and "train_config" in data


def summary_part(data: dict[str, Any]) -> dict[str, Any]:
    """What must agree in a module summary: the comparison tables and diagnostic verdicts."""
    return {
        "comparisons": data.get("comparisons", []),
        "diagnostics": [
            {"name": d.get("name"), "status": d.get("status")} for d in data.get("diagnostics", [])
        ],
    }


def array_differences(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> list[str]:
    diffs = [f"{k}: only in one run" for k in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        x, y = a[key], b[key]
        if x.shape != y.shape or x.dtype != y.dtype:
            diffs.append(f"{key}: {x.dtype}{x.shape} != {y.dtype}{y.shape}")
        elif x.dtype.kind in "fc":
            if not np.array_equal(x, y, equal_nan=True):
                diffs.append(f"{key}: max |diff| {np.nanmax(np.abs(x - y)):.3g}")
        elif not np.array_equal(x, y):
            diffs.append(f"{key}: values differ")
    return diffs


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(
            lambda name, obj: arrays.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None
        )
    return {k: np.asarray(v) for k, v in arrays.items()}


# -------------------------------------------------------------------------- fixtures
@dataclass
class Runs:
    local: Path
    remote: Path
    profile: Path
    profile_changes: list[str]
    plan: Plan
    targets: list[str]
    configs: list[str]
    run_id: str
    output: str
    sbatch: dict[str, list[str]]
    seconds_slurm: float
    seconds_local: float


@pytest.fixture(scope="module")
def runs(
    slurm_cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Runs:
    """config/test.yaml through SLURM and locally, in two copies of the repository."""
    base = tmp_path_factory.mktemp("slurm_runs")
    remote = copy_repo(base / "remote")
    profile, cluster_config, changes = make_profile(slurm_cluster, base / "profile")
    targets = os.environ.get("GENOMELAB_SLURM_TARGETS", "").split()
    # Both runs get the cluster's resources config, so that their configs are the same.
    configs = [CONFIG, str(cluster_config), *os.environ.get("GENOMELAB_SLURM_EXTRA_CONFIG", "").split()]
    env = run_env(slurm_cluster)

    rc, out = snakemake(
        remote,
        *targets,
        "-n",
        "--profile",
        str(profile),
        "--configfile",
        *configs,
        env=env,
        log=base / "plan.log",
    )
    assert rc == 0, f"dry run with the SLURM profile failed:\n{tail(out)}"
    plan = parse_plan(out)
    assert plan.remote, f"the dry run planned no job to submit:\n{tail(out)}"

    t0 = time.monotonic()
    proc = start_snakemake(
        remote,
        *targets,
        "--profile",
        str(profile),
        "--configfile",
        *configs,
        "--verbose",
        env=env,
        log=base / "slurm.log",
    )
    try:
        # The local run, meanwhile (the SLURM run mostly waits on the scheduler): the
        # session's run of config/test.yaml (tests/shared_run.py, which tests/test_workflow.py
        # uses too), copied and brought up to date with the same configs as the SLURM run.
        # The cluster's resources change no result (only the software versions record, which
        # holds the config's checksum, and the run summary after it rerun); the debugging
        # aids above change what they change, in both runs.
        local = copy_run(request.getfixturevalue("test_config_run"), base / "local")
        local_rc, local_out = snakemake(
            local, *targets, "--cores", "2", "--configfile", *configs, env=run_env(), log=base / "local.log"
        )
    except BaseException:
        proc.kill()
        wait_snakemake(proc, base / "slurm.log")
        raise
    seconds_local = time.monotonic() - t0
    rc, out = wait_snakemake(proc, base / "slurm.log")
    seconds_slurm = time.monotonic() - t0
    assert local_rc == 0, (
        f"the local run of {configs} failed, so the workflow itself is broken (SLURM run: exit {rc}):\n"
        f"{tail(local_out)}"
    )
    assert rc == 0, f"the SLURM run failed (profile changes {changes}):\n{tail(out)}"
    run_id = re.search(r"SLURM run ID: (\S+)", out).group(1)
    # A dry run does not say which rules are local (the workflow's localrules and the
    # target rule `all`); the real run does.
    for rule in set(re.findall(r"^localrule (\w+):", out, re.MULTILINE)):
        plan.local[rule] = plan.remote.pop(rule, 0)
    sys.stderr.write(
        f"\nSLURM run {seconds_slurm:.0f} s, local run ready (alongside) after {seconds_local:.0f} s, "
        f"{sum(plan.remote.values())} SLURM jobs\n"
    )
    return Runs(
        local,
        remote,
        profile,
        changes,
        plan,
        targets,
        configs,
        run_id,
        out,
        sbatch_lines(out),
        seconds_slurm,
        seconds_local,
    )


# ----------------------------------------------------------------------------- tests
@pytest.mark.slow
@pytest.mark.slurm
def test_every_rule_job_went_through_sbatch(runs: Runs, slurm_cluster: SlurmCluster):
    jobs = sacct(slurm_cluster, "--name", runs.run_id)
    assert jobs, f"sacct lists no job of run {runs.run_id}"
    not_completed = [j for j in jobs if j["State"] != "COMPLETED"]
    assert not not_completed, f"jobs that did not complete: {not_completed}"
    submitted = Counter(rule_of_comment(j["Comment"]) for j in jobs)
    # One accounted SLURM job per planned rule job; only the workflow's localrules (gates,
    # summaries, report) and the target rule `all` stay on the submit host.
    assert submitted == runs.plan.remote, f"sacct {dict(submitted)} != planned {dict(runs.plan.remote)}"
    assert set(runs.plan.local) <= LOCAL_RULES | {"all"}, f"rules run outside SLURM: {dict(runs.plan.local)}"
    assert {"gate", "report_summary"} <= set(runs.plan.local), (
        f"run on the submit host: {dict(runs.plan.local)}"
    )
    assert Counter({r: len(c) for r, c in runs.sbatch.items()}) == runs.plan.remote


def gpu_rules(runs: Runs) -> dict[str, int]:
    """Rules sent to SLURM whose jobs ask for GPUs (config resources), with their GPU count."""
    return {r: n for r, n in runs.plan.gpus.items() if n > 0 and r in runs.plan.remote}


@pytest.mark.slow
@pytest.mark.slurm
def test_gpu_rules_request_gpus_and_cpu_rules_do_not(runs: Runs, slurm_cluster: SlurmCluster):
    accounted = {}
    for job in sacct(slurm_cluster, "--name", runs.run_id):
        accounted.setdefault(rule_of_comment(job["Comment"]), []).append(job)
    gpus = gpu_rules(runs)
    for rule, calls in runs.sbatch.items():
        for call, job in zip(calls, accounted[rule], strict=True):
            if rule in gpus:
                assert f"--gpus={gpus[rule]}" in call, call
                assert f"-p {slurm_cluster.gpu_partition}" in call and "--cpus-per-gpu=" in call, call
                assert f"gres/gpu={gpus[rule]}" in job["ReqTRES"], job
                assert job["Partition"] == slurm_cluster.gpu_partition, job
            else:
                assert "--gpus" not in call and "--gres" not in call, call
                assert f"-p {slurm_cluster.cpu_partition}" in call and "--cpus-per-task=" in call, call
                assert "gres/gpu" not in job["ReqTRES"], job
            assert f"-A {slurm_cluster.account}" in call, call
    if not gpus:
        pytest.skip(f"{CONFIG} plans no GPU rule yet (planned: {sorted(runs.plan.remote)})")
    sys.stderr.write("\n".join(f"{r}: {c[0]}" for r, c in sorted(runs.sbatch.items())) + "\n")


@pytest.mark.slow
@pytest.mark.slurm
def test_deterministic_outputs_match_a_local_run(runs: Runs):
    compared, diffs = [], []
    results = runs.remote / "results"
    for path in sorted(results.rglob("*")):
        rel = path.relative_to(runs.remote)
        if ".state" in rel.parts or not path.is_file():
            continue
        other = runs.local / rel
        if path.suffix in (".h5", ".hdf5", ".npz"):
            assert other.is_file(), f"{rel} written under SLURM but not locally"
            diffs += [f"{rel}: {d}" for d in array_differences(read_arrays(path), read_arrays(other))]
        elif path.suffix == ".json":
            data = json.loads(path.read_text())
            if path.name == "summary.json" and "comparisons" in data:
                part = summary_part
            elif is_engine_metrics(data):
                part = dict
            else:
                continue
            assert other.is_file(), f"{rel} written under SLURM but not locally"
            diffs += [
                f"{rel}: {d}" for d in json_differences(part(data), part(json.loads(other.read_text())))
            ]
        else:
            continue
        compared.append(str(rel))
    assert compared, "no feature file, module summary or metrics JSON to compare"
    assert not diffs, "SLURM and local outputs differ:\n" + "\n".join(diffs[:40])
    sys.stderr.write(f"\nequal under SLURM and locally: {compared}\n")


EPOCH_LINE = re.compile(r"epoch \d+: ")


def rule_logs(copy: Path, rule: str, job_id: str) -> list[Path]:
    """The rule log(s) of a SLURM job, read from the job's output (the executor's log)."""
    logs = []
    for slurm_log in (copy / ".snakemake" / "slurm_logs" / f"rule_{rule}").rglob(f"{job_id}.log"):
        for rel in re.findall(r"^\s+log: (\S+)", slurm_log.read_text(errors="replace"), re.MULTILINE):
            if (copy / rel).is_file():
                logs.append(copy / rel)
    return logs


def engine_metrics(copy: Path, module: str) -> dict[Path, dict[str, Any]]:
    found = {}
    for path in sorted((copy / RESULTS / module).rglob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if is_engine_metrics(data):
            found[path.relative_to(copy)] = data
    return found


def epochs_for(seconds: float, metrics: dict[str, Any]) -> int:
    """Epochs that take about ``seconds``, from the epoch times of an earlier run."""
    times = [h["time/epoch_s"] for h in metrics["history"] if "time/epoch_s" in h]
    per_epoch = float(np.median(times)) if times else 0.5
    base = int(metrics["train_config"]["max_epochs"])
    return int(min(400, max(base + 4, math.ceil(seconds / max(per_epoch, 1e-3)))))


def best_weights(copy: Path, module: str) -> dict[Path, dict[str, Any]]:
    import torch

    return {
        p.relative_to(copy): torch.load(p, map_location="cpu", weights_only=True)["model"]
        for p in sorted((copy / RESULTS / ".state" / module).rglob("best.pt"))
    }


@pytest.mark.slow
@pytest.mark.slurm
def test_requeued_training_job_resumes_from_last_checkpoint(
    runs: Runs, slurm_cluster: SlurmCluster, tmp_path: Path
):
    train = sorted(r for r in runs.plan.remote if r.endswith("_train"))
    if not train:
        pytest.skip(f"{CONFIG} plans no *_train rule yet (planned: {sorted(runs.plan.remote)})")
    rule = "tissue_train" if "tissue_train" in train else train[0]
    module = rule.split("_")[0]
    earlier = engine_metrics(runs.local, module)
    assert earlier, f"{rule} wrote no engine metrics JSON (history + train_config) under {RESULTS}/{module}"
    if rule == "tissue_train":
        # The tissue module trains ensemble members (tissue_train), one job each: one member's
        # output as the target makes its job the only one (the others would train alike and
        # only lengthen the test; the runs' outputs are compared in full above).
        member = min(p for p in earlier if p.match("members/0/metrics.json"))
        targets, reference = [str(member)], earlier[member]
    else:
        targets, reference = ["--until", rule], next(iter(earlier.values()))
    # Long enough to be caught running, short enough for CI; no early stop, so both runs
    # train exactly this many epochs.
    n_epochs = epochs_for(REQUEUE_TRAIN_S, reference)
    extra = tmp_path / "requeue.yaml"
    extra.write_text(yaml.safe_dump({module: {"train": {"max_epochs": n_epochs, "patience": n_epochs}}}))
    # Targets first: --configfile takes several values and would swallow a target after it.
    args = (*targets, "--configfile", *runs.configs, str(extra), "--forcerun", rule)
    for copy in (runs.local, runs.remote):
        # A fresh state folder: last.pt of the earlier run belongs to another configuration.
        shutil.rmtree(copy / RESULTS / ".state" / module, ignore_errors=True)
    # Snakemake deletes a job's log before (re)running it, so every log left after this run
    # is from this run (and a requeued attempt's log replaces the interrupted one's).
    shutil.rmtree(runs.remote / "logs", ignore_errors=True)
    started = time.time()

    # The uninterrupted reference, locally, alongside.
    local_proc = start_snakemake(runs.local, "--cores", "2", *args, env=run_env(), log=tmp_path / "local.log")
    proc = start_snakemake(
        runs.remote,
        "--profile",
        str(runs.profile),
        *args,
        "--verbose",
        env=run_env(slurm_cluster),
        log=tmp_path / "slurm.log",
    )
    job_id, requeued_at, released = None, None, False
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while proc.poll() is None and time.monotonic() < deadline:
        if job_id is None:
            for line in slurm_cluster.run("squeue", "-h", "-o", "%i|%k|%T", check=False).stdout.splitlines():
                jid, comment, job_state = line.split("|")
                if comment.startswith(f"rule_{rule}") and job_state == "RUNNING":
                    job_id = jid
        elif requeued_at is None:
            # Requeue once this job's own log shows a finished epoch: it is then inside the
            # training loop, where SIGTERM saves last.pt before the process exits.
            if any(
                EPOCH_LINE.search(log.read_text(errors="replace"))
                for log in rule_logs(runs.remote, rule, job_id)
            ):
                slurm_cluster.run("scontrol", "requeue", job_id)
                requeued_at = time.monotonic()
        elif not released:
            # A requeued job waits ~2 min (BeginTime) before it may start again; let it go now.
            job_state = slurm_cluster.run(
                "squeue", "-h", "-j", job_id, "-o", "%T", check=False
            ).stdout.strip()
            if job_state == "PENDING":
                slurm_cluster.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")
                released = True
        time.sleep(0.2)
    rc, out = wait_snakemake(proc, tmp_path / "slurm.log", timeout=max(1, int(deadline - time.monotonic())))
    local_rc, local_out = wait_snakemake(local_proc, tmp_path / "local.log")
    assert rc == 0, f"the requeue run failed:\n{tail(out)}"
    assert local_rc == 0, f"the uninterrupted local run failed:\n{tail(local_out)}"
    assert job_id is not None, f"no running {rule} job seen in squeue:\n{tail(out)}"
    assert requeued_at is not None, (
        f"{rule} finished before a checkpoint appeared to requeue it ({n_epochs} epochs)"
    )
    assert released, f"job {job_id} was never seen pending after the requeue"

    # SLURM ran the same job twice: a REQUEUED record, then the COMPLETED one.
    history = slurm_cluster.run(
        "sacct", "-j", job_id, "-X", "--duplicates", "--parsable2", "--noheader", "-o", "State"
    ).stdout.split()
    assert history[0] == "REQUEUED" and history[-1] == "COMPLETED", f"sacct states of job {job_id}: {history}"

    texts = {p: p.read_text(errors="replace") for p in (runs.remote / "logs").rglob("*.log")}
    resumed = {
        p: m
        for p, text in texts.items()
        if (m := re.search(r"resumed from (\S+) at epoch (\d+), batch (\d+)", text))
    }
    assert resumed, f"no rule log says 'resumed from' after the requeue:\n{tail(out)}"
    for path, match in resumed.items():
        assert match.group(1).endswith("last.pt"), match.group(0)
        assert (int(match.group(2)), int(match.group(3))) != (0, 0), f"{path}: resumed from the very start"

    # Same metrics and same best weights as the uninterrupted local run.
    remote_metrics, local_metrics = engine_metrics(runs.remote, module), engine_metrics(runs.local, module)
    assert remote_metrics.keys() == local_metrics.keys()
    retrained = {rel for rel in remote_metrics if (runs.remote / rel).stat().st_mtime >= started}
    assert retrained, f"no engine metrics JSON under {RESULTS}/{module} was written by the requeue run"
    assert retrained == {rel for rel in local_metrics if (runs.local / rel).stat().st_mtime >= started}
    for rel, data in remote_metrics.items():
        if rel in retrained:
            assert data["epochs_run"] == n_epochs, f"{rel}: {data['epochs_run']} epochs, expected {n_epochs}"
        diffs = json_differences(data, local_metrics[rel])
        assert not diffs, f"{rel}: requeued run differs from the uninterrupted one:\n" + "\n".join(diffs[:40])
    import torch

    remote_w, local_w = best_weights(runs.remote, module), best_weights(runs.local, module)
    assert remote_w and remote_w.keys() == local_w.keys()
    for rel, weights in remote_w.items():
        for name, tensor in weights.items():
            assert torch.equal(tensor, local_w[rel][name]), f"{rel}: {name} differs after the requeue"


def test_slurm_profile_placeholders_are_all_filled_for_a_cluster(tmp_path: Path):
    """The placeholder filling the SLURM tests rely on covers every ``<...>`` in the profile."""
    fake = SlurmCluster(tmp_path, cpus=2, mem_mb=8000)
    profile, config, changes = make_profile(fake, tmp_path / "profile")
    text = (profile / PROFILE.name).read_text()
    assert not re.search(r"<[a-z_]+>", text), text
    data = yaml.safe_load(text)
    assert data["executor"] == "slurm"
    assert data["default-resources"]["slurm_partition"] == fake.cpu_partition
    assert not data.get("set-resources"), "the profile must not override the config's resources"
    resources = yaml.safe_load(config.read_text())["resources"]
    assert resources["gpu_partition"] == fake.gpu_partition
    assert resources["cpus_per_gpu"] <= 2 and resources["training_mem_mb"] <= 4000, resources
    assert any("slurm_account" in c for c in changes)


def test_local_default_profile_does_not_override_the_slurm_profile():
    slurm = yaml.safe_load(PROFILE.read_text())
    local = yaml.safe_load(DEFAULT_PROFILE.read_text()) if DEFAULT_PROFILE.exists() else {}
    # Keys the local profile sets that would replace or add to the SLURM profile's.
    overridden = {k: (slurm.get(k), v) for k, v in local.items() if k in slurm and slurm[k] != v}
    capped = {k: v for k, v in local.items() if k in ("cores", "jobs", "resources") and k not in slurm}
    assert not overridden and not capped, f"profiles/default overrides {overridden}, adds {capped}"


def test_a_cluster_that_cannot_be_installed_says_why(monkeypatch: pytest.MonkeyPatch):
    import slurm_cluster

    monkeypatch.setattr(slurm_cluster, "BINARIES", ("no-such-slurmctld",))
    with pytest.raises(slurm_cluster.ClusterUnavailable, match=r"no-such-slurmctld.*installation disabled"):
        slurm_cluster.ensure_packages(install=False)
    monkeypatch.setattr(slurm_cluster.os, "geteuid", lambda: 1000)
    with pytest.raises(slurm_cluster.ClusterUnavailable, match=r"no-such-slurmctld.*needs root"):
        slurm_cluster.ensure_packages(install=True)
