"""Demo data: per-tissue methylation profiles with marker structure, and per-sample reads.

The structure follows what the Moss et al. (2018) atlas shows (facts only, no atlas data):
most informative CpG regions are *hypo*methylated in one cell type and methylated in all
others, a smaller set is hypermethylated in one type, and blood cell types share markers
(they are hard to separate from each other but easy to separate from solid tissues).
Individuals differ from their tissue's profile on the logit scale (``bio_sd``); each of
the ``n_positions`` calls of a region is a Bernoulli draw from the individual's beta, some
are missing (value 2), and a few regions have no call at all.

``profiles`` may name a regions x tissues table (an atlas, e.g. the Moss atlas) that replaces
the synthetic profiles: this is how a run trains from an atlas alone (``reference.atlas``
with no pure samples sets it). Every region of the table is used; ``atlas_regions`` > 0
(an explicit opt-in) draws that many at random. The number used is logged and written to
the simulation record.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.config import ConfigSection, from_schema
from genomelab.deconv.io import read_table, write_table
from genomelab.io.atomic import atomic_output, atomic_write_json, atomic_write_text

logger = logging.getLogger(__name__)


@dataclass
class SimulationConfig(ConfigSection):
    """Size and noise of the demo data (see the module docstring)."""

    SECTION = "deconv.simulate"

    tissues: list[str] = from_schema("deconv.simulate.tissues")
    blood: list[str] = from_schema("deconv.simulate.blood")
    samples_per_tissue: int = from_schema("deconv.simulate.samples_per_tissue")
    n_regions: int = from_schema("deconv.simulate.n_regions")
    n_positions: int = from_schema("deconv.simulate.n_positions")
    hypo_markers: int = from_schema("deconv.simulate.hypo_markers")
    hyper_markers: int = from_schema("deconv.simulate.hyper_markers")
    blood_markers: int = from_schema("deconv.simulate.blood_markers")
    bio_sd: float = from_schema("deconv.simulate.bio_sd")
    missing_rate: float = from_schema("deconv.simulate.missing_rate")
    region_dropout: float = from_schema("deconv.simulate.region_dropout")
    n_new_samples: int = from_schema("deconv.simulate.n_new_samples")
    new_sample_coverage: int = from_schema("deconv.simulate.new_sample_coverage")
    profiles: str = from_schema("deconv.simulate.profiles")
    atlas_regions: int = from_schema("deconv.simulate.atlas_regions")
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.tissues) < 2 or len(set(self.tissues)) != len(self.tissues):
            raise ValueError(f"simulate.tissues must name at least two distinct tissues, not {self.tissues}")
        unknown = sorted(set(self.blood) - set(self.tissues))
        if unknown and not self.profiles:
            raise ValueError(f"simulate.blood names tissues not in simulate.tissues: {unknown}")
        for name in ("samples_per_tissue", "n_regions", "n_positions", "new_sample_coverage"):
            if getattr(self, name) < 1:
                raise ValueError(f"simulate.{name} must be >= 1, not {getattr(self, name)}")
        for name in ("hypo_markers", "hyper_markers", "blood_markers", "n_new_samples", "atlas_regions"):
            if getattr(self, name) < 0:
                raise ValueError(f"simulate.{name} must be >= 0, not {getattr(self, name)}")
        if self.samples_per_tissue < 3:
            raise ValueError(
                "simulate.samples_per_tissue must be >= 3 so that train, val and test "
                f"get disjoint individuals of every tissue, not {self.samples_per_tissue}"
            )
        for name in ("missing_rate", "region_dropout"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"simulate.{name} must be in [0, 1), not {getattr(self, name)}")
        if self.bio_sd < 0:
            raise ValueError(f"simulate.bio_sd must be >= 0, not {self.bio_sd}")
        n_markers = len(self.tissues) * (self.hypo_markers + self.hyper_markers) + self.blood_markers
        if not self.profiles and n_markers > self.n_regions:
            raise ValueError(f"simulate.n_regions={self.n_regions} cannot hold {n_markers} marker regions")


def _uniform(rng: np.random.Generator, lo: float, hi: float, size: Any) -> np.ndarray:
    return rng.uniform(lo, hi, size)


def synthetic_profiles(cfg: SimulationConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-tissue betas [n_regions, n_tissues] and region IDs [n_regions]."""
    n_r, n_t = cfg.n_regions, len(cfg.tissues)
    blood = np.asarray([t in cfg.blood for t in cfg.tissues])
    # Background: a shared bimodal landscape with small tissue-specific deviations; blood
    # cell types deviate together, as they do in real atlases.
    base = rng.beta(0.6, 0.6, n_r)
    logit = np.log(np.clip(base, 0.02, 0.98) / (1 - np.clip(base, 0.02, 0.98)))
    dev = rng.normal(0, 0.25, (n_r, n_t))
    dev[:, blood] = rng.normal(0, 0.25, (n_r, 1)) + rng.normal(0, 0.1, (n_r, int(blood.sum())))
    prof = 1 / (1 + np.exp(-(logit[:, None] + dev)))
    order = rng.permutation(n_r)
    pos = 0

    def take(k: int) -> np.ndarray:
        nonlocal pos
        out = order[pos : pos + k]
        pos += k
        return out

    if blood.any() and cfg.blood_markers:
        rows = take(cfg.blood_markers)
        prof[np.ix_(rows, np.flatnonzero(~blood))] = _uniform(
            rng, 0.75, 0.95, (len(rows), int((~blood).sum()))
        )
        prof[np.ix_(rows, np.flatnonzero(blood))] = _uniform(rng, 0.03, 0.2, (len(rows), int(blood.sum())))
    for t in range(n_t):
        rows = take(cfg.hypo_markers)
        prof[rows] = _uniform(rng, 0.7, 0.95, (len(rows), n_t))
        prof[rows, t] = _uniform(rng, 0.02, 0.2, len(rows))
        rows = take(cfg.hyper_markers)
        prof[rows] = _uniform(rng, 0.05, 0.3, (len(rows), n_t))
        prof[rows, t] = _uniform(rng, 0.75, 0.95, len(rows))
    ids = np.asarray([f"region_{i:06d}" for i in range(n_r)])
    return prof.astype(np.float64), ids


