"""The read-profile model (tissue model ``reads``): its score, its families, its fit, and the
files it leaves where an ensemble's are (summary, predict, overfit check)."""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pytest
import torch
from genomelab.config import schema_defaults
from genomelab.predict.tissue import TissuePredictor
from genomelab.tissue.baselines import fit_logreg, full_proba
from genomelab.tissue.diagnostics import DiagnosticsConfig, check_overfit
from genomelab.tissue.kinds import MODEL_TITLES
from genomelab.tissue.models import build_model
from genomelab.tissue.read_profiles import (
    ReadProfiles,
    ReadsConfig,
    degrade_draws,
    factor_analysis,
    fit_factor,
    fit_read_profiles,
    pooled_concentration,
    validation_counts,
)
from genomelab.tissue.report import build_summary
from genomelab.tissue.sparse import SparsityConfig, degrade
from genomelab.tissue.task import impute_standardise_params, standardise
from genomelab.tissue.training import fit_read_model, train_model
from genomelab.train.export import load_exported
from test_tissue_sparse import make_data

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRID = SparsityConfig(depths=[30, 1], observed=[1.0, 0.1])


def _one_profile_model(p: np.ndarray, kappa: np.ndarray, log_prior: np.ndarray) -> ReadProfiles:
    """A model whose mixture family is one profile per class, p [C, R]."""
    n_classes, n_regions = p.shape
    model = ReadProfiles(n_regions, n_classes, ["mixture"])
    model.load_state_dict(
        {
            **model.state_dict(),
            "log_prior": torch.as_tensor(log_prior, dtype=torch.float32),
            "kappa": torch.as_tensor(kappa, dtype=torch.float32),
            "mixture_p": torch.as_tensor(p, dtype=torch.float32),
            "mixture_class": torch.arange(n_classes),
            "mixture_logw": torch.zeros(n_classes),
        }
    )
    return model.eval()


def test_score_is_the_tempered_binomial_of_the_reads_at_observed_regions():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.05, 0.95, (3, 40)).astype(np.float32)
    kappa = rng.uniform(1, 50, 40).astype(np.float32)
    prior = np.log([0.5, 0.3, 0.2])
    model = _one_profile_model(p, kappa, prior)
    depth = rng.integers(1, 31, (4, 40)).astype(np.float32)
    k = rng.binomial(depth.astype(int), 0.4)
    means = (k / depth).astype(np.float32)
    means[0, :10] = np.nan  # unobserved
    depth[1, 5:20] = 0  # no reads: unobserved too
    kf, nf = model.counts(torch.as_tensor(means), torch.as_tensor(depth))
    got = model.family_scores("mixture", kf, nf, absolute=True).numpy()
    observed = np.isfinite(means) & (depth > 0)
    f = np.where(observed, (kappa + 1.0) / (kappa + depth), 0)
    kk, dd = np.where(observed, k, 0), np.where(observed, depth, 0)
    p64 = p.astype(np.float64)
    want = (f * kk) @ np.log(p64).T + (f * (dd - kk)) @ np.log1p(-p64).T + prior
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # One read: f = 1, the plain Bernoulli likelihood (the factor model's exact case).
    assert np.allclose(f[depth == 1], 1.0)
    # The output is the temperature-scaled log-softmax of those scores (one family).
    out = model(torch.as_tensor(means), torch.as_tensor(depth)).numpy()
    np.testing.assert_allclose(out, want - np.log(np.exp(want).sum(1, keepdims=True)), atol=1e-4)


