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
  a per-bp track (each gene scored by its best same-strand neighbour pair, each junction by
  its own pair), so that the per-bp view has a baseline that knows the annotation too; the
  readouts below get the same per-bp track from their pair scores.

The pair-level readouts of the network (:class:`PairReadout`) are logistic regressions on its
operon output around each pair (the junction, and the flanks inside the two genes), alone and
with the distance log-likelihood, fitted on the *training* pairs from the network's output on
the training blocks and scored on the held-out pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from genomelab.regulon.metrics import binary_metrics
from genomelab.regulon.targets import TargetData
from genomelab.regulon.tracks import split_bin_mask

DISTANCE = "intergenic distance (Salgado 2000)"
DISTANCE_LL = "intergenic distance log-likelihood (train pairs)"
# The network's pair-level readouts (PairReadout), fitted on the training pairs.
PAIR_READOUT = "CNN pair readout (logistic, train pairs)"
COMBINED = "CNN pair readout + distance LL (logistic, train pairs)"
READOUTS = (PAIR_READOUT, COMBINED)
# Flanks (bp) of a junction inside the two genes whose output the readout also reads.
FLANK_BP = 64
# Distance classes (bp) of the log-likelihood rule: fine around overlaps and short gaps,
# where operon pairs concentrate, coarse beyond.
_LL_EDGES = np.array([-np.inf, -20, -10, -1, 5, 10, 20, 30, 40, 50, 60, 80, 100, 150, 200, 300, np.inf])
PAIR_COLUMNS = ("upstream", "downstream", "strand", "lo", "hi", "distance", "same_operon", "block", "split")


def adjacent_pairs(genes: pd.DataFrame, data: TargetData, within_blocks: bool = True) -> pd.DataFrame:
    """Adjacent same-strand gene pairs inside the region, one row each (PAIR_COLUMNS).

    ``lo``/``hi``: the junction in genome coordinates (gap, or overlap when ``distance`` < 0);
    ``block``/``split``: the block holding the whole junction (pairs across a block border
    are left out, so no pair straddles two splits, unless ``within_blocks`` is False).
    """
    g = genes[(genes["start"] >= data.region_start) & (genes["end"] <= data.region_end)]
    g = g.sort_values(["start", "end"]).reset_index(drop=True)
    a, b = g.iloc[:-1].reset_index(drop=True), g.iloc[1:].reset_index(drop=True)
    keep = (a["strand"] == b["strand"]).to_numpy()
    a, b = a[keep].reset_index(drop=True), b[keep].reset_index(drop=True)
    distance = (b["start"] - a["end"]).to_numpy()
    lo = np.minimum(a["end"].to_numpy(), b["start"].to_numpy())
    hi = np.maximum(a["end"].to_numpy(), b["start"].to_numpy())
    oa, ob = a["operon_id"].astype(str).to_numpy(), b["operon_id"].astype(str).to_numpy()
    bs = data.blocks
    idx = np.searchsorted(bs["start"].to_numpy(), lo, side="right") - 1
    ok = (idx >= 0) & (hi <= bs["end"].to_numpy()[np.clip(idx, 0, len(bs) - 1)])
    pairs = pd.DataFrame(
        {
            "upstream": a["bnumber"].to_numpy(),
            "downstream": b["bnumber"].to_numpy(),
            "strand": a["strand"].to_numpy(),
            "lo": lo,
            "hi": hi,
            "distance": distance,
            "same_operon": (oa == ob) & (oa != "") & (oa != "nan"),
            "block": bs["block"].to_numpy()[np.clip(idx, 0, len(bs) - 1)],
            "split": bs["split"].to_numpy()[np.clip(idx, 0, len(bs) - 1)],
        }
    )
    return (pairs[ok] if within_blocks else pairs).reset_index(drop=True)


