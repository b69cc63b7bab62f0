"""Sparsity-aware training and the evaluation grid: degradation, the masked single-layer model,
the grid in baselines, ensembles and the fold summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from genomelab.tissue.baselines import BaselineConfig, CentroidClassifier, run_baselines
from genomelab.tissue.models import MaskedConfig, MaskedLinear, build_model
from genomelab.tissue.report import build_fold_summary
from genomelab.tissue.sparse import SparsityConfig, degrade, degrade_batch, grid_inputs
from genomelab.tissue.task import TissueData
from genomelab.tissue.training import combine_members, train_model
from tissue_toy import toy_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The masked model trains at tissue.masked.lr_scale (3) x this rate.
TRAIN = {"max_epochs": 40, "batch_size": 16, "lr": 0.003, "patience": 15}
GRID = SparsityConfig(depths=[30, 1], observed=[1.0, 0.1])


def make_data(seed: int, n_per: int = 20, n_regions: int = 120, n_classes: int = 3) -> TissueData:
    """Three classes, each with 8 marker regions (level 0.15 vs 0.85); others shared noise.
    Split 12 train / 4 val / 4 test per class."""
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per)
    base = rng.uniform(0.1, 0.9, n_regions)
    means = np.clip(base + rng.normal(0, 0.05, (len(y), n_regions)), 0, 1)
    for c in range(n_classes):
        markers = np.arange(8 * c, 8 * (c + 1))
        means[np.ix_(y == c, markers)] = np.clip(0.85 + rng.normal(0, 0.05, ((y == c).sum(), 8)), 0, 1)
        means[np.ix_(y != c, markers)] = np.clip(0.15 + rng.normal(0, 0.05, ((y != c).sum(), 8)), 0, 1)
    split = np.tile(np.array(["train"] * 12 + ["val"] * 4 + ["test"] * 4), n_classes)
    return toy_task(means, y, split, prefix=f"f{seed}_")


def test_degrade_draws_reads_and_masks_as_asked():
    rng = np.random.default_rng(0)
    means = np.full((200, 500), 0.3, np.float32)
    means[:, :10] = np.nan  # never covered: stays missing
    m, c = degrade(means, 10, 0.5, rng)
    kept = np.isfinite(m)
    assert not kept[:, :10].any()
    assert kept[:, 10:].mean() == pytest.approx(0.5, abs=0.01)
    assert set(np.unique(c[kept])) == {10.0} and (c[~kept] == 0).all()
    assert np.allclose(m[kept] * 10, np.round(m[kept] * 10))  # counts of 10 reads
    assert m[kept].mean() == pytest.approx(0.3, abs=0.005) and m[kept].var() == pytest.approx(0.021, rel=0.1)
    one, _ = degrade(means, 1, 1.0, rng)
    assert set(np.unique(one[np.isfinite(one)])) == {0.0, 1.0}
    # Each grid point has its own seed: two calls give the same inputs, two points differ.
    a, b = list(grid_inputs(means, GRID, seed=3)), list(grid_inputs(means, GRID, seed=3))
    assert all(np.array_equal(x["means"], y["means"], equal_nan=True) for x, y in zip(a, b, strict=True))
    assert [(p["depth"], p["observed"]) for p in a] == [(30, 1.0), (30, 0.1), (1, 1.0), (1, 0.1)]


def test_degrade_batch_degrades_the_asked_fraction_of_samples():
    torch.manual_seed(0)
    means = torch.full((400, 300), 0.6)
    m, c = degrade_batch(means, torch.full_like(means, 150.0), 0.5, (1, 30), (0.02, 1.0))
    changed = (c != 150).any(1)
    assert changed.float().mean().item() == pytest.approx(0.5, abs=0.08)
    assert torch.equal(m[~changed], means[~changed])
    obs = torch.isfinite(m[changed])
    # Observed fractions are log-uniform in [0.02, 1]: mean (1 - 0.02) / ln 50 = 0.25.
    assert obs.float().mean().item() == pytest.approx(0.98 / np.log(50), abs=0.04)
    assert set(c[changed][obs].unique().tolist()) <= set(range(1, 31))


def test_centroid_on_observed_regions_ignores_missing_ones():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (30, 20))
    y = np.repeat([0, 1, 2], 10)
    x[:, 0] += 3 * y
    cc = CentroidClassifier().fit(x, y)
    obs = np.ones_like(x, bool)
    assert np.allclose(cc.predict_proba_observed(x, obs), cc.predict_proba(x))
    # Observed on region 0 only: the distances there alone decide.
    only = np.zeros_like(x, bool)
    only[:, 0] = True
    pred = cc.predict_proba_observed(x, only).argmax(1)
    assert (pred == np.argmin(np.abs(x[:, :1] - cc.centroids_[:, 0][None]), axis=1)).all()


def test_masked_model_reads_any_subset_and_ignores_missing_regions():
    r = 12
    model = MaskedLinear(r, 3, MaskedConfig(), np.full(r, 0.5, np.float32), np.full(r, 0.1, np.float32))
    model.eval()
    means = torch.rand(4, r)
    cov = torch.full((4, r), 10.0)
    means[:, 5:] = float("nan")
    cov[:, 5:] = 0
    base = model(means, cov)
    # An unobserved region contributes nothing whatever its weights.
    with torch.no_grad():
        model.linear.weight[:, 5:r] += 100.0
        model.linear.weight[:, r + 5 : 2 * r] += 100.0
        model.linear.weight[:, 2 * r + 5 :] += 100.0
    assert torch.allclose(model(means, cov), base)


def test_grid_in_baselines_ensemble_and_fold_summary(tmp_path):
    """Two folds of a 3-class task: baselines and a masked-model ensemble write their grids;
    the fold summary pools them with the paired tests at every point."""
    baselines, metrics = [], []
    for fold in range(2):
        data = make_data(fold)
        base = run_baselines(data, BaselineConfig(lr_c_grid=[0.1, 1.0]), seed=0, sparsity=GRID)
        lr_grid = base["methods"]["logistic regression"]["grid"]
        assert [(p["depth"], p["observed"]) for p in lr_grid] == [(30, 1.0), (30, 0.1), (1, 1.0), (1, 0.1)]
        assert lr_grid[0]["accuracy"] == 1.0  # 30 reads, all regions: easy
        bpath = tmp_path / f"base{fold}.json"
        bpath.write_text(json.dumps(base))
        baselines.append(bpath)
        member = tmp_path / f"f{fold}" / "m0"
        train_model("masked", data, {}, TRAIN, tmp_path / "st" / str(fold), member, "cpu", seed=fold)
        combine_members(
            "masked",
            data,
            [member / "model.pt"],
            [member / "metrics.json"],
            [member / "diagnostics.json"],
            tmp_path / f"f{fold}" / "ens",
            sparsity=GRID,
            grid_seed=0,
        )
        ens = json.loads((tmp_path / f"f{fold}" / "ens" / "metrics.json").read_text())
        assert len(ens["grid"]) == 4 and ens["grid"][0]["accuracy"] >= 0.9
        # Same degraded samples for model and baselines at each point (paired).
        assert ens["grid"][3]["predictions"]["sample"] == lr_grid[3]["predictions"]["sample"]
        metrics.append(tmp_path / f"f{fold}" / "ens" / "metrics.json")
        (tmp_path / f"f{fold}" / "ens" / "diag.json").write_text(
            json.dumps({"module": "tissue", "results": []})
        )
    folds = tmp_path / "folds.tsv"
    rows = ["sample\tfold"] + [f"f{f}_{i}\t{f}" for f in range(2) for i in range(60) if i % 20 >= 16]
    folds.write_text("\n".join(rows) + "\n")
    build_fold_summary(
        folds,
        baselines,
        {"masked": metrics},
        {"masked": [tmp_path / f"f{f}" / "ens" / "diag.json" for f in range(2)]},
        [],
        tmp_path / "out",
    )
    grid = json.loads((tmp_path / "out" / "plots" / "grid.json").read_text())
    assert grid["n_folds"] == 2 and len(grid["points"]) == 4
    point = grid["points"][3]
    masked = point["methods"]["masked single-layer model"]
    assert set(masked["tests"]) == {
        "logistic regression",
        "logistic regression (refit on observed)",
        "nearest centroid",
        "naive Bayes (read counts)",
    }
    assert masked["tests"]["logistic regression"]["p_value"] <= 1
    # Holm's adjustment over the 4 points of each model x baseline pair: never below the raw p.
    for pt in grid["points"]:
        for t in pt["methods"]["masked single-layer model"]["tests"].values():
            assert t["p_value"] <= t["p_value_holm"] <= 1
    header = (tmp_path / "out" / "plots" / "grid.tsv").read_text().splitlines()[0].split("\t")
    assert header[-5:] == [
        "p_vs_logistic_regression",
        "p_vs_logistic_regression_holm",
        "p_vs_best_fair_baseline",
        "p_vs_best_fair_baseline_holm",
        "ece",
    ]
    # ECE after scaling at each point: the models' (calibrated, bins pooled over folds), not
    # the baselines' (their grid probabilities are not temperature-scaled).
    rows = [r.split("\t") for r in (tmp_path / "out" / "plots" / "grid.tsv").read_text().splitlines()[1:]]
    assert all((r[-1] != "") == (r[3] == "model") for r in rows)
    assert all(0 <= float(r[-1]) <= 1 for r in rows if r[3] == "model")
    assert "ECE after scaling at the grid points" in (tmp_path / "out" / "summary.md").read_text()
    assert (tmp_path / "out" / "plots" / "grid.tsv").read_text().startswith("depth\tobserved\tmethod")
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert (
        "logistic regression (refit on observed):" in summary
        and "refits over 8 fold x grid points" in summary
    )
    assert "logistic regression (refit on observed)" in point["methods"]
    cov = json.loads((tmp_path / "out" / "plots" / "coverage.json").read_text())
    assert cov["masked single-layer model"]["coverage_curve"]["coverage"][0] == 1.0
    assert (tmp_path / "out" / "plots" / "reliability.png").exists()


def _grid_of_pooled(right: dict[str, list[list[bool]]]) -> dict[str, list[list[dict]]]:
    """One fold's grid per method from [points][samples] right/wrong (all true labels 0)."""
    grids = {}
    for name, points in right.items():
        grid = []
        for i, ok in enumerate(points):
            preds = {"sample": [f"s{j}" for j in range(len(ok))], "true": [0] * len(ok)}
            preds["pred"] = [0 if r else 1 for r in ok]
            acc = float(np.mean(ok))
            grid.append(
                {
                    "depth": 1 + i,
                    "observed": 0.1,
                    "accuracy": acc,
                    "balanced_accuracy": acc,
                    "predictions": preds,
                }
            )
        grids[name] = [grid]
    return grids


