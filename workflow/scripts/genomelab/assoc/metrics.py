"""Filtered ranking metrics: Accuracy@K, MRR and bidirectional consistency.

Definitions (the same for the network and every baseline):

- Each evaluated query ranks all candidates of the other vocabulary. Known positives of
  other splits and masked candidates are removed first ("filtered" ranking), so a model
  is never punished for ranking a true link it was trained on above a held-out one.
- rank = 1 + (number of remaining negatives scored higher) + half the negatives scored
  equally (the expected rank under random tie-breaking; a constant scorer gets the middle).
- Accuracy@K of a query: 1 if its best-ranked held-out positive has rank <= K (hit@K).
  MRR: mean of 1 / that rank.
- Bidirectional consistency@K: over held-out links present in both directions, the
  fraction whose target is in the source's top K *and* whose source is in the target's
  top K, each ranked against negatives only.

Everything is vectorised over chunks of queries ([chunk, n_candidates] at a time), so
memory stays bounded for large vocabularies.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from genomelab.assoc.data import DIRECTIONS, MASKED, S2T, T2S, Links, SplitLabels, query_candidate

KS = (1, 3, 5, 10)
ScoreFn = Callable[[str, np.ndarray], np.ndarray]


def best_positive_ranks(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Filtered rank of each row's best-scored positive.

    scores, labels: [Q, C]; labels > 0 positives, == 0 negatives, MASKED ignored.
    Returns [Q] float ranks (NaN for rows without a positive).
    """
    pos = labels > 0
    neg = labels == 0
    best = np.where(pos, scores, -np.inf).max(axis=1, initial=-np.inf)
    greater = (neg & (scores > best[:, None])).sum(axis=1)
    ties = (neg & (scores == best[:, None])).sum(axis=1)
    ranks = 1.0 + greater + 0.5 * ties
    return np.where(pos.any(axis=1), ranks, np.nan)


