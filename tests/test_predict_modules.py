"""genomelab predict for deconv, assoc, regulon and binning: a saved model predicts what the
module computed in training (or what its existing inference wrote) on the same inputs."""

from __future__ import annotations

import gzip
import json
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from genomelab.cli import main
from genomelab.io.ids import InputMismatch

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
TISSUES = ["Neutrophils", "Lymphocytes", "Liver", "Lung", "Colon", "Pancreas"]


# ---------------------------------------------------------------------------- deconv
@pytest.fixture(scope="module")
def deconv_run(tmp_path_factory, simulate_deconv_sources):
    from genomelab.deconv import io as dio
    from genomelab.deconv.mixtures import PhaseConfig, make_mixtures, write_mixtures
    from genomelab.deconv.training import train_model

    d = tmp_path_factory.mktemp("deconv_predict")
    _, src, ref, _ = simulate_deconv_sources(d, n_regions=160, markers=(8, 3, 8), n_new=3, seed=7)
    dio.write_table(d / "reference.tsv", ref.profiles, ref.regions, ref.tissues)
    phase = PhaseConfig(n_train=128, n_val=32, n_test=32, background=TISSUES[:2])
    sets = make_mixtures(src, ref.regions, list(ref.tissues), "phase3", phase, 40, "reads", seed=1)
    write_mixtures(d / "phase3.h5", sets, {"phase": "phase3"})
    train = {"max_epochs": 2, "batch_size": 64, "lr": 0.003, "monitor": "val/mae", "precision": "fp32"}
    run = d / "run"
    train_model(
        d / "phase3.h5", d / "reference.tsv", "sparse", {"hidden": [16]}, train, 0.01,
        run / "state", run / "model.pt", run / "metrics.json", run / "pred.npz", None, device="cpu",
    )  # fmt: skip
    return {"dir": d, "run": run, "sets": sets, "ref": ref}


def test_deconv_predictions_equal_training_and_infer(deconv_run, tmp_path):
    from genomelab.deconv.infer import infer
    from genomelab.deconv.io import load_predictions, read_table
    from genomelab.predict.deconv import FILES, DeconvPredictor

    d, run = deconv_run["dir"], deconv_run["run"]
    predictor = DeconvPredictor(run / "model.pt")
    test = deconv_run["sets"]["test"]
    props, match = predictor.predict(test.beta, deconv_run["ref"].regions, 1.0, "test mixtures")
    np.testing.assert_allclose(props, load_predictions(run / "pred.npz"), atol=1e-6)
    assert match.n_matched == len(deconv_run["ref"].regions)
    # genomelab predict deconv writes what deconv_infer writes, file for file.
    out = tmp_path / "cli"
    args = ["predict", "deconv", "--model", str(run / "model.pt"), "--inputs", str(d / "new.csv")]
    assert main([*args, "--reference", str(d / "reference.tsv"), "--out", str(out)]) == 0
    files = {k: str(tmp_path / "infer" / name) for k, name in FILES.items()}
    infer(run / "model.pt", d / "reference.tsv", d / "new.csv", files, 0.01, 0.5, False, 0.02)
    for key in ("nnls", "weighted", "model", "residuals"):
        assert (out / FILES[key]).read_text() == Path(files[key]).read_text(), key
    values, tissues, samples = read_table(out / FILES["model"])
    assert tissues.tolist() == list(deconv_run["ref"].tissues) and len(samples) == 3


def test_deconv_other_regions_refused_with_counts(deconv_run):
    from genomelab.predict.deconv import DeconvPredictor

    predictor = DeconvPredictor(deconv_run["run"] / "model.pt")
    regions = np.asarray([f"chr9:{i}" for i in range(len(predictor.regions))])
    with pytest.raises(InputMismatch, match=r"req: 0 of the model's \d+ regions found.*chr9:0"):
        predictor.predict(np.zeros((1, len(regions))), regions, 0.5, "req")


def test_deconv_bad_truth_leaves_no_half_written_folder(deconv_run, tmp_path, capfd):
    """A truth table naming a tissue the reference lacks stops the prediction before any
    proportions table is written; the CLI leaves no --out folder behind, so the same command
    with a corrected table runs into the same folder."""
    from genomelab.deconv.infer import infer
    from genomelab.predict.deconv import FILES

    d, run = deconv_run["dir"], deconv_run["run"]
    truth = pd.read_csv(d / "truth.csv", index_col=0)
    bad = tmp_path / "truth_bad.csv"
    truth.rename(index={"Liver": "Livr"}).to_csv(bad)
    files = {k: str(tmp_path / "infer" / name) for k, name in FILES.items()}
    (tmp_path / "infer").mkdir()
    with pytest.raises(ValueError, match=r"truth_bad.csv: row\(s\) 'Livr' .*did you mean 'Liver'"):
        infer(run / "model.pt", d / "reference.tsv", d / "new.csv", files, 0.01, 0.5, False, 0.02, bad)
    assert list((tmp_path / "infer").iterdir()) == []
    out = tmp_path / "pred"
    args = ["predict", "deconv", "--model", str(run / "model.pt"), "--inputs", str(d / "new.csv")]
    args += ["--reference", str(d / "reference.tsv"), "--out", str(out)]
    assert main([*args, "--truth", str(bad)]) == 2
    assert "name no tissue of the reference" in capfd.readouterr().err
    assert not out.exists()
    # Percentages: the message says proportions, not methylation fractions.
    (truth * 100).to_csv(tmp_path / "truth_pct.csv")
    assert main([*args, "--truth", str(tmp_path / "truth_pct.csv")]) == 2
    assert "values must be proportions in [0, 1]" in capfd.readouterr().err and not out.exists()
    # An existing empty folder is kept, and stays empty.
    out.mkdir()
    assert main([*args, "--truth", str(bad)]) == 2
    assert out.is_dir() and list(out.iterdir()) == []
    assert main([*args, "--truth", str(d / "truth.csv")]) == 0
    assert "vs_truth" in json.loads((out / FILES["join"]).read_text())


