"""Views of contigs for contrastive training: random sub-sequences and their k-mer profiles.

A view of a contig is a random sub-sequence of it (a fragment), profiled by the same
counter as whole contigs (``kmers.profile_block``, the compiled kernel where numba is
installed). Two views of one contig are a positive pair; views of other contigs in the
batch are the negatives. This is the augmentation of COMEBin (Wang et al. 2024, several
random sub-sequences per contig) and the fragment pairs of SemiBin2's self-supervised mode
(Pan et al. 2023); the fragment lengths and counts here are this module's own choices.

View 0 of every contig is the whole contig (its row of the profile file), so the encoder
is trained on what it embeds afterwards; views 1..n_views are fragments whose length is
drawn uniformly from ``[max(min_fraction * L, min(min_bp, L)), L]`` and whose start is
uniform. The views file (HDF5) holds ``names`` [n], ``coords`` [n, n_views, 2] (half-open
start/end) and ``views`` [n, 1 + n_views, n_columns] float16: the profile groups listed in
its ``groups`` attribute (e.g. ``k4 k5``), in the order of ``kmers.GROUP_SLICES``.

Views are stored and held as float16 because they are the largest array of the module:
11 views x 648 columns are 14 KB per contig in float16 (14 GB for a million contigs, twice
that in float32). Frequencies keep 3 significant digits (relative error <= 2^-11 above
6e-5), far below the sampling noise of a k-mer frequency in a fragment of a few kb; the
encoder takes logs in float32 (``ContrastiveEncoder.log_profile``). Files written as
float32 by earlier versions load as they are.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genomelab.binning.kmers import GROUP_SLICES, profile_block, read_profiles_h5, resolve_engine
from genomelab.io.atomic import atomic_output
from genomelab.io.fasta import read_fasta

logger = logging.getLogger(__name__)

VIEW_DTYPE = np.float16

VIEW_GROUPS = ("k6", "k5", "k4", "k3", "gc")
VIEWS_DS, NAMES_DS, COORDS_DS = "views", "names", "coords"


def check_groups(groups: Sequence[str]) -> tuple[str, ...]:
    """The profile groups in layout order; unknown or repeated names raise ``ValueError``."""
    bad = [g for g in groups if g not in VIEW_GROUPS]
    if bad or not groups or len(set(groups)) != len(groups):
        raise ValueError(f"view groups must be distinct names out of {list(VIEW_GROUPS)}, not {list(groups)}")
    return tuple(g for g in VIEW_GROUPS if g in groups)


def group_columns(groups: Sequence[str]) -> np.ndarray:
    """Profile column indices [n_columns] of ``groups`` (layout order)."""
    return np.concatenate(
        [np.arange(GROUP_SLICES[g].start, GROUP_SLICES[g].stop) for g in check_groups(groups)]
    )


@dataclass
class Views:
    names: np.ndarray  # [n] str
    coords: np.ndarray  # [n, n_views, 2] int64 fragment start/end
    views: np.ndarray  # [n, 1 + n_views, n_columns] float16; view 0 = whole contig
    groups: tuple[str, ...]


def fragment_coords(
    lengths: np.ndarray, n_views: int, min_fraction: float, min_bp: int, rng: np.random.Generator
) -> np.ndarray:
    """[n, n_views, 2] half-open fragments: length uniform in ``[lo, L]`` with
    ``lo = max(ceil(min_fraction * L), min(min_bp, L))``, start uniform."""
    if n_views < 1:
        raise ValueError(f"n_views must be >= 1, not {n_views}")
    if not 0 < min_fraction <= 1:
        raise ValueError(f"view min_fraction must be in (0, 1], not {min_fraction}")
    if min_bp < 1:
        raise ValueError(f"view min_bp must be >= 1, not {min_bp}")
    lengths = np.asarray(lengths, dtype=np.int64)
    lo = np.maximum(np.ceil(min_fraction * lengths).astype(np.int64), np.minimum(min_bp, lengths))
    size = rng.integers(lo[:, None], lengths[:, None] + 1, size=(len(lengths), n_views))
    start = rng.integers(0, lengths[:, None] - size + 1)
    return np.stack([start, start + size], axis=2)


def profile_fragments(
    seqs: Sequence[bytes], coords: np.ndarray, columns: np.ndarray, engine: str = "auto", block: int = 2048
) -> np.ndarray:
    """[n, n_views, n_columns] profiles of the fragments ``coords`` [n, n_views, 2] of ``seqs``."""
    engine = resolve_engine(engine)
    n, n_views = coords.shape[:2]
    out = np.empty((n, n_views, len(columns)), dtype=VIEW_DTYPE)
    flat = [(i, v) for i in range(n) for v in range(n_views)]
    for b in range(0, len(flat), block):
        part = flat[b : b + block]
        frags = [seqs[i][coords[i, v, 0] : coords[i, v, 1]] for i, v in part]
        feats, _ = profile_block(frags, engine=engine)
        rows, cols = zip(*part, strict=True)
        out[np.array(rows), np.array(cols)] = feats[:, columns]
    return out


def make_views(
    contigs: str | os.PathLike,
    features_h5: str | os.PathLike,
    groups: Sequence[str],
    n_views: int,
    min_fraction: float,
    min_bp: int,
    seed: int,
    engine: str = "auto",
) -> Views:
    """Views of every contig of the profile file (same rows, same order)."""
    groups = check_groups(groups)
    prof = read_profiles_h5(features_h5)
    index = {str(n): i for i, n in enumerate(prof.names)}
    seqs: list[bytes | None] = [None] * len(prof.names)
    for name, seq in read_fasta(contigs):
        i = index.get(name)
        if i is not None:
            seqs[i] = seq
    missing = [str(prof.names[i]) for i, s in enumerate(seqs) if s is None]
    if missing:
        raise ValueError(f"{contigs} lacks {len(missing)} contigs of {features_h5}, e.g. {missing[:3]}")
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)  # type: ignore[arg-type]
    if not np.array_equal(lengths, prof.lengths):
        raise ValueError(f"contig lengths in {contigs} differ from those recorded in {features_h5}")
    coords, views = cut_views(
        seqs,  # type: ignore[arg-type]
        prof.features,
        groups,
        n_views,
        min_fraction,
        min_bp,
        np.random.default_rng(seed),
        engine,
    )
    return Views(prof.names, coords, views, groups)


def cut_views(
    seqs: Sequence[bytes],
    whole: np.ndarray,
    groups: Sequence[str],
    n_views: int,
    min_fraction: float,
    min_bp: int,
    rng: np.random.Generator,
    engine: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Views of contigs ``seqs`` [n] whose whole profiles are ``whole`` [n, 2761] (view 0):
    (coords [n, n_views, 2], views [n, 1 + n_views, n_columns] float16). What the views rule
    writes, and what the pre-training check cuts for a few contigs."""
    columns = group_columns(groups)
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    coords = fragment_coords(lengths, n_views, min_fraction, min_bp, rng)
    frags = profile_fragments(seqs, coords, columns, engine)
    return coords, np.concatenate([whole[:, None, columns].astype(VIEW_DTYPE), frags], axis=1)


