"""genomelab predict tissue: a saved model (and ensemble) classifies as it did in training."""

from __future__ import annotations

import json
import re

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from genomelab.cli import main
from genomelab.io.features import read_features
from genomelab.io.ids import InputMismatch
from genomelab.io.tables import write_split_table
from genomelab.predict.tissue import ENSEMBLE, TissueInputs, TissuePredictor, predict_files
from genomelab.tissue.calibration import apply_temperature
from genomelab.tissue.features import extract_features_from_sheet
from genomelab.tissue.metrics import classification_metrics
from genomelab.tissue.simulate import SimulationConfig, simulate_dataset
from genomelab.tissue.task import TaskConfig, load_task, make_splits
from genomelab.tissue.training import combine_members, train_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TRAIN = {"max_epochs": 4, "batch_size": 8, "lr": 0.005, "patience": 4}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two MLP members and their ensemble, trained by the tissue module on a tiny task."""
    root = tmp_path_factory.mktemp("tissue_predict")
    cfg = SimulationConfig(
        tissues=["Blood", "Liver", "Brain"],
        n_subtypes=1,
        samples_per_subtype=6,
        n_regions=120,
        marker_fraction=0.1,
        coverage=1.0,
        sample_sd=0.4,
        seed=2,
    )
    sheet = simulate_dataset(cfg, root / "sim")
    h5 = extract_features_from_sheet(sheet, root / "features.h5")
    write_split_table(make_splits(h5, TaskConfig(), seed=0), root / "splits.tsv")
    data = load_task(h5, root / "splits.tsv")
    dirs = [root / "members" / str(i) for i in range(2)]
    for i, d in enumerate(dirs):
        train_model("mlp", data, {"hidden": [16]}, TRAIN, root / "state" / str(i), d, "cpu", seed=i)
    files = {n: [d / n for d in dirs] for n in ("model.pt", "metrics.json", "diagnostics.json")}
    combine_members(
        "mlp", data, files["model.pt"], files["metrics.json"], files["diagnostics.json"], root / "ens"
    )
    return {"root": root, "sheet": sheet, "h5": h5, "data": data, "members": dirs, "ens": root / "ens"}


def _test_rows(pred, data) -> np.ndarray:
    order = {s: i for i, s in enumerate(pred.samples)}
    return np.asarray([order[s] for s in data.samples[data.index("test")]])


def test_saved_models_predict_what_training_measured(trained, tmp_path):
    data = trained["data"]
    y_test = data.y[data.index("test")]
    for model_dir, name in [(trained["ens"], ENSEMBLE), (trained["members"][1], "model")]:
        pred = predict_files(
            model_dir / "model.pt", trained["h5"], tmp_path / "p.tsv", tmp_path / "p.json", 0.5, 0.25
        )
        rows = _test_rows(pred, data)
        proba = pred.proba[name if name == ENSEMBLE else "model"][rows]
        saved = json.loads((model_dir / "metrics.json").read_text())
        measured = classification_metrics(y_test, proba, data.classes)
        # float32 matrix products of other batch shapes round differently in the 7th digit.
        for key in ("accuracy", "nll", "ece", "macro_f1"):
            assert measured[key] == pytest.approx(saved["test"][key], rel=1e-6, abs=1e-9), key
        assert proba.argmax(1).tolist() == saved["predictions"]["pred"]
    table = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    assert set(table["model"]) == {"model", ENSEMBLE} or set(table["model"]) == {"model"}


def test_ensemble_reports_members_and_confidence(trained):
    predictor = TissuePredictor.load(trained["ens"] / "model.pt")
    assert list(predictor.members) == ["member0", "member1"]
    feats = read_features(trained["h5"])
    inputs = TissueInputs(feats["samples"], feats["regions"], feats["means"], feats["coverage"], "h5")
    pred = predictor.predict(inputs, 0.5, 0.25)
    # The ensemble is the members' mean, scaled by the temperature fitted when it was made.
    assert predictor.temperature != 1.0
    mean = (pred.proba["member0"] + pred.proba["member1"]) / 2
    np.testing.assert_allclose(pred.proba[ENSEMBLE], apply_temperature(mean, predictor.temperature))
    np.testing.assert_allclose(pred.confidence, pred.proba[ENSEMBLE].max(1))
    record = pred.records()[0]
    assert set(record["models"]) == {"member0", "member1", ENSEMBLE} and not record["flagged"]


def test_regions_join_by_id_and_sheet_input_agrees(trained, tmp_path):
    predictor = TissuePredictor.load(trained["ens"] / "model.pt")
    feats = read_features(trained["h5"])
    base = predictor.predict(
        TissueInputs(feats["samples"], feats["regions"], feats["means"], feats["coverage"], "h5"), 0.5, 0.25
    )
    perm = np.random.default_rng(0).permutation(len(feats["regions"]))
    shuffled = TissueInputs(
        feats["samples"], feats["regions"][perm], feats["means"][:, perm], feats["coverage"][:, perm], "perm"
    )
    np.testing.assert_array_equal(
        predictor.predict(shuffled, 0.5, 0.25).proba[ENSEMBLE], base.proba[ENSEMBLE]
    )
    from_sheet = predict_files(
        trained["ens"] / "model.pt", trained["sheet"], tmp_path / "s.tsv", tmp_path / "s.json", 0.5, 0.25
    )
    np.testing.assert_allclose(from_sheet.proba[ENSEMBLE], base.proba[ENSEMBLE], atol=1e-12)
    # New samples have no known tissue: a sheet without the column predicts the same.
    sheet = pd.read_csv(trained["sheet"], sep="\t")
    sheet["file"] = [str(trained["sheet"].parent / f) for f in sheet["file"]]
    unlabelled = tmp_path / "unlabelled.tsv"
    sheet[["sample", "file"]].to_csv(unlabelled, sep="\t", index=False)
    from_unlabelled = predict_files(
        trained["ens"] / "model.pt", unlabelled, tmp_path / "u.tsv", tmp_path / "u.json", 0.5, 0.25
    )
    np.testing.assert_allclose(from_unlabelled.proba[ENSEMBLE], base.proba[ENSEMBLE], atol=1e-12)
    # A sample missing most regions is flagged, with its count.
    sparse = TissueInputs(
        feats["samples"][:1],
        feats["regions"][:30],
        feats["means"][:1, :30],
        feats["coverage"][:1, :30],
        "few",
    )
    pred = predictor.predict(sparse, 0.2, 0.5)
    assert pred.flagged.tolist() == [True] and pred.match.n_matched == 30 and pred.match.n_only_model == 90


def test_other_regions_are_refused_with_counts(trained, tmp_path):
    predictor = TissuePredictor.load(trained["ens"] / "model.pt")
    feats = read_features(trained["h5"])
    regions = feats["regions"].copy()
    regions[10:] = [f"chrX:{i}" for i in range(len(regions) - 10)]
    inputs = TissueInputs(feats["samples"], regions, feats["means"], feats["coverage"], "other.h5")
    with pytest.raises(
        InputMismatch,
        match=r"other.h5: 10 of the model's 120 regions found.*110 of the model's regions are absent.*110 input regions are unknown.*chrX:0",
    ):
        predictor.predict(inputs, 0.5, 0.25)


def test_cli_writes_a_new_folder_only(trained, tmp_path, capfd):
    out = tmp_path / "pred"
    args = [
        "predict",
        "tissue",
        "--model",
        str(trained["ens"] / "model.pt"),
        "--inputs",
        str(trained["h5"]),
        "--out",
        str(out),
    ]
    assert main(args) == 0
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["regions"]["n_matched"] == 120 and summary["n_samples"] == len(
        read_features(trained["h5"])["samples"]
    )
    capfd.readouterr()
    assert main(args) == 2 and "not empty" in capfd.readouterr().err


def test_region_level_model_is_refused(trained, tmp_path):
    data = trained["data"]
    train_model("region", data, {}, {**TRAIN, "max_epochs": 1}, tmp_path / "st", tmp_path / "region", "cpu")
    with pytest.raises(ValueError, match="classifies single regions"):
        TissuePredictor.load(tmp_path / "region" / "model.pt")


def test_features_file_with_other_layout_is_named(tmp_path):
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as h5:
        h5["x"] = [1]
    with pytest.raises(Exception, match="bad.h5"):
        from genomelab.predict.tissue import read_inputs

        read_inputs(bad)


def _attention_members(read_likelihood: bool, n_regions: int, n_classes: int, seed: int = 0):
    """Three small attention members with every weight and BatchNorm statistic moved off
    its initial value (pooled_proj starts at zero), beta fits of realistic concentration
    shared by two members (as an ensemble's are) and different in the third."""
    from genomelab.config import schema_defaults
    from genomelab.tissue.models import build_model

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    cfg = {**schema_defaults("tissue.attention"), "hidden": [24, 12], "dim": 8, "gate_hidden": 16}
    cfg["read_likelihood"] = read_likelihood

    def beta_fit():
        m = rng.uniform(0.05, 0.95, (n_classes, n_regions))
        phi = np.exp(rng.uniform(np.log(0.5), np.log(1e3), (n_classes, n_regions)))
        return (m * phi).astype(np.float32), ((1 - m) * phi).astype(np.float32)

    shared = beta_fit()
    members = []
    for i in range(3):
        mu = rng.uniform(0.2, 0.8, n_regions).astype(np.float32)
        sd = rng.uniform(0.05, 0.3, n_regions).astype(np.float32)
        model = build_model(
            "attention", cfg, n_regions, n_classes, mu, sd, 150, shared if i < 2 else beta_fit()
        )
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.2 * torch.randn_like(p))
            for mod in model.modules():
                if isinstance(mod, torch.nn.BatchNorm1d):
                    mod.running_mean.normal_(0, 0.1)
                    mod.running_var.uniform_(0.5, 2.0)
            if model.reads is not None:
                model.reads.gate.copy_(torch.tensor([0.02, -0.01, -0.02]))
        members.append(model.eval())
    return members


