"""In-silico mixtures of pure samples, phase by phase, mixed read by read.

Phases (the curriculum of the model):

1. pure samples and two-tissue mixtures;
2. multi-tissue mixtures (``min_tissues``-``max_tissues`` tissues, Dirichlet proportions);
3. realistic cfDNA: a blood background (Dirichlet over ``background`` tissues) with
   ``min_solid``-``max_solid`` solid tissues at log-uniform fractions in
   [``solid_min``, ``solid_max``] (e.g. pancreas at 0.5-10%).

Read-level mixing: for every mixture and region a depth is drawn (Poisson around
``coverage``), the reads are split between the mixture's tissues by a multinomial draw with
the true proportions, and each read from tissue ``t`` is a Bernoulli call with the
methylation level of the *individual* source sample chosen for ``t`` (a read drawn from
that sample's valid calls). Reads from a sample without a call at that region are lost.
So a mixture carries the sampling noise of sequencing and the biological noise of real
individuals, not only the average of betas (``mode: beta`` gives that average, for
comparison). Each split draws its source samples only from its own individuals.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np

from genomelab.config import ConfigSection, from_schema
from genomelab.deconv.io import Sources, read_sources
from genomelab.deconv.reference import load_reference
from genomelab.io.atomic import atomic_output
from genomelab.io.hdf5 import STR, h5_strings

logger = logging.getLogger(__name__)

PHASES = ("phase1", "phase2", "phase3")
SPLITS = ("train", "val", "test")
MODES = ("reads", "beta")


@dataclass
class PhaseConfig(ConfigSection):
    """Sizes and proportion law of one phase (keys of other phases are ignored)."""

    # The three phases share one schema (a YAML anchor); messages name the phase via ``where``.
    SECTION = "deconv.mixtures.phase1"

    n_train: int = from_schema("deconv.mixtures.phase1.n_train")
    n_val: int = from_schema("deconv.mixtures.phase1.n_val")
    n_test: int = from_schema("deconv.mixtures.phase1.n_test")
    pure_fraction: float = from_schema("deconv.mixtures.phase1.pure_fraction")
    min_tissues: int = from_schema("deconv.mixtures.phase1.min_tissues")
    max_tissues: int = from_schema("deconv.mixtures.phase1.max_tissues")
    alpha: float = from_schema("deconv.mixtures.phase1.alpha")
    background: list[str] = from_schema("deconv.mixtures.phase1.background")
    background_alpha: float = from_schema("deconv.mixtures.phase1.background_alpha")
    min_solid: int = from_schema("deconv.mixtures.phase1.min_solid")
    max_solid: int = from_schema("deconv.mixtures.phase1.max_solid")
    solid_min: float = from_schema("deconv.mixtures.phase1.solid_min")
    solid_max: float = from_schema("deconv.mixtures.phase1.solid_max")

    def __post_init__(self) -> None:
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"mixtures.<phase>.{name} must be >= 1, not {getattr(self, name)}")
        if not 0 <= self.pure_fraction <= 1:
            raise ValueError(f"mixtures.phase1.pure_fraction must be in [0, 1], not {self.pure_fraction}")
        if not 1 <= self.min_tissues <= self.max_tissues:
            raise ValueError(
                f"mixtures.phase2 needs 1 <= min_tissues <= max_tissues, not "
                f"{self.min_tissues}..{self.max_tissues}"
            )
        if self.alpha <= 0 or self.background_alpha <= 0:
            raise ValueError("mixtures Dirichlet alpha and background_alpha must be > 0")
        if not 0 <= self.min_solid <= self.max_solid:
            raise ValueError(
                f"mixtures.phase3 needs 0 <= min_solid <= max_solid, not {self.min_solid}..{self.max_solid}"
            )
        if not 0 < self.solid_min <= self.solid_max < 1:
            raise ValueError(
                f"mixtures.phase3 needs 0 < solid_min <= solid_max < 1, not "
                f"{self.solid_min}..{self.solid_max}"
            )

    def size(self, split: str) -> int:
        return getattr(self, f"n_{split}")


def draw_proportions(
    phase: str, cfg: PhaseConfig, n: int, tissues: list[str], rng: np.random.Generator
) -> np.ndarray:
    """[n, n_tissues] true proportions of ``n`` mixtures of ``phase``."""
    n_t = len(tissues)
    props = np.zeros((n, n_t))
    rows = np.arange(n)
    if phase == "phase1":
        first = rng.integers(n_t, size=n)
        pure = rng.random(n) < cfg.pure_fraction
        second = (first + rng.integers(1, n_t, size=n)) % n_t
        frac = rng.uniform(0.05, 0.95, n)
        props[rows, first] = np.where(pure, 1.0, frac)
        props[rows[~pure], second[~pure]] = 1 - frac[~pure]
    elif phase == "phase2":
        hi = min(cfg.max_tissues, n_t)
        k = rng.integers(min(cfg.min_tissues, hi), hi + 1, size=n)
        # Random subsets of size k: the k smallest of n_t random keys.
        keys = rng.random((n, n_t))
        rank = keys.argsort(1).argsort(1)
        chosen = rank < k[:, None]
        gam = rng.gamma(cfg.alpha, size=(n, n_t)) * chosen
        # A draw can underflow to zero for small alpha; keep at least the largest key.
        gam[gam.sum(1) == 0, keys[gam.sum(1) == 0].argmax(1)] = 1.0
        props = gam / gam.sum(1, keepdims=True)
    elif phase == "phase3":
        missing = sorted(set(cfg.background) - set(tissues))
        if not cfg.background or missing:
            raise ValueError(
                f"mixtures.phase3.background must name reference tissues (blood cell types); "
                f"got {cfg.background}, not in the reference: {missing}; reference: {tissues}"
            )
        bg = np.asarray([tissues.index(t) for t in cfg.background])
        solid = np.asarray([i for i in range(n_t) if i not in set(bg.tolist())])
        n_solid = rng.integers(cfg.min_solid, min(cfg.max_solid, len(solid)) + 1, size=n)
        keys = rng.random((n, len(solid)))
        chosen = keys.argsort(1).argsort(1) < n_solid[:, None]
        frac = np.exp(rng.uniform(np.log(cfg.solid_min), np.log(cfg.solid_max), (n, len(solid)))) * chosen
        total = frac.sum(1, keepdims=True)
        # Keep the background dominant even with several solid tissues.
        frac = np.where(total > 0.5, frac * 0.5 / np.maximum(total, 1e-12), frac)
        props[:, solid] = frac
        props[:, bg] = rng.dirichlet(np.full(len(bg), cfg.background_alpha), n) * (
            1 - frac.sum(1, keepdims=True)
        )
    else:
        raise ValueError(f"unknown phase {phase!r}; expected one of {PHASES}")
    return props / props.sum(1, keepdims=True)


def choose_sources(
    props: np.ndarray,
    src_tissues: np.ndarray,
    tissues: list[str],
    pool: np.ndarray,
    rng: np.random.Generator,
    split: str,
) -> np.ndarray:
    """[n, T] index into the sources of the individual giving each present tissue (-1 absent)."""
    out = np.full(props.shape, -1, dtype=np.int64)
    for t, tissue in enumerate(tissues):
        members = pool[src_tissues[pool] == tissue]
        need = props[:, t] > 0
        if need.any() and len(members) == 0:
            raise ValueError(
                f"no {split} source sample of tissue {tissue!r}: every tissue needs individuals "
                "in train, val and test (at least 3 source samples per tissue)"
            )
        if len(members):
            out[need, t] = members[rng.integers(len(members), size=int(need.sum()))]
    return out


Coverage = float | tuple[float, float]


def coverage_of(value: Any, where: str = "deconv.mixtures.coverage") -> Coverage:
    """``mixtures.coverage`` as a number (every mixture at that mean depth) or a pair
    (lowest, highest): each mixture's mean depth log-uniform between them."""
    if isinstance(value, list | tuple):
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) and v > 0 for v in value)
        if len(value) != 2 or not numbers or value[0] > value[1]:
            raise ValueError(f"{where} must be a positive number or [lowest, highest], not {value!r}")
        return float(value[0]), float(value[1])
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"{where} must be a positive number or [lowest, highest], not {value!r}")
    return float(value)


