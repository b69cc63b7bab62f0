"""The read-count naive Bayes baseline (genomelab.tissue.baselines.ReadNaiveBayes)."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.tissue.baselines import (
    NAIVE_BAYES,
    BaselineConfig,
    ReadNaiveBayes,
    fit_logreg,
    full_proba,
    run_baselines,
)
from genomelab.tissue.sparse import SparsityConfig
from genomelab.tissue.task import impute_standardise_params, standardise
from scipy.special import gammaln
from scipy.stats import betabinom
from tissue_toy import toy_task


def _cohort(n_per_class: int, n_regions: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Betas [n, R] of 3 classes whose region levels differ a little everywhere (many weak
    signals: what single reads at many regions give), their labels, the class levels [3, R]."""
    rng = np.random.default_rng(seed)
    levels = np.clip(rng.uniform(0.2, 0.8, n_regions)[None] + rng.normal(0, 0.12, (3, n_regions)), 0.05, 0.95)
    y = np.repeat(np.arange(3), n_per_class)
    betas = np.clip(levels[y] + rng.normal(0, 0.05, (len(y), n_regions)), 0.01, 0.99)
    return betas.astype(np.float32), y, levels


def test_log_likelihood_is_the_beta_binomial_of_the_reads():
    betas, y, _ = _cohort(20, 30, seed=0)
    nb = ReadNaiveBayes().fit(betas, y, 3)
    rng = np.random.default_rng(1)
    depth = rng.integers(1, 12, (4, 30)).astype(float)
    k = rng.binomial(depth.astype(int), 0.5)
    means = k / depth
    means[0, :10] = np.nan  # unobserved regions add nothing
    depth[1, 10:20] = 0  # nor do regions without reads
    got = nb.log_likelihood(means, depth)
    for i in range(4):
        for c in range(3):
            obs = np.isfinite(means[i]) & (depth[i] > 0)
            d, kk = depth[i, obs], np.rint(means[i, obs] * depth[i, obs])
            pmf = betabinom.logpmf(kk, d, nb.a_[c, obs], nb.b_[c, obs])
            # scipy's pmf includes log C(d, k), which is the same for every class.
            log_choose = gammaln(d + 1) - gammaln(kk + 1) - gammaln(d - kk + 1)
            want = (pmf - log_choose).sum() + nb.log_prior_[c]
            assert got[i, c] == pytest.approx(want, rel=1e-9, abs=1e-9)


def test_unobserved_regions_change_nothing():
    betas, y, _ = _cohort(15, 40, seed=2)
    nb = ReadNaiveBayes().fit(betas, y, 3)
    means = betas[:5, :20].astype(np.float64)
    cov = np.full(means.shape, 7.0)
    wide = np.concatenate([means, np.full((5, 20), np.nan)], 1)
    wide_cov = np.concatenate([cov, np.full((5, 20), 30.0)], 1)
    narrow = ReadNaiveBayes().fit(betas[:, :20], y, 3)
    np.testing.assert_allclose(nb.predict_proba(wide, wide_cov), narrow.predict_proba(means, cov), rtol=1e-10)


def test_beats_logistic_regression_at_one_read_per_region():
    """Single reads at many weakly informative regions: the read likelihood uses each read
    for what it is; logistic regression fitted on complete betas sees 0/1 values it was not
    trained on. Bayes-like reasoning must win clearly here."""
    betas, y, levels = _cohort(60, 400, seed=3)
    nb = ReadNaiveBayes().fit(betas, y, 3)
    mu, sd = impute_standardise_params(betas)
    lr = fit_logreg(standardise(betas, mu, sd), y, 0.1, 2000)
    rng = np.random.default_rng(4)
    y_test = np.repeat(np.arange(3), 100)
    truth = np.clip(levels[y_test] + rng.normal(0, 0.05, (300, 400)), 0.01, 0.99)
    # One read at each of a random 10% of regions, the rest unobserved.
    reads = rng.binomial(1, truth).astype(float)
    reads[rng.random(reads.shape) > 0.1] = np.nan
    cov = np.where(np.isfinite(reads), 1.0, 0.0)
    acc_nb = (nb.predict_proba(reads, cov).argmax(1) == y_test).mean()
    acc_lr = (full_proba(lr, standardise(reads, mu, sd), 3).argmax(1) == y_test).mean()
    assert acc_nb > 0.75
    assert acc_nb > acc_lr + 0.05


def test_class_with_one_training_sample_gets_a_finite_likelihood():
    betas, y, _ = _cohort(10, 25, seed=5)
    keep = np.r_[np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:1]]
    nb = ReadNaiveBayes().fit(betas[keep], y[keep], 4)  # class 3: no sample at all
    ll = nb.log_likelihood(betas[:6].astype(float), np.full((6, 25), 10.0))
    assert np.isfinite(ll).all()
    assert np.isfinite(nb.a_).all() and (nb.a_ > 0).all() and (nb.b_ > 0).all()


