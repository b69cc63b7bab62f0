"""Reference profiles (regions x tissues) and marker selection.

The reference is built from *pure training samples only* (pooled methylated / valid calls
per tissue, so deeply covered samples weigh more), or taken from a user atlas table.
Markers follow the MethAtlas recipe in spirit (Moss et al. 2018 selected, per cell type,
the CpGs most hypo- and hypermethylated against all other types, plus CpGs separating
similar types): for tissue ``t``

- hypo score  = min over other tissues of ref[r, u] - ref[r, t]
- hyper score = ref[r, t] - max over other tissues of ref[r, u]
- pairwise    = |ref[r, t] - ref[r, n(t)]| for the tissue ``n(t)`` nearest to ``t``

and the top ``hypo_per_tissue`` / ``hyper_per_tissue`` / ``pairwise_per_tissue`` regions
whose score reaches ``min_delta`` are kept. Every parameter and count is written out.

With ``choose_on_validation`` the marker set is chosen on validation mixtures (phase-3 law,
drawn from the *validation* individuals on every usable region) among the configured counts
scaled by :data:`MARKER_SCALES` and *all usable regions*: the one with the lowest NNLS MAE
wins, so selection never makes NNLS worse than NNLS on all regions on validation (issue 19:
the fixed selection did, on an independent test set). Every candidate's scores are recorded.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass

import numpy as np

from genomelab.config import ConfigSection, from_schema
from genomelab.deconv.io import Sources, read_sources, read_table, write_table
from genomelab.io.atomic import atomic_write_json
from genomelab.io.dropped import KEY as DROPPED_KEY
from genomelab.io.dropped import Dropped, count_dropped, dropped_to_json, read_dropped
from genomelab.io.metrics import read_json_file

logger = logging.getLogger(__name__)

# Multiples of the configured markers per tissue tried on validation (plus all regions).
MARKER_SCALES = (0.5, 1.0, 2.0, 4.0)
ALL_REGIONS = "all regions"


@dataclass
class ReferenceConfig(ConfigSection):
    """How the reference is made (see the module docstring)."""

    SECTION = "deconv.reference"

    atlas: str = from_schema("deconv.reference.atlas")
    include: list[str] = from_schema("deconv.reference.include")
    exclude: list[str] = from_schema("deconv.reference.exclude")
    select_markers: bool = from_schema("deconv.reference.select_markers")
    hypo_per_tissue: int = from_schema("deconv.reference.hypo_per_tissue")
    hyper_per_tissue: int = from_schema("deconv.reference.hyper_per_tissue")
    pairwise_per_tissue: int = from_schema("deconv.reference.pairwise_per_tissue")
    min_delta: float = from_schema("deconv.reference.min_delta")
    max_missing: float = from_schema("deconv.reference.max_missing")
    unknown_component: bool = from_schema("deconv.reference.unknown_component")
    choose_on_validation: bool = from_schema("deconv.reference.choose_on_validation")
    n_val_mixtures: int = from_schema("deconv.reference.n_val_mixtures")

    def __post_init__(self) -> None:
        for name in ("hypo_per_tissue", "hyper_per_tissue", "pairwise_per_tissue"):
            if getattr(self, name) < 0:
                raise ValueError(f"reference.{name} must be >= 0, not {getattr(self, name)}")
        if not 0 <= self.min_delta < 1:
            raise ValueError(f"reference.min_delta must be in [0, 1), not {self.min_delta}")
        if not 0 <= self.max_missing <= 1:
            raise ValueError(f"reference.max_missing must be in [0, 1], not {self.max_missing}")
        overlap = sorted(set(self.include) & set(self.exclude))
        if overlap:
            raise ValueError(f"reference.include and reference.exclude both name {overlap}")


@dataclass
class Reference:
    """``profiles`` float64 [n_regions, n_tissues] (no NaN) with its IDs."""

    profiles: np.ndarray
    regions: np.ndarray
    tissues: np.ndarray

    def __post_init__(self) -> None:
        if self.profiles.shape != (len(self.regions), len(self.tissues)):
            raise ValueError(
                f"reference profiles {self.profiles.shape} do not match {len(self.regions)} "
                f"regions x {len(self.tissues)} tissues"
            )
        if not np.isfinite(self.profiles).all():
            raise ValueError("reference profiles must not contain NaN")


def pooled_profiles(src: Sources, tissues: list[str], max_missing: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-tissue pooled betas [R, T] and a [R] mask of regions usable in every tissue.

    A region is usable when, for every tissue, at most ``max_missing`` of its samples lack
    a call there.
    """
    prof = np.full((len(src.regions), len(tissues)), np.nan)
    usable = np.ones(len(src.regions), bool)
    for t, tissue in enumerate(tissues):
        rows = src.tissues == tissue
        if not rows.any():
            raise ValueError(f"no pure training sample of tissue {tissue!r} to build its reference from")
        meth, valid = src.meth[rows].sum(0, dtype=np.float64), src.valid[rows].sum(0, dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            prof[:, t] = np.where(valid > 0, meth / valid, np.nan)
        usable &= (src.valid[rows] <= 0).mean(0) <= max_missing
    usable &= np.isfinite(prof).all(1)
    return prof, usable


def _others_extreme(prof: np.ndarray, fn: str) -> np.ndarray:
    """[R, T]: min (or max) over all tissues except the column itself, via the two extremes."""
    s = np.sort(prof, axis=1)
    if fn == "min":
        first, second = s[:, :1], s[:, 1:2]
        return np.where(prof == first, second, first)
    first, second = s[:, -1:], s[:, -2:-1]
    return np.where(prof == first, second, first)


def select_markers(prof: np.ndarray, cfg: ReferenceConfig, tissues: list[str]) -> tuple[np.ndarray, dict]:
    """Indices of marker regions (sorted) and a record of what was selected and why."""
    n_r, n_t = prof.shape
    if n_t < 2:
        raise ValueError("marker selection needs at least two tissues")
    hypo = _others_extreme(prof, "min") - prof
    hyper = prof - _others_extreme(prof, "max")
    dist = np.sqrt(((prof[:, :, None] - prof[:, None, :]) ** 2).mean(0))
    np.fill_diagonal(dist, np.inf)
    nearest = dist.argmin(1)
    chosen: set[int] = set()
    per_tissue = {}

    def top(score: np.ndarray, k: int) -> list[int]:
        if k == 0:
            return []
        idx = np.argsort(-score, kind="stable")[:k]
        return [int(i) for i in idx if score[i] >= cfg.min_delta]

    for t, tissue in enumerate(tissues):
        a, b = top(hypo[:, t], cfg.hypo_per_tissue), top(hyper[:, t], cfg.hyper_per_tissue)
        c = top(np.abs(prof[:, t] - prof[:, nearest[t]]), cfg.pairwise_per_tissue)
        chosen.update(a + b + c)
        per_tissue[tissue] = {
            "hypo": len(a),
            "hyper": len(b),
            "pairwise": len(c),
            "nearest_tissue": tissues[int(nearest[t])],
            "distance_to_nearest": float(dist[t, nearest[t]]),
        }
    weak = [t for t, v in per_tissue.items() if v["hypo"] + v["hyper"] + v["pairwise"] == 0]
    if weak:
        raise ValueError(
            f"no marker reaches reference.min_delta={cfg.min_delta} for tissue(s) {weak}; "
            "lower min_delta or check that these tissues differ from the others"
        )
    return np.asarray(sorted(chosen), dtype=np.int64), per_tissue


def choose_markers(
    prof: np.ndarray,
    cfg: ReferenceConfig,
    tissues: list[str],
    val_beta: np.ndarray,
    val_props: np.ndarray,
    call: float = 0.01,
) -> tuple[np.ndarray, dict, dict]:
    """Marker indices into ``prof`` [R, T] chosen on validation mixtures ``val_beta`` [N, R]
    of proportions ``val_props`` [N, T] (see the module docstring), their per-tissue record
    and the scores of every candidate."""
    from genomelab.deconv.metrics import per_sample
    from genomelab.deconv.nnls import deconvolve_nnls

    candidates: dict[str, tuple[np.ndarray, dict]] = {}
    for scale in MARKER_SCALES:
        c = dataclasses.replace(
            cfg,
            hypo_per_tissue=int(round(cfg.hypo_per_tissue * scale)),
            hyper_per_tissue=int(round(cfg.hyper_per_tissue * scale)),
            pairwise_per_tissue=int(round(cfg.pairwise_per_tissue * scale)),
        )
        try:
            candidates[f"x{scale:g} markers"] = select_markers(prof, c, tissues)
        except ValueError as exc:  # a tissue without markers at this size
            logger.info("marker candidate x%g skipped: %s", scale, exc)
    candidates[ALL_REGIONS] = (np.arange(len(prof)), {})
    scores = {}
    for name, (idx, _) in candidates.items():
        pred = deconvolve_nnls(prof[idx], val_beta[:, idx]).proportions
        obs = per_sample(val_props, pred, call)
        scores[name] = {
            "n_regions": int(len(idx)),
            "nnls_val_mae": float(obs["abs_error"].mean()),
            "nnls_val_spurious_per_sample": float(obs["spurious"].mean()),
            "nnls_val_missed_per_sample": float(obs["missed"].mean()),
        }
    # Lowest MAE; on a tie the smaller set (fewer regions, faster networks).
    best = min(scores, key=lambda k: (scores[k]["nnls_val_mae"], scores[k]["n_regions"]))
    logger.info(
        "markers chosen on %d validation mixtures: %s (%d regions, NNLS MAE %.4g; all regions %.4g)",
        len(val_beta),
        best,
        scores[best]["n_regions"],
        scores[best]["nnls_val_mae"],
        scores[ALL_REGIONS]["nnls_val_mae"],
    )
    idx, per_tissue = candidates[best]
    return (
        np.sort(idx),
        per_tissue,
        {"chosen": best, "n_val_mixtures": int(len(val_beta)), "candidates": scores},
    )


def validation_mixtures(
    src: Sources, regions: np.ndarray, tissues: list[str], phase3: dict, coverage: float, n: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Phase-3 mixtures [n, R] and their proportions [n, T] drawn from the *validation*
    individuals of ``src`` (all splits) on ``regions``, for choosing markers."""
    from genomelab.deconv.mixtures import PhaseConfig, choose_sources, draw_proportions, mix

    cfg = PhaseConfig.from_dict({**phase3, "n_val": n}, where="deconv.mixtures.phase3")
    pos = {r: i for i, r in enumerate(src.regions.tolist())}
    cols = np.asarray([pos[r] for r in regions.tolist()])
    sub = src.subset(np.isin(src.tissues, tissues))
    rng = np.random.default_rng([seed, 7, 1])
    props = draw_proportions("phase3", cfg, n, tissues, rng)
    idx = choose_sources(props, sub.tissues, tissues, np.flatnonzero(sub.splits == "val"), rng, "val")
    beta = mix(sub.beta[:, cols], props, idx, coverage, "reads", rng)
    return beta.astype(np.float64), props


def filter_tissues(tissues: list[str], cfg: ReferenceConfig) -> list[str]:
    """Apply ``include`` (empty = all) and ``exclude``; unknown names are an error."""
    unknown = sorted((set(cfg.include) | set(cfg.exclude)) - set(tissues))
    if unknown:
        raise ValueError(f"reference.include/exclude name tissue(s) {unknown} not in the data ({tissues})")
    kept = [t for t in tissues if (not cfg.include or t in cfg.include) and t not in cfg.exclude]
    if len(kept) < 2:
        raise ValueError(f"reference keeps {kept}: at least two tissues are needed")
    return kept


@dataclass
class Validation:
    """What choosing markers on validation needs: every split's sources (``splits`` set),
    the filled phase-3 mixtures section (background resolved), coverage and seed."""

    sources: Sources
    phase3: dict
    coverage: float
    seed: int
    call: float = 0.01


def _markers(
    prof: np.ndarray,
    regions: np.ndarray,
    cfg: ReferenceConfig,
    tissues: list[str],
    validation: Validation | None,
) -> tuple[np.ndarray, dict, dict | None]:
    """Marker indices into ``prof`` [R, T] (usable regions), per-tissue record, choice record."""
    if not cfg.select_markers:
        return np.arange(len(prof)), {}, None
    if not (cfg.choose_on_validation and validation is not None):
        sel, per_tissue = select_markers(prof, cfg, tissues)
        return sel, per_tissue, None
    beta, props = validation_mixtures(
        validation.sources,
        regions,
        tissues,
        validation.phase3,
        validation.coverage,
        cfg.n_val_mixtures,
        validation.seed,
    )
    return choose_markers(prof, cfg, tissues, beta, props, validation.call)


def build_reference(
    src: Sources,
    cfg: ReferenceConfig,
    atlas: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    validation: Validation | None = None,
) -> tuple[Reference, dict]:
    """:func:`build_references` without the all-region reference."""
    ref, record, _ = build_references(src, cfg, atlas, validation)
    return ref, record


def build_references(
    src: Sources,
    cfg: ReferenceConfig,
    atlas: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    validation: Validation | None = None,
) -> tuple[Reference, dict, Reference]:
    """Reference on marker regions plus the record of marker selection.

    ``src`` holds the *training* pure samples; with ``atlas`` = (values [R, T], region IDs,
    tissue names) the atlas columns are used instead, restricted to regions present in
    ``src`` (mixtures are drawn from those samples). With ``validation`` (and
    ``choose_on_validation``) the marker set is chosen on validation mixtures. The third
    value is the reference on every usable region (for NNLS on all regions).
    """
    if atlas is None:
        tissues = filter_tissues(sorted(set(src.tissues.tolist())), cfg)
        prof, usable = pooled_profiles(src, tissues, cfg.max_missing)
        regions = src.regions
        origin = "pure training samples"
        na_reason = (
            f"no call in a tissue's training samples, or more than reference.max_missing={cfg.max_missing:g} "
            "of them lack one"
        )
        dropped: list[Dropped | None] = []
    else:
        values, a_regions, a_tissues = atlas
        tissues = filter_tissues(list(a_tissues), cfg)
        cols = [list(a_tissues).index(t) for t in tissues]
        pos = {r: i for i, r in enumerate(src.regions.tolist())}
        rows = [i for i, r in enumerate(a_regions.tolist()) if r in pos]
        if len(rows) < 0.5 * len(a_regions):
            missing = [r for r in a_regions.tolist() if r not in pos][:5]
            raise ValueError(
                f"atlas {cfg.atlas}: only {len(rows)} of {len(a_regions)} regions occur in the "
                f"sample data; first missing: {missing}"
            )
        prof = values[np.ix_(rows, cols)]
        regions = a_regions[rows]
        usable = np.isfinite(prof).all(1)
        origin = f"atlas {cfg.atlas}"
        na_reason = f"an NA cell in a used tissue column of atlas {cfg.atlas}"
        dropped = [
            count_dropped(
                "deconv_reference",
                "atlas regions",
                f"not in the sample data (atlas {cfg.atlas})",
                [r for r in a_regions.tolist() if r not in pos],
            )
        ]
    dropped.append(count_dropped("deconv_reference", "regions", na_reason, np.asarray(regions)[~usable]))
    n_usable = int(usable.sum())
    if n_usable == 0:
        raise ValueError("no region has a reference value in every tissue")
    idx_usable = np.flatnonzero(usable)
    sel, per_tissue, chosen = _markers(prof[usable], np.asarray(regions)[usable], cfg, tissues, validation)
    idx = idx_usable[sel]
    ref = Reference(prof[idx], np.asarray(regions)[idx], np.asarray(tissues))
    record = {
        "origin": origin,
        "parameters": dataclasses.asdict(cfg),
        "n_regions_input": int(len(regions)),
        "n_regions_usable": n_usable,
        "n_markers": int(len(idx)),
        "tissues": list(tissues),
        "per_tissue": per_tissue,
        "condition_number": float(np.linalg.cond(ref.profiles)),
        "markers": ref.regions.tolist(),
        DROPPED_KEY: dropped_to_json(dropped),
    }
    if chosen is not None:
        record["chosen_on_validation"] = chosen
    all_ref = Reference(prof[idx_usable], np.asarray(regions)[idx_usable], np.asarray(tissues))
    logger.info(
        "reference from %s: %d tissues, %d markers of %d usable regions (condition number %.1f)",
        origin,
        len(tissues),
        len(idx),
        n_usable,
        record["condition_number"],
    )
    return ref, record, all_ref


def reference_dropped(markers_json: str | os.PathLike) -> list[Dropped]:
    """The regions the reference step dropped, from its record (``markers.json``)."""
    return read_dropped(
        read_json_file(markers_json, "deconv markers record").get(DROPPED_KEY, []), markers_json
    )


def load_reference(path: str | os.PathLike) -> Reference:
    values, regions, tissues = read_table(path, "reference")
    return Reference(values, regions, tissues)


def write_reference(
    sources: str | os.PathLike,
    atlas: str | os.PathLike | None,
    cfg: ReferenceConfig,
    out_reference: str | os.PathLike,
    out_markers: str | os.PathLike,
    out_all: str | os.PathLike | None = None,
    mixtures: dict | None = None,
    seed: int = 0,
    call: float = 0.01,
) -> None:
    """The reference of the training split's sources (or an atlas) and its marker record;
    ``out_all`` the reference on every usable region. With ``mixtures`` (the filled
    ``deconv.mixtures`` section, background resolved) markers are chosen on validation."""
    src = read_sources(sources)
    train = src.subset(src.splits == "train")
    atlas_table = read_table(atlas, "atlas") if atlas else None
    validation = (
        Validation(src, mixtures["phase3"], float(mixtures["coverage"]), seed, call) if mixtures else None
    )
    ref, record, all_ref = build_references(train, cfg, atlas_table, validation)
    write_table(out_reference, ref.profiles, ref.regions, ref.tissues)
    if out_all:
        write_table(out_all, all_ref.profiles, all_ref.regions, all_ref.tissues)
    atomic_write_json(out_markers, record)
