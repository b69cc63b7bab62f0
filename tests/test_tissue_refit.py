"""Logistic regression refit on each test sample's observed regions: the fair baseline of the
sparsity grid that leaves a missing region out instead of imputing it."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.tissue.baselines import (
    LOGREG_REFIT,
    BaselineConfig,
    fit_logreg,
    full_proba,
    refit_observed_proba,
    run_baselines,
)
from genomelab.tissue.sparse import SparsityConfig
from tissue_toy import toy_task


def two_region_task(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """x [120, 6] standardised-like: region 0 separates the classes cleanly, regions 1-2 with
    noise, 3-5 are noise. A full model leans on region 0; without it, a refit leans on 1-2."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], 60)
    sign = np.where(y == 1, 1.0, -1.0)
    x = rng.normal(0, 1, (120, 6))
    x[:, 0] = sign * 3 + rng.normal(0, 0.3, 120)
    x[:, 1:3] += sign[:, None] * 0.8
    return x, y


def test_refit_equals_a_model_fitted_on_the_observed_regions():
    x, y = two_region_task()
    full = fit_logreg(x, y, 1.0, 2000)
    observed = np.ones((6, 6), bool)
    observed[:3, 0] = False  # three samples share one pattern (no region 0)
    observed[3, 3:] = False  # one sample has its own
    x_test = np.where(observed, x[:6], 0.0)
    proba, counts = refit_observed_proba(x, y, x_test, observed, full, 1.0, 2, budget=10)
    assert counts == {"refits": 2, "fallback_samples": 0}
    own = fit_logreg(x[:, 1:], y, 1.0, 2000)
    assert np.allclose(proba[:3], full_proba(own, x_test[:3, 1:], 2), atol=1e-6)
    own3 = fit_logreg(x[:, :3], y, 1.0, 2000)
    assert np.allclose(proba[3], full_proba(own3, x_test[3:4, :3], 2)[0], atol=1e-6)
    # Every region observed: the full model, not a refit.
    assert np.allclose(proba[4:], full_proba(full, x_test[4:], 2))
    # Leaving region 0 out, the refit trusts regions 1-2 more than the imputed full model does.
    imputed = full_proba(full, x_test[:3], 2)
    assert np.abs(proba[:3, 1] - 0.5).mean() > np.abs(imputed[:, 1] - 0.5).mean()


def test_patterns_past_the_budget_fall_back_to_mean_imputation():
    x, y = two_region_task(1)
    full = fit_logreg(x, y, 1.0, 2000)
    observed = np.ones((5, 6), bool)
    observed[:3, 0] = False  # the most frequent pattern: refitted first
    observed[3:, 1] = False  # the rarer one: past a budget of 1
    x_test = np.where(observed, x[:5], 0.0)
    proba, counts = refit_observed_proba(x, y, x_test, observed, full, 1.0, 2, budget=1)
    assert counts == {"refits": 1, "fallback_samples": 2}
    assert np.allclose(proba[3:], full_proba(full, x_test[3:], 2))
    assert not np.allclose(proba[:3], full_proba(full, x_test[:3], 2))
    # Nothing observed: nothing to refit on, the imputed model (its intercept) answers.
    none = np.zeros((1, 6), bool)
    p0, c0 = refit_observed_proba(x, y, np.zeros((1, 6)), none, full, 1.0, 2, budget=5)
    assert c0["refits"] == 0 and np.allclose(p0, full_proba(full, np.zeros((1, 6)), 2))


def test_run_baselines_writes_the_refit_grid_and_its_counts():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 20)
    means = np.clip(rng.uniform(0.2, 0.8, 40) + rng.normal(0, 0.05, (60, 40)), 0, 1)
    for c in range(3):
        means[y == c, 5 * c : 5 * c + 5] = 0.9
    split = np.tile(np.array(["train"] * 12 + ["val"] * 4 + ["test"] * 4), 3)
    data = toy_task(means.astype(np.float32), y, split)
    grid = SparsityConfig(depths=[30], observed=[1.0, 0.5])
    base = run_baselines(data, BaselineConfig(lr_c_grid=[1.0], refit_budget=3), seed=0, sparsity=grid)
    refit = base["grid_methods"][LOGREG_REFIT]
    assert refit["params"] == {"C": 1.0, "refit_budget": 3}
    full, half = refit["grid"]
    # All regions observed: identical to mean-imputed logistic regression, no refits.
    lr = base["methods"]["logistic regression"]["grid"][0]
    assert full["refits"] == 0 and full["predictions"] == lr["predictions"]
    # Half observed: 12 test samples, 12 patterns, 3 refitted, 9 past the budget.
    assert half["refits"] == 3 and half["fallback_samples"] == 9
    assert (
        half["predictions"]["sample"]
        == base["methods"]["logistic regression"]["grid"][1]["predictions"]["sample"]
    )
    off = run_baselines(data, BaselineConfig(lr_c_grid=[1.0], refit_budget=0), seed=0, sparsity=grid)
    assert "grid_methods" not in off


def test_refit_budget_must_not_be_negative():
    with pytest.raises(ValueError, match="tissue.baselines.refit_budget"):
        BaselineConfig(refit_budget=-1)