def load_profiles(
    cfg: SimulationConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    """Profiles [R, T], region IDs [R], tissue names and a record of the regions used:
    synthetic or from ``cfg.profiles`` (all its complete rows unless ``atlas_regions``)."""
    if not cfg.profiles:
        prof, ids = synthetic_profiles(cfg, rng)
        return prof, ids, list(cfg.tissues), {"origin": "synthetic", "n_regions": len(ids)}
    # The table is simulate.profiles or, in an atlas-only run, reference.atlas: name neither key.
    values, ids, tissues = read_table(cfg.profiles, "profiles to simulate from, table")
    record: dict[str, Any] = {"origin": str(cfg.profiles), "n_regions_table": int(len(ids))}
    keep = np.isfinite(values).all(axis=1)
    values, ids = values[keep], ids[keep]
    record["n_regions_with_na_dropped"] = int((~keep).sum())
    if 0 < cfg.atlas_regions < len(ids):
        rows = np.sort(rng.choice(len(ids), cfg.atlas_regions, replace=False))
        values, ids = values[rows], ids[rows]
        logger.warning(
            "simulate.atlas_regions=%d: using %d of the table's %d complete regions",
            cfg.atlas_regions,
            len(ids),
            int(keep.sum()),
        )
    record["n_regions"] = int(len(ids))
    logger.info("profiles from %s: %d tissues x %d regions", cfg.profiles, len(tissues), len(ids))
    return values, ids, list(tissues), record


def individual_betas(profile: np.ndarray, bio_sd: float, rng: np.random.Generator) -> np.ndarray:
    """One individual's betas [R] around a tissue profile [R] (logit-normal variation)."""
    p = np.clip(profile, 0.01, 0.99)
    logit = np.log(p / (1 - p)) + rng.normal(0, bio_sd, p.shape)
    return 1 / (1 + np.exp(-logit))


def draw_calls(
    beta: np.ndarray, n_positions: int, missing_rate: float, region_dropout: float, rng: np.random.Generator
) -> np.ndarray:
    """int8 [R, n_positions] calls: 1 methylated, 0 unmethylated, 2 missing."""
    calls = (rng.random((len(beta), n_positions)) < beta[:, None]).astype(np.int8)
    calls[rng.random(calls.shape) < missing_rate] = 2
    calls[rng.random(len(beta)) < region_dropout] = 2
    return calls


def simulate_demo(
    cfg: SimulationConfig,
    out_dir: str | os.PathLike,
    sheet: str | os.PathLike,
    new_samples: str | os.PathLike,
    new_truth: str | os.PathLike,
    profiles_out: str | os.PathLike,
    record_out: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write per-sample NPZ files and their sheet, plus cfDNA-like new samples to deconvolve.

    New samples (regions x samples CSV, MethAtlas input style) come from fresh individuals
    mixed read by read: a blood background plus one or two solid tissues at 1-15%; their
    true proportions go to ``new_truth`` (tissues x samples). Returns the record of the
    regions used (also written to ``record_out``).
    """
    rng = np.random.default_rng(cfg.seed)
    prof, ids, tissues, record = load_profiles(cfg, rng)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines = ["sample\tfile\ttissue\tsource_sample"]
    for t, tissue in enumerate(tissues):
        for j in range(cfg.samples_per_tissue):
            name = f"{tissue}_{j:02d}"
            beta = individual_betas(prof[:, t], cfg.bio_sd, rng)
            calls = draw_calls(beta, cfg.n_positions, cfg.missing_rate, cfg.region_dropout, rng)
            path = out_dir / f"{name}.npz"
            with atomic_output(path) as tmp, open(tmp, "wb") as fh:
                np.savez_compressed(fh, methylation=calls, region_ids=np.asarray(ids, dtype=str))
            lines.append(f"{name}\t{os.path.relpath(path, Path(sheet).parent)}\t{tissue}\t{name}")
    atomic_write_text(sheet, "\n".join(lines) + "\n")
    write_table(profiles_out, prof, ids, tissues)

    # New samples for the inference rule.
    blood = [i for i, t in enumerate(tissues) if t in cfg.blood] or [0]
    solid = [i for i in range(len(tissues)) if i not in blood] or [len(tissues) - 1]
    n_new = cfg.n_new_samples
    truth = np.zeros((len(tissues), n_new))
    betas = np.full((len(ids), n_new), np.nan)
    for s in range(n_new):
        p = np.zeros(len(tissues))
        chosen = rng.choice(solid, size=min(len(solid), 1 + s % 2), replace=False)
        p[chosen] = rng.uniform(0.01, 0.15, len(chosen))
        p[blood] = rng.dirichlet(np.full(len(blood), 2.0)) * (1 - p.sum())
        truth[:, s] = p
        present = np.flatnonzero(p)
        indiv = np.stack([individual_betas(prof[:, t], cfg.bio_sd, rng) for t in present], axis=1)
        reads = rng.multinomial(cfg.new_sample_coverage, p[present], size=len(ids))
        meth = rng.binomial(reads, indiv).sum(axis=1)
        betas[:, s] = meth / cfg.new_sample_coverage
    names = [f"new_{s:02d}" for s in range(n_new)]
    write_table(new_samples, betas, ids, names)
    write_table(new_truth, truth, tissues, names, index_name="tissue")
    record.update(tissues=list(tissues), samples_per_tissue=cfg.samples_per_tissue, n_new_samples=n_new)
    if record_out:
        atomic_write_json(record_out, record)
    logger.info(
        "simulated %d tissues x %d samples x %d regions; %d new samples",
        len(tissues),
        cfg.samples_per_tissue,
        len(ids),
        n_new,
    )
    return record
