"""Tests of the binning module: parser, k-mer counts, shredding, model, clustering, bins."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from genomelab.binning import evaluate as ev
from genomelab.binning import kmers
from genomelab.binning.baselines import BaselineConfig, tnf_embedding
from genomelab.binning.bins import bin_summary, n50, write_bin_fastas
from genomelab.binning.cluster import ClusterConfig, choose_radius, medoid_cluster
from genomelab.binning.data import load_inputs, split_indices
from genomelab.binning.depth import depth_features
from genomelab.binning.model import KmerVAE, VAEConfig
from genomelab.binning.paths import resolve_paths
from genomelab.binning.shred import ShredConfig, cut_points, genome_name, shred_genomes
from genomelab.io.fasta import read_fasta
from genomelab.io.tables import read_depth_table
from sklearn.metrics import adjusted_rand_score

DATA = Path(__file__).parent / "data" / "binning"


def random_seq(rng: np.random.Generator, n: int, junk: float = 0.0, gc: float = 0.5) -> bytes:
    p_gc, p_at = gc / 2, (1 - gc) / 2
    letters = np.array(list(b"ACGT"), dtype=np.uint8)
    seq = letters[rng.choice(4, size=n, p=[p_at, p_gc, p_gc, p_at])]
    if junk:
        mask = rng.random(n) < junk
        seq[mask] = rng.choice(np.array(list(b"NRYKMSWn-"), dtype=np.uint8), size=int(mask.sum()))
    lower = rng.random(n) < 0.3
    seq[lower] = np.char.lower(seq[lower].view("S1")).view(np.uint8)
    return seq.tobytes()


def write_fasta(path: Path, records: list[tuple[str, bytes]], gz: bool = False) -> Path:
    text = b"".join(
        b">" + n.encode() + b" description\n" + s[:70] + b"\n" + s[70:] + b"\n" for n, s in records
    )
    if gz:
        with gzip.open(path, "wb") as fh:
            fh.write(text)
    else:
        path.write_bytes(text)
    return path


# ------------------------------------------------------------------ k-mers
def test_layout_has_2761_columns():
    assert kmers.N_CANONICAL == {6: 2080, 5: 512, 4: 136, 3: 32}
    assert kmers.N_FEATURES == 2761
    names = kmers.feature_names()
    assert len(names) == 2761 and names[0] == "k6_AAAAAA" and names[-1] == "gc"


def test_counts_equal_naive_counter_on_random_sequences():
    rng = np.random.default_rng(1)
    seqs = [random_seq(rng, int(rng.integers(0, 400)), junk=0.03) for _ in range(40)]
    seqs += [b"", b"NNNNNNN", b"ACGTA", b"acgtac", b"AAAAAANAAAAAA"]
    counts = kmers.canonical_counts_block(seqs)
    for k in kmers.KS:
        names = kmers.TABLES[k].names()
        for i, seq in enumerate(seqs):
            ref = kmers.naive_canonical_counts(seq, k)
            expected = np.array([ref.get(n, 0) for n in names])
            np.testing.assert_array_equal(counts[k][i], expected, err_msg=f"k={k}, contig {i}")


def test_profiles_equal_naive_profiles_and_sum_to_one():
    rng = np.random.default_rng(2)
    seqs = [random_seq(rng, 500, junk=0.01, gc=g) for g in (0.3, 0.5, 0.7)]
    feats, totals = kmers.profile_block(seqs)
    for i, seq in enumerate(seqs):
        np.testing.assert_allclose(feats[i], kmers.naive_profile(seq), rtol=0, atol=1e-6)
    for g, sl in kmers.GROUP_SLICES.items():
        if g != "gc":
            np.testing.assert_allclose(feats[:, sl].sum(axis=1), 1.0, atol=1e-5)
    assert feats[0, -1] < feats[1, -1] < feats[2, -1]


def test_reused_workspace_over_blocks_equals_naive_counts():
    """One workspace through blocks of shrinking and growing size (odd and even base
    totals, contigs shorter than 6, N runs and IUPAC codes at contig and block edges)."""
    rng = np.random.default_rng(9)
    seqs = [random_seq(rng, int(rng.integers(0, 900)), junk=0.02) for _ in range(30)]
    seqs += [b"ACGTA", b"A", b"NNNNNNNNNN", b"ACGTNNNNNNACGTAC", b"RYACGTACGTKM", b"acgtaa" * 40 + b"N"]
    rng.shuffle(seqs)
    ws = kmers.Workspace()
    for lo, hi in ((0, 20), (20, 23), (23, 24), (24, 36)):
        block = seqs[lo:hi]
        counts, totals = kmers.count_block(block, np.float32, ws)
        for k in kmers.KS:
            folded = kmers.TABLES[k].fold(counts[k])
            names = kmers.TABLES[k].names()
            for i, seq in enumerate(block):
                ref = kmers.naive_canonical_counts(seq, k)
                np.testing.assert_array_equal(folded[i], [ref.get(n, 0) for n in names], err_msg=f"k={k}")
        assert list(totals) == [sum(kmers.naive_canonical_counts(s, 6).values()) for s in block]
        feats, _ = kmers.profile_block(block, ws)
        np.testing.assert_array_equal(feats, kmers.profile_block(block)[0])


def test_counts_equal_naive_counter_on_a_real_genome(shared_data):
    path = shared_data / "binning_genomes" / "genomes" / "phage_Topaz_baboon_AMB_003_scaffold_97232.fna.gz"
    _, seq = next(iter(read_fasta(path)))
    pieces = [seq[i : i + 3000] for i in range(0, 12000, 3000)]
    counts = kmers.canonical_counts_block(pieces)
    for k in kmers.KS:
        names = kmers.TABLES[k].names()
        for i, piece in enumerate(pieces):
            ref = kmers.naive_canonical_counts(piece, k)
            np.testing.assert_array_equal(counts[k][i], [ref.get(n, 0) for n in names])


@pytest.mark.parametrize("seed", [11, 12])
def test_compiled_kernel_equals_numpy_and_naive_profiles(seed):
    """The numba kernel gives the numpy counter's profiles and totals exactly, on blocks
    with empty and short contigs, N runs, IUPAC codes, lowercase and runs of 5 bases."""
    pytest.importorskip("numba")
    rng = np.random.default_rng(seed)
    seqs = [random_seq(rng, int(rng.integers(0, 1500)), junk=0.02) for _ in range(25)]
    seqs += [b"", b"A", b"ACGTA", b"NNNNNNN", b"ACGTANACGTACNRYACGTAC", b"acgtac" * 30, b"GGGGGNCCCCC"]
    rng.shuffle(seqs)
    fast, fast_totals = kmers.profile_block(seqs, engine="numba")
    ref, ref_totals = kmers.profile_block(seqs, engine="numpy")
    np.testing.assert_array_equal(fast, ref)
    np.testing.assert_array_equal(fast_totals, ref_totals)
    for i, seq in enumerate(seqs[:8]):
        np.testing.assert_allclose(fast[i], kmers.naive_profile(seq), rtol=0, atol=1e-6)


def test_engine_choice_is_checked_and_auto_resolves():
    with pytest.raises(ValueError, match="k-mer engine must be one of"):
        kmers.resolve_engine("cuda")
    assert kmers.resolve_engine("numpy") == "numpy"
    assert kmers.resolve_engine("auto") in ("numba", "numpy")


@pytest.mark.parametrize("engine", ["numpy", "numba"])
def test_h5_streaming_matches_one_block_and_filters(tmp_path, engine):
    rng = np.random.default_rng(3)
    recs = [(f"c{i}", random_seq(rng, int(rng.integers(50, 600)), junk=0.02)) for i in range(30)]
    recs.append(("all_n", b"N" * 300))
    fasta = write_fasta(tmp_path / "c.fa.gz", recs, gz=True)
    if engine == "numba":
        pytest.importorskip("numba")
    stats = kmers.write_profiles_h5(
        fasta,
        tmp_path / "p.h5",
        min_length=100,
        block_contigs=4,
        block_bases=900,
        chunk_rows=8,
        engine=engine,
    )
    prof = kmers.read_profiles_h5(tmp_path / "p.h5")
    kept = [(n, s) for n, s in recs if len(s) >= 100 and n != "all_n"]
    assert list(prof.names) == [n for n, _ in kept]
    assert stats.n_no_kmers == 1 and stats.n_short == len(recs) - len(kept) - 1
    ref, _ = kmers.profile_block([s for _, s in kept], engine="numpy")
    np.testing.assert_array_equal(prof.features, ref)
    np.testing.assert_array_equal(prof.lengths, [len(s) for _, s in kept])


def test_threaded_profiles_equal_single_threaded_in_order():
    rng = np.random.default_rng(10)
    recs = [(f"c{i}", random_seq(rng, int(rng.integers(0, 700)), junk=0.03)) for i in range(40)]
    one = list(kmers.iter_profiles(iter(recs), 20, block_contigs=3, block_bases=1000, engine="numpy"))
    stats = kmers.ProfileStats()
    two = list(
        kmers.iter_profiles(
            iter(recs), 20, block_contigs=3, block_bases=1000, stats=stats, threads=3, engine="auto"
        )
    )
    assert [n for b in two for n in b.names] == [n for b in one for n in b.names]
    np.testing.assert_array_equal(
        np.concatenate([b.features for b in two]), np.concatenate([b.features for b in one])
    )
    assert stats.n_records == 40 and stats.n_kept == sum(len(b.names) for b in one)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        next(kmers.iter_profiles(iter(recs), threads=0))


def test_h5_reader_rejects_foreign_files(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as h5:
        h5["something"] = np.zeros(3)
    with pytest.raises(ValueError, match="x.h5 has no dataset"):
        kmers.read_profiles_h5(tmp_path / "x.h5")


# ---------------------------------------------------------------- shredding
def test_inputs_of_both_sources_are_refused_not_one_ignored():
    """input.contigs with input.genomes (or a truth table without contigs) named something
    the run would have silently ignored."""

    def cfg(**inp):
        return {
            "enabled": True,
            "input": {"genomes": [], "contigs": "", "truth": "", "depth": "", **inp},
            "shred": {"depth_samples": 0},
        }

    assert resolve_paths(cfg(contigs="my.fna"), "out").contigs == "my.fna"
    with pytest.raises(ValueError, match="input.contigs and binning.input.genomes are both set"):
        resolve_paths(cfg(contigs="my.fna", genomes=["g.fna.gz"]), "out")
    with pytest.raises(
        ValueError, match=r"binning.input.truth \(t.tsv\) is the truth of binning.input.contigs"
    ):
        resolve_paths(cfg(genomes=["g.fna.gz"], truth="t.tsv"), "out")
    # A module that is off plans nothing, so its inputs are not checked.
    resolve_paths({**cfg(contigs="my.fna", genomes=["g.fna.gz"]), "enabled": False}, "out")


def test_shred_truth_table_reassembles_the_genomes(tmp_path):
    rng = np.random.default_rng(4)
    genomes = {"gA": random_seq(rng, 30000), "gB": random_seq(rng, 22000, gc=0.65)}
    paths = [write_fasta(tmp_path / f"{g}.fna.gz", [(f"{g}_rec", s)], gz=True) for g, s in genomes.items()]
    cfg = ShredConfig(
        median_length=3000, sigma=0.5, min_length=1000, max_length=8000, depth_samples=3, seed=1
    )
    shred_genomes(paths, tmp_path / "contigs.fna.gz", tmp_path / "truth.tsv", cfg, tmp_path / "depth.tsv")
    contigs = dict(read_fasta(tmp_path / "contigs.fna.gz"))
    truth = pd.read_csv(tmp_path / "truth.tsv", sep="\t")
    assert set(truth["contig"]) == set(contigs)
    for row in truth.itertuples():
        assert contigs[row.contig] == genomes[row.genome][row.start : row.end]
        assert 1000 <= row.length <= 8000
    for g, seq in genomes.items():
        rows = truth[truth["genome"] == g].sort_values("start")
        assert (
            rows["start"].iloc[0] == 0 and (rows["start"].to_numpy()[1:] == rows["end"].to_numpy()[:-1]).all()
        )
        assert len(seq) - rows["end"].iloc[-1] < 1000
    names, depth, samples = read_depth_table(tmp_path / "depth.tsv")
    assert samples == ["sample1.bam", "sample2.bam", "sample3.bam"] and depth.shape == (len(truth), 3)
    # Same seed, same contigs.
    shred_genomes(paths, tmp_path / "c2.fna.gz", tmp_path / "t2.tsv", cfg)
    assert pd.read_csv(tmp_path / "t2.tsv", sep="\t").equals(truth)


def test_shred_config_and_names_are_checked(tmp_path):
    with pytest.raises(ValueError, match="median_length"):
        ShredConfig(median_length=100, min_length=1000)
    with pytest.raises(ValueError, match="not a plain identifier"):
        genome_name(tmp_path / "my genome.fna")
    cuts = cut_points(
        10_000,
        ShredConfig(median_length=2000, sigma=0.0, min_length=1500, max_length=4000),
        np.random.default_rng(0),
    )
    assert cuts == [(0, 2000), (2000, 4000), (4000, 6000), (6000, 8000), (8000, 10000)]


# ------------------------------------------------------------ names, depth
def test_depth_table_format_and_features(tmp_path):
    path = DATA / "depth.tsv"
    names, depth, samples = read_depth_table(path)
    assert list(names) == ["c1", "c2", "c3"] and samples == ["s1.bam", "s2.bam"]
    feats = depth_features(np.array(["c3", "c1"]), path)
    # Library-size normalisation over the contigs that are binned.
    picked = depth[[2, 0]].astype(np.float64)
    logged = np.log1p(picked / picked.mean(axis=0))
    expected = (logged - logged.mean(axis=0)) / np.where(logged.std(axis=0) > 0, logged.std(axis=0), 1)
    np.testing.assert_allclose(feats, expected, rtol=1e-5, atol=1e-6)
    bad = tmp_path / "bad.tsv"
    bad.write_text("contig\tdepth\nc1\t3\n")
    with pytest.raises(ValueError, match=r"bad\.tsv: depth table lacks columns"):
        read_depth_table(bad)
    with pytest.raises(ValueError, match="missing from depth table"):
        depth_features(np.array(["c1", "zz"]), path)


# -------------------------------------------------------------------- model
def _profiles(n: int, seed: int = 0, n_genomes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Profiles of random contigs from genomes with distinct GC and 2-mer biases."""
    rng = np.random.default_rng(seed)
    seqs, labels = [], []
    for i in range(n):
        g = i % n_genomes
        seqs.append(random_seq(rng, 1500, gc=0.3 + 0.2 * g))
        labels.append(g)
    feats, _ = kmers.profile_block(seqs)
    return feats, np.array(labels)


