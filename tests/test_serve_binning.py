"""genomelab serve for binning models trained with abundances: per-contig depth in the request.

A real uvicorn server on 127.0.0.1 (``test_serve.serving``) answers with the latent that
``genomelab predict binning --depth`` computes for the same contigs and depth table, for
both kinds of binning model; depth counts that do not fit the model get a 422 naming the
contig's field.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from genomelab.binning.contrastive_model import ContrastiveConfig, ContrastiveEncoder
from genomelab.binning.model import KmerVAE, VAEConfig
from genomelab.binning.training import CONTRASTIVE_KIND, KIND
from genomelab.config import schema_default, schema_defaults
from genomelab.predict.binning import embed
from genomelab.serve.app import create_app
from genomelab.train.export import save_exported
from test_serve import refused, serving

pytestmark = pytest.mark.usefixtures("one_torch_thread")

N_SAMPLES = 2


def _export(path, kind: str, n_depth: int, **extra) -> None:
    """A binning model as training exports it (its run's length filter 1000 bp unless given;
    ``min_length=None``: a model exported before models recorded it)."""
    extra = {k: v for k, v in {"min_length": 1000, **extra}.items() if v is not None}
    torch.manual_seed(0)
    if kind == KIND:
        section = {"hidden": [16], "latent": 4}
        model = KmerVAE(VAEConfig.from_dict(section, n_depth=n_depth))
    else:
        section = {"hidden": [16], "embedding": 4, "groups": ["k4", "gc"]}
        model = ContrastiveEncoder(ContrastiveConfig.from_dict(section, n_depth=n_depth))
    save_exported(
        path, model.eval(), kind=kind, config=section, ids={"contigs": ["x"]}, data_fingerprint="0",
        extra={"n_depth": n_depth, **extra},
    )  # fmt: skip


def _contigs(rng, n: int = 5) -> list[dict]:
    contigs = []
    for i in range(n):
        # Contigs of different composition and depth, so the abundance columns matter.
        p = rng.dirichlet(np.full(4, 2.0))
        seq = "".join(rng.choice(list("ACGT"), 1500, p=p))
        contigs.append({"name": f"c{i}", "sequence": seq, "depth": rng.gamma(2, 10, N_SAMPLES).tolist()})
    return contigs


@pytest.mark.parametrize("kind", [KIND, CONTRASTIVE_KIND])
def test_binning_server_takes_depth_like_predict_files(tmp_path, kind):
    from genomelab.binning.kmers import write_profiles_h5

    rng = np.random.default_rng(0)
    _export(tmp_path / "model.pt", kind, N_SAMPLES)
    contigs = _contigs(rng)
    fasta = tmp_path / "new.fna"
    fasta.write_text("".join(f">{c['name']}\n{c['sequence']}\n" for c in contigs))
    depth = tmp_path / "depth.tsv"
    depth.write_text(
        "contig\ts1\ts2\n"
        + "".join(f"{c['name']}\t{c['depth'][0]}\t{c['depth'][1]}\n" for c in contigs[::-1])
    )
    write_profiles_h5(fasta, tmp_path / "profiles.h5", 0)
    cluster = schema_defaults("binning.cluster")
    inputs, latent, _ = embed(tmp_path / "model.pt", tmp_path / "profiles.h5", depth, cluster, 0)
    without = [{k: v for k, v in c.items() if k != "depth"} for c in contigs]
    with serving(create_app(tmp_path / "model.pt")) as client:
        reply = client.post("/predict", json={"contigs": contigs})
        missing = client.post("/predict", json={"contigs": contigs[:2] + without[2:]})
        short = client.post("/predict", json={"contigs": [{**contigs[0], "depth": [1.0]}, *contigs[1:]]})
        negative = client.post("/predict", json={"contigs": [{**contigs[0], "depth": [-1.0, 2.0]}]})
        alone = client.post("/predict", json={"contigs": contigs[:1]})
        card = client.get("/card").json()
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert [c["name"] for c in body["contigs"]] == list(inputs.names) and body["n_depth"] == N_SAMPLES
    np.testing.assert_allclose([c["latent"] for c in body["contigs"]], latent, rtol=1e-5, atol=1e-6)
    # The abundances are read: other depths give another latent.
    shuffled = [{**c, "depth": contigs[(i + 1) % len(contigs)]["depth"]} for i, c in enumerate(contigs)]
    with serving(create_app(tmp_path / "model.pt")) as client:
        other = client.post("/predict", json={"contigs": shuffled}).json()
    assert not np.allclose([c["latent"] for c in other["contigs"]], latent, atol=1e-4)
    err = refused(missing)
    assert (
        "contigs.2.depth: the model was trained with abundances from 2 sample(s); 3 contig(s) give none"
        in err["msg"]
    )
    assert err["loc"] == ["body", "contigs", 2, "depth"]
    err = refused(short)
    assert err["loc"] == ["body", "contigs", 0, "depth"] and "give 1" in err["msg"]
    assert negative.status_code == 422 and negative.json()["detail"][0]["loc"] == [
        "body",
        "contigs",
        0,
        "depth",
    ]
    assert "depth: every value must be finite and >= 0" in negative.json()["detail"][0]["msg"]
    assert "send 2 or more" in refused(alone)["msg"]
    assert card["kind"] == kind and card["extra"]["n_depth"] == N_SAMPLES


def test_composition_only_model_refuses_depth(tmp_path):
    _export(tmp_path / "model.pt", CONTRASTIVE_KIND, 0)
    contigs = _contigs(np.random.default_rng(1), 2)
    with serving(create_app(tmp_path / "model.pt")) as client:
        refused = client.post("/predict", json={"contigs": contigs})
        plain = client.post(
            "/predict", json={"contigs": [{k: c[k] for k in ("name", "sequence")} for c in contigs]}
        )
    assert refused.status_code == 422
    assert "contigs.0.depth: the model was trained without abundances" in json.dumps(refused.json())
    assert plain.status_code == 200 and plain.json()["n_depth"] == 0 and len(plain.json()["contigs"]) == 2


def test_a_skipped_contig_is_named_with_why(tmp_path):
    """Two contigs, one all N: with abundances the 422 names the skipped contig and why (it
    said only "send 2 or more", though 2 were sent); without, the reply says why it is
    skipped; with none left, every contig's reason."""
    # Models of a run without a length filter, so the reasons are the 6-mer ones.
    _export(tmp_path / "depth.pt", KIND, N_SAMPLES, min_length=0)
    _export(tmp_path / "plain.pt", KIND, 0, min_length=0)
    contigs = _contigs(np.random.default_rng(2), 2)
    contigs[1]["sequence"] = "N" * 1500
    short = [contigs[0], {**contigs[1], "sequence": "ACGTA"}]
    plain = [{k: c[k] for k in ("name", "sequence")} for c in contigs]
    with serving(create_app(tmp_path / "depth.pt")) as client:
        all_n = refused(client.post("/predict", json={"contigs": contigs}))
        too_short = refused(client.post("/predict", json={"contigs": short}))
    with serving(create_app(tmp_path / "plain.pt")) as client:
        reply = client.post("/predict", json={"contigs": plain}).json()
        none_left = refused(client.post("/predict", json={"contigs": [plain[1], {**plain[1], "name": "c2"}]}))
    assert all_n["loc"] == ["body", "contigs", 1]
    assert all_n["msg"].startswith(
        "contigs.1: 'c1' was skipped, no 6 consecutive A/C/G/T bases (1500 of its 1500 bp are N"
    )
    assert "that leaves 1 (c0): send 2 or more" in all_n["msg"]
    assert "contigs.1: 'c1' was skipped, 5 bp, shorter than a 6-mer" in too_short["msg"]
    assert reply["skipped"] == ["c1"] and [c["name"] for c in reply["contigs"]] == ["c0"]
    assert reply["skip_reasons"] == {
        "c1": "no 6 consecutive A/C/G/T bases (1500 of its 1500 bp are N or other letters)"
    }
    assert none_left["loc"] == ["body", "contigs"] and "contigs.0: 'c1' was skipped" in none_left["msg"]
    assert "contigs.1: 'c2' was skipped" in none_left["msg"]


