"""UXM deconvolution: atlas readers into the deconv reference, weighted NNLS with a known answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from genomelab.deconv.nnls import deconvolve_nnls
from genomelab.deconv.uxm import (
    UxmDeconvConfig,
    atlas_reference,
    deconvolve_samples,
    row_weights,
    sample_shares,
    weighted_nnls,
)
from genomelab.io.blocks import read_blocks, write_block_counts
from genomelab.io.errors import FormatError

A = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
B = np.array([[0.3, 0.7, 0.0]])  # the third row disagrees with the first two


def test_weighted_nnls_known_answer() -> None:
    # Rows scaled by (1, 1, w): minimising (x1-.3)^2 + (x2-.7)^2 + w^2 (x1+x2)^2 gives
    # x1 + x2 = 1 / (1 + 2 w^2) and x_i = b_i - w^2 (x1 + x2); for w = 1/2: (2/15, 8/15).
    got = weighted_nnls(A, B, np.array([[1.0, 1.0, 0.5]]))
    np.testing.assert_allclose(got.raw, [[2 / 15, 8 / 15]], atol=1e-12)
    np.testing.assert_allclose(got.proportions, [[0.2, 0.8]], atol=1e-12)
    # UXM multiplies rows by fragment counts: counts 4, 4, 2 is the same problem scaled by 4.
    counts = weighted_nnls(A, B, row_weights(np.array([[4, 4, 2]]), "counts"))
    np.testing.assert_allclose(counts.proportions, [[0.2, 0.8]], atol=1e-12)
    # A zero weight drops the row; unweighted NNLS is the (1, 1, 1) case.
    np.testing.assert_allclose(weighted_nnls(A, B, np.array([[1.0, 1.0, 0.0]])).raw, [[0.3, 0.7]], atol=1e-12)
    np.testing.assert_allclose(
        weighted_nnls(A, B, np.ones((1, 3))).proportions, deconvolve_nnls(A, B).proportions, atol=1e-12
    )
    # The constraint binds: b = (0, 0.9, 0.5) with unit weights -> x1 = 0, x2 = (0.9 + 0.5) / 2.
    np.testing.assert_allclose(
        weighted_nnls(A, np.array([[0.0, 0.9, 0.5]]), np.ones((1, 3))).raw, [[0, 0.7]], atol=1e-12
    )


def test_weighted_nnls_matches_scipy_on_random_systems() -> None:
    optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(0)
    A = rng.random((40, 5))
    B = rng.random((6, 40))
    B[0, :5] = np.nan
    W = rng.integers(0, 50, (6, 40)).astype(float)
    got = weighted_nnls(A, B, W)
    for i in range(6):
        rows = np.isfinite(B[i]) & (W[i] > 0)
        x, _ = optimize.nnls(A[rows] * W[i, rows, None], B[i, rows] * W[i, rows])
        np.testing.assert_allclose(got.raw[i], x, atol=1e-8)
        assert got.n_valid[i] == rows.sum()
    with pytest.raises(ValueError, match="weights must be finite and >= 0"):
        weighted_nnls(A, B, -W)
    with pytest.raises(ValueError, match="weighting must be one of"):
        row_weights(np.ones(3), "log")


ATLAS = (
    "chr\tstart\tend\tstartCpG\tendCpG\ttarget\tname\tdirection\tLiver\tBlood\tLung\n"
    "chr1\t100\t200\t10\t15\tLiver\tb1\tU\t0.9\t0.0\t0.1\n"
    "chr1\t300\t400\t20\t26\tBlood\tb2\tU\t0.0\t0.8\t0.1\n"
    "chr1\t500\t600\t30\t34\tLung\tb3\tU\t0.1\t0.1\t0.9\n"
    "chr2\t100\t200\t50\t55\tLiver\tb4\tM\t0.95\t0.1\t0.2\n"
    "chr2\t300\t400\t60\t66\tBlood\tb5\tU\tNA\t0.7\t0.0\n"
)


def test_atlas_reference_markers_and_unknown_values(tmp_path: Path) -> None:
    (tmp_path / "atlas.tsv").write_text(ATLAS)
    atlas = read_blocks(tmp_path / "atlas.tsv", "atlas", need_values=True)
    assert atlas.columns == ["Liver", "Blood", "Lung"] and atlas.direction.tolist() == [
        "U",
        "U",
        "U",
        "M",
        "U",
    ]
    ref, blocks, record = atlas_reference(atlas)
    assert ref.regions.tolist() == ["b1", "b2", "b3", "b4"] and ref.tissues.tolist() == [
        "Liver",
        "Blood",
        "Lung",
    ]
    assert record["n_blocks_with_unknown_values"] == 1 and record["n_blocks_used"] == 4
    # A headerless marker BED (UXM's Markers.*.bed) picks rows by chr, startCpG, endCpG.
    (tmp_path / "m.bed").write_text(
        "chr1\t300\t400\t20\t26\tBlood\ty\tU\nchr2\t100\t200\t50\t55\tLiver\tx\tM\nchr9\t1\t9\t90\t95\tLung\tz\tU\n"
    )
    ref, _, record = atlas_reference(atlas, read_blocks(tmp_path / "m.bed"))
    assert ref.regions.tolist() == ["b2", "b4"] and record["n_markers_not_in_atlas"] == 1
    (tmp_path / "none.bed").write_text("chr9\t1\t9\t90\t95\n")
    with pytest.raises(FormatError, match=r"none\.bed: none of its 1 blocks is in the atlas"):
        atlas_reference(atlas, read_blocks(tmp_path / "none.bed"))


def test_sample_shares_follow_the_direction() -> None:
    share, total = sample_shares(np.array([[6, 2, 2], [1, 1, 8], [0, 0, 0]]), np.array(["U", "M", "U"]))
    np.testing.assert_allclose(share[:2], [0.6, 0.8])
    assert np.isnan(share[2]) and total.tolist() == [10, 10, 0]


def test_deconvolve_counts_files(tmp_path: Path) -> None:
    (tmp_path / "atlas.tsv").write_text(ATLAS)
    atlas = read_blocks(tmp_path / "atlas.tsv", need_values=True)
    truth = np.array([0.5, 0.3, 0.2])
    ref, blocks, _ = atlas_reference(atlas)
    expected = ref.profiles @ truth  # U share (M share for b4) of each block in the mixture
    counts = np.zeros((len(atlas), 3), dtype=np.int64)
    for j in range(len(blocks)):
        n = 1000
        hit = int(round(expected[j] * n))
        counts[j] = [hit, 0, n - hit] if blocks.direction[j] == "U" else [n - hit, 0, hit]
    counts[4] = [5, 0, 5]  # b5 has an unknown atlas value: not used
    write_block_counts(tmp_path / "s1.tsv", atlas, counts)
    few = counts.copy()
    few[0] = [1, 0, 0]  # one fragment: below min_fragments=2, so b1 is left out
    write_block_counts(tmp_path / "s2.tsv", atlas, few)
    result, ref, record = deconvolve_samples(
        tmp_path / "atlas.tsv",
        None,
        [tmp_path / "s1.tsv", tmp_path / "s2.tsv"],
        ["s1", "s2"],
        UxmDeconvConfig(min_fragments=2),
    )
    np.testing.assert_allclose(result.proportions[0], truth, atol=2e-3)
    assert record["samples"]["s1"]["blocks_used"] == 4 and record["samples"]["s2"]["blocks_used"] == 3
    assert record["samples"]["s2"]["blocks_below_min_fragments"] == 1
