"""genomelab serve for deconv: NNLS proportions beside the network's, against the model's reference.

A real uvicorn server on 127.0.0.1 (``test_serve.serving``) must give, for the same samples,
the network and NNLS proportions that ``genomelab predict deconv`` (``deconv_infer``'s
function) writes, and say in its card which reference NNLS used.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from genomelab.deconv.io import read_table, write_table
from genomelab.deconv.model import KIND, DeconvNet, DeconvNetConfig
from genomelab.deconv.nnls import deconvolve_nnls, deconvolve_weighted
from genomelab.io.ids import InputMismatch
from genomelab.predict.deconv import predict_files
from genomelab.serve.app import create_app
from genomelab.train.export import save_exported
from test_serve import refused, serving

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REGIONS = [f"cg{i:03d}" for i in range(40)]
TISSUES = ["Blood", "Liver", "Lung", "Colon"]


def _export(path, profiles: np.ndarray, nnls_prior: bool, **model) -> None:
    torch.manual_seed(0)
    section = {"hidden": [8], "nnls_prior": nnls_prior, **model}
    cfg = DeconvNetConfig.from_config(section, len(REGIONS), len(TISSUES), True, 0.01)
    net = DeconvNet(cfg, profiles.mean(1), profiles if nnls_prior else None)
    save_exported(
        path, net, kind=KIND, config=dataclasses.asdict(cfg),
        ids={"regions": REGIONS, "tissues": TISSUES}, data_fingerprint="0",
    )  # fmt: skip


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    # Four decimals: the reference file (written with 6 significant digits) holds them exactly.
    profiles = rng.uniform(0.05, 0.95, (len(REGIONS), len(TISSUES))).round(4)
    write_table(tmp_path / "reference.tsv", profiles, REGIONS, TISSUES)
    mix = rng.dirichlet(np.ones(len(TISSUES)), 3)
    betas = np.clip(mix @ profiles.T + rng.normal(0, 0.02, (3, len(REGIONS))), 0, 1).round(4)
    betas[1, :6] = np.nan
    write_table(tmp_path / "samples.csv", betas.T, REGIONS, ["s0", "s1", "s2"])
    _export(tmp_path / "prior.pt", profiles, nnls_prior=True)
    _export(tmp_path / "plain.pt", profiles, nnls_prior=False)
    return profiles, betas


def _body(betas: np.ndarray, **extra) -> dict:
    samples = [
        {"sample": f"s{i}", "betas": [None if np.isnan(v) else float(v) for v in row]}
        for i, row in enumerate(betas)
    ]
    return {"samples": samples, **extra}


def _table(reply: dict, key: str) -> np.ndarray:
    return np.array([[s[key][t] for t in TISSUES] for s in reply["samples"]])


@pytest.mark.parametrize("model", ["prior.pt", "plain.pt"])
def test_deconv_server_reports_nnls_like_predict_files(tmp_path, files, model):
    profiles, betas = files
    predict_files(
        tmp_path / model, tmp_path / "reference.tsv", tmp_path / "samples.csv", tmp_path / model[:-3],
        0.01, 0.5, False, 0.02,
    )  # fmt: skip
    nnls_file, _, nnls_samples = read_table(tmp_path / model[:-3] / "nnls_proportions.csv")
    net_file, _, _ = read_table(tmp_path / model[:-3] / "model_proportions.csv")
    weighted_file, _, _ = read_table(tmp_path / model[:-3] / "weighted_nnls_proportions.csv")
    assert list(nnls_samples) == ["s0", "s1", "s2"]
    app = create_app(tmp_path / model, reference=tmp_path / "reference.tsv")
    with serving(app) as client:
        reply = client.post("/predict", json=_body(betas)).json()
        unknown = client.post("/predict", json=_body(betas, unknown_component=True)).json()
        card = client.get("/card").json()
    # The files hold 6 significant digits.
    np.testing.assert_allclose(_table(reply, "nnls"), nnls_file.T, atol=2e-6)
    np.testing.assert_allclose(_table(reply, "proportions"), net_file.T, atol=2e-6)
    # The weighted NNLS with an offset, at the prior's floor (the default for the plain model).
    np.testing.assert_allclose(_table(reply, "weighted_nnls"), weighted_file.T, atol=2e-6)
    np.testing.assert_allclose(_table(unknown, "weighted_nnls"), weighted_file.T, atol=2e-6)
    assert card["weighted_nnls"]["weight_floor"] == pytest.approx(0.03)
    assert [s["n_regions_matched"] for s in reply["samples"]] == [40, 40, 40]
    assert card["reference"]["source"] == str(tmp_path / "reference.tsv")
    assert (card["reference"]["n_regions"], card["reference"]["n_tissues"]) == (40, 4)
    expected = deconvolve_nnls(profiles, betas, unknown_component=True)
    np.testing.assert_allclose(_table(unknown, "nnls"), expected.proportions, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        [s["nnls"]["unknown"] for s in unknown["samples"]], expected.unknown, atol=1e-12
    )
    assert unknown["unknown_component"] is True and "unknown" not in reply["samples"][0]["nnls"]


def test_deconv_server_uses_the_priors_reference_and_refuses_another(tmp_path, files):
    profiles, betas = files
    with serving(create_app(tmp_path / "prior.pt")) as client:
        reply = client.post("/predict", json=_body(betas)).json()
        card = client.get("/card").json()
        empty = client.post("/predict", json={"samples": [{"sample": "x", "betas": [None] * 40}]})
    # The prior stores the profiles as float32.
    np.testing.assert_allclose(_table(reply, "nnls"), deconvolve_nnls(profiles, betas).proportions, atol=1e-5)
    assert "NNLS prior" in card["reference"]["source"]
    with_file = create_app(tmp_path / "prior.pt", reference=tmp_path / "reference.tsv")
    assert (
        with_file.state.handler.card["reference"]["profiles_sha256_float32"]
        == (card["reference"]["profiles_sha256_float32"])
    )
    err = refused(empty)
    assert "samples.0.betas: 1 sample(s) have no value on any reference region" in err["msg"]
    assert err["loc"] == ["body", "samples", 0, "betas"]

    with pytest.raises(ValueError, match="has no NNLS prior.*--reference"):
        create_app(tmp_path / "plain.pt")
    write_table(tmp_path / "shifted.tsv", profiles + 0.01, REGIONS, TISSUES)
    with pytest.raises(ValueError, match="shifted.tsv: profiles differ from those the model's NNLS prior"):
        create_app(tmp_path / "prior.pt", reference=tmp_path / "shifted.tsv")
    write_table(tmp_path / "reordered.tsv", profiles[:, ::-1], REGIONS, TISSUES[::-1])
    with pytest.raises(InputMismatch, match="reordered.tsv: reference tissues differ"):
        create_app(tmp_path / "plain.pt", reference=tmp_path / "reordered.tsv")


@pytest.mark.parametrize(
    ("model", "floor", "is_prior"),
    [({"prior_weight_floor": 0.05}, 0.05, True), ({"prior_weight_floor": 0.0}, 0.03, False)],
)
def test_deconv_weighted_nnls_is_the_network_s_own_prior(tmp_path, files, model, floor, is_prior):
    """At a floor other than the default the reply's weighted NNLS is the network's own prior
    (the ``nnls`` output of its forward) and the card says so; a network with a plain prior
    (an export from before round 10 loads with floor 0) gets the default floor, 0.03."""
    profiles, betas = files
    _export(tmp_path / "m.pt", profiles, nnls_prior=True, **model)
    app = create_app(tmp_path / "m.pt")
    with serving(app) as client:
        reply = client.post("/predict", json=_body(betas)).json()
        card = client.get("/card").json()
    assert card["weighted_nnls"] == {"weight_floor": floor, "offset": True, "network_prior": is_prior}
    net = app.state.handler.p.model
    with torch.no_grad():
        prior = net(torch.tensor(betas, dtype=torch.float32))["nnls"].double().numpy()
    expected = deconvolve_weighted(profiles.astype(np.float32).astype(np.float64), betas, floor).proportions
    np.testing.assert_allclose(_table(reply, "weighted_nnls"), expected, atol=1e-9)
    if is_prior:
        np.testing.assert_allclose(_table(reply, "weighted_nnls"), prior, atol=1e-5)
    else:
        assert np.abs(_table(reply, "weighted_nnls") - prior).max() > 1e-4


def test_deconv_refuses_samples_with_fewer_regions_than_tissues(tmp_path, files):
    """A sample observed on fewer regions than the reference has tissues has no determined
    proportions: predict names the file and the sample (the other samples are not half
    written), the server answers 422 naming the field; a reference other than the one the
    network's prior was trained with is refused by predict as by the server."""
    profiles, betas = files
    sparse = betas.copy()
    sparse[2, 3:] = np.nan  # 3 regions for 4 tissues
    write_table(tmp_path / "sparse.csv", sparse.T, REGIONS, ["s0", "s1", "s2"])
    with pytest.raises(
        ValueError, match=r"sparse.csv: 1 sample\(s\) have values on fewer .* 4 tissues.*s2 \(3 regions\)"
    ):
        predict_files(
            tmp_path / "prior.pt", tmp_path / "reference.tsv", tmp_path / "sparse.csv", tmp_path / "out",
            0.01, 0.5, False, 0.02,
        )  # fmt: skip
    assert not (tmp_path / "out" / "model_proportions.csv").exists()
    with serving(create_app(tmp_path / "prior.pt")) as client:
        one = client.post(
            "/predict",
            json={"samples": [{"sample": "a", "betas": [0.5], "regions": [REGIONS[0]]}], "min_match": 0},
        )
    assert "samples.0.betas: 1 sample(s) have values on fewer" in refused(one)["msg"]
    write_table(tmp_path / "other.tsv", profiles * 0.9, REGIONS, TISSUES)
    with pytest.raises(ValueError, match="other.tsv: profiles differ from those the model's NNLS prior"):
        predict_files(
            tmp_path / "prior.pt", tmp_path / "other.tsv", tmp_path / "samples.csv", tmp_path / "out2",
            0.01, 0.5, False, 0.02,
        )  # fmt: skip


