"""Tissue module steps on tiny simulated data: splits, baselines, diagnostics, models, summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from genomelab.diagnostics import FAIL, PASS, read_results
from genomelab.io.tables import write_split_table as write_splits
from genomelab.tissue import diagnostics as dg
from genomelab.tissue.baselines import BaselineConfig, CentroidClassifier, run_baselines
from genomelab.tissue.calibration import CalibrationConfig
from genomelab.tissue.features import extract_features_from_sheet
from genomelab.tissue.metrics import classification_metrics, expected_calibration_error
from genomelab.tissue.models import AttentionConfig, FileMLP, MLPConfig, RegionAttention, build_model
from genomelab.tissue.report import build_summary
from genomelab.tissue.simulate import SimulationConfig, simulate_dataset
from genomelab.tissue.task import TaskConfig, load_task, make_splits
from genomelab.tissue.training import file_examples, train_from_files, train_model
from genomelab.train.export import load_exported

TRAIN = {"max_epochs": 25, "batch_size": 8, "lr": 0.005, "patience": 25}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def easy(tmp_path_factory):
    """An easy 3-tissue task (strong markers, 1x coverage) with augmented copies."""
    root = tmp_path_factory.mktemp("tissue")
    cfg = SimulationConfig(
        tissues=["Blood", "Liver", "Brain"],
        n_subtypes=2,
        samples_per_subtype=4,
        n_regions=200,
        marker_fraction=0.1,
        subtype_marker_fraction=0.1,
        coverage=1.0,
        sample_sd=0.4,
        augment_fraction=0.5,
        n_augmented_copies=1,
        seed=1,
    )
    sheet = simulate_dataset(cfg, root / "sim")
    h5 = extract_features_from_sheet(sheet, root / "features.h5")
    write_splits(make_splits(h5, TaskConfig(), seed=0), root / "splits.tsv")
    return {"root": root, "h5": h5, "splits": root / "splits.tsv", "data": load_task(h5, root / "splits.tsv")}


def test_splits_keep_copies_together_and_cover_every_class(easy):
    data = easy["data"]
    for g in np.unique(data.groups):
        assert len(set(data.split[data.groups == g])) == 1
    for split in ("train", "val", "test"):
        assert set(data.labels[data.split == split]) == set(data.classes)
    result = dg.check_leakage(data, [0.6, 0.2, 0.2], seed=0)[0]
    assert result.status == PASS
    assert result.details["n_augmented_copies"] > 0


def test_task_errors_name_the_problem(easy):
    with pytest.raises(ValueError, match=r"subset names tissues \['Lung'\]"):
        make_splits(easy["h5"], TaskConfig(subset=["Lung"]), seed=0)
    with pytest.raises(ValueError, match="label must be one of"):
        TaskConfig(label="organ")


def test_metrics_match_sklearn_and_hand_computed_ece():
    from sklearn.metrics import (
        balanced_accuracy_score,
        f1_score,
        log_loss,
        precision_recall_fscore_support,
    )
    from sklearn.metrics import confusion_matrix as sk_confusion

    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 200)
    proba = rng.dirichlet(np.ones(4), 200)
    m = classification_metrics(y, proba, np.array(list("abcd")))
    pred = proba.argmax(1)
    assert m["accuracy"] == pytest.approx((pred == y).mean())
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["nll"] == pytest.approx(log_loss(y, proba, labels=range(4)))
    assert m["confusion"] == sk_confusion(y, pred, labels=range(4)).tolist()
    # A collapsed model: one predicted class, recall 1 on it and 0 elsewhere.
    collapsed = classification_metrics(y, np.tile([0.1, 0.6, 0.2, 0.1], (200, 1)), np.array(list("abcd")))
    assert collapsed["n_predicted_classes"] == 1 and collapsed["balanced_accuracy"] == pytest.approx(0.25)
    precision, recall, f1, support = precision_recall_fscore_support(y, pred, labels=range(4))
    for i, c in enumerate("abcd"):
        assert m["per_class"][c] == pytest.approx(
            {"precision": precision[i], "recall": recall[i], "f1": f1[i], "support": support[i]}
        )
    # Perfectly calibrated two-bin example: confidence 0.75 and 3 of 4 correct -> ECE 0.
    p = np.array([[0.75, 0.25]] * 4)
    assert expected_calibration_error(p, np.array([0, 0, 0, 1])) == pytest.approx(0.0)
    assert expected_calibration_error(p, np.array([1, 1, 1, 1])) == pytest.approx(0.75)


def test_baselines_beat_chance_on_easy_data(easy):
    res = run_baselines(easy["data"], BaselineConfig(lr_c_grid=[0.1, 1.0]), seed=0)
    for name in ("logistic regression", "nearest centroid"):
        assert res["methods"][name]["test"]["accuracy"] >= 0.8, name
    x = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0]])
    clf = CentroidClassifier().fit(x, np.array([0, 0, 1, 1]))
    assert clf.predict(np.array([[0.2, 0.1], [4.0, 4.9]])).tolist() == [0, 1]


def test_variance_ratio_is_exact_and_fires_on_shuffled_labels(easy):
    from scipy.stats import f_oneway

    rng = np.random.default_rng(0)
    z = rng.normal(size=(30, 5))
    y = np.repeat([0, 1, 2], 10)
    f, _, _ = dg.variance_ratio(z, y, 3)
    ref = [f_oneway(*(z[y == c, j] for c in range(3))).statistic for j in range(5)]
    np.testing.assert_allclose(f, ref, rtol=1e-10)
    cfg = dg.DiagnosticsConfig()
    assert dg.check_variance(easy["data"], cfg)[0].status == PASS
    data = easy["data"]
    shuffled = dg.TissueData(**{**data.__dict__, "y": np.random.default_rng(1).permutation(data.y)})
    noise = dg.TissueData(
        **{**shuffled.__dict__, "means": np.random.default_rng(2).random(data.means.shape, dtype=np.float32)}
    )
    result = dg.check_variance(noise, cfg)[0]
    assert result.status == FAIL and "unrelated" in result.message
    assert "(shuffled or mismatched sample sheet?)" in result.message
    # A misspelt label makes a class of one training sample: the failure names it first.
    y = noise.y.copy()
    y[noise.index("train")[0]] = len(noise.classes)
    typo = dg.TissueData(**{**noise.__dict__, "y": y, "classes": [*noise.classes, "IDHwt-K4"]})
    result = dg.check_variance(typo, cfg)[0]
    assert result.status == FAIL
    assert "1 class(es) with a single training sample (['IDHwt-K4']; a misspelt label?)" in result.message


def test_label_consistency_catches_conflicting_copies(easy, tmp_path):
    import h5py

    cfg = dg.DiagnosticsConfig()
    assert all(r.status == PASS for r in dg.check_labels(easy["h5"], TaskConfig(), cfg))
    bad = tmp_path / "bad.h5"
    bad.write_bytes(easy["h5"].read_bytes())
    with h5py.File(bad, "r+") as h5:
        tissue = h5["tissue"][()].astype(str)
        src = h5["source_sample"][()].astype(str)
        copy = int(np.flatnonzero(src != h5["samples"][()].astype(str))[0])
        tissue[copy] = "Liver" if tissue[copy] != "Liver" else "Blood"
        del h5["tissue"]
        h5.create_dataset("tissue", data=tissue.astype(object), dtype=h5py.string_dtype("utf-8"))
    results = dg.check_labels(bad, TaskConfig(), cfg)
    assert results[0].status == FAIL and src[copy] in results[0].message


def test_a_class_of_one_source_sample_is_named_with_its_sample(easy, tmp_path):
    """A label typo that makes a class of one sample (IDHwt-K4 for IDHwt-K1) failed the gate
    with "{np.str_('IDHwt-K4'): 1}": numpy's repr, and no sample to look up in the sheet."""
    import h5py

    bad = tmp_path / "one.h5"
    bad.write_bytes(easy["h5"].read_bytes())
    with h5py.File(bad, "r+") as h5:
        tissue = h5["tissue"][()].astype(str)
        samples = h5["samples"][()].astype(str)
        src = h5["source_sample"][()].astype(str)
        alone = int(np.flatnonzero(src == samples)[0])
        tissue[src == src[alone]] = "Typo"
        del h5["tissue"]
        h5.create_dataset("tissue", data=tissue.astype(object), dtype=h5py.string_dtype("utf-8"))
    result = next(
        r for r in dg.check_labels(bad, TaskConfig(), dg.DiagnosticsConfig()) if "classes" in r.name
    )
    assert result.status == FAIL
    assert result.message == (
        f"class(es) with a single source sample cannot be both trained and tested: 'Typo' (source sample {src[alone]})"
    )


