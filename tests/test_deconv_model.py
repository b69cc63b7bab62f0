"""deconv: the two-stage network, its training through the shared engine, comparison and inference."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from genomelab.deconv import io as dio
from genomelab.deconv.infer import read_user_samples
from genomelab.deconv.metrics import deconv_metrics
from genomelab.deconv.mixtures import PhaseConfig, make_mixtures, write_mixtures
from genomelab.deconv.model import KIND, DeconvNet, DeconvNetConfig, load_model
from genomelab.deconv.nnls import WEIGHT_FLOOR, deconvolve_nnls, deconvolve_weighted
from genomelab.deconv.reference import load_reference
from genomelab.train.export import save_exported

TISSUES = ["Neutrophils", "Lymphocytes", "Liver", "Lung", "Colon", "Pancreas"]
TRAIN = {
    "max_epochs": 25,
    "batch_size": 64,
    "lr": 0.003,
    "monitor": "val/mae",
    "patience": 8,
    "precision": "fp32",
    "device": "cpu",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory, simulate_deconv_sources):
    """Simulated individuals, a reference and phase-3 mixtures written like the workflow does."""
    d = tmp_path_factory.mktemp("deconv_model")
    _, src, ref, _ = simulate_deconv_sources(d, n_regions=300, markers=(25, 6, 20), n_new=5, seed=7)
    dio.write_table(d / "reference.tsv", ref.profiles, ref.regions, ref.tissues)
    phase = PhaseConfig(
        n_train=1500,
        n_val=200,
        n_test=200,
        background=TISSUES[:2],
        max_solid=2,
        solid_min=0.02,
        solid_max=0.15,
    )
    sets = make_mixtures(src, ref.regions, list(ref.tissues), "phase3", phase, 40, "reads", seed=1)
    write_mixtures(d / "phase3.h5", sets, {"phase": "phase3"})
    return {"dir": d, "ref": ref, "sets": sets}


def _cfg(two_stage: bool = True, **kw) -> DeconvNetConfig:
    return DeconvNetConfig(n_regions=20, n_tissues=4, hidden=[16], two_stage=two_stage, **kw)


def _net(cfg: DeconvNetConfig, fill=None) -> DeconvNet:
    reference = np.random.default_rng(0).uniform(0, 1, (cfg.n_regions, cfg.n_tissues))
    return DeconvNet(cfg, fill, reference)


def test_config_validation_names_the_option():
    with pytest.raises(ValueError, match="presence_threshold must be in \\(0, 1\\)"):
        _cfg(presence_threshold=1.5)
    with pytest.raises(ValueError, match=r"unknown option deconv\.model\.loss_weights\.l2"):
        DeconvNetConfig.from_config({"loss_weights": {"l2": 1}}, 20, 4, True, 0.01)
    with pytest.raises(ValueError, match=r"unknown option deconv\.model\.width"):
        DeconvNetConfig.from_config({"width": 3}, 20, 4, True, 0.01)
    # Without the prior, the options that shape it are off (and recorded so).
    plain = _cfg(nnls_prior=False, prior_weight_floor=0.03, log_prior_input=True)
    assert (plain.prior_weight_floor, plain.log_prior_input) == (0.0, False)
    with pytest.raises(ValueError, match="prior_weight_floor must be >= 0"):
        _cfg(prior_weight_floor=-1.0)
    cfg = DeconvNetConfig.from_config({"loss_weights": {"mse": 2.0, "sparsity": 0.5}}, 20, 4, False, 0.02)
    assert (cfg.mse_weight, cfg.presence_weight, cfg.sparsity_weight, cfg.two_stage) == (2.0, 1.0, 0.5, False)


def test_hard_mask_and_renormalisation():
    model = _net(_cfg(presence_threshold=0.5))
    out = {
        "proportions": torch.tensor([[0.5, 0.3, 0.15, 0.05], [0.4, 0.3, 0.2, 0.1]]),
        "presence_logits": torch.tensor([[3.0, 1.0, -2.0, -3.0], [-5.0, -1.0, -4.0, -2.0]]),
    }
    final = model.finalize(out)
    torch.testing.assert_close(final[0], torch.tensor([0.5 / 0.8, 0.3 / 0.8, 0.0, 0.0]))
    # Nothing above the threshold: the most likely tissue takes everything.
    torch.testing.assert_close(final[1], torch.tensor([0.0, 1.0, 0.0, 0.0]))
    plain = _net(_cfg(two_stage=False))
    assert plain.presence_head is None
    torch.testing.assert_close(plain.finalize({"proportions": out["proportions"]}), out["proportions"])


def test_loss_terms_and_missing_inputs():
    torch.manual_seed(0)
    model = _net(_cfg())
    x = torch.rand(8, 20)
    x[0, :5] = float("nan")
    y = torch.softmax(torch.randn(8, 4), -1)
    out = model.loss((x, y))
    assert set(out.terms) == {"mse_loss", "presence_loss", "sparsity_loss", "presence_accuracy", "total_loss"}
    assert torch.isfinite(out.loss) and out.n == 8
    expected = out.terms["mse_loss"] + out.terms["presence_loss"] + 0.01 * out.terms["sparsity_loss"]
    torch.testing.assert_close(out.loss.detach(), expected)
    # Without the NNLS prior a missing region equals the fill value: it contributes nothing.
    mlp = _net(_cfg(nnls_prior=False))
    filled = x.clone()
    filled[0, :5] = mlp.fill[:5]
    mlp.eval()
    torch.testing.assert_close(mlp(x)["proportions"], mlp(filled)["proportions"])
    # With it, the untrained network returns its prior (its head starts at zero): the
    # weighted NNLS with an offset by default, plain NNLS with prior_weight_floor 0.
    from genomelab.deconv.nnls import nnls_batched

    A, xs = model.reference.double().numpy(), x.double().numpy()
    plain_prior = _net(_cfg(prior_weight_floor=0.0))
    for net, raw in (
        (model, deconvolve_weighted(A, xs, model.cfg.prior_weight_floor).raw),
        (plain_prior, nnls_batched(A, xs)),
    ):
        net.eval()
        expected = torch.tensor(raw / raw.sum(1, keepdims=True), dtype=torch.float32)
        got = net(x)["proportions"]
        torch.testing.assert_close(got, (expected + 1e-4) / (1 + 4e-4), atol=1e-5, rtol=1e-4)
    plain = _net(_cfg(two_stage=False)).loss((x, y))
    assert set(plain.terms) == {"mse_loss", "presence_accuracy", "total_loss"}


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(1)
    model = _net(_cfg(), fill=np.linspace(0.1, 0.9, 20))
    regions = [f"r{i}" for i in range(20)]
    save_exported(
        tmp_path / "m.pt",
        model,
        kind=KIND,
        config=dataclasses.asdict(model.cfg),
        ids={"regions": np.array(regions), "tissues": np.array(list("abcd"))},
        data_fingerprint="d",
        extra={"variant": "sparse"},
    )
    back, exported = load_model(tmp_path / "m.pt", regions, list("abcd"))
    x = torch.rand(5, 20)
    model.eval()
    torch.testing.assert_close(model.predict(x), back.predict(x))
    assert exported.extra["variant"] == "sparse"
    with pytest.raises(ValueError, match=r"m\.pt was made for other tissues"):
        load_model(tmp_path / "m.pt", regions, list("abce"))


def test_models_exported_before_the_weighted_prior_keep_plain_nnls(tmp_path):
    """An export without prior_weight_floor (made before it existed) loads with the plain
    NNLS prior whatever the schema's default, and a weighted model keeps its own."""
    torch.manual_seed(2)
    regions = [f"r{i}" for i in range(20)]
    x = torch.rand(6, 20)
    for name, floor in (("old", None), ("weighted", 0.05)):
        kw = (
            {"prior_weight_floor": 0.0, "log_prior_input": False}
            if floor is None
            else {"prior_weight_floor": floor}
        )
        model = _net(_cfg(**kw))
        torch.nn.init.normal_(model.proportion_head.weight)  # so the trunk's input matters
        config = dataclasses.asdict(model.cfg)
        if floor is None:  # an export made before the two options existed
            config.pop("prior_weight_floor")
            config.pop("log_prior_input")
        save_exported(
            tmp_path / f"{name}.pt",
            model,
            kind=KIND,
            config=config,
            ids={"regions": np.array(regions), "tissues": np.array(list("abcd"))},
            data_fingerprint="d",
        )
        back, _ = load_model(tmp_path / f"{name}.pt", regions, list("abcd"))
        assert back.cfg.prior_weight_floor == (0.0 if floor is None else floor)
        assert back.cfg.log_prior_input == (floor is not None)
        model.eval()
        torch.testing.assert_close(back.predict(x), model.predict(x))


