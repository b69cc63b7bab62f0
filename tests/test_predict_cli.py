"""genomelab predict's options: where a binning prediction takes its clustering settings."""

from __future__ import annotations

import argparse
import re

import pytest
from genomelab.config import schema_defaults
from genomelab.predict.cli import binning_settings
from genomelab.run_config import ConfigError


def _model(path, **extra) -> str:
    """A contrastive encoder's export (the schema's settings, no weights: settings only are
    read), recording ``extra`` of its run."""
    import dataclasses

    from genomelab.binning.contrastive_model import ContrastiveConfig
    from genomelab.binning.training import CONTRASTIVE_KIND
    from genomelab.train.export import save_exported

    config = dataclasses.asdict(ContrastiveConfig.from_dict({}, n_depth=0))
    del config["n_depth"]
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in config.items()}
    save_exported(
        path, {}, kind=CONTRASTIVE_KIND, config=config, ids={"contigs": ["c"]}, data_fingerprint="0",
        extra={"n_depth": 0, **extra},
    )  # fmt: skip
    return str(path)


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(
        **{"configfile": None, "min_bin_bp": None, "min_length": None, "seed": None} | kw
    )


def test_binning_settings_come_from_flags_then_the_run_config_then_the_schema(tmp_path, caplog):
    # A model exported before models recorded their run's length filter and seed.
    old = _model(tmp_path / "old.pt")
    schema = binning_settings(_args(model=old))
    assert schema["cluster"] == schema_defaults("binning.cluster") and schema["seed"] == 0
    assert schema["min_bin_bp"] == schema_defaults("binning.bins")["min_bin_bp"]
    assert schema["min_length"] == schema_defaults("binning.features")["min_length"]
    assert "records no profile length filter" in caplog.text
    config = tmp_path / "run.yaml"
    config.write_text(
        "run: mine\nseed: 7\nbinning:\n  enabled: true\n  cluster: {n_neighbors: 10, resolution: 2.0}\n"
        "  bins: {min_bin_bp: 20000}\n  features: {min_length: 1500}\n"
    )
    run = binning_settings(_args(configfile=str(config), model=old))
    # The run's own settings, the rest of binning.cluster at the schema's defaults.
    assert run["cluster"] == schema_defaults("binning.cluster") | {"n_neighbors": 10, "resolution": 2.0}
    assert (run["min_bin_bp"], run["min_length"], run["seed"]) == (20000, 1500, 7)
    flags = binning_settings(_args(configfile=str(config), min_bin_bp=5000, seed=3, model=old))
    assert (flags["min_bin_bp"], flags["min_length"], flags["seed"]) == (5000, 1500, 3)


def test_an_invalid_run_config_is_refused_naming_it(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: mine\nbinning:\n  enabled: true\n  cluster: {n_neighbors: 0}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml is invalid"):
        binning_settings(_args(configfile=str(bad), model=_model(tmp_path / "m.pt")))
    with pytest.raises(FileNotFoundError, match="config file .*missing.yaml does not exist"):
        binning_settings(_args(configfile=str(tmp_path / "missing.yaml"), model=str(tmp_path / "m.pt")))


def test_binning_settings_default_to_what_the_model_records_of_its_run(tmp_path):
    """Without --configfile the run's length filter and seed recorded in the model are used
    (the schema's 2000 bp and seed 0 were); a config that contradicts the model is refused
    naming the key."""
    model = _model(tmp_path / "m.pt", min_length=1500, seed=7)
    got = binning_settings(_args(model=model))
    assert (got["min_length"], got["seed"]) == (1500, 7)
    assert binning_settings(_args(model=model, min_length=900, seed=1))["min_length"] == 900  # flags win
    run = "run: mine\nseed: 2\nbinning:\n  enabled: true\n"
    (tmp_path / "same.yaml").write_text(run + "  features: {min_length: 1500}\n")
    same = binning_settings(_args(model=model, configfile=str(tmp_path / "same.yaml")))
    assert (same["min_length"], same["seed"]) == (1500, 2)  # the config's seed: a choice, not a contradiction
    for name, section, message in (
        ("length", "  features: {min_length: 2000}\n", "binning.features.min_length is 2000, the model's 1500"),
        ("kind", "  features: {min_length: 1500}\n  model: {kind: vae}\n", "binning.model.kind is 'vae', the model's 'contrastive'"),
        ("groups", "  features: {min_length: 1500}\n  model: {contrastive: {groups: [k4]}}\n",
         "binning.model.contrastive.groups is ['k4'], the model's ['k5', 'k4']"),
    ):  # fmt: skip
        (tmp_path / f"{name}.yaml").write_text(run + section)
        with pytest.raises(
            ValueError,
            match=rf"--configfile .*{name}.yaml contradicts the model .*m.pt: {re.escape(message)}",
        ):
            binning_settings(_args(model=model, configfile=str(tmp_path / f"{name}.yaml")))


def test_a_model_of_another_k_mer_layout_is_refused(tmp_path):
    from genomelab.predict.binning import check_kmer_layout

    check_kmer_layout(_model(tmp_path / "old.pt"))  # records none: nothing to compare
    with pytest.raises(
        ValueError, match=r"other.pt was trained on k-mer profiles of layout \{'k6': \[0, 10\]\}"
    ):
        check_kmer_layout(_model(tmp_path / "other.pt", kmer_layout={"k6": [0, 10]}))


@pytest.mark.parametrize(
    "module, option, value, why",
    [
        ("tissue", "--min-region-match", "2", "is above 1 (tissue.predict.min_region_match)"),
        ("tissue", "--min-covered", "-0.1", "is below 0 (tissue.predict.min_covered)"),
        ("tissue", "--threshold", "1", "is not below 1 (tissue.calibration.threshold)"),
        ("deconv", "--min-match", "1.5", "is above 1 (deconv.infer.min_match)"),
        ("deconv", "--presence-threshold", "0", "is not above 0 (deconv.presence_threshold)"),
        ("deconv", "--other-threshold", "-1", "is below 0 (deconv.infer.other_threshold)"),
        ("binning", "--min-length", "-5", "is below 0 (binning.features.min_length)"),
        ("binning", "--min-bin-bp", "-1", "is below 0 (binning.bins.min_bin_bp)"),
        # The schema's seed is 0 or more: -1 was taken (the medoid clustering's numpy
        # generator refuses it, "expected non-negative integer", after the embedding).
        ("binning", "--seed", "-1", "is below 0 (seed)"),
        ("binning", "--min-length", "1.5", "is not a whole number"),
    ],
)
def test_an_option_out_of_its_keys_range_is_refused_naming_it(tmp_path, capsys, module, option, value, why):
    """An option outside its config key's range is refused before anything runs (a
    --min-covered of -0.1 flagged nothing, a --min-region-match of 2 ended in "need 200%",
    --min-length -5 gave "min_length must be >= 0" after loading the model)."""
    from genomelab.cli import main

    out = str(tmp_path / "out")
    with pytest.raises(SystemExit) as err:
        main(["predict", module, "--model", "m.pt", "--inputs", "x", "--out", out, option, value])
    assert err.value.code == 2 and not (tmp_path / "out").exists()
    assert f"argument {option}: {value} {why}" in capsys.readouterr().err


def test_the_presence_threshold_s_help_says_it_scores_against_truth(capsys):
    """It sets only the scoring of calls against --truth (the network's presence mask uses the
    thresholds saved in the model); its help was the bare key, which read as the mask's."""
    from genomelab.cli import main

    with pytest.raises(SystemExit):
        main(["predict", "deconv", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "counts as present when the calls are scored against --truth" in text