def predict_rule_on_each_device(
    repo: Path, config: dict, module: str, args: list[str], step: str = "predict"
) -> str:
    """Run ``<module>_<step>`` in ``repo`` (``args``: snakemake's targets and options) with
    ``config`` and the top-level ``device`` cuda, then cpu: cuda is refused in the rule's log
    where CUDA is absent (CI), taken where present (the GPU machine, where a test expecting
    the refusal failed); cpu runs. Returns the cpu run's log."""
    import subprocess
    import sys

    args = [*args, "--cores", "1", "--rerun-triggers", "mtime", "--configfile", "c.yaml"]
    refused = not torch.cuda.is_available()
    for device, code in (("cuda", int(refused)), ("cpu", 0)):
        (repo / "c.yaml").write_text(yaml.safe_dump({**config, "device": device}))
        res = subprocess.run(
            [str(Path(sys.executable).parent / "snakemake"), *args],
            cwd=repo, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        log = (repo / f"logs/r/{module}/{step}.log").read_text()
        assert res.returncode == code, res.stderr[-3000:] + log[-2000:]
        assert ("device 'cuda' requested but CUDA is not available" in log) == (
            device == "cuda" and refused
        ), log
    return log


def _deconv_args(deconv_run) -> list[str]:
    d, run = deconv_run["dir"], deconv_run["run"]
    args = ["predict", "deconv", "--model", str(run / "model.pt"), "--inputs", str(d / "new.csv")]
    return [*args, "--reference", str(d / "reference.tsv")]


def _proportions(out: Path) -> dict[str, str]:
    from genomelab.predict.deconv import FILES

    return {k: (out / FILES[k]).read_text() for k in ("nnls", "weighted", "model", "residuals")}


def test_deconv_predict_on_the_cpu_given_explicitly_equals_the_default(deconv_run, tmp_path):
    """`genomelab predict deconv --device cpu` writes what the command without --device does,
    file for file."""
    args = _deconv_args(deconv_run)
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    assert main([*args, "--device", "cpu", "--out", str(tmp_path / "cpu")]) == 0
    assert _proportions(tmp_path / "cpu") == _proportions(tmp_path / "default")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_deconv_predict_takes_the_device_option(deconv_run, tmp_path, capfd):
    """--device applies to every module: deconv parsed it and dropped it, running the network
    on the CPU when asked for a GPU without a word."""
    args = _deconv_args(deconv_run)
    assert main([*args, "--device", "cuda", "--out", str(tmp_path / "gpu")]) == 2
    assert "device 'cuda' requested but CUDA is not available" in capfd.readouterr().err
    assert not (tmp_path / "gpu").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_deconv_predict_on_cuda_agrees_with_the_cpu(deconv_run, tmp_path):
    from genomelab.deconv.io import read_table

    args = _deconv_args(deconv_run)
    for device in ("cpu", "cuda"):
        assert main([*args, "--device", device, "--out", str(tmp_path / device)]) == 0
    # NNLS runs on the CPU either way; the network's float32 on the GPU differs by rounding.
    cpu, gpu = _proportions(tmp_path / "cpu"), _proportions(tmp_path / "cuda")
    assert cpu["nnls"] == gpu["nnls"] and cpu["weighted"] == gpu["weighted"]
    np.testing.assert_allclose(
        read_table(tmp_path / "cuda" / "model_proportions.csv")[0],
        read_table(tmp_path / "cpu" / "model_proportions.csv")[0],
        atol=1e-5,
    )


@pytest.mark.slow  # two real Snakemake runs of the rule (cuda, then cpu)
def test_deconv_predict_rule_runs_on_the_config_s_device(deconv_run, tmp_path):
    """The deconv_predict rule takes the top-level ``device`` as the other <module>_predict
    rules do: it had no device param and ran the network on the CPU whatever the config said.
    On the CPU it writes what `genomelab predict deconv` writes."""
    from shared_run import copy_repo

    d, run = deconv_run["dir"], deconv_run["run"]
    repo = copy_repo(tmp_path / "repo")
    config = {
        "run": "r",
        "deconv": {
            "enabled": False,  # a predict-only run: deconv_predict alone
            "predict": {
                "inputs": str(d / "new.csv"),
                "model": str(run / "model.pt"),
                "reference": str(d / "reference.tsv"),
            },
        },
    }
    log = predict_rule_on_each_device(repo, config, "deconv", ["--forcerun", "deconv_predict"])
    assert "the network deconvolves 3 sample(s) on cpu" in log
    out = repo / "results/r/deconv/predict"
    assert main([*_deconv_args(deconv_run), "--out", str(tmp_path / "cli")]) == 0
    assert _proportions(out) == _proportions(tmp_path / "cli")


def test_deconv_wrong_model_or_reference_is_named(deconv_run, tmp_path, capfd):
    """Another module's model says which command predicts it; a reference of another run
    (other tissues) is named beside the model."""
    from genomelab.deconv import io as dio
    from test_train_export import save_model_of_kind

    d, run = deconv_run["dir"], deconv_run["run"]
    tissue_model = tmp_path / "tissue_model.pt"
    save_model_of_kind(tissue_model, "attention-ensemble", {"regions": ["r1", "r2"], "classes": ["a", "b"]})
    args = ["predict", "deconv", "--inputs", str(d / "new.csv"), "--reference", str(d / "reference.tsv")]
    assert main([*args, "--model", str(tissue_model), "--out", str(tmp_path / "a")]) == 2
    err = capfd.readouterr().err
    assert "tissue_model.pt holds a 'attention-ensemble' model, expected a 'deconv' model" in err
    assert "genomelab predict tissue" in err and not (tmp_path / "a").exists()
    ref = deconv_run["ref"]
    other = tmp_path / "other_reference.tsv"
    dio.write_table(other, ref.profiles[:, :-1], ref.regions, ref.tissues[:-1])
    args = ["predict", "deconv", "--inputs", str(d / "new.csv"), "--model", str(run / "model.pt")]
    assert main([*args, "--reference", str(other), "--out", str(tmp_path / "b")]) == 2
    err = capfd.readouterr().err
    assert "model.pt was made for other tissues" in err and f"the reference {other}" in err
    assert not (tmp_path / "b").exists()


def test_deconv_sheet_of_new_samples_needs_no_tissue_column(deconv_run, tmp_path):
    """Samples to deconvolve listed in an NPZ sheet without a tissue column (their tissues
    are the question): deconvolved as the same sheet with labels (it was refused, "sample
    sheet lacks column(s) ['tissue']")."""
    d, run = deconv_run["dir"], deconv_run["run"]
    sheet = pd.read_csv(d / "sheet.tsv", sep="\t").head(4)
    sheet["file"] = [str(d / f) for f in sheet["file"]]
    sheet.to_csv(tmp_path / "labelled.tsv", sep="\t", index=False)
    sheet[["sample", "file"]].to_csv(tmp_path / "new.tsv", sep="\t", index=False)
    args = ["predict", "deconv", "--model", str(run / "model.pt"), "--reference", str(d / "reference.tsv")]
    for name in ("labelled", "new"):
        assert main([*args, "--inputs", str(tmp_path / f"{name}.tsv"), "--out", str(tmp_path / name)]) == 0
    for table in ("model_proportions.csv", "nnls_proportions.csv"):
        assert (tmp_path / "new" / table).read_text() == (tmp_path / "labelled" / table).read_text()


# ----------------------------------------------------------------------------- assoc
def _train_tiny_assoc(data, features, run, state, epochs: int, seed: int) -> None:
    """A 1-layer, 8-wide assoc network of the entities scheme trained on CPU into ``run``."""
    from genomelab.assoc import training as T

    model = {"d_model": 8, "n_layers": 1, "n_heads": 2, "bridge_heads": 2}
    point = {"lr": 0.01, "batch_size": 16, "dropout": 0.0, "bridge_dim": 8}
    T.train_run(
        data,
        features,
        "entities",
        model,
        {"max_epochs": epochs, "seed": seed},
        point,
        run,
        state,
        device="cpu",
    )


@pytest.fixture(scope="module")
def assoc_run(tmp_path_factory):
    from genomelab.assoc import data as D
    from genomelab.assoc import features as Fe

    tmp = tmp_path_factory.mktemp("assoc_predict")
    src = ROOT / "tests" / "data" / "assoc"
    D.prepare_data(src / "links.tsv", src / "sources.tsv", src / "targets.tsv", tmp / "data", seed=3)
    cfg = Fe.FeatureConfig(analyzer="word", ngram_min=1, ngram_max=1, text_dim=8, max_fields=2)
    Fe.build_features(tmp / "data", tmp / "feat.npz", tmp / "featurizer.npz", cfg, seed=0)
    _train_tiny_assoc(tmp / "data", tmp / "feat.npz", tmp / "run", tmp / "state", epochs=2, seed=0)
    return tmp


@pytest.mark.parametrize("side", ["source", "target"])
def test_assoc_predictions_equal_infer_and_records(assoc_run, tmp_path, side):
    from genomelab.assoc.infer import predict_new_entities
    from genomelab.predict.assoc import AssocPredictor

    tmp = assoc_run
    queries = tmp / "data" / f"heldout_{side}s.tsv"
    model, featurizer = tmp / "run" / "model.pt", tmp / "featurizer.npz"
    out = tmp_path / "cli"
    args = ["predict", "assoc", "--model", str(model), "--inputs", str(queries), "--side", side]
    assert main([*args, "--featurizer", str(featurizer), "--out", str(out)]) == 0
    predict_new_entities(model, featurizer, queries, side, 10, tmp_path / "infer.tsv")
    assert (out / "predictions.tsv").read_text() == (tmp_path / "infer.tsv").read_text()
    # JSON-like records (what the server receives) rank exactly like the TSV.
    records = pd.read_csv(queries, sep="\t", dtype=str, keep_default_na=False).to_dict(orient="records")
    records = [{k: v for k, v in r.items() if k != "split"} for r in records]
    ranked = AssocPredictor(model, featurizer).rank_records(records, side, 10)
    table = pd.read_csv(tmp_path / "infer.tsv", sep="\t")
    assert ranked["candidate"].tolist() == table["candidate"].tolist()
    np.testing.assert_allclose(ranked["score"], table["score"], rtol=1e-4)
    with pytest.raises(InputMismatch, match="numeric columns of the .* entities differ"):
        AssocPredictor(model, featurizer).rank_records([{**records[0], "weight": 1.0}], side, 3)


def test_assoc_wrong_featurizer_and_wrong_side_are_named(assoc_run, tmp_path, capfd):
    from genomelab.assoc.features import load_featurizer

    tmp = assoc_run
    model, queries = tmp / "run" / "model.pt", tmp / "data" / "heldout_targets.tsv"
    # The run's other NPZ (the features), a table and a bare .npy are no featurizers.
    np.save(tmp_path / "one.npy", np.zeros(3))
    for path in (tmp / "feat.npz", tmp / "data" / "heldout_sources.tsv", tmp_path / "one.npy"):
        with pytest.raises(ValueError, match=rf"{re.escape(str(path))}: not a featurizer file \("):
            load_featurizer(path)
    args = ["predict", "assoc", "--model", str(model), "--inputs", str(queries)]
    assert main([*args, "--featurizer", str(tmp / "feat.npz"), "--out", str(tmp_path / "a")]) == 2
    assert "feat.npz: not a featurizer file" in capfd.readouterr().err
    # Target entities predicted as sources: the file is named and --side target suggested.
    assert main([*args, "--featurizer", str(tmp / "featurizer.npz"), "--out", str(tmp_path / "b")]) == 2
    err = capfd.readouterr().err
    assert f"{queries}: source entities have numeric columns" in err and "--side target" in err
    # The assoc_infer rule raises the same error: the config key is named too.
    assert "assoc.infer.side: target" in err


def test_assoc_featurizer_of_another_run_is_refused_naming_both_files(assoc_run, tmp_path, capfd):
    """Another run's featuriser (other text width) is refused by name before the network is
    run (it failed inside torch with a shape error), by predict and by the ranker serve uses."""
    from genomelab.assoc import features as Fe
    from genomelab.predict.assoc import AssocPredictor

    tmp = assoc_run
    cfg = Fe.FeatureConfig(analyzer="word", ngram_min=1, ngram_max=1, text_dim=4, max_fields=2)
    Fe.build_features(tmp / "data", tmp_path / "feat.npz", tmp_path / "other.npz", cfg, seed=0)
    model, queries = tmp / "run" / "model.pt", tmp / "data" / "heldout_sources.tsv"
    args = ["predict", "assoc", "--model", str(model), "--inputs", str(queries)]
    out = tmp_path / "out"
    assert main([*args, "--featurizer", str(tmp_path / "other.npz"), "--out", str(out)]) == 2
    err = capfd.readouterr().err
    assert f"{tmp_path / 'other.npz'}: not the featuriser {model} was trained with" in err
    assert "text_dim 4 in the featuriser, 8 in the model" in err and not out.exists()
    with pytest.raises(ValueError, match="not the featuriser"):
        AssocPredictor(model, tmp_path / "other.npz")


def test_assoc_featurizer_of_the_same_widths_but_another_vocabulary_is_refused(assoc_run, tmp_path, caplog):
    """A featuriser fitted on other descriptions has the same widths (text_dim 8, max_fields
    2, no numeric columns) but another TF-IDF vocabulary: the width check passed it and the
    model ranked with features it never saw. The model now records the featuriser's
    fingerprint; a model exported without one (before) is still loaded, on widths alone,
    and the log says so."""
    from genomelab.assoc import features as Fe
    from genomelab.assoc import training as T
    from genomelab.assoc.infer import predict_new_entities

    tmp = assoc_run
    model, queries = tmp / "run" / "model.pt", tmp / "data" / "heldout_sources.tsv"
    shutil.copytree(tmp / "data", tmp_path / "data")
    sources = pd.read_csv(tmp_path / "data" / "sources.tsv", sep="\t", dtype=str, keep_default_na=False)
    sources["description"] = "renamed " + sources["description"]
    sources.to_csv(tmp_path / "data" / "sources.tsv", sep="\t", index=False)
    cfg = Fe.FeatureConfig(analyzer="word", ngram_min=1, ngram_max=1, text_dim=8, max_fields=2)
    Fe.build_features(tmp_path / "data", tmp_path / "feat.npz", tmp_path / "other.npz", cfg, seed=0)
    ours, other = Fe.load_featurizer(tmp / "featurizer.npz"), Fe.load_featurizer(tmp_path / "other.npz")
    assert other.text_dim == ours.text_dim and len(other.vocabulary) != len(ours.vocabulary)
    assert ours.fingerprint() == Fe.features_fingerprint(tmp / "feat.npz")
    with pytest.raises(
        ValueError, match=r"not the featuriser .* trained with \(same feature widths, but another vocabulary"
    ):
        predict_new_entities(model, tmp_path / "other.npz", queries, "source", 3, tmp_path / "p.tsv")
    with caplog.at_level("WARNING", logger="genomelab.assoc.infer"):
        predict_new_entities(model, tmp / "featurizer.npz", queries, "source", 3, tmp_path / "ok.tsv")
    assert "records no featuriser fingerprint" not in caplog.text
    # An export of before (no fingerprint): loaded, checked on widths, and the log says so.
    old = tmp_path / "old_model.pt"
    net, exported = T.load_model(model)
    T.save_model(old, net, exported.ids, extra={"scheme": "entities"})
    with caplog.at_level("WARNING", logger="genomelab.assoc.infer"):
        predict_new_entities(old, tmp / "featurizer.npz", queries, "source", 3, tmp_path / "old.tsv")
    assert f"{old} records no featuriser fingerprint" in caplog.text and "feature widths only" in caplog.text
    assert (tmp_path / "old.tsv").read_text() == (tmp_path / "ok.tsv").read_text()


def test_assoc_queries_that_are_the_model_s_own_entities_are_named(assoc_run, tmp_path, caplog):
    """A 'new' entity table holding entities with training links: they are ranked from their
    features alone (cold start), not with their learned links; the log now says so, naming them."""
    from genomelab.assoc.infer import predict_new_entities

    tmp = assoc_run
    sources = pd.read_csv(tmp / "data" / "sources.tsv", sep="\t", dtype=str, keep_default_na=False)
    known = tmp_path / "known.tsv"
    sources.head(2).to_csv(known, sep="\t", index=False)
    model, featurizer = tmp / "run" / "model.pt", tmp / "featurizer.npz"
    with caplog.at_level("WARNING", logger="genomelab.assoc.infer"):
        predict_new_entities(model, featurizer, known, "source", 3, tmp_path / "p.tsv")
    ids = sources["id"].head(2).tolist()
    assert f"2 of 2 query source entities have training links in the model, first {ids}" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="genomelab.assoc.infer"):
        queries = tmp / "data" / "heldout_sources.tsv"
        predict_new_entities(model, featurizer, queries, "source", 3, tmp_path / "q.tsv")
    # Held-out entities are in the model's vocabulary but have no training links.
    assert "training links in the model" not in caplog.text


