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

UXM-style markers (``marker_method`` uxm or both; Loyfer et al. 2023, wgbstools
``find_markers``) compare a region's *unmethylated level* in the target with the other
tissues' mean (``uxm_delta_means``, 0.3) and with their ``uxm_bg_quant`` quantile on the far
side (``uxm_delta_quants``, 0.0), hypo (U) and hyper (M) per tissue, top ``uxm_top_hypo``
(25, UXM's U25 atlas) / ``uxm_top_hyper`` by delta_means (:func:`select_markers_uxm`). An
atlas of U fractions (``values: u_fraction``, UXM's atlases) is read on the methylated scale
as 1 - U for every selection, so its hypomethylated blocks are hypo markers.

With ``choose_on_validation`` the marker set is chosen on validation mixtures (phase-3 law,
drawn from the *validation* individuals on every usable region) among the configured counts
scaled by :data:`MARKER_SCALES` (MethAtlas) and :data:`UXM_SCALES` (UXM) and *all usable regions*: the one with the lowest NNLS MAE
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
# Multiples of uxm_top_* tried on validation: 25 -> 25, 50, 100, 250 (UXM's Markers.U250).
UXM_SCALES = (1.0, 2.0, 4.0, 10.0)
VALUE_KINDS = ("beta", "u_fraction")
MARKER_METHODS = ("methatlas", "uxm", "both")
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
    values: str = from_schema("deconv.reference.values")
    marker_method: str = from_schema("deconv.reference.marker_method")
    uxm_top_hypo: int = from_schema("deconv.reference.uxm_top_hypo")
    uxm_top_hyper: int = from_schema("deconv.reference.uxm_top_hyper")
    uxm_delta_means: float = from_schema("deconv.reference.uxm_delta_means")
    uxm_delta_quants: float = from_schema("deconv.reference.uxm_delta_quants")
    uxm_bg_quant: float = from_schema("deconv.reference.uxm_bg_quant")

    def __post_init__(self) -> None:
        for name in ("hypo_per_tissue", "hyper_per_tissue", "pairwise_per_tissue"):
            if getattr(self, name) < 0:
                raise ValueError(f"reference.{name} must be >= 0, not {getattr(self, name)}")
        if not 0 <= self.min_delta < 1:
            raise ValueError(f"reference.min_delta must be in [0, 1), not {self.min_delta}")
        if not 0 <= self.max_missing <= 1:
            raise ValueError(f"reference.max_missing must be in [0, 1], not {self.max_missing}")
        if self.values not in VALUE_KINDS:
            raise ValueError(f"reference.values must be one of {VALUE_KINDS}, not {self.values!r}")
        if self.marker_method not in MARKER_METHODS:
            raise ValueError(
                f"reference.marker_method must be one of {MARKER_METHODS}, not {self.marker_method!r}"
            )
        if min(self.uxm_top_hypo, self.uxm_top_hyper) < 0:
            raise ValueError("reference.uxm_top_hypo and uxm_top_hyper must be >= 0")
        if not 0 <= self.uxm_bg_quant <= 0.5:
            raise ValueError(f"reference.uxm_bg_quant must be in [0, 0.5], not {self.uxm_bg_quant}")
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


def methylation_scale(prof: np.ndarray, values: str) -> np.ndarray:
    """``prof`` [R, T] on the methylated scale: betas as they are, U fractions as 1 - U."""
    if values not in VALUE_KINDS:
        raise ValueError(f"reference.values must be one of {VALUE_KINDS}, not {values!r}")
    return 1.0 - prof if values == "u_fraction" else prof


def uxm_scores(meth: np.ndarray, t: int, bg_quant: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """For tissue ``t`` of ``meth`` [R, T] (methylated scale), per region [R] the
    ``(delta_means, delta_quants)`` of a hypo (U) and a hyper (M) marker, as wgbstools
    ``find_markers`` defines them on an atlas of one column per cell type.

    With ``u = 1 - meth`` (unmethylated level) and ``o`` the other tissues' columns:
    hypo: ``u_t - mean(u_o)`` and ``u_t - quantile(u_o, 1 - bg_quant)``;
    hyper: ``mean(u_o) - u_t`` and ``quantile(u_o, bg_quant) - u_t``.
    """
    u = 1.0 - meth
    others = np.delete(u, t, axis=1)
    mean_o = others.mean(1)
    return {
        "hypo": (u[:, t] - mean_o, u[:, t] - np.quantile(others, 1.0 - bg_quant, axis=1)),
        "hyper": (mean_o - u[:, t], np.quantile(others, bg_quant, axis=1) - u[:, t]),
    }


def select_markers_uxm(meth: np.ndarray, cfg: ReferenceConfig, tissues: list[str]) -> tuple[np.ndarray, dict]:
    """UXM-style markers (Loyfer et al. 2023; wgbstools ``find_markers``) of ``meth`` [R, T]
    (methylated scale, :func:`methylation_scale`): per tissue the ``uxm_top_hypo`` hypo and
    ``uxm_top_hyper`` hyper regions with the largest delta_means among those reaching
    ``uxm_delta_means`` and ``uxm_delta_quants`` (:func:`uxm_scores`). Sorted indices and a
    per-tissue record (counts found and kept)."""
    n_t = meth.shape[1]
    if n_t < 2:
        raise ValueError("marker selection needs at least two tissues")
    chosen: set[int] = set()
    per_tissue = {}
    tops = {"hypo": cfg.uxm_top_hypo, "hyper": cfg.uxm_top_hyper}
    for t, tissue in enumerate(tissues):
        rec = {}
        for kind, (d_means, d_quants) in uxm_scores(meth, t, cfg.uxm_bg_quant).items():
            ok = np.flatnonzero((d_means >= cfg.uxm_delta_means) & (d_quants >= cfg.uxm_delta_quants))
            keep = ok[np.argsort(-d_means[ok], kind="stable")[: tops[kind]]]
            chosen.update(int(i) for i in keep)
            rec[kind], rec[f"{kind}_passing"] = int(len(keep)), int(len(ok))
        per_tissue[tissue] = rec
    weak = [t for t, v in per_tissue.items() if v["hypo"] + v["hyper"] == 0]
    if weak:
        raise ValueError(
            f"no UXM-style marker reaches reference.uxm_delta_means={cfg.uxm_delta_means} for tissue(s) "
            f"{weak}; lower it or check reference.values ({cfg.values})"
        )
    return np.asarray(sorted(chosen), dtype=np.int64), per_tissue


def marker_candidates(
    prof: np.ndarray, cfg: ReferenceConfig, tissues: list[str]
) -> dict[str, tuple[np.ndarray, dict]]:
    """Marker sets of ``prof`` [R, T] (``cfg.values`` scale) tried on validation: the
    configured families (``marker_method``) at their scales, plus all regions."""
    meth = methylation_scale(prof, cfg.values)
    families = {
        "methatlas": (
            MARKER_SCALES,
            ("hypo_per_tissue", "hyper_per_tissue", "pairwise_per_tissue"),
            select_markers,
        ),
        "uxm": (UXM_SCALES, ("uxm_top_hypo", "uxm_top_hyper"), select_markers_uxm),
    }
    candidates: dict[str, tuple[np.ndarray, dict]] = {}
    for family, (scales, keys, select) in families.items():
        if cfg.marker_method not in (family, "both"):
            continue
        for scale in scales:
            c = dataclasses.replace(cfg, **{k: int(round(getattr(cfg, k) * scale)) for k in keys})
            name = (
                f"x{scale:g} markers"
                if family == "methatlas"
                else f"uxm top {c.uxm_top_hypo}+{c.uxm_top_hyper}"
            )
            try:
                candidates[name] = select(meth, c, tissues)
            except ValueError as exc:  # a tissue without markers at this size
                logger.info("marker candidate %s skipped: %s", name, exc)
    candidates[ALL_REGIONS] = (np.arange(len(prof)), {})
    return candidates


def fixed_markers(prof: np.ndarray, cfg: ReferenceConfig, tissues: list[str]) -> tuple[np.ndarray, dict]:
    """Markers of ``prof`` [R, T] (``cfg.values`` scale) without validation: UXM-style with
    ``marker_method: uxm``, else MethAtlas-style (``both`` names the candidates *validation*
    chooses among; without validation there is no choice to make)."""
    meth = methylation_scale(prof, cfg.values)
    if cfg.marker_method == "uxm":
        return select_markers_uxm(meth, cfg, tissues)
    return select_markers(meth, cfg, tissues)


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

    candidates = marker_candidates(prof, cfg, tissues)
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
    src: Sources,
    regions: np.ndarray,
    tissues: list[str],
    phase3: dict,
    coverage: float | tuple[float, float],
    n: int,
    seed: int,
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
    coverage: float | tuple[float, float]
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
        sel, per_tissue = fixed_markers(prof, cfg, tissues)
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
    atlas_subsample: int = 0,
) -> tuple[Reference, dict, Reference]:
    """Reference on marker regions plus the record of marker selection.

    ``src`` holds the *training* pure samples; with ``atlas`` = (values [R, T], region IDs,
    tissue names) the atlas columns are used instead, restricted to regions present in
    ``src`` (mixtures are drawn from those samples). With ``validation`` (and
    ``choose_on_validation``) the marker set is chosen on validation mixtures. The third
    value is the reference on every usable region (for NNLS on all regions).
    ``atlas_subsample`` > 0 says ``src`` was simulated from that many of the atlas's own
    regions (``deconv.simulate.atlas_regions``), so the atlas's other regions are absent by
    request, not because the atlas and the samples name regions differently.
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
        # Fewer than half the atlas's regions in the samples means the two name regions
        # differently (probe IDs against coordinates, another build), unless the samples were
        # simulated from a requested subsample of this very atlas.
        if len(rows) < 0.5 * len(a_regions) and not (atlas_subsample and len(rows) > 0):
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
        absent = np.array([r not in pos for r in a_regions.tolist()], dtype=bool)
        # Individuals simulated around the atlas (atlas-only training) are drawn from its
        # complete rows only: a row with an NA cell is absent from the samples because of
        # that NA, which is what the user has to fix, not a naming mismatch.
        incomplete = absent & ~np.isfinite(values).all(axis=1)
        dropped = [
            count_dropped(
                "deconv_reference",
                "atlas regions",
                f"an NA cell in atlas {cfg.atlas}, not in the sample data (an atlas-only run simulates "
                "its individuals from complete rows only)",
                a_regions[incomplete],
            ),
            count_dropped(
                "deconv_reference",
                "atlas regions",
                (
                    f"not drawn by deconv.simulate.atlas_regions={atlas_subsample} (atlas {cfg.atlas})"
                    if atlas_subsample
                    else f"not in the sample data (atlas {cfg.atlas})"
                ),
                a_regions[absent & ~incomplete],
            ),
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
    atlas_subsample: int = 0,
) -> None:
    """The reference of the training split's sources (or an atlas) and its marker record;
    ``out_all`` the reference on every usable region. With ``mixtures`` (the filled
    ``deconv.mixtures`` section, background resolved) markers are chosen on validation;
    ``atlas_subsample`` as in :func:`build_references`."""
    from genomelab.deconv.mixtures import coverage_of

    src = read_sources(sources)
    train = src.subset(src.splits == "train")
    atlas_table = read_table(atlas, "atlas") if atlas else None
    validation = (
        Validation(src, mixtures["phase3"], coverage_of(mixtures["coverage"]), seed, call)
        if mixtures
        else None
    )
    ref, record, all_ref = build_references(train, cfg, atlas_table, validation, atlas_subsample)
    write_table(out_reference, ref.profiles, ref.regions, ref.tissues)
    if out_all:
        write_table(out_all, all_ref.profiles, all_ref.regions, all_ref.tissues)
    atomic_write_json(out_markers, record)
