"""Methylation NPZ and stacked HDF5 readers (``genomelab.io.methylation``): errors name the file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from genomelab.io.errors import FormatError
from genomelab.io.hdf5 import STR
from genomelab.io.methylation import StackedHDF5, load_npz_sample, npz_region_counts


def _npz(path, meth, **extra):
    np.savez(path, methylation=meth, **extra)
    return path


def test_bad_npz_errors_name_the_file(tmp_path):
    bad_values = _npz(tmp_path / "bad.npz", np.full((2, 4), 3, np.int8))
    with pytest.raises(FormatError, match=r"bad\.npz.*outside \{0, 1, 2\}"):
        load_npz_sample(bad_values)
    wrong_shape = _npz(tmp_path / "shape.npz", np.zeros((2, 4, 1), np.int8))
    with pytest.raises(FormatError, match=r"shape\.npz.*2-D"):
        load_npz_sample(wrong_shape)
    floats = _npz(tmp_path / "float.npz", np.zeros((2, 4), np.float32))
    with pytest.raises(FormatError, match=r"float\.npz.*integers"):
        load_npz_sample(floats)
    positions = _npz(tmp_path / "pos.npz", np.zeros((2, 4), np.int8))
    with pytest.raises(FormatError, match=r"pos\.npz.*4 positions per region, expected 150"):
        load_npz_sample(positions, 150)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(FormatError, match=r"junk\.npz: not a readable NPZ"):
        load_npz_sample(tmp_path / "junk.npz")
    no_meth = tmp_path / "none.npz"
    np.savez(no_meth, other=np.zeros(2))
    with pytest.raises(FormatError, match=r"none\.npz: no 'methylation' array"):
        load_npz_sample(no_meth)
    ids = _npz(tmp_path / "ids.npz", np.zeros((3, 4), np.int8), region_ids=np.array(["a", "b"]))
    with pytest.raises(FormatError, match=r"ids\.npz: 2 region_ids for 3 regions"):
        load_npz_sample(ids)


def test_region_ids_saved_as_python_objects_name_the_file_and_the_fix(tmp_path):
    """np.savez(..., region_ids=df.columns.to_numpy()) stores a pickled object array; the
    features step stopped with numpy's "Object arrays cannot be loaded when
    allow_pickle=False", naming neither the file nor the array."""
    path = _npz(
        tmp_path / "s1.npz", np.zeros((2, 4), np.int8), region_ids=np.array(["cg1", "cg2"], dtype=object)
    )
    with pytest.raises(
        FormatError,
        match=r"s1\.npz: 'region_ids' is an array of Python objects \(pickled\), which is not loaded; "
        r"save it as strings .*np\.asarray\(values, dtype=str\)",
    ):
        load_npz_sample(path)


def test_truncated_npz_names_the_file(tmp_path):
    path = _npz(tmp_path / "cut.npz", np.zeros((50, 40), np.int8), region_ids=np.arange(50).astype(str))
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(FormatError, match=r"cut\.npz: not a readable NPZ"):
        load_npz_sample(path)


def test_region_counts(tmp_path):
    meth = np.array([[1, 1, 0, 2], [2, 2, 2, 2], [0, 0, 1, 1]], np.int8)
    n_meth, n_valid, ids = npz_region_counts(_npz(tmp_path / "a.npz", meth))
    assert n_meth.tolist() == [2, 0, 2] and n_valid.tolist() == [3, 0, 4]
    assert ids.tolist() == ["region_0", "region_1", "region_2"]
    with pytest.raises(FormatError, match=r"b\.npz.*outside"):
        npz_region_counts(_npz(tmp_path / "b.npz", np.full((3, 5), 3, np.int8)))


def write_stacked(path, meth, samples, tissue, **extra):
    with h5py.File(path, "w") as h5:
        h5["methylation"] = meth
        h5.create_dataset("samples", data=np.asarray(samples, dtype=object), dtype=STR)
        h5.create_dataset("tissue", data=np.asarray(tissue, dtype=object), dtype=STR)
        for k, v in extra.items():
            h5.create_dataset(k, data=np.asarray(v, dtype=object), dtype=STR)
    return path


