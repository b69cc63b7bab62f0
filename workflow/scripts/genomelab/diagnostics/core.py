"""Diagnostic results, their JSON files and the gate before GPU training."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genomelab.io.atomic import atomic_write_json

logger = logging.getLogger(__name__)

PASS, WARN, FAIL = "pass", "warn", "fail"
# A check that had nothing to test says so rather than pass (it never blocks).
SKIP = "skipped"
STATUSES = (PASS, WARN, FAIL, SKIP)


@dataclass
class DiagnosticResult:
    """The outcome of one check.

    ``blocking`` checks stop the gate when they fail (in strict mode); non-blocking ones are
    reported only. ``figure`` is a path relative to the results JSON (or absolute).
    """

    name: str
    status: str
    message: str
    blocking: bool = True
    figure: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"diagnostic status must be one of {STATUSES}, not {self.status!r}")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiagnosticResult:
        return cls(
            **{k: data[k] for k in ("name", "status", "message")},
            blocking=data.get("blocking", True),
            figure=data.get("figure"),
            details=data.get("details", {}),
        )


class GateError(RuntimeError):
    """A blocking diagnostic failed; the message lists every failure."""


def write_results(path: str | os.PathLike, module: str, results: list[DiagnosticResult]) -> None:
    """Write a module's diagnostics as JSON (atomically) and log each one."""
    for r in results:
        log = logger.error if r.status == FAIL else logger.warning if r.status == WARN else logger.info
        log("[%s] %s: %s", r.status.upper(), r.name, r.message)
    atomic_write_json(path, {"module": module, "results": [asdict(r) for r in results]})


def read_results(path: str | os.PathLike) -> list[DiagnosticResult]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        return [DiagnosticResult.from_dict(r) for r in data["results"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"diagnostics file {path} is unreadable: {exc}") from exc


def gate(paths: list[str | os.PathLike], strict: bool = True) -> dict[str, Any]:
    """Collect diagnostics files; raise ``GateError`` if a blocking check failed and strict.

    Returns a summary (counts and the failures) that the gate rule writes as its output.
    """
    failures, warnings, counts = [], [], {PASS: 0, WARN: 0, FAIL: 0}
    for path in paths:
        for r in read_results(path):
            counts[r.status] = counts.get(r.status, 0) + 1
            entry = {"file": str(path), "name": r.name, "message": r.message, "blocking": r.blocking}
            if r.status == FAIL:
                failures.append(entry)
            elif r.status == WARN:
                warnings.append(entry)
    blocking = [f for f in failures if f["blocking"]]
    # "passed": no blocking check failed; "opened": training may start (passed, or not strict).
    summary = {
        "strict": strict,
        "counts": counts,
        "failures": failures,
        "warnings": warnings,
        "passed": not blocking,
        "opened": not (blocking and strict),
    }
    if blocking and strict:
        lines = "\n".join(f"  - {f['name']} ({f['file']}): {f['message']}" for f in blocking)
        raise GateError(
            f"{len(blocking)} blocking diagnostic(s) failed, so training will not start:\n{lines}\n"
            "Fix the input or configuration, or set diagnostics.strict: false to train anyway."
        )
    for f in failures:
        logger.warning("diagnostic failed (not blocking here): %s: %s", f["name"], f["message"])
    return summary