def test_vae_loss_terms_and_recon_formula():
    x, _ = _profiles(16)
    model = KmerVAE(VAEConfig(hidden=(32,), latent=4, kl_warmup_steps=10))
    out = model.loss(torch.from_numpy(x))
    t = out.terms
    d = kmers.N_FEATURES
    expected = (t["bce6"] + t["bce5"]) * d * 100 / 2 + (t["mse4"] + t["mse3"] + t["mse_gc"]) * d * 100 / 3
    torch.testing.assert_close(t["recon"], expected)
    assert set(t) >= {"bce6", "bce5", "mse4", "mse3", "mse_gc", "kl", "recon", "beta"}
    assert float(t["beta"]) == 0.0  # warm-up starts at 0
    model.loss(torch.from_numpy(x))
    assert float(model.loss(torch.from_numpy(x)).terms["beta"]) == pytest.approx(0.02)
    model.eval()
    assert float(model.loss(torch.from_numpy(x)).terms["beta"]) == pytest.approx(0.1)


def test_vae_config_rejects_bad_values():
    with pytest.raises(ValueError, match="beta"):
        VAEConfig(beta=-1)
    with pytest.raises(ValueError, match=r"unknown option binning\.model\.hiden"):
        VAEConfig.from_dict({"hiden": [3]})


