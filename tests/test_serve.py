"""genomelab serve: a real uvicorn server on 127.0.0.1 answers with the predict functions' results.

The models are real networks of each module (built by its own classes, untrained: what the
server must reproduce is the predict path's output for the same file, not accuracy),
exported in the format training writes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import re
import socket
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from genomelab.serve.app import create_app
from genomelab.train.export import ExportError, save_exported

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def serving(app):
    """Run ``app`` with uvicorn on a free port of 127.0.0.1 in a thread; yield an httpx client."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield client
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def refused(reply) -> dict:
    """The one error of a 422 reply, in the shape every 422 of the server has (FastAPI's
    validation errors: ``detail`` a list of ``{"type", "loc", "msg"}``)."""
    assert reply.status_code == 422, reply.text
    detail = reply.json()["detail"]
    assert isinstance(detail, list) and detail and {"type", "loc", "msg"} <= set(detail[0])
    assert detail[0]["loc"][0] == "body"
    return detail[0]


def _tissue_model(
    path: Path, n_regions: int = 40, classes=("Blood", "Brain", "Liver"), seed: int = 0, **extra
) -> list[str]:
    from genomelab.tissue.models import MLPConfig, build_model

    torch.manual_seed(seed)
    rng = np.random.default_rng(0)
    mu, sd = rng.uniform(0.2, 0.8, n_regions).astype(np.float32), np.full(n_regions, 0.2, np.float32)
    cfg = MLPConfig.from_dict({"hidden": [8]})
    members = torch.nn.ModuleList(
        [build_model("mlp", cfg, n_regions, len(classes), mu, sd, 150) for _ in range(2)]
    )
    regions = [f"chr1:{100 * i}-{100 * i + 100}" for i in range(n_regions)]
    save_exported(
        path,
        members.eval(),
        kind="mlp-ensemble",
        config=dataclasses.asdict(cfg),
        ids={"classes": list(classes), "regions": regions},
        data_fingerprint="0" * 16,
        extra={"seeds": [0, 1], "n_positions": 150, **extra},
    )
    return regions


def test_tissue_server_health_card_predict_and_errors(tmp_path):
    from genomelab.predict.tissue import TissueInputs, TissuePredictor

    run = tmp_path / "results" / "tissue"
    model = run / "train" / "mlp" / "model.pt"
    regions = _tissue_model(model)
    (model.parent / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.9}, "best_epoch": 3}))
    rows = {"ensemble": {"accuracy": 0.9}, "logistic regression": {"accuracy": 0.8}}
    comparison = {
        "title": "t",
        "split": "test",
        "primary": "accuracy",
        "higher_is_better": True,
        "rows": rows,
    }
    (run / "summary.json").write_text(
        json.dumps({"module": "tissue", "title": "T", "comparisons": [comparison]})
    )
    rng = np.random.default_rng(1)
    means = rng.uniform(0, 1, (2, len(regions))).astype(np.float32)
    means[1, :5] = np.nan
    with serving(create_app(model)) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["module"] == "tissue" and health["kind"] == "mlp-ensemble"
        card = client.get("/card").json()
        assert card["ids"]["regions"]["n"] == len(regions) and card["metrics"]["test"]["accuracy"] == 0.9
        assert card["comparison"][0]["rows"]["logistic regression"]["accuracy"] == 0.8
        assert card["genomelab_version"] and card["trained_with_genomelab"]
        body = {
            "samples": [
                {"sample": "a", "means": means[0].tolist()},
                # Region IDs given, in another order: joined by ID.
                {
                    "sample": "b",
                    "regions": regions[::-1],
                    "means": [None if np.isnan(v) else float(v) for v in means[1][::-1]],
                },
            ]
        }
        reply = client.post("/predict", json=body)
        assert reply.status_code == 200, reply.text
        got = reply.json()["samples"]
        # The same numbers as the predict function on the same model.
        predictor = TissuePredictor.load(model)
        cov = np.isfinite(means).astype(np.float32)
        pred = predictor.predict(
            TissueInputs(np.array(["a", "b"]), np.array(regions), means, cov, "x"), 0.5, 0.25
        )
        for record, expected in zip(got, pred.records(), strict=True):
            assert (
                record["call"] == expected["call"]
                and record["n_regions_covered"] == expected["n_regions_covered"]
            )
            for name, m in expected["models"].items():
                for c, p in m["probabilities"].items():
                    assert record["models"][name]["probabilities"][c] == pytest.approx(p, rel=1e-6)
        # Bad requests: 422 naming the field.
        bad = client.post("/predict", json={"samples": [{"sample": "a", "means": "high"}]})
        assert bad.status_code == 422 and "means" in json.dumps(bad.json()["detail"])
        bad = client.post("/predict", json={"samples": [{"sample": "a", "means": [0.5] * 3}]})
        err = refused(bad)
        assert "samples.0.means: 3 values without region IDs" in err["msg"]
        assert err["loc"] == ["body", "samples", 0, "means"]
        bad = client.post(
            "/predict", json={"samples": [{"sample": "a", "means": [0.5], "regions": ["chrZ:1"]}]}
        )
        err = refused(bad)
        assert "0 of the model's 40 regions" in err["msg"] and err["loc"][:3] == ["body", "samples", 0]
        # The calibrated confidence threshold of a request: below it, not classifiable.
        cut = float(np.mean([r["confidence"] for r in got]))
        strict = client.post("/predict", json={**body, "threshold": cut}).json()["samples"]
        assert [r["classifiable"] for r in strict] == [r["confidence"] >= cut for r in got]
        assert all(r["classifiable"] for r in got)  # the model records none (0)
        assert refused(client.post("/predict", json={**body, "threshold": 1}))["loc"] == ["body", "threshold"]
        bad = client.post("/predict", json={"samples": [], "min_covered": 2})
        assert bad.status_code == 422 and {"samples", "min_covered"} <= {
            e["loc"][-1] for e in bad.json()["detail"]
        }