def test_float32_scores_relative_to_the_centre_keep_the_float64_class_differences():
    """At the panel's size the absolute log-likelihoods are ~-10^4 nats: float32 sums of
    them would blur class differences; the relative scores must match float64 to 1e-3."""
    rng = np.random.default_rng(10)
    n_classes, n_regions = 6, 20_000
    p = np.clip(rng.beta(2, 2, n_regions) + rng.normal(0, 0.1, (2 * n_classes, n_regions)), 0.01, 0.99)
    model = ReadProfiles(n_regions, n_classes, ["mixture"])
    model.load_state_dict(
        {
            **model.state_dict(),
            "kappa": torch.full((n_regions,), 20.0),
            "mixture_p": torch.as_tensor(p, dtype=torch.float32),
            "mixture_class": torch.arange(2 * n_classes) % n_classes,
            "mixture_logw": torch.full((2 * n_classes,), -float(np.log(2))),
        }
    )
    means, cov = degrade(p[rng.integers(0, 2 * n_classes, 8)], 1, 0.7, rng)
    k, n = model.counts(torch.as_tensor(means), torch.as_tensor(cov))
    p64 = model.mixture_p.double().numpy()
    ll = k.double().numpy() @ np.log(p64).T + n.double().numpy() @ np.log1p(-p64).T - np.log(2)
    want = np.logaddexp(ll[:, :n_classes], ll[:, n_classes:]) + model.log_prior.double().numpy()
    assert np.abs(want).min() > 1e3  # the regime float32 absolute sums cannot hold
    rel = model.family_scores("mixture", k, n)
    assert rel.dtype == torch.float32
    rel = rel.double().numpy()
    np.testing.assert_allclose(rel - rel[:, :1], want - want[:, :1], atol=1e-3)
    np.testing.assert_allclose(model.family_scores("mixture", k, n, absolute=True).numpy(), want, atol=2e-3)


def test_profiles_scored_in_small_chunks_score_as_in_one(monkeypatch):
    """Chunks of 16 profile rows (classes split across chunks, the factor family's latent
    points in several chunks per class) give the scores of one chunk of all."""
    from genomelab.tissue import read_profiles

    data = make_data(9, n_regions=80)
    tr, va, te = (data.index(s) for s in ("train", "val", "test"))
    cfg = ReadsConfig(mixture_components=[8], latent_draws=40)
    model, _ = fit_read_profiles(data.means[tr], data.y[tr], data.means[va], data.y[va], 3, cfg)
    assert len(model.mixture_p) > 16 and len(model.factor_z) > 16
    means, cov = degrade(data.means[te], 3, 0.5, np.random.default_rng(0))
    k, n = model.counts(torch.as_tensor(means), torch.as_tensor(cov))
    assert read_profiles.chunk_rows(80) == read_profiles.PROFILE_CHUNK
    whole = {f: model.family_scores(f, k, n) for f in ("mixture", "factor")}
    monkeypatch.setattr(read_profiles, "PROFILE_CHUNK", 16)
    assert read_profiles.chunk_rows(80) == 16
    for f, want in whole.items():
        torch.testing.assert_close(model.family_scores(f, k, n), want, rtol=1e-5, atol=1e-4)
    # The byte budget bounds a chunk at the panel's size: [rows, 51,089] float32 <= 24 MiB.
    monkeypatch.undo()
    rows = read_profiles.chunk_rows(51_089)
    assert rows == 112 and rows * 51_089 * 4 <= read_profiles.PROFILE_BYTES


