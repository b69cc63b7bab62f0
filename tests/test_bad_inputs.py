"""Bad inputs across the shared layer: truncated files are errors that name the file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from genomelab.io.features import read_features
from genomelab.io.methylation import StackedHDF5
from genomelab.report.versions import software_versions
from genomelab.tissue.features import extract_features_from_hdf5


def write_stacked(path, n=3, r=20):
    with h5py.File(path, "w") as h5:
        h5["methylation"] = np.random.default_rng(0).integers(0, 3, size=(n, r, 150), dtype=np.int8)
        h5["samples"] = np.array([f"s{i}" for i in range(n)], dtype="S")
        h5["tissue"] = np.array(["a", "b", "a"][:n], dtype="S")


def test_truncated_hdf5_input_names_the_file_and_leaves_no_output(tmp_path):
    src = tmp_path / "stacked.h5"
    write_stacked(src)
    data = src.read_bytes()
    src.write_bytes(data[: len(data) // 3])
    out = tmp_path / "features.h5"
    with pytest.raises(ValueError, match="stacked.h5"):
        StackedHDF5.open(src)
    with pytest.raises(ValueError, match="stacked.h5"):
        extract_features_from_hdf5(src, out)
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["stacked.h5"]


def test_truncated_features_file_names_the_file(tmp_path):
    src = tmp_path / "stacked.h5"
    write_stacked(src)
    out = tmp_path / "features.h5"
    extract_features_from_hdf5(src, out)
    assert read_features(out)["means"].shape == (3, 20)
    out.write_bytes(out.read_bytes()[:200])
    with pytest.raises(ValueError, match="features.h5"):
        read_features(out)


def test_versions_record_the_seed():
    assert software_versions('{"seed": 7}')["seed"] == 7
    assert software_versions("not json")["seed"] is None