def test_shape_mismatch_names_the_shapes():
    betas, y, _ = _cohort(5, 10, seed=6)
    nb = ReadNaiveBayes().fit(betas, y, 3)
    with pytest.raises(ValueError, match=r"naive Bayes: means \(2, 9\)"):
        nb.predict_proba(np.zeros((2, 9)), np.ones((2, 9)))


def test_run_baselines_reports_it_with_a_grid():
    betas, y, _ = _cohort(20, 50, seed=7)
    split = np.array((["train"] * 12 + ["val"] * 4 + ["test"] * 4) * 3)
    data = toy_task(betas, y, split)
    res = run_baselines(
        data, BaselineConfig(refit_budget=0), seed=0, sparsity=SparsityConfig(depths=[1], observed=[0.5])
    )
    rec = res["methods"][NAIVE_BAYES]
    assert rec["test"]["accuracy"] > 0.9  # 50 informative regions at 150 calls each
    assert len(rec["grid"]) == 1 and 0 <= rec["grid"][0]["accuracy"] <= 1
    assert len(rec["predictions"]["sample"]) == len(data.index("test"))


def test_attention_read_likelihood_pathway_is_the_naive_bayes_sum():
    """The attention option ``read_likelihood`` adds the baseline's own log-likelihood
    (centred over classes, times its learned weight) to the logits; the exported buffers
    carry it, so a model rebuilt for prediction gives the same outputs."""
    import torch
    from genomelab.config import schema_defaults
    from genomelab.tissue.models import build_model

    betas, y, _ = _cohort(12, 40, seed=8)
    nb = ReadNaiveBayes().fit(betas, y, 3)
    cfg = {**schema_defaults("tissue.attention"), "read_likelihood": True}
    mu, sd = impute_standardise_params(betas)
    model = build_model("attention", cfg, 40, 3, mu, sd, 150, (nb.a_, nb.b_)).eval()
    rng = np.random.default_rng(9)
    means = np.where(rng.random((5, 40)) < 0.5, np.nan, betas[:5]).astype(np.float32)
    cov = np.full((5, 40), 20.0, np.float32)
    with torch.no_grad():
        got = model.reads(torch.from_numpy(means), torch.from_numpy(cov)).numpy()
        obs = np.isfinite(means)
        n_obs = obs.sum(1)
        depth = (cov * obs).sum(1) / np.maximum(n_obs, 1)
        g = 10 * model.reads.gate.numpy()
        weight = np.exp(g[0] + g[1] * np.log1p(n_obs) + g[2] * np.log1p(depth))
    ll = nb.log_likelihood(means, cov) - nb.log_prior_[None]
    want = weight[:, None] * (ll - ll.mean(1, keepdims=True))
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4)
    rebuilt = build_model("attention", cfg, 40, 3, np.zeros(40, np.float32), np.ones(40, np.float32), 150)
    rebuilt.load_state_dict(model.state_dict())
    with torch.no_grad():
        x = (torch.from_numpy(means), torch.from_numpy(cov))
        np.testing.assert_allclose(rebuilt.eval()(*x).numpy(), model(*x).numpy(), rtol=1e-6)


def test_attention_exported_before_the_option_loads_without_it(tmp_path):
    """An attention model exported before ``read_likelihood`` existed (its config lacks the
    key) is rebuilt as it was trained, without the pathway, whatever new runs default to."""
    import dataclasses

    import torch
    from genomelab.predict.tissue import TissuePredictor
    from genomelab.tissue.models import AttentionConfig, build_model, exported_config
    from genomelab.train.export import load_exported, save_exported

    cfg = AttentionConfig(read_likelihood=False)
    mu, sd = np.full(20, 0.5, np.float32), np.full(20, 0.2, np.float32)
    model = build_model("attention", cfg, 20, 3, mu, sd, 150).eval()
    old_config = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "read_likelihood"}
    path = tmp_path / "old.pt"
    save_exported(
        path,
        model,
        kind="attention",
        config=old_config,
        ids={"classes": ["a", "b", "c"], "regions": [f"r{i}" for i in range(20)]},
        data_fingerprint="0",
        extra={"n_positions": 150},
    )
    # Whatever the schema default of new runs (on since round 4), the old file keeps its behaviour.
    assert exported_config("attention", old_config)["read_likelihood"] is False
    predictor = TissuePredictor(load_exported(path), path)
    (member,) = predictor.members.values()
    assert member.reads is None
    x = (torch.rand(2, 20), torch.full((2, 20), 30.0))
    with torch.no_grad():
        torch.testing.assert_close(member(*x), model(*x))
