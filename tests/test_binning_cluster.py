"""Tests of binning clustering, outliers, abundance inputs and the figures (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.binning import evaluate as ev
from genomelab.binning.bins import n50
from genomelab.binning.diagnostics import contig_length_check
from sklearn.metrics import adjusted_rand_score
from test_binning import _blobs


# ---------------------------------------------------------------- figures
def test_bp_weighted_ari_on_a_hand_computed_example():
    # bp contingency: A-x 2, A-y 2, B-y 3 -> sum C(n_ij, 2) = 1 + 1 + 3 = 5; rows C(4,2) +
    # C(3,2) = 9; columns C(2,2) + C(5,2) = 11; C(7,2) = 21; expected 9 * 11 / 21;
    # ARI = (5 - 99/21) / (10 - 99/21) = 6 / 111.
    truth, pred, bp = np.array(["A", "A", "B"]), np.array(["x", "y", "y"]), np.array([2, 2, 3])
    assert ev.weighted_ari(truth, pred, bp) == pytest.approx(6 / 111)
    # Unit weights give the ordinary (contig-count) ARI.
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    assert ev.weighted_ari(t, p, np.ones(200)) == pytest.approx(adjusted_rand_score(t, p))
    with pytest.raises(ValueError, match="differ"):
        ev.weighted_ari(truth, pred, bp[:2])


def test_evaluation_reports_both_aris_labelled():
    # One long contig of genome B misplaced into A's bin: few contigs wrong, many bp wrong.
    bins = np.array([0, 0, 0, 0, 1, 1])
    genomes = np.array(["A", "A", "A", "B", "B", "B"])
    lengths = np.array([100, 100, 100, 5000, 100, 100])
    metrics, _ = ev.evaluate_binning(bins, genomes, lengths)
    assert metrics["ari_contigs"] == pytest.approx(adjusted_rand_score(genomes, bins))
    assert metrics["ari_bp"] == pytest.approx(ev.weighted_ari(genomes, bins, lengths))
    assert metrics["ari_bp"] < metrics["ari_contigs"]
    assert "ari" not in metrics and "ari_binned" not in metrics
    assert {"ari_bp_binned", "ari_contigs_binned"} <= set(metrics)


def test_diagnostics_n50_is_the_n50_not_the_median():
    # Sorted 6, 5, 4, 3, 2 (20 bp): 6 + 5 = 11 >= 10 -> N50 5; the median is 4.
    assert n50(np.array([2, 3, 4, 5, 6])) == 5
    result = contig_length_check(np.array([2, 3, 4, 5, 6]))
    assert result.details == {"median": 4.0, "n50": 5}
    # One 10 kb contig holds 10 of 13 kb: N50 10,000 while the median is 1,000.
    result = contig_length_check(np.array([1000, 10000, 1000, 1000]))
    assert result.details["n50"] == 10000 and result.details["median"] == 1000.0
    assert result.status == "warn" and "N50 10000 bp" in result.message


# ---------------------------------------------------------------- clustering
def test_leiden_splits_two_cliques_joined_by_one_edge():
    from genomelab.binning.cluster import leiden

    # Two 6-cliques; node 5 lists node 6 instead of node 4, which still lists node 5.
    neighbours = np.array([[j for j in range(6 * (i // 6), 6 * (i // 6) + 6) if j != i] for i in range(12)])
    neighbours[5, -1] = 6
    labels = leiden(12, neighbours, seed=3)
    np.testing.assert_array_equal(labels, [labels[0]] * 6 + [labels[6]] * 6)
    assert labels[0] != labels[6]
    # A very low resolution favours one community; no neighbours leave every node alone.
    assert len(np.unique(leiden(12, neighbours, resolution=0.01))) == 1
    np.testing.assert_array_equal(leiden(4, np.empty((4, 0), dtype=np.int64)), np.arange(4))


def test_exact_knn_distances_and_same_seed_same_bins():
    from genomelab.binning.cluster import ClusterConfig, cluster_contigs, knn

    x, y = _blobs()
    idx, dist = knn(x, ClusterConfig(n_neighbors=7))
    assert idx.shape == dist.shape == (300, 7)  # n x k, never n x n
    expect = np.linalg.norm(x[:, None, :] - x[idx], axis=2)
    np.testing.assert_allclose(dist, expect, rtol=1e-4, atol=1e-4)
    assert (np.diff(dist, axis=1) >= -1e-5).all() and (idx != np.arange(300)[:, None]).all()
    lengths = np.full(300, 5000)
    cfg = ClusterConfig(seed=4, knn_chunk_elements=999)
    first = cluster_contigs(x, lengths, cfg, min_bp=0)
    assert adjusted_rand_score(y, first) == pytest.approx(1.0)
    np.testing.assert_array_equal(first, cluster_contigs(x, lengths, ClusterConfig(seed=4), min_bp=0))


@pytest.mark.slow  # pynndescent compiles its numba kernels on first use (~40 s on one core)
def test_approximate_knn_path_is_reproducible_and_close_to_exact():
    from genomelab.binning.cluster import ClusterConfig, cluster_contigs, knn

    x, y = _blobs(n_per=150, n_clusters=6, dim=12, spread=0.08)
    lengths = np.full(len(x), 5000)
    approx_cfg = ClusterConfig(seed=2, exact_knn_max=100)
    idx, dist = knn(x, approx_cfg)
    exact_idx, _ = knn(x, ClusterConfig(seed=2))
    assert idx.shape == dist.shape == (900, 30)
    assert (idx != np.arange(900)[:, None]).all()
    recall = np.mean([len(np.intersect1d(a, b)) / 30 for a, b in zip(idx, exact_idx, strict=True)])
    assert recall > 0.9
    first = cluster_contigs(x, lengths, approx_cfg, min_bp=0)
    np.testing.assert_array_equal(first, cluster_contigs(x, lengths, approx_cfg, min_bp=0))
    assert adjusted_rand_score(y, first) > 0.95


def test_contigs_far_from_every_cluster_stay_unbinned():
    from genomelab.binning.cluster import ClusterConfig, cluster_contigs, outlier_scores

    x, y = _blobs(n_per=80, n_clusters=4, spread=0.03, seed=1)
    rng = np.random.default_rng(7)
    # 12 contigs scattered between the clusters (random directions): far from every one.
    stray = rng.normal(size=(12, x.shape[1])).astype(np.float32)
    points = np.concatenate([x, stray])
    lengths = np.full(len(points), 5000)
    off = cluster_contigs(points, lengths, ClusterConfig(seed=0, outlier_fence=0), min_bp=0)
    assert (off >= 0).all()  # both rules off: every contig binned
    ratio = ClusterConfig(seed=0, outlier_ratio=2.0, outlier_fence=0)
    labels = cluster_contigs(points, lengths, ratio, min_bp=0)
    assert (labels[len(x) :] == -1).mean() >= 0.9
    assert (labels[: len(x)] == -1).mean() <= 0.02
    kept = labels[: len(x)] >= 0
    assert adjusted_rand_score(y[kept], labels[: len(x)][kept]) == pytest.approx(1.0)
    # The score: mean neighbour distance over the cluster's median (hand example).
    dist = np.array([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [5.0, 5.0]])
    np.testing.assert_allclose(outlier_scores(np.array([0, 0, 0, 1]), dist), [0.5, 1.0, 1.5, 1.0])
    with pytest.raises(ValueError, match="outlier_ratio"):
        ClusterConfig(outlier_ratio=-1)


def test_outliers_are_listed_unbinned_with_their_reason():
    from genomelab.binning.bins import bin_summary, unbinned_dropped

    labels = np.array([0, 0, -1, 1, -1])
    lengths = np.array([300, 300, 100, 200, 50])
    table, per_bin = bin_summary(np.array(list("abcde")), labels, lengths, np.full(5, 0.5), 400)
    t = table.set_index("contig")
    assert t.loc[["c", "e"], "status"].tolist() == ["outlier", "outlier"]
    assert t.loc[["c", "e"], "bin"].tolist() == ["unbinned", "unbinned"]
    assert not t.loc[["c", "e"], "bin_written"].any()
    assert per_bin["size_bp"].tolist() == [600, 200] and per_bin["written"].tolist() == [True, False]
    (dropped,) = unbinned_dropped(table)
    assert dropped.step == "binning_encode" and dropped.count == 2 and dropped.examples == ["c", "e"]


def _training_metrics(path):
    import json

    from genomelab.io.metrics import TRAINING_KEYS

    values = {"train_config": {}, "history": [], "final": {}, "best_epoch": 1, "best_value": 1.0}
    values["epochs_run"] = 1
    path.write_text(json.dumps({k: values.get(k, "x") for k in TRAINING_KEYS}))
    return path


def test_a_300_kb_assembly_gives_no_bin_and_says_why(tmp_path):
    """Two 150 kb genomes of different GC, bins of >= 200 kb: the clustering runs, nothing
    reaches the minimum, and the summary carries a warning with the reason."""
    import json
    from types import SimpleNamespace

    from genomelab.binning import kmers
    from genomelab.binning.baselines import BaselineConfig, tnf_clusters
    from genomelab.binning.cluster import ClusterConfig
    from genomelab.binning.steps import bins_step
    from genomelab.binning.summary import write_summary
    from genomelab.io.fasta import write_fasta_record

    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    fasta = tmp_path / "assembly.fa"
    with open(fasta, "wb") as fh:
        for g, gc in (("lowgc", 0.35), ("highgc", 0.65)):
            p = [(1 - gc) / 2, gc / 2, gc / 2, (1 - gc) / 2]
            for i in range(30):  # 30 x 5 kb = 150 kb per genome
                write_fasta_record(fh, f"{g}_{i}", letters[rng.choice(4, 5000, p=p)].tobytes())
    kmers.write_profiles_h5(fasta, tmp_path / "p.h5", min_length=1000, engine="numpy")
    tnf_clusters(
        tmp_path / "p.h5",
        None,
        BaselineConfig(n_components=5),
        ClusterConfig(seed=0, n_neighbors=10),
        200_000,
        tmp_path / "clusters.tsv",
        tmp_path / "emb.h5",
    )
    out = tmp_path / "bins"
    bins_step(
        SimpleNamespace(
            input=SimpleNamespace(
                contigs=str(fasta), h5=str(tmp_path / "p.h5"), clusters=str(tmp_path / "clusters.tsv")
            ),
            output=SimpleNamespace(
                fasta_dir=str(out / "fasta"), contig_bins=str(out / "cb.tsv"), bin_summary=str(out / "bs.tsv")
            ),
            params=SimpleNamespace(min_bin_bp=200_000),
        )
    )
    assert list((out / "fasta").iterdir()) == []
    write_summary(
        _training_metrics(tmp_path / "metrics.json"),
        out / "bs.tsv",
        out / "cb.tsv",
        [],
        None,
        None,
        "graph",
        200_000,
        tmp_path / "summary.json",
        tmp_path / "summary.md",
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    (warning,) = [d for d in summary["diagnostics"] if d["name"] == "bins_written"]
    assert warning["status"] == "warn"
    assert "no cluster reaches bins.min_bin_bp = 200000 bp" in warning["message"]
    assert "the 60 listed contigs hold 300000 bp" in warning["message"]


# ---------------------------------------------------------------- abundance
def _jgi(path, names, lengths, depth):
    lines = [
        "contigName\tcontigLen\ttotalAvgDepth\ts1.bam\ts1.bam-var\ts2.bam\ts2.bam-var\ts3.bam\ts3.bam-var"
    ]
    for name, length, d in zip(names, lengths, depth, strict=True):
        cells = [name, str(length), f"{d.sum():.4f}"] + [f"{v:.4f}\t{v:.4f}" for v in d]
        lines.append("\t".join(cells))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_abundance_readers_take_both_formats_and_name_the_file(tmp_path):
    from genomelab.io.errors import FormatError
    from genomelab.io.tables import read_abundance_table

    depth = np.array([[1.0, 2.0, 3.0], [0.5, 0.0, 7.25]])
    jgi = _jgi(tmp_path / "jgi.tsv", ["c1", "c2"], [2500, 3000], depth)
    names, got, samples = read_abundance_table(jgi)
    assert list(names) == ["c1", "c2"] and samples == ["s1.bam", "s2.bam", "s3.bam"]
    np.testing.assert_allclose(got, depth)
    # CoverM style: a header naming the samples.
    (tmp_path / "coverm.tsv").write_text("Contig\tA Mean\tB Mean\tC Mean\nc1\t1\t2\t3\nc2\t0.5\t0\t7.25\n")
    names, got, samples = read_abundance_table(tmp_path / "coverm.tsv")
    assert list(names) == ["c1", "c2"] and samples == ["A Mean", "B Mean", "C Mean"]
    np.testing.assert_allclose(got, depth)
    # strobealign --aemb pasted per sample: no header line; numeric-looking names stay text.
    (tmp_path / "aemb.tsv").write_text("001\t1\t2\t3\n002\t0.5\t0\t7.25\n")
    names, got, samples = read_abundance_table(tmp_path / "aemb.tsv")
    assert list(names) == ["001", "002"] and samples == ["sample_1", "sample_2", "sample_3"]
    np.testing.assert_allclose(got, depth)
    # Errors name the file's line, with or without a header line.
    for text, match in (
        ("c1\t1\t-2\n", r"line 1: coverage table holds negative or non-finite"),
        ("c0\t1\t2\nc1\t1\tNaN\n", r"line 2: coverage table holds negative or non-finite"),
        (
            "contig\ts1\nc0\t1\nc1\tlots\n",
            r"line 3: coverage table: contig 'c1', sample 's1': depth 'lots' is not",
        ),
        ("c0\t1\t2\nc1\t1\tlots\n", r"line 2: .* sample 'sample_2': depth 'lots' is not a number"),
        ("contig\ts1\nc1\t1\nc1\t2\n", r"line 3: coverage table lists contigs more than once"),
        ("c1\t1\nc1\t2\n", r"line 2: coverage table lists contigs more than once"),
        ("c1\n", "at least one sample column"),
    ):
        (tmp_path / "bad.tsv").write_text(text)
        with pytest.raises(FormatError, match=match) as err:
            read_abundance_table(tmp_path / "bad.tsv")
        assert "bad.tsv" in str(err.value)


def _strains(tmp_path, rng):
    """Two strains: a random 150 kb genome and a copy with 2% of its bases substituted,
    shredded into 3-6 kb contigs; returns (FASTA, names, lengths, strain [n])."""
    from genomelab.io.fasta import write_fasta_record

    letters = np.frombuffer(b"ACGT", dtype=np.uint8)
    a = rng.integers(0, 4, 150_000)
    b = a.copy()
    hit = rng.random(len(b)) < 0.02
    b[hit] = (b[hit] + rng.integers(1, 4, int(hit.sum()))) % 4
    names, lengths, strain = [], [], []
    fasta = tmp_path / "strains.fa"
    with open(fasta, "wb") as fh:
        for s, genome in enumerate((a, b)):
            start = 0
            while start < len(genome) - 3000:
                end = min(start + int(rng.integers(3000, 6000)), len(genome))
                names.append(f"strain{s}_{start}")
                write_fasta_record(fh, names[-1], letters[genome[start:end]].tobytes())
                lengths.append(end - start)
                strain.append(s)
                start = end
    return fasta, names, np.array(lengths), np.array(strain)


def test_strains_with_different_abundance_separate_only_with_depth(tmp_path):
    """Composition cannot tell a genome from its 2%-mutated copy; their coverage across 3
    samples can (the issue's bar on small data)."""
    from genomelab.binning import kmers
    from genomelab.binning.baselines import BaselineConfig, tnf_clusters
    from genomelab.binning.cluster import ClusterConfig
    from genomelab.io.tables import read_clusters

    rng = np.random.default_rng(11)
    fasta, names, lengths, strain = _strains(tmp_path, rng)
    abundance = np.array([[20.0, 4.0, 40.0], [5.0, 30.0, 10.0]])[strain]
    shape = (lengths / 500.0)[:, None]  # coverage noise shrinking with length, as the shredder's
    depth = rng.gamma(shape, abundance / shape)
    kmers.write_profiles_h5(fasta, tmp_path / "p.h5", min_length=1000, engine="numpy")
    depth_files = {
        "jgi": _jgi(tmp_path / "depth.tsv", names, lengths, depth),
        "coverage": tmp_path / "cov.tsv",
    }
    depth_files["coverage"].write_text(
        "".join(f"{n}\t" + "\t".join(f"{v:.3f}" for v in d) + "\n" for n, d in zip(names, depth, strict=True))
    )
    ari = {}
    for label, path in (("none", None), *depth_files.items()):
        tnf_clusters(
            tmp_path / "p.h5",
            None if path is None else str(path),
            BaselineConfig(n_components=10),
            ClusterConfig(seed=0, n_neighbors=10),
            0,
            tmp_path / f"clusters_{label}.tsv",
            tmp_path / f"emb_{label}.h5",
        )
        labels = read_clusters(tmp_path / f"clusters_{label}.tsv", names)
        ari[label] = adjusted_rand_score(strain, labels)
    assert ari["jgi"] > 0.9 and ari["coverage"] > 0.9
    assert ari["none"] < 0.2  # composition alone mixes the strains
