"""The attention model's cross-fitted read likelihood (``tissue.attention.read_likelihood_folds``):
training samples are scored by beta fits made without them, validation/test/prediction by
the fit on the whole training split (the exported buffers)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from genomelab.config import schema_defaults
from genomelab.tissue.baselines import ReadNaiveBayes
from genomelab.tissue.models import AttentionConfig, build_model, exported_config
from genomelab.tissue.task import TissueData, impute_standardise_params
from genomelab.tissue.training import crossfit_read_params, make_datasets, read_params, train_model
from genomelab.train.export import load_exported, save_exported
from tissue_toy import toy_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")

READS = {**schema_defaults("tissue.attention"), "read_likelihood": True}


def _cohort(
    n_per_class: int, n_regions: int, seed: int, noise: float = 0.05
) -> tuple[np.ndarray, np.ndarray]:
    """Region means [3 n, R] of 3 classes with weak differences at every region (k of the 150
    calls methylated, as features files hold them), and labels [3 n]."""
    rng = np.random.default_rng(seed)
    levels = np.clip(rng.uniform(0.2, 0.8, n_regions)[None] + rng.normal(0, 0.1, (3, n_regions)), 0.05, 0.95)
    y = np.repeat(np.arange(3), n_per_class)
    betas = np.clip(levels[y] + rng.normal(0, noise, (len(y), n_regions)), 0.01, 0.99)
    return (np.rint(betas * 150) / 150).astype(np.float32), y


def _with_copies(data: TissueData, copies: dict[int, int]) -> TissueData:
    """``data`` where row i (a key) is an augmented copy of row ``copies[i]`` (same source sample)."""
    groups = data.groups.copy()
    for i, j in copies.items():
        groups[i] = groups[j]
    return dataclasses.replace(data, groups=groups)


def _model(data: TissueData, cfg: dict, crossfit=None):
    mu, sd = impute_standardise_params(data.means[data.index("train")])
    return build_model(
        "attention",
        cfg,
        len(data.regions),
        len(data.classes),
        mu,
        sd,
        data.n_positions,
        read_params(data),
        None if crossfit is None else crossfit[1],
    )


def test_a_training_sample_is_scored_by_a_fit_without_its_source_sample():
    """With as many folds as source samples every fold is one source sample: each training
    sample's likelihood must be the naive Bayes fit on the other source samples (made here by
    hand), augmented copies of it left out too; val/test samples get the full fit."""
    betas, y = _cohort(6, 30, seed=0)
    split = np.array((["train"] * 4 + ["val", "test"]) * 3)
    data = _with_copies(toy_task(betas, y, split), {1: 0, 7: 6})  # two training copies
    crossfit = crossfit_read_params(data, 100, seed=3)  # k lowered to the 10 source samples
    assert crossfit is not None and crossfit[1][0].shape == (10, 3, 30)
    model = _model(data, READS, crossfit).eval()
    ds = make_datasets("attention", data, model.cfg, 0, crossfit[0])
    means, cov, fold, _ = ds["train"].tensors
    with torch.no_grad():
        got = model.reads.log_likelihood(means, cov, fold).numpy()
    train = data.index("train")
    for row, i in enumerate(train):
        others = train[data.groups[train] != data.groups[i]]
        nb = ReadNaiveBayes().fit(data.means[others], data.y[others], 3)
        want = nb.log_likelihood(data.means[[i]], data.coverage[[i]].astype(float)) - nb.log_prior_
        np.testing.assert_allclose(got[row], want[0], rtol=2e-4, atol=1e-2)
    # Copies share a fold (else a copy's twin would be in its fit).
    assert fold[0] == fold[1] and fold[4] == fold[5]  # rows 0, 1 and 6, 7
    # Val and test carry no fold: the model scores them with the full training fit.
    full = ReadNaiveBayes().fit(data.means[train], data.y[train], 3)
    for split_name in ("val", "test"):
        assert len(ds[split_name].tensors) == 3
        m, c, _ = ds[split_name].tensors
        with torch.no_grad():
            got = model.reads.log_likelihood(m, c).numpy()
        want = full.log_likelihood(m.numpy(), c.numpy()) - full.log_prior_
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-2)


def test_folds_are_stratified_seeded_and_k_fold_fits_leave_their_fold_out():
    betas, y = _cohort(12, 20, seed=1)
    split = np.array((["train"] * 10 + ["val", "test"]) * 3)
    data = toy_task(betas, y, split)
    folds, (a, b) = crossfit_read_params(data, 5, seed=7)
    again, _ = crossfit_read_params(data, 5, seed=7)
    other, _ = crossfit_read_params(data, 5, seed=8)
    np.testing.assert_array_equal(folds, again)
    assert not np.array_equal(folds, other)
    train_y = data.y[data.index("train")]
    for c in range(3):  # 10 samples of each class: 2 in every fold
        assert np.bincount(folds[train_y == c], minlength=5).tolist() == [2] * 5
    train = data.index("train")
    for f in range(5):
        keep = train[folds != f]
        nb = ReadNaiveBayes().fit(data.means[keep], data.y[keep], 3)
        np.testing.assert_allclose(a[f], nb.a_, rtol=1e-6)
        np.testing.assert_allclose(b[f], nb.b_, rtol=1e-6)


def test_augmentation_degrades_what_the_cross_fitted_likelihood_scores():
    """Sparse training degrades means and coverage; the fold rides along untouched, and the
    likelihood is computed on the degraded inputs the network sees."""
    betas, y = _cohort(6, 200, seed=2)
    data = toy_task(betas, y, np.array((["train"] * 4 + ["val", "test"]) * 3))
    crossfit = crossfit_read_params(data, 2, seed=0)
    cfg = {**READS, "sparse_training": 1.0, "train_observed": [0.1, 0.1], "train_depths": [2, 2]}
    model = _model(data, cfg, crossfit).train()
    seen = []
    model.reads.register_forward_hook(lambda mod, args, out: seen.append(args))
    batch = make_datasets("attention", data, model.cfg, 0, crossfit[0])["train"].tensors
    out = model.loss(batch)
    assert torch.isfinite(out.loss)
    means, cov, fold = seen[0]
    assert 0.05 < float(torch.isfinite(means).float().mean()) < 0.15  # 10% observed
    assert set(cov[cov > 0].unique().tolist()) == {2.0}
    torch.testing.assert_close(fold, batch[2])


def _gate_weight(model, means: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """The learned likelihood weight exp(10 (g0 + g1 log1p(observed) + g2 log1p(depth))) [n]."""
    g = 10 * model.reads.gate.detach().numpy().astype(np.float64)
    obs = np.isfinite(means) & (cov > 0)
    n_obs = obs.sum(1)
    depth = (cov * obs).sum(1) / np.maximum(n_obs, 1)
    return np.exp(np.clip(g[0] + g[1] * np.log1p(n_obs) + g[2] * np.log1p(depth), -12, 4))


def test_small_cohort_in_sample_likelihood_overfits_and_the_cross_fitted_weight_is_smaller(tmp_path):
    """Four training samples per class, 400 noisy regions: a training sample's own reads are
    a quarter of its class's fit, so in-sample its likelihood looks decisive and the weight
    learned on it is large; cross-fitted, the weight is learned on evidence as weak as a new
    sample's and comes out smaller, and the validation loss is lower (the full model trained
    by ``train_model`` both ways, complete inputs so the weight's features are fixed)."""
    betas, y = _cohort(8, 400, seed=4, noise=0.25)
    data = toy_task(betas, y, np.array((["train"] * 4 + ["val"] * 3 + ["test"]) * 3))
    train_cfg = {"max_epochs": 25, "batch_size": 6, "lr": 0.005, "patience": 25}
    weights, nll = {}, {}
    for name, k in (("in_sample", 0), ("crossfit", 4)):
        cfg = {"read_likelihood": True, "read_likelihood_folds": k, "sparse_training": 0.0}
        train_model("attention", data, cfg, train_cfg, tmp_path / "state", tmp_path / name, "cpu", seed=0)
        exported = load_exported(tmp_path / name / "model.pt", kind="attention")
        assert not any("folds" in key for key in exported.weights)  # the export keeps the full fit only
        model = build_model(
            "attention",
            exported_config("attention", exported.config),
            400,
            3,
            np.zeros(400),
            np.ones(400),
            150,
        )
        model.load_state_dict(exported.weights)
        val = data.index("val")
        weights[name] = _gate_weight(model, data.means[val], data.coverage[val].astype(float)).mean()
        with torch.no_grad():
            logits = model.eval()(
                torch.as_tensor(data.means[val]), torch.as_tensor(data.coverage[val]).float()
            )
        nll[name] = float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(data.y[val])))
    # The untrained weight is 1 / sqrt((1 + 400) (1 + 150)) (gate [0, -0.05, -0.05]): in-sample
    # training raises it (about 0.007 here), cross-fitted it stays near it (0.004-0.006 with
    # seeds 4-6), and the validation loss is lower (0.32-0.48 against 0.53-0.68).
    start = 1 / np.sqrt(401 * 151)
    assert weights["in_sample"] > 1.5 * start, weights
    assert weights["crossfit"] < weights["in_sample"], weights
    assert nll["crossfit"] < nll["in_sample"] - 0.05, nll


