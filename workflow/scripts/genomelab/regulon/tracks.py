"""Prediction tracks over the genome: one file format shared by the model and the baselines.

A predictions file holds, over the target region, ``expression`` and ``operon`` [2, n_res]
at ``resolution_bp`` and ``density`` [2, n_bins] at ``bin_bp``, NaN where nothing was
predicted (training blocks). Metrics, plots and bedGraph read only this format, so model
and baselines are evaluated on exactly the same positions.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from genomelab.io.atomic import atomic_output
from genomelab.regulon.targets import TargetData

TRACKS = ("expression", "density", "operon")
# Group of the model's predictions file holding its output on the training blocks (the pair
# readouts are fitted on it; no metric reads it).
TRAIN_GROUP = "model_train"
# Attribute of the model's predictions file holding the pair readout training fitted (JSON),
# the same one the exported model carries as extra["operon_readout"].
READOUT_ATTR = "operon_readout"


def split_bin_mask(data: TargetData, split: str, step_bp: int, block: int | None = None) -> np.ndarray:
    """[n_region_bp // step_bp] bool: bins covered by the windows of ``split`` (of one
    ``block`` of it, when given)."""
    n = (data.region_end - data.region_start) // step_bp
    mask = np.zeros(n, dtype=bool)
    windows = data.split_windows(split)
    if block is not None:
        windows = windows[windows["block"] == block]
    starts = (windows["start"].to_numpy() - data.region_start) // step_bp
    idx = starts[:, None] + np.arange(data.config.window_bp // step_bp)
    mask[idx.ravel()] = True
    return mask


def empty_tracks(data: TargetData) -> dict[str, np.ndarray]:
    n_res = (data.region_end - data.region_start) // data.config.resolution_bp
    n_bins = (data.region_end - data.region_start) // data.config.bin_bp
    return {
        "expression": np.full((2, n_res), np.nan, np.float32),
        "operon": np.full((2, n_res), np.nan, np.float32),
        "density": np.full((2, n_bins), np.nan, np.float32),
    }


def place_windows(
    tracks: dict[str, np.ndarray], data: TargetData, starts: np.ndarray, window_preds: dict[str, np.ndarray]
) -> None:
    """Write window predictions [n_win, 2, L/step] into genome tracks (in place)."""
    cfg = data.config
    for name, step in (
        ("expression", cfg.resolution_bp),
        ("operon", cfg.resolution_bp),
        ("density", cfg.bin_bp),
    ):
        pred = window_preds[name]
        first = (np.asarray(starts) - data.region_start) // step
        idx = first[:, None] + np.arange(pred.shape[-1])
        tracks[name][:, idx] = pred.transpose(1, 0, 2)


def write_tracks(
    path: str | os.PathLike,
    groups: dict[str, dict[str, np.ndarray]],
    data: TargetData,
    readout: dict[str, Any] | None = None,
) -> None:
    """Write ``{method: {track: array}}`` to one HDF5 file; ``readout``: the network's fitted
    pair readout (``OperonReadout.to_dict``), kept as the JSON attribute READOUT_ATTR."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        if readout is not None:
            h5.attrs[READOUT_ATTR] = json.dumps(readout)
        h5.attrs["region_start"] = data.region_start
        h5.attrs["region_end"] = data.region_end
        h5.attrs["resolution_bp"] = data.config.resolution_bp
        h5.attrs["bin_bp"] = data.config.bin_bp
        for method, tracks in groups.items():
            for name in TRACKS:
                h5.create_dataset(f"{method}/{name}", data=tracks[name], compression="gzip", shuffle=True)


def read_readout(path: str | os.PathLike) -> dict[str, Any] | None:
    """The pair readout a predictions file carries (READOUT_ATTR), or None."""
    with h5py.File(path, "r") as h5:
        found = h5.attrs.get(READOUT_ATTR)
    return None if found is None else json.loads(found)


def read_tracks(path: str | os.PathLike, data: TargetData | None = None) -> dict[str, dict[str, np.ndarray]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"predictions file {path} does not exist")
    with h5py.File(path, "r") as h5:
        if data is not None and (int(h5.attrs["region_start"]), int(h5.attrs["region_end"])) != (
            data.region_start,
            data.region_end,
        ):
            raise ValueError(f"predictions file {path} covers another region than {data.path}")
        return {m: {n: h5[f"{m}/{n}"][:] for n in TRACKS} for m in h5}
