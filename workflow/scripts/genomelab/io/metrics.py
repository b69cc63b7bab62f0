"""Metrics JSON files: one typed record (:class:`Metrics`) with its reader and writer.

Every model and baseline writes its results as a JSON object: evaluation results under
``test`` (and ``val``), and for a training run the engine's record of the run
(``TRAINING_KEYS``: device, precision, config, best epoch, why it stopped, per-epoch
``history``, ``final`` values), plus module-specific keys (a tissue model's ``title``,
a deconv run's ``variant``, ...). The record keeps the file's keys in their order, so a
file read and written back is byte-identical; its typed properties check what they
return and errors name the file.

:func:`read_json_file` is the plain reader for the project's other JSON artefacts
(evaluations, grids, summaries): errors name the file and, for malformed JSON, the line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from genomelab.io.atomic import atomic_write_json
from genomelab.io.errors import FormatError
from genomelab.io.streams import existing_file

# The engine's record of a training run, in the order it writes them.
TRAINING_KEYS = (
    "genomelab_version",
    "device",
    "precision",
    "train_config",
    "monitor",
    "best_epoch",
    "best_value",
    "stopped_reason",
    "epochs_run",
    "history",
    "final",
)
_TYPES: dict[str, type | tuple[type, ...]] = {
    "genomelab_version": str,
    "device": str,
    "precision": str,
    "train_config": dict,
    "monitor": str,
    "best_epoch": int,
    "best_value": (int, float, type(None)),
    "stopped_reason": str,
    "epochs_run": int,
    "history": list,
    "final": dict,
    "test": dict,
    "val": dict,
}


def read_json_file(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Parse a JSON file; ``FileNotFoundError``/``FormatError`` name ``what`` and the file (and line)."""
    path = existing_file(path, what)
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(
            path, f"{what} is not valid JSON: {exc.msg} (column {exc.colno})", exc.lineno
        ) from exc
    except UnicodeDecodeError as exc:
        raise FormatError(path, f"{what} is not UTF-8 text ({exc})") from exc


@dataclass(frozen=True)
class Metrics:
    """One metrics JSON object (``data``, in file order); ``source`` names it in errors.

    Known keys are type-checked on creation (``test`` a dict, ``history`` a list, ...).
    """

    data: dict[str, Any]
    source: str = "metrics"

    def __post_init__(self) -> None:
        if not isinstance(self.data, dict):
            raise FormatError(self.source, f"metrics must be a JSON object, not {type(self.data).__name__}")
        for key, kind in _TYPES.items():
            value = self.data.get(key)
            # bool is an int subclass, but True is no epoch count.
            if key in self.data and (
                not isinstance(value, kind) or (isinstance(value, bool) and kind is int)
            ):
                raise FormatError(
                    self.source, f"metrics key {key!r} has the wrong type ({type(value).__name__})"
                )

    @classmethod
    def training_run(
        cls,
        *,
        genomelab_version: str,
        device: str,
        precision: str,
        train_config: dict[str, Any],
        monitor: str,
        best_epoch: int,
        best_value: float | None,
        stopped_reason: str,
        history: list[dict[str, float]],
        extra: dict[str, Any] | None = None,
        source: str = "metrics",
    ) -> Metrics:
        """The record of a training run in the engine's key order; ``extra`` keys follow
        (and replace a training key of the same name in place)."""
        data: dict[str, Any] = {
            "genomelab_version": genomelab_version,
            "device": device,
            "precision": precision,
            "train_config": train_config,
            "monitor": monitor,
            "best_epoch": best_epoch,
            "best_value": best_value,
            "stopped_reason": stopped_reason,
            "epochs_run": len(history),
            "history": history,
            "final": history[-1] if history else {},
        }
        data.update(extra or {})
        return cls(data, source)

    def require(self, keys: Iterable[str]) -> Metrics:
        """Return ``self``; ``FormatError`` naming the missing keys otherwise."""
        missing = [k for k in keys if k not in self.data]
        if missing:
            raise FormatError(self.source, f"metrics lack key(s) {missing} (has {sorted(self.data)})")
        return self

    @property
    def is_training_run(self) -> bool:
        return all(k in self.data for k in ("history", "epochs_run", "best_epoch"))

    def __getitem__(self, key: str) -> Any:
        try:
            return self.data[key]
        except KeyError:
            raise FormatError(self.source, f"metrics have no {key!r} (has {sorted(self.data)})") from None

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    @property
    def test(self) -> dict[str, Any]:
        """Test-split results; an error naming the file when there are none."""
        return self["test"]

    @property
    def history(self) -> list[dict[str, float]]:
        """Per-epoch metrics of a training run (``{split}/{name}`` keys, ``epoch``, ``lr``)."""
        return self["history"]

    @property
    def epochs_run(self) -> int:
        return self["epochs_run"]

    @property
    def best_epoch(self) -> int:
        return self["best_epoch"]

    @property
    def stopped_reason(self) -> str:
        return self["stopped_reason"]

    def to_dict(self) -> dict[str, Any]:
        return self.data


def read_metrics(path: str | os.PathLike, require: Iterable[str] = ()) -> Metrics:
    """Read a metrics JSON; ``require``: keys that must be present (e.g. ``TRAINING_KEYS``)."""
    return Metrics(read_json_file(path, "metrics file"), str(path)).require(require)


def write_metrics(path: str | os.PathLike, metrics: Metrics) -> None:
    """Write a metrics record atomically (NaN/inf become null, see ``atomic_write_json``)."""
    atomic_write_json(path, metrics.to_dict())
