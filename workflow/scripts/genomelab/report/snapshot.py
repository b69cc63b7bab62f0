"""Content digests of a run's deterministic outputs, for snapshot tests of a configuration.

Byte checksums would flag files whose *content* is unchanged: NPZ archives and HDF5 files
carry write times, JSON metrics carry epoch timings. A digest here is taken over what the
file says: arrays and numbers rounded to ``SIGNIFICANT`` digits (so the last bits of a float
summation do not count), JSON without timing/version/path keys. Plots, TensorBoard events,
logs, benchmarks and resumable state are not deterministic outputs and are skipped.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

SIGNIFICANT = 4
# Markdown files restate their JSON in prose, timings included.
SKIP_SUFFIXES = {".png", ".pdf", ".svg", ".log", ".pt", ".html", ".zip", ".md"}
SKIP_PARTS = {".state", "benchmarks", "tensorboard", "tb", "logs", ".snakemake"}
VOLATILE_KEY = re.compile(
    r"^notes$|time|_s$|seconds|per_second|per_s$|throughput|speed|duration|version|commit|platform|python|device|path|date|host|node|gpus|cuda|packages|config_sha256|log",
    re.I,
)
NUMBER = re.compile(r"-?\d+\.\d+(?:[eE][-+]?\d+)?")


TINY = 1e-8  # |x| below this counts as zero (relative rounding is meaningless there)


def _round(x: float) -> str:
    return f"{0.0 if abs(x) < TINY else x:.{SIGNIFICANT}g}"


def _canon(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _canon(v) for k, v in sorted(obj.items()) if not VOLATILE_KEY.search(str(k))}
    if isinstance(obj, list):
        return [_canon(v) for v in obj]
    if isinstance(obj, float):
        return _round(obj)
    return obj


def _array_digest(h: hashlib._Hash, name: str, arr: np.ndarray) -> None:
    h.update(f"{name}:{arr.dtype.kind}:{arr.shape}".encode())
    if arr.dtype.kind == "f":
        values = np.nan_to_num(arr.astype(np.float64), nan=-999.0)
        values[np.abs(values) < TINY] = 0.0
        h.update(np.char.mod(f"%.{SIGNIFICANT}g", values).tobytes())
    elif arr.dtype.kind in "OSU":
        h.update("\x00".join(v.decode() if isinstance(v, bytes) else str(v) for v in arr.ravel()).encode())
    else:
        h.update(np.ascontiguousarray(arr).tobytes())


def digest(path: str | os.PathLike) -> str | None:
    """Content digest of one file, or None when the file is not a deterministic output."""
    path = Path(path)
    if path.suffix in SKIP_SUFFIXES or path.name.startswith(("events.out.tfevents", ".snakemake")):
        return None
    h = hashlib.sha256()
    if path.suffix == ".json":
        h.update(json.dumps(_canon(json.loads(path.read_text())), sort_keys=True).encode())
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as npz:
            for name in sorted(npz.files):
                _array_digest(h, name, npz[name])
    elif path.suffix in (".h5", ".hdf5"):
        import h5py

        with h5py.File(path, "r") as f:
            names: list[str] = []
            f.visit(names.append)
            for name in sorted(names):
                if isinstance(f[name], h5py.Dataset):
                    _array_digest(h, name, f[name][()] if f[name].shape != () else np.asarray(f[name][()]))
    elif path.suffix == ".npy":
        _array_digest(h, path.name, np.load(path, allow_pickle=False))
    else:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", errors="replace") as fh:
            text = fh.read()
        h.update(NUMBER.sub(lambda m: _round(float(m.group())), text).encode())
    return h.hexdigest()[:16]


def snapshot(results_dir: str | os.PathLike) -> dict[str, str]:
    """``{relative path: digest}`` of every deterministic output under ``results_dir``."""
    root = Path(results_dir)
    out: dict[str, str] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or SKIP_PARTS & set(rel.parts[:-1]) or rel.parts[0] == "report":
            continue
        d = digest(path)
        if d is not None:
            out[str(rel)] = d
    return out


def compare(expected: dict[str, str], actual: dict[str, str]) -> list[str]:
    """Human-readable differences (missing, unexpected, changed files); empty when equal."""
    problems = [f"missing: {p}" for p in sorted(set(expected) - set(actual))]
    problems += [f"unexpected: {p}" for p in sorted(set(actual) - set(expected))]
    problems += [f"changed: {p}" for p in sorted(set(expected) & set(actual)) if expected[p] != actual[p]]
    return problems
