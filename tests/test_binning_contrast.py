"""The contrastive composition encoder: views, loss, separation, resume, export, selection."""

from __future__ import annotations

import gzip
import math

import numpy as np
import pytest
import torch
from genomelab.binning.contrastive_model import ContrastiveConfig, ContrastiveEncoder, nt_xent
from genomelab.binning.contrastive_views import (
    fragment_coords,
    group_columns,
    load_views,
    make_views,
    save_views,
)
from genomelab.binning.data import load_inputs
from genomelab.binning.encode import encode_and_cluster
from genomelab.binning.kmers import naive_profile, write_profiles_h5
from genomelab.binning.model import VAEConfig, vae_options
from genomelab.binning.training import (
    check_views,
    load_model,
    model_kind,
    train_contrastive,
    train_from_files,
)
from genomelab.train import TrainConfig

SPLIT = {"val_fraction": 0.2, "test_fraction": 0.0}
SMALL = {"groups": ["k4"], "n_views": 3, "min_bp": 500, "hidden": [32], "embedding": 8, "dropout": 0.0}


def markov_genome(rng: np.random.Generator, n_bp: int, concentration: float = 0.6) -> bytes:
    """A genome from a random first-order Markov chain: its own dinucleotide composition."""
    trans = rng.dirichlet(np.full(4, concentration), size=4)
    cum = np.cumsum(trans, axis=1)
    u = rng.random(n_bp)
    out = np.empty(n_bp, dtype=np.uint8)
    state = 0
    for i in range(n_bp):
        state = min(int(np.searchsorted(cum[state], u[i])), 3)
        out[i] = state
    return np.frombuffer(b"ACGT", dtype=np.uint8)[out].tobytes()


def write_contigs(tmp_path, n_genomes: int = 2, n_bp: int = 120_000, seed: int = 0):
    """Genomes cut into 2-4 kb contigs: (contigs FASTA, profiles HDF5, genome of each contig)."""
    rng = np.random.default_rng(seed)
    fasta = tmp_path / "contigs.fna.gz"
    genomes = []
    with gzip.open(fasta, "wb") as fh:
        for g in range(n_genomes):
            seq, start, piece = markov_genome(rng, n_bp), 0, 0
            while n_bp - start >= 2000:
                size = min(int(rng.integers(2000, 4001)), n_bp - start)
                fh.write(f">g{g}_{piece}\n".encode() + seq[start : start + size] + b"\n")
                genomes.append(g)
                start, piece = start + size, piece + 1
    h5 = tmp_path / "profiles.h5"
    write_profiles_h5(fasta, h5, 1000)
    return fasta, h5, np.array(genomes)


def train(tmp_path, inputs, views, name="run", seed=0, **train):
    cfg = {"max_epochs": 6, "batch_size": 32, "lr": 3e-3, "weight_decay": 0.0, "patience": 50, **train}
    out = tmp_path / name
    return train_contrastive(
        inputs,
        views,
        SMALL,
        cfg,
        SPLIT,
        seed,
        out / "state",
        out / "metrics.json",
        out / "model.pt",
        None,
        torch.device("cpu"),
    )


@pytest.fixture(scope="module")
def two_genomes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two")
    fasta, h5, genomes = write_contigs(tmp)
    views = make_views(fasta, h5, ["k4"], 3, 0.5, 500, seed=1)
    return tmp, fasta, h5, genomes, load_inputs(h5), views


def test_views_are_subsequences_of_their_own_contig(two_genomes):
    _, fasta, h5, _, inputs, views = two_genomes
    from genomelab.io.fasta import read_fasta

    seqs = dict(read_fasta(fasta))
    cols = group_columns(["k4"])
    assert views.views.shape == (len(inputs.names), 4, 136)
    lengths = inputs.lengths
    start, end = views.coords[..., 0], views.coords[..., 1]
    assert (start >= 0).all() and (end <= lengths[:, None]).all()
    assert ((end - start) >= np.maximum(np.ceil(0.5 * lengths), 500)[:, None]).all()
    assert (end - start < lengths[:, None]).any()  # real fragments, not only whole contigs
    # Views are float16 (3 significant digits; see contrastive_views): equal to the naive
    # counter's frequencies to float16 rounding.
    assert views.views.dtype == np.float16
    for i in (0, 7, len(inputs.names) - 1):
        seq = seqs[inputs.names[i]]
        np.testing.assert_allclose(views.views[i, 0], naive_profile(seq)[cols], rtol=2**-11, atol=1e-7)
        for v in range(3):
            s, e = views.coords[i, v]
            np.testing.assert_allclose(
                views.views[i, v + 1], naive_profile(seq[s:e])[cols], rtol=2**-11, atol=1e-7
            )
        # and not the profile of the same stretch of another contig
        other = seqs[inputs.names[(i + 1) % len(inputs.names)]]
        s, e = views.coords[i, 0]
        assert not np.allclose(views.views[i, 1], naive_profile(other[s:e])[cols], atol=1e-6)


