"""profiles/slurm obeys the config: dry runs with the SLURM executor (no SLURM binaries needed).

Training jobs take their GPUs, memory, runtime and GPU partition from the config's
``resources`` (through ``train_resources`` in common.smk); the profile only names the account
and the CPU partition, and the run stops at parse time while a ``<...>`` placeholder is left.
The real single-node cluster runs are in tests/slurm/.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from shared_run import repo_files
from test_workflow import tool

ROOT = Path(__file__).resolve().parents[1]
PROFILE = Path("profiles") / "slurm" / "config.v8+.yaml"
GPU_RULES = {
    "tissue_train",
    "deconv_train",
    "regulon_train",
    "assoc_train",
    "binning_train",
    "binning_encode",
}
# Seconds of work on small files; none of them should wait in a SLURM queue.
LOCAL_RULES = {
    "gate",
    "tissue_gate",
    "tissue_summary",
    "deconv_summary",
    "assoc_select",
    "assoc_summary",
    "binning_summary",
    "report_summary",
    "report_software_versions",
    "ingest_sheet",
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository's tracked (and new, unignored) files."""
    dest = tmp_path_factory.mktemp("repo")
    for rel in repo_files():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


def filled_profile(dest: Path, account: str = "lab", partition: str = "cpu") -> Path:
    """profiles/slurm with its placeholders replaced, as a user does for their cluster."""
    text = (ROOT / PROFILE).read_text()
    text = text.replace("<your_account>", account).replace("<cpu_partition>", partition)
    dest.mkdir(parents=True, exist_ok=True)
    (dest / PROFILE.name).write_text(text)
    return dest


def dry_run(workdir: Path, profile: Path | str, *configs: Path | str) -> subprocess.CompletedProcess:
    cmd = [tool("snakemake"), "-n", "--profile", str(profile), "--configfile", "config/test.yaml"]
    cmd += [str(c) for c in configs]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300, env=env)