def test_same_seed_same_weights():
    weights = []
    for _ in range(2):
        torch.manual_seed(5)
        weights.append(_net(_cfg()).state_dict())
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k])


@pytest.mark.slow
def test_training_beats_nnls_on_spurious_calls(data, tmp_path):
    """Through the shared engine: losses fall, the history has the issue's names, and on held-out
    mixtures the two-stage model makes fewer spurious calls than NNLS and the plain network with an
    MAE no worse than NNLS."""
    from genomelab.deconv.baseline import evaluate_nnls
    from genomelab.deconv.training import train_model

    d = data["dir"]
    torch.set_num_threads(1)
    results = {}
    for variant in ("plain", "sparse"):
        out = tmp_path / variant
        results[variant] = train_model(
            d / "phase3.h5",
            d / "reference.tsv",
            variant,
            {"hidden": [128]},
            TRAIN,
            0.01,
            out / "state",
            out / "model.pt",
            out / "metrics.json",
            out / "pred.npz",
            out / "tb",
            device="cpu",
            seed=0,
        )
    hist = json.loads((tmp_path / "sparse" / "metrics.json").read_text())["history"]
    for split in ("train", "val"):
        for name in ("mse_loss", "presence_loss", "sparsity_loss", "presence_accuracy", "total_loss"):
            assert f"{split}/{name}" in hist[0]
    assert "val/mae" in hist[0]
    assert hist[-1]["train/total_loss"] < 0.5 * hist[0]["train/total_loss"]
    assert any((tmp_path / "sparse" / "tb").iterdir())
    _, nn = evaluate_nnls(d / "phase3.h5", d / "reference.tsv", 0.01, False)
    sparse, plain = results["sparse"], results["plain"]
    assert sparse["spurious_per_sample"] < nn["spurious_per_sample"]
    assert sparse["spurious_per_sample"] <= plain["spurious_per_sample"]
    assert sparse["mae"] <= nn["mae"] * 1.05
    assert sparse["presence_accuracy"] > 0.9
    # Resuming a finished run does not train again and gives the same answer.
    again = train_model(
        d / "phase3.h5",
        d / "reference.tsv",
        "sparse",
        {"hidden": [128]},
        TRAIN,
        0.01,
        tmp_path / "sparse" / "state",
        tmp_path / "s2.pt",
        tmp_path / "s2.json",
        tmp_path / "s2.npz",
        None,
        device="cpu",
        seed=0,
    )
    assert again["mae"] == pytest.approx(sparse["mae"])
    # Other settings on the same state root: a fresh run in its own folder, never a resume.
    train_model(
        d / "phase3.h5",
        d / "reference.tsv",
        "sparse",
        {"hidden": [64]},
        TRAIN,
        0.01,
        tmp_path / "sparse" / "state",
        tmp_path / "s3.pt",
        tmp_path / "s3.json",
        tmp_path / "s3.npz",
        None,
        device="cpu",
        seed=0,
    )
    assert len(list((tmp_path / "sparse" / "state").iterdir())) == 2
    assert json.loads((tmp_path / "s3.json").read_text())["epochs_run"] >= 1