def test_assoc_queries_without_a_known_term_are_named(assoc_run, tmp_path, caplog):
    """Queries whose descriptions share no term with the featuriser's vocabulary were ranked
    without a word (source entities have no numeric features: each got the same ranking).
    The log now names them; queries with known terms are not named."""
    from genomelab.assoc.infer import predict_new_entities

    tmp = assoc_run
    model, featurizer = tmp / "run" / "model.pt", tmp / "featurizer.npz"
    queries = tmp_path / "unknown.tsv"
    queries.write_text("id\tdescription\nnew1\tqwertyuiop zxcvbnm\nnew2\tasdfghjkl\n")
    with caplog.at_level("WARNING", logger="genomelab.assoc.infer"):
        predict_new_entities(model, featurizer, queries, "source", 3, tmp_path / "p.tsv")
    assert "2 of 2 query source entities share no term with the featuriser's vocabulary" in caplog.text
    assert "['new1', 'new2']" in caplog.text and "every one of them gets the same ranking" in caplog.text
    ranked = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    assert ranked.groupby("query")["candidate"].apply(tuple).nunique() == 1
    caplog.clear()
    with caplog.at_level("WARNING", logger="genomelab.assoc.infer"):
        known = tmp / "data" / "heldout_sources.tsv"
        predict_new_entities(model, featurizer, known, "source", 3, tmp_path / "q.tsv")
    assert "share no term" not in caplog.text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_assoc_predict_takes_the_device_option(assoc_run, tmp_path, capfd):
    """--device applies to every module: assoc ignored it and ran on the CPU when asked
    for a GPU without a word."""
    tmp = assoc_run
    args = ["predict", "assoc", "--model", str(tmp / "run" / "model.pt"), "--inputs"]
    args += [str(tmp / "data" / "heldout_sources.tsv"), "--featurizer", str(tmp / "featurizer.npz")]
    assert main([*args, "--device", "cuda", "--out", str(tmp_path / "gpu")]) == 2
    assert "device 'cuda' requested but CUDA is not available" in capfd.readouterr().err
    assert not (tmp_path / "gpu").exists()
    assert main([*args, "--device", "cpu", "--out", str(tmp_path / "cpu")]) == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