def entry_ranks(scores: np.ndarray, labels: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Rank of candidate ``cols[i]`` in row ``i`` against that row's negatives. [Q] float."""
    rows = np.arange(len(cols))
    own = scores[rows, cols][:, None]
    neg = labels == 0
    neg[rows, cols] = False
    return 1.0 + (neg & (scores > own)).sum(axis=1) + 0.5 * (neg & (scores == own)).sum(axis=1)


def summarise_ranks(ranks: np.ndarray, ks: tuple[int, ...] = KS) -> dict[str, float]:
    ranks = ranks[np.isfinite(ranks)]
    if len(ranks) == 0:
        return {**{f"acc@{k}": float("nan") for k in ks}, "mrr": float("nan"), "n_queries": 0}
    out = {f"acc@{k}": float((ranks <= k).mean()) for k in ks}
    out["mrr"] = float((1.0 / ranks).mean())
    out["n_queries"] = int(len(ranks))
    return out


def _chunks(idx: np.ndarray, size: int):
    for start in range(0, len(idx), size):
        yield idx[start : start + size]


def direction_ranks(score_fn: ScoreFn, labels: SplitLabels, direction: str, chunk: int = 512) -> np.ndarray:
    """Best-positive ranks of every evaluated query of ``direction``. [n_queries]."""
    out = [
        best_positive_ranks(score_fn(direction, q), labels.dense_rows(direction, q))
        for q in _chunks(labels.queries[direction], chunk)
    ]
    return np.concatenate(out) if out else np.zeros(0)


def pair_ranks(
    score_fn: ScoreFn,
    labels: SplitLabels,
    direction: str,
    queries: np.ndarray,
    candidates: np.ndarray,
    chunk: int = 512,
) -> np.ndarray:
    """Rank of each (query, candidate) pair against the query's negatives. [n_pairs]."""
    ranks = np.zeros(len(queries))
    order = np.argsort(queries, kind="stable")
    uq, start = np.unique(queries[order], return_index=True)
    bounds = np.append(start, len(order))
    for c0 in range(0, len(uq), chunk):
        qs = uq[c0 : c0 + chunk]
        scores, lab = score_fn(direction, qs), labels.dense_rows(direction, qs)
        sel = order[bounds[c0] : bounds[min(c0 + chunk, len(uq))]]
        local = np.searchsorted(qs, queries[sel])
        ranks[sel] = entry_ranks(scores[local], lab[local], candidates[sel])
    return ranks


def consistency_pairs(links: Links, link_split: np.ndarray, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(source, target) index arrays of ``split`` links present in both directions."""
    keys = {}
    for d in DIRECTIONS:
        rows, _, _ = query_candidate(links, d)
        rows &= link_split == split
        keys[d] = set(zip(links.source[rows].tolist(), links.target[rows].tolist(), strict=True))
    pairs = sorted(keys[S2T] & keys[T2S])
    if not pairs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    arr = np.asarray(pairs, dtype=np.int64)
    return arr[:, 0], arr[:, 1]


def evaluate(
    score_fn: ScoreFn,
    labels: SplitLabels,
    links: Links,
    link_split: np.ndarray,
    ks: tuple[int, ...] = KS,
    consistency_k: int = 10,
    chunk: int = 512,
    ranks_out: dict[str, dict[str, list]] | None = None,
) -> dict[str, float]:
    """All metrics of one split: ``{dir}_acc@K``, ``{dir}_mrr``, ``mrr_mean``, ``consistency@K``.

    With ``ranks_out`` (a dict), also the per-query ranks behind them:
    ``ranks_out[dir] = {"query": [query index], "rank": [rank]}``, for paired tests.
    """
    metrics: dict[str, float] = {}
    for d in DIRECTIONS:
        ranks = direction_ranks(score_fn, labels, d, chunk)
        if ranks_out is not None:
            ranks_out[d] = {"query": labels.queries[d].tolist(), "rank": ranks.tolist()}
        for name, value in summarise_ranks(ranks, ks).items():
            metrics[f"{d}_{name}"] = value
    metrics["mrr_mean"] = (
        float(np.nanmean([metrics[f"{S2T}_mrr"], metrics[f"{T2S}_mrr"]]))
        if np.isfinite([metrics[f"{S2T}_mrr"], metrics[f"{T2S}_mrr"]]).any()
        else float("nan")
    )
    src, tgt = consistency_pairs(links, link_split, labels.split)
    if len(src):
        r_st = pair_ranks(score_fn, labels, S2T, src, tgt, chunk)
        r_ts = pair_ranks(score_fn, labels, T2S, tgt, src, chunk)
        metrics[f"consistency@{consistency_k}"] = float(
            ((r_st <= consistency_k) & (r_ts <= consistency_k)).mean()
        )
    else:
        metrics[f"consistency@{consistency_k}"] = float("nan")
    metrics["n_consistency_pairs"] = int(len(src))
    return metrics


def paired_reciprocal_ranks(
    model: dict[str, dict[str, list]], baseline: dict[str, dict[str, list]]
) -> tuple[np.ndarray, np.ndarray]:
    """Reciprocal ranks of two methods on the same queries, [n] each, matched by
    (direction, query) from two ``ranks_out`` records of :func:`evaluate`.

    Raises ``ValueError`` when the records do not hold the same queries (another split).
    """
    keyed = []
    for record in (model, baseline):
        keyed.append(
            {
                (d, int(q)): float(r)
                for d in DIRECTIONS
                for q, r in zip(
                    record.get(d, {}).get("query", []), record.get(d, {}).get("rank", []), strict=True
                )
                if np.isfinite(r)
            }
        )
    if set(keyed[0]) != set(keyed[1]):
        raise ValueError(
            f"paired test: the model ranked {len(keyed[0])} test queries and the baseline "
            f"{len(keyed[1])}, not the same ones (were they evaluated on the same split?)"
        )
    keys = sorted(keyed[0])
    return (
        1.0 / np.asarray([keyed[0][k] for k in keys]),
        1.0 / np.asarray([keyed[1][k] for k in keys]),
    )


__all__ = [
    "KS",
    "MASKED",
    "best_positive_ranks",
    "entry_ranks",
    "evaluate",
    "paired_reciprocal_ranks",
    "summarise_ranks",
]