def test_learnability_fires_for_region_level_mode_only(tmp_path):
    # The demo's regime: few weak markers, low coverage; single regions carry nothing.
    cfg = SimulationConfig(
        tissues=["A", "B", "C", "D", "E"],
        n_subtypes=1,
        samples_per_subtype=10,
        n_regions=600,
        marker_fraction=0.05,
        coverage=0.5,
        augment_fraction=0.0,
        seed=2,
    )
    h5 = extract_features_from_sheet(simulate_dataset(cfg, tmp_path / "sim"), tmp_path / "f.h5")
    write_splits(make_splits(h5, TaskConfig(), seed=0), tmp_path / "s.tsv")
    data = load_task(h5, tmp_path / "s.tsv")
    dcfg = dg.DiagnosticsConfig(probe_regions=600)
    file_level = dg.check_learnability(data, ["mlp", "attention"], dcfg, seed=0, figure=tmp_path / "l.png")[0]
    region_level = dg.check_learnability(data, ["mlp", "region"], dcfg, seed=0)[0]
    assert file_level.status == PASS and (tmp_path / "l.png").exists()
    # The workflow passes only the region-level models (a file-level one added to
    # tissue.models must not rerun the check): the verdict and details are the same.
    assert "No configured model is region-level" in file_level.message
    none = dg.check_learnability(data, [], dcfg, seed=0)[0]
    assert (none.status, none.message, none.details) == (
        file_level.status,
        file_level.message,
        file_level.details,
    )
    assert region_level.status == FAIL and region_level.blocking
    assert (
        "granularity mismatch" in region_level.message
        and "labels belong to whole files" in region_level.message
    )
    assert (
        region_level.details["region_informativeness"]
        < 0.2
        < 0.3
        <= region_level.details["file_informativeness"]
    )


