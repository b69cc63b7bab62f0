# Shared set-up: config validation (before any job runs), paths, resources and helpers.
import json
import os
import re
import sys
from pathlib import Path

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
# This workflow's own package, not an installed genomelab (a `pip install .`, another clone's
# editable install): its folder first, and any genomelab imported from elsewhere forgotten.
# The jobs do the same in workflow/scripts/run_step.py.
sys.path.insert(0, str(SCRIPTS))
_loaded = getattr(sys.modules.get("genomelab"), "__file__", None) or "/"
if "genomelab" in sys.modules and not Path(_loaded).resolve().is_relative_to(SCRIPTS.resolve()):
    for _name in [m for m in sys.modules if m.split(".")[0] == "genomelab"]:
        del sys.modules[_name]

from snakemake.logging import logger


def shipped(relative: str) -> str:
    """A file or folder the repository ships (``relative`` to its root): that relative path
    when the run is in the repository, else its path beside the Snakefile (a run with
    --directory elsewhere). Relative where possible: Snakemake records a job's input paths,
    so an absolute one would rerun the job after the checkout is moved or copied."""
    beside = Path(workflow.basedir) / relative
    return relative if Path(relative).resolve() == beside.resolve() else str(beside)


from genomelab.config_schema import module_sections
from genomelab.run_config import load_run_config