def test_too_few_regions_name_the_option_of_each_path(tmp_path, files, capfd):
    """Samples sharing 10 of the model's 40 regions (min_match 0.5) are refused naming what
    relaxes the check where the user is: --min-match for genomelab predict deconv, the
    config key deconv_predict and deconv_infer read, min_match for a serve request."""
    from types import SimpleNamespace

    from genomelab.cli import main
    from genomelab.deconv.steps import infer_step
    from genomelab.io.ids import TooFewMatched
    from genomelab.predict.steps import deconv_step

    profiles, betas = files
    renamed = REGIONS[:10] + [f"chrX:{i}" for i in range(30)]
    write_table(tmp_path / "other.csv", np.nan_to_num(betas.T, nan=0.5), renamed, ["s0", "s1", "s2"])
    ref, model = str(tmp_path / "reference.tsv"), str(tmp_path / "prior.pt")
    args = [
        "predict",
        "deconv",
        "--model",
        model,
        "--reference",
        ref,
        "--inputs",
        str(tmp_path / "other.csv"),
    ]
    assert main([*args, "--out", str(tmp_path / "p")]) == 2
    err = capfd.readouterr().err
    assert "10 of the reference's 40 regions found in the input" in err
    assert "set --min-match to 0.25 or lower (it is 0.5)" in err
    assert main([*args, "--out", str(tmp_path / "p"), "--min-match", "0.25"]) == 0  # the value given works
    out = {
        k: str(tmp_path / "rule" / k) for k in ("nnls", "weighted", "model", "residuals", "join", "stacked")
    }
    params = {
        "presence_threshold": 0.01,
        "min_match": 0.5,
        "unknown_component": False,
        "other_threshold": 0.02,
        "device": "cpu",  # deconv_predict's (deconv_infer has none: it runs on the CPU)
    }

    class Named(dict):  # Snakemake's input and output: by attribute, by key, get
        __getattr__ = dict.__getitem__

    for step, key in ((deconv_step, "inputs"), (infer_step, "samples")):
        smk = SimpleNamespace(
            input=Named(model=model, reference=ref, **{key: str(tmp_path / "other.csv")}),
            output=Named(out),
            params=SimpleNamespace(**params),
        )
        with pytest.raises(TooFewMatched, match=r"set deconv.infer.min_match in the run's config to 0.25"):
            step(smk)
    body = _body(np.nan_to_num(betas, nan=0.5))
    for s in body["samples"]:
        s["regions"] = renamed
    with serving(create_app(tmp_path / "prior.pt")) as client:
        (detail,) = client.post("/predict", json=body).json()["detail"]
    assert detail["loc"] == ["body", "samples", 0, "regions"]
    assert "set min_match in the request to 0.25 or lower (it is 0.5)" in detail["msg"]