def test_curriculum_init_and_inference(data, tmp_path):
    from genomelab.deconv.infer import infer
    from genomelab.deconv.training import train_model

    d = data["dir"]
    torch.set_num_threads(1)
    short = {**TRAIN, "max_epochs": 2}
    first = tmp_path / "p2"
    train_model(
        d / "phase3.h5",
        d / "reference.tsv",
        "sparse",
        {"hidden": [32]},
        short,
        0.01,
        first / "state",
        first / "model.pt",
        first / "m.json",
        first / "p.npz",
        None,
        device="cpu",
        seed=0,
    )
    second = tmp_path / "p3"
    train_model(
        d / "phase3.h5",
        d / "reference.tsv",
        "sparse",
        {"hidden": [32]},
        short,
        0.01,
        second / "state",
        second / "model.pt",
        second / "m.json",
        second / "p.npz",
        None,
        device="cpu",
        seed=0,
        init_from=first / "model.pt",
    )
    # Initialised from the first run, the second starts where it ended: its first epoch is already good.
    first_hist = json.loads((first / "m.json").read_text())["history"]
    second_hist = json.loads((second / "m.json").read_text())["history"]
    assert second_hist[0]["train/total_loss"] < first_hist[0]["train/total_loss"]
    with pytest.raises(ValueError, match=r"model\.pt was made for other tissues"):
        bad = data["ref"]
        dio.write_table(tmp_path / "ref2.tsv", bad.profiles[:, :5], bad.regions, bad.tissues[:5])
        train_model(
            d / "phase3.h5",
            tmp_path / "ref2.tsv",
            "sparse",
            {"hidden": [32]},
            short,
            0.01,
            tmp_path / "x" / "state",
            tmp_path / "x.pt",
            tmp_path / "x.json",
            tmp_path / "x.npz",
            None,
            device="cpu",
            seed=0,
            init_from=first / "model.pt",
        )
    files = {
        k: str(tmp_path / "inf" / f"{k}.{ext}")
        for k, ext in (
            ("nnls", "csv"),
            ("weighted", "csv"),
            ("model", "csv"),
            ("residuals", "csv"),
            ("join", "json"),
            ("stacked", "png"),
        )
    }
    summary = infer(
        second / "model.pt", d / "reference.tsv", d / "new.csv", files, 0.01, 0.5, True, 0.02, d / "truth.csv"
    )
    assert summary["join"]["n_matched"] == len(data["ref"].regions)
    assert summary["join"]["n_dropped"] == 300 - len(data["ref"].regions)
    values, tissues, samples = dio.read_table(files["nnls"])
    assert tissues.tolist() == list(data["ref"].tissues) + ["unknown"] and len(samples) == 5
    np.testing.assert_allclose(values.sum(0), 1.0, atol=1e-4)
    model_props, _, _ = dio.read_table(files["model"])
    np.testing.assert_allclose(model_props.sum(0), 1.0, atol=1e-4)
    # The weighted NNLS with an offset beside them: what deconvolve_weighted gives on the
    # joined betas, at the network's prior floor, without an unknown row.
    weighted, w_tissues, w_samples = dio.read_table(files["weighted"])
    assert w_tissues.tolist() == list(data["ref"].tissues) and w_samples.tolist() == samples.tolist()
    ref_all = load_reference(d / "reference.tsv")
    betas, regions, _ = read_user_samples(d / "new.csv")
    aligned = betas[:, [regions.tolist().index(r) for r in ref_all.regions]]
    floor = summary["weighted_nnls"]["weight_floor"]
    assert floor == pytest.approx(load_model(second / "model.pt")[0].cfg.prior_weight_floor or WEIGHT_FLOOR)
    np.testing.assert_allclose(
        weighted.T, deconvolve_weighted(ref_all.profiles, aligned, floor).proportions, atol=2e-6
    )
    residuals = pd.read_csv(files["residuals"], index_col=0)
    assert {"weighted_nnls_raw_residual", "weighted_nnls_residual"} <= set(residuals.columns)
    assert np.isfinite(residuals.to_numpy()).all()
    assert set(summary["vs_truth"]) == {"nnls", "weighted_nnls", "model"}
    # Samples on another ID scheme: an error naming the first IDs of both sides.
    other = tmp_path / "other.csv"
    other.write_text("id,s1\nchr1:100,0.5\nchr1:200,0.4\n")
    with pytest.raises(ValueError, match=r"other.csv: 0 of the reference.s \d+ regions .*region_0.*chr1:100"):
        infer(second / "model.pt", d / "reference.tsv", other, files, 0.01, 0.5, False, 0.02)


