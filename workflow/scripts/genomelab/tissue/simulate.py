"""A read-level simulator of per-sample methylation arrays for the demo and the tests.

Model (all parameters in :class:`SimulationConfig`):

- Region baseline: a bimodal methylation level per region shared by all tissues (most CpG
  regions are either mostly methylated or mostly unmethylated), with a fixed per-position
  offset so that CpGs within a region differ.
- Tissue markers: a fraction of regions (``marker_fraction``) gets a tissue-specific level;
  subtypes inside a tissue differ at a further ``subtype_marker_fraction`` of regions.
- Biological variation: every sample perturbs each region's level on the logit scale
  (``sample_sd``), so samples of one tissue are not copies of the profile.
- Reads: each region receives Poisson(``coverage`` * n_positions / ``read_length``) reads
  at uniform start positions; a read is in one methylation state (drawn from the region
  level) and calls its CpGs with ``read_concordance``, giving the read-level concordance of
  real bisulfite data. Positions covered by no read are 2 (missing).
- Augmented copies: a fraction of samples gets ``n_augmented_copies`` re-sequenced copies
  (same biological sample, new reads), named ``<sample>_aug<k>`` with ``source_sample`` set,
  the situation that leaks across splits when splits ignore groups.
- Atlas profiles (optional): with ``atlas`` set to a table of CpGs x tissues (e.g. the Moss
  et al. 2018 array atlas: one row per CpG, one column per cell type, mean beta values), the
  tissue levels of the first ``atlas_n_markers`` regions come from real per-tissue profiles
  instead of random markers; the remaining regions are shared bimodal background. The table
  is read from the user's path and never copied into the results.

The defaults (10 tissues, ~2% marker regions per tissue, 0.5x coverage, logit-scale sample
variation 0.8) are set so that a logistic regression on region means is good but not
perfect (about 85-95% in group cross-validation), as on real tissue panels.

A single region carries little tissue information (most regions are not markers and a
region sees few reads), while a whole sample carries a lot: exactly the granularity that
region-level models with file-level labels fail on.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from genomelab.config import ConfigSection, from_schema
from genomelab.io.atomic import atomic_output, atomic_write_json

logger = logging.getLogger(__name__)


@dataclass
class SimulationConfig(ConfigSection):
    """Parameters of the read-level simulator (see module docstring)."""

    SECTION = "tissue.simulate"

    tissues: list[str] = from_schema("tissue.simulate.tissues")
    n_subtypes: int = from_schema("tissue.simulate.n_subtypes")
    samples_per_subtype: int = from_schema("tissue.simulate.samples_per_subtype")
    n_regions: int = from_schema("tissue.simulate.n_regions")
    n_positions: int = from_schema("tissue.simulate.n_positions")
    marker_fraction: float = from_schema("tissue.simulate.marker_fraction")
    subtype_marker_fraction: float = from_schema("tissue.simulate.subtype_marker_fraction")
    sample_sd: float = from_schema("tissue.simulate.sample_sd")
    coverage: float = from_schema("tissue.simulate.coverage")
    read_length: int = from_schema("tissue.simulate.read_length")
    read_concordance: float = from_schema("tissue.simulate.read_concordance")
    augment_fraction: float = from_schema("tissue.simulate.augment_fraction")
    n_augmented_copies: int = from_schema("tissue.simulate.n_augmented_copies")
    atlas: str = from_schema("tissue.simulate.atlas")
    atlas_n_markers: int = from_schema("tissue.simulate.atlas_n_markers")
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.tissues) < 2 or len(set(self.tissues)) != len(self.tissues):
            raise ValueError(f"simulate.tissues needs >= 2 distinct names, got {self.tissues}")
        for name in ("n_subtypes", "samples_per_subtype", "n_regions", "n_positions", "read_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"simulate.{name} must be >= 1, not {getattr(self, name)}")
        for name in ("marker_fraction", "subtype_marker_fraction", "augment_fraction"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"simulate.{name} must be in [0, 1], not {getattr(self, name)}")
        if not 0.5 <= self.read_concordance <= 1:
            raise ValueError(f"simulate.read_concordance must be in [0.5, 1], not {self.read_concordance}")
        if self.coverage <= 0 or self.sample_sd < 0 or self.n_augmented_copies < 0:
            raise ValueError("simulate.coverage must be > 0, sample_sd and n_augmented_copies >= 0")
        if self.atlas_n_markers < 0:
            raise ValueError(f"simulate.atlas_n_markers must be >= 0, not {self.atlas_n_markers}")


def read_atlas(path: str | os.PathLike, tissues: list[str]) -> np.ndarray:
    """Per-tissue methylation levels from a CpG x tissue table; returns float [n_cpgs, n_tissues].

    The table is CSV or TSV (optionally gzipped) with one row per CpG; numeric columns
    named in ``tissues`` are used, non-numeric ones (IDs, coordinates) ignored. Values are
    fractions in [0, 1]; a table in percent (max > 1, as in Sun et al. 2015) is scaled.
    Rows with a missing value in a chosen column are dropped.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"simulate.atlas: table {path} does not exist")
    try:
        table = pd.read_csv(path, sep=None, engine="python")
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"simulate.atlas: {path} is not a readable CSV/TSV table ({exc})") from exc
    missing = [t for t in tissues if t not in table.columns]
    if missing:
        numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
        raise ValueError(
            f"simulate.atlas: {path} has no column(s) {missing}; simulate.tissues must name "
            f"its tissue columns, e.g. {numeric[:8]}"
        )
    values = table[tissues]
    bad = [t for t in tissues if not pd.api.types.is_numeric_dtype(values[t])]
    if bad:
        raise ValueError(f"simulate.atlas: column(s) {bad} of {path} are not numeric")
    levels = values.dropna().to_numpy(dtype=float)
    if len(levels) == 0:
        raise ValueError(f"simulate.atlas: {path} has no complete rows for {tissues}")
    if levels.min() < 0 or levels.max() > 100:
        raise ValueError(f"simulate.atlas: {path} holds values outside [0, 1] (or [0, 100] percent)")
    if levels.max() > 1:
        logger.info("atlas %s looks like percent (max %.1f): dividing by 100", path, levels.max())
        levels = levels / 100.0
    return levels


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_profiles(cfg: SimulationConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Region-level methylation of each (tissue, subtype) and per-position offsets.

    Returns ``levels`` [n_tissues, n_subtypes, n_regions] in (0, 1) and ``offsets``
    [n_regions, n_positions] (logit-scale CpG offsets shared by all tissues).
    """
    n_t, n_s, n_r = len(cfg.tissues), cfg.n_subtypes, cfg.n_regions
    base = rng.beta(0.4, 0.4, size=n_r)
    levels = np.repeat(base[None, None, :], n_t, axis=0).repeat(n_s, axis=1)
    if cfg.atlas:
        atlas = read_atlas(cfg.atlas, cfg.tissues)
        n_use = min(len(atlas), n_r, cfg.atlas_n_markers or len(atlas))
        rows = np.sort(rng.choice(len(atlas), size=n_use, replace=False))
        # Atlas CpGs are spread over the region set so that no block of IDs holds all markers.
        where = np.sort(rng.choice(n_r, size=n_use, replace=False))
        levels[:, :, where] = np.clip(atlas[rows].T, 0.02, 0.98)[:, None, :]
    else:
        for t in range(n_t):
            markers = rng.random(n_r) < cfg.marker_fraction
            # Markers move to the opposite methylation state, like tissue-specific hypomethylation.
            levels[t, :, markers] = np.clip(
                1 - base[markers] + rng.normal(0, 0.05, markers.sum()), 0.02, 0.98
            )[:, None]
    for t in range(n_t):
        for s in range(n_s):
            sub = rng.random(n_r) < cfg.subtype_marker_fraction
            levels[t, s, sub] = np.clip(1 - levels[t, s, sub], 0.02, 0.98)
    offsets = rng.normal(0, 0.7, size=(n_r, cfg.n_positions))
    return levels, offsets


def simulate_reads(
    level: np.ndarray, offsets: np.ndarray, cfg: SimulationConfig, rng: np.random.Generator
) -> np.ndarray:
    """Draw one sample's reads; return int8 [n_regions, n_positions] (0/1, 2 = missing).

    ``level`` [n_regions] is the sample's region methylation level.
    """
    n_r, n_p = offsets.shape
    lam = cfg.coverage * n_p / cfg.read_length
    n_reads = rng.poisson(lam, size=n_r)
    total = int(n_reads.sum())
    out = np.full((n_r, n_p), 2, dtype=np.int8)
    if total == 0:
        return out
    region = np.repeat(np.arange(n_r), n_reads)
    # Reads may start before the region so that edge positions are covered as often as others.
    start = rng.integers(-cfg.read_length + 1, n_p, size=total)
    pos = start[:, None] + np.arange(cfg.read_length)[None, :]
    inside = (pos >= 0) & (pos < n_p)
    # Per-read state from the region level, then CpG calls concordant with that state.
    p_pos = _sigmoid(_logit(level)[region][:, None] + offsets[region[:, None], np.clip(pos, 0, n_p - 1)])
    state = rng.random(total) < level[region]
    # A methylated read calls CpGs methylated with probability shaped by the CpG's own level.
    p_call = np.where(
        state[:, None], np.maximum(p_pos, cfg.read_concordance), np.minimum(p_pos, 1 - cfg.read_concordance)
    )
    calls = (rng.random(p_call.shape) < p_call).astype(np.int8)
    rows = np.broadcast_to(region[:, None], pos.shape)[inside]
    out[rows, pos[inside]] = calls[inside]
    return out


def simulate_dataset(cfg: SimulationConfig, out_dir: str | os.PathLike) -> Path:
    """Write one NPZ per sample plus ``samples.tsv`` and ``simulation.json`` into ``out_dir``.

    Returns the sample sheet path. Files are written atomically; a rerun overwrites them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    levels, offsets = make_profiles(cfg, rng)
    region_ids = np.asarray(
        [
            f"sim{r // 500 + 1}:{(r % 500) * 1000}-{(r % 500) * 1000 + cfg.n_positions}"
            for r in range(cfg.n_regions)
        ]
    )
    rows: list[dict[str, str]] = []
    for t, tissue in enumerate(cfg.tissues):
        for s in range(cfg.n_subtypes):
            subtype = f"{tissue}_{chr(ord('A') + s)}"
            for i in range(cfg.samples_per_subtype):
                sample = f"{subtype}_{i + 1:02d}"
                sample_level = _sigmoid(_logit(levels[t, s]) + rng.normal(0, cfg.sample_sd, cfg.n_regions))
                copies = cfg.n_augmented_copies if rng.random() < cfg.augment_fraction else 0
                for k in range(copies + 1):
                    name = sample if k == 0 else f"{sample}_aug{k}"
                    meth = simulate_reads(sample_level, offsets, cfg, rng)
                    path = out / f"{name}.npz"
                    with atomic_output(path) as tmp:
                        with open(tmp, "wb") as fh:
                            np.savez_compressed(fh, methylation=meth, region_ids=region_ids)
                    rows.append(
                        {
                            "sample": name,
                            "file": path.name,
                            "tissue": tissue,
                            "subtype": subtype,
                            "source_sample": sample,
                        }
                    )
    sheet = out / "samples.tsv"
    with atomic_output(sheet) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(
            fh,
            fieldnames=["sample", "file", "tissue", "subtype", "source_sample"],
            delimiter="\t",
            lineterminator="\n",
        )
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_json(out / "simulation.json", {"config": asdict(cfg), "n_samples": len(rows)})
    logger.info(
        "simulated %d samples (%d tissues x %d subtypes, %d regions) into %s",
        len(rows),
        len(cfg.tissues),
        cfg.n_subtypes,
        cfg.n_regions,
        out,
    )
    return sheet