@pytest.mark.slow  # two real Snakemake runs of the rule (cuda, then cpu)
def test_assoc_predict_rule_runs_on_the_config_s_device(assoc_run, tmp_path):
    """The assoc_predict rule takes the top-level ``device`` as the other <module>_predict
    rules do: it had no device param and ranked on the CPU whatever the config said."""
    from genomelab.assoc import data as D
    from shared_run import copy_repo

    repo = copy_repo(tmp_path / "repo")
    src = ROOT / "tests" / "data" / "assoc"
    # The run's data step as done (assoc_predict reads its links table); nothing else runs.
    D.prepare_data(
        src / "links.tsv", src / "sources.tsv", src / "targets.tsv", repo / "results/r/assoc/data", 3
    )
    config = {
        "run": "r",
        "assoc": {
            "enabled": True,
            "data": {k: f"tests/data/assoc/{k}.tsv" for k in ("links", "sources", "targets")},
            "predict": {
                "inputs": "results/r/assoc/data/heldout_sources.tsv",
                "model": str(assoc_run / "run" / "model.pt"),
                "featurizer": str(assoc_run / "featurizer.npz"),
            },
        },
    }
    out = "results/r/assoc/predict/predictions.tsv"
    # device cuda reaches Ranker.load.
    predict_rule_on_each_device(repo, config, "assoc", [out, "--allowed-rules", "assoc_predict"])
    assert pd.read_csv(repo / out, sep="\t")["score"].notna().all()


@pytest.mark.slow  # two real Snakemake runs of the rule (cuda, then cpu)
def test_assoc_infer_rule_runs_on_the_config_s_device(assoc_run, tmp_path):
    """assoc_infer takes the top-level ``device`` as assoc_predict does: it had no device
    param and ranked on the CPU whatever the config said (``device: cuda`` without CUDA now
    fails in its log with genomelab's message). On the CPU it writes what
    predict_new_entities writes."""
    from genomelab.assoc import data as D
    from genomelab.assoc.infer import predict_new_entities
    from shared_run import copy_repo

    repo = copy_repo(tmp_path / "repo")
    src, r = ROOT / "tests" / "data" / "assoc", repo / "results/r/assoc"
    # The run's data, features and selected model as done (the fixture's, same data seed).
    D.prepare_data(src / "links.tsv", src / "sources.tsv", src / "targets.tsv", r / "data", 3)
    (r / "features").mkdir()
    shutil.copy(assoc_run / "featurizer.npz", r / "features" / "featurizer.npz")
    (r / "entities").mkdir()
    shutil.copy(assoc_run / "run" / "model.pt", r / "entities" / "best_model.pt")
    config = {
        "run": "r",
        "assoc": {
            "enabled": True,
            "data": {k: f"tests/data/assoc/{k}.tsv" for k in ("links", "sources", "targets")},
        },
    }
    out = "results/r/assoc/inference/predictions.tsv"
    log = predict_rule_on_each_device(repo, config, "assoc", [out, "--allowed-rules", "assoc_infer"], "infer")
    assert re.search(r"ranking \d+ new source entities against \d+ candidates on cpu", log), log
    # assoc.infer's defaults: side source, top_k 10.
    model, featurizer = r / "entities" / "best_model.pt", r / "features" / "featurizer.npz"
    queries, links = r / "data" / "heldout_sources.tsv", r / "data" / "links.tsv"
    predict_new_entities(model, featurizer, queries, "source", 10, tmp_path / "p.tsv", links)
    assert (repo / out).read_text() == (tmp_path / "p.tsv").read_text()


@pytest.fixture(scope="module")
def assoc_pair(assoc_run):
    """A second model of assoc_run's data and featuriser (another seed), as a second fold's
    selected model is: the same vocabularies, other weights."""
    tmp = assoc_run
    _train_tiny_assoc(tmp / "data", tmp / "feat.npz", tmp / "run1", tmp / "state1", epochs=2, seed=1)
    return tmp / "run" / "model.pt", tmp / "run1" / "model.pt"


