"""The region-means features HDF5 reader (``genomelab.io.features``): one reader for the
tissue and deconv modules; errors name the file."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from genomelab.io.errors import FormatError
from genomelab.io.features import create_features, read_features, read_n_positions, write_feature_labels
from genomelab.io.sheets import SampleRecord


def _features(path, means, with_optional=True, regions=("r1", "r2")):
    records = [SampleRecord(f"s{i}", path, "Blood", "B", f"g{i}") for i in range(len(means))]
    with h5py.File(path, "w") as h5:
        create_features(h5, len(means), np.array(regions), 150, "test")
        h5["means"][:] = means
        h5["coverage"][:] = 3
        if with_optional:
            write_feature_labels(h5, records)
        else:
            for name in ("samples", "tissue"):
                key = "sample" if name == "samples" else name
                h5.create_dataset(name, data=np.array([getattr(r, key) for r in records], dtype=object))
    return path


def test_round_trip_and_defaults_for_optional_labels(tmp_path):
    means = np.array([[0.5, np.nan], [0.25, 1.0]], np.float32)
    f = read_features(_features(tmp_path / "f.h5", means))
    np.testing.assert_array_equal(f["means"], means)
    assert f["source_sample"].tolist() == ["g0", "g1"] and f["regions"].tolist() == ["r1", "r2"]
    assert read_n_positions(tmp_path / "f.h5") == 150
    g = read_features(_features(tmp_path / "g.h5", means, with_optional=False))
    assert g["subtype"].tolist() == ["", ""] and g["source_sample"].tolist() == ["s0", "s1"]


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"features file .*nope\.h5"):
        read_features(tmp_path / "nope.h5")
    with pytest.raises(FormatError, match=r"out\.h5: 'means' holds values outside \[0, 1\]"):
        read_features(_features(tmp_path / "out.h5", np.array([[0.5, 1.5]], np.float32)))
    with h5py.File(tmp_path / "empty.h5", "w") as h5:
        h5["means"] = np.zeros((1, 1), np.float32)
    with pytest.raises(FormatError, match=r"empty\.h5: not a genomelab features file: no dataset"):
        read_features(tmp_path / "empty.h5")
    path = _features(tmp_path / "shape.h5", np.zeros((2, 2), np.float32))
    with h5py.File(path, "a") as h5:
        del h5["tissue"]
        h5["tissue"] = np.array([b"X"])
    with pytest.raises(
        FormatError, match=r"shape\.h5: 'means' is \(2, 2\) but there are 2 samples, 1 tissue"
    ):
        read_features(path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(FormatError, match=r"shape\.h5: not a readable HDF5 file"):
        read_features(path)


def test_a_features_file_listing_a_region_twice_is_refused_naming_it(tmp_path):
    """A features HDF5 listing a region twice was read as it stood (regions ['r1', 'r2',
    'r1']): the tissue splits, baselines and models took both r1 columns, and the exported
    model listed r1 twice. Reading it is now an error naming the file, how many regions repeat
    and the first ones, for every module that reads the format (tissue, deconv, predict)."""
    means = np.array([[0.1, 0.5, 0.9]], np.float32)
    path = _features(tmp_path / "dup.h5", means, regions=("r1", "r2", "r1"))
    with pytest.raises(ValueError, match=r"dup\.h5: 1 duplicated region ID\(s\), first \['r1'\]$"):
        read_features(path)
    assert (
        read_features(_features(tmp_path / "ok.h5", means, regions=("r1", "r2", "r3")))["regions"].size == 3
    )