def mix(
    beta_src: np.ndarray,
    props: np.ndarray,
    source_idx: np.ndarray,
    coverage: Coverage,
    mode: str,
    rng: np.random.Generator,
    max_cells: int = 4_000_000,
) -> np.ndarray:
    """Mixture betas [n, M] (float32, NaN where no valid read) from sources [S, M].

    ``coverage``: the mean depth of every mixture, or (lowest, highest) for a mean depth per
    mixture drawn log-uniformly (a model then sees shallow and deep samples alike). Works on
    chunks of mixtures so that the [chunk, M, T] read counts stay under ``max_cells`` elements.
    """
    if mode not in MODES:
        raise ValueError(f"mixtures.mode must be one of {MODES}, not {mode!r}")
    n, n_t = props.shape
    m = beta_src.shape[1]
    out = np.empty((n, m), np.float32)
    step = max(1, max_cells // max(1, m * n_t))
    depth_mean: np.ndarray | None = None
    if isinstance(coverage, tuple) and mode == "reads":
        # Drawn only for a range, so a single coverage keeps its random stream (and results).
        depth_mean = np.exp(rng.uniform(np.log(coverage[0]), np.log(coverage[1]), n))
    for start in range(0, n, step):
        p = props[start : start + step]
        idx = source_idx[start : start + step]
        # [c, T, M] betas of the chosen individuals; absent tissues get 0 reads anyway.
        sb = np.where(idx[:, :, None] >= 0, beta_src[np.maximum(idx, 0)], 0.0)
        has = np.isfinite(sb)
        sb0 = np.where(has, sb, 0.0)
        if mode == "beta":
            w = p[:, :, None] * has
            tot = w.sum(1)
            with np.errstate(invalid="ignore", divide="ignore"):
                out[start : start + step] = np.where(tot > 0, (w * sb0).sum(1) / tot, np.nan)
            continue
        lam = coverage if depth_mean is None else depth_mean[start : start + step, None]
        depth = rng.poisson(lam, size=(len(p), m))
        reads = rng.multinomial(depth, p[:, None, :])  # [c, M, T]
        reads = np.where(has.transpose(0, 2, 1), reads, 0)
        meth = rng.binomial(reads, sb0.transpose(0, 2, 1)).sum(2)
        n_valid = reads.sum(2)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start : start + step] = np.where(n_valid > 0, meth / np.maximum(n_valid, 1), np.nan)
    return out