def test_grid_notes_count_points_below_a_baseline_raw_and_after_holm(tmp_path):
    from genomelab.tissue.report import write_grid

    n = 40
    # Point 0: naive Bayes right on 8 samples the model misses, never the reverse (exact
    # McNemar p = 2 / 2^8 = 0.0078; Holm over 2 points: 0.016, still significant). Point 1:
    # 6 such samples (p = 0.031; Holm 0.031 as the larger p: significant too). With a third,
    # tied point the family grows and point 1's adjusted p is 0.062: not significant.
    model = [[True] * 32 + [False] * 8, [True] * 34 + [False] * 6, [True] * n]
    nb = [[True] * n, [True] * n, [True] * n]
    kinds = {"attention": "model", "naive Bayes (read counts)": "baseline"}
    notes: list[str] = []
    write_grid(
        _grid_of_pooled({"attention": model[:2], "naive Bayes (read counts)": nb[:2]}),
        kinds,
        tmp_path / "a",
        notes,
    )
    below = [x for x in notes if x.startswith("attention: significantly below")]
    assert below == [
        "attention: significantly below a fair baseline at 2 of 2 grid points by the raw p (< 0.05) "
        "(1 read(s) / 10% observed: naive Bayes (read counts) (p = 0.0078); 2 read(s) / 10% observed: "
        "naive Bayes (read counts) (p = 0.031)), at 2 after Holm's adjustment across the points."
    ]
    notes = []
    write_grid(
        _grid_of_pooled({"attention": model, "naive Bayes (read counts)": nb}), kinds, tmp_path / "b", notes
    )
    assert any(
        x.startswith("attention: significantly below a fair baseline at 2 of 3") and "at 1 after Holm" in x
        for x in notes
    )
    grid = json.loads((tmp_path / "b" / "plots" / "grid.json").read_text())
    ps = [p["methods"]["attention"]["tests"]["naive Bayes (read counts)"] for p in grid["points"]]
    assert [t["p_value_holm"] for t in ps] == pytest.approx([3 * 2 / 2**8, 2 * 2 / 2**6 * 1, 1.0])


