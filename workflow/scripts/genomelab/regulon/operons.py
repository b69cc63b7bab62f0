"""Operon evaluation as the field reports it, next to the module's own per-strand figure.

Two views, both on the held-out blocks and for every method alike:

- **per bp, strands pooled**: a base pair is positive when it lies inside a multi-gene operon
  on either strand; a method's score for it is the larger of its two strand predictions
  (each 16-bp bin's value repeated over its base pairs). Knowing only which strand carries a
  gene no longer scores, unlike the per-strand 16-bp figure where every position on the
  non-coding strand is an easy negative.
- **adjacent same-strand gene pairs**: consecutive genes in genome order on the same strand
  (no gene in between on either strand); positive when both belong to the same operon.
  A track's pair score is its mean on that strand over the junction (the intergenic gap, or
  the overlap of overlapping genes). Classic rules score the same pairs: the intergenic
  distance (shorter = same operon; Salgado et al. 2000, PNAS 97:6652) as is, and as their
  log-likelihood ratio of distance classes fitted on the training pairs. That rule also gets
  a per-bp track of probabilities (each junction its pair's, each gene the chance that either
  of its two same-strand junctions joins it), so that the per-bp view has a baseline that knows the annotation too; the
  readouts below get the same per-bp track from their pair scores.

The pair-level readouts of the network (:class:`PairReadout`) are logistic regressions on its
operon output around each pair (the junction, and the flanks inside the two genes), alone and
with the distance log-likelihood, fitted on the *training* pairs from the network's output on
the training blocks and scored on the held-out pairs. Where the genes carry their
co-expression (several expression datasets: ``genomelab.regulon.data.add_coexpression``), a
third readout adds the two genes' log lengths and their co-expression, and the same features
without the network make a rule (COEXPRESSION_RULE), the strong simple baseline of that view.
The readouts that know the annotation fall back to it alone (FALLBACK_FEATURES) where the
network's track does not cover a pair's junction, as the rules score every pair.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from genomelab.regulon.metrics import binary_metrics
from genomelab.regulon.targets import TargetData
from genomelab.regulon.tracks import split_bin_mask

logger = logging.getLogger(__name__)

DISTANCE = "intergenic distance (Salgado 2000)"
DISTANCE_LL = "intergenic distance log-likelihood (train pairs)"
# The network's pair-level readouts (PairReadout), fitted on the training pairs.
PAIR_READOUT = "CNN pair readout (logistic, train pairs)"
COMBINED = "CNN pair readout + distance LL (logistic, train pairs)"
# With the genes' lengths and co-expression; fitted only where the genes carry co-expression.
COEXPRESSED = "CNN pair readout + distance LL + lengths + co-expression (logistic, train pairs)"
READOUTS = (PAIR_READOUT, COMBINED, COEXPRESSED)
# The same features without the network: the baseline of the co-expression readout.
COEXPRESSION_RULE = "distance LL + lengths + co-expression (logistic, train pairs)"
# Training pairs with co-expression below which neither is fitted.
MIN_COEXPRESSED_PAIRS = 20
# Flanks (bp) of a junction inside the two genes whose output the readout also reads.
FLANK_BP = 64
# Distance classes (bp) of the log-likelihood rule: fine around overlaps and short gaps,
# where operon pairs concentrate, coarse beyond.
_LL_EDGES = np.array([-np.inf, -20, -10, -1, 5, 10, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, np.inf])
PAIR_COLUMNS = ("upstream", "downstream", "strand", "lo", "hi", "distance", "same_operon", "block", "split")
# Features of the readouts, in column order (OperonReadout.to_dict records them).
NETWORK_FEATURES = ("logit_junction", "logit_upstream_flank", "logit_downstream_flank")
PAIR_FEATURES = ("log_length_upstream", "log_length_downstream", "coexpression_z", "coexpression_known")
FEATURES = {
    PAIR_READOUT: NETWORK_FEATURES,
    COMBINED: (*NETWORK_FEATURES, "distance_loglik"),
    COEXPRESSED: (*NETWORK_FEATURES, "distance_loglik", *PAIR_FEATURES),
}
RULE_FEATURES = ("distance_loglik", *PAIR_FEATURES)
# What the readouts that know the annotation fall back to where the network did not score a
# pair's junction (a pair reaching into blocks it was not run on, a region's edge): the same
# annotation features without the network's, fitted on the same training pairs.
FALLBACK_FEATURES = {COMBINED: ("distance_loglik",), COEXPRESSED: RULE_FEATURES}
READOUT_FORMAT = "genomelab.regulon.operon_readout"
# 2: the co-expression readout and the co-expression of the training genome's pairs;
# 3: the annotation fallbacks (FALLBACK_FEATURES). Versions 1 (two readouts) and 2 still
# read; without fallbacks a pair the network did not score stays NaN, as it did.
READOUT_VERSION = 3
READ_VERSIONS = (1, 2, 3)


@dataclass(frozen=True)
class TrackFrame:
    """Where a track [2, n_res] lies: bin ``i`` covers ``region_start + i * resolution_bp``."""

    region_start: int
    resolution_bp: int

    @classmethod
    def of(cls, frame: TrackFrame | TargetData) -> TrackFrame:
        if isinstance(frame, TrackFrame):
            return frame
        return cls(int(frame.region_start), int(frame.config.resolution_bp))


def gene_pairs(genes: pd.DataFrame) -> pd.DataFrame:
    """Adjacent same-strand pairs of ``genes`` (bnumber, start, end, strand, optional
    operon_id, optional next_bnumber / next_coexpression) in genome order, no gene of either
    strand between them: upstream, downstream (the genes' ``bnumber``), strand, lo, hi (the
    junction: gap, or overlap when ``distance`` < 0), distance, same_operon (False without an
    operon_id column), the two genes' lengths (``length_upstream``, ``length_downstream``, bp)
    and ``coexpression`` (the upstream gene's next_coexpression when its next_bnumber is the
    downstream gene; NaN otherwise or without those columns)."""
    g = genes.sort_values(["start", "end"]).reset_index(drop=True)
    a, b = g.iloc[:-1].reset_index(drop=True), g.iloc[1:].reset_index(drop=True)
    keep = (a["strand"] == b["strand"]).to_numpy()
    a, b = a[keep].reset_index(drop=True), b[keep].reset_index(drop=True)
    if "operon_id" in g.columns:
        oa, ob = a["operon_id"].astype(str).to_numpy(), b["operon_id"].astype(str).to_numpy()
        same = (oa == ob) & (oa != "") & (oa != "nan")
    else:
        same = np.zeros(len(a), dtype=bool)
    coexpression = np.full(len(a), np.nan)
    if {"next_bnumber", "next_coexpression"} <= set(g.columns):
        mine = a["next_bnumber"].astype(str).to_numpy() == b["bnumber"].astype(str).to_numpy()
        coexpression = np.where(mine, a["next_coexpression"].to_numpy(float), np.nan)
    return pd.DataFrame(
        {
            "upstream": a["bnumber"].to_numpy(),
            "downstream": b["bnumber"].to_numpy(),
            "strand": a["strand"].to_numpy(),
            "lo": np.minimum(a["end"].to_numpy(), b["start"].to_numpy()),
            "hi": np.maximum(a["end"].to_numpy(), b["start"].to_numpy()),
            "distance": (b["start"] - a["end"]).to_numpy(),
            "same_operon": same,
            "length_upstream": (a["end"] - a["start"]).to_numpy(),
            "length_downstream": (b["end"] - b["start"]).to_numpy(),
            "coexpression": coexpression,
        }
    )


def adjacent_pairs(genes: pd.DataFrame, data: TargetData, within_blocks: bool = True) -> pd.DataFrame:
    """Adjacent same-strand gene pairs inside the region, one row each (PAIR_COLUMNS).

    ``lo``/``hi``: the junction in genome coordinates (gap, or overlap when ``distance`` < 0);
    ``block``/``split``: the block holding the whole junction (pairs across a block border
    are left out, so no pair straddles two splits, unless ``within_blocks`` is False).
    """
    pairs = gene_pairs(genes[(genes["start"] >= data.region_start) & (genes["end"] <= data.region_end)])
    lo, hi = pairs["lo"].to_numpy(), pairs["hi"].to_numpy()
    bs = data.blocks
    idx = np.searchsorted(bs["start"].to_numpy(), lo, side="right") - 1
    ok = (idx >= 0) & (hi <= bs["end"].to_numpy()[np.clip(idx, 0, len(bs) - 1)])
    pairs["block"] = bs["block"].to_numpy()[np.clip(idx, 0, len(bs) - 1)]
    pairs["split"] = bs["split"].to_numpy()[np.clip(idx, 0, len(bs) - 1)]
    return (pairs[ok] if within_blocks else pairs).reset_index(drop=True)


def pair_scores(track: np.ndarray, pairs: pd.DataFrame, frame: TrackFrame | TargetData) -> np.ndarray:
    """Mean of ``track`` [2, n_res] over each pair's junction bins on its strand; [n_pairs].
    NaN where a bin of the junction is NaN or outside the track (nothing predicted there)."""
    f = TrackFrame.of(frame)
    r, n_res = f.resolution_bp, track.shape[1]
    first = (pairs["lo"].to_numpy() - f.region_start) // r
    last = np.maximum(-(-(pairs["hi"].to_numpy() - f.region_start) // r), first + 1)
    inside = (first >= 0) & (last <= n_res)
    first, last = np.clip(first, 0, n_res), np.clip(last, 0, n_res)
    row = (pairs["strand"].to_numpy() == "-").astype(int)
    vals = np.nan_to_num(track, nan=0.0).astype(np.float64)
    seen = np.isfinite(track).astype(np.float64)
    csum = np.concatenate([np.zeros((2, 1)), np.cumsum(vals, axis=1)], axis=1)
    cseen = np.concatenate([np.zeros((2, 1)), np.cumsum(seen, axis=1)], axis=1)
    n = cseen[row, last] - cseen[row, first]
    full = inside & (n == (last - first))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(full, (csum[row, last] - csum[row, first]) / np.maximum(n, 1), np.nan)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def pair_features(track: np.ndarray, pairs: pd.DataFrame, frame: TrackFrame | TargetData) -> np.ndarray:
    """The readout's features [n_pairs, 3] (NETWORK_FEATURES) from an operon probability
    track [2, n_res]: logits of the mean over the junction and over ``FLANK_BP`` on each side
    of it (the ends of the two genes); NaN where the track does not cover the junction."""
    lo, hi = pairs["lo"].to_numpy(), pairs["hi"].to_numpy()
    left = pairs.assign(lo=lo - FLANK_BP, hi=lo)
    right = pairs.assign(lo=hi, hi=hi + FLANK_BP)
    mid, *flanks = (pair_scores(track, p, frame) for p in (pairs, left, right))
    # A flank past the predicted windows (a block's or the region's end) reads as the
    # junction, so that every pair the junction covers is scored: the rules and the readouts
    # score the same pairs, and a region predicted alone scores as it did inside the genome.
    return _logit(np.column_stack([mid, *(np.where(np.isnan(f), mid, f) for f in flanks)]))


def distance_class(distance: np.ndarray) -> np.ndarray:
    """The distance class (index into a ``distance_loglik`` table) of intergenic distances [n]."""
    return np.digitize(np.asarray(distance), _LL_EDGES[1:-1])


def distance_loglik(train: pd.DataFrame) -> np.ndarray:
    """Per distance class, log P(class | same operon) - log P(class | not), add-one smoothed."""
    cls = distance_class(train["distance"].to_numpy())
    k = len(_LL_EDGES) - 1
    pos = np.bincount(cls[train["same_operon"].to_numpy()], minlength=k) + 1.0
    neg = np.bincount(cls[~train["same_operon"].to_numpy()], minlength=k) + 1.0
    return np.log(pos / pos.sum()) - np.log(neg / neg.sum())


def annotation_features(pairs: pd.DataFrame, loglik: np.ndarray) -> np.ndarray:
    """RULE_FEATURES [n_pairs, 5]: the distance LL under ``loglik``, the two genes' log
    lengths, the co-expression (0 where unknown) and whether it is known."""
    ll = loglik[distance_class(pairs["distance"].to_numpy())]
    lengths = np.log(np.maximum(pairs[["length_upstream", "length_downstream"]].to_numpy(float), 1.0))
    z = pairs["coexpression"].to_numpy(float)
    known = np.isfinite(z)
    return np.column_stack([ll, lengths, np.where(known, z, 0.0), known.astype(float)])


def _sigmoid(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


@dataclass
class PairReadout:
    """A logistic regression on standardised pair features, as plain parameters: the
    decision value of features x [n, k] is ``((x - mean) / scale) @ coef + intercept``."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    n_train: int

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray) -> PairReadout:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
        scaler, lr = model[0], model[1]
        return cls(
            scaler.mean_.copy(), scaler.scale_.copy(), lr.coef_[0].copy(), float(lr.intercept_[0]), len(y)
        )

    def score(self, x: np.ndarray) -> np.ndarray:
        """Decision values [n] (NaN where a feature is missing)."""
        ok = np.isfinite(x).all(axis=1)
        out = np.full(len(x), np.nan)
        if ok.any():
            out[ok] = ((x[ok] - self.mean) / self.scale) @ self.coef + self.intercept
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "coef": self.coef.tolist(),
            "intercept": self.intercept,
            "n_train": int(self.n_train),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PairReadout:
        arrays = {k: np.asarray(d[k], dtype=np.float64) for k in ("mean", "scale", "coef")}
        return cls(**arrays, intercept=float(d["intercept"]), n_train=int(d["n_train"]))


