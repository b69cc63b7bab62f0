"""Imports point one way (docs/DEVELOPING.md, the guide's "Dependencies point one way"):
modules and the shared layers below them never import the layers above (predict, serve,
the CLI), and modules never import each other. Every import counts, those inside functions
too (a lazy import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "scripts" / "genomelab"
MODULES = ("tissue", "deconv", "regulon", "assoc", "binning", "ingest")
ABOVE = ("predict", "serve", "cli")
SHARED = ("io", "diagnostics", "report", "train")


def genomelab_imports(package: str) -> list[tuple[str, int, str]]:
    """(file, line, imported genomelab package) of each import in ``genomelab/<package>/``."""
    found = []
    for path in sorted((PACKAGE / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "genomelab" and len(parts) > 1 and parts[1] != package:
                    found.append((str(path.relative_to(PACKAGE)), node.lineno, parts[1]))
    return found


@pytest.mark.parametrize("package", MODULES + SHARED)
def test_modules_and_shared_layers_import_nothing_above_them(package):
    """deconv/io.py and deconv/steps.py imported the ID joins from genomelab.predict.common
    (the layer applying models, above the module): they live in genomelab.io.ids now."""
    forbidden = ABOVE + tuple(m for m in MODULES if m != package) if package in MODULES else ABOVE + MODULES
    upward = [
        f"{f}:{line} imports genomelab.{to}" for f, line, to in genomelab_imports(package) if to in forbidden
    ]
    assert not upward, upward