def test_several_assoc_models_rank_by_the_mean_of_their_link_probabilities(assoc_run, assoc_pair, tmp_path):
    from genomelab.assoc.data import read_entities
    from genomelab.assoc.features import load_featurizer
    from genomelab.assoc.infer import AveragedRanker, Ranker, load_ranker, predict_new_entities
    from genomelab.predict.assoc import AssocPredictor

    a, b = assoc_pair
    featurizer, queries = assoc_run / "featurizer.npz", assoc_run / "data" / "heldout_sources.tsv"
    arrays = load_featurizer(featurizer).transform(read_entities(queries, "source"))
    one, two = (Ranker.load(m, featurizer).scores(arrays, "source") for m in (a, b))
    assert not np.allclose(one, two)  # two models, not one twice
    averaged = load_ranker([a, b], featurizer)
    assert isinstance(averaged, AveragedRanker) and averaged.model_files == [str(a), str(b)]
    np.testing.assert_allclose(averaged.scores(arrays, "source"), (one + two) / 2, rtol=1e-6)
    # genomelab predict assoc --model a --model b: each query's top K by that mean, its scores
    # the mean's; predictions.json lists both files. One file writes the TSV alone.
    out = tmp_path / "cli"
    args = ["predict", "assoc", "--model", str(a), "--model", str(b), "--inputs", str(queries)]
    assert main([*args, "--featurizer", str(featurizer), "--top-k", "4", "--out", str(out)]) == 0
    got = pd.read_csv(out / "predictions.tsv", sep="\t")
    mean = (one + two) / 2
    targets = Ranker.load(a, featurizer).ids["target"]
    ids = pd.read_csv(queries, sep="\t", dtype=str)["id"].tolist()
    for i, query in enumerate(ids):
        rows = got[got["query"] == query]
        want = np.argsort(-mean[i], kind="stable")[:4]
        assert rows["candidate"].tolist() == [targets[c] for c in want]
        np.testing.assert_allclose(rows["score"], mean[i, want], rtol=1e-4)
    record = json.loads((out / "predictions.json").read_text())
    assert record["model_files"] == [str(a), str(b)] and record["n_queries"] == len(ids)
    predict_new_entities(a, featurizer, queries, "source", 4, tmp_path / "one" / "predictions.tsv")
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == ["predictions.tsv"]
    # One model into the folder of an averaged prediction (assoc_infer rerun after folds went
    # from K > 1 to 1): the earlier record, which would name the fold models, is gone.
    predict_new_entities(a, featurizer, queries, "source", 4, out / "predictions.tsv")
    assert sorted(p.name for p in out.iterdir()) == ["predictions.tsv"]
    # A JSON file of the user's beside a TSV named alike is no record of ours: kept.
    (tmp_path / "one" / "predictions.json").write_text('{"mine": 1}')
    predict_new_entities(a, featurizer, queries, "source", 4, tmp_path / "one" / "predictions.tsv")
    assert json.loads((tmp_path / "one" / "predictions.json").read_text()) == {"mine": 1}
    # The records the server ranks: the same average.
    records = pd.read_csv(queries, sep="\t", dtype=str, keep_default_na=False).to_dict(orient="records")
    records = [{k: v for k, v in r.items() if k != "split"} for r in records]
    ranked = AssocPredictor([a, b], featurizer).rank_records(records, "source", 4)
    assert ranked["candidate"].tolist() == got["candidate"].tolist()


def test_assoc_models_of_other_vocabularies_or_featurisers_are_not_averaged(
    assoc_run, assoc_pair, tmp_path, capfd
):
    from genomelab.assoc import features as Fe
    from genomelab.assoc import training as T
    from genomelab.assoc.infer import load_ranker

    a, b = assoc_pair
    featurizer = assoc_run / "featurizer.npz"
    # Another run's entities: one target renamed.
    net, exported = T.load_model(b)
    ids = {**exported.ids, "targets": ["renamed", *exported.ids["targets"][1:]]}
    renamed = tmp_path / "renamed.pt"
    T.save_model(renamed, net, ids, extra=exported.extra)
    with pytest.raises(
        ValueError,
        match=rf"^{re.escape(str(renamed))} and {re.escape(str(a))} cannot be averaged: their target vocabularies differ .*#0 is 'renamed'",
    ):
        load_ranker([a, renamed], featurizer)
    # A model of another featuriser (text width 4): refused naming it and the featuriser.
    cfg = Fe.FeatureConfig(analyzer="word", ngram_min=1, ngram_max=1, text_dim=4, max_fields=2)
    Fe.build_features(assoc_run / "data", tmp_path / "feat.npz", tmp_path / "other.npz", cfg, seed=0)
    _train_tiny_assoc(
        assoc_run / "data", tmp_path / "feat.npz", tmp_path / "other", tmp_path / "state", epochs=1, seed=0
    )
    other = tmp_path / "other" / "model.pt"
    with pytest.raises(
        ValueError,
        match=rf"^{re.escape(str(featurizer))}: not the featuriser {re.escape(str(other))} was trained with",
    ):
        load_ranker([a, other], featurizer)
    # One file twice, by another spelling: refused before anything loads.
    queries = assoc_run / "data" / "heldout_sources.tsv"
    args = ["predict", "assoc", "--model", str(a), "--model", str(a.parent / ".." / "run" / a.name)]
    out = tmp_path / "twice"
    assert main([*args, "--inputs", str(queries), "--featurizer", str(featurizer), "--out", str(out)]) == 2
    assert "is given twice among the assoc model files to average" in capfd.readouterr().err
    assert not out.exists()


@pytest.mark.slow  # two real Snakemake runs of the rule (cuda, then cpu)
def test_assoc_infer_rule_with_folds_averages_every_fold_s_model(assoc_run, assoc_pair, tmp_path):
    """assoc_infer of a run with infer.scheme links and evaluation.folds 2 reads both folds'
    best_model.pt and writes what predict_new_entities writes for both (it took fold 0's
    alone), with predictions.json naming them."""
    from genomelab.assoc import data as D
    from genomelab.assoc.infer import predict_new_entities
    from shared_run import copy_repo

    repo = copy_repo(tmp_path / "repo")
    src, r = ROOT / "tests" / "data" / "assoc", repo / "results/r/assoc"
    D.prepare_data(src / "links.tsv", src / "sources.tsv", src / "targets.tsv", r / "data", 3, folds=2)
    (r / "features").mkdir()
    shutil.copy(assoc_run / "featurizer.npz", r / "features" / "featurizer.npz")
    for k, model in enumerate(assoc_pair):
        (r / "folds" / str(k) / "links").mkdir(parents=True)
        shutil.copy(model, r / "folds" / str(k) / "links" / "best_model.pt")
    config = {
        "run": "r",
        "assoc": {
            "enabled": True,
            "data": {k: f"tests/data/assoc/{k}.tsv" for k in ("links", "sources", "targets")},
            "evaluation": {"folds": 2},
            "infer": {"scheme": "links"},
        },
    }
    out = "results/r/assoc/inference/predictions.tsv"
    log = predict_rule_on_each_device(repo, config, "assoc", [out, "--allowed-rules", "assoc_infer"], "infer")
    assert "averaging the link probabilities of 2 model files" in log
    models = [f"results/r/assoc/folds/{k}/links/best_model.pt" for k in range(2)]
    queries, links = r / "data" / "heldout_sources.tsv", r / "data" / "links.tsv"
    featurizer = r / "features" / "featurizer.npz"
    expected = tmp_path / "expected" / "predictions.tsv"
    predict_new_entities([repo / m for m in models], featurizer, queries, "source", 10, expected, links)
    assert (repo / out).read_text() == expected.read_text()
    assert json.loads((r / "inference" / "predictions.json").read_text())["model_files"] == models


