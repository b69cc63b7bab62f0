"""Rank candidates for new entities with a trained assoc model.

Files: :func:`genomelab.assoc.infer.predict_new_entities` (the ``assoc_infer`` rule's
function, unchanged). Records (the server): entities given as JSON-like dicts with the
columns of an entity table, featurised by the saved featuriser and ranked by the same
:class:`~genomelab.assoc.infer.Ranker`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from genomelab.io.ids import check_same


class AssocPredictor:
    """A :class:`~genomelab.assoc.infer.Ranker` (model plus featuriser) for new entities, or
    for several model files an :class:`~genomelab.assoc.infer.AveragedRanker` (the mean of
    their link probabilities)."""

    def __init__(
        self,
        model: str | os.PathLike | Sequence[str | os.PathLike],
        featurizer: str | os.PathLike,
        device: str = "cpu",
    ) -> None:
        from genomelab.assoc.infer import load_ranker, model_files

        self.ranker = load_ranker(model, featurizer, device)
        self.model_files = model_files(model, "assoc model")
        self.path = self.model_files[0]

    def table(self, records: Sequence[dict[str, Any]], side: str, source: str = "request") -> Any:
        """An entity table of ``records`` (``id``, optional ``description``/``sequence`` and
        the numeric columns the featuriser was fitted on, by name)."""
        from genomelab.assoc.data import SIDES
        from genomelab.assoc.features import EntityTable

        if side not in SIDES:
            raise ValueError(f"side must be one of {SIDES}, not {side!r}")
        if not records:
            raise ValueError(f"{source}: no entities to rank")
        featurizer = self.ranker.featurizer
        names = list(featurizer.numeric_names.get(side, []))
        # Sequences add k-mer and GC columns after the table's own numeric columns.
        seq_names = [f"kmer{i}" for i in range(4**featurizer.config.kmer)] + ["gc"]
        has_seq = len(names) >= len(seq_names) and names[-len(seq_names) :] == seq_names
        if has_seq:
            names = names[: -len(seq_names)]
        given = sorted({k for r in records for k in r} - {"id", "description", "sequence"})
        check_same(given, sorted(names), f"numeric columns of the {side} entities", source)
        missing = [r.get("id", i) for i, r in enumerate(records) if has_seq and not r.get("sequence")]
        if missing:
            raise ValueError(f"{source}: the model's {side} entities have sequences; {missing[:5]} have none")
        ids = [str(r["id"]) for r in records]
        numeric = np.asarray([[float(r[c]) for c in names] for r in records], np.float32)
        numeric = numeric.reshape(len(ids), len(names))
        has_text = any("description" in r for r in records)
        descriptions = [str(r.get("description", "")) for r in records] if has_text else None
        sequences = [str(r["sequence"]).upper() for r in records] if has_seq else None
        return EntityTable(side, ids, descriptions, sequences, numeric, names)

    def rank_records(self, records: Sequence[dict[str, Any]], side: str, top_k: int) -> pd.DataFrame:
        """Top ``top_k`` candidates per entity: query, rank, candidate, score."""
        return self.ranker.rank(self.table(records, side), side, top_k)


def predict_files(
    model: str | os.PathLike | Sequence[str | os.PathLike],
    featurizer: str | os.PathLike,
    queries: str | os.PathLike,
    side: str,
    top_k: int,
    out: str | os.PathLike,
    known_links: str | os.PathLike | None = None,
    device: str = "cpu",
) -> None:
    """The ``assoc_infer`` predictions TSV for the entity table ``queries``; ``model`` a list
    of several files: ranked by the mean of their scores, and listed in predictions.json."""
    from genomelab.assoc.infer import predict_new_entities

    predict_new_entities(model, featurizer, queries, side, top_k, out, known_links, device)