@dataclass
class OperonReadout:
    """The fitted pair readouts of one network (READOUTS) with what scoring needs: the
    distance log-likelihood per class (COMBINED's fourth feature) and the feature layout.
    Plain values only (``to_dict``), so it travels in the exported model's ``extra``."""

    readouts: dict[str, PairReadout]
    loglik: np.ndarray  # [len(_LL_EDGES) - 1]
    n_train_pairs: int
    n_train_positive: int
    # With COEXPRESSED: the co-expression of the training genome's adjacent pairs, by
    # (upstream, downstream) gene ID (NaN for a pair without one), so that prediction on that
    # genome's genes scores every pair as evaluation does.
    coexpression: dict[tuple[str, str], float] = field(default_factory=dict)
    # Per readout of FALLBACK_FEATURES: its annotation-only fallback (see there).
    fallbacks: dict[str, PairReadout] = field(default_factory=dict)

    def distance_ll(self, distance: np.ndarray) -> np.ndarray:
        return self.loglik[distance_class(distance)]

    def with_coexpression(
        self, pairs: pd.DataFrame, upstream: pd.Series, downstream: pd.Series
    ) -> pd.DataFrame:
        """``pairs`` with ``coexpression`` from the saved pairs, matched by the genes' IDs
        ``upstream``, ``downstream`` [n_pairs] (NaN for a pair the training genome lacks or
        has without one), and ``training_pair``: whether the training genome has the pair (the
        pairs the co-expression readout scores, with ``coexpression_known`` 0 where NaN)."""
        keys = [(str(u), str(d)) for u, d in zip(upstream, downstream, strict=True)]
        z = [self.coexpression.get(k, np.nan) for k in keys]
        return pairs.assign(
            coexpression=np.asarray(z, dtype=float),
            training_pair=np.asarray([k in self.coexpression for k in keys], dtype=bool),
        )

    def features(
        self, track: np.ndarray, pairs: pd.DataFrame, frame: TrackFrame | TargetData, name: str
    ) -> np.ndarray:
        """Features [n_pairs, len(FEATURES[name])] of ``pairs`` under the operon ``track``."""
        x = pair_features(track, pairs, frame)
        if name == COMBINED:
            x = np.column_stack([x, self.distance_ll(pairs["distance"].to_numpy())])
        elif name == COEXPRESSED:
            x = np.column_stack([x, annotation_features(pairs, self.loglik)])
        return x

    def annotation(self, pairs: pd.DataFrame, name: str) -> np.ndarray:
        """The fallback's features [n_pairs, len(FALLBACK_FEATURES[name])] of ``pairs``."""
        if name == COMBINED:
            return self.distance_ll(pairs["distance"].to_numpy())[:, None]
        return annotation_features(pairs, self.loglik)

    def score(
        self, track: np.ndarray, pairs: pd.DataFrame, frame: TrackFrame | TargetData, name: str
    ) -> np.ndarray:
        """Decision values [n_pairs] of readout ``name``. Where the track misses a pair's
        junction: the readout's annotation fallback, where it has one (else NaN)."""
        out = self.readouts[name].score(self.features(track, pairs, frame, name))
        missed = np.isnan(out)
        if name in self.fallbacks and missed.any():
            out[missed] = self.fallbacks[name].score(self.annotation(pairs[missed], name))
        return out

    def probability(
        self, track: np.ndarray, pairs: pd.DataFrame, frame: TrackFrame | TargetData, name: str = COMBINED
    ) -> np.ndarray:
        """P(same operon) [n_pairs] of readout ``name``: the logistic of its decision value."""
        return _sigmoid(self.score(track, pairs, frame, name))

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": READOUT_FORMAT,
            "version": READOUT_VERSION,
            "flank_bp": FLANK_BP,
            "distance_edges_bp": _LL_EDGES[1:-1].tolist(),
            "distance_loglik": self.loglik.tolist(),
            "features": {name: list(FEATURES[name]) for name in self.readouts},
            "readouts": {name: r.to_dict() for name, r in self.readouts.items()},
            "fallback_features": {name: list(FALLBACK_FEATURES[name]) for name in self.fallbacks},
            "fallbacks": {name: r.to_dict() for name, r in self.fallbacks.items()},
            "n_train_pairs": int(self.n_train_pairs),
            "n_train_positive": int(self.n_train_positive),
            "coexpression": {
                "upstream": [u for u, _ in self.coexpression],
                "downstream": [d for _, d in self.coexpression],
                # null: a pair without co-expression (JSON has no NaN).
                "z": [float(z) if np.isfinite(z) else None for z in self.coexpression.values()],
            },
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "the operon readout") -> OperonReadout:
        """The readout of ``to_dict`` output; one made with another layout is refused
        (``where`` names the file in the error)."""
        layout = (d.get("format"), d.get("version"), d.get("flank_bp"), d.get("distance_edges_bp"))
        want = (READOUT_FORMAT, FLANK_BP, _LL_EDGES[1:-1].tolist())
        if (
            (layout[0], *layout[2:]) != want
            or layout[1] not in READ_VERSIONS
            or any(list(FEATURES.get(n, ())) != f for n, f in d.get("features", {}).items())
            or any(list(FALLBACK_FEATURES.get(n, ())) != f for n, f in d.get("fallback_features", {}).items())
            or set(d.get("fallbacks", {})) != set(d.get("fallback_features", {}))
        ):
            raise ValueError(
                f"{where}: operon readout of another layout (format, version, flank_bp, distance "
                f"edges {layout[:3]}; this genomelab reads {READOUT_FORMAT} versions {READ_VERSIONS}, "
                f"flank {FLANK_BP} with features {FEATURES})"
            )
        co = d.get("coexpression") or {"upstream": [], "downstream": [], "z": []}
        return cls(
            {name: PairReadout.from_dict(r) for name, r in d["readouts"].items()},
            np.asarray(d["distance_loglik"], dtype=np.float64),
            int(d["n_train_pairs"]),
            int(d["n_train_positive"]),
            {
                (str(u), str(v)): np.nan if z is None else float(z)
                for u, v, z in zip(co["upstream"], co["downstream"], co["z"], strict=True)
            },
            {name: PairReadout.from_dict(r) for name, r in d.get("fallbacks", {}).items()},
        )