def test_exports_without_fold_buffers_load_old_and_new(tmp_path):
    """An export from before cross-fitting (config without ``read_likelihood_folds``) loads
    and is read as trained in-sample; a new model's fold fits never reach its export, so
    both load into a model built without them and predict with the full fit."""
    from genomelab.predict.tissue import TissuePredictor

    betas, y = _cohort(6, 20, seed=5)
    data = toy_task(betas, y, np.array((["train"] * 4 + ["val", "test"]) * 3))
    crossfit = crossfit_read_params(data, 2, seed=0)
    ids = {"classes": data.classes.tolist(), "regions": data.regions.tolist()}
    x = (torch.as_tensor(betas[:3]), torch.full((3, 20), 30.0))
    for name, folds_key in (("old", False), ("new", True)):
        cfg = AttentionConfig(read_likelihood=True, read_likelihood_folds=2)
        model = _model(data, dataclasses.asdict(cfg), crossfit if folds_key else None).eval()
        config = dataclasses.asdict(cfg)
        if not folds_key:
            del config["read_likelihood_folds"]
        path = tmp_path / f"{name}.pt"
        save_exported(
            path,
            model,
            kind="attention",
            config=config,
            ids=ids,
            data_fingerprint="0",
            extra={"n_positions": 150},
        )
        assert exported_config("attention", config)["read_likelihood_folds"] == (2 if folds_key else 0)
        (member,) = TissuePredictor(load_exported(path), path).members.values()
        assert member.reads.a_folds is None
        with torch.no_grad():
            torch.testing.assert_close(member(*x), model(*x))
            torch.testing.assert_close(
                member.reads.a, torch.as_tensor(read_params(data)[0], dtype=torch.float32)
            )


def test_one_fold_is_refused_and_a_single_source_sample_is_not_cross_fitted():
    with pytest.raises(ValueError, match="read_likelihood_folds"):
        AttentionConfig(read_likelihood_folds=1)
    betas, y = _cohort(2, 10, seed=6)
    data = toy_task(betas, y, np.array(["train", "val"] * 3))
    data = dataclasses.replace(data, groups=np.full(6, "one"))
    assert crossfit_read_params(data, 5, seed=0) is None