# --------------------------------------------------------------------------- regulon
@pytest.fixture(scope="module")
def regulon_run(tmp_path_factory):
    from genomelab.regulon import data as rdata
    from genomelab.regulon import targets as rtargets
    from genomelab.regulon import training as rtraining
    from genomelab.regulon.bsonio import Source
    from genomelab.regulon.synthetic import make_synthetic
    from genomelab.train.engine import TrainConfig

    root = tmp_path_factory.mktemp("regulon_predict")
    paths = make_synthetic(root / "in", n_bp=61_440, seed=1)
    d = root / "data"
    rdata.process(
        Source(paths["dump"]), paths["genome"], d / "genes.tsv", d / "operons.tsv",
        d / "norm_stats.json", d / "data_report.json",
    )  # fmt: skip
    targets = {"block_bp": 6144, "window_bp": 2048, "stride_bp": 1024}
    rtargets.make_targets(
        d / "genes.tsv", d / "operons.tsv", paths["genome"], targets, d / "targets.h5", seed=3
    )
    run = root / "run"
    rtraining.train(
        d / "targets.h5", rtraining.model_config({"channels": 8, "n_layers": 2, "inputs": "sequence"}, targets),
        TrainConfig(max_epochs=1, batch_size=16, seed=5), run / "state", run / "best.pt",
        run / "m.json", run / "tb", run / "p.h5", "cpu",
    )  # fmt: skip
    return {"genome": paths["genome"], "targets": d / "targets.h5", "run": run}


def test_regulon_tracks_of_a_test_block_equal_training(regulon_run, tmp_path):
    from genomelab.predict.regulon import RegulonPredictor
    from genomelab.regulon.targets import TargetData
    from genomelab.regulon.tracks import read_tracks

    data = TargetData(regulon_run["targets"])
    windows = data.split_windows("test")
    block = windows[windows["block"] == windows["block"].iloc[0]]
    start, end = int(block["start"].min()), int(block["start"].max()) + 2048
    out = tmp_path / "cli"
    model = regulon_run["run"] / "best.pt"
    region = f"{data.contig}:{start}-{end}"
    args = ["predict", "regulon", "--model", str(model), "--inputs", str(regulon_run["genome"])]
    assert main([*args, "--region", region, "--out", str(out)]) == 0
    saved = read_tracks(regulon_run["run"] / "p.h5")["model"]
    tracks = RegulonPredictor(model).predict_fasta(regulon_run["genome"], region)
    for head, step in tracks.steps.items():
        a, b = (start - data.region_start) // step, (end - data.region_start) // step
        np.testing.assert_allclose(tracks.tracks[head], saved[head][:, a:b], rtol=1e-5, atol=1e-6)
    lines = (out / "operon.plus.bedGraph").read_text().splitlines()
    first = lines[1].split("\t")
    assert lines[0].startswith("track type=bedGraph") and len(lines) == 1 + (end - start) // 16
    assert first[:3] == [data.contig, str(start), str(start + 16)]
    assert float(first[3]) == pytest.approx(float(tracks.tracks["operon"][0, 0]), rel=1e-5)
    assert json.loads((out / "tracks.json").read_text())["steps_bp"]["density"] == 128


@pytest.fixture(scope="module")
def regulon_second_fold(regulon_run):
    """A second network on the same targets (another seed, as another fold's would be)."""
    from genomelab.regulon import training as rtraining
    from genomelab.train.engine import TrainConfig

    run = regulon_run["run"].parent / "run2"
    targets = {"block_bp": 6144, "window_bp": 2048, "stride_bp": 1024}
    rtraining.train(
        regulon_run["targets"], rtraining.model_config({"channels": 8, "n_layers": 2, "inputs": "sequence"}, targets),
        TrainConfig(max_epochs=1, batch_size=16, seed=11), run / "state", run / "best.pt",
        run / "m.json", run / "tb", run / "p.h5", "cpu",
    )  # fmt: skip
    return run / "best.pt"


def test_regulon_predict_with_folds_averages_every_fold_s_network(regulon_run, regulon_second_fold, tmp_path):
    """With K > 1 folds regulon_predict gives the step every fold's network: the tracks
    written are the mean of the networks' own, and tracks.json lists the files; one file
    writes what it wrote alone."""
    from types import SimpleNamespace

    from genomelab.config import schema_defaults
    from genomelab.predict.regulon import RegulonPredictor
    from genomelab.predict.steps import regulon_step

    section = schema_defaults("regulon.predict") | {
        "inputs": str(regulon_run["genome"]),
        "region": "synth1:0-4096",
    }
    models = [str(regulon_run["run"] / "best.pt"), str(regulon_second_fold)]
    for name, model in (("folds", models), ("one", models[0])):
        smk = SimpleNamespace(
            rule="regulon_predict",
            input=SimpleNamespace(model=model, inputs=section["inputs"]),
            output=SimpleNamespace(json=str(tmp_path / name / "tracks.json")),
            params=SimpleNamespace(predict=json.dumps(section), device="cpu"),
        )
        regulon_step(smk)
    meta = json.loads((tmp_path / "folds" / "tracks.json").read_text())
    assert meta["model_files"] == models and "model" not in meta
    one = json.loads((tmp_path / "one" / "tracks.json").read_text())
    assert one["model"] == models[0] and "model_files" not in one
    each = [RegulonPredictor(m).predict_fasta(regulon_run["genome"], "synth1:0-4096") for m in models]
    a, b = (e.tracks["expression"][0] for e in each)
    assert not np.allclose(a, b)  # two networks, two tracks: the mean is neither
    # genomelab predict regulon --model a b: the same average.
    cli = [
        "predict",
        "regulon",
        "--model",
        *models,
        "--inputs",
        section["inputs"],
        "--region",
        section["region"],
    ]
    assert main([*cli, "--out", str(tmp_path / "cli")]) == 0
    for name, expected in (("folds", (a + b) / 2), ("one", a), ("cli", (a + b) / 2)):
        lines = (tmp_path / name / "expression.plus.bedGraph").read_text().splitlines()[1:]
        written = np.array([float(line.split("\t")[3]) for line in lines])
        np.testing.assert_allclose(written, expected, rtol=1e-5, atol=1e-6)


def test_regulon_pair_calls_average_over_the_networks_that_give_them():
    from genomelab.predict.regulon import RegulonTracks, average_tracks

    def tracks(p_operon, p_coexpression, readout, expression):
        pairs = pd.DataFrame(
            {"p_operon": p_operon, "p_operon_network": p_operon, "coexpression": [0.5, np.nan],
             "p_operon_coexpression": p_coexpression}
        )  # fmt: skip
        found = RegulonTracks(
            "c", 0, 32, {"expression": np.array([expression], np.float32)}, {"expression": 16}, 0, 2
        )
        found.pairs, found.readout = pairs, np.array([readout])
        return found

    mean = average_tracks(
        [tracks([0.2, 0.4], [0.9, np.nan], [0.1, 0.3], [1.0, 2.0]),
         tracks([0.6, 0.8], [np.nan, np.nan], [0.3, 0.5], [3.0, 4.0])]
    )  # fmt: skip
    np.testing.assert_allclose(mean.tracks["expression"], [[2.0, 3.0]])
    np.testing.assert_allclose(mean.pairs["p_operon"], [0.4, 0.6])
    # The co-expression call of the one network that gives it; NaN where none does.
    np.testing.assert_allclose(mean.pairs["p_operon_coexpression"], [0.9, np.nan])
    np.testing.assert_allclose(mean.readout, [[0.2, 0.4]])


