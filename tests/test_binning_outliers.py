"""Contigs far from every cluster stay unbinned (binning.cluster.outlier_fence, issue 21)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score


def _two_clusters_and_a_stranger(seed: int = 0):
    """Two clusters of 40 contigs around two random directions (spread 0.05) and one contig
    in a third direction: its composition belongs to neither (a phage among bacteria)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, 12))
    x = np.concatenate(
        [centres[c] + 0.05 * np.linalg.norm(centres[c]) * rng.normal(size=(40, 12)) for c in (0, 1)]
    )
    stranger = centres[2:3] + 0.05 * rng.normal(size=(1, 12))
    return np.concatenate([x, stranger]).astype(np.float32), np.repeat([0, 1], 40)


def test_a_foreign_contig_between_two_clusters_stays_unbinned_by_default(tmp_path):
    from genomelab.binning.bins import bin_summary, unbinned_dropped
    from genomelab.binning.cluster import ClusterConfig, cluster_contigs

    points, y = _two_clusters_and_a_stranger()
    lengths = np.full(len(points), 5000)
    cfg = ClusterConfig(seed=0)  # the schema defaults: outlier_fence 3 (Tukey's far-out fence)
    assert cfg.outlier_fence == 3.0
    labels = cluster_contigs(points, lengths, cfg, min_bp=100_000)
    assert labels[-1] == -1
    assert (labels[:-1] >= 0).all()
    assert adjusted_rand_score(y, labels[:-1]) == pytest.approx(1.0)
    # Off, the stranger is forced into a bin.
    off = cluster_contigs(points, lengths, ClusterConfig(seed=0, outlier_fence=0), min_bp=100_000)
    assert off[-1] >= 0
    # The contig table lists it as unbinned with its reason; the summary counts it.
    names = np.array([f"c{i}" for i in range(len(points))])
    table, per_bin = bin_summary(names, labels, lengths, np.full(len(points), 0.5), 100_000)
    row = table.set_index("contig").loc["c80"]
    assert (row["bin"], row["status"], row["bin_written"]) == ("unbinned", "outlier", False)
    assert per_bin["n_contigs"].tolist() == [40, 40]
    (dropped,) = unbinned_dropped(table)
    assert dropped.count == 1 and dropped.examples == ["c80"] and "outlier_fence" in dropped.reason


def test_the_fence_is_tukeys_on_each_clusters_spread():
    from genomelab.binning.cluster import ClusterConfig, fence_outliers, outlier_mask

    # Cluster 0 spreads 1,1,1,1,2,2,9: Q1 1, Q3 1.5, IQR 0.5 -> fence(3) 3.0, fence(1.5) 2.25:
    # only the 9 is out. Cluster 1 (3 contigs) has no quartiles and keeps all.
    spread = np.array([1, 1, 1, 1, 2, 2, 9, 1, 50, 1], dtype=float)
    labels = np.array([0] * 7 + [1] * 3)
    dist = np.repeat(spread[:, None], 4, axis=1)
    expect = np.zeros(10, dtype=bool)
    expect[6] = True
    np.testing.assert_array_equal(fence_outliers(labels, dist, 3.0), expect)
    np.testing.assert_array_equal(fence_outliers(labels, dist, 1.5), expect)
    # A spread of 3.0 sits on the fence, not above it: kept.
    spread[6] = 3.0
    assert not fence_outliers(labels, np.repeat(spread[:, None], 4, axis=1), 3.0).any()
    # Both rules off: nothing left out; the ratio rule alone still works.
    off = ClusterConfig(outlier_fence=0, outlier_ratio=0)
    assert not outlier_mask(labels, dist, off).any()
    assert outlier_mask(labels, dist, ClusterConfig(outlier_fence=0, outlier_ratio=3.0))[[6, 8]].all()
    with pytest.raises(ValueError, match="outlier_fence"):
        ClusterConfig(outlier_fence=-1)


def test_the_summary_says_how_much_was_left_out(tmp_path):
    import json

    from genomelab.binning.bins import bin_summary
    from genomelab.binning.cluster import ClusterConfig, cluster_contigs
    from genomelab.binning.summary import write_summary
    from genomelab.io.tables import write_table
    from test_binning_cluster import _training_metrics

    points, _ = _two_clusters_and_a_stranger(seed=1)
    lengths = np.full(len(points), 5000)
    labels = cluster_contigs(points, lengths, ClusterConfig(seed=0), min_bp=100_000)
    names = np.array([f"c{i}" for i in range(len(points))])
    table, per_bin = bin_summary(names, labels, lengths, np.full(len(points), 0.5), 100_000)
    write_table(table, tmp_path / "cb.tsv")
    write_table(per_bin, tmp_path / "bs.tsv")
    write_summary(
        _training_metrics(tmp_path / "metrics.json"),
        tmp_path / "bs.tsv",
        tmp_path / "cb.tsv",
        [],
        None,
        None,
        "graph",
        100_000,
        tmp_path / "summary.json",
        tmp_path / "summary.md",
        "contrastive",
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert any("1 contigs (5000 bp, 1.23% of the listed bp) left unbinned" in n for n in summary["notes"])
    assert "left unbinned" in (tmp_path / "summary.md").read_text()