def test_vae_with_depth_reconstructs_abundance():
    # Two abundance columns that differ by genome: a few steps must learn to decode them, which
    # only happens when their error is part of the loss, not just reported as a term.
    x, genome = _profiles(12)
    depth = np.stack([genome - 1.0, 1.0 - 0.5 * genome], axis=1).astype(np.float32)
    xd = torch.from_numpy(np.concatenate([x, depth], axis=1))
    torch.manual_seed(0)
    model = KmerVAE(VAEConfig(n_depth=2, hidden=(32,), latent=4, kl_warmup_steps=0, beta=0.0))
    out = model.loss(xd)
    assert torch.isfinite(out.loss)
    model.eval()
    with torch.no_grad():
        before = float(model.loss(xd).terms["mse_depth"])
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        opt.zero_grad()
        model.loss(xd).loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        raw, _, _ = model(xd)
        after = float(model.loss(xd).terms["mse_depth"])
    assert after < 0.15 * before, (before, after)
    np.testing.assert_allclose(raw[:, kmers.N_FEATURES :].numpy(), depth, atol=0.3)


def test_training_lowers_loss_and_same_seed_same_weights(tmp_path):
    from genomelab.binning.data import ModelInputs
    from genomelab.binning.training import load_model, train_vae

    x, _ = _profiles(40)
    inputs = ModelInputs(np.array([f"c{i}" for i in range(40)]), np.full(40, 1500), x, 0)
    model_cfg = {"hidden": [16], "latent": 4, "kl_warmup_steps": 5}
    train_cfg = {"max_epochs": 4, "batch_size": 8, "lr": 0.003, "weight_decay": 0.0}
    split = {"val_fraction": 0.2, "test_fraction": 0.1}
    runs = []
    for run in ("a", "b"):
        model, metrics = train_vae(
            inputs,
            model_cfg,
            train_cfg,
            split,
            3,
            tmp_path / run,
            tmp_path / f"{run}.json",
            tmp_path / f"{run}.pt",
            None,
            torch.device("cpu"),
        )
        runs.append(model)
    hist = metrics["history"]
    assert hist[-1]["train/recon"] < hist[0]["train/recon"]
    assert "test/bce6" in metrics["test"]
    for a, b in zip(runs[0].state_dict().values(), runs[1].state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    # The exported model reloads to the same encoder; another depth layout is refused.
    back = load_model(tmp_path / "a.pt", n_depth=0)
    torch.testing.assert_close(back.encode(torch.from_numpy(x))[0], runs[0].encode(torch.from_numpy(x))[0])
    with pytest.raises(ValueError, match=r"a\.pt was trained with 0 abundance columns, the inputs have 2"):
        load_model(tmp_path / "a.pt", n_depth=2)


# ---------------------------------------------------------------- clustering
def _blobs(n_per: int = 60, n_clusters: int = 5, dim: int = 16, spread: float = 0.05, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_clusters, dim))
    x = np.concatenate([c + spread * rng.normal(size=(n_per, dim)) * np.linalg.norm(c) for c in centres])
    return x.astype(np.float32), np.repeat(np.arange(n_clusters), n_per)


