"""Issue 18, small truths: in-fold region selection, the C grid's tie-break, diagnostic wording."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.diagnostics import SKIP
from genomelab.tissue import diagnostics as dg
from genomelab.tissue.baselines import BaselineConfig, choose_c
from genomelab.tissue.task import TaskConfig, TissueData, select_regions
from tissue_toy import toy_task


def make_data(seed: int = 0, n_per: int = 12, n_regions: int = 40, n_classes: int = 3) -> TissueData:
    """Region means of ``n_classes`` classes; regions 0-4 separate the classes, the rest are noise.

    Each class has ``n_per`` samples, split 6 train / 3 val / 3 test."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    means = rng.uniform(0.2, 0.8, (len(y), n_regions)).astype(np.float32)
    means[:, :5] = np.clip(0.15 + 0.3 * y[:, None] + rng.normal(0, 0.05, (len(y), 5)), 0, 1)
    split = np.tile(np.array(["train"] * 6 + ["val"] * 3 + ["test"] * 3)[:n_per], n_classes)
    return toy_task(means, y, split)


def test_region_selection_uses_training_rows_only():
    data = make_data()
    chosen = select_regions(data, 5)
    assert chosen.regions.tolist() == [f"r{i}" for i in range(5)]
    assert chosen.means.shape == (len(data.y), 5)
    # Plant a region that separates the classes perfectly in val and test only: a selection
    # on the whole cohort would pick it; the in-fold selection must not see it, and must not
    # change at all whatever the held-out rows hold.
    leaky = make_data()
    held_out = leaky.split != "train"
    leaky.means[held_out, 20] = leaky.y[held_out] * 0.45
    leaky.means[held_out, 5:20] = np.random.default_rng(9).uniform(0, 1, (held_out.sum(), 15))
    assert select_regions(leaky, 5).regions.tolist() == chosen.regions.tolist()
    # What a whole-cohort selection would see (every row a training row) picks the planted region.
    leaky.means[held_out, 5:20] = data.means[held_out, 5:20]
    leaky.split = np.full(len(leaky.y), "train")
    assert "r20" in select_regions(leaky, 6).regions.tolist()


def test_region_selection_zero_keeps_all_and_config_checks():
    data = make_data()
    assert select_regions(data, 0) is data
    assert TaskConfig().select_regions == 0
    with pytest.raises(ValueError, match="select_regions must be >= 0"):
        TaskConfig(select_regions=-1)


def test_c_grid_is_a_wide_log_grid_and_ties_go_to_nll_then_smaller_c():
    grid = BaselineConfig().lr_c_grid
    assert min(grid) == pytest.approx(1e-4) and max(grid) == pytest.approx(10)
    assert np.allclose(np.diff(np.log10(grid)), 1)
    scores = {
        0.01: {"accuracy": 0.9, "nll": 0.5},
        0.1: {"accuracy": 0.9, "nll": 0.3},
        1.0: {"accuracy": 0.9, "nll": 0.3},
        10.0: {"accuracy": 0.8, "nll": 0.1},
    }
    assert choose_c(scores) == 0.1


def test_variance_message_agrees_with_its_figures():
    data = make_data(n_regions=6)  # 5 of 6 regions separate the classes
    result = dg.check_variance(data, dg.DiagnosticsConfig())[0]
    assert result.details["fraction_significant"] > 0.5
    assert "minority" not in result.message and "most regions" in result.message
    few = make_data(n_regions=200)
    result = dg.check_variance(few, dg.DiagnosticsConfig())[0]
    assert result.details["fraction_significant"] < 0.5
    assert "a minority of regions" in result.message


def test_subtype_check_says_skipped_when_nothing_was_tested(tmp_path):
    import h5py
    from genomelab.io.features import create_features
    from genomelab.io.hdf5 import STR

    data = make_data()
    h5 = tmp_path / "f.h5"
    with h5py.File(h5, "w") as f:
        create_features(f, len(data.y), data.regions, 150, "test")
        f["means"][...] = data.means
        f["coverage"][...] = data.coverage
        for key, values in (
            ("samples", data.samples),
            ("tissue", data.labels),
            ("subtype", [""] * len(data.y)),
        ):
            f.create_dataset(key, data=np.asarray(values, dtype=object), dtype=STR)
    result = dg.check_subtypes(h5, TaskConfig(), dg.DiagnosticsConfig(), seed=0)[0]
    assert result.status == SKIP and "skipped" in result.message