def test_nnls_scores_well_on_noise_free_mixtures(data):
    ref, sets = data["ref"], data["sets"]
    true = sets["test"].proportions.astype(float)
    exact = true @ ref.profiles.T
    res = deconvolve_nnls(ref.profiles, exact)
    m = deconv_metrics(true, res.proportions, ref.tissues)
    assert m["mae"] < 1e-6 and m["spurious_per_sample"] == 0


def test_same_seed_reproduces_training(data, tmp_path):
    from genomelab.deconv.io import load_predictions
    from genomelab.deconv.training import train_model

    d = data["dir"]
    torch.set_num_threads(1)
    short = {**TRAIN, "max_epochs": 2}
    preds = []
    for run in ("a", "b"):
        out = tmp_path / run
        train_model(
            d / "phase3.h5",
            d / "reference.tsv",
            "sparse",
            {"hidden": [32]},
            short,
            0.01,
            out / "state",
            out / "model.pt",
            out / "m.json",
            out / "p.npz",
            None,
            device="cpu",
            seed=3,
        )
        preds.append(load_predictions(out / "p.npz"))
    np.testing.assert_array_equal(preds[0], preds[1])


def _train_phase3(d, root, train_cfg, seed=3, init=None):
    """The deconv_train step on the fixture's phase-3 mixtures, two-stage with dropout."""
    from genomelab.deconv.training import train_model

    train_model(
        d / "phase3.h5",
        d / "reference.tsv",
        "sparse",
        {"hidden": [32], "dropout": 0.2},
        train_cfg,
        0.01,
        root / "state",
        root / "model.pt",
        root / "m.json",
        root / "p.npz",
        root / "tb",
        device="cpu",
        seed=seed,
        init_from=init,
    )