def _queries(n_regions: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Full and sparse single-sample queries: full at one read (a request without coverage),
    full at 1-3 reads, 60% observed (every region, unobserved ones masked) with some finite
    means at zero coverage, 2% observed at 1-30 reads (observed regions gathered), one
    region, none, 20% observed (gathered, region-mean projection over all regions)."""
    means = np.tile(rng.uniform(0, 1, n_regions).astype(np.float32), (7, 1))
    cov = np.ones((7, n_regions), np.float32)
    cov[1] = rng.integers(1, 4, n_regions)
    means[2, rng.random(n_regions) < 0.4] = np.nan
    cov[2] = np.where(rng.random(n_regions) < 0.2, 0, rng.integers(1, 5, n_regions))
    keep = rng.random(n_regions) < 0.02
    keep[:2] = True
    means[3, ~keep] = np.nan
    cov[3] = np.where(keep, rng.integers(1, 30, n_regions), 0)
    means[4, 1:] = np.nan
    means[5] = np.nan
    cov[5] = 0
    means[0, :3] = [0.0, 1.0, 0.5]
    means[6, rng.random(n_regions) >= 0.2] = np.nan
    return means, cov


@pytest.mark.parametrize("read_likelihood", [True, False])
def test_attention_query_path_equals_the_members_forward(read_likelihood, tmp_path, monkeypatch):
    """The per-query path of an attention ensemble (genomelab.tissue.inference, what predict
    and serve use on the CPU) gives each member's probabilities as its own eval forward does,
    on full and sparse queries (NaN means, zero coverage, one region, none), with and
    without the read likelihood; TissuePredictor uses it for an exported ensemble."""
    import dataclasses

    from genomelab.tissue.inference import AttentionEnsemble
    from genomelab.tissue.training import predict_proba
    from genomelab.train.export import save_exported

    n_regions, n_classes = 300, 4
    # Steps of 64 regions: several per query, the last one partial.
    monkeypatch.setattr(AttentionEnsemble, "CHUNK", 64)
    members = _attention_members(read_likelihood, n_regions, n_classes)
    means, cov = _queries(n_regions, np.random.default_rng(1))
    fast = AttentionEnsemble.build(members)
    assert fast is not None and len(fast.reads) == (2 if read_likelihood else 0)
    got = fast.proba(torch.as_tensor(means), torch.as_tensor(cov)).numpy()
    with torch.no_grad():
        for m, p in zip(members, got, strict=True):
            ref = torch.softmax(m(torch.as_tensor(means), torch.as_tensor(cov)), -1).numpy()
            np.testing.assert_allclose(p, ref, rtol=0, atol=1e-5)
            for s in range(len(means)):  # one sample per query, as the server sends them
                one = fast.proba(torch.as_tensor(means[s : s + 1]), torch.as_tensor(cov[s : s + 1]))
                np.testing.assert_allclose(one.numpy()[members.index(m), 0], ref[s], rtol=0, atol=1e-5)

    path = tmp_path / "attention.pt"
    cfg = dataclasses.asdict(members[0].cfg)
    save_exported(
        path,
        torch.nn.ModuleList(members),
        kind="attention-ensemble",
        config=cfg,
        ids={"classes": [f"c{i}" for i in range(n_classes)], "regions": [f"r{i}" for i in range(n_regions)]},
        data_fingerprint="0",
        extra={"seeds": [0, 1, 2], "n_positions": 150},
    )
    predictor = TissuePredictor.load(path)
    assert predictor.fast is not None
    proba = predictor.predict_arrays(means, cov)
    ds = torch.utils.data.TensorDataset(torch.as_tensor(means), torch.as_tensor(cov), torch.zeros(len(means)))
    for name, m in predictor.members.items():
        np.testing.assert_allclose(proba[name], predict_proba(m, ds, torch.device("cpu")), rtol=0, atol=1e-5)
    expected = apply_temperature(np.mean([proba[n] for n in predictor.members], 0), predictor.temperature)
    np.testing.assert_allclose(proba[ENSEMBLE], expected, rtol=0, atol=1e-12)


def test_masked_query_path_equals_the_members_forward(tmp_path, monkeypatch):
    """The masked ensemble's query path (features once, the members' weights stacked: what
    predict and serve use on the CPU) gives each member's probabilities as its own eval
    forward does, on full and sparse queries, in steps of samples; members that standardise
    differently take their own forward."""
    import dataclasses

    from genomelab.config import schema_defaults
    from genomelab.tissue.inference import MaskedEnsemble
    from genomelab.tissue.models import CONFIGS, build_model
    from genomelab.tissue.training import predict_proba
    from genomelab.train.export import save_exported

    n_regions, n_classes = 300, 4
    rng = np.random.default_rng(0)
    mu, sd = (
        rng.uniform(0.2, 0.8, n_regions).astype(np.float32),
        rng.uniform(0.1, 0.3, n_regions).astype(np.float32),
    )
    cfg = CONFIGS["masked"].from_dict(schema_defaults("tissue.masked"))
    members = []
    for seed in range(3):
        torch.manual_seed(seed)
        m = build_model("masked", cfg, n_regions, n_classes, mu, sd, 150)
        with torch.no_grad():  # trained weights: not the zeros the model starts from
            m.linear.weight.normal_(0, 0.3)
            m.linear.bias.normal_(0, 0.3)
        members.append(m.eval())
    means, cov = _queries(n_regions, np.random.default_rng(1))
    monkeypatch.setattr(MaskedEnsemble, "CHUNK", 3)  # steps of 3 samples, the last partial
    fast = MaskedEnsemble.build(members)
    assert fast is not None
    got = fast.proba(torch.as_tensor(means), torch.as_tensor(cov)).numpy()
    with torch.no_grad():
        for m, p in zip(members, got, strict=True):
            ref = torch.softmax(m(torch.as_tensor(means), torch.as_tensor(cov)), -1).numpy()
            np.testing.assert_allclose(p, ref, rtol=0, atol=1e-6)
    assert not np.allclose(got[0], got[1])  # the members differ, and each keeps its own
    other = build_model("masked", cfg, n_regions, n_classes, mu, 2 * sd, 150).eval()
    assert MaskedEnsemble.build([*members, other]) is None

    path = tmp_path / "masked.pt"
    save_exported(
        path,
        torch.nn.ModuleList(members),
        kind="masked-ensemble",
        config=dataclasses.asdict(cfg),
        ids={"classes": [f"c{i}" for i in range(n_classes)], "regions": [f"r{i}" for i in range(n_regions)]},
        data_fingerprint="0",
        extra={"seeds": [0, 1, 2], "n_positions": 150},
    )
    predictor = TissuePredictor.load(path)
    assert isinstance(predictor.fast, MaskedEnsemble)
    proba = predictor.predict_arrays(means, cov)
    ds = torch.utils.data.TensorDataset(torch.as_tensor(means), torch.as_tensor(cov), torch.zeros(len(means)))
    for name, m in predictor.members.items():
        np.testing.assert_allclose(proba[name], predict_proba(m, ds, torch.device("cpu")), rtol=0, atol=1e-6)


def test_model_of_another_module_is_named_not_called_the_ablation(tmp_path):
    from test_train_export import save_model_of_kind

    path = tmp_path / "deconv.pt"
    save_model_of_kind(path, "deconv", {"regions": ["r1", "r2"]})
    with pytest.raises(ValueError, match=r"deconv.pt holds a 'deconv' model, expected a tissue model") as err:
        TissuePredictor.load(path)
    assert "single regions" not in str(err.value) and "genomelab predict deconv" in str(err.value)


def test_tables_that_are_not_inputs_are_named(tmp_path):
    from genomelab.predict.tissue import read_inputs

    nofile = tmp_path / "samples_nofile.tsv"
    nofile.write_text("sample\ttissue\ns1\tBlood\n")
    with pytest.raises(ValueError, match=r"samples_nofile.tsv: a sample sheet needs .*lacks \['file'\]"):
        read_inputs(nofile)
    commas = tmp_path / "sheet.csv"
    commas.write_text("sample,file,tissue\ns1,s1.npz,Blood\n")
    with pytest.raises(ValueError, match=r"sheet.csv: a sample sheet must be tab-separated"):
        read_inputs(commas)
    region_means = tmp_path / "means.csv"
    region_means.write_text("region,s1,s2\nr1,0.5,0.2\n")
    with pytest.raises(ValueError, match=r"means.csv: a table with columns .* is not an accepted") as err:
        read_inputs(region_means)
    assert "HDF5" in str(err.value) and "NPZ" in str(err.value) and "sample sheet" in str(err.value)
    junk = tmp_path / "x.h5"
    junk.write_text("not hdf5")
    with pytest.raises(ValueError, match=r"x.h5: neither an NPZ, an HDF5 file nor a sample sheet"):
        read_inputs(junk)


def test_stacked_hdf5_predicts_like_its_samples_npz(trained, tmp_path):
    """Array samples converted to the training input's layout (a stacked methylation HDF5,
    tissue_convert_tcga.py's output) are classified as the same samples' NPZ files."""
    from genomelab.io.methylation import load_npz_sample

    sheet = pd.read_csv(trained["sheet"], sep="\t").head(5)
    arrays = [load_npz_sample(trained["sheet"].parent / f, 150) for f in sheet["file"]]
    stacked = tmp_path / "new_arrays.h5"
    with h5py.File(stacked, "w") as h5:
        h5["methylation"] = np.stack([m for m, _ in arrays])
        h5["region_ids"] = np.asarray(arrays[0][1], dtype="S")
        h5["samples"] = sheet["sample"].to_numpy(dtype="S")
        h5["tissue"] = sheet["tissue"].to_numpy(dtype="S")
    model = trained["ens"] / "model.pt"
    from_h5 = predict_files(model, stacked, tmp_path / "h.tsv", tmp_path / "h.json", 0.5, 0.25)
    from_sheet = predict_files(model, trained["sheet"], tmp_path / "s.tsv", tmp_path / "s.json", 0.5, 0.25)
    assert from_h5.samples == sheet["sample"].tolist()
    np.testing.assert_allclose(from_h5.proba[ENSEMBLE], from_sheet.proba[ENSEMBLE][:5], atol=1e-12)


def test_raw_calls_and_ingest_sheets_say_to_run_ingest(tmp_path):
    """One sample's Bismark or bedMethyl file, or the ingest sheet listing them, given to
    predict: the error names the file and says to ingest it first (not "a deconv input")."""
    from genomelab.predict.tissue import read_inputs

    cov = tmp_path / "s1.bismark.cov"
    cov.write_text("chr1\t1001\t1001\t80.0\t4\t1\n")
    bed = tmp_path / "s2.bed"
    bed.write_text("chr1\t1000\t1001\t.\t5\t+\t1000\t1001\t0,0,0\t5\t80\n")
    for path, fmt in ((cov, "bismark_cov"), (bed, "bedmethyl")):
        with pytest.raises(ValueError, match=rf"{path.name}: a {fmt} file .*run the ingest module") as err:
            read_inputs(path)
        assert "deconv" not in str(err.value)
    sheet = tmp_path / "ingest_samples.tsv"
    sheet.write_text("sample\tpath\ttissue\ns1\ts1.bismark.cov\tGlioma\n")
    with pytest.raises(
        ValueError, match=r"ingest_samples.tsv: an ingest sample sheet .*run the ingest module"
    ):
        read_inputs(sheet)


def test_regions_with_coverage_0_are_uncovered(trained, tmp_path):
    predictor = TissuePredictor.load(trained["ens"] / "model.pt")
    feats = read_features(trained["h5"])
    # Every region covered to start with: a value and 5 calls.
    means = np.nan_to_num(feats["means"][:2], nan=0.5)
    coverage = np.full(means.shape, 5, np.float32)
    coverage[0, :100] = 0  # a value with no calls behind it: the trial's t_cov0.h5
    zero = predictor.predict(
        TissueInputs(feats["samples"][:2], feats["regions"], means, coverage, "c0"), 0.5, 0.25
    )
    blank = means.copy()
    blank[0, :100] = np.nan
    expected = predictor.predict(
        TissueInputs(feats["samples"][:2], feats["regions"], blank, coverage, "nan"), 0.5, 0.25
    )
    assert zero.n_covered.tolist() == [20, 120] and zero.flagged.tolist() == [True, False]
    for name in expected.proba:
        np.testing.assert_array_equal(zero.proba[name], expected.proba[name])
    assert np.isfinite(means).all()  # the caller's array is left as it was
    # The file path: an HDF5 whose coverage is 0 where the means are kept.
    h5 = tmp_path / "cov0.h5"
    with h5py.File(trained["h5"]) as src, h5py.File(h5, "w") as dst:
        for key in src:
            src.copy(key, dst)
        dst["means"][...] = np.nan_to_num(dst["means"][()], nan=0.5)
        dst["coverage"][...] = 0
    pred = predict_files(trained["ens"] / "model.pt", h5, tmp_path / "p.tsv", tmp_path / "p.json", 0.5, 0.25)
    assert (pred.n_covered == 0).all() and pred.flagged.all()


def test_calls_below_the_runs_threshold_are_not_classifiable(trained, tmp_path):
    """The run's tissue.calibration.threshold travels with the ensemble: predict marks the
    samples training marked (test split), a flagged sample is never classifiable, and the
    threshold can be overridden (CLI and call) or is refused out of [0, 1)."""
    from genomelab.tissue.calibration import CalibrationConfig

    data, dirs = trained["data"], trained["members"]
    files = {n: [d / n for d in dirs] for n in ("model.pt", "metrics.json", "diagnostics.json")}
    base = TissuePredictor.load(trained["ens"] / "model.pt")
    feats = read_features(trained["h5"])
    inputs = TissueInputs(feats["samples"], feats["regions"], feats["means"], feats["coverage"], "h5")
    assert base.threshold == 0.0 and base.predict(inputs, 0.5, 0.25).classifiable.all()
    # A threshold between the ensemble's confidences, so that both kinds of call occur.
    threshold = float(np.median(base.predict(inputs, 0.5, 0.25).confidence))
    out = tmp_path / "ens"
    combine_members(
        "mlp", data, files["model.pt"], files["metrics.json"], files["diagnostics.json"], out,
        CalibrationConfig(threshold=threshold),
    )  # fmt: skip
    predictor = TissuePredictor.load(out / "model.pt")
    assert predictor.threshold == pytest.approx(threshold)
    pred = predictor.predict(inputs, 0.5, 0.25)
    assert 0 < pred.classifiable.sum() < len(pred.samples)
    np.testing.assert_array_equal(pred.classifiable, pred.confidence >= threshold)
    saved = json.loads((out / "metrics.json").read_text())["predictions"]
    assert pred.classifiable[_test_rows(pred, data)].tolist() == saved["classifiable"]
    # Overridden: 0 classifies every sample; a sample covering too few regions never is.
    assert predictor.predict(inputs, 0.5, 0.25, threshold=0.0).classifiable.all()
    sparse = TissueInputs(
        inputs.samples, inputs.regions, np.where(np.arange(120) < 10, inputs.means, np.nan),
        inputs.coverage, "h5",
    )  # fmt: skip
    low = predictor.predict(sparse, 0.5, 0.25, threshold=0.0)
    assert low.flagged.all() and not low.classifiable.any()
    with pytest.raises(ValueError, match="threshold: 1.0 is not in"):
        predictor.predict(inputs, 0.5, 0.25, threshold=1.0)
    # Written: the ensemble rows say it, the members' rows leave it empty; the CLI overrides.
    args = ["predict", "tissue", "--model", str(out / "model.pt"), "--inputs", str(trained["h5"])]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--threshold", "0"]) == 0
    table = pd.read_csv(tmp_path / "a" / "predictions.tsv", sep="\t")
    ens = table[table["model"] == ENSEMBLE].set_index("sample").loc[pred.samples]
    assert ens["classifiable"].tolist() == pred.classifiable.tolist()
    assert table.loc[table["model"] != ENSEMBLE, "classifiable"].isna().all()
    summary = {k: json.loads((tmp_path / k / "predictions.json").read_text()) for k in "ab"}
    assert summary["a"]["n_not_classifiable"] == int((~pred.classifiable).sum())
    assert summary["b"]["threshold"] == 0 and summary["b"]["n_not_classifiable"] == 0


def test_one_members_file_says_it_is_not_calibrated(trained, tmp_path, caplog):
    """One member's model.pt (docs: it works too) has neither the run's temperature nor its
    threshold: predictions.json says so (calibrated false) and a warning names the file."""
    sheet = trained["sheet"]
    member = trained["members"][0] / "model.pt"
    with caplog.at_level("WARNING", logger="genomelab.predict.tissue"):
        pred = predict_files(member, sheet, tmp_path / "m.tsv", tmp_path / "m.json", 0.5, 0.25)
    assert not pred.calibrated and json.loads((tmp_path / "m.json").read_text())["calibrated"] is False
    assert f"{member} is one network without its run's calibration" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="genomelab.predict.tissue"):
        ens = predict_files(
            trained["ens"] / "model.pt", sheet, tmp_path / "e.tsv", tmp_path / "e.json", 0.5, 0.25
        )
    assert ens.calibrated and json.loads((tmp_path / "e.json").read_text())["calibrated"] is True
    assert "without its run's calibration" not in caplog.text


def test_a_sheet_of_npz_files_over_different_regions_joins_each(trained, tmp_path):
    """Samples ingested over other region sets (a subset BED, another panel) in one sheet: each
    is joined to the model's regions as its NPZ alone is (it was an error, "all samples must
    share one region set"); a file repeating a region ID is named."""
    model = trained["ens"] / "model.pt"
    sheet = pd.read_csv(trained["sheet"], sep="\t").head(2)
    full = trained["sheet"].parent / sheet["file"][0]
    data = dict(np.load(full))
    n = len(data["region_ids"])
    keep = np.r_[n // 2 : n, 0:10]  # another order and a subset: 70 of 120 regions
    part = {k: (v[keep] if v.ndim and len(v) == n else v) for k, v in data.items()}
    np.savez(tmp_path / "part.npz", **part)
    other = trained["sheet"].parent / sheet["file"][1]
    mixed = tmp_path / "mixed.tsv"
    mixed.write_text(f"sample\tfile\npart\t{tmp_path / 'part.npz'}\nwhole\t{other}\n")
    pred = predict_files(model, mixed, tmp_path / "m.tsv", tmp_path / "m.json", 0.5, 0.25)
    alone = [
        predict_files(model, f, tmp_path / f"{i}.tsv", tmp_path / f"{i}.json", 0.5, 0.25)
        for i, f in enumerate((tmp_path / "part.npz", other))
    ]
    for row, single in enumerate(alone):
        for name in pred.proba:
            np.testing.assert_allclose(pred.proba[name][row], single.proba[name][0], atol=1e-6)
        assert pred.n_covered[row] == single.n_covered[0]
    assert pred.match.n_matched == n
    dup = dict(part, region_ids=np.r_[part["region_ids"][:-1], part["region_ids"][:1]])
    np.savez(tmp_path / "dup.npz", **dup)
    mixed.write_text(f"sample\tfile\nwhole\t{other}\ndup\t{tmp_path / 'dup.npz'}\n")
    with pytest.raises(InputMismatch, match=r"dup.npz: 1 duplicated region ID"):
        predict_files(model, mixed, tmp_path / "d.tsv", tmp_path / "d.json", 0.5, 0.25)


def test_regions_named_by_coordinates_say_to_name_the_bed(trained):
    """Sequencing samples ingested over a BED without names (IDs chrom:start-end) for a model
    whose regions have names: the refusal says why and what to do; IDs of the same naming get
    only the counts."""
    from genomelab.predict.tissue import COORDINATE_ID, naming_hint

    predictor = TissuePredictor.load(trained["ens"] / "model.pt")
    feats = read_features(trained["h5"])
    model_ids = np.asarray([f"cg{i:08d}" for i in range(len(feats["regions"]))])
    coords = np.asarray([f"chr1:{1000 * i}-{1000 * i + 150}" for i in range(len(model_ids))])
    hint = naming_hint(model_ids, coords)
    assert "named by coordinates" in hint and "cg00000000" in hint and "4th column" in hint
    assert "named by index" in naming_hint(model_ids, np.asarray([f"region_{i}" for i in range(5)]))
    assert naming_hint(coords, coords[::-1]) == "" and naming_hint(model_ids, model_ids[:3]) == ""
    # The fixture's model names its regions by coordinates; NPZ files without region_ids
    # (region_<i>) are refused with the hint through the predictor.
    assert COORDINATE_ID.match(str(predictor.regions[0]))
    index_ids = np.asarray([f"region_{i}" for i in range(len(model_ids))])
    inputs = TissueInputs(feats["samples"], index_ids, feats["means"], feats["coverage"], "seq.h5")
    with pytest.raises(InputMismatch, match=r"seq.h5: 0 of the model's 120 regions found.*named by index"):
        predictor.predict(inputs, 0.5, 0.25)


def test_the_predict_rule_takes_tissue_predict_threshold(trained, tmp_path):
    """tissue.predict.threshold reaches the tissue_predict step (the rule had no way to set
    one but retraining); null keeps the model's."""
    from types import SimpleNamespace

    from genomelab.config import schema_default
    from genomelab.predict.steps import tissue_step

    assert schema_default("tissue.predict.threshold") is None
    for name, threshold in (("model", None), ("set", 0.9)):
        section = {"min_region_match": 0.5, "min_covered": 0.25, "threshold": threshold}
        out = tmp_path / name
        smk = SimpleNamespace(
            rule="tissue_predict",
            input=SimpleNamespace(model=str(trained["ens"] / "model.pt"), inputs=str(trained["sheet"])),
            output=SimpleNamespace(tsv=str(out / "p.tsv"), json=str(out / "p.json")),
            params=SimpleNamespace(predict=json.dumps(section), device="cpu"),
        )
        tissue_step(smk)
        assert json.loads((out / "p.json").read_text())["threshold"] == (threshold or 0.0)


def test_too_few_regions_name_the_option_of_each_path(trained, tmp_path, capfd):
    """A sample sharing 10 of the model's 120 regions (need 50%) is refused naming what
    relaxes the check where the user is: --min-region-match for genomelab predict, the
    config key for the tissue_predict rule, min_region_match for a serve request."""
    from types import SimpleNamespace

    from genomelab.io.ids import TooFewMatched
    from genomelab.predict.steps import tissue_step
    from genomelab.serve.app import create_app
    from test_serve import serving

    other = tmp_path / "other.h5"
    other.write_bytes(trained["h5"].read_bytes())
    with h5py.File(other, "r+") as h5:
        regions = h5["regions"].asstr()[:]
        regions[10:] = [f"chrX:{i}" for i in range(len(regions) - 10)]
        del h5["regions"]
        h5.create_dataset("regions", data=regions.astype(object), dtype=h5py.string_dtype())
    model = str(trained["ens"] / "model.pt")
    args = ["predict", "tissue", "--model", model, "--inputs", str(other), "--out", str(tmp_path / "p")]
    assert main(args) == 2
    err = capfd.readouterr().err
    assert "10 of the model's 120 regions found" in err
    assert "set --min-region-match to 0.083 or lower (it is 0.5)" in err
    assert main([*args, "--min-region-match", "0.083"]) == 0  # the value it gives works
    smk = SimpleNamespace(
        rule="tissue_predict",
        input=SimpleNamespace(model=model, inputs=str(other)),
        output=SimpleNamespace(tsv=str(tmp_path / "r.tsv"), json=str(tmp_path / "r.json")),
        params=SimpleNamespace(
            predict=json.dumps({"min_region_match": 0.5, "min_covered": 0.25, "threshold": None}),
            device="cpu",
        ),
    )
    with pytest.raises(
        TooFewMatched, match=r"set tissue.predict.min_region_match in the run's config to 0.083"
    ):
        tissue_step(smk)
    feats = read_features(other)
    sample = {"sample": "s", "means": np.nan_to_num(feats["means"][0], nan=0.5).tolist()}
    body = {"samples": [{**sample, "regions": feats["regions"].tolist()}]}
    with serving(create_app(model)) as client:
        reply = client.post("/predict", json=body)
    assert reply.status_code == 422
    (detail,) = reply.json()["detail"]
    assert detail["loc"] == ["body", "samples", 0, "regions"]
    assert "set min_region_match in the request to 0.083 or lower (it is 0.5)" in detail["msg"]
    assert "--min-region-match" not in detail["msg"]


def test_a_model_exported_with_a_repeated_region_loads_with_a_warning(trained, tmp_path, caplog):
    """A model exported before training refused repeated region IDs still predicts (each copy
    of the region gets the input's value), and loading it says so, naming the file and count."""
    from genomelab.predict.tissue import TissuePredictor
    from genomelab.train.export import load_exported, save_exported

    src = trained["ens"] / "model.pt"
    old = load_exported(src)
    regions = list(old.ids["regions"])
    ids = dict(old.ids, regions=regions[:-1] + regions[:1])  # the last region replaced by the first
    path = tmp_path / "old.pt"
    save_exported(
        path,
        old.weights,
        kind=old.kind,
        config=old.config,
        ids=ids,
        data_fingerprint=old.data_fingerprint,
        extra=old.extra,
    )
    with caplog.at_level("WARNING", logger="genomelab.predict.tissue"):
        pred = TissuePredictor.load(path)
    assert f"{path} lists 1 region ID(s) more than once" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="genomelab.predict.tissue"):
        TissuePredictor.load(src)
    assert "more than once" not in caplog.text
    out = predict_files(path, trained["sheet"], tmp_path / "o.tsv", tmp_path / "o.json", 0.5, 0.25)
    assert np.isfinite(out.proba[next(iter(out.proba))]).all() and pred.region_index.ids[-1] == regions[0]


