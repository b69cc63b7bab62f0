"""Rank candidates for new entities with a trained model (rule ``assoc_infer`` and CLI).

New entities come as an entity table of the query side (same columns as training). They
are encoded with the saved featuriser, then by the model's encoder of that side; with the
model's cold start (``model.cold_start``) they also get an imputed link-structure vector,
exactly as entities without training links got one in training and evaluation. The
candidate vocabulary is encoded once and cached, so a query costs one small encoder pass,
one neighbour search over the linked entities ("knn") and one [1, N] attention and dot
product.

CLI::

    python -m genomelab.assoc.infer --model results/assoc/entities/best_model.pt \\
        --featurizer results/assoc/features/featurizer.npz --queries new_sources.tsv \\
        --side source --top-k 10 --out predictions.tsv
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genomelab.assoc.data import DIRECTION_NAMES, SIDES, read_entities
from genomelab.assoc.features import Featurizer, load_featurizer
from genomelab.assoc.model import AssocModel
from genomelab.assoc.training import load_model
from genomelab.io.atomic import atomic_output
from genomelab.io.tables import read_link_table
from genomelab.train.device import resolve_device
from genomelab.train.export import ExportedModel

logger = logging.getLogger(__name__)


def check_featurizer(
    exported: ExportedModel,
    featurizer: Featurizer,
    model_path: str | os.PathLike,
    featurizer_path: str | os.PathLike,
) -> None:
    """Refuse a featuriser the model was not trained with (another run's featurizer.npz),
    naming both files, instead of failing inside the network or ranking with features the
    model never saw: first the feature widths, then the featuriser fingerprint the model
    recorded (another vocabulary or fit of the same widths). A model exported before models
    recorded it is checked on widths alone, and the log says so."""
    model_config = exported.config
    found = {
        "text_dim": featurizer.text_dim,
        "max_fields": featurizer.config.max_fields,
        "n_numeric_source": len(featurizer.numeric_names.get("source", [])),
        "n_numeric_target": len(featurizer.numeric_names.get("target", [])),
    }
    diffs = [
        f"{key} {value} in the featuriser, {model_config[key]} in the model"
        for key, value in found.items()
        if key in model_config and int(model_config[key]) != int(value)
    ]
    recorded = str(exported.extra.get("featurizer_fingerprint") or "")
    if not diffs and recorded and recorded != featurizer.fingerprint():
        diffs = [
            "same feature widths, but another vocabulary or fit: its fingerprint "
            f"{featurizer.fingerprint()[:12]} is not the model's {recorded[:12]}"
        ]
    if diffs:
        raise ValueError(
            f"{featurizer_path}: not the featuriser {model_path} was trained with ({'; '.join(diffs)}); "
            "give the featurizer.npz of the run that trained the model (results/<run>/assoc/features/)"
        )
    if not recorded:
        logger.warning(
            "%s records no featuriser fingerprint (exported before models recorded one): %s is "
            "checked on feature widths only, so another run's featuriser of the same widths "
            "would not be noticed",
            model_path,
            featurizer_path,
        )


class Ranker:
    """A loaded model plus featuriser, ready to score new query entities."""

    def __init__(
        self,
        model: AssocModel,
        featurizer: Featurizer,
        source_ids: list[str],
        target_ids: list[str],
        device: torch.device | str = "cpu",
    ) -> None:
        self.model = model.to(device)
        self.model.cache_vocabulary()
        self.featurizer = featurizer
        self.ids = {"source": list(source_ids), "target": list(target_ids)}
        # The model's entities with training links (its held-out ones have none): a query
        # among them is still ranked as a new entity, from its features.
        self.known = {
            side: {x for x, on in zip(ids, getattr(model, f"{side}_linked").tolist(), strict=True) if on}
            for side, ids in self.ids.items()
        }
        self.device = torch.device(device)

    @classmethod
    def load(
        cls,
        model_path: str | os.PathLike,
        featurizer_path: str | os.PathLike,
        device: torch.device | str = "cpu",
    ) -> Ranker:
        if isinstance(device, str):
            # "cuda" without CUDA: genomelab's error, not torch's assertion (nor a silent CPU run).
            device = resolve_device(device)
        model, exported = load_model(model_path)
        featurizer = load_featurizer(featurizer_path)
        check_featurizer(exported, featurizer, model_path, featurizer_path)
        ids = exported.ids
        return cls(model, featurizer, ids["sources"], ids["targets"], device)

    def encode_arrays(
        self, arrays: dict[str, np.ndarray], side: str
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Model encodings [n, d] of featurised new entities of ``side`` and their cold-start
        link vectors [n, link_dim] (None when the model has no cold start)."""
        t = {k: torch.as_tensor(arrays[k], device=self.device) for k in ("text", "text_mask", "numeric")}
        text, mask, numeric = t["text"].float(), t["text_mask"].bool(), t["numeric"].float()
        emb = self.model.encode(side, text, mask, numeric)
        return emb, self.model.new_entity_link_vectors(side, emb, text, mask, numeric)

    @torch.no_grad()
    def scores(self, arrays: dict[str, np.ndarray], side: str) -> np.ndarray:
        """Sigmoid scores [n, N_candidates] of featurised queries of ``side``."""
        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {side!r}")
        direction = "s2t" if side == "source" else "t2s"
        emb, link = self.encode_arrays(arrays, side)
        logits = self.model(direction, None, query_emb=emb, query_link=link)
        return torch.sigmoid(logits).float().cpu().numpy()

    def _warn_unknown_text(self, arrays: dict[str, np.ndarray], side: str) -> None:
        """Log the queries whose description shares no term with the featuriser's TF-IDF
        vocabulary: their text encodes to zeros, so they are ranked from their numeric
        features alone, or, without any, all alike (nothing refuses them)."""
        if self.featurizer.config.text_encoder != "tfidf":
            return
        text, mask = arrays["text"], arrays["text_mask"]
        blank = mask.any(axis=1) & ~np.abs(text).reshape(len(text), -1).any(axis=1)
        if not blank.any():
            return
        ids = arrays["ids"][blank].tolist()
        rest = (
            "they are ranked from their numeric features alone"
            if arrays["numeric"].shape[1]
            else "they have no other features, so every one of them gets the same ranking"
        )
        logger.warning(
            "%d of %d query %s entities share no term with the featuriser's vocabulary, first %s: "
            "their descriptions encode to zeros and %s",
            len(ids),
            len(blank),
            side,
            ids[:5],
            rest,
        )

    def rank(self, table, side: str, top_k: int = 10) -> pd.DataFrame:
        """Top ``top_k`` candidates per entity of ``table`` (an ``EntityTable``)."""
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, not {top_k}")
        known = [x for x in table.ids if x in self.known[side]]
        if known:
            logger.warning(
                "%d of %d query %s entities have training links in the model, first %s: they "
                "are ranked as new entities, from their features alone (cold start), not with "
                "what the model learned of their links",
                len(known),
                len(table),
                side,
                known[:5],
            )
        arrays = self.featurizer.transform(table)
        self._warn_unknown_text(arrays, side)
        scores = self.scores(arrays, side)
        k = min(top_k, scores.shape[1])
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        other = "target" if side == "source" else "source"
        rows = [
            {
                "query": table.ids[i],
                "rank": r + 1,
                "candidate": self.ids[other][c],
                "score": float(scores[i, c]),
            }
            for i in range(len(table))
            for r, c in enumerate(top[i])
        ]
        return pd.DataFrame(rows, columns=["query", "rank", "candidate", "score"])


def rank_new_entities(
    model_path: str | os.PathLike,
    featurizer_path: str | os.PathLike,
    queries_path: str | os.PathLike,
    side: str = "source",
    top_k: int = 10,
    device: str = "cpu",
) -> pd.DataFrame:
    table = read_entities(queries_path, side)
    ranker = Ranker.load(model_path, featurizer_path, device)
    logger.info(
        "ranking %d new %s entities against %d candidates on %s",
        len(table),
        side,
        len(ranker.ids["target" if side == "source" else "source"]),
        ranker.device,
    )
    return ranker.rank(table, side, top_k)


def write_predictions(
    df: pd.DataFrame, path: str | os.PathLike, known_links: str | os.PathLike | None = None
) -> None:
    """Write predictions as TSV; with ``known_links`` mark pairs that are true links."""
    df = df.copy()
    if known_links is not None:
        links = read_link_table(known_links, (*DIRECTION_NAMES, "both"))
        pairs = set(zip(links["source"], links["target"], strict=True)) | set(
            zip(links["target"], links["source"], strict=True)
        )
        df["known_link"] = [(q, c) in pairs for q, c in zip(df["query"], df["candidate"], strict=True)]
        if len(df):
            logger.info("%.1f%% of predicted pairs are known links", 100 * df["known_link"].mean())
    with atomic_output(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.5g")


def predict_new_entities(
    model: str | os.PathLike,
    featurizer: str | os.PathLike,
    queries: str | os.PathLike,
    side: str,
    top_k: int,
    out: str | os.PathLike,
    known_links: str | os.PathLike | None = None,
    device: str = "cpu",
) -> None:
    """:func:`rank_new_entities` written as a predictions TSV (known links marked)."""
    table = rank_new_entities(model, featurizer, queries, side, top_k, device)
    write_predictions(table, out, known_links=known_links)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Rank candidates for new entities with a trained assoc model"
    )
    parser.add_argument("--model", required=True, type=Path)
    parser.add_argument("--featurizer", required=True, type=Path)
    parser.add_argument("--queries", required=True, type=Path, help="entity table (TSV) of new entities")
    parser.add_argument("--side", default="source", choices=SIDES, help="vocabulary the queries belong to")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--known-links", type=Path, default=None, help="links TSV to mark true pairs")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    df = rank_new_entities(args.model, args.featurizer, args.queries, args.side, args.top_k, args.device)
    write_predictions(df, args.out, args.known_links)


if __name__ == "__main__":
    main()
