"""genomelab predict's options: where a binning prediction takes its clustering settings."""

from __future__ import annotations

import argparse

import pytest
from genomelab.config import schema_defaults
from genomelab.predict.cli import binning_settings
from genomelab.run_config import ConfigError


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(
        **{"configfile": None, "min_bin_bp": None, "min_length": None, "seed": None} | kw
    )


def test_binning_settings_come_from_flags_then_the_run_config_then_the_schema(tmp_path):
    schema = binning_settings(_args())
    assert schema["cluster"] == schema_defaults("binning.cluster") and schema["seed"] == 0
    assert schema["min_bin_bp"] == schema_defaults("binning.bins")["min_bin_bp"]
    config = tmp_path / "run.yaml"
    config.write_text(
        "run: mine\nseed: 7\nbinning:\n  enabled: true\n  cluster: {n_neighbors: 10, resolution: 2.0}\n"
        "  bins: {min_bin_bp: 20000}\n  features: {min_length: 1500}\n"
    )
    run = binning_settings(_args(configfile=str(config)))
    # The run's own settings, the rest of binning.cluster at the schema's defaults.
    assert run["cluster"] == schema_defaults("binning.cluster") | {"n_neighbors": 10, "resolution": 2.0}
    assert (run["min_bin_bp"], run["min_length"], run["seed"]) == (20000, 1500, 7)
    flags = binning_settings(_args(configfile=str(config), min_bin_bp=5000, seed=3))
    assert (flags["min_bin_bp"], flags["min_length"], flags["seed"]) == (5000, 1500, 3)


def test_an_invalid_run_config_is_refused_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: mine\nbinning:\n  enabled: true\n  cluster: {n_neighbors: 0}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is invalid"):
        binning_settings(_args(configfile=str(bad)))
    with pytest.raises(FileNotFoundError, match="config file .*missing.yaml does not exist"):
        binning_settings(_args(configfile=str(tmp_path / "missing.yaml")))
