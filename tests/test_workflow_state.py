"""The training rules' state folders, as the workflow plans them (Snakemake's API, no job runs).

A finished training job keeps the newest ``state.keep`` states of its state folder
(genomelab.entry._prune_states); a rule whose folder name changed with its settings put every
setting's state in a folder of its own, which no job ever pruned.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from shared_run import copy_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return copy_repo(tmp_path_factory.mktemp("repo"))


def planned_state_dirs(repo: Path, override: dict) -> dict[str, str]:
    """``params.state_dir`` of every rule that has a fixed one, under config/test.yaml + ``override``."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings

    extra = repo / f"override{len(list(repo.glob('override*.yaml')))}.yaml"
    extra.write_text(yaml.safe_dump(override))
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(cores=1),
            config_settings=ConfigSettings(configfiles=[repo / "config" / "test.yaml", extra]),
            snakefile=repo / "Snakefile",
            workdir=repo,
        )
        rules = workflow._workflow.rules
        return {
            rule.name: rule.params.state_dir
            for rule in rules
            if "state_dir" in rule.params.keys() and isinstance(rule.params.state_dir, str)
        }


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