def test_medoid_clustering_recovers_separated_clusters_reproducibly():
    x, y = _blobs()
    labels = medoid_cluster(x, ClusterConfig(seed=1))
    assert adjusted_rand_score(y, labels) == pytest.approx(1.0)
    # Chunked neighbour counting (bounded memory) changes nothing; the seed reproduces.
    again = medoid_cluster(x, ClusterConfig(seed=1, candidate_chunk=7))
    np.testing.assert_array_equal(labels, again)


def test_medoid_clustering_rejects_bad_input():
    with pytest.raises(ValueError, match="non-finite"):
        medoid_cluster(np.array([[np.nan, 1.0]]), ClusterConfig())
    with pytest.raises(ValueError, match="radii"):
        ClusterConfig(default_radius=0.5, max_radius=0.2)


def test_graph_clustering_recovers_separated_clusters_reproducibly():
    from genomelab.binning.cluster import graph_cluster

    x, y = _blobs()
    labels = graph_cluster(x, ClusterConfig(seed=1))
    assert adjusted_rand_score(y, labels) == pytest.approx(1.0)
    # A tiny similarity block (bounded memory) changes nothing; the seed reproduces.
    np.testing.assert_array_equal(labels, graph_cluster(x, ClusterConfig(seed=1, knn_chunk_elements=50)))
    assert len(np.unique(graph_cluster(x[:1], ClusterConfig()))) == 1


