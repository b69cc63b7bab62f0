"""Fill JSON-schema defaults across ``$ref``'d schema files.

Snakemake's ``validate(set_default=True)`` fills defaults only inside one schema file;
genomelab keeps one schema per module (referenced from ``config.schema.yaml``), so the
defaults of referenced files are filled here, then ``run_config.schema_errors`` validates
the result (the only validation: ``load_run_config`` does not call Snakemake's as well).
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from typing import Any

import yaml

# libyaml's loader where PyYAML was built with it: the schemas are ~10 files read on every
# Snakemake start (each dry run), and the pure-Python loader took most of a second for them.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_schema_file(path: str | os.PathLike) -> dict[str, Any]:
    """A schema file, parsed once per process (per file version): Snakemake's parse reads
    each module schema from several places (defaults, validation, dataclass defaults), which
    parsed it 33 times. The dict is shared: callers copy what they hand on (defaults are
    deep-copied into configs)."""
    path = Path(path).resolve()
    stat = path.stat()
    return _load_cached(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _load_cached(path: Path, mtime_ns: int, size: int) -> dict[str, Any]:
    with open(path) as fh:
        return yaml.load(fh, Loader=_Loader)  # noqa: S506 - a safe loader (C or Python)


_load = load_schema_file


def fill_defaults(instance: dict[str, Any], schema_path: str | os.PathLike) -> dict[str, Any]:
    """Set missing keys of ``instance`` (in place) to the defaults of ``schema_path``."""
    path = Path(schema_path)
    _fill(instance, _load(path), path.parent)
    return instance


def module_sections(schema_path: str | os.PathLike) -> list[str]:
    """The modules registered in the top-level schema ``schema_path``, in file order.

    A module is a section that references a schema file of its own name
    (``toy: {$ref: toy.schema.yaml}``): that one line registers it, and ``common.smk``
    then includes ``workflow/rules/<module>.smk`` and gives it a gate.
    """
    path = Path(schema_path)
    props = _load(path).get("properties", {})
    return [
        key
        for key, sub in props.items()
        if isinstance(sub, dict) and Path(str(sub.get("$ref", ""))).name == f"{key}.schema.yaml"
    ]


def _resolve(schema: dict[str, Any], base: Path) -> tuple[dict[str, Any], Path]:
    while "$ref" in schema:
        ref = base / schema["$ref"]
        merged = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**_load(ref), **{k: v for k, v in merged.items() if k == "default"}}
        base = ref.parent
    return schema, base


def _fill(instance: Any, schema: dict[str, Any], base: Path) -> None:
    schema, base = _resolve(schema, base)
    if not isinstance(instance, dict):
        return
    for key, sub in schema.get("properties", {}).items():
        resolved, sub_base = _resolve(sub, base)
        if key not in instance and "default" in sub:
            instance[key] = copy.deepcopy(sub["default"])
        elif key not in instance and "default" in resolved:
            instance[key] = copy.deepcopy(resolved["default"])
        if key in instance:
            _fill(instance[key], resolved, sub_base)