def test_build_model_knows_the_masked_kind_and_sparse_mlp_reads_three_channels():
    mu, sd = np.zeros(10, np.float32), np.ones(10, np.float32)
    assert isinstance(build_model("masked", {}, 10, 3, mu, sd, 150), MaskedLinear)
    mlp = build_model("mlp", {"sparse_training": 0.5, "hidden": [8]}, 10, 3, mu, sd, 150)
    assert mlp.input_proj.in_features == 30
    plain = {"hidden": [8], "sparse_training": 0.0}
    assert build_model("mlp", plain, 10, 3, mu, sd, 150).input_proj.in_features == 10
    with pytest.raises(ValueError, match="train_depths"):
        MaskedConfig(train_depths=[0, 3])


def test_count_channels_weigh_reads_by_the_region_concentration():
    from genomelab.tissue.models import count_channels

    mu, sd = torch.tensor([0.5, 0.5, 0.2]), torch.tensor([0.1, 0.1, 0.2])
    kappa = torch.tensor([4.0, 4.0, 9.0])
    means = torch.tensor([[1.0, 0.0, float("nan")], [0.75, 0.25, 0.6]])
    cov = torch.tensor([[1.0, 1.0, 0.0], [4.0, 400.0, 10.0]])
    x = count_channels(means, cov, mu, sd, kappa)
    assert x.shape == (2, 9)
    value, observed, w = x[:, :3], x[:, 3:6], x[:, 6:]
    # One read of a region of kappa 4 weighs 1 / 5; four reads 4 / 8; 400 reads nearly 1.
    assert w[0].tolist() == pytest.approx([0.2, 0.2, 0.0])
    assert w[1].tolist() == pytest.approx([0.5, 400 / 404, 10 / 19])
    assert value[0].tolist() == pytest.approx([0.2 * 5.0, 0.2 * -5.0, 0.0])
    assert value[1].tolist() == pytest.approx([0.5 * 2.5, 400 / 404 * -2.5, 10 / 19 * 2.0])
    assert observed.tolist() == [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]]
    # Unobserved (NaN, or a level with no coverage): every channel 0.
    none = count_channels(
        torch.tensor([[0.3, float("nan"), 0.9]]), torch.tensor([[0.0, 3.0, 0.0]]), mu, sd, kappa
    )
    assert torch.count_nonzero(none) == 0