@dataclass
class MixtureSet:
    """One split of one phase: ``beta`` [n, M] (NaN missing), ``proportions`` [n, T],
    ``sources`` [n, T] (index into ``source_samples``, -1 absent)."""

    beta: np.ndarray
    proportions: np.ndarray
    sources: np.ndarray
    regions: np.ndarray
    tissues: np.ndarray
    source_samples: np.ndarray
    source_groups: np.ndarray


def make_mixtures(
    src: Sources,
    regions: np.ndarray,
    tissues: list[str],
    phase: str,
    cfg: PhaseConfig,
    coverage: Coverage,
    mode: str,
    seed: int,
) -> dict[str, MixtureSet]:
    """Mixtures of every split of ``phase`` on ``regions`` (the reference's markers)."""
    pos = {r: i for i, r in enumerate(src.regions.tolist())}
    missing = [r for r in regions.tolist() if r not in pos]
    if missing:
        raise ValueError(
            f"{len(missing)} reference regions are absent from the source samples, e.g. {missing[:5]}"
        )
    cols = np.asarray([pos[r] for r in regions.tolist()])
    keep = np.isin(src.tissues, tissues)
    sub = src.subset(keep)
    beta_src = sub.beta[:, cols]
    out = {}
    for s_i, split in enumerate(SPLITS):
        rng = np.random.default_rng([seed, PHASES.index(phase) + 1, s_i])
        n = cfg.size(split)
        props = draw_proportions(phase, cfg, n, tissues, rng)
        pool = np.flatnonzero(sub.splits == split)
        idx = choose_sources(props, sub.tissues, tissues, pool, rng, split)
        beta = mix(beta_src, props, idx, coverage, mode, rng)
        out[split] = MixtureSet(
            beta,
            props.astype(np.float32),
            idx.astype(np.int32),
            regions,
            np.asarray(tissues),
            sub.samples,
            sub.groups,
        )
        logger.info(
            "%s %s: %d mixtures, %.1f%% regions without reads",
            phase,
            split,
            n,
            100 * float(np.isnan(beta).mean()),
        )
    return out


def write_mixtures(path: str | os.PathLike, sets: dict[str, MixtureSet], attrs: dict[str, Any]) -> None:
    first = next(iter(sets.values()))
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as h5:
        for name in ("regions", "tissues", "source_samples", "source_groups"):
            h5.create_dataset(name, data=np.asarray(getattr(first, name), dtype=object), dtype=STR)
        for split, ms in sets.items():
            g = h5.create_group(split)
            g.create_dataset(
                "beta",
                data=ms.beta,
                chunks=(min(len(ms.beta), 256), ms.beta.shape[1]),
                compression="gzip",
                compression_opts=1,
            )
            g.create_dataset("proportions", data=ms.proportions)
            g.create_dataset("sources", data=ms.sources)
        h5.attrs.update(attrs)


def read_mixtures(path: str | os.PathLike, split: str) -> MixtureSet:
    with h5py.File(path, "r") as h5:
        if split not in h5:
            raise ValueError(
                f"{path}: no split {split!r} (has {sorted(k for k in h5 if isinstance(h5[k], h5py.Group))})"
            )
        g = h5[split]
        return MixtureSet(
            g["beta"][()],
            g["proportions"][()],
            g["sources"][()],
            *(h5_strings(h5[k]) for k in ("regions", "tissues", "source_samples", "source_groups")),
        )


def write_phase_mixtures(
    sources: str | os.PathLike,
    reference: str | os.PathLike,
    phase: str,
    mix_cfg: dict[str, Any],
    seed: int,
    out: str | os.PathLike,
) -> None:
    """Mixtures of one curriculum phase (train/val/test) from the sources, on the reference's
    regions and tissues; ``mix_cfg`` is the whole ``deconv.mixtures`` section."""
    cfg = PhaseConfig.from_dict(mix_cfg[phase], where=f"deconv.mixtures.{phase}")
    src = read_sources(sources)
    ref = load_reference(reference)
    sets = make_mixtures(
        src,
        ref.regions,
        list(ref.tissues),
        phase,
        cfg,
        coverage_of(mix_cfg["coverage"]),
        mix_cfg["mode"],
        seed,
    )
    write_mixtures(
        out,
        sets,
        {"phase": phase, "seed": seed, "config": json.dumps(mix_cfg, sort_keys=True)},
    )
