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
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from genomelab.assoc.data import DIRECTION_NAMES, SIDES, read_entities
from genomelab.assoc.features import Featurizer, load_featurizer
from genomelab.assoc.model import AssocModel
from genomelab.assoc.training import load_model
from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.ids import first_difference
from genomelab.io.tables import read_link_table
from genomelab.train.device import resolve_device
from genomelab.train.export import ExportedModel, model_files, refuse_repeated_files

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


class _CandidateRanker:
    """What ranks candidates for featurised queries: ``scores`` [n, N_candidates] in [0, 1],
    and the featuriser, vocabularies and linked entities they were trained with."""

    featurizer: Featurizer
    ids: dict[str, list[str]]
    known: dict[str, set[str]]
    device: torch.device

    def scores(self, arrays: dict[str, np.ndarray], side: str) -> np.ndarray:
        raise NotImplementedError

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


class Ranker(_CandidateRanker):
    """A loaded model plus featuriser, ready to score new query entities."""

    def __init__(
        self,
        model: AssocModel,
        featurizer: Featurizer,
        source_ids: list[str],
        target_ids: list[str],
        device: torch.device | str = "cpu",
        path: str | os.PathLike = "model",
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
        self.path = str(path)

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
        return cls(model, featurizer, ids["sources"], ids["targets"], device, model_path)

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


class AveragedRanker(_CandidateRanker):
    """Several exported assoc models of one vocabulary and featuriser, e.g. the selected
    model of every fold of the cross-validated links scheme (``assoc.evaluation.folds`` > 1),
    each trained on the links of the other folds: a candidate's score is the mean of the
    models' scores, and candidates are ranked by that mean.

    What is averaged is each model's sigmoid output, the link probability its BCE head was
    trained to give (the ``score`` column of a prediction), not the logits: every fold's
    probability is on the same [0, 1] scale, so each model weighs the same, whereas an
    unbounded logit lets the one model that is most sure of a pair decide it; and the mean
    stays a probability, so the ``score`` column keeps its meaning. (No model is recalibrated
    after training: the positives' confidence weights and ``pos_weight`` shift every fold's
    probabilities alike, since the folds share the run's settings.) Models of other
    vocabularies (another run's entities) are refused naming both files; each model is
    checked against the featuriser as one model is (:func:`check_featurizer`), so a model of
    another featuriser is refused naming it and the featuriser."""

    def __init__(self, rankers: list[Ranker]) -> None:
        if len(rankers) < 2:
            raise ValueError(f"averaging needs 2 model files or more, not {len(rankers)}")
        first = rankers[0]
        refuse_repeated_files([r.path for r in rankers], "assoc model files")
        for r in rankers[1:]:
            for side in SIDES:
                if r.ids[side] != first.ids[side]:
                    raise ValueError(
                        f"{r.path} and {first.path} cannot be averaged: their {side} vocabularies "
                        f"differ ({len(r.ids[side])} and {len(first.ids[side])} entities; "
                        f"{first_difference(r.ids[side], first.ids[side])}); average the models of "
                        "one run's folds (the same links, entity tables and featuriser)"
                    )
        self.rankers = rankers
        self.model_files = [r.path for r in rankers]
        self.featurizer, self.ids, self.device = first.featurizer, first.ids, first.device
        # Entities with training links in any of the models: each fold holds out other links.
        self.known = {side: set().union(*(r.known[side] for r in rankers)) for side in SIDES}

    def scores(self, arrays: dict[str, np.ndarray], side: str) -> np.ndarray:
        """The mean of the models' sigmoid scores [n, N_candidates] of featurised queries."""
        return np.mean([r.scores(arrays, side) for r in self.rankers], axis=0)


def load_ranker(
    model: str | os.PathLike | Sequence[str | os.PathLike],
    featurizer_path: str | os.PathLike,
    device: torch.device | str = "cpu",
) -> Ranker | AveragedRanker:
    """One exported model (a path, or a list of one) or, for a list of several, their
    average (:class:`AveragedRanker`)."""
    paths = model_files(model, "assoc model")
    if len(paths) == 1:
        return Ranker.load(paths[0], featurizer_path, device)
    refuse_repeated_files(paths, "assoc model files")  # before any file loads
    return AveragedRanker([Ranker.load(p, featurizer_path, device) for p in paths])


def rank_new_entities(
    model_path: str | os.PathLike | Sequence[str | os.PathLike],
    featurizer_path: str | os.PathLike,
    queries_path: str | os.PathLike,
    side: str = "source",
    top_k: int = 10,
    device: str = "cpu",
) -> pd.DataFrame:
    """Top ``top_k`` candidates per entity of the table ``queries_path``; ``model_path`` a
    list of several files: ranked by the mean of their scores (:class:`AveragedRanker`)."""
    table = read_entities(queries_path, side)
    ranker = load_ranker(model_path, featurizer_path, device)
    if isinstance(ranker, AveragedRanker):
        logger.info(
            "averaging the link probabilities of %d model files: %s",
            len(ranker.model_files),
            ranker.model_files,
        )
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


def averaged_record(out: str | os.PathLike) -> Path:
    """Where a prediction of several averaged models records them: ``predictions.json`` beside
    ``predictions.tsv`` (``out``). One model's prediction writes the TSV alone, as always."""
    return Path(out).with_suffix(".json")


def _json_object(path: Path) -> dict:
    """``path``'s JSON object; {} for a file that holds none (not a record of ours)."""
    try:
        value = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


def predict_new_entities(
    model: str | os.PathLike | Sequence[str | os.PathLike],
    featurizer: str | os.PathLike,
    queries: str | os.PathLike,
    side: str,
    top_k: int,
    out: str | os.PathLike,
    known_links: str | os.PathLike | None = None,
    device: str = "cpu",
) -> None:
    """:func:`rank_new_entities` written as a predictions TSV (known links marked); with
    several model files, :func:`averaged_record` lists them under ``model_files`` (as tissue's
    predictions.json and regulon's tracks.json do)."""
    files = model_files(model, "assoc model")
    # An earlier averaged prediction's record (assoc_infer's with evaluation.folds K > 1, which
    # a rerun with K = 1 does not declare, so Snakemake keeps it) would name the fold models
    # beside this prediction's TSV: removed first, whatever this prediction writes.
    record = averaged_record(out)
    if record.is_file() and "model_files" in _json_object(record):
        record.unlink()
        logger.info("removed %s of an earlier averaged prediction", record)
    table = rank_new_entities(model, featurizer, queries, side, top_k, device)
    write_predictions(table, out, known_links=known_links)
    if len(files) > 1:
        atomic_write_json(
            averaged_record(out),
            {
                "model_files": files,
                "score": "mean of the model files' link probabilities (sigmoid outputs)",
                "featurizer": str(featurizer),
                "queries": str(queries),
                "side": side,
                "top_k": top_k,
                "n_queries": int(table["query"].nunique()),
            },
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Rank candidates for new entities with a trained assoc model"
    )
    # extend: --model a.pt --model b.pt averages both (nargs="+" alone kept the last).
    parser.add_argument(
        "--model",
        required=True,
        type=Path,
        nargs="+",
        action="extend",
        help="exported model; several (a cross-validated run's folds/<k>/links/best_model.pt) are averaged",
    )
    parser.add_argument("--featurizer", required=True, type=Path)
    parser.add_argument("--queries", required=True, type=Path, help="entity table (TSV) of new entities")
    parser.add_argument("--side", default="source", choices=SIDES, help="vocabulary the queries belong to")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--known-links", type=Path, default=None, help="links TSV to mark true pairs")
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    model = args.model[0] if len(args.model) == 1 else args.model
    predict_new_entities(
        model, args.featurizer, args.queries, args.side, args.top_k, args.out, args.known_links, args.device
    )


if __name__ == "__main__":
    main()
