"""Send each sample to the model that reads its kind of data best.

On TCGA glioma folds no single tissue model is best everywhere (docs/tissue.md, round 25): the
masked single-layer model (discriminative, one weight per region) is ahead on complete, deep
samples by about half a point, the read-profile model (generative, per-read likelihoods) far
ahead on sparse or shallow ones.
A sample's kind of data is visible before it is classified: the fraction of the model's
regions it covers and its reads per covered region. The router places a sample at the nearest
point of a grid of (reads per region, fraction observed) in log space and sends it to the dense
model where that point lies in the dense model's corner of the grid (:func:`_best_corner`),
else to the sparse model. The corner is chosen on the validation split, degraded to each point
as the evaluation grid degrades the test split (:func:`genomelab.tissue.sparse.degrade`), by
the negative log-likelihood of the models' calibrated probabilities (a continuous score:
accuracy on ~90 validation samples moves in steps of 1%). Nothing here is fitted on test
samples, and nothing is fixed from one cohort: another cohort can route every point to one
model.

Torch-free: the routing table is read by the CPU summary and written into exported models.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from genomelab.tissue.sparse import SparsityConfig, degrade

logger = logging.getLogger(__name__)

SPARSE, DENSE = "sparse", "dense"
# The probability floor of the validation NLL (as the calibration's, a call at 0 costs 27.6 nats).
EPS = 1e-12


def sample_profile(means: np.ndarray, coverage: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(observed fraction [S], reads per observed region [S]) of means [S, R] (NaN =
    uncovered) and coverage [S, R]: the median coverage over the covered regions (0 where a
    sample covers none), so a few deep regions do not make a shallow sample look deep."""
    covered = np.isfinite(means) & (np.asarray(coverage) > 0)
    observed = covered.mean(1) if means.shape[1] else np.zeros(len(means))
    cov = np.where(covered, np.asarray(coverage, np.float64), np.nan)
    depth = np.zeros(len(means))
    some = covered.any(1)
    if some.any():
        depth[some] = np.nanmedian(cov[some], axis=1)
    return observed, depth


