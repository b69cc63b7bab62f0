"""What every module's prediction shares: the model's module, the model card, output folders.

A prediction applies an exported model (:mod:`genomelab.train.export`, loaded with
``weights_only=True``) to new inputs, checked against the IDs the model recorded with
:mod:`genomelab.io.ids` (the ID joins, their errors and counts).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genomelab import __version__
from genomelab.io.ids import N_SHOWN
from genomelab.train.export import module_of_kind

MODULES = ("tissue", "deconv", "regulon", "assoc", "binning")


def fresh_out_dir(out_dir: str | os.PathLike, protected: Sequence[str | os.PathLike] = ()) -> Path:
    """A prediction's output folder: created if absent, refused when it holds files or is
    one of ``protected`` (a run's own outputs, which a prediction must never overwrite)."""
    out = Path(out_dir)
    for p in protected:
        if Path(p).resolve() == out.resolve():
            raise FileExistsError(f"{out} holds a run's own outputs; predict into another folder")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file, not a folder; predict into a new folder")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty; predict into a new folder")
    out.mkdir(parents=True, exist_ok=True)
    return out


@dataclass
class ModelCard:
    """What a served model is: kind, module, what it was trained on, metrics, versions."""

    module: str
    kind: str
    model: str
    trained_with_genomelab: str
    genomelab_version: str
    data_fingerprint: str
    ids: dict[str, dict[str, Any]]
    config: dict[str, Any]
    extra: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    comparison: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _summary_near(model_path: Path, module: str, levels: int = 4) -> Path | None:
    # A module's summary.json sits in results/<run>/<module>/, above the model's folder.
    for parent in list(model_path.resolve().parents)[:levels]:
        candidate = parent / "summary.json"
        if candidate.is_file() and (_read_json(candidate) or {}).get("module") == module:
            return candidate
    return None


def model_card(
    model_path: str | os.PathLike,
    exported: Any,
    metrics_path: str | os.PathLike | None = None,
    summary_path: str | os.PathLike | None = None,
) -> ModelCard:
    """The card of an exported model: ID lists (counts and first IDs), config, and, where the
    run wrote them, its test metrics (``metrics.json`` beside the model, or ``metrics_path``)
    and its module summary's comparisons with the baselines (``summary.json`` found above
    the model, or ``summary_path``)."""
    path = Path(model_path)
    module = module_of_kind(exported.kind, path)
    ids = {k: {"n": len(v), "first": list(v[:N_SHOWN])} for k, v in exported.ids.items()}
    card = ModelCard(
        module=module,
        kind=exported.kind,
        model=str(path),
        trained_with_genomelab=exported.genomelab_version,
        genomelab_version=__version__,
        data_fingerprint=exported.data_fingerprint,
        ids=ids,
        config=dict(exported.config),
        extra={k: v for k, v in exported.extra.items() if k != "predictions"},
    )
    metrics = _read_json(Path(metrics_path) if metrics_path else path.with_name("metrics.json"))
    if metrics:
        card.metrics = {
            k: metrics[k] for k in ("test", "val", "best_epoch", "stopped_reason") if k in metrics
        }
    summary = Path(summary_path) if summary_path else _summary_near(path, module)
    data = _read_json(summary) if summary else None
    if data:
        card.comparison = list(data.get("comparisons", []))
    return card