def test_knn_cosine_matches_brute_force_in_chunks():
    from genomelab.binning.cluster import knn_cosine

    x = np.random.default_rng(3).normal(size=(57, 8)).astype(np.float32)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = unit @ unit.T
    np.fill_diagonal(sim, -np.inf)
    expected = np.argsort(-sim, axis=1)[:, :5]
    for chunk in (1, 100, 1 << 20):
        np.testing.assert_array_equal(knn_cosine(x, 5, chunk), expected)
    assert knn_cosine(x[:3], 10).shape == (3, 2)  # at most n - 1 neighbours


def test_cluster_config_rejects_bad_graph_options():
    for bad in ({"method": "kmeans"}, {"n_neighbors": 0}, {"resolution": 0}):
        with pytest.raises(ValueError, match="cluster"):
            ClusterConfig(**bad)


def test_choose_radius_finds_the_valley():
    near = torch.rand(200) * 0.05
    far = 0.25 + torch.rand(300) * 0.05
    cfg = ClusterConfig(max_radius=0.4, default_radius=0.02)
    r = choose_radius(torch.cat([near, far]), cfg)
    assert 0.05 <= r <= 0.25


def test_tnf_baseline_separates_easy_genomes():
    x, y = _profiles(90, n_genomes=3)
    # The genomes differ in GC only, which the first components carry.
    emb = tnf_embedding(x, BaselineConfig(n_components=3))
    assert emb.shape == (90, 3)
    labels = medoid_cluster(emb, ClusterConfig(seed=0, max_radius=1.0, default_radius=0.1))
    assert adjusted_rand_score(y, labels) > 0.8