def test_forward_makes_no_float64_tensor():
    """float32 throughout, so the model runs on any accelerator (fp64 is slow on most GPUs
    and absent on some)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Dtypes(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.seen: set[torch.dtype] = set()

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, tuple | list) else [out]:
                if isinstance(t, torch.Tensor):
                    self.seen.add(t.dtype)
            return out

    data = make_data(8, n_regions=60)
    tr, va, te = (data.index(s) for s in ("train", "val", "test"))
    model, _ = fit_read_profiles(
        data.means[tr], data.y[tr], data.means[va], data.y[va], 3, ReadsConfig(latent_draws=16)
    )
    mode = Dtypes()
    with mode:
        model(torch.as_tensor(data.means[te]), torch.full(data.means[te].shape, 30.0))
    assert torch.float32 in mode.seen and torch.float64 not in mode.seen, mode.seen


def test_unobserved_regions_change_nothing():
    rng = np.random.default_rng(1)
    model = _one_profile_model(rng.uniform(0.1, 0.9, (2, 30)), np.full(30, 10.0), np.log([0.5, 0.5]))
    means = rng.uniform(0, 1, (3, 30)).astype(np.float32)
    cov = np.full((3, 30), 5, np.float32)
    hidden = means.copy()
    hidden[:, 20:] = np.nan
    kept = _one_profile_model(model.mixture_p[:, :20].numpy(), np.full(20, 10.0), np.log([0.5, 0.5]))
    a = model(torch.as_tensor(hidden), torch.as_tensor(cov))
    b = kept(torch.as_tensor(means[:, :20]), torch.as_tensor(cov[:, :20]))
    torch.testing.assert_close(a, b)


def test_concentration_is_the_within_class_spread():
    rng = np.random.default_rng(2)
    y = np.repeat([0, 1], 200)
    tight = np.clip(np.where(y == 0, 0.2, 0.8) + rng.normal(0, 0.01, 400), 0, 1)
    loose = np.clip(np.where(y == 0, 0.3, 0.7) + rng.normal(0, 0.15, 400), 0, 1)
    levels = np.stack([tight, loose], 1)
    means = np.stack([levels[y == c].mean(0) for c in (0, 1)])
    kappa = pooled_concentration(levels, y, means)
    # m (1 - m) / v - 1 with m = 0.5: ~2500 for sd 0.01, ~10 for sd 0.15.
    assert 1500 < kappa[0] < 4000 and 6 < kappa[1] < 14


def _correlated_classes(seed: int, n_per: int, n_regions: int = 60):
    """Two classes with the same mean level at every region (0.5); in class 1 the first 40
    regions move together (one latent factor), in class 0 they vary independently. Only a
    model of how regions co-vary tells them apart."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n_per)
    levels = np.empty((len(y), n_regions))
    z = rng.normal(0, 1, len(y))[:, None]
    levels[:] = 0.5 + 0.35 * np.tanh(rng.normal(0, 1, levels.shape))
    block = 0.5 + 0.35 * np.tanh(z + 0.2 * rng.normal(0, 1, (len(y), 40)))
    levels[y == 1, :40] = block[y == 1]
    return np.clip(levels, 0, 1).astype(np.float32), y


def test_factor_family_sees_correlated_regions_that_naive_bayes_cannot():
    train, y_train = _correlated_classes(0, 150)
    val, y_val = _correlated_classes(1, 60)
    test, y_test = _correlated_classes(2, 200)
    acc = {}
    for family in ("mixture", "factor"):
        # mixture with one component per class is naive Bayes at one read.
        cfg = ReadsConfig(families=[family], mixture_components=[1], factor_dims=[1], latent_draws=128)
        model, choices = fit_read_profiles(train, y_train, val, y_val, 2, cfg, seed=0)
        means, cov = degrade(test, 1, 1.0, np.random.default_rng(3))
        pred = model(torch.as_tensor(means), torch.as_tensor(cov)).argmax(1).numpy()
        acc[family] = float((pred == y_test).mean())
        assert choices[family]["temperature"] > 0
    assert acc["mixture"] < 0.65, acc  # same means: about chance
    assert acc["factor"] > acc["mixture"] + 0.15, acc


@pytest.mark.parametrize("n_regions", [300, 12])  # the Gram matrix on either side
@pytest.mark.parametrize("d", [1, 3])
def test_factor_analysis_is_scikit_learns(n_regions, d):
    from sklearn.decomposition import FactorAnalysis

    rng = np.random.default_rng(d)
    x = rng.normal(0, 0.05, (40, n_regions)) + rng.normal(0, 1, (40, 2)) @ rng.normal(0, 0.1, (2, n_regions))
    mean, load = factor_analysis(x, d)
    fa = FactorAnalysis(d, svd_method="lapack").fit(x)
    np.testing.assert_allclose(mean, fa.mean_)
    sign = np.sign((fa.components_ * load).sum(1))
    np.testing.assert_allclose(load, fa.components_ * sign[:, None], atol=1e-10)
    # Each factor's largest loading is positive (the fit does not depend on SVD signs).
    assert (load[np.arange(d), np.abs(load).argmax(1)] > 0).all()


