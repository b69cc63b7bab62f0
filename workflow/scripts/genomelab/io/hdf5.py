"""Small pieces every HDF5 reader and writer of the project shares."""

from __future__ import annotations

import h5py
import numpy as np

STR = h5py.string_dtype("utf-8")


def h5_strings(ds: h5py.Dataset) -> np.ndarray:
    """Decode a string dataset (bytes or str) to a numpy array of str."""
    return np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in ds[()]], dtype=str)