def test_masked_model_uses_its_encoding_and_old_exports_keep_z():
    from genomelab.tissue.models import exported_config

    r = 6
    mu, sd = np.full(r, 0.5, np.float32), np.full(r, 0.1, np.float32)
    kappa = np.full(r, 4.0, np.float32)
    counts = build_model("masked", {}, r, 3, mu, sd, 150, kappa=kappa)
    z = build_model("masked", {"encoding": "z"}, r, 3, mu, sd, 150)
    assert counts.encoding == "counts" and torch.equal(counts.kappa, torch.full((r,), 4.0))
    assert not hasattr(z, "kappa")
    means, cov = torch.ones(1, r), torch.ones(1, r)  # one methylated read per region
    # w = 1 / 5 times the z-score 5, soft-clipped at z_clip 3 as the z encoding clips it.
    clipped = 3 * np.tanh(5 / 3)
    assert counts.features(means, cov)[0, :r].tolist() == pytest.approx([0.2 * clipped] * r)
    assert z.features(means, cov)[0, :r].tolist() == pytest.approx([clipped] * r)
    # A model exported before the option was trained on z-scores with complete validation.
    old = exported_config("masked", {"label_smoothing": 0.0})
    assert old["encoding"] == "z" and old["validation_draws"] == 0
    # Its state has no kappa; loading it into a counts model fails rather than misreading it.
    with pytest.raises(RuntimeError, match="kappa"):
        counts.load_state_dict(z.state_dict())
    with pytest.raises(ValueError, match="tissue.masked.encoding"):
        MaskedConfig(encoding="beta")
    with pytest.raises(ValueError, match="tissue.masked.validation_draws"):
        MaskedConfig(validation_draws=-1)
    with pytest.raises(ValueError, match="tissue.masked.lr_scale"):
        MaskedConfig(lr_scale=0.0)
    assert exported_config("masked", {})["lr_scale"] == 1.0