def test_stacked_hdf5_header_errors_name_the_file(tmp_path):
    path = write_stacked(tmp_path / "labels.h5", np.zeros((2, 3, 4), np.int8), ["a", "b"], ["X"])
    with pytest.raises(FormatError, match=r"labels\.h5: 2 samples and 1 labels"):
        StackedHDF5.open(path)
    path = write_stacked(tmp_path / "dup.h5", np.zeros((2, 3, 4), np.int8), ["a", "a"], ["X", "Y"])
    with pytest.raises(FormatError, match=r"dup\.h5: duplicate sample names"):
        StackedHDF5.open(path)
    path = write_stacked(tmp_path / "flat.h5", np.zeros((2, 3), np.int8), ["a", "b"], ["X", "Y"])
    with pytest.raises(FormatError, match=r"flat\.h5: 'methylation' must be \[n_files"):
        StackedHDF5.open(path)
    with h5py.File(tmp_path / "nosamples.h5", "w") as h5:
        h5["methylation"] = np.zeros((1, 2, 3), np.int8)
    with pytest.raises(FormatError, match=r"nosamples\.h5: HDF5 lacks dataset 'samples'"):
        StackedHDF5.open(tmp_path / "nosamples.h5")
    bad = np.zeros((2, 3, 4), np.int8)
    bad[1, 0, 0] = 7
    src = StackedHDF5.open(write_stacked(tmp_path / "v.h5", bad, ["a", "b"], ["X", "Y"]))
    assert src.region_ids.tolist() == ["region_0", "region_1", "region_2"] and src.n_positions == 4
    with pytest.raises(FormatError, match=r"v\.h5 \(file b\).*outside"):
        list(src.iter_blocks(block=1))


def test_a_stacked_hdf5_listing_a_region_twice_is_refused_naming_it(tmp_path):
    """A stacked HDF5 whose ``region_ids`` repeat an ID was opened as it stood (region_ids
    ['r1', 'r1', 'r2']), so tissue_features wrote a features file listing r1 twice and the
    models trained on both columns. Opening it is now an error naming the file, how many IDs
    repeat and the first ones (check_input opens it when Snakemake starts)."""
    meth = np.zeros((2, 4, 5), np.int8)
    path = write_stacked(
        tmp_path / "dup.h5", meth, ["a", "b"], ["X", "Y"], region_ids=["r1", "r2", "r1", "r2"]
    )
    with pytest.raises(ValueError, match=r"dup\.h5: 2 duplicated region ID\(s\), first \['r1', 'r2'\]$"):
        StackedHDF5.open(path)
    path = write_stacked(
        tmp_path / "ok.h5", meth, ["a", "b"], ["X", "Y"], region_ids=["r1", "r2", "r3", "r4"]
    )
    assert StackedHDF5.open(path).region_ids.tolist() == ["r1", "r2", "r3", "r4"]


def test_another_slot_count_names_the_file_its_count_and_what_to_do(tmp_path):
    """NPZ files of 100 slots per region were refused with "expected 150" and no hint. The
    error now names the file and its count and says what to do: for training, the option that
    takes such files (and taking it works); for a prediction, remaking the file at the model's
    count."""
    from genomelab.predict.tissue import read_inputs
    from genomelab.tissue.features import extract_features_from_sheet

    rows = ["sample\tfile\ttissue"]
    for i in range(2):
        _npz(tmp_path / f"s{i}.npz", np.zeros((3, 100), np.int8))
        rows.append(f"s{i}\ts{i}.npz\tBlood")
    sheet = tmp_path / "samples.tsv"
    sheet.write_text("\n".join(rows) + "\n")
    with pytest.raises(FormatError) as err:
        extract_features_from_sheet(sheet, tmp_path / "f.h5", n_positions=150)
    message = str(err.value)
    assert f"{tmp_path / 's0.npz'}: 'methylation' has 100 positions per region, expected 150" in message
    assert "set tissue.input.n_positions: 100 (genomelab tissue-features --n-positions 100)" in message
    assert "genomelab ingest at ingest.n_positions: 150" in message
    extract_features_from_sheet(sheet, tmp_path / "f.h5", n_positions=100)
    with h5py.File(tmp_path / "f.h5") as h5:
        assert h5["means"].shape == (2, 3)
    # A prediction cannot change the model's count: only remaking the file helps.
    with pytest.raises(FormatError) as err:
        read_inputs(tmp_path / "s1.npz", 150)
    message = str(err.value)
    assert "s1.npz: 'methylation' has 100 positions per region, expected 150" in message
    assert "the model was trained on files of 150 slots per region" in message
    assert "ingest.n_positions: 150" in message and "tissue.input.n_positions" not in message