# The modules: the config schema's sections with a schema file of their own name
# (`<m>: {$ref: <m>.schema.yaml}`), in schema order; that line registers a module and its
# rules, workflow/rules/<m>.smk. ingest is no model module (it converts user files for
# tissue): the Snakefile includes it first and the report lists it last.
MODULES = tuple(
    m
    for m in module_sections(Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
    if m != "ingest"
)
# Only the user's --configfile(s) and --config: no file is read by default, every key left out
# takes its schema default (so rules index config without .get()), every module is off unless
# enabled, and `run` names this run's folders. Checked here, at parse time, before any job.
load_run_config(
    config,
    workflow.overwrite_configfiles,
    Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml",
    (*MODULES, "ingest"),
    # The --config values alone (overwrite_config also holds the config files' contents, so
    # a bad value in a file was named as a --config value).
    workflow.config_settings.config,
)
ENABLED = [m for m in MODULES if config[m]["enabled"]]
# Steps with a summary in the run report: the enabled modules, plus ingest when enabled.
REPORTED = ENABLED + (["ingest"] if config["ingest"]["enabled"] else [])
# Final targets per module, filled in by each module's rule file.
FINAL_TARGETS: dict[str, list[str]] = {}

# One folder per run name: two datasets or two model choices never overwrite each other.
RUN = config["run"]
RESULTS = f"results/{RUN}"
LOGS = f"logs/{RUN}"
# Resumable training state lives outside Snakemake's declared outputs, because Snakemake
# deletes declared outputs before it reruns a job; last.pt must survive that.
STATE = f"{RESULTS}/.state"

ENV_CPU = "../../envs/cpu.yaml"
ENV_TORCH = "../../envs/torch.yaml"

# Sample, contig and run names reach paths and shell commands: keep them plain (the rule
# every sheet reader of genomelab.io applies too).
from genomelab.io.names import NAME_PATTERN


wildcard_constraints:
    sample=NAME_PATTERN,
    run=NAME_PATTERN,
    phase=r"phase[1-3]",


def train_resources(job: str) -> dict:
    """Resources of a training job (a module's training rule, or binning_encode), from config.

    The one place where GPU count, memory, runtime, CPUs per GPU and the GPU partition of a
    training job are decided: the SLURM profile sets none of them (a profile's
    ``set-resources`` would replace these values whatever the config says).
    ``resources.training.<job>`` overrides the shared values key by key; the runtime grows
    with the attempt number, so a retried job gets more time. A job without GPUs asks for
    none and stays on the profile's default (CPU) partition.
    """
    res = config["resources"]
    own = res["training"][job]
    gpu = own.get("gpu", res["gpus_per_training_job"])
    runtime = own.get("runtime_min", res["training_runtime_min"])
    out = {
        "gpu": gpu,
        "mem_mb": own.get("mem_mb", res["training_mem_mb"]),
        "runtime": lambda wc, attempt: runtime * attempt,
    }
    if gpu > 0:
        out["cpus_per_gpu"] = own.get("cpus_per_gpu", res["cpus_per_gpu"])
        if res["gpu_partition"]:
            out["slurm_partition"] = res["gpu_partition"]
    return out


# A value still written as "<...>" (profiles/slurm ships <your_account>, <cpu_partition>).
PLACEHOLDER_RE = re.compile(r"<[^<>]*>")


def unfilled_placeholders() -> list[str]:
    """Where a ``<...>`` placeholder is left: the profile's default-/set-resources, the config.

    Reads the resources Snakemake resolved from ``--profile`` and the command line at parse
    time, so a dry run (which needs no SLURM binaries) finds them too.
    """
    found = []
    settings = getattr(workflow, "resource_settings", None)
    defaults = getattr(settings, "default_resources", None) or {}
    overrides = getattr(settings, "overwrite_resources", None) or {}
    sources = [("default-resources", defaults)] + [
        (f"set-resources of rule {rule}", values) for rule, values in overrides.items()
    ]
    for where, values in sources:
        for name, value in values.items():
            raw = getattr(value, "raw", value)
            if isinstance(raw, str) and PLACEHOLDER_RE.fullmatch(raw.strip("'\"")):
                found.append(f"{name}: {raw} (profile {where})")
    for name, value in config["resources"].items():
        if isinstance(value, str) and PLACEHOLDER_RE.fullmatch(value.strip()):
            found.append(f"resources.{name}: {value} (config)")
    return found


def check_placeholders() -> None:
    """Stop at parse time, before anything is submitted, while a placeholder is unfilled."""
    unfilled = unfilled_placeholders()
    if unfilled:
        raise ValueError(
            "placeholders left unreplaced:\n  "
            + "\n  ".join(unfilled)
            + "\nFill in your cluster's values: slurm_account (your SLURM account, e.g. from "
            "`sacctmgr show associations user=$USER`) and slurm_partition (the partition of CPU "
            "jobs, from `sinfo`) in the profile given to --profile "
            "(profiles/slurm/config.v8+.yaml or your copy of it); the partition of GPU training "
            "jobs is resources.gpu_partition in your config (docs/slurm.md)."
        )


check_placeholders()


def gpu_partition_warning() -> str | None:
    """The warning for GPU training jobs that a SLURM profile (one that sets a default
    ``slurm_partition``) would send to that default partition because
    ``resources.gpu_partition`` is null: documented, yet easy to miss until jobs are refused
    or wait for GPUs the partition does not have. None when nothing is wrong."""
    settings = getattr(workflow, "resource_settings", None)
    defaults = getattr(settings, "default_resources", None) or {}
    partition = defaults.get("slurm_partition") if hasattr(defaults, "get") else None
    if partition is None or config["resources"]["gpu_partition"]:
        return None
    # The training jobs this run has: one per enabled module, but binning trains (and
    # encodes on GPUs, with resources.training.binning_encode) only when its kind is not tnf.
    jobs = [m for m in ENABLED if m != "binning"]
    if "binning" in ENABLED and config["binning"]["model"]["kind"] != "tnf":
        jobs += ["binning", "binning_encode"]
    gpu_jobs = [j for j in jobs if train_resources(j)["gpu"] > 0]
    if not gpu_jobs:
        return None
    raw = str(getattr(partition, "raw", partition)).strip("'\"")
    return (
        f"the training jobs of {', '.join(gpu_jobs)} ask for GPUs but go to the profile's default "
        f"partition ({raw}), since resources.gpu_partition is not set: set it to your GPU "
        "partition, or resources.gpus_per_training_job: 0 on a CPU-only cluster (docs/slurm.md)"
    )


if (_warning := gpu_partition_warning()) is not None:
    logger.warning(f"genomelab: {_warning}")


def get_final_targets() -> list[str]:
    targets = [f"{RESULTS}/report/summary.md"] if REPORTED else []
    for module in REPORTED:
        targets.extend(FINAL_TARGETS.get(module, []))
    # The UXM path (ingest.uxm) is not a reported module; its proportions are still a target,
    # as are the predictions of a predict-only module (tissue/deconv off, predict.inputs set).
    targets.extend(FINAL_TARGETS.get("uxm", []))
    targets.extend(FINAL_TARGETS.get("predict", []))
    return targets


def gate_input(module: str, model: str | None = None) -> str:
    """The module's gate as an input of its training rules: it orders training after the
    checks (a failed gate stops it). Not ancient(), although it carries no data: Snakemake 9
    then skips a training job's own rerun reasons whenever the gate reruns (a changed
    training setting or a deleted model with a changed diagnostics setting: it ran the gate
    only and ended with exit status 0), so a rerun gate retrains the models after it.
    ``model``: that model's own gate, ``diagnostics/gate_<model>.json`` (a wildcard such as
    ``"{tissue_model}"`` works), where a module gates each model on its own checks (tissue:
    adding a model then reruns no other model's gate, and so retrains none)."""
    name = "gate" if model is None else f"gate_{model}"
    return f"{RESULTS}/{module}/diagnostics/{name}.json"


def state_dir(module: str, name: str) -> str:
    return f"{STATE}/{module}/{name}"


def config_json(section) -> str:
    """A stable JSON string of a config section, used in params so changes trigger reruns."""
    return json.dumps(section, sort_keys=True)


# A training rule's params hold its module's train section with how often it saves and logs
# at the defaults: changing those retrains nothing (genomelab.runtime.with_default_cadence).
from genomelab.runtime import with_default_cadence

# Diagnostics JSON files per module that the module's gate reads; filled in by the module.
DIAGNOSTICS: dict[str, list[str]] = {m: [] for m in MODULES}


# Files named inside sample sheets are inputs of the rules that read the sheets (a changed
# NPZ reruns them), and every user sheet is read and validated at parse time, so a bad row
# stops Snakemake before any job with the sheet and line in the message. Sheets this run
# makes (the ingest output, the demo's) are left to the rules that make them.
from genomelab.io.sheets import sheet_files

# Sheets made by rules of this run (normalised paths); ingest.smk adds its tissue sheet.
MADE_SHEETS: set[str] = set()


def get_sheet_files(sheet: str, check_files: bool = True, labels: bool = True) -> list[str]:
    """The files ``sheet`` lists, read and validated now ([] for a sheet this run makes);
    ``labels`` False: new samples (deconvolved or classified), no ``tissue`` column needed."""
    if not sheet or os.path.normpath(sheet) in MADE_SHEETS:
        return []
    return sheet_files(sheet, check_files, labels)
