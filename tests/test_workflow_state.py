"""The training rules' state folders, as the workflow plans them (Snakemake's API, no job runs).

A finished training job keeps the newest ``state.keep`` states of its state folder
(genomelab.entry._prune_states); a rule whose folder name changed with its settings put every
setting's state in a folder of its own, which no job ever pruned.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from shared_run import copy_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("repo"))


# Snakemake's API in a process of its own: parsing the workflow re-imports genomelab from the
# copy's workflow/scripts (common.smk), which must not replace this process's modules.
PLAN = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

repo = Path(sys.argv[1])
with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(cores=1),
        config_settings=ConfigSettings(configfiles=[repo / "config" / "test.yaml", Path(sys.argv[2])]),
        snakefile=repo / "Snakefile",
        workdir=repo,
    )
    print(json.dumps({
        rule.name: rule.params.state_dir
        for rule in workflow._workflow.rules
        if "state_dir" in rule.params.keys() and isinstance(rule.params.state_dir, str)
    }))
"""


def planned_state_dirs(repo: Path, override: dict) -> dict[str, str]:
    """``params.state_dir`` of every rule that has a fixed one, under config/test.yaml + ``override``."""
    extra = repo / f"override{len(list(repo.glob('override*.yaml')))}.yaml"
    extra.write_text(yaml.safe_dump(override))
    res = subprocess.run(
        [sys.executable, "-c", PLAN, str(repo), str(extra)], capture_output=True, text=True, timeout=300
    )
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_changed_training_settings_keep_the_state_folder_that_pruning_looks_in(repo):
    base = planned_state_dirs(repo, {})
    assert {"regulon_train", "binning_train"} <= set(base), base
    changed = planned_state_dirs(
        repo,
        {
            "seed": 7,
            "regulon": {"train": {"lr": 0.01}, "model": {"channels": 8}},
            "binning": {"train": {"lr": 0.01}},
        },
    )
    assert changed == base
