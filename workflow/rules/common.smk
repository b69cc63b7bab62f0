# Shared set-up: config validation (before any job runs), paths, resources and helpers.
import json
import re
import sys
from pathlib import Path

from snakemake.utils import validate

SCRIPTS = Path(workflow.basedir) / "workflow" / "scripts"
sys.path.insert(0, str(SCRIPTS))

from genomelab.config_schema import fill_defaults

# The schemas hold every default, so rules can index config without .get(); validation
# runs here, at parse time, before any job starts.
fill_defaults(config, Path(workflow.basedir) / "workflow" / "schemas" / "config.schema.yaml")
validate(config, schema="../schemas/config.schema.yaml")

MODULES = ("tissue", "deconv", "regulon", "assoc", "binning")
ENABLED = [m for m in MODULES if config[m]["enabled"]]
# Steps with a summary in the run report: the enabled modules, plus ingest when enabled.
REPORTED = ENABLED + (["ingest"] if config["ingest"]["enabled"] else [])
# Final targets per module, filled in by each module's rule file.
FINAL_TARGETS: dict[str, list[str]] = {}

RESULTS = "results"
LOGS = "logs"
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


def train_resources(module: str) -> dict:
    """SLURM-facing resources of a module's GPU training rule."""
    res = config["resources"]
    return {
        "gpu": res["gpus_per_training_job"],
        "mem_mb": res["training_mem_mb"],
        "runtime": res["training_runtime_min"],
    }


def get_final_targets() -> list[str]:
    targets = [f"{RESULTS}/report/summary.md"] if REPORTED else []
    for module in REPORTED:
        targets.extend(FINAL_TARGETS.get(module, []))
    return targets


def gate_input(module: str) -> str:
    return f"{RESULTS}/{module}/diagnostics/gate.json"


def state_dir(module: str, name: str) -> str:
    return f"{STATE}/{module}/{name}"


def config_json(section) -> str:
    """A stable JSON string of a config section, used in params so changes trigger reruns."""
    return json.dumps(section, sort_keys=True)


# Diagnostics JSON files per module that the module's gate reads; filled in by the module.
DIAGNOSTICS: dict[str, list[str]] = {m: [] for m in MODULES}