def test_validation_counts_filled_draw_by_draw_equal_the_stacked_draws():
    rng = np.random.default_rng(11)
    val = rng.uniform(0, 1, (7, 50)).astype(np.float32)
    val[:, :5] = np.nan
    cfg = ReadsConfig(choose_depth=2, choose_observed=[1.0, 0.3], validation_draws=3)
    model = _one_profile_model(rng.uniform(0.1, 0.9, (2, 50)), rng.uniform(1, 30, 50), np.log([0.5, 0.5]))
    k, n = validation_counts(model, val, cfg, seed=4)
    draws = list(degrade_draws(val, 2, [1.0, 0.3], 3, seed=4))
    assert len(draws) == 6 and k.shape == n.shape == (42, 50)
    want_k, want_n = model.counts(
        torch.as_tensor(np.concatenate([m for m, _ in draws])),
        torch.as_tensor(np.concatenate([c for _, c in draws])),
    )
    torch.testing.assert_close(k, want_k, rtol=0, atol=0)
    torch.testing.assert_close(n, want_n, rtol=0, atol=0)
    # The draws differ, and fewer regions are observed in the second fraction's.
    assert not torch.equal(k[:7], k[7:14])
    assert (k[21:] + n[21:] > 0).float().mean() < (k[:21] + n[:21] > 0).float().mean()


def test_beats_logistic_regression_at_one_read_and_ties_it_at_full_coverage():
    data = make_data(3, n_regions=200)
    tr, va, te = (data.index(s) for s in ("train", "val", "test"))
    model, _ = fit_read_profiles(
        data.means[tr], data.y[tr], data.means[va], data.y[va], 3, ReadsConfig(latent_draws=64), seed=0
    )
    mu, sd = impute_standardise_params(data.means[tr])
    lr = fit_logreg(standardise(data.means[tr], mu, sd), data.y[tr], 0.1, 2000)
    right = {"reads": [], "lr": []}
    for d in range(5):
        means, cov = degrade(data.means[te], 1, 1.0, np.random.default_rng(d))
        right["reads"] += list(
            model(torch.as_tensor(means), torch.as_tensor(cov)).argmax(1).numpy() == data.y[te]
        )
        right["lr"] += list(full_proba(lr, standardise(means, mu, sd), 3).argmax(1) == data.y[te])
    assert np.mean(right["reads"]) >= np.mean(right["lr"]) + 0.05, {k: np.mean(v) for k, v in right.items()}
    full = model(torch.as_tensor(data.means[te]), torch.full(data.means[te].shape, 150.0)).argmax(1).numpy()
    assert (full == data.y[te]).mean() == 1.0


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match=r"tissue\.reads\.families"):
        ReadsConfig(families=["bogus"])
    with pytest.raises(ValueError, match=r"tissue\.reads\.families"):
        ReadsConfig(families=[])
    with pytest.raises(ValueError, match=r"tissue\.reads\.mixture_shrink"):
        ReadsConfig(mixture_shrink=[1.5])
    with pytest.raises(ValueError, match=r"tissue\.reads\.choose_observed"):
        ReadsConfig(choose_observed=[0.0])
    assert ReadsConfig.from_dict(schema_defaults("tissue.reads")) == ReadsConfig()