def test_tissue_reply_says_which_threshold_decided_and_whether_calibrated(tmp_path):
    """The reply carries the threshold that decided `classifiable` (the request's, else the
    model's) and whether the confidence is calibrated, as predictions.json does."""
    from genomelab.predict.tissue import TissueInputs, TissuePredictor

    regions = _tissue_model(tmp_path / "ens.pt", temperature=1.5, threshold=0.4)
    _tissue_model(tmp_path / "member.pt")  # one member's file: no temperature, no threshold
    means = np.random.default_rng(4).uniform(0, 1, (3, len(regions))).round(3)
    body = {"samples": [{"sample": f"s{i}", "means": m.tolist()} for i, m in enumerate(means)]}
    pred = TissuePredictor.load(tmp_path / "ens.pt").predict(
        TissueInputs(np.array(["s0", "s1", "s2"]), np.array(regions), means, np.ones_like(means), "x"),
        0.5,
        0.25,
    )
    cut = float(np.median(pred.confidence))
    with serving(create_app(tmp_path / "ens.pt")) as client:
        by_model = client.post("/predict", json=body).json()
        by_request = client.post("/predict", json={**body, "threshold": cut}).json()
    with serving(create_app(tmp_path / "member.pt")) as client:
        raw = client.post("/predict", json=body).json()
    assert by_model["threshold"] == 0.4 and by_model["calibrated"] is True
    assert by_model["n_not_classifiable"] == int((pred.confidence < 0.4).sum())
    assert by_request["threshold"] == cut and by_request["n_flagged"] == 0
    assert by_request["n_not_classifiable"] == int((pred.confidence < cut).sum()) == 1
    assert [r["classifiable"] for r in by_request["samples"]] == (pred.confidence >= cut).tolist()
    assert raw["threshold"] == 0.0 and raw["calibrated"] is False and raw["n_not_classifiable"] == 0