def test_views_file_roundtrip_and_checks(two_genomes, tmp_path):
    _, _, _, _, inputs, views = two_genomes
    save_views(tmp_path / "v.h5", views)
    back = load_views(tmp_path / "v.h5")
    assert back.groups == ("k4",) and np.array_equal(back.views, views.views)
    assert np.array_equal(back.names, views.names) and np.array_equal(back.coords, views.coords)
    cfg = ContrastiveConfig.from_dict(SMALL)
    check_views(back, inputs, cfg)
    with pytest.raises(ValueError, match="groups"):
        check_views(back, inputs, ContrastiveConfig.from_dict({**SMALL, "groups": ["k4", "k5"]}))
    back.names = back.names[::-1].copy()
    with pytest.raises(ValueError, match="contig names differ"):
        check_views(back, inputs, cfg)
    with pytest.raises(FileNotFoundError, match="missing.h5"):
        load_views(tmp_path / "missing.h5")


def test_fragment_coords_and_config_reject_bad_values():
    rng = np.random.default_rng(0)
    coords = fragment_coords(np.array([300, 5000]), 4, 0.5, 1000, rng)
    assert (coords[0] == [0, 300]).all()  # shorter than min_bp: the whole contig
    assert ((coords[1, :, 1] - coords[1, :, 0]) >= 2500).all()
    for bad, match in (
        ({"n_views": 0}, r"n_views must be >= 1, not 0"),
        ({"min_fraction": 0.0}, r"view min_fraction must be in \(0, 1\], not 0\.0"),
        ({"min_bp": 0}, r"view min_bp must be >= 1, not 0"),
    ):
        with pytest.raises(ValueError, match=match):
            fragment_coords(
                np.array([5000]),
                bad.get("n_views", 2),
                bad.get("min_fraction", 0.5),
                bad.get("min_bp", 10),
                rng,
            )
    with pytest.raises(ValueError, match="temperature"):
        ContrastiveConfig.from_dict({**SMALL, "temperature": 0.0})
    with pytest.raises(ValueError, match="groups"):
        ContrastiveConfig.from_dict({**SMALL, "groups": ["k7"]})
    with pytest.raises(ValueError, match="kind"):
        model_kind({"kind": "pca"})
    assert vae_options({"kind": "vae", "contrastive": {}, "latent": 3}) == {"latent": 3}
    assert VAEConfig.from_dict({"kind": "contrastive", "contrastive": SMALL, "latent": 3}).latent == 3


def test_nt_xent_matches_the_formula():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    t = 0.5
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    total = 0.0
    for i in range(10):
        pos = (i + 5) % 10
        others = [j for j in range(10) if j != i]
        denom = sum(math.exp(float(z[i] @ z[j]) / t) for j in others)
        total += -(float(z[i] @ z[pos]) / t - math.log(denom))
    assert float(nt_xent(z1, z2, t)) == pytest.approx(total / 10, rel=1e-5)
    # identical, well separated pairs: far below chance log(2b - 1)
    e = torch.eye(5) * 10
    assert float(nt_xent(e, e, 0.1)) < 0.01 < math.log(9)


def test_loss_falls_and_embedding_separates_two_genomes(two_genomes):
    tmp, _, _, genomes, inputs, views = two_genomes
    model, payload = train(tmp, inputs, views, max_epochs=8)
    val = [h["val/loss"] for h in payload["history"]]
    assert val[-1] < val[0] - 0.3, val
    assert val[-1] < payload["chance_nt_xent"]
    z = torch.nn.functional.normalize(model.embed(torch.from_numpy(inputs.x)), dim=1)
    sim = z @ z.T
    sim.fill_diagonal_(-2)
    nearest = sim.topk(5, dim=1).indices.numpy()
    purity = (genomes[nearest] == genomes[:, None]).mean()
    assert purity > 0.9, purity  # chance is about 0.5 with two equal genomes