# ---------------------------------------------------------------- evaluation
def test_amber_metrics_on_a_hand_made_example():
    bins = np.array([0, 0, 0, 1, 1, 2])
    genomes = np.array(["A", "A", "B", "B", "B", "A"])
    lengths = np.array([100, 100, 50, 300, 300, 800])
    metrics, table = ev.evaluate_binning(bins, genomes, lengths)
    t = table.set_index("bin")
    # bin "0": 200 bp of A, 50 of B; A has 1,000 bp in total.
    assert t.loc["0", "precision"] == pytest.approx(200 / 250) and t.loc["0", "recall"] == pytest.approx(0.2)
    assert t.loc["1", "precision"] == 1.0 and t.loc["1", "recall"] == pytest.approx(600 / 650)
    assert metrics["n_good_bins"] == 1  # bin 1 (recall 0.92, precision 1); bin 2 has recall 0.8
    assert metrics["ari_contigs"] == pytest.approx(adjusted_rand_score(genomes, bins.astype(str)))
    # Bins under min_bin_bp count as unbinned.
    small, _ = ev.evaluate_binning(bins, genomes, lengths, min_bin_bp=500)
    assert small["n_bins"] == 2 and small["binned_bp_fraction"] == pytest.approx(1400 / 1650)


# ---------------------------------------------------------------------- bins
def test_n50_and_bin_summary_and_fastas(tmp_path, killed_writer):
    assert n50(np.array([2, 3, 4, 5, 6])) == 5
    recs = [(f"c{i}", b"ACGT" * (10 + i)) for i in range(6)]
    fasta = write_fasta(tmp_path / "c.fa", recs)
    names = np.array([n for n, _ in recs])
    lengths = np.array([len(s) for _, s in recs])
    labels = np.array([7, 7, 7, 3, 3, 9])
    contig_table, per_bin = bin_summary(names, labels, lengths, np.full(6, 0.5), min_bin_bp=100)
    assert list(per_bin["bin"]) == ["bin_00001", "bin_00002", "bin_00003"]
    assert list(per_bin["written"]) == [True, True, False]
    assert per_bin["gc"].tolist() == pytest.approx([0.5] * 3)
    killed = killed_writer(tmp_path / "bins", "folder")  # what a write killed with -9 leaves
    n = write_bin_fastas(fasta, contig_table, tmp_path / "bins", max_open=1)
    assert n == 5 and not killed.exists()
    got = {p.name: [r for r, _ in read_fasta(p)] for p in (tmp_path / "bins").iterdir()}
    assert got == {"bin_00001.fna": ["c0", "c1", "c2"], "bin_00002.fna": ["c3", "c4"]}