class _Payload:
    """Runs code when unpickled: a server that unpickles would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_server_never_unpickles(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"format": "genomelab.exported_model", "payload": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(ExportError, match="evil.pt is not a genomelab exported model: corrupt") as err:
        create_app(tmp_path / "evil.pt")
    assert not marker.exists()
    # torch's advice to load with weights_only=False (running the file's code) is not passed on.
    assert "weights_only" not in str(err.value) and "objects other than tensors" in str(err.value)


def _regulon_model(path: Path, seed: int = 0, bin_bp: int = 128) -> None:
    """An untrained sequence-only regulon network, 128 bp bins (``bin_bp``), 512 bp windows."""
    from genomelab.regulon.model import RegulonModelConfig, RegulonNet
    from genomelab.regulon.training import KIND as RG_KIND

    torch.manual_seed(seed)
    rcfg = RegulonModelConfig.from_dict(
        {"channels": 4, "n_layers": 1, "inputs": "sequence"}, resolution_bp=16, bin_bp=bin_bp
    )
    save_exported(
        path, RegulonNet(rcfg), kind=RG_KIND, config=dict(rcfg.__dict__),
        ids={"contigs": ["c"]}, data_fingerprint="0", extra={"targets_config": {"window_bp": 512}},
    )  # fmt: skip


def test_regulon_server_reads_iupac_codes_as_n_like_the_fasta_path(tmp_path):
    """N and the IUPAC ambiguity codes, either case, are N on both paths (the server refused
    them: pattern ^[ACGTNacgtn]+$); other letters are refused naming the first one."""
    from genomelab.predict.regulon import predict_files

    _regulon_model(tmp_path / "regulon.pt")
    rng = np.random.default_rng(5)
    seq = list("".join(rng.choice(list("ACGTacgt"), 1000)))
    for i, code in enumerate("RYKMSWBDHVNrykmswbdhvn"):
        seq[40 * i + 7] = code
    seq = "".join(seq)
    (tmp_path / "g.fna").write_text(f">q\n{seq[:500]}\n{seq[500:]}\n")
    predict_files(tmp_path / "regulon.pt", tmp_path / "g.fna", tmp_path / "out")
    from_fasta = json.loads((tmp_path / "out" / "tracks.json").read_text())
    with serving(create_app(tmp_path / "regulon.pt")) as client:
        reply = client.post("/predict", json={"sequence": seq, "contig": "q"})
        as_n = client.post("/predict", json={"sequence": re.sub("[^ACGTacgt]", "N", seq), "contig": "q"})
        bad = client.post("/predict", json={"sequence": "ACGTRYU1"})
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["n_unknown_bases"] == from_fasta["n_unknown_bases"] == 22
    assert body["tracks"] == as_n.json()["tracks"]  # each code is read as N
    for head, step in from_fasta["steps_bp"].items():
        for strand in ("plus", "minus"):
            lines = (tmp_path / "out" / f"{head}.{strand}.bedGraph").read_text().splitlines()[1:]
            values = [float(line.split("\t")[3]) for line in lines]
            got = [v for v in body["tracks"][head][strand] if v is not None]
            np.testing.assert_allclose(got, values, rtol=1e-5, atol=1e-6)
            assert body["tracks"][head]["step_bp"] == step
    err = refused(bad)
    assert err["loc"] == ["body", "sequence"] and "'U' at position 6 is not a base" in err["msg"]


def test_deconv_regulon_binning_servers_match_predict(tmp_path):
    from genomelab.binning.model import KmerVAE, VAEConfig
    from genomelab.binning.training import KIND as BIN_KIND
    from genomelab.deconv.model import KIND as DC_KIND
    from genomelab.deconv.model import DeconvNet, DeconvNetConfig
    from genomelab.predict.deconv import DeconvPredictor
    from genomelab.predict.regulon import RegulonPredictor, encode

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    regions, tissues = [f"r{i}" for i in range(30)], ["Liver", "Lung", "Blood"]
    profiles = rng.uniform(0, 1, (30, 3))
    cfg = DeconvNetConfig.from_config({"hidden": [8]}, 30, 3, True, 0.01)
    save_exported(
        tmp_path / "deconv.pt", DeconvNet(cfg, profiles.mean(1), profiles), kind=DC_KIND,
        config=dataclasses.asdict(cfg), ids={"regions": regions, "tissues": tissues}, data_fingerprint="0",
    )  # fmt: skip
    betas = rng.uniform(0, 1, 30)
    with serving(create_app(tmp_path / "deconv.pt")) as client:
        reply = client.post("/predict", json={"samples": [{"sample": "s", "betas": betas.tolist()}]}).json()
    expected = DeconvPredictor(tmp_path / "deconv.pt").predict_arrays(betas[None])[0]
    got = [reply["samples"][0]["proportions"][t] for t in tissues]
    np.testing.assert_allclose(got, expected, rtol=1e-6)

    _regulon_model(tmp_path / "regulon.pt")
    seq = "".join(rng.choice(list("ACGT"), 1000))
    with serving(create_app(tmp_path / "regulon.pt")) as client:
        reply = client.post("/predict", json={"sequence": seq, "contig": "q", "start": 100})
        bad = client.post("/predict", json={"sequence": "ACGU"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "sequence"
    tracks = RegulonPredictor(tmp_path / "regulon.pt").predict_codes(encode(seq), "q", 100)
    body = reply.json()
    assert (body["start"], body["end"]) == (100, 100 + 7 * 128)  # whole bins only
    np.testing.assert_allclose(body["tracks"]["operon"]["minus"], tracks.tracks["operon"][1], rtol=1e-6)
    assert np.isfinite(tracks.tracks["operon"]).all() and tracks.tracks["density"].shape == (2, 7)

    vcfg = VAEConfig.from_dict({"hidden": [8], "latent": 3}, n_depth=0)
    save_exported(
        tmp_path / "vae.pt", KmerVAE(vcfg).eval(), kind=BIN_KIND, config={"hidden": [8], "latent": 3},
        ids={"contigs": ["x"]}, data_fingerprint="0", extra={"n_depth": 0, "min_length": 500},
    )  # fmt: skip
    contigs = [{"name": f"c{i}", "sequence": "".join(rng.choice(list("ACGT"), 800))} for i in range(3)]
    with serving(create_app(tmp_path / "vae.pt")) as client:
        reply = client.post(
            "/predict", json={"contigs": contigs + [{"name": "n", "sequence": "NNNN"}]}
        ).json()
    from genomelab.binning.kmers import profile_block
    from genomelab.binning.training import load_model

    x, _ = profile_block([c["sequence"].encode() for c in contigs])
    with torch.no_grad():
        z = load_model(tmp_path / "vae.pt", 0).encode(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose([c["latent"] for c in reply["contigs"]], z, rtol=1e-5, atol=1e-6)
    assert reply["skipped"] == ["n"]


def test_assoc_server_ranks_like_the_file_path(tmp_path):
    import pandas as pd
    from genomelab.assoc import data as D
    from genomelab.assoc import features as Fe
    from genomelab.assoc import training as T
    from genomelab.assoc.infer import rank_new_entities

    src = ROOT / "tests" / "data" / "assoc"
    D.prepare_data(src / "links.tsv", src / "sources.tsv", src / "targets.tsv", tmp_path / "data", seed=3)
    cfg = Fe.FeatureConfig(analyzer="word", ngram_min=1, ngram_max=1, text_dim=8, max_fields=2)
    Fe.build_features(tmp_path / "data", tmp_path / "feat.npz", tmp_path / "featurizer.npz", cfg, seed=0)
    s, t, links, asg = D.load_data(tmp_path / "data")
    feats = Fe.load_features(tmp_path / "feat.npz")
    labels = D.all_labels(links, asg, "links", len(s), len(t))
    torch.manual_seed(0)
    section = {"d_model": 8, "n_layers": 1, "n_heads": 2, "bridge_heads": 2, "bridge_dim": 8}
    model = T.build_model(section, feats, labels["train"]).eval()
    save_exported(
        tmp_path / "assoc.pt", model, kind=T.KIND, config=dataclasses.asdict(model.config),
        ids={"sources": s.ids, "targets": t.ids}, data_fingerprint="0",
    )  # fmt: skip
    queries = tmp_path / "data" / "heldout_targets.tsv"
    records = pd.read_csv(queries, sep="\t", dtype=str, keep_default_na=False).to_dict(orient="records")
    records = [{k: v for k, v in r.items() if k != "split"} for r in records]
    app = create_app(tmp_path / "assoc.pt", featurizer=tmp_path / "featurizer.npz")
    with serving(app) as client:
        reply = client.post("/predict", json={"entities": records, "side": "target", "top_k": 3})
        bad = client.post("/predict", json={"entities": records, "side": "both"})
        extra = client.post("/predict", json={"entities": [{**records[0], "weight": 2}], "side": "target"})
    expected = rank_new_entities(tmp_path / "assoc.pt", tmp_path / "featurizer.npz", queries, "target", 3)
    got = pd.DataFrame(reply.json()["predictions"])
    assert got["candidate"].tolist() == expected["candidate"].tolist()
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-5)
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "side"
    assert "numeric columns of the target entities differ" in refused(extra)["msg"]
    with pytest.raises(ValueError, match="needs --featurizer"):
        create_app(tmp_path / "assoc.pt")
    # Two models (a cross-validated run's folds): ranked by the mean of their scores, as
    # genomelab predict assoc --model a --model b ranks.
    torch.manual_seed(1)
    model = T.build_model(section, feats, labels["train"]).eval()
    save_exported(
        tmp_path / "fold1.pt", model, kind=T.KIND, config=dataclasses.asdict(model.config),
        ids={"sources": s.ids, "targets": t.ids}, data_fingerprint="0",
    )  # fmt: skip
    both = [tmp_path / "assoc.pt", tmp_path / "fold1.pt"]
    with serving(create_app(both, featurizer=tmp_path / "featurizer.npz")) as client:
        reply = client.post("/predict", json={"entities": records, "side": "target", "top_k": 3})
        health = client.get("/health").json()
    expected = rank_new_entities(both, tmp_path / "featurizer.npz", queries, "target", 3)
    got = pd.DataFrame(reply.json()["predictions"])
    assert got["candidate"].tolist() == expected["candidate"].tolist()
    np.testing.assert_allclose(got["score"], expected["score"], rtol=1e-5)
    assert health["model_files"] == [str(f) for f in both]


def test_several_tissue_or_regulon_files_are_served_averaged_like_predict(tmp_path):
    """genomelab serve --model a.pt --model b.pt (a cross-validated run's folds) answers with
    the average genomelab predict takes of the same files (AveragedPredictor, average_tracks);
    /health and /card name the files."""
    from genomelab.predict.regulon import RegulonPredictor, encode
    from genomelab.predict.tissue import AveragedPredictor, TissueInputs

    a, b = tmp_path / "fold0.pt", tmp_path / "fold1.pt"
    regions = _tissue_model(a, seed=0)
    _tissue_model(b, seed=1)
    means = np.random.default_rng(3).uniform(0, 1, (2, len(regions))).astype(np.float32)
    body = {"samples": [{"sample": f"s{i}", "means": m.tolist()} for i, m in enumerate(means)]}
    with serving(create_app([a, b])) as client:
        health = client.get("/health").json()
        card = client.get("/card").json()
        got = client.post("/predict", json=body).json()["samples"]
    assert health["model_files"] == [str(a), str(b)] and "model" not in health
    assert health["module"] == "tissue" and health["kind"] == "mlp-ensemble"
    assert card["model_files"] == [str(a), str(b)] and [c["model"] for c in card["models"]] == [
        str(a),
        str(b),
    ]
    assert "calibrated probabilities" in card["averaged"] and card["regions"]["n"] == len(regions)
    inputs = TissueInputs(np.array(["s0", "s1"]), np.array(regions), means, np.ones_like(means), "x")
    expected = AveragedPredictor.load([a, b]).predict(inputs, 0.5, 0.25).records()
    assert set(got[0]["models"]) == {str(a), str(b), "ensemble"}  # each file and their mean
    for record, want in zip(got, expected, strict=True):
        assert record["call"] == want["call"] and record["confidence"] == pytest.approx(want["confidence"])
        for name, m in want["models"].items():
            for c, v in m["probabilities"].items():
                assert record["models"][name]["probabilities"][c] == pytest.approx(v, rel=1e-6)
    # Files that record different thresholds: a request without one is refused naming its
    # threshold field (predict's advice, tissue.predict.threshold or --threshold, is no field).
    c = tmp_path / "fold2.pt"
    _tissue_model(c, seed=2, threshold=0.7)
    with serving(create_app([a, c])) as client:
        detail = refused(client.post("/predict", json=body))
        assert client.post("/predict", json={**body, "threshold": 0.7}).json()["threshold"] == 0.7
    assert detail["loc"] == ["body", "threshold"] and "send threshold with the request" in detail["msg"]
    assert str(c) in detail["msg"] and "--threshold" not in detail["msg"]
    with serving(create_app(a)) as client:  # one file: named as model, the card as ever
        assert client.get("/health").json()["model"] == str(a)
        assert "model_files" not in client.get("/card").json()

    _regulon_model(tmp_path / "r0.pt", seed=0)
    _regulon_model(tmp_path / "r1.pt", seed=1)
    seq = "".join(np.random.default_rng(6).choice(list("ACGT"), 1000))
    with serving(create_app([tmp_path / "r0.pt", tmp_path / "r1.pt"])) as client:
        reply = client.post("/predict", json={"sequence": seq, "contig": "q"}).json()
        health = client.get("/health").json()
    assert health["model_files"] == [str(tmp_path / "r0.pt"), str(tmp_path / "r1.pt")]
    one, two = (RegulonPredictor(tmp_path / f"r{k}.pt").predict_codes(encode(seq), "q", 0) for k in (0, 1))
    assert not np.allclose(one.tracks["operon"], two.tracks["operon"])
    for head in one.tracks:
        for row, strand in enumerate(("plus", "minus")):
            mean = (one.tracks[head][row] + two.tracks[head][row]) / 2
            np.testing.assert_allclose(reply["tracks"][head][strand], mean, rtol=1e-5, atol=1e-6)


def test_mixed_or_mismatched_model_files_are_refused_as_predict_refuses_them(tmp_path):
    _tissue_model(tmp_path / "t.pt")
    _tissue_model(tmp_path / "other_classes.pt", classes=("Blood", "Brain", "Lung"), seed=1)
    _regulon_model(tmp_path / "r.pt")
    _regulon_model(tmp_path / "r64.pt", seed=1, bin_bp=64)
    # A regulon network among tissue models: the tissue loader's message.
    with pytest.raises(ValueError, match=r"r.pt holds a 'regulon' model, expected a tissue model"):
        create_app([tmp_path / "t.pt", tmp_path / "r.pt"])
    with pytest.raises(
        ValueError, match=r"other_classes.pt and .*t.pt cannot be averaged: their classes differ"
    ):
        create_app([tmp_path / "t.pt", tmp_path / "other_classes.pt"])
    with pytest.raises(ValueError, match=r"r64.pt and .*r.pt cannot be averaged: bin_bp 64 and 128"):
        create_app([tmp_path / "r.pt", tmp_path / "r64.pt"])
    with pytest.raises(ValueError, match=r"is given twice among the tissue model files to average"):
        create_app([tmp_path / "t.pt", tmp_path / ".." / tmp_path.name / "t.pt"])
    save_exported(
        tmp_path / "vae.pt",
        torch.nn.Linear(2, 2),
        kind="binning-vae",
        config={},
        ids={},
        data_fingerprint="0",
    )
    with pytest.raises(ValueError, match=r"2 model files given: a binning server takes one"):
        create_app([tmp_path / "vae.pt", tmp_path / "r.pt"])


def test_each_model_files_card_carries_its_own_folds_metrics(tmp_path):
    """With several files, --metrics with one file put that fold's test figures on every card.
    Each card reads the metrics.json beside its own model, or --metrics gives one per file."""
    files = []
    for k in (0, 1):
        (tmp_path / f"fold{k}").mkdir()
        files.append(tmp_path / f"fold{k}" / "model.pt")
        _tissue_model(files[-1], seed=k)
        (tmp_path / f"fold{k}" / "metrics.json").write_text(json.dumps({"test": {"accuracy": 0.8 + k / 10}}))
    with serving(create_app(files)) as client:
        cards = client.get("/card").json()["models"]
    assert [c["metrics"]["test"]["accuracy"] for c in cards] == [0.8, 0.9]
    given = [tmp_path / "m0.json", tmp_path / "m1.json"]
    for k, path in enumerate(given):
        path.write_text(json.dumps({"test": {"accuracy": 0.5 + k / 10}}))
    with serving(create_app(files, metrics=given)) as client:
        cards = client.get("/card").json()["models"]
    assert [c["metrics"]["test"]["accuracy"] for c in cards] == [0.5, 0.6]
    with pytest.raises(
        ValueError, match=r"1 metrics file\(s\) for 2 model file\(s\): give one per model file"
    ):
        create_app(files, metrics=given[:1])
    with serving(create_app(files[0], metrics=str(given[1]))) as client:  # one file: as ever
        assert client.get("/card").json()["metrics"]["test"]["accuracy"] == 0.6
    from genomelab.cli import build_parser

    args = build_parser().parse_args(["serve", "--model", "a.pt", "b.pt", "--metrics", "x.json", "y.json"])
    assert args.metrics == ["x.json", "y.json"]


def test_serve_takes_model_repeated():
    """--model a.pt --model b.pt is two files (argparse kept the last alone); one stays a path."""
    from genomelab.cli import build_parser

    args = build_parser().parse_args(["serve", "--model", "a.pt", "--model", "b.pt", "c.pt"])
    assert args.model == ["a.pt", "b.pt", "c.pt"]
    assert build_parser().parse_args(["serve", "--model", "a.pt"]).model == ["a.pt"]


def test_tissue_compact_form_equals_list_form_and_is_checked(tmp_path):
    import base64

    regions = _tissue_model(tmp_path / "model.pt", n_regions=12)
    means = np.random.default_rng(2).uniform(0, 1, len(regions)).astype(np.float32)
    means[3] = np.nan
    packed = base64.b64encode(means.astype("<f4").tobytes()).decode()
    listed = [None if np.isnan(v) else float(v) for v in means]

    def sample(**fields):
        return {"samples": [{"sample": "a", **fields}]}

    with serving(create_app(tmp_path / "model.pt")) as client:
        by_list = client.post("/predict", json=sample(means=listed)).json()
        by_b64 = client.post("/predict", json=sample(means_b64=packed)).json()
        coverage = base64.b64encode(np.full(12, 7, "<f4").tobytes()).decode()
        deep = client.post("/predict", json=sample(means_b64=packed, coverage_b64=coverage))
        errors = {
            "means_b64": client.post("/predict", json=sample(means_b64="not base64!")),
            "odd bytes": client.post("/predict", json=sample(means_b64=base64.b64encode(b"12345").decode())),
            "both": client.post("/predict", json=sample(means=listed, means_b64=packed)),
            "range": client.post("/predict", json=sample(means=[1.5] + listed[1:])),
            "inf": client.post(
                "/predict",
                content=json.dumps(sample(means=[float("inf")] + listed[1:])).encode(),
                headers={"content-type": "application/json"},
            ),
            "coverage": client.post("/predict", json=sample(means=listed, coverage=[-1.0] * 12)),
            "regions": client.post("/predict", json=sample(means=listed, regions=regions[:3])),
        }
        schema = client.get("/openapi.json").json()
    assert by_list == by_b64 and by_b64["samples"][0]["n_regions_covered"] == 11
    assert deep.status_code == 200
    assert deep.json()["samples"][0]["models"] != by_b64["samples"][0]["models"]  # coverage is read
    for what, reply in errors.items():
        assert reply.status_code == 422, (what, reply.text)
    detail = {k: json.dumps(v.json()["detail"]) for k, v in errors.items()}
    assert '"means_b64"' in detail["means_b64"] and "not valid base64" in detail["means_b64"]
    assert "5 bytes, not a whole" in detail["odd bytes"]
    assert "exactly one of means" in detail["both"]
    assert "means: 1 value(s) are not in [0, 1]" in detail["range"] and "1.5 at position 0" in detail["range"]
    assert "means: 1 value(s)" in detail["inf"]
    assert "coverage: every value must be finite and >= 0" in detail["coverage"]
    assert "regions: 3 region IDs for 12 means" in detail["regions"]
    body = schema["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/TissueRequest"}
    assert "means_b64" in schema["components"]["schemas"]["TissueSample"]["properties"]


def test_tissue_server_counts_coverage_0_as_uncovered(tmp_path):
    regions = _tissue_model(tmp_path / "model.pt")
    means = np.random.default_rng(3).uniform(0, 1, len(regions)).round(3).tolist()
    coverage = [0.0] * 35 + [5.0] * 5
    with serving(create_app(tmp_path / "model.pt")) as client:
        zero = client.post(
            "/predict", json={"samples": [{"sample": "a", "means": means, "coverage": coverage}]}
        )
        blank = client.post(
            "/predict",
            json={"samples": [{"sample": "a", "means": [None] * 35 + means[35:], "coverage": coverage}]},
        )
    assert zero.status_code == 200, zero.text
    got, expected = zero.json()["samples"][0], blank.json()["samples"][0]
    assert got["n_regions_covered"] == 5 and got["flagged"]
    assert got == expected


def test_value_errors_take_the_validation_error_shape_with_the_field_they_name():
    from genomelab.serve.app import TissueRequest, value_error_detail

    def loc(message: str) -> list:
        (err,) = value_error_detail(message, TissueRequest)
        assert err["type"] == "value_error" and err["msg"] == message
        return err["loc"]

    assert loc("samples.3.means: 2 values without region IDs") == ["body", "samples", 3, "means"]
    assert loc("min_covered: too high") == ["body", "min_covered"]
    # Not a field of the request (a file, or no field at all): the body as a whole.
    assert loc("model.pt: corrupt") == ["body"]
    assert loc("/data/ref.tsv: 3 regions") == ["body"]
    assert loc("no region matches") == ["body"]


def _refusal_locs(request_type, body: dict) -> list[tuple]:
    """(loc, msg) of each error the server's parsing of ``body`` gives (no model needed:
    the body is refused before any handler runs)."""
    from fastapi.exceptions import RequestValidationError
    from genomelab.serve.app import answer

    with pytest.raises(RequestValidationError) as err:
        answer(None, request_type, json.dumps(body).encode())
    return [(tuple(e["loc"]), e["msg"]) for e in err.value.errors()]


def _b64(values) -> str:
    import base64

    return base64.b64encode(np.asarray(values, "<f4").tobytes()).decode()


@pytest.mark.parametrize(
    "module, item, field, first",
    [
        ("tissue", {"means": [0.5, 0.5], "coverage": [1.0, -1.0]}, "coverage", "every value must be finite"),
        ("tissue", {"means": [0.5, 0.5], "coverage": [1.0]}, "coverage", "1 values for 2 means"),
        (
            "tissue",
            {"means": [0.5, 0.5], "coverage_b64": _b64([1, -2])},
            "coverage_b64",
            "-2.0 at position 1",
        ),
        ("tissue", {"means": [0.5, 1.5]}, "means", "1.5 at position 1"),
        ("tissue", {"means_b64": _b64([0.5, 1.5])}, "means_b64", "1.5 at position 1"),
        ("tissue", {"means": [0.5, 0.5], "regions": ["r1"]}, "regions", "1 region IDs for 2 means"),
        ("deconv", {"betas": [0.5, -0.5]}, "betas", "-0.5 at position 1"),
        ("deconv", {"betas_b64": _b64([0.5, 2])}, "betas_b64", "2.0 at position 1"),
        ("deconv", {"betas": [0.5, 0.5], "regions": ["r1"]}, "regions", "1 region IDs for 2 betas"),
    ],
)
def test_a_bad_per_sample_field_is_named_down_to_the_field(module, item, field, first):
    """A per-sample field that fails its check gets a 422 whose loc ends at that field
    (it stopped at the sample: ["body", "samples", 0])."""
    from genomelab.serve.app import REQUESTS

    errors = _refusal_locs(REQUESTS[module], {"samples": [{"sample": "a", **item}]})
    assert len(errors) == 1 and errors[0][0] == ("body", "samples", 0, field), errors
    assert f"{field}: " in errors[0][1] and first in errors[0][1]


def test_regulon_genes_and_binning_depth_errors_name_their_field():
    from genomelab.serve.app import BinningRequest, RegulonRequest

    genes = [{"start": 0, "end": 10, "strand": "+"}, {"start": 50, "end": 40, "strand": "-"}]
    assert _refusal_locs(RegulonRequest, {"sequence": "ACGT" * 20, "genes": genes})[0][0] == (
        "body", "genes", 1, "end",
    )  # fmt: skip
    genes[1] = {"start": 100, "end": 120, "strand": "-"}
    loc, msg = _refusal_locs(RegulonRequest, {"sequence": "ACGT" * 20, "genes": genes})[0]
    assert loc == ("body", "genes", 1) and "lies outside the sequence [0, 80)" in msg
    contigs = [{"name": "c", "sequence": "ACGT", "depth": [1.0, -1.0]}]
    assert _refusal_locs(BinningRequest, {"contigs": contigs})[0][0] == ("body", "contigs", 0, "depth")


def test_tissue_server_names_the_coverage_field_and_the_regions_of_a_mismatch(tmp_path):
    regions = _tissue_model(tmp_path / "model.pt", n_regions=6)
    means = [0.5] * 6
    with serving(create_app(tmp_path / "model.pt")) as client:
        bad_coverage = client.post(
            "/predict", json={"samples": [{"sample": "a", "means": means, "coverage": [-1.0] * 6}]}
        )
        short_b64 = client.post("/predict", json={"samples": [{"sample": "a", "means_b64": _b64([0.5])}]})
        other = client.post(
            "/predict",
            json={"samples": [{"sample": "a", "means": means, "regions": [f"x{r}" for r in regions]}]},
        )
    assert refused(bad_coverage)["loc"] == ["body", "samples", 0, "coverage"]
    err = refused(short_b64)
    assert err["loc"] == ["body", "samples", 0, "means_b64"] and "1 values without region IDs" in err["msg"]
    assert refused(other)["loc"] == ["body", "samples", 0, "regions"]


# Each request field standing for a config key, and the key (the server marks them in its
# request schema; a field losing its key, or a new one not listed here, fails the first test).
KEY_FIELDS = {
    ("tissue", "min_region_match"): "tissue.predict.min_region_match",
    ("tissue", "min_covered"): "tissue.predict.min_covered",
    ("tissue", "threshold"): "tissue.calibration.threshold",
    ("deconv", "min_match"): "deconv.infer.min_match",
    ("deconv", "unknown_component"): "deconv.reference.unknown_component",
    ("assoc", "side"): "assoc.infer.side",
    ("assoc", "top_k"): "assoc.infer.top_k",
}
# The smallest valid body of each module, to which one field is added.
MINIMAL_BODY = {
    "tissue": {"samples": [{"sample": "a", "means": [0.5]}]},
    "deconv": {"samples": [{"sample": "a", "betas": [0.5]}]},
    "assoc": {"entities": [{"id": "e"}]},
}


def test_every_request_field_standing_for_a_config_key_names_it_in_the_openapi_schema():
    from genomelab.serve.app import CONFIG_KEY, REQUESTS

    marked = {
        (module, name): prop[CONFIG_KEY]
        for module, request_type in REQUESTS.items()
        for name, prop in request_type.model_json_schema()["properties"].items()
        if CONFIG_KEY in prop
    }
    assert marked == KEY_FIELDS


def _edges(node: dict) -> tuple[list, list]:
    """(values the schema of a config key accepts, values it refuses), at and just past each
    bound: an inclusive bound is accepted and the next value out refused; an exclusive one
    refused and the next value in accepted. An unbounded side: a far value is accepted."""
    import math

    if "enum" in node:
        return list(node["enum"]), ["-".join(map(str, node["enum"]))]
    if node["type"] == "boolean":
        return [True, False], [2]
    whole = node["type"] == "integer"

    def step(x, towards: float):
        return x + (1 if towards > x else -1) if whole else math.nextafter(x, towards)

    accept, refuse = [], []
    for inclusive, exclusive, outwards in (
        ("minimum", "exclusiveMinimum", -math.inf),
        ("maximum", "exclusiveMaximum", math.inf),
    ):
        if inclusive in node:
            accept.append(node[inclusive])
            refuse.append(step(node[inclusive], outwards))
        elif exclusive in node:
            refuse.append(node[exclusive])
            accept.append(step(node[exclusive], -outwards))
        else:
            accept.append(int(math.copysign(2**31, outwards)) if whole else math.copysign(1e300, outwards))
    return accept, refuse


@pytest.mark.parametrize("module, field", sorted(KEY_FIELDS))
def test_a_request_field_is_bounded_as_its_config_key_in_the_schema(module, field):
    """The server accepts a config-key field at each inclusive bound of the key's schema and
    refuses it just outside (422 naming the field), as `genomelab predict`'s option does; the
    bounds are read from the schema here, not written out again."""
    from genomelab.config import schema_node
    from genomelab.predict.cli import in_range_of
    from genomelab.serve.app import REQUESTS

    key = KEY_FIELDS[module, field]
    node = schema_node(key)
    request_type = REQUESTS[module]
    accept, refuse = _edges(node)
    assert refuse, f"{key}: no value to refuse"
    for value in accept:
        req = request_type.model_validate_json(json.dumps({**MINIMAL_BODY[module], field: value}))
        assert getattr(req, field) == value, (key, value)
    for value in refuse:
        errors = _refusal_locs(request_type, {**MINIMAL_BODY[module], field: value})
        assert [loc for loc, _ in errors] == [("body", field)], (key, value, errors)
    if node.get("type") in ("number", "integer"):  # the CLI option of the key draws the same line
        parse = in_range_of(key)
        for value in accept:
            assert parse(repr(value)) == value
        for value in refuse:
            with pytest.raises(argparse.ArgumentTypeError, match=re.escape(key)):
                parse(repr(value))
