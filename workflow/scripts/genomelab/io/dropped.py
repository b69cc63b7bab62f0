"""Records a step left out of its output, counted and named ("nothing silent").

A step that leaves input records out (contigs below the length filter, atlas rows with an
NA cell, input regions absent from the reference) makes one :class:`Dropped` per reason:
how many, why, and the first few IDs, and logs it as a warning. The entries travel as a
list of dicts under the key ``dropped`` of a JSON output (``dropped_to_json``,
``read_dropped``); module summaries carry them to the run report
(``genomelab.report.summary.ModuleSummary.dropped``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from genomelab.io.errors import FormatError

logger = logging.getLogger(__name__)

# IDs kept per entry: enough to find the records, few enough to read in a table cell.
N_EXAMPLES = 5
KEY = "dropped"
FIELDS = ("step", "what", "reason", "count", "examples")


@dataclass(frozen=True)
class Dropped:
    """``count`` records of kind ``what`` ("contigs") that ``step`` left out for ``reason``;
    ``examples`` are the first of their IDs (at most ``N_EXAMPLES``)."""

    step: str
    what: str
    reason: str
    count: int
    examples: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"a dropped-records entry needs count >= 1, not {self.count}")

    def describe(self) -> str:
        """One line for logs and reports."""
        more = ", ..." if self.count > len(self.examples) else ""
        return (
            f"{self.step}: {self.count} {self.what} dropped ({self.reason}); "
            f"first: {', '.join(self.examples)}{more}"
        )


def count_dropped(step: str, what: str, reason: str, ids: Iterable[Any]) -> Dropped | None:
    """A :class:`Dropped` of ``ids`` (logged as a warning), or ``None`` when none was dropped."""
    ids = [str(i) for i in ids]
    if not ids:
        return None
    entry = Dropped(step, what, reason, len(ids), ids[:N_EXAMPLES])
    logger.warning("%s", entry.describe())
    return entry


def dropped_to_json(entries: Iterable[Dropped | None]) -> list[dict[str, Any]]:
    """The JSON form of ``entries`` (``None``, nothing dropped, is left out)."""
    return [asdict(e) for e in entries if e is not None]


def read_dropped(items: Sequence[Any], source: str | os.PathLike) -> list[Dropped]:
    """Entries from the JSON list ``items`` (the ``dropped`` key of the file ``source``)."""
    if not isinstance(items, list):
        raise FormatError(source, f"{KEY!r} must be a list of entries, not {type(items).__name__}")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != set(FIELDS):
            raise FormatError(
                source, f"{KEY}[{i}] must be an object with the keys {list(FIELDS)}, not {item!r}"
            )
        out.append(Dropped(**{k: item[k] for k in FIELDS}))
    return out
