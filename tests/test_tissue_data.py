"""Tissue module inputs and features: validation errors name the input; features are exact."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from genomelab.io.features import read_features
from genomelab.io.methylation import StackedHDF5
from genomelab.io.sheets import read_sample_sheet
from genomelab.tissue.features import (
    extract_features_from_hdf5,
    extract_features_from_sheet,
    region_means,
)
from genomelab.tissue.simulate import SimulationConfig, read_atlas, simulate_dataset
from test_io_methylation import write_stacked as _stacked

STR = h5py.string_dtype("utf-8")


def _write_sheet(path, rows, header="sample\tfile\ttissue\tsubtype\tsource_sample"):
    path.write_text(header + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def _npz(path, meth, **extra):
    np.savez(path, methylation=meth, **extra)
    return path


def test_region_means_match_reference_loop(rng):
    block = rng.integers(0, 3, size=(3, 40, 25)).astype(np.int8)
    block[0, 5] = 2  # a region with no valid call
    means, valid = region_means(block)
    for s in range(3):
        for r in range(40):
            calls = block[s, r][block[s, r] != 2]
            assert valid[s, r] == len(calls)
            if len(calls):
                assert means[s, r] == pytest.approx(calls.mean(), abs=1e-6)
            else:
                assert np.isnan(means[s, r])


def test_region_means_threads_and_slices_agree(rng, monkeypatch):
    import genomelab.tissue.features as features

    monkeypatch.setattr(features, "_SLICE_ROWS", 7)  # many slices, a ragged last one
    block = rng.integers(0, 3, size=(2, 50, 33)).astype(np.int8)
    one, two = region_means(block, threads=1), region_means(block, threads=2)
    np.testing.assert_array_equal(one[1], two[1])
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], np.count_nonzero(block != 2, axis=-1))


@pytest.mark.parametrize("n_positions", [255, 300])
def test_region_means_exact_for_long_rows(rng, n_positions):
    # 255 positions: the widest rows whose counts wrap in uint8 sums; 300 needs uint16.
    block = rng.integers(0, 3, size=(2, 9, n_positions)).astype(np.int8)
    block[0, 0] = 1  # every call methylated: n_meth = n_positions
    block[0, 1] = 2  # no valid call
    block[1, 2, : n_positions - 1] = 2  # one valid call
    means, valid = region_means(block, source="x")
    np.testing.assert_array_equal(valid, np.count_nonzero(block != 2, axis=-1))
    with np.errstate(invalid="ignore"):
        expected = np.count_nonzero(block == 1, axis=-1) / valid
    np.testing.assert_allclose(means, expected, rtol=1e-6)
    assert means[0, 0] == 1.0 and np.isnan(means[0, 1])


def test_hdf5_and_npz_features_agree_and_labels_are_checked(tmp_path, rng):
    meth = rng.integers(0, 3, size=(4, 30, 20)).astype(np.int8)
    names, tissues = ["s1", "s2", "s3", "s4"], ["Blood", "Blood", "Liver", "Liver"]
    rows = []
    for i, n in enumerate(names):
        _npz(tmp_path / f"{n}.npz", meth[i])
        rows.append([n, f"{n}.npz", tissues[i], f"{tissues[i]}_A", n])
    sheet = _write_sheet(tmp_path / "samples.tsv", rows)
    extract_features_from_sheet(sheet, tmp_path / "a.h5", n_positions=20)
    stacked = _stacked(tmp_path / "stack.h5", meth, names, tissues, subtype=[r[3] for r in rows])
    extract_features_from_hdf5(stacked, tmp_path / "b.h5", block=3)
    a, b = read_features(tmp_path / "a.h5"), read_features(tmp_path / "b.h5")
    np.testing.assert_array_equal(a["means"], b["means"])
    np.testing.assert_array_equal(a["coverage"], b["coverage"])
    assert b["subtype"].tolist() == [r[3] for r in rows]
    assert b["source_sample"].tolist() == names
    wrong = _write_sheet(tmp_path / "wrong.tsv", [["s1", "x.npz", "Liver", "", ""]])
    with pytest.raises(
        ValueError, match=r"stack\.h5: tissue labels disagree.*s1: sheet 'Liver' vs HDF5 'Blood'"
    ):
        extract_features_from_hdf5(stacked, tmp_path / "c.h5", sheet=wrong)
    assert not (tmp_path / "c.h5").exists()
    # A sheet row for a sample the HDF5 lacks (misspelt): its labels would be silently unused.
    typo = _write_sheet(
        tmp_path / "typo.tsv", [["s1", "x.npz", "Blood", "Blood_B", "s1"], ["s_4", "x.npz", "Liver", "", ""]]
    )
    with pytest.raises(
        ValueError,
        match=r"stack\.h5: the sample sheet .*typo\.tsv names 1 sample\(s\) this HDF5 lacks: \['s_4'\] \(its samples start \['s1'",
    ):
        extract_features_from_hdf5(stacked, tmp_path / "c.h5", sheet=typo)


def test_a_sheet_npz_listing_a_region_twice_is_refused_naming_the_file(tmp_path):
    """tissue_features took an NPZ whose region_ids repeat an ID as it stood: a sheet of two
    files over r1, r1, r2 wrote regions ['r1', 'r1', 'r2'] with means [[1, 0, 1], [0, 1, 0]]
    (two different values for r1 in one sample), and the splits and models went on with both
    columns. A file with a repeat after another file was refused only as "region IDs differ
    from those of ok.npz (3 vs 3 regions)", which does not say what is wrong. Now the file
    is refused by name with how many regions repeat and the first ones, wherever it stands in
    the sheet; files that list each region once still give the features."""
    calls = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 1, 0, 0]], np.int8)
    for name, ids in (("ok", ["r1", "r2", "r3"]), ("d1", ["r1", "r1", "r2"]), ("d2", ["r1", "r2", "r2"])):
        _npz(tmp_path / f"{name}.npz", calls, region_ids=np.array(ids))
    _npz(tmp_path / "d1b.npz", calls[::-1], region_ids=np.array(["r1", "r1", "r2"]))
    cases = (
        (["d1", "d1b"], "d1", "r1"),  # alone (every file the same)
        (["ok", "d1"], "d1", "r1"),  # after a file without repeats
        (["d2", "d1"], "d2", "r2"),  # first of two files over the same set in another order
        (["ok", "ok2", "d2"], "d2", "r2"),  # after two files that agree
    )
    _npz(tmp_path / "ok2.npz", calls, region_ids=np.array(["r1", "r2", "r3"]))
    for files, bad, first in cases:
        rows = [
            [f"s{i}", f"{f}.npz", "Blood" if i % 2 else "Liver", "", f"s{i}"] for i, f in enumerate(files)
        ]
        sheet = _write_sheet(tmp_path / f"{'_'.join(files)}.tsv", rows)
        with pytest.raises(
            ValueError, match=rf"{bad}\.npz: 1 duplicated region ID\(s\), first \['{first}'\]$"
        ):
            extract_features_from_sheet(sheet, tmp_path / "out.h5", n_positions=4)
        assert not (tmp_path / "out.h5").exists()
    sheet = _write_sheet(
        tmp_path / "good.tsv", [["a", "ok.npz", "Liver", "", "a"], ["b", "ok2.npz", "Blood", "", "b"]]
    )
    feats = read_features(extract_features_from_sheet(sheet, tmp_path / "good.h5", n_positions=4))
    assert feats["regions"].tolist() == ["r1", "r2", "r3"]
    np.testing.assert_array_equal(feats["means"], [[1.0, 0.0, 0.5], [1.0, 0.0, 0.5]])


def test_stacked_hdf5_bad_values_and_shapes(tmp_path):
    bad = np.zeros((2, 3, 4), np.int8)
    bad[1, 2, 3] = 5
    path = _stacked(tmp_path / "bad.h5", bad, ["a", "b"], ["X", "Y"])
    with pytest.raises(ValueError, match=r"bad\.h5 \(files 0\.\.1\).*outside"):
        extract_features_from_hdf5(path, tmp_path / "out.h5")
    # A bad value in a later block (read ahead in the background) names that block's files.
    late = np.zeros((5, 3, 4), np.int8)
    late[4, 0, 0] = -1
    path = _stacked(tmp_path / "late.h5", late, list("abcde"), list("XYXYX"))
    with pytest.raises(ValueError, match=r"late\.h5 \(files 4\.\.4\).*1 values outside"):
        extract_features_from_hdf5(path, tmp_path / "out.h5", block=2)
    # Another integer type on disk reads as int8 (HDF5 converts; large values stay out of range).
    wide = np.zeros((3, 3, 4), np.int16)
    wide[2, 1, 1] = 1
    path = _stacked(tmp_path / "wide.h5", wide, ["a", "b", "c"], ["X", "Y", "X"])
    extract_features_from_hdf5(path, tmp_path / "wide_out.h5", block=2)
    assert read_features(tmp_path / "wide_out.h5")["means"][2, 1] == pytest.approx(0.25)
    wide[0, 0, 0] = 300
    path = _stacked(tmp_path / "wide_bad.h5", wide, ["a", "b", "c"], ["X", "Y", "X"])
    with pytest.raises(ValueError, match=r"wide_bad\.h5 \(files 0\.\.1\).*outside"):
        extract_features_from_hdf5(path, tmp_path / "out.h5", block=2)


def test_simulator_writes_groups_and_rejects_bad_config(tmp_path):
    cfg = SimulationConfig(
        tissues=["A", "B"],
        n_subtypes=2,
        samples_per_subtype=2,
        n_regions=50,
        augment_fraction=1.0,
        n_augmented_copies=1,
        seed=3,
    )
    sheet = simulate_dataset(cfg, tmp_path / "sim")
    records = read_sample_sheet(sheet)
    assert len(records) == 2 * 2 * 2 * 2
    aug = [r for r in records if "_aug" in r.sample]
    assert aug and all(r.source_sample == r.sample.split("_aug")[0] for r in aug)
    with pytest.raises(ValueError, match="simulate.tissues"):
        SimulationConfig(tissues=["A"])
    with pytest.raises(ValueError, match="marker_fraction"):
        SimulationConfig(marker_fraction=2.0)


def test_atlas_profiles_drive_the_simulator(tmp_path):
    table = tmp_path / "atlas.tsv"
    rng = np.random.default_rng(0)
    levels = rng.random((30, 3))
    lines = ["CpGs\tT1\tT2\tT3"] + [
        f"cg{i}\t" + "\t".join(f"{v:.4f}" for v in row) for i, row in enumerate(levels)
    ]
    table.write_text("\n".join(lines) + "\n")
    np.testing.assert_allclose(read_atlas(table, ["T1", "T3"]), levels[:, [0, 2]], atol=1e-4)
    with pytest.raises(ValueError, match=r"atlas\.tsv has no column\(s\) \['Liver'\]"):
        read_atlas(table, ["T1", "Liver"])
    cfg = SimulationConfig(
        tissues=["T1", "T2"],
        n_subtypes=1,
        samples_per_subtype=2,
        n_regions=40,
        subtype_marker_fraction=0.0,
        atlas=str(table),
        coverage=20.0,
        sample_sd=0.0,
    )
    sheet = simulate_dataset(cfg, tmp_path / "sim")
    extract_features_from_sheet(sheet, tmp_path / "f.h5")
    f = read_features(tmp_path / "f.h5")
    # At high coverage and no sample variation, T1 and T2 samples differ where the atlas differs.
    diff = np.nanmean(f["means"][f["tissue"] == "T1"], 0) - np.nanmean(f["means"][f["tissue"] == "T2"], 0)
    assert np.nanmax(np.abs(diff)) > 0.3


def test_moss_atlas_reads(shared_data):
    path = shared_data / "methylation_atlas" / "meth_atlas_moss2018" / "reference_atlas.csv.gz"
    levels = read_atlas(path, ["Hepatocytes", "Cortical_neurons"])
    assert levels.shape == (7890, 2) and 0 <= levels.min() and levels.max() <= 1


def test_beta_table_conversion_is_exact_and_validated(tmp_path):
    from genomelab.tissue.convert import convert_beta_table

    table = tmp_path / "betas.csv"
    # P3 labelled NA and P4 with an empty label are dropped (the default --drop-label: NA and
    # empty); the empty one stopped the conversion in h5py (a NaN label), or became a class "nan".
    table.write_text(
        "sample,label,cg1,cg2,cg3\nP1,K1,0.0,0.5,1.0\nP2,K2,0.25,,0.9\nP3,NA,0.1,0.1,0.1\nP4,,0.2,0.2,0.2\n"
    )
    out = convert_beta_table(table, tmp_path / "s.h5", n_positions=20)
    src = StackedHDF5.open(out)
    assert src.samples.tolist() == ["P1", "P2"] and src.subtype.tolist() == ["K1", "K2"]
    assert src.tissue.tolist() == ["Glioma", "Glioma"] and src.region_ids.tolist() == ["cg1", "cg2", "cg3"]
    extract_features_from_hdf5(out, tmp_path / "f.h5")
    f = read_features(tmp_path / "f.h5")
    expected = np.array([[0.0, 0.5, 1.0], [0.25, np.nan, 0.9]])
    np.testing.assert_allclose(f["means"], expected, atol=1 / 40 + 1e-6)
    assert f["coverage"][1].tolist() == [20, 0, 20]
    bad = tmp_path / "bad.csv"
    bad.write_text("sample,label,cg1\nP1,K1,1.5\n")
    with pytest.raises(ValueError, match=r"bad\.csv: beta values must lie in \[0, 1\]"):
        convert_beta_table(bad, tmp_path / "b.h5")
    dup = tmp_path / "dup.csv"
    dup.write_text("sample,label,cg1\nP1,K1,0.5\nP1,K2,0.5\n")
    with pytest.raises(ValueError, match=r"dup\.csv: duplicate sample name"):
        convert_beta_table(dup, tmp_path / "d.h5")


def test_a_beta_table_giving_a_probe_twice_is_refused_naming_it(tmp_path):
    """convert_beta_table read a table whose header gives cg1 twice through pandas, which
    renamed the second column "cg1.1": the stacked HDF5 got region_ids ['cg1', 'cg2',
    'cg1.1'], a probe that does not exist, with no error. Now the header as written is
    checked, naming the table, how many probes repeat and the first ones."""
    from genomelab.tissue.convert import convert_beta_table

    table = tmp_path / "betas.csv"
    table.write_text(
        "sample,label,cg1,cg2,cg1,cg2,cg3\nP1,K1,0.1,0.5,0.9,0.2,0.3\nP2,K2,0.2,0.6,0.3,0.4,0.5\n"
    )
    with pytest.raises(ValueError, match=r"betas\.csv: 2 duplicated probe ID\(s\), first \['cg1', 'cg2'\]$"):
        convert_beta_table(table, tmp_path / "s.h5", n_positions=10)
    assert not (tmp_path / "s.h5").exists()


def test_a_beta_table_of_new_samples_converts_without_labels(tmp_path):
    """docs/predict.md names the converter's HDF5 as the input for new array samples, but a
    table without a label column was refused ("no 'label' column"): new samples have none.
    With no_labels (``--no-labels``) it converts, without ``subtype``; without the flag the
    error says to use it."""
    from genomelab.tissue.convert import convert_beta_table

    table = tmp_path / "new.csv"
    table.write_text("sample,cg1,cg2\nN1,0.0,1.0\nN2,0.5,\n")
    with pytest.raises(ValueError, match=r"new\.csv: no 'label' column .*--no-labels"):
        convert_beta_table(table, tmp_path / "n.h5")
    out = convert_beta_table(table, tmp_path / "n.h5", label_column=None, n_positions=10)
    src = StackedHDF5.open(out)
    assert src.samples.tolist() == ["N1", "N2"] and src.subtype is None
    extract_features_from_hdf5(out, tmp_path / "f.h5")
    np.testing.assert_allclose(read_features(tmp_path / "f.h5")["means"], [[0.0, 1.0], [0.5, np.nan]])


def test_a_beta_table_writing_missing_values_as_NA_converts_them_as_missing(tmp_path):
    """R's write.csv (how the TCGA tables were exported) writes a missing beta as NA; the
    converter read only an empty cell as missing and refused the table ("non-numeric beta
    value 'NA'"). NA, NaN, null and . now read as missing (a row of 2s: the region uncovered), as
    the ingest array reader reads them; other words are still refused, naming the cell."""
    from genomelab.tissue.convert import convert_beta_table

    table = tmp_path / "r.csv"
    table.write_text("sample,cg1,cg2,cg3\nN1,0.0,NA,1.0\nN2,NaN,0.5,null\nN3,0.2,,0.4\n")
    out = convert_beta_table(table, tmp_path / "r.h5", label_column=None, n_positions=10)
    extract_features_from_hdf5(out, tmp_path / "f.h5")
    means = read_features(tmp_path / "f.h5")["means"]
    np.testing.assert_allclose(means, [[0.0, np.nan, 1.0], [np.nan, 0.5, np.nan], [0.2, np.nan, 0.4]])
    table.write_text("sample,cg1,cg2\nN1,0.1,missing\nN2,0.2,0.3\n")
    with pytest.raises(
        ValueError, match=r"r\.csv: non-numeric beta value 'missing' \(sample N1, probe cg2\)$"
    ):
        convert_beta_table(table, tmp_path / "x.h5", label_column=None)


def test_a_labelled_table_converted_with_no_labels_says_its_label_column_is_text(tmp_path):
    """--no-labels on a training table read its label column as a probe and stopped at
    "non-numeric beta value 'K1' (sample P1, probe label)"; the error now says the column holds
    no number at all and how to name a label column."""
    from genomelab.tissue.convert import convert_beta_table

    table = tmp_path / "t.csv"
    table.write_text("sample,label,cg1\nP1,K1,0.1\nP2,K2,0.4\n")
    with pytest.raises(
        ValueError,
        match=r"probe label\); column 'label' holds no number at all: a label column\? name it with --label-column",
    ):
        convert_beta_table(table, tmp_path / "x.h5", label_column=None)
    # A sample without a label (NA, as R writes it; the TCGA tables have such rows): still a
    # column without any number.
    table.write_text("sample,label,cg1\nP1,K1,0.1\nP2,NA,0.4\n")
    with pytest.raises(ValueError, match=r"column 'label' holds no number at all"):
        convert_beta_table(table, tmp_path / "x.h5", label_column=None)


def test_the_converter_script_reports_a_bad_table_without_a_traceback(tmp_path, capsys):
    """Betas in percent (0-100), a common export, were refused with a traceback and a range
    only; the script now exits 2 with one line naming the table and the likely cause."""
    from genomelab.tissue.convert import main

    table = tmp_path / "pct.csv"
    table.write_text("sample,label,cg1,cg2\nP1,K1,12.5,98\n")
    with pytest.raises(SystemExit) as info:
        main([str(table), str(tmp_path / "p.h5")])
    assert info.value.code == 2 and not (tmp_path / "p.h5").exists()
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert (
        f"ERROR   genomelab.tissue.convert: {table}: beta values must lie in [0, 1] (found 12.5..98); " in err
    )
    assert err.rstrip().endswith("percentages? divide them by 100")
    # A few betas just over 1 are not percentages: the range, without that advice.
    table.write_text("sample,label,cg1,cg2\nP1,K1,0.12,1.02\nP2,K1,0.5,0.9\nP3,K2,0.3,0.1\nP4,K2,0.7,0.2\n")
    with pytest.raises(SystemExit):
        main([str(table), str(tmp_path / "p.h5")])
    err = capsys.readouterr().err
    assert "beta values must lie in [0, 1] (found 0.1..1.02)" in err and "percentages" not in err


def test_tcga_glioma_converts(shared_data, tmp_path):
    from genomelab.tissue.convert import convert_beta_table

    table = shared_data / "methylation_tcga_glioma" / "glioma.gcimp.trainingData.csv.gz"
    out = convert_beta_table(table, tmp_path / "gcimp.h5", n_positions=10)
    src = StackedHDF5.open(out)
    # 276 samples, 2 labelled NA dropped (PROVENANCE.md); 145 probes.
    assert len(src.samples) == 274 and len(src.region_ids) == 145
    assert set(src.subtype) == {"G-CIMP-high", "G-CIMP-low"}


def test_the_documented_label_sheet_labels_an_hdf5_converted_without_labels(tmp_path):
    """docs/tissue.md said a stacked HDF5 takes "an optional sheet" of labels but not its
    columns, and a labels table (sample, tissue, subtype) stopped with "sample sheet lacks
    column(s) ['file']", a column nothing reads for an HDF5. The documented block (no `file`)
    labels an HDF5 made with --no-labels; a `file` column is allowed and ignored (the
    records' file is the HDF5); `tissue` is still required."""
    import re
    from pathlib import Path

    from genomelab.io.errors import FormatError
    from genomelab.tissue.convert import convert_beta_table
    from genomelab.tissue.features import hdf5_records

    text = (Path(__file__).resolve().parents[1] / "docs" / "tissue.md").read_text()
    block = re.search(r"<!-- hdf5-labels -->\n```\n(.*?)```", text, flags=re.S)
    assert block, "docs/tissue.md shows no marked label sheet for a stacked HDF5"
    sheet = tmp_path / "labels.tsv"
    sheet.write_text(block.group(1))
    sample = block.group(1).splitlines()[1].split("\t")[0]
    table = tmp_path / "new.csv"
    table.write_text(f"sample,cg1,cg2\n{sample},0.1,0.9\n")
    h5 = convert_beta_table(table, tmp_path / "n.h5", label_column=None, n_positions=10)
    (rec,) = hdf5_records(StackedHDF5.open(h5), sheet)
    assert (rec.sample, rec.tissue, rec.subtype, rec.file) == (sample, "Glioma", "IDHwt-K1", h5)
    sheet.write_text(f"sample\tfile\ttissue\tsubtype\n{sample}\tno/such/file\tGlioma\tIDHwt-K1\n")
    (rec,) = hdf5_records(StackedHDF5.open(h5), sheet)
    assert (rec.subtype, rec.file) == ("IDHwt-K1", h5)
    sheet.write_text(f"sample\tsubtype\n{sample}\tIDHwt-K1\n")
    with pytest.raises(FormatError, match=r"sample sheet lacks column\(s\) \['tissue'\]"):
        hdf5_records(StackedHDF5.open(h5), sheet)
