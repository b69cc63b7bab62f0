"""Filtered ranking metrics: Accuracy@K, MRR and bidirectional consistency.

Definitions (the same for the network and every baseline):

- Each evaluated query ranks all candidates of the other vocabulary. Known positives of
  other splits and masked candidates are removed first ("filtered" ranking), so a model
  is never punished for ranking a true link it was trained on above a held-out one.
- rank = 1 + (number of remaining negatives scored higher) + half the negatives scored
  equally (the expected rank under random tie-breaking; a constant scorer gets the middle).
- Per-link metrics (the headline, as link-prediction papers report them): every held-out
  link of a direction is ranked on its own among its query's candidates, the query's other
  known positives (of any split) removed; ``{dir}_link_mrr`` is the mean of 1 / rank over
  links, ``{dir}_link_hits@K`` the share of links with rank <= K. A query with many
  held-out links counts once per link.
- Per-query metrics (best positive): Accuracy@K of a query is 1 if its best-ranked
  held-out positive has rank <= K (hit@K); ``{dir}_mrr`` is the mean over queries of 1 / that
  rank. It counts only each query's easiest link, so it reads higher than per-link MRR.
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
LINK_KS = (1, 3, 10)
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


def link_ranks(
    score_fn: ScoreFn,
    labels: SplitLabels,
    links: Links,
    link_split: np.ndarray,
    direction: str,
    chunk: int = 512,
) -> tuple[np.ndarray, np.ndarray]:
    """Filtered rank of every held-out link of ``direction`` in ``labels.split``.

    Only links whose query is evaluated in this split count (in the entities scheme, held-out
    queries). Returns (row indices into ``links`` [n], ranks [n])."""
    rows, q, c = query_candidate(links, direction)
    idx = np.flatnonzero(rows)
    keep = (link_split[idx] == labels.split) & np.isin(q, labels.queries[direction])
    idx, q, c = idx[keep], q[keep], c[keep]
    return idx, pair_ranks(score_fn, labels, direction, q, c, chunk)


def summarise_link_ranks(ranks: np.ndarray, prefix: str, ks: tuple[int, ...] = LINK_KS) -> dict[str, float]:
    """``{prefix}_mrr``, ``{prefix}_hits@K`` over per-link ranks [n]; NaN without links."""
    out: dict[str, float] = {f"{prefix}_mrr": float((1.0 / ranks).mean()) if len(ranks) else float("nan")}
    for k in ks:
        out[f"{prefix}_hits@{k}"] = float((ranks <= k).mean()) if len(ranks) else float("nan")
    return out


def _mean_of_directions(metrics: dict[str, float], name: str) -> float:
    values = np.asarray([metrics[f"{d}_{name}"] for d in DIRECTIONS], float)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


def _link_metrics(
    score_fn: ScoreFn,
    labels: SplitLabels,
    links: Links,
    link_split: np.ndarray,
    known: np.ndarray | None,
    chunk: int,
    ranks_out: dict[str, dict[str, list]] | None,
) -> dict[str, float]:
    """Per-link metrics of both directions (and on links not ``known``, when given)."""
    metrics: dict[str, float] = {}
    for d in DIRECTIONS:
        idx, ranks = link_ranks(score_fn, labels, links, link_split, d, chunk)
        metrics.update(summarise_link_ranks(ranks, f"{d}_link"))
        metrics[f"n_{d}_links"] = int(len(ranks))
        if known is not None:
            novel = ~known[idx]
            metrics.update(summarise_link_ranks(ranks[novel], f"{d}_novel_link"))
            metrics[f"n_{d}_novel_links"] = int(novel.sum())
        if ranks_out is not None:
            record = ranks_out.setdefault(d, {})
            record["link_row"], record["link_rank"] = idx.tolist(), ranks.tolist()
            if known is not None:
                record["link_known"] = known[idx].tolist()
    metrics["link_mrr_mean"] = _mean_of_directions(metrics, "link_mrr")
    if known is not None:
        metrics["novel_link_mrr_mean"] = _mean_of_directions(metrics, "novel_link_mrr")
    return metrics


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
    known: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of one split.

    Per link (the headline): ``{dir}_link_mrr``, ``{dir}_link_hits@K``, ``link_mrr_mean``;
    with ``known`` ([n_links] bool, links of the user's ``exclude_known`` source) the same as
    ``{dir}_novel_link_*`` on the other links. Per query (best positive): ``{dir}_acc@K``,
    ``{dir}_mrr``, ``mrr_mean``. And ``consistency@K``.

    With ``ranks_out`` (a dict), also the ranks behind them, for paired tests:
    ``ranks_out[dir] = {"query": [query index], "rank": [rank], "link_row": [row of links],
    "link_rank": [rank], "link_known": [bool] (with known)}``.
    """
    metrics: dict[str, float] = {}
    for d in DIRECTIONS:
        ranks = direction_ranks(score_fn, labels, d, chunk)
        if ranks_out is not None:
            ranks_out[d] = {"query": labels.queries[d].tolist(), "rank": ranks.tolist()}
        for name, value in summarise_ranks(ranks, ks).items():
            metrics[f"{d}_{name}"] = value
    metrics["mrr_mean"] = _mean_of_directions(metrics, "mrr")
    metrics.update(_link_metrics(score_fn, labels, links, link_split, known, chunk, ranks_out))
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
    return _matched_reciprocals(keyed[0], keyed[1], "test queries")


def paired_link_reciprocal_ranks(
    model: dict[str, dict[str, list]],
    baseline: dict[str, dict[str, list]],
    direction: str,
    novel_only: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-link reciprocal ranks of two methods on the same held-out links of ``direction``,
    [n] each, matched by link row from two ``ranks_out`` records of :func:`evaluate`;
    ``novel_only`` keeps links absent from the known source.

    Raises ``ValueError`` when the records do not hold the same links (another split).
    """
    keyed = []
    for record in (model, baseline):
        r = record.get(direction, {})
        rows, ranks = r.get("link_row", []), r.get("link_rank", [])
        known = r.get("link_known", [False] * len(rows))
        keyed.append(
            {int(i): float(k) for i, k, kn in zip(rows, ranks, known, strict=True) if not (novel_only and kn)}
        )
    return _matched_reciprocals(keyed[0], keyed[1], f"{direction} test links")


def _matched_reciprocals(model: dict, baseline: dict, what: str) -> tuple[np.ndarray, np.ndarray]:
    """1 / rank of both methods over their shared keys, [n] each, in key order."""
    if set(model) != set(baseline):
        raise ValueError(
            f"paired test: the model ranked {len(model)} {what} and the baseline "
            f"{len(baseline)}, not the same ones (were they evaluated on the same split?)"
        )
    keys = sorted(model)
    return (
        1.0 / np.asarray([model[k] for k in keys], float),
        1.0 / np.asarray([baseline[k] for k in keys], float),
    )


__all__ = [
    "KS",
    "MASKED",
    "best_positive_ranks",
    "entry_ranks",
    "evaluate",
    "link_ranks",
    "paired_link_reciprocal_ranks",
    "paired_reciprocal_ranks",
    "summarise_ranks",
]