def test_contigs_not_profiled_are_listed_unbinned_and_counted(tmp_path):
    """Nothing silent: short and all-N contigs stay in contig_bins.tsv and reach the summary."""
    from types import SimpleNamespace

    from genomelab.binning.bins import unbinned_dropped
    from genomelab.binning.steps import bins_step
    from genomelab.io.tables import read_contig_bins, write_clusters

    rng = np.random.default_rng(0)
    recs = [(f"long{i}", random_seq(rng, 600)) for i in range(4)]
    recs[1:1] = [("short0", random_seq(rng, 100))]
    recs += [("allN", b"N" * 700), ("short1", random_seq(rng, 50))]
    fasta = write_fasta(tmp_path / "c.fa", recs)
    kmers.write_profiles_h5(fasta, tmp_path / "p.h5", min_length=500)
    write_clusters([f"long{i}" for i in range(4)], np.array([0, 0, 1, 1]), tmp_path / "clusters.tsv")
    out = tmp_path / "bins"
    smk = SimpleNamespace(
        input=SimpleNamespace(
            contigs=str(fasta), h5=str(tmp_path / "p.h5"), clusters=str(tmp_path / "clusters.tsv")
        ),
        output=SimpleNamespace(
            fasta_dir=str(out / "fasta"),
            contig_bins=str(out / "contig_bins.tsv"),
            bin_summary=str(out / "b.tsv"),
        ),
        params=SimpleNamespace(min_bin_bp=1000),
    )
    bins_step(smk)
    table = read_contig_bins(out / "contig_bins.tsv")
    assert table["contig"].tolist() == ["long0", "long1", "long2", "long3", "short0", "allN", "short1"]
    unbinned = table.set_index("contig").loc[["short0", "allN", "short1"]]
    assert unbinned["bin"].tolist() == ["unbinned"] * 3
    assert unbinned["status"].tolist() == ["short", "no_kmers", "short"]
    assert not unbinned["bin_written"].any() and unbinned["length"].tolist() == [100, 700, 50]
    assert (table.set_index("contig").loc[["long0", "long3"], "status"] == "binned").all()
    dropped = unbinned_dropped(table)
    assert [(d.reason.split(",")[0], d.count, d.examples) for d in dropped] == [
        ("shorter than binning.features.min_length", 2, ["short0", "short1"]),
        (
            "fewer valid 6-mers than a binning.features.min_length contig (mostly N or other non-ACGT letters)",
            1,
            ["allN"],
        ),
    ]


def test_split_indices_are_disjoint_and_checked():
    s = split_indices(100, 0.1, 0.2, 0)
    assert sorted(np.concatenate(list(s.values())).tolist()) == list(range(100))
    assert len(s["val"]) == 10 and len(s["test"]) == 20
    with pytest.raises(ValueError, match="too few"):
        split_indices(2, 0.4, 0.4, 0)


def test_load_inputs_joins_depth_by_name(tmp_path):
    recs = [("c1", b"ACGTTGCA" * 50), ("c2", b"GGGCCCAT" * 50), ("c3", b"ATATATGC" * 50)]
    fasta = write_fasta(tmp_path / "c.fa", recs)
    kmers.write_profiles_h5(fasta, tmp_path / "p.h5", min_length=0)
    inputs = load_inputs(tmp_path / "p.h5", DATA / "depth.tsv")
    assert inputs.x.shape == (3, kmers.N_FEATURES + 2) and inputs.n_depth == 2


def test_small_clusters_join_the_nearest_large_cluster():
    from genomelab.binning.cluster import absorb_small_clusters, cluster_contigs

    x, y = _blobs(n_per=40, n_clusters=2, spread=0.02)
    labels = np.where(np.arange(80) % 10 == 0, 100 + np.arange(80), y)  # 8 singleton fragments
    lengths = np.full(80, 1000)
    merged = absorb_small_clusters(x, labels, lengths, min_bp=5000, radius=0.5, chunk=3)
    np.testing.assert_array_equal(merged, y)
    # Nothing moves when no large cluster is near enough.
    np.testing.assert_array_equal(absorb_small_clusters(x, labels, lengths, 5000, radius=1e-6), labels)
    full = cluster_contigs(x, lengths, ClusterConfig(seed=0), min_bp=5000)
    assert adjusted_rand_score(y, full) == pytest.approx(1.0)


def test_diagnostics_flag_mismatched_truth_names(tmp_path):
    from genomelab.binning.diagnostics import profile_checks

    rng = np.random.default_rng(5)
    recs = [(f"c{i}", random_seq(rng, 3000)) for i in range(25)]
    kmers.write_profiles_h5(write_fasta(tmp_path / "c.fa", recs), tmp_path / "p.h5", min_length=1000)
    truth = tmp_path / "truth.tsv"
    truth.write_text("contig\tgenome\n" + "".join(f"x{i}\tA\n" for i in range(25)))
    model_cfg = {"hidden": [16], "latent": 4}
    results = {r.name: r for r in profile_checks(tmp_path / "p.h5", 20, str(truth), None, model_cfg, 0)}
    assert results["names_truth"].status == "fail" and "first: ['c0'" in results["names_truth"].message
    assert results["profile_sanity"].status == "pass" and results["n_contigs"].status == "pass"
    assert results["initial_recon_vs_mean_profile"].status == "pass"
    few = {r.name: r for r in profile_checks(tmp_path / "p.h5", 100, None, None, model_cfg, 0)}
    assert few["n_contigs"].status == "fail"