def save_views(path: str | os.PathLike, views: Views) -> None:
    import h5py

    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset(NAMES_DS, data=np.asarray(views.names, dtype=object), dtype=h5py.string_dtype())
        h5.create_dataset(COORDS_DS, data=views.coords.astype(np.int64))
        h5.create_dataset(VIEWS_DS, data=views.views.astype(VIEW_DTYPE))
        h5.attrs["groups"] = " ".join(views.groups)


def load_views(path: str | os.PathLike) -> Views:
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"contig views file {path} does not exist")
    with h5py.File(path, "r") as h5:
        for ds in (VIEWS_DS, NAMES_DS, COORDS_DS):
            if ds not in h5:
                raise ValueError(f"{path} has no dataset {ds!r}: not a genomelab contig views file")
        groups = check_groups(str(h5.attrs.get("groups", "")).split())
        views = Views(
            np.asarray(h5[NAMES_DS].asstr()[:], dtype=object), h5[COORDS_DS][:], h5[VIEWS_DS][:], groups
        )
    if views.views.shape[2] != len(group_columns(groups)):
        raise ValueError(
            f"{path}: views have {views.views.shape[2]} columns, groups {groups} need another number"
        )
    return views


def views_step_files(
    contigs: str | os.PathLike,
    features_h5: str | os.PathLike,
    out_h5: str | os.PathLike,
    groups: Sequence[str],
    n_views: int,
    min_fraction: float,
    min_bp: int,
    seed: int,
    engine: str = "auto",
) -> Views:
    """:func:`make_views` written to ``out_h5``, with the time logged."""
    t0 = time.perf_counter()
    views = make_views(contigs, features_h5, groups, n_views, min_fraction, min_bp, seed, engine)
    save_views(out_h5, views)
    logger.info(
        "views: %d contigs x %d fragments (%s) in %.1f s",
        len(views.names),
        n_views,
        "+".join(views.groups),
        time.perf_counter() - t0,
    )
    return views
