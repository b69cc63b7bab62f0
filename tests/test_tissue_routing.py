"""The routed tissue model: the router (depth and observed fraction -> model, chosen on
validation), the routed model made from two exported models as rule tissue_route makes it,
and its file read back by ``genomelab predict tissue``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from genomelab.config import ConfigError
from genomelab.predict.tissue import ENSEMBLE, RoutedPredictor, TissuePredictor, load_predictor, predict_files
from genomelab.tissue.routed import check_routed_models, fit_routed_model
from genomelab.tissue.routing import DENSE, SPARSE, Router, fit_router, routed_proba, sample_profile
from genomelab.tissue.sparse import SparsityConfig
from test_tissue_crossplatform import array_task

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_sample_profile_is_observed_fraction_and_median_depth():
    means = np.array([[0.1, np.nan, 0.5, 0.2], [np.nan] * 4, [0.3, 0.3, 0.3, 0.3]], np.float32)
    coverage = np.array([[3, 0, 100, 5], [0, 0, 0, 0], [30, 30, 30, 0]], np.float32)
    observed, depth = sample_profile(means, coverage)
    # Row 3: a value with coverage 0 is not observed.
    assert observed.tolist() == [0.75, 0.0, 0.75]
    # Median, not mean: one deep region does not make row 1 deep (mean would be 36).
    assert depth.tolist() == [5.0, 0.0, 30.0]


def test_router_places_samples_at_the_nearest_point_in_log_space():
    router = Router([(30, 1.0), (30, 0.1), (1, 1.0), (1, 0.1)], [True, False, False, False])
    r = 200
    rng = np.random.default_rng(0)

    def sample(depth, frac):
        m = rng.random(r).astype(np.float32)
        m[rng.random(r) >= frac] = np.nan
        return m, np.where(np.isfinite(m), depth, 0).astype(np.float32)

    rows = [sample(25, 0.95), sample(60, 1.0), sample(25, 0.15), sample(2, 0.95), sample(8, 0.9)]
    means = np.stack([m for m, _ in rows])
    cov = np.stack([c for _, c in rows])
    # 8 reads: log 8 is nearer log 30 (1.3) than log 1 (2.1).
    assert router.place(means, cov).tolist() == [0, 0, 1, 2, 0]
    assert router.route(means, cov).tolist() == [True, True, False, False, True]
    assert Router.from_dict(json.loads(json.dumps(router.to_dict()))) == router


def _toy_models(n_classes: int = 3):
    """A 'dense' model that reads complete samples perfectly and sparse ones not at all, and
    a 'sparse' model right 70% of the time whatever the input."""

    def dense(means, coverage):
        observed = np.isfinite(means).mean(1)
        p = np.full((len(means), n_classes), 1 / n_classes)
        good = observed > 0.7
        p[good] = 0.01
        p[good, truth_of(means[good])] = 0.98
        return p

    def sparse(means, coverage):
        t = truth_of(means)
        right = (np.arange(len(means)) % 10) < 7
        call = np.where(right, t, (t + 1) % n_classes)
        p = np.full((len(means), n_classes), 0.1)
        p[np.arange(len(means)), call] = 0.8
        return p

    return {SPARSE: sparse, DENSE: dense}


def truth_of(means):
    # The toy samples carry their class in their first region's true level (0, 0.5 or 1):
    # read from any observed column, each column holds the same level.
    vals = np.nanmean(means, axis=1)
    return np.clip(np.rint(np.nan_to_num(vals, nan=0.0) * 2), 0, 2).astype(int)


def test_fit_router_picks_the_model_with_the_lower_validation_nll_per_point():
    n, r = 60, 400
    y = np.arange(n) % 3
    means = np.repeat((y / 2.0)[:, None], r, 1).astype(np.float32)
    cov = np.full((n, r), 30, np.float32)
    cfg = SparsityConfig(depths=[30], observed=[1.0, 0.5, 0.1])
    router, table = fit_router(_toy_models(), means, cov, y, cfg, seed=0)
    assert router.points == [(30.0, 1.0), (30.0, 0.5), (30.0, 0.1)]
    assert router.dense == [True, False, False]
    assert [t["model"] for t in table] == [DENSE, SPARSE, SPARSE]
    assert table[0]["dense_accuracy"] == 1.0 and table[0]["sparse_accuracy"] == pytest.approx(0.7)
    # Routed, complete samples get the dense model's calls and sparse ones the sparse model's.
    p, dense = routed_proba(router, _toy_models(), means, cov)
    assert dense.all() and (p.argmax(1) == y).all()
    half = np.where(np.random.default_rng(1).random((n, r)) < 0.6, np.nan, means).astype(np.float32)
    p, dense = routed_proba(
        router, _toy_models(), half, np.where(np.isfinite(half), 30, 0).astype(np.float32)
    )
    assert not dense.any() and (p.argmax(1) == y).mean() == pytest.approx(0.7)
    with pytest.raises(ValueError, match="validation samples"):
        fit_router(_toy_models(), means[:0], cov[:0], y[:0], cfg, seed=0)


def test_the_dense_model_takes_a_corner_of_the_grid_not_single_noisy_points():
    from genomelab.tissue.routing import _best_corner

    def table(dense_better):
        # 2 depths x 2 observed fractions; the dense model's NLL 0.1 lower where it is better.
        pts = [(30.0, 1.0), (30.0, 0.1), (1.0, 1.0), (1.0, 0.1)]
        return [
            {
                "depth": d,
                "observed": f,
                "sparse_nll": 0.5,
                "dense_nll": 0.4 if (d, f) in dense_better else 0.6,
            }
            for d, f in pts
        ]

    # Better where data are rich: that corner.
    assert _best_corner(table({(30.0, 1.0)})) == [True, False, False, False]
    assert _best_corner(table({(30.0, 1.0), (30.0, 0.1)})) == [True, True, False, False]
    # Better at the sparsest point alone (noise on a small validation split): taking it would
    # take every richer point too, which costs more, so the sparse model keeps it.
    assert _best_corner(table({(1.0, 0.1)})) == [False] * 4
    # Better everywhere: every point. Nowhere: none.
    assert (
        _best_corner(table(set(map(tuple, [(30.0, 1.0), (30.0, 0.1), (1.0, 1.0), (1.0, 0.1)])))) == [True] * 4
    )
    assert _best_corner(table(set())) == [False] * 4
    # A tie goes to the sparse model (it reads any input).
    tie = table(set())
    for r in tie:
        r["dense_nll"] = 0.5
    assert _best_corner(tie) == [False] * 4


def test_without_a_grid_the_router_has_one_point_at_the_samples_own_depth():
    n, r = 30, 50
    y = np.arange(n) % 3
    means = np.repeat((y / 2.0)[:, None], r, 1).astype(np.float32)
    router, _ = fit_router(
        _toy_models(), means, np.full((n, r), 12, np.float32), y, SparsityConfig(depths=[], observed=[]), 0
    )
    assert router.points == [(12.0, 1.0)] and router.dense == [True]


def test_a_routed_entry_needs_its_two_models_listed():
    assert check_routed_models(["reads", "masked"], {}) is None
    assert check_routed_models(["routed", "reads", "masked"], {}).dense == "masked"
    with pytest.raises(ConfigError, match=r"tissue.models lists routed but not \['masked'\]"):
        check_routed_models(["routed", "reads"], {})
    with pytest.raises(ValueError, match="name two models"):
        check_routed_models(["routed", "reads"], {"sparse": "reads", "dense": "reads"})


@pytest.fixture(scope="module")
def routed_run(tmp_path_factory):
    """The read-profile model and a one-member masked ensemble on the array task, and the
    routed model made from their files, as the workflow's rules make them."""
    from genomelab.tissue.calibration import CalibrationConfig
    from genomelab.tissue.training import combine_members, fit_read_model, train_model

    tmp = tmp_path_factory.mktemp("routed")
    data = array_task()
    sparsity = SparsityConfig(depths=[30, 1], observed=[1.0, 0.1])
    cal = CalibrationConfig()
    fit_read_model(
        data, {"latent_draws": 32, "mixture_components": [1, 2]}, tmp / "reads", cal, sparsity, 0, 0
    )
    train = {"max_epochs": 40, "batch_size": 16, "lr": 0.01, "patience": 40}
    train_model("masked", data, {}, train, tmp / "state", tmp / "m0", "cpu", seed=0)
    combine_members(
        "masked", data, [tmp / "m0/model.pt"], [tmp / "m0/metrics.json"], [tmp / "m0/diagnostics.json"],
        tmp / "masked", cal, sparsity, 0,
    )  # fmt: skip
    parts = {SPARSE: tmp / "reads/model.pt", DENSE: tmp / "masked/model.pt"}
    test = fit_routed_model(data, parts, tmp / "routed", cal, sparsity, grid_seed=0)
    return data, tmp, test


