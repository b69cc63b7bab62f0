"""Baselines on the same splits and features as the network.

- ``PopularityBaseline``: every query gets the same ranking, candidates ordered by their
  confidence-weighted number of training links (the "most frequent targets").
- ``KnnBaseline``: the k training queries most similar to the query (cosine on the same
  entity features the network sees) vote for their linked candidates, weighted by
  similarity and confidence; popularity breaks ties among unvoted candidates.
- ``RidgeBaseline``: a multi-output ridge regression from query features to the training
  label matrix (a linear model on the same features), solved in closed form.

Each ``fit`` takes the training ``SplitLabels`` and each baseline is a score function
``(direction, query_idx) -> [b, n_candidates]`` that ``metrics.evaluate`` consumes.
"""

from __future__ import annotations

import logging
import os

import numpy as np
from scipy import sparse

from genomelab.assoc.data import DIRECTIONS, S2T, SplitLabels, all_labels, load_data
from genomelab.assoc.features import load_features
from genomelab.assoc.metrics import evaluate
from genomelab.io.atomic import atomic_write_json

logger = logging.getLogger(__name__)


def entity_vectors(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """[n, D] one vector per entity: the mean text token and the numeric features.

    Each block is L2-normalised on its own so that 65 z-scored k-mer columns do not
    drown a 64-dim LSA vector of norm <= 1.
    """
    mask = arrays["text_mask"].astype(np.float32)
    text = (arrays["text"] * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
    blocks = [text, arrays["numeric"]]
    out = []
    for b in blocks:
        if b.shape[1]:
            out.append(b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-8))
    return np.concatenate(out, axis=1).astype(np.float32)


def _train_targets(train: SplitLabels, direction: str) -> tuple[np.ndarray, sparse.csr_matrix]:
    """Training queries [n] and their positive label rows (confidences) [n, C] as CSR."""
    q = train.queries[direction]
    y = train.labels[direction][q].tocsr().copy()
    y.data = np.where(y.data > 0, y.data, 0.0).astype(np.float32)
    y.eliminate_zeros()
    mask = train.mask_columns[direction]
    if mask.any():
        y = y.multiply(~mask[None, :]).tocsr()
    return q, y


class PopularityBaseline:
    name = "popularity"

    def fit(self, train: SplitLabels) -> PopularityBaseline:
        self.popularity = {}
        for d in DIRECTIONS:
            _, y = _train_targets(train, d)
            self.popularity[d] = np.asarray(y.sum(axis=0)).ravel().astype(np.float32)
        return self

    def __call__(self, direction: str, queries: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.popularity[direction], (len(queries), len(self.popularity[direction])))


class KnnBaseline:
    name = "kNN"

    def __init__(self, vectors: dict[str, np.ndarray], k: int = 10) -> None:
        if k < 1:
            raise ValueError(f"baselines.knn_k must be >= 1, not {k}")
        self.vectors, self.k = vectors, k

    def fit(self, train: SplitLabels) -> KnnBaseline:
        self.train = {d: _train_targets(train, d) for d in DIRECTIONS}
        self.popularity = PopularityBaseline().fit(train).popularity
        return self

    def __call__(self, direction: str, queries: np.ndarray) -> np.ndarray:
        side = "source" if direction == S2T else "target"
        tq, y = self.train[direction]
        x = self.vectors[side]
        sims = x[queries] @ x[tq].T  # [b, n_train]
        # A query never votes for itself (in the links scheme it is also a training query).
        sims[queries[:, None] == tq[None, :]] = -np.inf
        k = min(self.k, len(tq))
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.zeros_like(sims)
        rows = np.arange(len(queries))[:, None]
        weights[rows, top] = np.maximum(sims[rows, top], 0.0)
        scores = np.asarray(y.T @ weights.T).T  # [b, C] without densifying y
        pop = self.popularity[direction]
        return scores + 1e-6 * pop / max(float(pop.max()), 1e-12)


class RidgeBaseline:
    name = "ridge"

    def __init__(self, vectors: dict[str, np.ndarray], alpha: float = 1.0) -> None:
        if not alpha > 0:
            raise ValueError(f"baselines.ridge_alpha must be > 0, not {alpha}")
        self.vectors, self.alpha = vectors, alpha

    def fit(self, train: SplitLabels) -> RidgeBaseline:
        self.coef, self.intercept = {}, {}
        for d in DIRECTIONS:
            side = "source" if d == S2T else "target"
            tq, y = _train_targets(train, d)
            x = self.vectors[side][tq].astype(np.float64)
            x_mean = x.mean(axis=0)
            y_mean = np.asarray(y.mean(axis=0)).ravel()
            xc = x - x_mean
            gram = xc.T @ xc + self.alpha * np.eye(x.shape[1])
            # X^T Y with Y sparse: never densify the [n_train, C] label matrix.
            xty = np.asarray(y.T @ xc).T
            coef = np.linalg.solve(gram, xty)
            self.coef[d] = coef.astype(np.float32)
            self.intercept[d] = (y_mean - x_mean @ coef).astype(np.float32)
        return self

    def __call__(self, direction: str, queries: np.ndarray) -> np.ndarray:
        side = "source" if direction == S2T else "target"
        return self.vectors[side][queries] @ self.coef[direction] + self.intercept[direction]


def run_baselines(
    data_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    scheme: str,
    knn_k: int = 10,
    ridge_alpha: float = 1.0,
    splits_path: str | os.PathLike | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """Metrics of popularity, kNN and ridge on the val and test splits of ``scheme``, and
    their per-query and per-link test ranks (``test_ranks``, see :func:`genomelab.assoc.metrics.evaluate`).
    ``splits_path``: a fold's splits (default: the data folder's ``splits.npz``)."""
    sources, targets, links, assignment = load_data(data_dir, splits_path)
    feats = load_features(features_path)
    vectors = {side: entity_vectors(feats[side]) for side in ("source", "target")}
    labels = all_labels(links, assignment, scheme, len(sources), len(targets))
    out: dict[str, dict[str, dict[str, float]]] = {}
    for model in (
        PopularityBaseline(),
        KnnBaseline(vectors, knn_k),
        RidgeBaseline(vectors, ridge_alpha),
    ):
        model.fit(labels["train"])
        ranks: dict[str, dict[str, list]] = {}
        out[model.name] = {
            "val": evaluate(model, labels["val"], links, assignment.links[scheme], known=assignment.known),
            "test": evaluate(
                model,
                labels["test"],
                links,
                assignment.links[scheme],
                ranks_out=ranks,
                known=assignment.known,
            ),
            # Per-query test ranks: the summary's paired test against the network.
            "test_ranks": ranks,
        }
        test = out[model.name]["test"]
        logger.info(
            "%s on %s: test per-link MRR s2t %.4f t2s %.4f; per-query mrr_mean %.4f",
            model.name,
            scheme,
            test["s2t_link_mrr"],
            test["t2s_link_mrr"],
            test["mrr_mean"],
        )
    return out


def write_baselines(
    data_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    scheme: str,
    knn_k: int,
    ridge_alpha: float,
    out: str | os.PathLike,
    splits_path: str | os.PathLike | None = None,
) -> dict[str, dict[str, dict[str, float]]]:
    """:func:`run_baselines`, written as JSON to ``out``."""
    metrics = run_baselines(data_dir, features_path, scheme, knn_k, ridge_alpha, splits_path)
    atomic_write_json(out, metrics)
    return metrics