def test_resume_after_a_crash_equals_an_uninterrupted_run(two_genomes, monkeypatch):
    tmp, _, _, _, inputs, views = two_genomes
    ref, ref_payload = train(tmp, inputs, views, name="ref", max_epochs=4)
    import genomelab.binning.training as training

    class Crashing(ContrastiveEncoder):
        calls = 0

        def loss(self, batch):
            if self.training:
                Crashing.calls += 1
                if Crashing.calls > 2 * 2 + 1:  # 2 train batches per epoch: dies in epoch 3
                    raise KeyboardInterrupt
            return super().loss(batch)

    monkeypatch.setattr(training, "ContrastiveEncoder", Crashing)
    with pytest.raises(KeyboardInterrupt):
        train(tmp, inputs, views, name="run", max_epochs=4)
    monkeypatch.undo()
    resumed, payload = train(tmp, inputs, views, name="run", max_epochs=4)
    for k, v in ref.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k
    assert [h["val/loss"] for h in payload["history"]] == [h["val/loss"] for h in ref_payload["history"]]


@pytest.mark.parametrize("kind", ["vae", "contrastive"])
def test_train_from_files_resumed_after_sigterm_or_a_kill_equals_an_uninterrupted_run(
    two_genomes, tmp_path, monkeypatch, kind
):
    """train_from_files (the binning_train rule's step) stopped mid-epoch by SIGTERM or a
    kill and rerun: the same weights and history. The VAE's KL warm-up (a step counter) is
    still running at the crash, its sampling and dropout draw random numbers."""
    from resume_check import assert_resume_is_exact

    _, _, h5, _, _, views = two_genomes
    save_views(tmp_path / "views.h5", views)
    model_cfg = {
        "kind": kind,
        "contrastive": {**SMALL, "dropout": 0.2},
        "hidden": [32],
        "latent": 4,
        "dropout": 0.2,
        "kl_warmup_steps": 20,
    }
    train_cfg = {"max_epochs": 4, "batch_size": 16, "lr": 3e-3, "patience": 50}

    def train(root):
        train_from_files(
            h5,
            None,
            str(tmp_path / "views.h5"),
            model_cfg,
            train_cfg,
            SPLIT,
            0,
            root / "state",
            root / "metrics.json",
            root / "model.pt",
            root / "tb",
            "cpu",
        )

    assert_resume_is_exact(train, tmp_path, monkeypatch)


def test_exported_model_embeds_like_the_trained_one_and_clusters(two_genomes):
    from genomelab.binning.cluster import ClusterConfig

    tmp, _, _, genomes, inputs, views = two_genomes
    model, _ = train(tmp, inputs, views, name="export", max_epochs=2)
    loaded = load_model(tmp / "export" / "model.pt", n_depth=0)
    assert isinstance(loaded, ContrastiveEncoder)
    x = torch.from_numpy(inputs.x)
    torch.testing.assert_close(loaded.embed(x), model.embed(x))
    with pytest.raises(ValueError, match="abundance columns"):
        load_model(tmp / "export" / "model.pt", n_depth=2)
    latent, labels = encode_and_cluster(
        tmp / "export" / "model.pt", inputs, ClusterConfig.from_dict({"n_neighbors": 10}, seed=0), "cpu"
    )
    assert latent.shape == (len(inputs.names), SMALL["embedding"]) and len(labels) == len(inputs.names)


def test_train_from_files_dispatches_on_kind(two_genomes, tmp_path):
    _, _, h5, _, _, views = two_genomes
    save_views(tmp_path / "views.h5", views)
    common = dict(
        train_cfg={"max_epochs": 1, "batch_size": 32},
        split_cfg=SPLIT,
        seed=0,
        state_dir=tmp_path / "state",
        metrics_path=tmp_path / "m.json",
        model_path=tmp_path / "model.pt",
        tensorboard_dir=None,
        device="cpu",
    )
    with pytest.raises(ValueError, match="trains no model"):
        train_from_files(h5, None, None, {"kind": "tnf"}, **common)
    with pytest.raises(ValueError, match="views file"):
        train_from_files(h5, None, None, {"kind": "contrastive", "contrastive": SMALL}, **common)
    payload = train_from_files(
        h5, None, str(tmp_path / "views.h5"), {"kind": "contrastive", "contrastive": SMALL}, **common
    )
    assert payload["n_views"] == 4
    assert isinstance(load_model(tmp_path / "model.pt", 0), ContrastiveEncoder)
    assert TrainConfig.from_dict(common["train_cfg"]).max_epochs == 1