def test_masked_kappa_is_the_training_splits_concentration_for_count_channels_only():
    from genomelab.tissue.read_profiles import region_concentration
    from genomelab.tissue.training import masked_kappa

    data = make_data(0)
    train = data.index("train")
    data.means[:, 1] = np.nan  # a region nobody covers: the range's top, reads weigh ~nothing
    kappa = masked_kappa("masked", MaskedConfig(), data)
    assert kappa.shape == (120,) and np.isfinite(kappa).all()
    assert np.allclose(kappa, region_concentration(data.means[train], data.y[train], 3))
    assert kappa[1] == kappa.max()
    assert masked_kappa("masked", MaskedConfig(encoding="z"), data) is None
    assert masked_kappa("mlp", MaskedConfig(), data) is None


def test_degraded_copies_draw_depths_and_subsets_in_the_ranges_seeded():
    from genomelab.tissue.sparse import degraded_copies

    rng = np.random.default_rng(0)
    means = rng.uniform(0, 1, (50, 400)).astype(np.float32)
    means[:, :20] = np.nan
    parts = list(degraded_copies(means, 3, (1, 30), (0.1, 1.0), seed=5))
    assert len(parts) == 3 and all(p[0].shape == p[1].shape == (50, 400) for p in parts)
    m, c = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    assert m.dtype == c.dtype == np.float32
    kept = np.isfinite(m)
    assert not kept[:, :20].any() and (c[~kept] == 0).all()
    depth = c.max(1)
    assert depth.min() >= 1 and depth.max() <= 30
    assert ((c == depth[:, None]) | (c == 0)).all()  # one depth per copy
    frac = kept[:, 20:].mean(1)
    assert frac.min() > 0.03 and frac.max() <= 1.0 and frac.std() > 0.1  # each copy its own fraction
    assert np.allclose((m * c)[kept], np.round((m * c)[kept]), atol=1e-4)  # counts of reads
    again = list(degraded_copies(means, 3, (1, 30), (0.1, 1.0), seed=5))
    assert all(
        np.array_equal(a[0], b[0], equal_nan=True) and np.array_equal(a[1], b[1])
        for a, b in zip(parts, again, strict=True)
    )


def test_degraded_validation_copies_join_the_validation_loss_but_not_the_reported_metrics(tmp_path):
    from genomelab.tissue.training import make_datasets, with_degraded_validation

    data = make_data(0)
    cfg = MaskedConfig(validation_draws=3)
    ds = with_degraded_validation(make_datasets("masked", data, cfg, 0), cfg, seed=0)
    n_val = len(data.index("val"))
    means, cov, y = ds["val"].tensors
    assert len(y) == 4 * n_val
    complete = torch.as_tensor(data.means[data.index("val")])
    assert torch.equal(torch.nan_to_num(means[:n_val], -1.0), torch.nan_to_num(complete, -1.0))
    assert torch.equal(y[n_val:], torch.as_tensor(data.y[data.index("val")]).repeat(3))
    assert (cov[n_val:].amax(1) <= 30).all() and torch.isnan(means[n_val:]).any()
    off = make_datasets("masked", data, MaskedConfig(validation_draws=0), 0)
    assert with_degraded_validation(off, MaskedConfig(validation_draws=0), 0) is off
    # Trained with them: the reported validation metrics, the epoch-by-epoch ones and the
    # chance check are over the complete samples; the loss early stopping follows is not.
    train_model(
        "masked", data, {"validation_draws": 3}, TRAIN, tmp_path / "st", tmp_path / "m", "cpu", seed=0
    )
    metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
    assert metrics["val"]["n"] == n_val
    # It trained at lr_scale x the module's rate (what the exported train config records).
    assert metrics["train_config"]["lr"] == pytest.approx(3 * TRAIN["lr"])
    best = next(h for h in metrics["history"] if h["epoch"] == metrics["best_epoch"])
    assert best["val/accuracy"] == pytest.approx(metrics["val"]["accuracy"])
    assert best["val/nll"] == pytest.approx(metrics["val"]["nll"], rel=1e-4)
    assert best["val/loss"] != pytest.approx(best["val/nll"], rel=1e-3)  # the copies' loss too
    checks = json.loads((tmp_path / "m" / "diagnostics.json").read_text())["results"]
    assert all(c["status"] == "pass" for c in checks), [c["message"] for c in checks]