@dataclass
class Router:
    """Grid points (reads per region, fraction observed) and, for each, whether the dense
    model (True) or the sparse model (False) classifies the samples placed there."""

    points: list[tuple[float, float]]
    dense: list[bool]

    def __post_init__(self) -> None:
        if not self.points or len(self.points) != len(self.dense):
            raise ValueError(
                f"a router needs one choice per point, got {len(self.points)} / {len(self.dense)}"
            )

    def place(self, means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        """Index [S] of the point nearest each sample in (log depth, log observed fraction);
        samples covering nothing go to the shallowest, sparsest point."""
        observed, depth = sample_profile(means, coverage)
        pts = np.log(np.asarray(self.points, np.float64))  # [P, 2]
        at = np.stack([np.log(np.maximum(depth, 1e-3)), np.log(np.maximum(observed, 1e-6))], 1)  # [S, 2]
        return ((at[:, None, :] - pts[None]) ** 2).sum(-1).argmin(1)

    def route(self, means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        """bool [S]: True where the dense model classifies the sample."""
        return np.asarray(self.dense, bool)[self.place(means, coverage)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": [[float(d), float(f)] for d, f in self.points],
            "dense": [bool(x) for x in self.dense],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Router:
        return cls([(float(a), float(b)) for a, b in d["points"]], [bool(x) for x in d["dense"]])


def _nll(proba: np.ndarray, y: np.ndarray) -> float:
    return float(-np.log(np.clip(proba[np.arange(len(y)), y], EPS, 1.0)).mean())


def _best_corner(table: list[dict[str, Any]]) -> list[bool]:
    """The dense model's points: a corner of the grid (every point with at least a depth d* and
    an observed fraction f*, both grid values), or none, whichever gives the lowest validation
    NLL summed over the points; ties go to the smaller corner (none first).

    Why a corner and not each point on its own: on ~90 validation samples, one point's NLL
    difference is noisy, and choosing per point sent some sparse points of some folds to the
    masked model, which costs there (TCGA IDH-wt, 20 fold seeds: -0.18 accuracy points over
    the grid against the read-profile model alone, the corner -0.04; docs/tissue.md, round 25
    under "Results"). A model
    better on richer data is better on all richer data; the corner says so, and a sparse point
    joins the dense model only if every richer point does too."""
    best: list[bool] = [False] * len(table)
    best_cost = sum(r["sparse_nll"] for r in table)
    corners = [
        [r["depth"] >= d_min and r["observed"] >= f_min for r in table]
        for d_min, f_min in sorted({(r["depth"], r["observed"]) for r in table})
    ]
    # Smallest corners first, so that only a strictly lower cost takes a larger one.
    for inside in sorted(corners, key=sum):
        cost = sum(r["dense_nll"] if i else r["sparse_nll"] for r, i in zip(table, inside, strict=True))
        if cost < best_cost:
            best, best_cost = inside, cost
    return best


def fit_router(
    predict: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]],
    means: np.ndarray,
    coverage: np.ndarray,
    y: np.ndarray,
    sparsity: SparsityConfig,
    seed: int,
) -> tuple[Router, list[dict[str, Any]]]:
    """Choose the model per grid point on validation samples (means [n, R], coverage [n, R],
    y [n]); ``predict[SPARSE]`` and ``predict[DENSE]`` map (means, coverage) to calibrated
    probabilities [n, C]. The points are the evaluation grid's; without a grid, one point at
    the samples' own median depth and observed fraction. Ties go to the sparse model (it
    reads any input). Returns the router and one record per point (each model's NLL and
    accuracy there)."""
    if SPARSE not in predict or DENSE not in predict:
        raise ValueError(f"fit_router needs a {SPARSE!r} and a {DENSE!r} model, got {sorted(predict)}")
    if not len(y):
        raise ValueError("fit_router needs validation samples, the split has none")
    table = []
    points: list[tuple[float, float]] = []
    grid = sparsity.points()
    if grid:
        cases = []
        for i, (depth, frac) in enumerate(grid):
            # A stream of its own ([seed, i, 1]): the test grid draws with [seed, i].
            m, c = degrade(means, depth, frac, np.random.default_rng([seed, i, 1]))
            cases.append((float(depth), float(frac), m, c))
    else:
        observed, depth_of = sample_profile(means, coverage)
        cases = [
            (float(max(np.median(depth_of), 1.0)), float(max(np.median(observed), 1e-6)), means, coverage)
        ]
    for depth, frac, m, c in cases:
        rec: dict[str, Any] = {"depth": depth, "observed": frac}
        for role in (SPARSE, DENSE):
            p = predict[role](m, c)
            rec[f"{role}_nll"] = _nll(p, y)
            rec[f"{role}_accuracy"] = float((p.argmax(1) == y).mean())
        table.append(rec)
        points.append((depth, frac))
    dense = _best_corner(table)
    for rec, d in zip(table, dense, strict=True):
        rec["model"] = DENSE if d else SPARSE
    logger.info(
        "router: the dense model at %d of %d points: %s",
        sum(dense),
        len(dense),
        [p for p, d in zip(points, dense, strict=True) if d],
    )
    return Router(points, dense), table


def routed_proba(
    router: Router,
    predict: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]],
    means: np.ndarray,
    coverage: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities [S, C], dense [S] bool): each sample's from the model the router
    chose for it; each model sees only its own samples."""
    dense = router.route(means, coverage)
    out: np.ndarray | None = None
    for role, rows in ((SPARSE, ~dense), (DENSE, dense)):
        if rows.any():
            p = predict[role](means[rows], coverage[rows])
            if out is None:
                out = np.empty((len(means), p.shape[1]), np.float64)
            out[rows] = p
    if out is None:  # no samples
        out = predict[SPARSE](means, coverage)
    return out, dense