def test_overfit_check_passes_for_every_model(easy):
    results = dg.check_overfit(
        easy["data"], ["mlp", "attention", "region"], {}, dg.DiagnosticsConfig(overfit_steps=80), seed=0
    )
    assert [r.status for r in results] == [PASS, PASS, PASS], [r.message for r in results]


def test_models_shapes_missing_regions_and_save_load(easy):
    data = easy["data"]
    mu, sd = np.full(len(data.regions), 0.5, np.float32), np.ones(len(data.regions), np.float32)
    means, cov, y = file_examples(data, "train").tensors
    means = means.clone()
    means[0] = float("nan")  # a sample with no covered region must still give finite logits
    cov[0] = 0
    for kind in ("mlp", "attention"):
        torch.manual_seed(0)
        model = build_model(kind, {}, len(data.regions), len(data.classes), mu, sd, 150).eval()
        logits = model(means, cov)
        assert logits.shape == (len(y), len(data.classes)) and torch.isfinite(logits).all()
        clone = build_model(kind, {}, len(data.regions), len(data.classes), mu, sd, 150).eval()
        clone.load_state_dict(model.state_dict())
        torch.testing.assert_close(clone(means, cov), logits)
    with pytest.raises(ValueError, match="unknown option"):
        build_model("mlp", {"hiden": [3]}, 5, 2, mu[:5], sd[:5], 150)
    with pytest.raises(ValueError, match="dropout"):
        MLPConfig(dropout=1.5)
    with pytest.raises(ValueError, match="unknown tissue model"):
        build_model("bert", {}, 5, 2, mu[:5], sd[:5], 150)
    assert isinstance(build_model("mlp", MLPConfig(), 5, 2, mu[:5], sd[:5], 150), FileMLP)
    assert isinstance(build_model("attention", AttentionConfig(), 5, 2, mu[:5], sd[:5], 150), RegionAttention)