def test_routed_model_is_evaluated_like_every_model_and_predicts_from_one_file(routed_run):
    data, tmp, test = routed_run
    metrics = json.loads((tmp / "routed/metrics.json").read_text())
    assert metrics["model"] == "routed" and metrics["test"]["accuracy"] == test["accuracy"]
    assert len(metrics["grid"]) == 4 and len(metrics["routing"]["points"]) == 4
    assert {"depth", "observed", "sparse_nll", "dense_nll", "model"} <= set(metrics["routing"]["points"][0])
    assert len(metrics["predictions"]["pred"]) == len(data.index("test"))
    diag = json.loads((tmp / "routed/diagnostics.json").read_text())
    assert diag  # the prediction-collapse checks were written

    # The exported file: each sample's probabilities are its routed part's, then the routed
    # model's own temperature; both parts' are reported under their kinds.
    routed = load_predictor(tmp / "routed/model.pt")
    assert isinstance(routed, RoutedPredictor)
    parts = {k: TissuePredictor.load(tmp / f"{k}/model.pt") for k in ("reads", "masked")}
    test_idx = data.index("test")
    m, c = data.means[test_idx], data.coverage[test_idx].astype(np.float32)
    rng = np.random.default_rng(5)
    sparse_m = np.where(rng.random(m.shape) < 0.1, (rng.random(m.shape) < m).astype(np.float32), np.nan)
    sparse_c = np.where(np.isfinite(sparse_m), 1, 0).astype(np.float32)
    for means, cov in ((m, c), (sparse_m.astype(np.float32), sparse_c)):
        got = routed.predict_arrays(means, cov)
        want = {k: p.predict_arrays(means, cov)[ENSEMBLE] for k, p in parts.items()}
        np.testing.assert_allclose(got["reads"], want["reads"])
        np.testing.assert_allclose(got["masked"], want["masked"])
        to = routed.routes(means, cov)
        chosen = np.where((to == "masked")[:, None], want["masked"], want["reads"])
        assert (got[ENSEMBLE].argmax(1) == chosen.argmax(1)).all()
    # Complete samples at 150 calls sit at (30, 1.0); one read at 10% at (1, 0.1).
    table = {(p["depth"], p["observed"]): p["model"] for p in metrics["routing"]["points"]}
    assert set(routed.routes(m, c)) == {"masked" if table[(30.0, 1.0)] == DENSE else "reads"}
    assert set(routed.routes(sparse_m.astype(np.float32), sparse_c)) == {
        "masked" if table[(1.0, 0.1)] == DENSE else "reads"
    }