def test_a_split_without_validation_samples_or_a_class_is_refused():
    data = make_data(4)
    tr = data.index("train")
    with pytest.raises(ValueError, match="validation samples"):
        fit_read_profiles(data.means[tr], data.y[tr], data.means[:0], data.y[:0], 3, ReadsConfig())
    keep = tr[data.y[tr] != 2]
    with pytest.raises(ValueError, match="every class"):
        fit_read_profiles(data.means[keep], data.y[keep], data.means[tr], data.y[tr], 3, ReadsConfig())


def test_uncovered_training_regions_are_filled_from_their_class():
    data = make_data(5)
    tr, va, te = (data.index(s) for s in ("train", "val", "test"))
    holes = data.means[tr].copy()
    holes[::2, :40] = np.nan  # half the training samples miss a third of the regions
    model, _ = fit_read_profiles(
        holes, data.y[tr], data.means[va], data.y[va], 3, ReadsConfig(latent_draws=32)
    )
    assert all(torch.isfinite(b.float()).all() for b in model.buffers())
    pred = model(torch.as_tensor(data.means[te]), torch.full(data.means[te].shape, 30.0)).argmax(1).numpy()
    assert (pred == data.y[te]).mean() == 1.0


def test_fit_read_model_writes_what_the_summary_and_predict_read(tmp_path):
    data = make_data(6)
    out = tmp_path / "reads"
    test_metrics = fit_read_model(data, {"latent_draws": 64}, out, None, GRID, grid_seed=0, seed=0)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "reads" and metrics["granularity"] == "file" and metrics["history"] == []
    assert metrics["test"]["accuracy"] == test_metrics["accuracy"] == 1.0
    assert [(p["depth"], p["observed"]) for p in metrics["grid"]] == GRID.points()
    assert set(metrics["choices"]) >= {"mixture", "factor"}
    assert (
        metrics["calibration"]["fitted_on"] == "validation split, complete and degraded to the grid's points"
    )
    assert set(metrics["calibration"]["temperature_model"]) == {"a", "w", "mu", "sd", "lo", "hi"}
    # The exported model: loaded by predict, the same probabilities as the run's (calibrated).
    exported = load_exported(out / "model.pt")
    assert exported.kind == "reads" and exported.extra["temperature"] > 0
    predictor = TissuePredictor.load(out / "model.pt")
    assert predictor.calibrated
    te = data.index("test")
    proba = predictor.predict_arrays(data.means[te], np.asarray(data.coverage[te], np.float32))["ensemble"]
    assert list(proba.argmax(1)) == metrics["predictions"]["pred"]
    np.testing.assert_allclose(proba.max(1), metrics["predictions"]["confidence"], atol=1e-5)
    # build_model + load_state_dict takes the file's profile shapes (unknown when built).
    fresh = build_model("reads", exported.config, len(data.regions), 3, None, None, 150)
    fresh.load_state_dict(exported.weights)
    assert fresh.mixture_p.shape == exported.weights["mixture_p"].shape
    # The summary takes it like any model, with the grid and the paired tests.
    base_dir = tmp_path / "base.json"
    from genomelab.tissue.baselines import BaselineConfig, run_baselines

    base_dir.write_text(
        json.dumps(run_baselines(data, BaselineConfig(refit_budget=0), seed=0, sparsity=GRID))
    )
    summary_dir = tmp_path / "summary"
    build_summary(
        base_dir, {"reads": out / "metrics.json"}, {"reads": out / "diagnostics.json"}, [], summary_dir
    )
    table = (summary_dir / "comparison.tsv").read_text()
    assert "read-profile model\tmodel" in table
    grid = json.loads((summary_dir / "plots" / "grid.json").read_text())
    for point in grid["points"]:
        tests = point["methods"]["read-profile model"]["tests"]
        assert "logistic regression" in tests and "naive Bayes (read counts)" in tests
    # No training curve to draw for a closed-form fit (and no other model here).
    assert not (summary_dir / "plots" / "training_curves.png").exists()