def test_untrained_attention_model_is_the_mlp(easy):
    # The attention pathway enters through a zero-initialised projection, so before training
    # the model is the MLP on the same region-mean pathway; z-scores are soft-clipped.
    data = easy["data"]
    means, cov, _ = file_examples(data, "train").tensors
    mu, sd = np.full(len(data.regions), 0.5, np.float32), np.full(len(data.regions), 1e-3, np.float32)
    # Trained on complete data (sparse_training 0) both read the region means alone; the
    # read-likelihood pathway (tested in test_tissue_naive_bayes.py) is off here.
    plain = {"sparse_training": 0.0}
    mlp = build_model("mlp", plain, len(data.regions), len(data.classes), mu, sd, 150).eval()
    attention = build_model(
        "attention", {**plain, "read_likelihood": False}, len(data.regions), len(data.classes), mu, sd, 150
    ).eval()
    attention.input_proj.load_state_dict(mlp.input_proj.state_dict())
    attention.body.load_state_dict(mlp.body.state_dict())
    torch.testing.assert_close(attention(means, cov), mlp(means, cov))
    z = mlp.standardise(means, cov)[..., 0]
    assert z.abs().max() <= 3.0 and z.abs().max() > 2.9  # |z| up to 500 before clipping
    with pytest.raises(ValueError, match="z_clip"):
        MLPConfig(z_clip=-1)


@pytest.mark.parametrize(
    "kind, cfg",
    [("mlp", {}), ("attention", {"read_likelihood": False}), ("attention", {"read_likelihood": True})],
    ids=["mlp", "attention", "attention-read-likelihood"],
)
def test_file_level_models_learn_and_match_logistic_regression(easy, tmp_path, kind, cfg):
    data = easy["data"]
    test = train_model(kind, data, cfg, TRAIN, tmp_path / "state", tmp_path / kind, "cpu", seed=0)
    metrics = json.loads((tmp_path / kind / "metrics.json").read_text())
    # The loss falls: on validation (complete samples; training batches are partly degraded
    # by the default sparse training, so their loss stays higher).
    # With the read likelihood the untrained model is already the naive Bayes classifier
    # (near-perfect on this easy task), so the reference is chance there.
    start = metrics["chance_nll"] if cfg.get("read_likelihood") else metrics["initial_nll"]
    assert min(h["val/nll"] for h in metrics["history"]) < 0.5 * start
    lr = run_baselines(data, BaselineConfig(lr_c_grid=[0.1, 1.0]), seed=0)["methods"]["logistic regression"]
    assert test["balanced_accuracy"] >= lr["test"]["balanced_accuracy"] - 1e-9
    checks = {r.name: r for r in read_results(tmp_path / kind / "diagnostics.json")}
    assert checks[f"{kind}: validation loss vs chance"].status == PASS
    assert (tmp_path / kind / "model.pt").exists()
    # Same config again: the finished state is found and gives the same test metrics.
    again = train_model(kind, data, cfg, TRAIN, tmp_path / "state", tmp_path / f"{kind}2", "cpu", seed=0)
    assert again["accuracy"] == test["accuracy"]


