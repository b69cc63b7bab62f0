"""The error every reader of :mod:`genomelab.io` raises for a malformed file."""

from __future__ import annotations

import os
from pathlib import Path


class FormatError(ValueError):
    """A file that does not hold what its format says; names the file and, where known, the line.

    A ``ValueError`` so that callers catching bad input keep working. ``path`` and ``line``
    (1-based, or ``None`` for a whole-file problem) are kept for programs; the message reads
    ``"<path>, line <n>: <what>"`` (or ``"<path>: <what>"``) for people.
    """

    def __init__(self, path: str | os.PathLike, what: str, line: int | None = None) -> None:
        self.path = Path(path)
        self.line = line
        self.what = what
        where = f"{path}" if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {what}")
