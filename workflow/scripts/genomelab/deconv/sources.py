"""The deconv_sources step: pure samples (sample sheet or region-means HDF5) split by individual."""

from __future__ import annotations

import os

from genomelab.deconv.io import sources_from_features, sources_from_sheet, write_sources
from genomelab.io.atomic import atomic_write_json


def build_sources(
    sheet: str | None,
    features: str | None,
    fractions: list[float],
    seed: int,
    out_h5: str | os.PathLike,
    out_json: str | os.PathLike,
) -> None:
    """Read pure samples (sheet of NPZ files or region-means HDF5), split them by individual."""
    from genomelab.splits import group_split

    if bool(sheet) == bool(features):
        raise ValueError("give exactly one of a sample sheet or a region-means HDF5 as deconv input")
    src = sources_from_sheet(sheet) if sheet else sources_from_features(features)
    src.splits = group_split(src.groups, fractions, seed=seed, stratify=src.tissues)
    counts = {
        t: {s: int(((src.tissues == t) & (src.splits == s)).sum()) for s in ("train", "val", "test")}
        for t in sorted(set(src.tissues.tolist()))
    }
    short = [t for t, c in counts.items() if min(c.values()) == 0]
    if short:
        raise ValueError(
            f"tissue(s) {short} lack individuals in some split ({ {t: counts[t] for t in short} }); "
            "each tissue needs at least 3 source samples (individuals)"
        )
    write_sources(out_h5, src, {"input": str(sheet or features), "seed": seed})
    atomic_write_json(
        out_json,
        {
            "input": str(sheet or features),
            "n_samples": int(len(src.samples)),
            "n_regions": int(len(src.regions)),
            "per_tissue": counts,
            "missing_fraction": float((src.valid <= 0).mean()),
        },
    )