def split_pairs(pairs: pd.DataFrame, data: TargetData, split: str, block: int | None = None) -> pd.DataFrame:
    """Pairs of ``split`` (one ``block``) whose whole junction lies in its windows, so the
    rules and the tracks score the same pairs."""
    p = pairs[pairs["split"] == split]
    if block is not None:
        p = p[p["block"] == block]
    covered = split_bin_mask(data, split, data.config.resolution_bp).astype(np.float32)
    inside = pair_scores(np.stack([covered, covered]), p, data)
    return p[inside == 1.0]


def fit_readout(data: TargetData, genes: pd.DataFrame, train_track: np.ndarray) -> OperonReadout | None:
    """READOUTS fitted on the training pairs that ``train_track`` [2, n_res] (the network on
    the training blocks) scores, with the distance LL of those pairs; None without training
    pairs of both classes."""
    train = split_pairs(adjacent_pairs(genes, data), data, "train")
    loglik = distance_loglik(train)
    y = train["same_operon"].to_numpy()
    found = OperonReadout({}, loglik, len(train), int(y.sum()))
    for name in READOUTS:
        if name == COEXPRESSED and not coexpression_fits(train):
            known = np.isfinite(train["coexpression"].to_numpy(float)) if "coexpression" in train else []
            logger.info(
                "co-expression readout not fitted: %d of %d training pairs have a co-expression "
                "(needs %d, of both classes; data_report.json's coexpression says why)",
                int(np.sum(known)),
                len(train),
                MIN_COEXPRESSED_PAIRS,
            )
            continue
        x = found.features(train_track, train, data, name)
        ok = np.isfinite(x).all(axis=1)
        if len(np.unique(y[ok])) < 2:
            return None
        found.readouts[name] = PairReadout.fit(x[ok], y[ok])
        # On the same pairs, so that the fallback is the readout without the network.
        fit_fallbacks(found, train[ok], (name,))
    if COEXPRESSED in found.readouts:
        # Every pair, those without co-expression too: the readout scores them (flag 0) in the
        # evaluation, and prediction on this genome's genes scores them alike.
        every = gene_pairs(genes)
        found.coexpression = {
            (str(u), str(d)): float(z)
            for u, d, z in zip(every["upstream"], every["downstream"], every["coexpression"], strict=True)
        }
    return found


