"""Contig latent vectors (VAE latent means or the TNF baseline's embedding) as HDF5:
``names`` [n] and ``latent`` [n, d] float32."""

from __future__ import annotations

import os

import numpy as np

from genomelab.io.atomic import atomic_output


def save_latent(path: str | os.PathLike, names: np.ndarray, latent: np.ndarray) -> None:
    import h5py

    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("names", data=np.asarray(names, dtype=object), dtype=h5py.string_dtype())
        h5.create_dataset(
            "latent",
            data=np.asarray(latent, dtype=np.float32),
            chunks=(min(len(latent), 65536), latent.shape[1]),
        )


def load_latent(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    import h5py

    with h5py.File(path, "r") as h5:
        return np.asarray(h5["names"].asstr()[:], dtype=object), h5["latent"][:]
