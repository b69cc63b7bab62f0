"""The gate rule's step: read a module's diagnostics and stop before training if a blocking one failed."""

from __future__ import annotations

from typing import Any

from genomelab.diagnostics import gate
from genomelab.io.atomic import atomic_write_json


def gate_step(smk: Any) -> None:
    summary = gate(list(smk.input), strict=bool(smk.params.strict))
    atomic_write_json(smk.output[0], summary)