def fit_fallbacks(readout: OperonReadout, train: pd.DataFrame, names: tuple[str, ...] | None = None) -> None:
    """Fit the annotation fallback (FALLBACK_FEATURES) of each of ``readout``'s readouts in
    ``names`` (default: all) that has one, on the training pairs ``train``."""
    y = train["same_operon"].to_numpy()
    for name in names if names is not None else tuple(readout.readouts):
        if name in FALLBACK_FEATURES and name in readout.readouts:
            readout.fallbacks[name] = PairReadout.fit(readout.annotation(train, name), y)


def coexpression_fits(train: pd.DataFrame) -> bool:
    """Whether the training pairs carry enough co-expression (MIN_COEXPRESSED_PAIRS, both
    classes among them) to fit the co-expression readout and rule."""
    known = (
        np.isfinite(train["coexpression"].to_numpy(float)) if "coexpression" in train else np.zeros(0, bool)
    )
    return (
        int(known.sum()) >= MIN_COEXPRESSED_PAIRS
        and len(np.unique(train["same_operon"].to_numpy()[known])) == 2
    )


def gene_scores(values: np.ndarray, pairs: pd.DataFrame, combine: str = "any") -> pd.Series:
    """Each gene's score (indexed by b-number) from the scores ``values`` [n_pairs] (no NaN)
    of its same-strand neighbour pairs: the larger of the two (``"max"``) or, for
    probabilities, 1 - prod(1 - p) (``"any"``: joined to at least one neighbour). Genes
    without a pair are absent."""
    ends = pd.concat([pd.DataFrame({"bnumber": pairs[c], "v": values}) for c in ("upstream", "downstream")])
    if combine == "max":
        return ends.groupby("bnumber")["v"].max()
    if ((ends["v"] < 0) | (ends["v"] > 1)).any():
        raise ValueError("pair_track: combine='any' needs probabilities in [0, 1]")
    # log(1 - p) summed per gene; p = 1 gives -inf and so a gene probability of 1.
    with np.errstate(divide="ignore"):
        ends = ends.assign(v=np.log1p(-ends["v"].to_numpy()))
    return -np.expm1(ends.groupby("bnumber")["v"].sum())