@pytest.mark.usefixtures("one_torch_thread")
def test_training_resumed_after_a_crash_equals_an_uninterrupted_run(data, tmp_path, monkeypatch):
    """train_model (the deconv_train rule's step), two-stage with dropout, stopped mid-epoch
    by SIGTERM or a kill and rerun: the same weights and history as without the crash."""
    from resume_check import assert_resume_is_exact

    train_cfg = {**TRAIN, "max_epochs": 4, "batch_size": 256}
    assert_resume_is_exact(lambda root: _train_phase3(data["dir"], root, train_cfg), tmp_path, monkeypatch)


@pytest.mark.usefixtures("one_torch_thread")
def test_a_rerun_after_the_previous_phase_changed_starts_from_the_new_model(data, tmp_path, monkeypatch):
    """Curriculum: a phase starts from the previous phase's model.pt. A job killed mid-run and
    rerun after that model was retrained (other weights, same path) must end as an
    uninterrupted run from the new model does, not resume the state begun from the old one."""
    import shutil

    from genomelab.train.export import load_exported
    from resume_check import BatchCounter

    d, short = data["dir"], {**TRAIN, "max_epochs": 3, "batch_size": 256}
    for previous, seed in (("old", 1), ("new", 2)):
        _train_phase3(d, tmp_path / previous, short, seed=seed)
    init = tmp_path / "previous_phase.pt"
    shutil.copy(tmp_path / "old" / "model.pt", init)
    counter = BatchCounter()
    counter.install(monkeypatch)
    counter.crash_at, counter.how = 8, "kill"  # in the second epoch (6 batches each)
    with pytest.raises(KeyboardInterrupt):
        _train_phase3(d, tmp_path / "run", short, init=init)
    counter.crash_at = None
    shutil.copy(tmp_path / "new" / "model.pt", init)  # the previous phase was trained again
    _train_phase3(d, tmp_path / "run", short, init=init)
    _train_phase3(d, tmp_path / "ref", short, init=init)  # uninterrupted, from the new model
    ref, run = (load_exported(tmp_path / r / "model.pt").weights for r in ("ref", "run"))
    for k, v in ref.items():
        assert torch.equal(v, run[k]), k
    history = [json.loads((tmp_path / r / "m.json").read_text())["history"] for r in ("ref", "run")]
    assert [h["val/loss"] for h in history[0]] == [h["val/loss"] for h in history[1]]


def test_user_samples_from_sheet_and_stacked_other(data, tmp_path):
    from genomelab.deconv.infer import read_user_samples
    from genomelab.deconv.plots import group_other

    betas, regions, names = read_user_samples(data["dir"] / "sheet.tsv")
    assert betas.shape == (len(TISSUES) * 4, 300) and len(regions) == 300 and names[0].endswith("_00")
    props = np.array([[0.9, 0.05, 0.01, 0.04], [0.8, 0.15, 0.005, 0.045]])
    merged, names = group_other(props, ["a", "b", "c", "d"], 0.02)
    assert names == ["a", "b", "d", "other"]
    np.testing.assert_allclose(merged[:, -1], [0.01, 0.005])


def test_the_weighted_prior_checks_its_reference_once_and_again_after_loading(caplog):
    """A reference whose tissues span a constant profile (complementary profiles) leaves no
    room for the offset: the prior is plain NNLS, with one warning, found on the first
    forward and found again when other weights (another reference) are loaded."""
    from genomelab.deconv.nnls import nnls_batched

    t = np.linspace(0.05, 0.95, 20)
    ref = np.column_stack([t, 1 - t, t**2, t**3])
    net = _net(_cfg(prior_weight_floor=0.03))
    other = DeconvNet(net.cfg, None, ref)
    x = torch.tensor(np.clip(ref @ np.array([0.5, 0.2, 0.2, 0.1]) + 0.01, 0, 1)[None], dtype=torch.float32)
    other.eval()
    with caplog.at_level("WARNING"):
        out = other(x)
        other(x)
    assert caplog.text.count("nearly span a constant profile") == 1
    raw = nnls_batched(ref, x.double().numpy())
    torch.testing.assert_close(
        out["nnls"], torch.tensor(raw / raw.sum(1, keepdims=True), dtype=torch.float32)
    )
    other.load_state_dict(net.state_dict())  # the random reference has room for the offset
    assert other._offset_ok is None
    other(x)
    assert other._offset_ok is True