def test_predict_files_names_the_part_each_sample_went_to(routed_run, tmp_path):
    import h5py
    from genomelab.io.features import create_features

    data, tmp, _ = routed_run
    test_idx = data.index("test")
    h5 = tmp_path / "features.h5"
    with h5py.File(h5, "w") as f:
        create_features(f, len(test_idx), data.regions, 150, "test")
        f["means"][...] = data.means[test_idx]
        f["coverage"][...] = data.coverage[test_idx]
        for key, values in (("samples", data.samples[test_idx]), ("tissue", data.labels[test_idx])):
            f.create_dataset(key, data=values.astype(object), dtype=h5py.string_dtype())
    pred = predict_files(tmp / "routed/model.pt", h5, tmp_path / "p.tsv", tmp_path / "p.json", 0.9, 0.5)
    assert pred.routed_to is not None and len(pred.routed_to) == len(test_idx)
    records = json.loads((tmp_path / "p.json").read_text())["samples"]
    assert [r["routed_to"] for r in records] == pred.routed_to
    assert set(records[0]["models"]) == {"reads", "masked", ENSEMBLE}
    import pandas as pd

    tsv = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    assert tsv.loc[tsv.model == ENSEMBLE, "routed_to"].tolist() == pred.routed_to


def test_parts_of_another_split_are_refused_naming_the_file(routed_run, tmp_path):
    from genomelab.tissue.calibration import CalibrationConfig

    data, tmp, _ = routed_run
    other = array_task(seed=1, n_regions=30)
    with pytest.raises(ValueError, match=r"reads/model.pt was made for other classes or regions"):
        fit_routed_model(
            other,
            {SPARSE: tmp / "reads/model.pt", DENSE: tmp / "masked/model.pt"},
            tmp_path / "x",
            CalibrationConfig(),
            SparsityConfig(depths=[1], observed=[1.0]),
        )
    assert not (tmp_path / "x/model.pt").exists()


def test_the_server_loads_a_routed_model_and_names_the_part(routed_run):
    """``genomelab serve`` on a routed model.pt answers as predict does, routed_to included."""
    from genomelab.serve.app import create_app
    from test_serve import serving

    data, tmp, _ = routed_run
    test_idx = data.index("test")[:4]
    body = {
        "samples": [
            {
                "sample": str(data.samples[i]),
                "means": data.means[i].tolist(),
                "coverage": [30.0] * len(data.regions),
            }
            for i in test_idx
        ]
    }
    with serving(create_app(tmp / "routed/model.pt")) as client:
        reply = client.post("/predict", json=body).json()
    routed = load_predictor(tmp / "routed/model.pt")
    want = routed.routes(data.means[test_idx], np.full((4, len(data.regions)), 30, np.float32))
    assert [r["routed_to"] for r in reply["samples"]] == want.tolist()
    assert reply["calibrated"] is True and set(reply["samples"][0]["models"]) == {"reads", "masked", ENSEMBLE}