@pytest.mark.parametrize(
    "kind, cfg",
    [
        ("mlp", {"hidden": [16]}),
        ("attention", {"hidden": [16], "dim": 8, "heads": 2, "gate_hidden": 8, "read_likelihood_folds": 3}),
        ("masked", {}),
    ],
    ids=["mlp", "attention-read-likelihood", "masked"],
)
def test_file_level_training_resumed_after_a_crash_equals_an_uninterrupted_run(
    easy, tmp_path, monkeypatch, kind, cfg
):
    """train_from_files (the tissue_train rule's step) stopped mid-epoch by SIGTERM or a kill, then
    rerun: the same weights and history as without the crash. Sparse training (read resampling
    and masking of a random share of each batch), dropout, the attention's region dropout and
    the cross-fitted read likelihood's folds are all on (the schema's defaults)."""
    from resume_check import assert_resume_is_exact

    defaults = {"mlp": MLPConfig, "attention": AttentionConfig}
    if kind in defaults:
        assert defaults[kind]().sparse_training > 0 and defaults[kind]().dropout > 0
    if kind == "attention":
        assert AttentionConfig().read_likelihood and AttentionConfig().region_dropout > 0
    train_cfg = {**TRAIN, "max_epochs": 4}

    def train(root):
        train_from_files(
            kind, easy["h5"], easy["splits"], cfg, train_cfg, root / "state", root / "out", "cpu"
        )

    assert_resume_is_exact(train, tmp_path, monkeypatch)