def pair_track(
    values: np.ndarray,
    pairs: pd.DataFrame,
    genes: pd.DataFrame,
    region: tuple[int, int],
    resolution_bp: int,
    floor: float | None = None,
    combine: str = "max",
) -> np.ndarray:
    """A per-position track [2, (end - start) // resolution_bp] of ``region`` = (start, end)
    from one score per pair (``values`` [n_pairs]; NaN = not scored): a junction's bins take
    its pair's score, a gene's bins the combination of its same-strand neighbour pairs' scores,
    the rest (and genes without a scored neighbour pair) ``floor`` (default: one below the
    lowest score; 0 with ``combine="any"``). ``combine``: ``"max"`` (the best of the two; any score scale) or ``"any"``
    (scores are P(same operon): 1 - prod(1 - p), the probability that the gene is joined to
    at least one neighbour, i.e. lies in a multi-gene operon, if the two junctions are
    independent). Genes and junctions reaching past the region are clipped to it."""
    if combine not in ("max", "any"):
        raise ValueError(f"pair_track: combine must be 'max' or 'any', not {combine!r}")
    start, end = region
    r = resolution_bp
    values = np.asarray(values, dtype=float)
    if floor is None and combine == "any":
        floor = 0.0  # probabilities: "not joined"
    elif floor is None:
        floor = float(np.nanmin(values)) - 1.0 if np.isfinite(values).any() else 0.0
    values = np.where(np.isfinite(values), values, floor)
    best = gene_scores(values, pairs, combine)
    n = (end - start) // r
    track = np.full((2, n), floor)
    spans = [
        (genes["start"].to_numpy(), genes["end"].to_numpy(), genes["strand"].to_numpy(),
         genes["bnumber"].map(best).fillna(floor).to_numpy()),
        (pairs["lo"].to_numpy(), pairs["hi"].to_numpy(), pairs["strand"].to_numpy(), values),
    ]  # fmt: skip
    for lo, hi, strand, value in spans:
        first = (lo - start) // r
        last = np.clip(np.maximum(-(-(hi - start) // r), first + 1), 0, n)
        first = np.clip(first, 0, n)
        for a, b, st, v in zip(first, last, strand, value, strict=True):
            row = int(st == "-")
            track[row, a:b] = np.maximum(track[row, a:b], v)
    return track.astype(np.float32)


class OperonEvaluation:
    """Pooled per-bp and adjacent-pair operon metrics of tracks on the blocks of a split."""

    def __init__(self, data: TargetData, genes: pd.DataFrame) -> None:
        self.data = data
        _, operon_bp = data.bp_tracks()
        self.operon_any = operon_bp.astype(bool).any(axis=0)  # [n_bp]
        self.pairs = adjacent_pairs(genes, data)
        self.loglik = distance_loglik(self.pairs[self.pairs["split"] == "train"])
        self.readout: OperonReadout | None = None
        self.readout_track: np.ndarray | None = None
        # Per-bp tracks of the pair scorers: the LL rule (annotation-aware, like a model
        # with annotation channels) and, once fitted, each readout.
        d = data
        self.region_genes = genes[(genes["start"] >= d.region_start) & (genes["end"] <= d.region_end)]
        self.all_pairs = adjacent_pairs(self.region_genes, data, within_blocks=False)
        # The rule as a probability (train-pair prior odds x the class's likelihood ratio), so
        # its per-bp track combines the two junctions of a gene as the readouts' tracks do.
        train = self.pairs[self.pairs["split"] == "train"]["same_operon"].to_numpy()
        self.prior_logit = float(np.log((train.sum() + 1.0) / ((~train).sum() + 1.0)))
        rule_p = _sigmoid(self.distance_ll(self.all_pairs["distance"].to_numpy()) + self.prior_logit)
        self.rule_track = self._pair_track(rule_p, floor=0.0)
        self.readout_bp_tracks: dict[str, np.ndarray] = {}
        # With co-expression: the rule on the distance LL, lengths and co-expression, fitted on
        # the training pairs as the LL is, and its per-bp track.
        train_pairs = self.pairs[self.pairs["split"] == "train"]
        self.coexpression_rule: PairReadout | None = None
        if coexpression_fits(train_pairs):
            x = annotation_features(train_pairs, self.loglik)
            self.coexpression_rule = PairReadout.fit(x, train_pairs["same_operon"].to_numpy())
            p = _sigmoid(self.coexpression_rule.score(annotation_features(self.all_pairs, self.loglik)))
            self.coexpression_rule_track = self._pair_track(p, floor=0.0)

    @property
    def readouts(self) -> dict[str, PairReadout]:
        return {} if self.readout is None else self.readout.readouts

    def fit_readouts(self, track: np.ndarray, train_track: np.ndarray) -> bool:
        """Fit READOUTS (:func:`fit_readout`) on the training pairs that ``train_track``
        [2, n_res] (the network on the training blocks) scores; held-out pairs are then
        scored from ``track``. False (and no readout rows) without training pairs of both
        classes."""
        found = fit_readout(self.data, self.region_genes, train_track)
        if found is None:
            self.readout, self.readout_bp_tracks = None, {}
            return False
        self.use_readout(found, track)
        return True

    def use_readout(self, readout: OperonReadout, track: np.ndarray) -> None:
        """Score with a fitted ``readout`` (one saved by training) over the network's ``track``
        [2, n_res]; its per-bp tracks are probabilities, 0 away from scored genes and
        junctions, as prediction writes them."""
        self.readout, self.readout_track = readout, track
        self.readout_bp_tracks = {
            name: self._pair_track(readout.probability(track, self.all_pairs, self.data, name))
            for name in readout.readouts
        }

    def _pair_track(self, values: np.ndarray, floor: float = 0.0) -> np.ndarray:
        """:func:`pair_track` over the region from P(same operon) [n_pairs] of ``all_pairs``
        (genes combine their two junctions as ``combine="any"``)."""
        d = self.data
        return pair_track(
            values,
            self.all_pairs,
            self.region_genes,
            (d.region_start, d.region_end),
            d.config.resolution_bp,
            floor,
            combine="any",
        )

    def _bp_mask(self, split: str, block: int | None) -> np.ndarray:
        """[n_bp] the base pairs of the ``split`` windows (every method is scored on these)."""
        r = self.data.config.resolution_bp
        return np.repeat(split_bin_mask(self.data, split, r, block), r)[: self.operon_any.size]

    def _pairs(self, split: str, block: int | None) -> pd.DataFrame:
        return split_pairs(self.pairs, self.data, split, block)

    def track_metrics(self, track: np.ndarray, split: str, block: int | None = None) -> dict[str, float]:
        """operon_bp_* (pooled strands, per bp) and pair_* metrics of an operon track [2, n_res]."""
        r = self.data.config.resolution_bp
        mask = self._bp_mask(split, block)
        pooled = np.fmax(track[0], track[1])  # NaN only where neither strand was predicted
        score = np.repeat(pooled, r)[: mask.size]
        out = {f"operon_bp_{k}": v for k, v in binary_metrics(score[mask], self.operon_any[mask]).items()}
        pairs = self._pairs(split, block)
        pm = binary_metrics(pair_scores(track, pairs, self.data), pairs["same_operon"].to_numpy(float))
        return out | {f"pair_{k}": v for k, v in pm.items()}

    def distance_ll(self, distance: np.ndarray) -> np.ndarray:
        """The train-pair log-likelihood rule's score of intergenic distances [n]."""
        return self.loglik[distance_class(distance)]

    def rule_metrics(self, split: str, block: int | None = None) -> dict[str, dict[str, float]]:
        """pair_* metrics of the distance rules (and the co-expression rule, where fitted) and
        the fitted readouts on the same pairs, and operon_bp_* of their per-bp tracks
        (``_pair_track``)."""
        pairs = self._pairs(split, block)
        y = pairs["same_operon"].to_numpy(float)
        d = pairs["distance"].to_numpy()
        ll = self.distance_ll(d)
        # The LL rule also per bp (its annotation-aware track), scored like any track.
        out = {
            DISTANCE: {f"pair_{k}": v for k, v in binary_metrics(-d.astype(float), y).items()},
            DISTANCE_LL: {f"pair_{k}": v for k, v in binary_metrics(ll, y).items()}
            | self._bp_metrics(self.rule_track, split, block),
        }
        if self.coexpression_rule is not None:
            score = self.coexpression_rule.score(annotation_features(pairs, self.loglik))
            out[COEXPRESSION_RULE] = {
                f"pair_{k}": v for k, v in binary_metrics(score, y).items()
            } | self._bp_metrics(self.coexpression_rule_track, split, block)
        for name in self.readouts:
            score = self.readout.score(self.readout_track, pairs, self.data, name)
            out[name] = {f"pair_{k}": v for k, v in binary_metrics(score, y).items()} | self._bp_metrics(
                self.readout_bp_tracks[name], split, block
            )
        return out

    def pair_probabilities(self, split: str, name: str = COMBINED) -> pd.DataFrame:
        """The ``split`` pairs the metrics score, with ``probability``: P(same operon) of the
        fitted readout ``name`` (what ``genomelab predict regulon`` writes for them)."""
        pairs = self._pairs(split, None)
        if self.readout is None:
            raise ValueError("no pair readout fitted or given")
        return pairs.assign(probability=self.readout.probability(self.readout_track, pairs, self.data, name))

    def _bp_metrics(self, track: np.ndarray, split: str, block: int | None) -> dict[str, float]:
        return {k: v for k, v in self.track_metrics(track, split, block).items() if k.startswith("operon_bp")}