def test_regulon_networks_of_other_geometry_are_not_averaged(regulon_run, tmp_path):
    from genomelab.predict.regulon import RegulonPredictor, check_same_geometry

    one = RegulonPredictor(regulon_run["run"] / "best.pt")
    other = RegulonPredictor(regulon_run["run"] / "best.pt")
    other.path = str(tmp_path / "other.pt")
    other.window_bp = one.window_bp * 2
    with pytest.raises(
        ValueError, match=r"other\.pt and .*best\.pt cannot be averaged: window_bp 4096 and 2048"
    ):
        check_same_geometry([one, other])
    with pytest.raises(ValueError, match="is given twice among the regulon models to average"):
        check_same_geometry([one, RegulonPredictor(regulon_run["run"] / "best.pt")])


def test_regulon_region_errors_name_the_problem(regulon_run):
    from genomelab.predict.regulon import RegulonPredictor, parse_region

    predictor = RegulonPredictor(regulon_run["run"] / "best.pt")
    with pytest.raises(ValueError, match="contig:start-end"):
        parse_region("chr1:5")
    with pytest.raises(ValueError, match="outside the record"):
        predictor.predict_fasta(regulon_run["genome"], "synth1:0-99999999")
    # A tail shorter than a window is still covered, by a window ending at the region's end.
    starts, length = predictor.window_starts(0, 5000)
    assert length == 2048 and starts.tolist() == [0, 2048, 2944]


def test_regulon_fasta_with_a_duplicated_name_and_a_reversed_region_are_refused(regulon_run, tmp_path, capfd):
    """A FASTA naming the region's contig twice was read from its first record without a
    word; a region whose end is before its start was called 'outside the record'."""
    from genomelab.predict.regulon import parse_region
    from genomelab.regulon.targets import read_genome

    contig, codes = read_genome(regulon_run["genome"])
    seq = "".join("ACGTN"[c] for c in codes[:8192])
    dup = tmp_path / "dup.fna"
    dup.write_text(f">{contig}\n{seq[:4096]}\n>other\n{seq}\n>{contig}\n{seq[4096:]}\n")
    model = str(regulon_run["run"] / "best.pt")
    out = tmp_path / "out"
    args = ["predict", "regulon", "--model", model, "--inputs", str(dup), "--out", str(out)]
    assert main([*args, "--region", f"{contig}:0-2048"]) == 2
    assert f"{dup}: duplicate record name {contig!r}" in capfd.readouterr().err
    assert not out.exists()
    with pytest.raises(ValueError, match=r"end 1000 is not after start 2000"):
        parse_region(f"{contig}:2000-1000")


