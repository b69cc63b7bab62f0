"""deconv, issue 19: UXM-style marker selection (U/M-fraction differences, hypo and hyper per
cell type), U-fraction atlases read on the methylated scale, both families chosen on validation."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.deconv.reference import (
    ALL_REGIONS,
    ReferenceConfig,
    choose_markers,
    fixed_markers,
    select_markers_uxm,
    uxm_scores,
)

TISSUES = ["Liver-Hep", "Blood-Granul", "Lung-Ep-Alveo", "Colon-Ep"]


def _u_atlas(rng, n_per: int = 20, n_flat: int = 40) -> np.ndarray:
    """U fractions [4 * n_per + n_flat, 4]: ``n_per`` blocks per cell type unmethylated only in
    it (U ~0.85 there, ~0.05 elsewhere, as in UXM's U atlases), then methylated-everywhere blocks."""
    n_t = len(TISSUES)
    u = rng.uniform(0.02, 0.08, (n_t * n_per + n_flat, n_t))
    for t in range(n_t):
        u[t * n_per : (t + 1) * n_per, t] = rng.uniform(0.75, 0.95, n_per)
    return u


def test_uxm_scores_by_hand():
    # U fractions of three cell types; uxm_scores takes the methylated scale (1 - U).
    u = np.array([[0.9, 0.1, 0.05], [0.1, 0.8, 0.9], [0.5, 0.4, 0.45], [0.05, 0.9, 0.1]])
    hypo_means, hypo_q = uxm_scores(1 - u, 0, 0.025)["hypo"]
    # block 0: 0.9 - mean(0.1, 0.05); quantile 0.975 of (0.1, 0.05) = 0.05 + 0.975 * 0.05
    assert hypo_means[0] == pytest.approx(0.825) and hypo_q[0] == pytest.approx(0.9 - 0.09875)
    hyper_means, hyper_q = uxm_scores(1 - u, 0, 0.025)["hyper"]
    # block 1: mean(0.8, 0.9) - 0.1; quantile 0.025 of (0.8, 0.9) = 0.8025
    assert hyper_means[1] == pytest.approx(0.75) and hyper_q[1] == pytest.approx(0.7025)
    # Cell type 1 at block 1: delta_means 0.8 - 0.5 = 0.3 passes, the quantile (0.88) does not.
    m1, q1 = uxm_scores(1 - u, 1, 0.025)["hypo"]
    assert m1[1] == pytest.approx(0.3) and q1[1] == pytest.approx(0.8 - 0.88)
    cfg = ReferenceConfig(values="u_fraction", uxm_top_hypo=5, uxm_top_hyper=5)
    idx, rec = select_markers_uxm(1 - u, cfg, ["a", "b", "c"])
    assert idx.tolist() == [0, 1, 3]  # block 2 differs by < 0.3 everywhere
    # a: hypo at 0; hyper at 1 and 3 (mean(0.9, 0.1) - 0.05 = 0.45, 0.1 + 0.025 * 0.8 - 0.05 > 0)
    assert rec["a"] == {"hypo": 1, "hypo_passing": 1, "hyper": 2, "hyper_passing": 2}
    assert rec["b"]["hypo"] == 1  # block 3 only: block 1 fails the quantile filter
    assert rec["c"]["hypo"] == 1  # block 1: 0.9 - 0.45 = 0.45; 0.9 - (0.1 + 0.975 * 0.7) > 0


def test_u_fraction_atlas_gives_hypomethylated_markers(rng):
    u = _u_atlas(rng)
    for method in ("uxm", "methatlas", "both"):
        cfg = ReferenceConfig(values="u_fraction", marker_method=method, hypo_per_tissue=10, min_delta=0.3)
        idx, rec = fixed_markers(u, cfg, TISSUES)
        for t, tissue in enumerate(TISSUES):
            assert rec[tissue]["hypo"] > 0, (method, tissue)
            own = set(range(t * 20, (t + 1) * 20))
            assert own & set(idx.tolist())
        assert not set(idx.tolist()) & set(range(80, 120))  # flat blocks are no markers
    # The same numbers read as betas: the blocks count as hypermethylated, none as hypo.
    _, rec = fixed_markers(
        u, ReferenceConfig(values="beta", marker_method="methatlas", min_delta=0.3), TISSUES
    )
    assert all(v["hypo"] == 0 and v["hyper"] > 0 for v in rec.values())


def test_uxm_top_and_thresholds_are_honoured(rng):
    u = _u_atlas(rng)
    idx, rec = select_markers_uxm(1 - u, ReferenceConfig(uxm_top_hypo=3, uxm_top_hyper=0), TISSUES)
    assert len(idx) == 12 and all(v["hypo"] == 3 and v["hypo_passing"] == 20 for v in rec.values())
    with pytest.raises(ValueError, match="uxm_delta_means=0.95"):
        select_markers_uxm(1 - u, ReferenceConfig(uxm_delta_means=0.95), TISSUES)
    with pytest.raises(ValueError, match="reference.values"):
        ReferenceConfig(values="m_fraction")
    with pytest.raises(ValueError, match="reference.marker_method"):
        ReferenceConfig(marker_method="best")


def test_both_families_chosen_on_validation(rng):
    u = _u_atlas(rng, n_flat=300)
    n = 150
    props = rng.dirichlet(np.ones(len(TISSUES)), n)
    # Validation mixtures: markers clean, the flat blocks noisy (e.g. batch-affected).
    mix = props @ u.T
    mix[:, 80:] += rng.normal(0, 0.2, (n, u.shape[0] - 80))
    cfg = ReferenceConfig(values="u_fraction", marker_method="both", hypo_per_tissue=10, min_delta=0.3)
    idx, per_tissue, rec = choose_markers(u, cfg, TISSUES, mix, props)
    names = set(rec["candidates"])
    assert {"x1 markers", "uxm top 25+10", "uxm top 250+100", ALL_REGIONS} <= names
    best = min(v["nnls_val_mae"] for v in rec["candidates"].values())
    assert rec["candidates"][rec["chosen"]]["nnls_val_mae"] == best
    assert rec["chosen"] != ALL_REGIONS and set(idx.tolist()) <= set(range(80))
    assert rec["candidates"][ALL_REGIONS]["nnls_val_mae"] > best
    only = ReferenceConfig(values="u_fraction", marker_method="uxm")
    _, _, rec = choose_markers(u, only, TISSUES, mix, props)
    assert all(k.startswith("uxm") or k == ALL_REGIONS for k in rec["candidates"])
