"""deconv: readers, simulator, reference, mixtures, NNLS, metrics, model, diagnostics, inference."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from genomelab.deconv import io as dio
from genomelab.deconv.metrics import deconv_metrics, detection_table
from genomelab.deconv.mixtures import (
    PhaseConfig,
    coverage_of,
    draw_proportions,
    make_mixtures,
    mix,
    read_mixtures,
    write_mixtures,
)
from genomelab.deconv.nnls import (
    deconvolve_nnls,
    deconvolve_weighted,
    nnls_batched,
    nnls_gram,
    nnls_torch,
    weighted_nnls_batched,
)
from genomelab.deconv.reference import ReferenceConfig, build_reference, build_references, select_markers
from genomelab.deconv.simulate import SimulationConfig, simulate_demo
from genomelab.io.methylation import npz_region_counts
from scipy.optimize import nnls as scipy_nnls

TISSUES = ["Neutrophils", "Lymphocytes", "Liver", "Lung", "Colon", "Pancreas"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory, simulate_deconv_sources):
    """A small simulated data set: sheet, sources split by individual, reference, mixtures."""
    d = tmp_path_factory.mktemp("deconv_demo")
    cfg, src, ref, record = simulate_deconv_sources(d, n_regions=200, markers=(12, 4, 10), n_new=4, seed=3)
    return {"dir": d, "cfg": cfg, "src": src, "ref": ref, "record": record}


# ---------------------------------------------------------------- NNLS
def _scipy_loop(A, B):
    out = []
    for b in B:
        v = np.isfinite(b)
        out.append(scipy_nnls(A[v], b[v])[0])
    return np.asarray(out)


def test_nnls_matches_scipy_with_missing_values(rng):
    A = rng.uniform(0, 1, (120, 9))
    P = rng.dirichlet(np.full(9, 0.4), 300)
    B = P @ A.T + rng.normal(0, 0.08, (300, 120))
    B[rng.random(B.shape) < 0.05] = np.nan
    B[0] = 0.0  # all-zero sample: the answer is 0
    B[1] = A[:, 3]  # exactly one column
    x = nnls_batched(A, B, chunk=64)
    np.testing.assert_allclose(x, _scipy_loop(A, B), atol=1e-6)
    assert (x >= 0).all()
    np.testing.assert_allclose(x[1], np.eye(9)[3], atol=1e-9)


def test_weighted_nnls_matches_scipy_on_scaled_rows(rng):
    A = rng.uniform(0, 1, (80, 6))
    B = rng.dirichlet(np.full(6, 0.5), 40) @ A.T + rng.normal(0, 0.05, (40, 80))
    B[rng.random(B.shape) < 0.05] = np.nan
    W = rng.uniform(0.1, 5.0, B.shape)
    want = []
    for b, w in zip(B, W, strict=True):
        v = np.isfinite(b)
        sw = np.sqrt(w[v])
        want.append(scipy_nnls(A[v] * sw[:, None], b[v] * sw)[0])
    np.testing.assert_allclose(weighted_nnls_batched(A, B, W, chunk=16), want, atol=1e-6)
    # Unit weights are plain NNLS.
    np.testing.assert_allclose(weighted_nnls_batched(A, B, np.ones_like(B)), nnls_batched(A, B), atol=1e-6)
    with pytest.raises(ValueError, match="non-negative"):
        weighted_nnls_batched(A, B, -W)
    with pytest.raises(ValueError, match="shaped like samples"):
        weighted_nnls_batched(A, B, W[0])  # one row for all samples is not broadcast
    bad = W.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-negative numbers"):
        weighted_nnls_batched(A, B, bad)


def test_weighted_nnls_with_offset_undoes_a_compressed_range(rng):
    """Betas pulled toward the middle (b = e + (1 - 2e) A q) make plain NNLS call tissues
    that are absent; the offset column absorbs e and the weighted fit returns q."""
    A = np.clip(rng.beta(0.4, 0.4, (300, 8)), 0, 1)
    q = np.array([0.6, 0.3, 0.1, 0, 0, 0, 0, 0])
    e = 0.03
    b = e + (1 - 2 * e) * (A @ q)
    plain = deconvolve_nnls(A, b[None]).proportions[0]
    assert plain[3:].sum() > 0.02  # spurious tissues soak up the offset
    fit = deconvolve_weighted(A, b[None], weight_floor=0.03)
    np.testing.assert_allclose(fit.proportions[0], q, atol=1e-6)
    assert fit.residual[0] < 1e-6
    # Flat betas are the offset alone: such a sample falls back to plain NNLS.
    flat = np.full((1, 300), 0.5)
    np.testing.assert_allclose(
        deconvolve_weighted(A, flat).proportions, deconvolve_nnls(A, flat).proportions, atol=1e-9
    )
    with pytest.raises(ValueError, match="weight_floor must be > 0"):
        deconvolve_weighted(A, b[None], weight_floor=0)
    with pytest.raises(ValueError, match=r"1 sample\(s\) have no valid region"):
        deconvolve_weighted(A, np.full((1, 300), np.nan))


def test_an_offset_the_tissues_can_mimic_falls_back_to_plain_nnls(rng, caplog):
    """Two complementary profiles (tumour vs normal: they add up to 1) span the constant
    profile, so an offset cannot be told from them: both paths give plain NNLS, with a warning."""
    t = rng.uniform(0, 1, 200)
    A = np.column_stack([t, 1 - t])
    b = (A @ np.array([0.7, 0.3]) + rng.normal(0, 0.02, 200))[None]
    with caplog.at_level("WARNING"):
        fit = deconvolve_weighted(A, b)
    assert "plain NNLS instead" in caplog.text
    np.testing.assert_allclose(fit.proportions, deconvolve_nnls(A, b).proportions, atol=1e-9)
    assert fit.proportions[0, 0] == pytest.approx(0.7, abs=0.02)
    got = nnls_torch(torch.tensor(A), torch.tensor(b), weight_floor=0.03).numpy()
    np.testing.assert_allclose(got, nnls_batched(A, b), atol=1e-6)


def test_torch_weighted_prior_equals_the_numpy_estimator(rng):
    A = rng.uniform(0, 1, (150, 7))
    B = np.clip(rng.dirichlet(np.full(7, 0.3), 30) @ A.T + rng.normal(0, 0.05, (30, 150)), 0, 1)
    B[rng.random(B.shape) < 0.1] = np.nan
    B[0] = 0.5  # the offset alone: plain NNLS in both
    want = deconvolve_weighted(A, B, weight_floor=0.02).raw
    got = nnls_torch(torch.tensor(A), torch.tensor(B), weight_floor=0.02).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    with pytest.raises(ValueError, match="do not combine"):
        nnls_torch(
            torch.tensor(A), torch.tensor(B), support=torch.ones(30, 7, dtype=torch.bool), weight_floor=0.02
        )


def test_lawson_hanson_fallback_matches_scipy(rng):
    A = rng.uniform(0, 1, (60, 7))
    B = rng.uniform(0, 1, (50, 60))
    G, h = A.T @ A, B @ A
    np.testing.assert_allclose(nnls_gram(G, h, tol=1e-10), _scipy_loop(A, B), atol=1e-6)


def test_nnls_rejects_bad_shapes_and_collinear_reference(rng):
    A = rng.uniform(0, 1, (30, 3))
    with pytest.raises(ValueError, match="must be \\[n, 30\\]"):
        nnls_batched(A, rng.uniform(0, 1, (4, 29)))
    dup = np.concatenate([A, A[:, :1]], axis=1)
    with pytest.raises(ValueError, match="linearly dependent"):
        nnls_batched(dup, (dup @ np.full(4, 0.25))[None])


def test_unknown_component_reports_missing_tissue():
    # Three orthogonal-ish marker blocks; the mixture holds 30% of a tissue the reference lacks.
    A = np.zeros((30, 3))
    for t in range(3):
        A[t * 10 : (t + 1) * 10, t] = 1.0
    b = 0.7 * A[:, 0]
    res = deconvolve_nnls(A[:, :2], b[None], unknown_component=False)
    np.testing.assert_allclose(res.proportions, [[1.0, 0.0]], atol=1e-9)
    b = 0.7 * A[:, 0] + 0.3 * A[:, 2]
    res = deconvolve_nnls(A[:, :2], b[None], unknown_component=True)
    np.testing.assert_allclose(res.unknown, [0.3], atol=1e-9)
    np.testing.assert_allclose(res.proportions, [[0.7, 0.0]], atol=1e-9)


@pytest.mark.shared_data
def test_nnls_on_moss_atlas_examples(shared_data):
    base = shared_data / "methylation_atlas" / "meth_atlas_moss2018"
    A, regions, tissues = dio.read_table(base / "reference_atlas.csv.gz", "atlas")
    B, b_regions, names = dio.read_table(base / "examples.csv.gz", "examples")
    aligned, report = dio.join_regions(regions, b_regions, B.T, names, 0.9, "examples")
    assert report.n_matched == len(regions)
    res = deconvolve_nnls(A, aligned)
    col = {t: i for i, t in enumerate(tissues)}
    # The examples are exact linear combinations named after their composition.
    assert res.proportions[0, col["Monocytes_EPIC"]] == pytest.approx(0.9, abs=1e-3)
    assert res.proportions[0, col["Breast"]] == pytest.approx(0.1, abs=1e-3)
    assert res.proportions[1, col["Adipocytes"]] == pytest.approx(0.6, abs=1e-3)
    assert res.proportions[2, col["Erythrocyte_progenitors"]] == pytest.approx(0.5, abs=1e-3)
    rng = np.random.default_rng(1)
    noisy = rng.dirichlet(np.full(len(tissues), 0.3), 100) @ A.T + rng.normal(0, 0.05, (100, len(regions)))
    np.testing.assert_allclose(nnls_batched(A, noisy), _scipy_loop(A, noisy), atol=1e-6)


# ---------------------------------------------------------------- inputs
def test_npz_counts_and_region_reordering(tmp_path):
    meth = np.array([[1, 1, 0, 2], [2, 2, 2, 2], [0, 0, 1, 1]], np.int8)
    np.savez(tmp_path / "a.npz", methylation=meth, region_ids=np.array(["r1", "r2", "r3"]))
    np.savez(tmp_path / "b.npz", methylation=meth[::-1], region_ids=np.array(["r3", "r2", "r1"]))
    np.savez(tmp_path / "c.npz", methylation=meth, region_ids=np.array(["r1", "r2", "zz"]))
    n_meth, n_valid, ids = npz_region_counts(tmp_path / "a.npz")
    assert n_meth.tolist() == [2, 0, 2] and n_valid.tolist() == [3, 0, 4]
    (tmp_path / "s.tsv").write_text("sample\tfile\ttissue\nA\ta.npz\tLiver\nB\tb.npz\tLung\n")
    src = dio.sources_from_sheet(tmp_path / "s.tsv")
    np.testing.assert_array_equal(src.meth[0], src.meth[1])
    assert np.isnan(src.beta[0, 1]) and src.beta[0, 0] == pytest.approx(2 / 3)
    (tmp_path / "s2.tsv").write_text("sample\tfile\ttissue\nA\ta.npz\tLiver\nC\tc.npz\tLung\n")
    with pytest.raises(ValueError, match="c.npz: region IDs differ.*zz"):
        dio.sources_from_sheet(tmp_path / "s2.tsv")


def test_region_means_hdf5_reader(tmp_path):
    path = tmp_path / "features.h5"
    with h5py.File(path, "w") as h5:
        h5["means"] = np.array([[0.5, np.nan], [0.2, 0.9]], np.float32)
        h5["coverage"] = np.array([[10, 0], [5, 20]], np.uint16)
        for name, values in (("samples", ["s1", "s2"]), ("regions", ["r1", "r2"]), ("tissue", ["A", "B"])):
            h5.create_dataset(name, data=np.array(values, dtype=object), dtype=dio.STR)
    src = dio.sources_from_features(path)
    np.testing.assert_allclose(src.beta, [[0.5, np.nan], [0.2, 0.9]])
    assert src.tissues.tolist() == ["A", "B"] and src.groups.tolist() == ["s1", "s2"]
    with h5py.File(path, "a") as h5:
        del h5["tissue"]
    with pytest.raises(ValueError, match=r"features\.h5: .*no dataset\(s\) \['tissue'\]"):
        dio.sources_from_features(path)


def test_a_sample_file_listing_a_region_twice_is_refused_by_the_join(tmp_path):
    """join_regions kept the last of two values given for one region (a dict over the input's
    IDs): [[0.1, 0.9, 0.3]] for r2 given as 0.2 then 0.9. It now joins through match_ids, which
    refuses duplicated IDs naming the input, how many and the first ones (the readers refuse
    them too: below, and the CSV reader drops identical repeats, refusing conflicting ones)."""
    ref = np.array(["r1", "r2", "r3"])
    for given, n_dup in ((["r1", "r2", "r2", "r3"], 1), (["r2", "r1", "r2", "r3", "r2", "r1"], 2)):
        values = np.arange(len(given), dtype=np.float64)[None] / 10
        with pytest.raises(
            ValueError, match=rf"samples.h5: {n_dup} duplicated regions ID\(s\), first \['r2'"
        ):
            dio.join_regions(ref, np.array(given), values, ["s1"], 0.5, "samples.h5")


def test_a_region_file_listing_a_region_twice_is_refused_naming_the_file(tmp_path):
    """A sheet's NPZ or a region-means HDF5 listing a region twice was read as it stood: its
    regions (with the repeat) became the sources' (deconv_sources trained on them) or went on
    to the join (which named the sheet, not the file); after a first NPZ, a file with the
    same number of regions and the same set (r1, r1, r2 after r1, r2, r2) was reordered by a
    dict of positions, giving its second r1 row for r2. The readers now refuse it, naming the
    file, how many regions repeat and the first ones."""
    meth = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0]], np.int8)
    for name, ids in (("a", ["r1", "r2", "r3"]), ("c", ["r1", "r2", "r2"]), ("d", ["r1", "r1", "r2"])):
        np.savez(tmp_path / f"{name}.npz", methylation=meth, region_ids=np.array(ids))
    for files, bad, first in (("c", "c", "r2"), ("cd", "c", "r2"), ("ad", "d", "r1")):
        sheet = tmp_path / f"{files}.tsv"
        sheet.write_text("sample\tfile\n" + "".join(f"{f}\t{f}.npz\n" for f in files))
        with pytest.raises(ValueError, match=rf"{bad}.npz: 1 duplicated region ID\(s\), first \['{first}'\]"):
            dio.sources_from_sheet(sheet, labels=False)
    path = tmp_path / "features.h5"
    with h5py.File(path, "w") as h5:
        h5["means"] = np.array([[0.5, 0.2, 0.9]], np.float32)
        h5["coverage"] = np.array([[10, 10, 10]], np.uint16)
        for name, v in (("samples", ["s1"]), ("regions", ["r1", "r2", "r2"]), ("tissue", ["A"])):
            h5.create_dataset(name, data=np.array(v, dtype=object), dtype=dio.STR)
    from genomelab.deconv.infer import read_user_samples

    for read in (dio.sources_from_features, read_user_samples):
        with pytest.raises(ValueError, match=r"features.h5: 1 duplicated region ID\(s\), first \['r2'\]"):
            read(path)


def test_table_reader_and_join_errors(tmp_path):
    path = tmp_path / "samples.csv"
    path.write_text("CpGs,s1,s2\ncg1,0.1,0.2\ncg2,0.5,\ncg3,0.9,0.8\n")
    values, regions, names = dio.read_table(path)
    assert names.tolist() == ["s1", "s2"] and np.isnan(values[1, 1])
    out, report = dio.join_regions(
        np.array(["cg3", "cg1", "cgX"]), regions, values.T, names, 0.5, "samples.csv"
    )
    np.testing.assert_allclose(out[0, :2], [0.9, 0.1])
    assert (
        report.n_matched == 2
        and report.dropped == ["cg2"]
        and report.missing_per_sample == {"s1": 1, "s2": 1}
    )
    with pytest.raises(
        ValueError, match=r"samples.csv: 0 of the reference's 2 regions.*\['chr1:1', 'chr1:2'\].*\['cg1'"
    ):
        dio.join_regions(np.array(["chr1:1", "chr1:2"]), regions, values.T, names, 0.5, "samples.csv")
    path.write_text("CpGs,s1\ncg1,10\ncg2,90\n")
    with pytest.raises(ValueError, match="divide percentages by 100"):
        dio.read_table(path)
    # M-values (minfi's getM, common in array pipelines) are negative below a beta of 0.5:
    # the percentage hint would leave them negative; the error names what they look like.
    path.write_text("CpGs,s1\ncg1,-3.2\ncg2,2.5\n")
    with pytest.raises(
        ValueError, match=r"found -3.2..2.5; negative values: M-values.*2\*\*M / \(2\*\*M \+ 1\)"
    ):
        dio.read_table(path)
    with pytest.raises(
        ValueError, match=r"values must be proportions in \[0, 1\] \(found -3.2..2.5; not proportions\)"
    ):
        dio.read_table(path, "truth table", "proportions")
    # A text cell (pandas reads the column as its own string dtype) and an infinite value.
    path.write_text("CpGs,s1,s2\ncg1,0.1,abc\ncg2,0.5,0.2\n")
    with pytest.raises(ValueError, match=r"samples.csv: column\(s\) \['s2'\] are not numeric"):
        dio.read_table(path)
    path.write_text("CpGs,s1,s2\ncg1,0.1,0.3\ncg2,inf,0.2\n")
    with pytest.raises(ValueError, match=r"samples.csv: 1 infinite value\(s\), first at row cg2 column s1"):
        dio.read_table(path)


def test_a_transposed_whole_array_table_is_named_as_such():
    """A transposed table of every probe (the reference's markers a quarter of its columns,
    as the Moss atlas' 1,500 of a 6,105-probe input) said only '0 of the reference's regions
    found': the hint wanted half of the input's columns to be reference regions."""
    columns = [f"cg{i}" for i in range(12)]
    with pytest.raises(
        ValueError,
        match=r"3 of the input's 12 column names are regions of the reference: the table looks transposed",
    ):
        dio.join_regions(
            np.array(["cg1", "cg2", "cg3"]),
            np.array(["p1", "p2"]),
            np.zeros((12, 2)),
            columns,
            0.5,
            "plasma.csv",
        )
    # Column names that merely share a few IDs with a large reference give no hint.
    assert (
        dio.transposed_hint(np.array([f"cg{i}" for i in range(100)]), ["cg1", "s2", "s3", "s4", "s5"]) == ""
    )


def test_a_transposed_samples_table_is_named_as_such():
    """Samples as rows and regions as columns (the wrong way round for infer.samples) gave
    '0 of the reference's 3 regions found ... unknown to the reference, first ['p1', 'p2']'
    without saying why; the error now says the columns are the reference's regions."""
    with pytest.raises(
        ValueError,
        match=r"plasma\.csv: 0 of the reference's 3 regions found.*\['p1', 'p2'\]\. 3 of the input's 3 column "
        r"names are regions of the reference: the table looks transposed",
    ):
        dio.join_regions(
            np.array(["cg1", "cg2", "cg3"]),
            np.array(["p1", "p2"]),
            np.zeros((3, 2)),
            ["cg1", "cg2", "cg3"],
            0.5,
            "plasma.csv",
        )


def test_a_table_naming_a_sample_or_tissue_twice_is_refused(tmp_path):
    """pandas renamed a repeated column, so a samples table with p1 twice was deconvolved
    as p1 and "p1.1" (a sample nobody named) with no error; an atlas with a tissue twice gave
    two tissues. The header is now checked as written."""
    path = tmp_path / "plasma.csv"
    path.write_text("region,p1,p2,p1\ncg1,0.1,0.2,0.3\ncg2,0.5,0.6,0.7\n")
    with pytest.raises(
        ValueError, match=r"samples table .*plasma\.csv: 1 duplicated column ID\(s\), first \['p1'\]$"
    ):
        dio.read_table(path, "samples table")
    atlas = tmp_path / "atlas.tsv"
    atlas.write_text("CpGs\tLiver\tLiver\tLung\ncg1\t0.1\t0.2\t0.3\n")
    with pytest.raises(
        ValueError, match=r"atlas .*atlas\.tsv: 1 duplicated column ID\(s\), first \['Liver'\]$"
    ):
        dio.read_table(atlas, "atlas")


def test_truth_table_in_any_order_and_its_errors_name_what_is_wrong(tmp_path):
    """infer.truth: rows and columns in any order; a misspelt tissue, a missing sample or an
    absent tissue row is named (before: "np.str_('s1') is not in list" or a tissue's index error)."""
    from genomelab.deconv.infer import read_truth

    path = tmp_path / "truth.csv"
    path.write_text("tissue,s2,s1\nBreast,0.1,0\nMonocytes,0.9,0.4\nLiver,0,0.6\n")
    np.testing.assert_allclose(
        read_truth(path, np.array(["Liver", "Monocytes", "Breast"]), np.array(["s1", "s2"])),
        [[0.6, 0.4, 0.0], [0.0, 0.9, 0.1]],
    )
    path.write_text("tissue,s2,s1x\nBreest,0.1,0\nMonocytes,0.9,0.4\n")
    with pytest.raises(ValueError) as err:
        read_truth(path, ["Liver", "Monocytes", "Breast"], ["s1", "s2"])
    assert str(err.value) == (
        f"truth table {path}: no column for sample(s) ['s1'] (its columns: ['s2', 's1x']); "
        "row(s) 'Breest' (did you mean 'Breast'?) name no tissue of the reference; "
        "no row for reference tissue(s) ['Liver', 'Breast'] (write 0 where a tissue is absent)"
    )


# ---------------------------------------------------------------- simulator and reference
def test_simulator_writes_reads_around_profiles(demo):
    src, d = demo["src"], demo["dir"]
    assert len(src.samples) == 6 * 4 and src.meth.shape == (24, 200)
    profiles, _, tissues = dio.read_table(d / "profiles.csv")
    liver = src.tissues == "Liver"
    # Individuals scatter around their tissue profile; the tissue mean is close to it.
    mean_beta = np.nanmean(src.beta[liver], axis=0)
    assert np.corrcoef(mean_beta, profiles[:, list(tissues).index("Liver")])[0, 1] > 0.9
    new, _, names = dio.read_table(d / "new.csv")
    truth, t_tissues, _ = dio.read_table(d / "truth.csv")
    assert new.shape == (200, 4) and len(names) == 4
    np.testing.assert_allclose(truth.sum(0), 1.0, atol=1e-5)
    assert truth[[list(t_tissues).index(t) for t in TISSUES[:2]]].sum(0).min() > 0.6


def test_simulation_config_validation():
    with pytest.raises(ValueError, match="samples_per_tissue must be >= 3"):
        SimulationConfig(samples_per_tissue=2)
    with pytest.raises(ValueError, match="blood names tissues not in simulate.tissues"):
        SimulationConfig(tissues=["A", "B"], blood=["C"])


def test_reference_from_training_samples_only(demo):
    ref, record, src = demo["ref"], demo["record"], demo["src"]
    assert list(ref.tissues) == sorted(TISSUES)
    assert record["parameters"]["hypo_per_tissue"] == 12 and record["n_markers"] == len(ref.regions)
    assert record["markers"] == ref.regions.tolist()
    # The reference equals the pooled betas of the training individuals.
    train = src.subset(src.splits == "train")
    col = {r: i for i, r in enumerate(src.regions.tolist())}
    i = col[ref.regions[0]]
    liver = train.tissues == "Liver"
    expected = train.meth[liver, i].sum() / train.valid[liver, i].sum()
    assert ref.profiles[0, list(ref.tissues).index("Liver")] == pytest.approx(expected)


def test_marker_selection_finds_planted_markers():
    prof = np.full((40, 3), 0.8)
    prof[5, 1] = 0.1  # hypo marker of tissue 1
    prof[17, 2] = 0.95
    prof[17, :2] = 0.2  # hyper marker of tissue 2
    prof[30, 0] = 0.05
    prof[30, 1] = 0.6  # tissue 0: hypo everywhere else at least 0.55 higher
    cfg = ReferenceConfig(hypo_per_tissue=1, hyper_per_tissue=1, pairwise_per_tissue=0, min_delta=0.3)
    idx, per = select_markers(prof, cfg, ["a", "b", "c"])
    assert idx.tolist() == [5, 17, 30]
    assert per["b"]["hypo"] == 1 and per["c"]["hyper"] == 1 and per["a"]["hypo"] == 1


def test_reference_include_exclude(demo):
    src = demo["src"].subset(demo["src"].splits == "train")
    ref, _ = build_reference(src, ReferenceConfig(exclude=["Colon"], hypo_per_tissue=5))
    assert "Colon" not in ref.tissues and len(ref.tissues) == 5
    ref, _ = build_reference(src, ReferenceConfig(include=["Liver", "Lung"], hypo_per_tissue=5))
    assert list(ref.tissues) == ["Liver", "Lung"]
    with pytest.raises(ValueError, match=r"tissue\(s\) \['Brain'\] not in the data"):
        build_reference(src, ReferenceConfig(exclude=["Brain"]))


def test_reference_counts_the_regions_it_drops(tmp_path, caplog):
    """Nothing silent: atlas rows with an NA cell, atlas regions absent from the samples and
    regions without calls are counted in the record (markers.json) with their first IDs."""
    regions = [f"r{i}" for i in range(8)]
    valid = np.full((4, 8), 10.0, np.float32)
    valid[:2, 6] = 0  # r6: no call in tissue A
    meth = np.where(np.arange(8) % 2 == 0, 2.0, 8.0)[None, :] * np.array([[1], [1], [0.5], [0.5]])
    src = dio.Sources(
        np.array(["a1", "a2", "b1", "b2"]),
        np.array(["A", "A", "B", "B"]),
        np.array(["a1", "a2", "b1", "b2"]),
        np.array(regions),
        meth.astype(np.float32),
        valid,
    )
    cfg = ReferenceConfig(select_markers=False)
    _, record = build_reference(src, cfg)
    assert record["dropped"] == [
        {
            "step": "deconv_reference",
            "what": "regions",
            "reason": "no call in a tissue's training samples, or more than "
            "reference.max_missing=0.5 of them lack one",
            "count": 1,
            "examples": ["r6"],
        }
    ]
    atlas = tmp_path / "atlas.tsv"
    atlas.write_text(
        "region\tA\tB\n"
        + "".join(f"{r}\t0.2\t{'NA' if r in ('r1', 'r4') else 0.8}\n" for r in regions[:6])
        + "x1\t0.1\t0.9\n"
    )
    with caplog.at_level("WARNING"):
        ref, record = build_reference(
            src, ReferenceConfig(atlas=str(atlas), select_markers=False), dio.read_table(atlas, "atlas")
        )
    assert ref.regions.tolist() == ["r0", "r2", "r3", "r5"]
    got = {d["what"]: (d["count"], d["examples"], d["reason"]) for d in record["dropped"]}
    assert got["atlas regions"][:2] == (1, ["x1"])
    assert got["regions"][:2] == (2, ["r1", "r4"]) and "NA cell" in got["regions"][2]
    assert "2 regions dropped (an NA cell in a used tissue column of atlas" in caplog.text
    # The summary reads them back from markers.json, with the regions an inference join left out.
    from genomelab.deconv.reference import reference_dropped
    from genomelab.io.atomic import atomic_write_json

    atomic_write_json(tmp_path / "markers.json", record)
    assert [(d.what, d.count) for d in reference_dropped(tmp_path / "markers.json")] == [
        ("atlas regions", 1),
        ("regions", 2),
    ]
    _, join = dio.join_regions(
        ref.regions,
        np.array(["r0", "r2", "r3", "r5", "y1", "y2"]),
        np.zeros((1, 6)),
        ["s1"],
        0.5,
        "samples.csv",
    )
    entry = dio.join_dropped(join.to_dict())
    assert (entry.step, entry.count, entry.examples) == ("deconv_infer", 2, ["y1", "y2"])


# ---------------------------------------------------------------- mixtures
def test_phase_proportion_laws(rng):
    cfg = PhaseConfig(background=["A", "B"])
    tissues = ["A", "B", "C", "D", "E", "F", "G"]
    p1 = draw_proportions("phase1", cfg, 2000, tissues, rng)
    p2 = draw_proportions("phase2", cfg, 2000, tissues, rng)
    p3 = draw_proportions("phase3", cfg, 2000, tissues, rng)
    for p in (p1, p2, p3):
        np.testing.assert_allclose(p.sum(1), 1.0)
        assert (p >= 0).all()
    assert (p1 > 0).sum(1).max() == 2 and abs((p1 == 1).any(1).mean() - 0.3) < 0.05
    assert set(np.unique((p2 > 0).sum(1))) == {3, 4, 5}
    solid = p3[:, 2:]
    assert solid[solid > 0].min() >= 0.005 * 0.99 and solid.max() <= 0.1 + 1e-12
    assert p3[:, :2].sum(1).min() >= 0.5
    with pytest.raises(ValueError, match=r"background must name reference tissues.*\['X'\]"):
        draw_proportions("phase3", PhaseConfig(background=["X"]), 5, tissues, rng)


def test_read_level_mixing_noise_and_beta_average(rng):
    beta_src = np.array([[0.1] * 200, [0.9] * 200])
    props = np.array([[0.25, 0.75]] * 400)
    idx = np.array([[0, 1]] * 400)
    avg = mix(beta_src, props, idx, 30, "beta", rng)
    np.testing.assert_allclose(avg, 0.25 * 0.1 + 0.75 * 0.9, atol=1e-6)
    reads = mix(beta_src, props, idx, 30, "reads", rng, max_cells=10_000)
    assert reads.mean() == pytest.approx(0.7, abs=0.01)
    # Binomial sampling at ~30 reads: variance p(1-p)/n (plus the Poisson depth spread).
    assert reads.var() == pytest.approx(0.7 * 0.3 / 30, rel=0.2)
    with_nan = beta_src.copy()
    with_nan[1, :5] = np.nan
    out = mix(with_nan, props, idx, 30, "reads", rng)
    # Reads of a source without a call are lost: those regions see only tissue 0.
    assert np.nanmean(out[:, :5]) == pytest.approx(0.1, abs=0.03)


def test_a_coverage_range_gives_each_mixture_its_own_depth():
    """mixtures.coverage: [lo, hi] draws a mean depth per mixture (log-uniform), so the
    binomial noise of a mixture's betas spans both ends; one number keeps one depth and
    the random stream of earlier releases."""
    beta_src = np.array([[0.5] * 400])
    props = np.ones((600, 1))
    idx = np.zeros((600, 1), int)
    fixed = mix(beta_src, props, idx, 30.0, "reads", np.random.default_rng(5))
    again = mix(beta_src, props, idx, coverage_of(30), "reads", np.random.default_rng(5))
    np.testing.assert_array_equal(fixed, again)
    ranged = mix(
        beta_src, props, idx, coverage_of([2, 60]), "reads", np.random.default_rng(5), max_cells=5000
    )
    # Per-mixture variance of the betas is 0.25 / depth: 1/60 .. 1/2 of 0.25 across mixtures.
    var = np.nanvar(ranged, axis=1)
    assert var.min() < 0.25 / 40 and var.max() > 0.25 / 4
    assert np.nanvar(fixed, axis=1).max() < 0.25 / 15
    for bad in ([30], [60, 2], [0, 5], [True, 5], "30", True):
        with pytest.raises(ValueError, match="coverage must be a positive number or"):
            coverage_of(bad)


def test_mixtures_are_reproducible_and_use_disjoint_individuals(demo, tmp_path):
    src, ref = demo["src"], demo["ref"]
    cfg = PhaseConfig(n_train=50, n_val=20, n_test=20, background=TISSUES[:2])
    a = make_mixtures(src, ref.regions, list(ref.tissues), "phase3", cfg, 30, "reads", seed=5)
    b = make_mixtures(src, ref.regions, list(ref.tissues), "phase3", cfg, 30, "reads", seed=5)
    c = make_mixtures(src, ref.regions, list(ref.tissues), "phase3", cfg, 30, "reads", seed=6)
    np.testing.assert_array_equal(a["test"].beta, b["test"].beta)
    assert not np.array_equal(a["test"].beta, c["test"].beta, equal_nan=True)
    used = {s: set(a[s].source_groups[np.unique(a[s].sources[a[s].sources >= 0])]) for s in a}
    assert (
        not (used["train"] & used["val"])
        and not (used["train"] & used["test"])
        and not (used["val"] & used["test"])
    )
    write_mixtures(tmp_path / "m.h5", a, {"phase": "phase3"})
    back = read_mixtures(tmp_path / "m.h5", "val")
    np.testing.assert_array_equal(back.beta, a["val"].beta)
    assert back.tissues.tolist() == list(ref.tissues)


# ---------------------------------------------------------------- metrics
def test_metrics_by_hand():
    true = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    pred = np.array([[0.4, 0.5, 0.1], [0.995, 0.0, 0.005]])
    m = deconv_metrics(true, pred, ["a", "b", "c"], call=0.01)
    assert m["mae"] == pytest.approx((0.1 + 0 + 0.1 + 0.005 + 0 + 0.005) / 6)
    assert m["rmse"] == pytest.approx(np.sqrt((0.01 + 0.01 + 2 * 0.005**2) / 6))
    assert m["spurious_per_sample"] == pytest.approx(0.5)  # c in sample 0
    assert m["presence_accuracy"] == pytest.approx(5 / 6)
    assert m["presence_precision"] == pytest.approx(3 / 4) and m["presence_recall"] == 1.0
    assert m["n_predicted_per_sample"] == pytest.approx(2.0)
    assert m["per_tissue"]["c"]["spurious_rate"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="must be \\[n, 3\\]"):
        deconv_metrics(true, pred[:, :2], ["a", "b", "c"])


def test_detection_limit():
    true = np.array([0.005] * 10 + [0.02] * 10 + [0.1] * 10)
    pred = np.concatenate([np.zeros(10), np.r_[np.full(9, 0.02), 0.0], np.full(10, 0.1)])
    rows, limit = detection_table(true, pred, call=0.01, bins=(0.0025, 0.01, 0.05, 1.0001))
    assert [r["rate"] for r in rows] == [0.0, 0.9, 1.0]
    assert limit == 0.01


# ---------------------------------------------------------------- diagnostics
def test_leakage_diagnostic_fires(demo):
    from genomelab.deconv.diagnostics import check_leakage, check_pure_recovery

    src, ref = demo["src"], demo["ref"]
    cfg = PhaseConfig(n_train=20, n_val=10, n_test=10, background=TISSUES[:2])
    sets = make_mixtures(src, ref.regions, list(ref.tissues), "phase2", cfg, 30, "reads", seed=0)
    assert check_leakage("phase2", sets).status == "pass"
    leaky = dict(sets)
    leaky["test"] = sets["train"]
    res = check_leakage("phase2", leaky)
    assert res.status == "fail" and "shared between splits" in res.message
    assert check_pure_recovery(ref, src).status == "pass"


def test_simulator_uses_every_atlas_region_unless_asked(tmp_path):
    # issue 19: n_regions (the synthetic demo's size) once silently subsampled an atlas.
    prof = tmp_path / "atlas.tsv"
    rng = np.random.default_rng(0)
    values = rng.uniform(0, 1, (50, 3))
    values[3, 1] = np.nan
    dio.write_table(prof, values, [f"cg{i:04d}" for i in range(50)], ["A", "B", "C"])
    for atlas_regions, expect in ((0, 49), (40, 40)):
        d = tmp_path / str(atlas_regions)
        cfg = SimulationConfig(
            tissues=["A", "B", "C"],
            blood=["A"],
            samples_per_tissue=3,
            n_regions=10,
            profiles=str(prof),
            atlas_regions=atlas_regions,
            n_new_samples=2,
        )
        record = simulate_demo(
            cfg, d / "s", d / "sheet.tsv", d / "n.csv", d / "t.csv", d / "p.csv", d / "sim.json"
        )
        src = dio.sources_from_sheet(d / "sheet.tsv")
        assert src.meth.shape == (9, expect) and src.regions[0].startswith("cg")
        saved = json.loads((d / "sim.json").read_text())
        assert saved == record
        assert (record["n_regions"], record["n_regions_table"], record["n_regions_with_na_dropped"]) == (
            expect,
            50,
            1,
        )


def test_a_reference_from_a_subsampled_atlas_keeps_the_drawn_regions(tmp_path):
    # simulate.atlas_regions (the documented opt-in to subsample) drew 15 of the atlas's 50
    # regions; deconv_reference then stopped with "only 15 of 50 regions occur in the sample
    # data", the check meant for an atlas and samples that name regions differently.
    atlas = tmp_path / "atlas.tsv"
    rng = np.random.default_rng(1)
    dio.write_table(atlas, rng.uniform(0, 1, (50, 3)), [f"cg{i:04d}" for i in range(50)], ["A", "B", "C"])
    cfg = SimulationConfig(
        tissues=["A", "B", "C"], blood=["A"], samples_per_tissue=3, profiles=str(atlas), atlas_regions=15
    )
    simulate_demo(cfg, *(tmp_path / n for n in ("s", "sheet.tsv", "n.csv", "t.csv", "p.csv", "sim.json")))
    src = dio.sources_from_sheet(tmp_path / "sheet.tsv")
    table = dio.read_table(atlas, "atlas")
    ref_cfg = ReferenceConfig(atlas=str(atlas), select_markers=False)
    with pytest.raises(ValueError, match=r"only 15 of 50 regions occur in the sample data"):
        build_reference(src, ref_cfg, table)
    ref, record, _ = build_references(src, ref_cfg, table, atlas_subsample=15)
    assert sorted(ref.regions.tolist()) == sorted(src.regions.tolist()) and len(ref.regions) == 15
    (dropped,) = [d for d in record["dropped"] if d["what"] == "atlas regions"]
    assert dropped["count"] == 35 and "not drawn by deconv.simulate.atlas_regions=15" in dropped["reason"]


def test_unsolvable_samples_of_both_kinds_are_named_in_one_error():
    """A batch with an empty sample and one with fewer values than tissues: both are named
    at once (the second was reported only after the first had been fixed)."""
    from genomelab.deconv.infer import check_observed

    aligned = np.full((3, 20), np.nan)
    aligned[0] = 0.5  # fine
    aligned[2, :3] = 0.5  # 3 regions for 6 tissues
    with pytest.raises(ValueError) as err:
        check_observed(aligned, ["ok", "empty", "few"], 6, "plasma.csv")
    assert str(err.value).startswith(
        "plasma.csv: 1 sample(s) have no value on any reference region: ['empty (0 regions)']; "
    )
    assert "1 sample(s) have values on fewer reference regions than the reference's 6 tissues" in str(
        err.value
    )
    assert "['few (3 regions)']" in str(err.value)


def test_atlas_rows_with_na_absent_from_simulated_samples_are_named_for_the_na(tmp_path):
    """Atlas-only training simulates its individuals from the atlas's complete rows, so an
    atlas row with an NA cell is absent from the samples; the record said 'not in the sample
    data', which reads as a naming mismatch, while the NA is what the user has to fix."""
    from genomelab.deconv.simulate import SimulationConfig, load_profiles

    tissues = ["Neutrophils_EPIC", "Hepatocytes", "Lung_cells"]
    rng = np.random.default_rng(0)
    values = rng.uniform(0.05, 0.95, (40, 3))
    values[[3, 17], 1] = np.nan
    atlas = tmp_path / "atlas.csv"
    dio.write_table(atlas, values, [f"cg{i:03d}" for i in range(40)], tissues)
    prof, ids, _, record = load_profiles(SimulationConfig(profiles=str(atlas)), rng)
    assert record["n_regions_with_na_dropped"] == 2 and len(ids) == 38
    # Sources simulated from those profiles: every complete row, none of the two.
    n = len(tissues)
    src = dio.Sources(
        np.array(tissues),
        np.array(tissues),
        np.array(tissues),
        ids,
        (prof.T * 10).astype(np.float32),
        np.full((n, len(ids)), 10.0, np.float32),
    )
    _, record = build_reference(
        src, ReferenceConfig(atlas=str(atlas), select_markers=False), dio.read_table(atlas, "atlas")
    )
    (entry,) = [d for d in record["dropped"] if d["what"] == "atlas regions"]
    assert entry["count"] == 2 and entry["examples"] == ["cg003", "cg017"]
    assert entry["reason"].startswith(f"an NA cell in atlas {atlas}, not in the sample data")


def test_repeated_atlas_rows_are_not_reported_under_a_key_the_user_never_set(tmp_path, caplog):
    """An atlas-only run reads reference.atlas as the profiles to simulate from; its warning
    about repeated rows (the Moss atlas has 1,785) named 'simulate.profiles table', a key the
    user had not set."""
    from genomelab.deconv.simulate import SimulationConfig, load_profiles

    values = np.random.default_rng(0).uniform(0.05, 0.95, (6, 2))
    values[5] = values[4]
    atlas = tmp_path / "atlas.csv"
    dio.write_table(atlas, values, ["a", "b", "c", "d", "e", "e"], ["Neutrophils", "Liver"])
    with caplog.at_level("WARNING"):
        _, ids, _, _ = load_profiles(SimulationConfig(profiles=str(atlas)), np.random.default_rng(0))
    assert len(ids) == 5
    assert f"profiles to simulate from, table {atlas}: dropped 1 identical repeated rows" in caplog.text
    assert "simulate.profiles" not in caplog.text