def test_it_is_fitted_not_trained_and_its_overfit_check_fits_ten_samples(tmp_path):
    data = make_data(7)
    with pytest.raises(ValueError, match="closed form"):
        train_model("reads", data, {}, {}, tmp_path / "state", tmp_path / "out")
    results = check_overfit(data, ["reads"], {"reads": {"latent_draws": 16}}, DiagnosticsConfig(), seed=0)
    assert len(results) == 1 and results[0].status == "pass", results[0].message
    assert results[0].details["right"] == results[0].details["n"] == 10


def test_concentration_counts_only_the_covered_levels():
    """Levels filled in at their class mean have no residual: counted in the divisor, a region
    covered by 10% of the samples got a kappa ten times too large (review20)."""
    rng = np.random.default_rng(8)
    y = np.repeat([0, 1], 500)
    levels = rng.beta(np.where(y == 0, 1.0, 4.0), np.where(y == 0, 4.0, 1.0))[:, None]  # concentration 5
    means = np.stack([levels[y == c].mean(0) for c in (0, 1)])
    full = pooled_concentration(levels, y, means)
    observed = rng.random(levels.shape) < 0.1
    sparse_levels = np.where(observed, levels, means[y])  # what the fit's filling gives
    sparse_means = np.stack([levels[(y == c) & observed[:, 0]].mean(0) for c in (0, 1)])
    sparse = pooled_concentration(sparse_levels, y, sparse_means, observed)
    # m (1 - m) / v - 1 with m the pooled mean 0.5 and v = 0.0267 (Beta(1, 4)): about 8.4.
    assert 6 < full[0] < 11 and abs(sparse[0] - full[0]) < 2, (full, sparse)
    # Without the mask the filled levels shrink the variance: the old estimate.
    assert pooled_concentration(sparse_levels, y, sparse_means)[0] > 4 * full[0]


def test_more_factors_than_regions_are_capped():
    rng = np.random.default_rng(9)
    levels = rng.uniform(0.1, 0.9, (10, 3))
    mean, load = fit_factor(levels, 4, seed=0)
    assert mean.shape == (3,) and load.shape[0] <= 3 and np.isfinite(load).all()
    y = np.repeat([0, 1], 10)
    both = np.concatenate([levels, 1 - levels])
    model, _ = fit_read_profiles(both, y, both, y, 2, ReadsConfig(latent_draws=16), seed=0)
    assert all(torch.isfinite(b.float()).all() for b in model.buffers())


def test_the_fit_logs_its_test_metrics_in_the_line_a_trained_model_logs(tmp_path, caplog):
    data = make_data(8)
    train = {"max_epochs": 2, "batch_size": 8, "lr": 0.005, "patience": 10}
    line = re.compile(
        r"(?P<title>.+): test accuracy (?P<accuracy>[\d.]+), balanced (?P<balanced_accuracy>[\d.]+), "
        r"macro-F1 (?P<macro_f1>[\d.]+), ECE (?P<ece>[\d.]+)(?: \((?P<detail>.+)\))?$"
    )
    for kind in ("reads", "mlp"):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="genomelab.tissue.training"):
            if kind == "reads":
                test = fit_read_model(data, {"latent_draws": 16}, tmp_path / kind, seed=0)
            else:
                test = train_model(kind, data, {}, train, tmp_path / "state", tmp_path / kind, "cpu", seed=0)
        found = [m for r in caplog.records if (m := line.match(r.getMessage()))]
        assert len(found) == 1, [r.getMessage() for r in caplog.records]
        logged = found[0]
        assert logged["title"] == MODEL_TITLES[kind]
        for name in ("accuracy", "balanced_accuracy", "macro_f1", "ece"):
            assert float(logged[name]) == pytest.approx(test[name], abs=5e-4), name
        # The fit adds the settings chosen on validation; a trained model has nothing to add.
        if kind == "reads":
            assert logged["detail"].startswith("settings: {'mixture'"), logged["detail"]
        else:
            assert logged["detail"] is None