@pytest.mark.parametrize("changed", ["coverage", "groups", "n_positions"])
def test_a_rerun_on_changed_inputs_does_not_resume_the_old_state(easy, tmp_path, monkeypatch, changed):
    """Coverage (the read likelihood's counts, the depth channels), source samples (the
    cross-fitting folds) and positions per region (the coverage scale) are inputs as much as
    the means: a job killed mid-run and rerun after one of them changed ends as an
    uninterrupted run on the new data does, instead of resuming the old data's state."""
    import dataclasses

    from resume_check import BatchCounter

    data = easy["data"]
    new = dataclasses.replace(
        data,
        **{
            "coverage": {"coverage": (data.coverage // 3).astype(data.coverage.dtype)},
            "groups": {"groups": data.samples.copy()},  # every augmented copy its own source
            "n_positions": {"n_positions": 2 * data.n_positions},
        }[changed],
    )
    cfg = {"hidden": [16], "dim": 8, "heads": 2, "gate_hidden": 8, "read_likelihood_folds": 3}
    train_cfg = {**TRAIN, "max_epochs": 3}

    def train(task, root):
        train_model("attention", task, cfg, train_cfg, root / "state", root / "out", "cpu", seed=0)

    counter = BatchCounter()
    counter.install(monkeypatch)
    counter.crash_at, counter.how = 5, "kill"  # in the second epoch (3 batches each)
    with pytest.raises(KeyboardInterrupt):
        train(data, tmp_path / "run")
    counter.crash_at = None
    train(new, tmp_path / "run")
    train(new, tmp_path / "ref")
    ref, run = (load_exported(tmp_path / r / "out" / "model.pt").weights for r in ("ref", "run"))
    for k, v in ref.items():
        assert torch.equal(v, run[k]), k


def test_region_level_ablation_sits_at_chance_and_is_flagged(tmp_path):
    cfg = SimulationConfig(
        tissues=["A", "B", "C", "D"],
        n_subtypes=1,
        samples_per_subtype=6,
        n_regions=400,
        marker_fraction=0.02,
        coverage=0.5,
        augment_fraction=0.0,
        seed=4,
    )
    h5 = extract_features_from_sheet(simulate_dataset(cfg, tmp_path / "sim"), tmp_path / "f.h5")
    write_splits(make_splits(h5, TaskConfig(), seed=0), tmp_path / "s.tsv")
    data = load_task(h5, tmp_path / "s.tsv")
    test = train_model(
        "region",
        data,
        {"regions_per_sample": 64},
        {"max_epochs": 6, "batch_size": 256, "patience": 6},
        tmp_path / "state",
        tmp_path / "region",
        "cpu",
        seed=0,
    )
    assert test["balanced_accuracy"] < 0.4  # 4 classes: chance 0.25
    checks = {r.name: r for r in read_results(tmp_path / "region" / "diagnostics.json")}
    assert checks["region: validation loss vs chance"].status == FAIL
    assert not checks["region: validation loss vs chance"].blocking


def test_subtype_task_and_summary(easy, tmp_path):
    # Fine-grained classes: blood subtypes only.
    task = TaskConfig(label="subtype", subset=["Blood"], fractions=[0.5, 0.25, 0.25])
    write_splits(make_splits(easy["h5"], task, seed=0), tmp_path / "sub.tsv")
    data = load_task(easy["h5"], tmp_path / "sub.tsv")
    assert set(data.classes) == {"Blood_A", "Blood_B"}
    sub = dg.check_subtypes(easy["h5"], task, dg.DiagnosticsConfig(), seed=0, figure=tmp_path / "sub.png")[0]
    assert sub.status == PASS and sub.blocking and "Blood" in sub.details
    # The summary: comparison on the same split, diagnostics and plots.
    base = run_baselines(easy["data"], BaselineConfig(lr_c_grid=[1.0]), seed=0)
    (tmp_path / "baselines.json").write_text(json.dumps(base))
    train_model(
        "mlp",
        easy["data"],
        {},
        {**TRAIN, "max_epochs": 5},
        tmp_path / "st",
        tmp_path / "train" / "mlp",
        "cpu",
        seed=0,
    )
    from genomelab.diagnostics import write_results

    write_results(
        tmp_path / "diag" / "leakage.json", "tissue", dg.check_leakage(easy["data"], [0.6, 0.2, 0.2], 0)
    )
    summary = build_summary(
        tmp_path / "baselines.json",
        {"mlp": tmp_path / "train" / "mlp" / "metrics.json"},
        {"mlp": tmp_path / "train" / "mlp" / "diagnostics.json"},
        [tmp_path / "diag" / "leakage.json"],
        tmp_path,
        {"label": "tissue"},
    )
    data = json.loads((tmp_path / "summary.json").read_text())
    comp = data["comparisons"][0]
    assert set(comp["rows"]) == {
        "logistic regression",
        "nearest centroid",
        "naive Bayes (read counts)",
        "file-level MLP",
    }
    assert comp["kinds"]["file-level MLP"] == "model" and comp["split"] == "test"
    assert all((tmp_path / p).exists() for p in summary.plots)
    assert (tmp_path / "comparison.tsv").read_text().startswith("method\tkind\tn_test\taccuracy")
    assert any("file-level MLP vs logistic regression, same" in n and "McNemar" in n for n in data["notes"])


def test_ensemble_averages_member_probabilities_and_rejects_stale_members(easy, tmp_path):
    from genomelab.tissue.training import combine_members, predict_proba

    data = easy["data"]
    dirs = [tmp_path / "members" / str(i) for i in range(2)]
    for i, d in enumerate(dirs):
        train_model("mlp", data, {}, {**TRAIN, "max_epochs": 6}, tmp_path / "st" / str(i), d, "cpu", seed=i)
    files = {name: [d / name for d in dirs] for name in ("model.pt", "metrics.json", "diagnostics.json")}
    # Without temperature scaling the ensemble's probabilities are the members' mean exactly.
    raw = CalibrationConfig(temperature=False)
    test = combine_members(
        "mlp",
        data,
        files["model.pt"],
        files["metrics.json"],
        files["diagnostics.json"],
        tmp_path / "ens",
        raw,
    )
    ens = load_exported(tmp_path / "ens" / "model.pt", {"classes": data.classes}, kind="mlp-ensemble")
    assert ens.extra["seeds"] == [0, 1] and {k.split(".")[0] for k in ens.weights} == {"0", "1"}
    # One member alone reproduces what training measured on the model in memory, so members
    # are loaded correctly (weights and standardisation buffers).
    single = combine_members(
        "mlp",
        data,
        files["model.pt"][:1],
        files["metrics.json"][:1],
        files["diagnostics.json"][:1],
        tmp_path / "one",
        raw,
    )
    own = json.loads(files["metrics.json"][0].read_text())
    assert (
        single["nll"] == pytest.approx(own["test"]["nll"]) and single["accuracy"] == own["test"]["accuracy"]
    )
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())["predictions"]
    assert {k: one[k] for k in own["predictions"]} == own["predictions"]
    # Two members: the mean of their probabilities, each predicted from its own file.
    x = file_examples(data, "test")
    mu, sd = np.zeros(len(data.regions), np.float32), np.ones(len(data.regions), np.float32)
    probs = []
    for path in files["model.pt"]:
        exported = load_exported(path, {"regions": data.regions}, kind="mlp")
        model = build_model("mlp", exported.config, len(data.regions), len(data.classes), mu, sd, 150)
        model.load_state_dict(exported.weights)
        probs.append(predict_proba(model, x, torch.device("cpu")))
    expected = classification_metrics(x.tensors[-1].numpy(), np.mean(probs, axis=0), data.classes)
    assert test["nll"] == pytest.approx(expected["nll"]) and test["accuracy"] == expected["accuracy"]
    # The two members differ (different seeds), so averaging is not a copy of one of them.
    assert not np.allclose(probs[0], probs[1])
    metrics = json.loads((tmp_path / "ens" / "metrics.json").read_text())
    assert metrics["n_members"] == 2 and [m["seed"] for m in metrics["members"]] == [0, 1]
    assert metrics["history"] and metrics["granularity"] == "file"
    checks = {r.name: r for r in read_results(tmp_path / "ens" / "diagnostics.json")}
    assert "mlp: ensemble prediction collapse (test)" in checks
    assert "2 members" in checks["mlp: validation loss vs chance"].message

    def refused(kind, task, idx, match):
        with pytest.raises(ValueError, match=match):
            combine_members(
                kind,
                task,
                [files["model.pt"][i] for i in idx],
                [files["metrics.json"][i] for i in idx],
                [files["diagnostics.json"][i] for i in idx],
                tmp_path / "x",
            )
        assert not (tmp_path / "x" / "metrics.json").exists()

    # Members of another model kind, of other splits, or one member twice are refused.
    refused("attention", data, [0, 1], r"members/0/model\.pt holds a 'mlp' model")
    write_splits(make_splits(easy["h5"], TaskConfig(), seed=5), tmp_path / "other.tsv")
    refused("mlp", load_task(easy["h5"], tmp_path / "other.tsv"), [0, 1], "training data and splits")
    refused("mlp", data, [0, 0], "distinct seeds")


def test_prediction_batches_shrink_with_regions_and_do_not_change_results(easy):
    from genomelab.tissue.training import eval_batch_size, predict_proba

    data = easy["data"]
    x = file_examples(data, "test")
    mu, sd = np.full(len(data.regions), 0.5, np.float32), np.full(len(data.regions), 0.2, np.float32)
    model = build_model("attention", {}, len(data.regions), len(data.classes), mu, sd, 150).eval()
    cpu = torch.device("cpu")
    assert eval_batch_size(model, x, cpu) == 256  # 200 regions: far below the budget
    # 51,089 regions (the real region set): a few samples per batch on the CPU, not 256.
    wide = torch.utils.data.TensorDataset(torch.zeros(2, 51_089), torch.zeros(2, 51_089), torch.zeros(2))
    assert 1 <= eval_batch_size(model, wide, cpu) <= 8
    np.testing.assert_allclose(
        predict_proba(model, x, cpu, batch_size=1), predict_proba(model, x, cpu), atol=1e-6
    )