def pair_scores(track: np.ndarray, pairs: pd.DataFrame, data: TargetData) -> np.ndarray:
    """Mean of ``track`` [2, n_res] over each pair's junction bins on its strand; [n_pairs]."""
    r = data.config.resolution_bp
    first = (pairs["lo"].to_numpy() - data.region_start) // r
    last = np.maximum(-(-(pairs["hi"].to_numpy() - data.region_start) // r), first + 1)
    last = np.minimum(last, track.shape[1])
    row = (pairs["strand"].to_numpy() == "-").astype(int)
    vals = np.nan_to_num(track, nan=0.0).astype(np.float64)
    seen = np.isfinite(track).astype(np.float64)
    csum = np.concatenate([np.zeros((2, 1)), np.cumsum(vals, axis=1)], axis=1)
    cseen = np.concatenate([np.zeros((2, 1)), np.cumsum(seen, axis=1)], axis=1)
    n = cseen[row, last] - cseen[row, first]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n == (last - first), (csum[row, last] - csum[row, first]) / np.maximum(n, 1), np.nan)


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def pair_features(track: np.ndarray, pairs: pd.DataFrame, data: TargetData) -> np.ndarray:
    """The readout's features [n_pairs, 3] from an operon probability track [2, n_res]: logits
    of the mean over the junction and over ``FLANK_BP`` on each side of it (the ends of the two
    genes); NaN where the track does not cover them."""
    lo, hi = pairs["lo"].to_numpy(), pairs["hi"].to_numpy()
    left = pairs.assign(lo=np.maximum(lo - FLANK_BP, data.region_start), hi=lo)
    right = pairs.assign(lo=hi, hi=np.minimum(hi + FLANK_BP, data.region_end))
    mid, *flanks = (pair_scores(track, p, data) for p in (pairs, left, right))
    # A flank past the predicted windows (a block's end) reads as the junction, so that every
    # pair the junction covers is scored: the rules and the readouts score the same pairs.
    return _logit(np.column_stack([mid, *(np.where(np.isnan(f), mid, f) for f in flanks)]))


def distance_loglik(train: pd.DataFrame) -> np.ndarray:
    """Per distance class, log P(class | same operon) - log P(class | not), add-one smoothed."""
    cls = np.digitize(train["distance"].to_numpy(), _LL_EDGES[1:-1])
    k = len(_LL_EDGES) - 1
    pos = np.bincount(cls[train["same_operon"].to_numpy()], minlength=k) + 1.0
    neg = np.bincount(cls[~train["same_operon"].to_numpy()], minlength=k) + 1.0
    return np.log(pos / pos.sum()) - np.log(neg / neg.sum())


class PairReadout:
    """A logistic regression on pair features (standardised), fitted on labelled pairs."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
        self.n_train = len(y)

    def score(self, x: np.ndarray) -> np.ndarray:
        """Decision values [n] (NaN where a feature is missing)."""
        ok = np.isfinite(x).all(axis=1)
        out = np.full(len(x), np.nan)
        if ok.any():
            out[ok] = self.model.decision_function(x[ok])
        return out


class OperonEvaluation:
    """Pooled per-bp and adjacent-pair operon metrics of tracks on the blocks of a split."""

    def __init__(self, data: TargetData, genes: pd.DataFrame) -> None:
        self.data = data
        _, operon_bp = data.bp_tracks()
        self.operon_any = operon_bp.astype(bool).any(axis=0)  # [n_bp]
        self.pairs = adjacent_pairs(genes, data)
        self.loglik = distance_loglik(self.pairs[self.pairs["split"] == "train"])
        self.readouts: dict[str, PairReadout] = {}
        self.readout_track: np.ndarray | None = None
        # Per-bp tracks of the pair scorers: the LL rule (annotation-aware, like a model
        # with annotation channels) and, once fitted, each readout.
        d = data
        self.region_genes = genes[(genes["start"] >= d.region_start) & (genes["end"] <= d.region_end)]
        self.all_pairs = adjacent_pairs(self.region_genes, data, within_blocks=False)
        self.rule_track = self._pair_track(self.distance_ll(self.all_pairs["distance"].to_numpy()))
        self.readout_bp_tracks: dict[str, np.ndarray] = {}

    def _features(self, track: np.ndarray, pairs: pd.DataFrame, name: str) -> np.ndarray:
        x = pair_features(track, pairs, self.data)
        if name == COMBINED:
            x = np.column_stack([x, self.distance_ll(pairs["distance"].to_numpy())])
        return x

    def fit_readouts(self, track: np.ndarray, train_track: np.ndarray) -> bool:
        """Fit READOUTS on the training pairs that ``train_track`` [2, n_res] (the network on
        the training blocks) scores; held-out pairs are then scored from ``track``. False (and
        no readout rows) without training pairs of both classes."""
        train = self._pairs("train", None)
        y = train["same_operon"].to_numpy()
        for name in READOUTS:
            x = self._features(train_track, train, name)
            ok = np.isfinite(x).all(axis=1)
            if len(np.unique(y[ok])) < 2:
                self.readouts = {}
                return False
            self.readouts[name] = PairReadout(x[ok], y[ok])
            everywhere = self.readouts[name].score(self._features(track, self.all_pairs, name))
            self.readout_bp_tracks[name] = self._pair_track(everywhere)
        self.readout_track = track
        return True

    def _pair_track(self, values: np.ndarray) -> np.ndarray:
        """A per-position track [2, n_res] from one score per pair of ``all_pairs``: a gene's
        bins take the best score of its same-strand neighbour pairs, a junction's bins its
        pair's, the rest (and genes without a scored neighbour pair) one below the lowest."""
        d, r = self.data, self.data.config.resolution_bp
        values = np.asarray(values, dtype=float)
        floor = float(np.nanmin(values)) - 1.0 if np.isfinite(values).any() else 0.0
        values = np.where(np.isfinite(values), values, floor)
        pairs, g = self.all_pairs, self.region_genes
        best = (
            pd.concat([pd.DataFrame({"bnumber": pairs[c], "v": values}) for c in ("upstream", "downstream")])
            .groupby("bnumber")["v"]
            .max()
        )
        track = np.full((2, (d.region_end - d.region_start) // r), floor)
        spans = [
            (g["start"].to_numpy(), g["end"].to_numpy(), g["strand"].to_numpy(),
             g["bnumber"].map(best).fillna(floor).to_numpy()),
            (pairs["lo"].to_numpy(), pairs["hi"].to_numpy(), pairs["strand"].to_numpy(), values),
        ]  # fmt: skip
        for start, end, strand, value in spans:
            first = (start - d.region_start) // r
            last = np.maximum(-(-(end - d.region_start) // r), first + 1)
            for a, b, st, v in zip(first, last, strand, value, strict=True):
                row = int(st == "-")
                track[row, a:b] = np.maximum(track[row, a:b], v)
        return track.astype(np.float32)

    def _bp_mask(self, split: str, block: int | None) -> np.ndarray:
        """[n_bp] the base pairs of the ``split`` windows (every method is scored on these)."""
        r = self.data.config.resolution_bp
        return np.repeat(split_bin_mask(self.data, split, r, block), r)[: self.operon_any.size]

    def _pairs(self, split: str, block: int | None) -> pd.DataFrame:
        """Pairs of ``split`` (one ``block``) whose whole junction lies in its windows, so the
        rules and the tracks score the same pairs."""
        p = self.pairs[self.pairs["split"] == split]
        if block is not None:
            p = p[p["block"] == block]
        covered = split_bin_mask(self.data, split, self.data.config.resolution_bp).astype(np.float32)
        inside = pair_scores(np.stack([covered, covered]), p, self.data)
        return p[inside == 1.0]

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
        return self.loglik[np.digitize(np.asarray(distance), _LL_EDGES[1:-1])]

    def rule_metrics(self, split: str, block: int | None = None) -> dict[str, dict[str, float]]:
        """pair_* metrics of the distance rules and the fitted readouts on the same pairs, and
        operon_bp_* of their per-bp tracks (``_pair_track``)."""
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
        for name, readout in self.readouts.items():
            score = readout.score(self._features(self.readout_track, pairs, name))
            out[name] = {f"pair_{k}": v for k, v in binary_metrics(score, y).items()} | self._bp_metrics(
                self.readout_bp_tracks[name], split, block
            )
        return out

    def _bp_metrics(self, track: np.ndarray, split: str, block: int | None) -> dict[str, float]:
        return {k: v for k, v in self.track_metrics(track, split, block).items() if k.startswith("operon_bp")}