# --------------------------------------------------------------------------- binning
def _assembly(path: Path, n_per: int = 10, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    with gzip.open(path, "wt") as fh:
        for g, gc in enumerate((0.3, 0.5, 0.7)):
            p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
            for i in range(n_per):
                seq = "".join(rng.choice(list("ACGT"), size=2500, p=p))
                fh.write(f">g{g}_c{i}\n{seq}\n")
    return path


@pytest.fixture(scope="module")
def binning_run(tmp_path_factory):
    from genomelab.binning.data import load_inputs
    from genomelab.binning.kmers import write_profiles_h5
    from genomelab.binning.training import train_vae

    root = tmp_path_factory.mktemp("binning_predict")
    fasta = _assembly(root / "contigs.fna.gz")
    # The numpy counter: the same profiles as numba without its compilation time.
    write_profiles_h5(fasta, root / "profiles.h5", 1000, engine="numpy")
    train_vae(
        load_inputs(root / "profiles.h5"), {"hidden": [16], "latent": 4, "kl_warmup_steps": 5},
        {"max_epochs": 2, "batch_size": 8, "lr": 0.003, "weight_decay": 0.0},
        {"val_fraction": 0.2, "test_fraction": 0.1}, 3, root / "state", root / "m.json",
        root / "model" / "vae.pt", None, torch.device("cpu"),
    )  # fmt: skip
    return {
        "root": root,
        "fasta": fasta,
        "profiles": root / "profiles.h5",
        "model": root / "model" / "vae.pt",
    }


def test_binning_new_assembly_embeds_like_the_run(binning_run, tmp_path):
    from genomelab.binning.cluster import ClusterConfig
    from genomelab.binning.encode import encode_contigs
    from genomelab.binning.latent import load_latent
    from genomelab.config import schema_defaults

    cluster = {**schema_defaults("binning.cluster"), "n_neighbors": 5}
    run = tmp_path / "run"
    run.mkdir()
    encode_contigs(
        binning_run["profiles"], None, binning_run["model"], ClusterConfig.from_dict(cluster, seed=0), "cpu", 0,
        run / "clusters.tsv", run / "latent.h5",
    )  # fmt: skip
    from genomelab.predict.binning import predict_files

    files = predict_files(
        binning_run["model"], binning_run["fasta"], tmp_path / "new", cluster, 0, 1000, engine="numpy"
    )
    names, latent = load_latent(files["latent"])
    run_names, run_latent = load_latent(run / "latent.h5")
    assert list(names) == list(run_names)
    np.testing.assert_allclose(latent, run_latent, rtol=1e-6, atol=1e-7)
    assert Path(files["clusters"]).read_text() == (run / "clusters.tsv").read_text()
    assert Path(files["contig_bins"]).is_file() and Path(files["bin_summary"]).is_file()
    # A run's bins are never overwritten: a folder with files is refused.
    with pytest.raises(FileExistsError, match="not empty"):
        predict_files(binning_run["model"], binning_run["fasta"], run, cluster, 0, 1000, engine="numpy")


def test_binning_prediction_log_counts_clusters_without_the_unbinned(binning_run, tmp_path, caplog):
    """Contigs left out of every cluster (label -1: outliers) are no cluster: the log said
    'into 4 clusters' for 3 Leiden clusters and one outlier."""
    from genomelab.config import schema_defaults
    from genomelab.predict.binning import predict_files

    cluster = {**schema_defaults("binning.cluster"), "n_neighbors": 5, "outlier_fence": 0.01}
    with caplog.at_level("INFO", logger="genomelab.predict.binning"):
        files = predict_files(
            binning_run["model"], binning_run["fasta"], tmp_path / "new", cluster, 0, 1000, engine="numpy"
        )
    labels = pd.read_csv(files["clusters"], sep="\t", dtype=str)["cluster"]
    n_out = int((labels == "-1").sum())
    assert n_out > 0
    said = [r.getMessage() for r in caplog.records if "embedded" in r.getMessage()]
    assert f"into {labels[labels != '-1'].nunique()} clusters ({n_out} contigs in none)" in said[0]


def test_binning_profiles_of_another_layout_are_refused(binning_run, tmp_path):
    from genomelab.predict.binning import predict_files

    bad = tmp_path / "other.h5"
    shutil.copy(binning_run["profiles"], bad)
    with h5py.File(bad, "a") as h5:
        names = h5["feature_names"].asstr()[:].tolist()
        del h5["feature_names"]
        names[3], names[7] = "k9_AAAA", "k9_CCCC"
        h5.create_dataset("feature_names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
    with pytest.raises(
        InputMismatch, match=r"other.h5: k-mer feature columns differ.*2 differing.*#3: 'k9_AAAA'"
    ):
        predict_files(binning_run["model"], bad, tmp_path / "out", {}, 0, 1000)


def test_binning_depth_of_another_layout_names_the_depth_file(binning_run, tmp_path):
    from genomelab.binning.training import KIND, load_model
    from genomelab.predict.binning import predict_files
    from genomelab.train.export import save_exported

    names = [f"g{g}_c{i}" for g in range(3) for i in range(10)]
    depth = tmp_path / "depth_1sample.tsv"
    depth.write_text(
        "contigName\tcontigLen\ttotalAvgDepth\ts1.bam\ts1.bam-var\n"
        + "".join(f"{n}\t2500\t{i + 1}\t{i + 1}\t1\n" for i, n in enumerate(names))
    )
    model = binning_run["model"]
    with pytest.raises(
        ValueError,
        match=rf"vae.pt was trained with 0 abundance columns, the depth file {re.escape(str(depth))} has 1",
    ):
        predict_files(model, binning_run["profiles"], tmp_path / "out", {}, 0, 1000, depth=depth)
    # A model trained with abundances, given none: says so and which option gives them.
    save_exported(
        tmp_path / "deep.pt", {}, kind=KIND, config={}, ids={"contigs": names}, data_fingerprint="0",
        extra={"n_depth": 2},
    )  # fmt: skip
    with pytest.raises(
        ValueError, match=r"deep.pt was trained with 2 abundance columns, the inputs have none .*--depth"
    ):
        load_model(tmp_path / "deep.pt", 0)


def test_binning_failed_prediction_leaves_no_partial_folder(binning_run, tmp_path, capfd, monkeypatch):
    """A prediction that fails after profiling (a depth table the model was not trained
    with) leaves no half-written --out behind, so the corrected rerun may use the same one;
    another module's model and a missing depth table are refused before any profiling."""
    import genomelab.binning.kmers as kmers
    from genomelab.binning.training import KIND
    from genomelab.train.export import save_exported

    names = [f"g{g}_c{i}" for g in range(3) for i in range(10)]
    depth = tmp_path / "depth.tsv"
    depth.write_text(
        "contigName\tcontigLen\ttotalAvgDepth\ts1.bam\ts1.bam-var\n"
        + "".join(f"{n}\t2500\t{i + 1}\t{i + 1}\t1\n" for i, n in enumerate(names))
    )
    args = ["predict", "binning", "--model", str(binning_run["model"]), "--inputs", str(binning_run["fasta"])]
    out = tmp_path / "new"
    assert main([*args, "--min-length", "1000", "--depth", str(depth), "--out", str(out)]) == 2
    assert "trained with 0 abundance columns" in capfd.readouterr().err
    assert not out.exists()
    # An existing empty folder is emptied again, not removed.
    out.mkdir()
    assert main([*args, "--min-length", "1000", "--depth", str(depth), "--out", str(out)]) == 2
    assert out.is_dir() and not any(out.iterdir())
    assert main([*args, "--min-length", "1000", "--out", str(out)]) == 0
    assert (out / "contig_bins.tsv").is_file()

    def no_profiling(*a, **k):
        raise AssertionError("profiled before the model was checked")

    monkeypatch.setattr(kmers, "write_profiles_h5", no_profiling)
    save_exported(
        tmp_path / "deep.pt", {}, kind=KIND, config={}, ids={"contigs": names}, data_fingerprint="0",
        extra={"n_depth": 2},
    )  # fmt: skip
    save_exported(tmp_path / "other.pt", {}, kind="regulon", config={}, ids={}, data_fingerprint="0")
    fasta = str(binning_run["fasta"])
    for model, message in (
        ("deep.pt", "the inputs have none"),
        ("other.pt", "'regulon' model, not a binning"),
    ):
        bad = ["predict", "binning", "--model", str(tmp_path / model), "--inputs", fasta]
        assert main([*bad, "--out", str(tmp_path / f"out_{model}")]) == 2
        assert message in capfd.readouterr().err
        assert not (tmp_path / f"out_{model}").exists()


def test_binning_predict_rule_on_a_profiles_file_plans_what_it_writes(binning_run, tmp_path):
    """binning.predict.inputs may be a profiles HDF5 (the schema says so): the rule then
    declares latent and clusters only, the files predict_files writes without sequences
    (it declared bins, contig_bins and the profiles copy, and failed with missing outputs),
    and an earlier FASTA prediction's files in its folder are replaced (it failed: folder
    not empty)."""
    import yaml
    from test_workflow import copy_repo, snakemake

    workdir = copy_repo(tmp_path / "repo")
    config = {
        "run": "predict_h5",
        "device": "cpu",
        "binning": {
            "enabled": True,
            "predict": {"inputs": str(binning_run["profiles"]), "model": str(binning_run["model"])},
            "cluster": {"n_neighbors": 5},
        },
    }
    (workdir / "predict_h5.yaml").write_text(yaml.safe_dump(config))
    target = "results/predict_h5/binning/predict/clusters.tsv"
    # What an earlier prediction from the assembly's FASTA left there (not outputs of this
    # job, so Snakemake does not remove them): replaced, not a "folder not empty" failure.
    out = workdir / "results" / "predict_h5" / "binning" / "predict"
    (out / "bins").mkdir(parents=True)
    for name in ("profiles.h5", "contig_bins.tsv", "bin_summary.tsv", "bins/bin_0.fna"):
        (out / name).write_text("from an earlier prediction\n")
    res = snakemake(workdir, target, "--cores", "1", "--configfile", "predict_h5.yaml")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["clusters.tsv", "latent.h5"]
    assert len((out / "clusters.tsv").read_text().splitlines()) == 1 + 30


def test_binning_predict_without_configfile_uses_what_the_model_records(binning_run, tmp_path, capfd):
    """The fixture's model was trained on profiles of contigs >= 1000 bp with seed 3, and
    records both: without --configfile a 1500 bp contig is binned (the schema's 2000 bp
    skipped it), and the rule refuses a config whose length filter contradicts the model."""
    from types import SimpleNamespace

    from genomelab.predict.steps import binning_step
    from genomelab.train.export import load_exported

    extra = load_exported(binning_run["model"]).extra
    assert (extra["min_length"], extra["seed"], extra["n_depth"]) == (1000, 3, 0)
    fasta = tmp_path / "new.fna"
    rng = np.random.default_rng(4)
    records = [(f"long{i}", 2500) for i in range(12)] + [(f"short{i}", 1500) for i in range(3)]
    fasta.write_text("".join(f">{n}\n{''.join(rng.choice(list('ACGT'), size=k))}\n" for n, k in records))
    out = tmp_path / "out"
    args = ["predict", "binning", "--model", str(binning_run["model"]), "--inputs", str(fasta)]
    assert main([*args, "--out", str(out), "--min-bin-bp", "0"]) == 0, capfd.readouterr().err
    binned = pd.read_csv(out / "clusters.tsv", sep="\t")["contig"].tolist()
    assert sorted(binned) == sorted(n for n, _ in records)
    smk = SimpleNamespace(
        rule="binning_predict",
        input=SimpleNamespace(model=str(binning_run["model"]), inputs=str(fasta), get=lambda k: None),
        output=SimpleNamespace(clusters=str(tmp_path / "rule" / "clusters.tsv")),
        params=SimpleNamespace(
            features=json.dumps({"min_length": 2000}),
            cluster=json.dumps({}),
            min_bin_bp=0,
            seed=0,
            device="cpu",
        ),
    )
    with pytest.raises(
        ValueError,
        match=r"the run's config contradicts the model .*vae.pt: binning.features.min_length is 2000, the model's 1000",
    ):
        binning_step(smk)


@pytest.mark.parametrize("module", ["tissue", "regulon", "assoc"])
def test_model_given_twice_names_both_files(module):
    """--model a.pt --model b.pt is two files to average (argparse kept the last alone)."""
    from genomelab.cli import build_parser

    args = build_parser().parse_args(
        ["predict", module, "--model", "a.pt", "--model", "b.pt", "c.pt", "--inputs", "x", "--out", "o"]
    )
    assert args.model == ["a.pt", "b.pt", "c.pt"]
