"""Diagnostics: cheap checks that catch known failure modes before (and while) training.

A diagnostic returns a :class:`DiagnosticResult` (name, status, message, optional figure,
details). Results of a module are written to one JSON file; the gate reads those files and
stops the workflow when a blocking check failed.
"""

from genomelab.diagnostics.core import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    DiagnosticResult,
    GateError,
    gate,
    read_results,
    write_results,
)

__all__ = [
    "FAIL",
    "PASS",
    "SKIP",
    "WARN",
    "DiagnosticResult",
    "GateError",
    "gate",
    "read_results",
    "write_results",
]