def planned_resources(output: str) -> dict[str, list[dict[str, str]]]:
    """``{rule: [resources of each planned job]}`` from a dry run's job listing."""
    jobs: dict[tuple[str, str], dict[str, str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        head = re.match(r"(?:local)?rule (\w+):", block)
        jobid = re.search(r"^\s+jobid: (\d+)", block, re.MULTILINE)
        res = re.search(r"^\s+resources: (.*)$", block, re.MULTILINE)
        if head and jobid and res:
            pairs = (item.split("=", 1) for item in res.group(1).split(", "))
            jobs[(head.group(1), jobid.group(1))] = {k: v for k, v in pairs}
    by_rule: dict[str, list[dict[str, str]]] = {}
    for (rule, _), res in sorted(jobs.items()):
        by_rule.setdefault(rule, []).append(res)
    return by_rule


def assert_cpu_job(rule: str, job: dict[str, str]) -> None:
    assert int(job.get("gpu", 0)) == 0, (rule, job)
    assert job["slurm_partition"] == "cpu" and "cpus_per_gpu" not in job, (rule, job)


def write_config(path: Path, resources: dict) -> Path:
    path.write_text(yaml.safe_dump({"resources": resources}))
    return path


def plan_with(workdir: Path, tmp_path: Path, resources: dict) -> dict[str, list[dict[str, str]]]:
    """Planned jobs' resources with a filled-in profile and ``resources`` layered on the config."""
    extra = write_config(tmp_path / "resources.yaml", resources)
    res = dry_run(workdir, filled_profile(tmp_path / "profile"), extra)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    plan = planned_resources(res.stdout)
    assert GPU_RULES <= set(plan), sorted(plan)
    return plan


def test_the_profile_sets_no_training_resources():
    profile = yaml.safe_load((ROOT / PROFILE).read_text())
    # A profile's set-resources replaces the config's values whatever the config says.
    assert not profile.get("set-resources"), profile.get("set-resources")
    assert not {"gpu", "cpus_per_gpu"} & set(profile["default-resources"])


def test_unreplaced_placeholders_stop_the_run_and_say_what_to_fill_in(workdir, tmp_path):
    res = dry_run(workdir, PROFILE)
    out = res.stdout + res.stderr
    assert res.returncode != 0, out[-3000:]
    assert "slurm_account: <your_account>" in out and "slurm_partition: <cpu_partition>" in out, out[-3000:]
    assert "profiles/slurm/config.v8+.yaml" in out and "sacctmgr" in out, out[-3000:]
    assert "Job stats" not in out, "jobs were planned despite the placeholders"

    # A placeholder copied into the config is caught the same way.
    extra = write_config(tmp_path / "gpu.yaml", {"gpu_partition": "<gpu_partition>"})
    res = dry_run(workdir, filled_profile(tmp_path / "profile"), extra)
    out = res.stdout + res.stderr
    # (the config's own placeholder check, run_config, answers first and names the key)
    assert res.returncode != 0 and "resources.gpu_partition" in out and "<gpu_partition>" in out, out[-3000:]
    assert "Job stats" not in out


def test_training_jobs_take_gpus_memory_runtime_and_partition_from_the_config(workdir, tmp_path):
    resources = {
        "gpu_partition": "gpu",
        "training_mem_mb": 12000,
        "training_runtime_min": 300,
        "cpus_per_gpu": 6,
        "training": {"binning": {"gpu": 2, "mem_mb": 64000, "runtime_min": 1440}},
    }
    for rule, jobs in plan_with(workdir, tmp_path, resources).items():
        for job in jobs:
            assert job["slurm_account"] == "lab", (rule, job)
            if rule not in GPU_RULES:
                assert_cpu_job(rule, job)
                continue
            expected_gpu, mem, runtime = {
                "binning_train": (2, 64000, 1440),
                "binning_encode": (1, 12000, 240),  # the schema's shorter encode time
            }.get(rule, (1, 12000, 300))
            assert int(job["gpu"]) == expected_gpu, (rule, job)
            assert (job["slurm_partition"], job["cpus_per_gpu"]) == ("gpu", "6"), (rule, job)
            assert (int(job["mem_mb"]), int(job["runtime"])) == (mem, runtime), (rule, job)


def test_a_cpu_only_cluster_works_by_config_alone(workdir, tmp_path):
    """``gpus_per_training_job: 0`` (README): no job asks for a GPU or goes to the GPU partition."""
    for rule, jobs in plan_with(
        workdir, tmp_path, {"gpus_per_training_job": 0, "gpu_partition": "gpu"}
    ).items():
        for job in jobs:
            assert_cpu_job(rule, job)


def test_trivial_rules_run_on_the_submit_host(workdir):
    # A dry run does not mark local jobs, so ask the parsed workflow (in a subprocess: parsing
    # the copy's common.smk replaces the genomelab modules this test process imported).
    script = (
        "from pathlib import Path\n"
        "from snakemake.api import SnakemakeApi\n"
        "from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings,"
        " StorageSettings, DeploymentSettings\n"
        "with SnakemakeApi(OutputSettings()) as api:\n"
        "    wf = api.workflow(snakefile=Path('Snakefile'), workdir=Path('.'),"
        " config_settings=ConfigSettings(configfiles=[Path('config/test.yaml')]),"
        " resource_settings=ResourceSettings(), storage_settings=StorageSettings(),"
        " deployment_settings=DeploymentSettings())\n"
        "    print('LOCAL', ' '.join(sorted(wf._workflow._localrules)))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=workdir, capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stdout + res.stderr
    local = set(re.search(r"^LOCAL (.*)$", res.stdout, re.MULTILINE).group(1).split())
    assert local == LOCAL_RULES, f"local rules {sorted(local)}"
    assert not local & GPU_RULES


def test_gpu_jobs_without_a_gpu_partition_are_announced_at_parse_time(workdir, tmp_path):
    """resources.gpu_partition null sends GPU training jobs to the profile's CPU partition
    (documented); the dry run says so, naming the modules and the partition. Not with the
    partition set, nor on a CPU-only cluster."""
    warning = "ask for GPUs but go to the profile's default partition (cpu)"
    profile = filled_profile(tmp_path / "profile")
    res = dry_run(workdir, profile, write_config(tmp_path / "none.yaml", {"gpu_partition": None}))
    out = res.stdout + res.stderr
    assert res.returncode == 0 and warning in out and "tissue, deconv" in out, out[-3000:]
    for name, resources in (("gpu", {"gpu_partition": "gpu"}), ("cpu", {"gpus_per_training_job": 0})):
        res = dry_run(workdir, profile, write_config(tmp_path / f"{name}.yaml", resources))
        assert res.returncode == 0 and "go to the profile's default partition" not in res.stdout + res.stderr


def test_the_gpu_partition_warning_names_the_jobs_that_ask_for_gpus(workdir, tmp_path):
    """The warning names training jobs that exist and ask for GPUs: binning with kind tnf
    trains nothing (no warning), and binning_encode asks for its own GPUs
    (resources.training.binning_encode) whatever binning_train's are."""
    profile = filled_profile(tmp_path / "profile")
    only_binning = {m: {"enabled": False} for m in ("tissue", "deconv", "regulon", "assoc")}
    for name, extra, named in (
        ("tnf", {"binning": {"model": {"kind": "tnf"}}}, None),
        (
            "encode",
            {"resources": {"training": {"binning": {"gpu": 0}, "binning_encode": {"gpu": 1}}}},
            "the training jobs of binning_encode ask for GPUs",
        ),
    ):
        config = tmp_path / f"{name}.yaml"
        config.write_text(yaml.safe_dump({**only_binning, **extra}))
        res = dry_run(workdir, profile, config)
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-3000:]
        if named is None:
            assert "go to the profile's default partition" not in out, out[-3000:]
        else:
            assert named in out, out[-3000:]
