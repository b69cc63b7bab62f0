"""Per-region read counts in the ingest NPZ (``methylated`` beside ``coverage``) and the tissue
features that read them: several reads at one CpG count as several calls, not one."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.ingest.builds import genome_build
from genomelab.ingest.convert import IngestConfig, convert_sample
from genomelab.ingest.formats import read_probe_table
from genomelab.ingest.regions import read_regions
from genomelab.io.errors import FormatError
from genomelab.io.features import read_features
from genomelab.io.methylation import load_npz_counts
from genomelab.predict.tissue import read_inputs
from genomelab.tissue.features import count_means, extract_features_from_sheet, npz_features

# Three 150-bp regions; rC gets no reads.
REGIONS = "chr1\t1000\t1150\trA\nchr1\t2000\t2150\trB\nchr1\t3000\t3150\trC\n"
# rA: one CpG (0-based 1010) with 4 of 5 reads methylated. rB: CpG 2020 with 1 of 3
# (ENCODE's integer percent 33: round(3 x 0.33) = 1) and CpG 2050 with 2 of 4.
BEDMETHYL = (
    "chr1\t1010\t1011\t.\t5\t+\t1010\t1011\t0,0,0\t5\t80\n"
    "chr1\t2020\t2021\t.\t3\t+\t2020\t2021\t0,0,0\t3\t33\n"
    "chr1\t2050\t2051\t.\t4\t+\t2050\t2051\t0,0,0\t4\t50\n"
)
# The same calls as Bismark coverage (1-based; % methylated, n methylated, n unmethylated).
BISMARK_COV = "chr1\t1011\t1011\t80.0\t4\t1\nchr1\t2021\t2021\t33.3\t1\t2\nchr1\t2051\t2051\t50.0\t2\t2\n"
METHYLATED = np.array([4.0, 3.0, 0.0])
COVERAGE = np.array([5, 7, 0])
# Read-level fractions; one threshold call per CpG slot (0.8 -> 1; 1/3 -> 0, 0.5 -> 1) gave 1.0 and 0.5.
FRACTION = np.array([0.8, 3 / 7, np.nan], dtype=np.float32)
SLOT_MEANS = np.array([1.0, 0.5, np.nan], dtype=np.float32)


@pytest.fixture
def ingested(tmp_path):
    """Both files ingested (position slots, threshold calls) and a sample sheet of the NPZs."""
    (tmp_path / "regions.bed").write_text(REGIONS)
    regions = read_regions(tmp_path / "regions.bed", genome_build("hg38"), 150)
    cfg = IngestConfig(slots="position", call="threshold", threshold=0.5, min_coverage=1)
    (tmp_path / "s1.bed").write_text(BEDMETHYL)
    (tmp_path / "s2.cov").write_text(BISMARK_COV)
    for sample, name in (("s1", "s1.bed"), ("s2", "s2.cov")):
        convert_sample(tmp_path / name, "", sample, regions, cfg, tmp_path / f"{sample}.npz", seed=0)
    (tmp_path / "sheet.tsv").write_text("sample\tfile\ttissue\ns1\ts1.npz\tBlood\ns2\ts2.npz\tLiver\n")
    return tmp_path


def test_npz_keeps_exact_per_region_counts(ingested):
    for sample in ("s1", "s2"):
        with np.load(ingested / f"{sample}.npz") as npz:
            assert npz["methylated"].dtype == np.float64
            assert np.array_equal(npz["methylated"], METHYLATED)
            assert np.array_equal(npz["coverage"], COVERAGE)
            # The per-position array still holds one call per CpG slot.
            assert npz["methylation"][0, 10] == 1 and npz["methylation"][1, 20] == 0
            assert npz["methylation"][1, 50] == 1 and list(npz["n_valid"]) == [1, 2, 0]
        meth, cov = load_npz_counts(ingested / f"{sample}.npz", 3)
        assert np.array_equal(meth, METHYLATED) and np.array_equal(cov, COVERAGE)


def test_features_use_the_read_level_fraction(ingested):
    out = extract_features_from_sheet(ingested / "sheet.tsv", ingested / "features.h5", n_positions=150)
    feats = read_features(out)
    np.testing.assert_allclose(feats["means"], np.stack([FRACTION, FRACTION]), rtol=1e-6)
    assert feats["coverage"].tolist() == [[5, 7, 0], [5, 7, 0]]
    # One NPZ given to predict reads the same values.
    single = read_inputs(ingested / "s1.npz", 150)
    np.testing.assert_allclose(single.means[0], FRACTION, rtol=1e-6)
    assert single.coverage[0].tolist() == [5, 7, 0] and list(single.regions) == ["rA", "rB", "rC"]


def test_npz_without_counts_uses_the_slot_calls(ingested):
    with np.load(ingested / "s1.npz") as npz:
        old = {k: npz[k] for k in npz.files if k != "methylated"}
    np.savez_compressed(ingested / "s1.npz", **old)
    assert load_npz_counts(ingested / "s1.npz", 3) is None
    means, valid, ids = npz_features(ingested / "s1.npz", 150)
    np.testing.assert_allclose(means, SLOT_MEANS)
    assert valid.tolist() == [1, 2, 0] and list(ids) == ["rA", "rB", "rC"]
    # A sheet mixing an old and a new file reads each by what it holds.
    feats = read_features(extract_features_from_sheet(ingested / "sheet.tsv", ingested / "f.h5", 150))
    np.testing.assert_allclose(feats["means"], np.stack([SLOT_MEANS, FRACTION]), rtol=1e-6)
    # Neither counts: a bare per-position NPZ (simulated samples).
    np.savez_compressed(ingested / "bare.npz", methylation=old["methylation"])
    assert load_npz_counts(ingested / "bare.npz", 3) is None


def test_bad_counts_name_the_file(ingested):
    with np.load(ingested / "s1.npz") as npz:
        arrays = {k: npz[k] for k in npz.files}
    bad = ingested / "bad.npz"
    np.savez_compressed(bad, **{**arrays, "methylated": np.array([6.0, 3.0, 0.0])})
    with pytest.raises(FormatError, match=r"bad\.npz.*region 0, 6\.0 methylated of 5\.0"):
        npz_features(bad, 150)
    np.savez_compressed(bad, **{**arrays, "methylated": np.array([1.0, 2.0])})
    with pytest.raises(FormatError, match=r"bad\.npz.*'methylated' must be numeric \[3\]"):
        load_npz_counts(bad, 3)
    np.savez_compressed(bad, **{k: v for k, v in arrays.items() if k != "coverage"})
    with pytest.raises(FormatError, match=r"bad\.npz.*without 'coverage'"):
        load_npz_counts(bad, 3)


def test_count_means_caps_the_coverage_channel():
    means, valid = count_means(np.array([[70000.0, 0.0]]), np.array([[100000, 0]]))
    assert means[0, 0] == pytest.approx(0.7) and np.isnan(means[0, 1])
    assert valid.dtype == np.uint16 and valid.tolist() == [[65535, 0]]


def test_array_counts_are_the_probes_betas(tmp_path):
    """Array input: ``methylated`` sums the betas (one call per probe), so the feature is the
    mean beta where the slot calls would round each probe to 0/1."""
    (tmp_path / "probes.tsv").write_text(
        "IlmnID\tCHR\tMAPINFO\ncg1\tchr1\t1011\ncg2\tchr1\t1021\ncg3\tchr1\t2051\n"
    )
    (tmp_path / "betas.csv").write_text("CpGs,S1\ncg1,0.9\ncg2,0.2\ncg3,0.3\n")
    (tmp_path / "regions.bed").write_text(REGIONS)
    regions = read_regions(tmp_path / "regions.bed", genome_build("hg38"), 150)
    probes = read_probe_table(tmp_path / "probes.tsv")
    cfg = IngestConfig(slots="position", call="threshold", threshold=0.5, min_coverage=1)
    convert_sample(tmp_path / "betas.csv", "", "S1", regions, cfg, tmp_path / "a.npz", probes=probes)
    meth, cov = load_npz_counts(tmp_path / "a.npz", 3)
    np.testing.assert_allclose(meth, [1.1, 0.3, 0.0])
    assert cov.tolist() == [2, 1, 0]
    means, valid, _ = npz_features(tmp_path / "a.npz", 150)
    np.testing.assert_allclose(means, [0.55, 0.3, np.nan], rtol=1e-6)
    assert valid.tolist() == [2, 1, 0]