def _ensemble_of(trained, members: list[int], out, threshold: float = 0.0):
    """The ensemble model.pt of the fixture's ``members``, calibrated on the validation split
    (another run's fold stands in: same regions and classes, its own temperature)."""
    from genomelab.tissue.calibration import CalibrationConfig

    dirs = [trained["members"][i] for i in members]
    files = {n: [d / n for d in dirs] for n in ("model.pt", "metrics.json", "diagnostics.json")}
    combine_members(
        "mlp", trained["data"], files["model.pt"], files["metrics.json"], files["diagnostics.json"], out,
        CalibrationConfig(threshold=threshold),
    )  # fmt: skip
    return out / "model.pt"


def test_several_model_files_average_their_calibrated_probabilities(trained, tmp_path):
    """tissue.predict.model as a list (and the K folds' models of a cross-validated run): the
    averaged probabilities are the mean of each file's calibrated ensemble probabilities, the
    call, confidence and threshold apply to that mean, and the outputs name the files. A list
    of one file writes exactly what the file alone writes."""
    a, b = trained["ens"] / "model.pt", _ensemble_of(trained, [1], tmp_path / "one")
    feats = read_features(trained["h5"])
    inputs = TissueInputs(feats["samples"], feats["regions"], feats["means"], feats["coverage"], "h5")
    alone = [TissuePredictor.load(m).predict(inputs, 0.5, 0.25).proba[ENSEMBLE] for m in (a, b)]
    assert not np.allclose(alone[0], alone[1])  # two models that disagree somewhere
    pred = predict_files([a, b], trained["h5"], tmp_path / "p.tsv", tmp_path / "p.json", 0.5, 0.25)
    np.testing.assert_allclose(pred.proba[ENSEMBLE], (alone[0] + alone[1]) / 2, rtol=0, atol=1e-12)
    for path, proba in zip((a, b), alone, strict=True):
        np.testing.assert_allclose(pred.proba[str(path)], proba, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(pred.confidence, pred.proba[ENSEMBLE].max(1))
    assert pred.calibrated and pred.model_files == [str(a), str(b)]
    summary = json.loads((tmp_path / "p.json").read_text())
    assert summary["model_files"] == [str(a), str(b)] and summary["calibrated"] is True
    table = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    n = len(pred.samples)
    assert table["model"].tolist() == [str(a)] * n + [str(b)] * n + [ENSEMBLE] * n
    ens = table[table["model"] == ENSEMBLE]
    np.testing.assert_allclose(ens[[f"p_{c}" for c in pred.classes]], pred.proba[ENSEMBLE], atol=1e-6)
    # The threshold applies to the averaged confidence.
    threshold = float(np.median(pred.confidence))
    cut = predict_files(
        [a, b], trained["h5"], tmp_path / "t.tsv", tmp_path / "t.json", 0.5, 0.25, threshold=threshold
    )
    np.testing.assert_array_equal(cut.classifiable, cut.confidence >= threshold)
    assert 0 < cut.classifiable.sum() < len(cut.samples)
    # One file, as a string or a list of one: the same bytes, without model_files.
    predict_files(a, trained["h5"], tmp_path / "s.tsv", tmp_path / "s.json", 0.5, 0.25)
    predict_files([a], trained["h5"], tmp_path / "l.tsv", tmp_path / "l.json", 0.5, 0.25)
    for ext in ("tsv", "json"):
        assert (tmp_path / f"s.{ext}").read_bytes() == (tmp_path / f"l.{ext}").read_bytes()
    assert "model_files" not in json.loads((tmp_path / "s.json").read_text())
    # genomelab predict tissue takes several --model files and writes the same.
    args = ["predict", "tissue", "--model", str(a), str(b), "--inputs", str(trained["h5"])]
    assert main([*args, "--out", str(tmp_path / "cli")]) == 0
    for ext in ("tsv", "json"):
        assert (tmp_path / "cli" / f"predictions.{ext}").read_bytes() == (tmp_path / f"p.{ext}").read_bytes()


def _variant(src, path, **ids) -> str:
    """``src``'s exported model saved to ``path`` with other ``ids`` (regions, classes)."""
    from genomelab.train.export import load_exported, save_exported

    old = load_exported(src)
    save_exported(
        path, old.weights, kind=old.kind, config=old.config, ids=dict(old.ids, **ids),
        data_fingerprint=old.data_fingerprint, extra=old.extra,
    )  # fmt: skip
    return str(path)


def test_models_of_other_classes_are_not_averaged(trained, tmp_path):
    """Files of other classes, the same file twice, or other recorded thresholds (unless one
    is given) are refused, naming the files."""
    from genomelab.predict.tissue import AveragedPredictor

    src = trained["ens"] / "model.pt"
    classes = TissuePredictor.load(src).classes
    other = _variant(src, tmp_path / "classes.pt", classes=[*classes[:-1], "Lung"])
    message = rf"classes differ \(3 and 3; #2 is 'Lung' in one, '{classes[-1]}'"
    with pytest.raises(
        ValueError,
        match=rf"{re.escape(other)} and {re.escape(str(src))} cannot be averaged: their {message}",
    ):
        AveragedPredictor.load([src, other])
    # Refused before any output is written.
    with pytest.raises(ValueError, match="cannot be averaged"):
        predict_files([src, other], trained["h5"], tmp_path / "x.tsv", tmp_path / "x.json", 0.5, 0.25)
    assert not (tmp_path / "x.tsv").exists()
    with pytest.raises(ValueError, match=r"model.pt is given twice among the tissue model files to average"):
        AveragedPredictor.load([src, src])
    strict = _ensemble_of(trained, [0, 1], tmp_path / "strict", threshold=0.6)
    both = AveragedPredictor.load([src, strict])
    feats = read_features(trained["h5"])
    inputs = TissueInputs(feats["samples"], feats["regions"], feats["means"], feats["coverage"], "h5")
    with pytest.raises(
        ValueError, match=r"record different thresholds .*give one \(tissue.predict.threshold"
    ):
        both.predict(inputs, 0.5, 0.25)
    assert both.predict(inputs, 0.5, 0.25, threshold=0.6).threshold == 0.6


def test_models_of_other_region_lists_each_read_their_own_regions(trained, tmp_path):
    """The folds of a run with tissue.task.select_regions keep other regions (each fold's own
    training samples choose them): averaged, each file reads its own regions of the inputs
    (joined to the files' union), so the mean is that of each file predicting alone. Region
    lists in another order average alike."""
    src = trained["ens"] / "model.pt"
    regions = TissuePredictor.load(src).regions.astype(str).tolist()
    feats = read_features(trained["h5"])
    inputs = TissueInputs(feats["samples"], feats["regions"], feats["means"], feats["coverage"], "h5")
    for name, other_regions in (("other", [*regions[:-1], "chrX:1-2"]), ("reordered", regions[::-1])):
        other = _variant(src, tmp_path / f"{name}.pt", regions=other_regions)
        alone = [TissuePredictor.load(m).predict(inputs, 0.5, 0.25).proba[ENSEMBLE] for m in (src, other)]
        assert not np.allclose(alone[0], alone[1])
        pred = predict_files(
            [src, other], trained["h5"], tmp_path / f"{name}.tsv", tmp_path / f"{name}.json", 0.5, 0.25
        )
        np.testing.assert_allclose(pred.proba[ENSEMBLE], (alone[0] + alone[1]) / 2, rtol=0, atol=1e-12)
        n_union = len(set(regions) | set(other_regions))
        assert json.loads((tmp_path / f"{name}.json").read_text())["regions"]["n_model"] == n_union