def test_a_model_without_a_recorded_length_filter_gets_the_schema_s_as_predict_gives_it(tmp_path, caplog):
    # It got 0 (every contig with a 6-mer profiled) where genomelab predict binning applies
    # the schema's 2,000 bp: the two paths embedded different contigs of one assembly.
    rng = np.random.default_rng(4)
    _export(tmp_path / "model.pt", KIND, N_SAMPLES, min_length=None)
    contigs = _contigs(rng, 4)
    for c in contigs[:3]:
        c["sequence"] = c["sequence"] * 2  # 3,000 bp; the fourth stays at 1,500
    with caplog.at_level("WARNING"), serving(create_app(tmp_path / "model.pt")) as client:
        body = client.post("/predict", json={"contigs": contigs}).json()
    assert body["min_length"] == schema_default("binning.features.min_length") == 2000
    assert [c["name"] for c in body["contigs"]] == ["c0", "c1", "c2"] and body["skipped"] == ["c3"]
    assert "records no profile length filter" in caplog.text


def test_server_profiles_with_the_length_filter_the_model_records(tmp_path):
    """A model recording its run's min_length (1000): the server skips what the file path
    skips (it profiled every contig with a 6-mer, so an 800 bp contig got a latent and the
    abundances were normalised over other contigs than genomelab predict binning's), and
    says why."""
    from genomelab.binning.kmers import write_profiles_h5

    rng = np.random.default_rng(3)
    _export(tmp_path / "model.pt", KIND, N_SAMPLES, min_length=1000)
    contigs = _contigs(rng, 5)
    contigs[3]["sequence"] = contigs[3]["sequence"][:800]
    contigs[4]["sequence"] = contigs[4]["sequence"][:700] + "N" * 600 + contigs[4]["sequence"][1300:]
    fasta = tmp_path / "new.fna"
    fasta.write_text("".join(f">{c['name']}\n{c['sequence']}\n" for c in contigs))
    depth = tmp_path / "depth.tsv"
    depth.write_text(
        "contig\ts1\ts2\n" + "".join(f"{c['name']}\t{c['depth'][0]}\t{c['depth'][1]}\n" for c in contigs)
    )
    write_profiles_h5(fasta, tmp_path / "profiles.h5", 1000)
    inputs, latent, _ = embed(
        tmp_path / "model.pt", tmp_path / "profiles.h5", depth, schema_defaults("binning.cluster"), 0
    )
    with serving(create_app(tmp_path / "model.pt")) as client:
        body = client.post("/predict", json={"contigs": contigs}).json()
    assert [c["name"] for c in body["contigs"]] == list(inputs.names) == ["c0", "c1", "c2"]
    np.testing.assert_allclose([c["latent"] for c in body["contigs"]], latent, rtol=1e-5, atol=1e-6)
    assert body["min_length"] == 1000 and body["skipped"] == ["c3", "c4"]
    assert (
        body["skip_reasons"]["c3"]
        == "800 bp, shorter than the model's run profiled (binning.features.min_length 1000)"
    )
    assert body["skip_reasons"]["c4"].startswith("890 valid 6-mers, fewer than the 995 its run required")
