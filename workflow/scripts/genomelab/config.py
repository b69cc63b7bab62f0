"""Typed views of validated config sections; schema defaults; Snakemake params.

The schemas in ``workflow/schemas/`` hold every default (``fill_defaults`` applies them to
the config at parse time). Config dataclasses are typed, checked views of one section:

- :func:`typed_config` builds one from a section dict, rejecting unknown and missing keys
  with the section's config path in the message (``tissue.mlp``).
- :func:`from_schema` gives a dataclass field the schema's default, for tests and library
  users who construct a config directly; a literal second default is what this avoids.
- :func:`param` decodes one ``snakemake.params`` value (sections arrive as the JSON strings
  ``config_json`` makes in ``common.smk``).

Schema paths are dotted: the first part names the schema file (``train`` is
``train.schema.yaml``), the rest walk its ``properties`` (``tissue.mlp.hidden``).
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from genomelab.config_schema import load_schema_file

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schemas"

T = TypeVar("T")

# Loose type check: the Python types a config value of each annotated type may have. YAML
# gives ints for whole floats (``coverage: 30``) and lists for tuples.
_ACCEPTED: dict[Any, tuple[type, ...]] = {
    int: (int,),
    float: (int, float),
    bool: (bool,),
    str: (str,),
    list: (list, tuple),
    tuple: (list, tuple),
    dict: (dict,),
}


class ConfigError(ValueError):
    """A config section does not fit its dataclass; the message names the config path."""


@functools.cache
def _schema_file(name: str) -> dict[str, Any]:
    path = SCHEMA_DIR / f"{name}.schema.yaml"
    if not path.is_file():
        raise ConfigError(
            f"no schema {path} (schema path {name!r}); genomelab reads its schemas from {SCHEMA_DIR}"
        )
    return load_schema_file(path)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    # Module schemas reference train.schema.yaml with a sibling-file $ref.
    while "$ref" in node:
        node = _schema_file(Path(node["$ref"]).name.removesuffix(".schema.yaml"))
    return node


def schema_node(path: str) -> dict[str, Any]:
    """The schema of the config key at dotted ``path`` (``"tissue.mlp"``), ``$ref`` resolved."""
    first, *rest = path.split(".")
    node = _schema_file(first)
    walked = first
    for part in rest:
        props = _resolve(node).get("properties", {})
        if part not in props:
            raise ConfigError(f"schema {first}.schema.yaml has no key {walked}.{part}")
        node = props[part]
        walked = f"{walked}.{part}"
    return node


# Keyword of a module schema listing the keys (dotted, below the module) that name a user's
# own data; the one list of them (run_config's check, the schema text and docs point to it).
OWN_DATA_KEYWORD = "x-own-data"


def own_data_keys(module: str) -> tuple[str, ...]:
    """The keys of ``module`` that name a user's own data (its schema's ``x-own-data``, each
    checked to be a key of the schema); () for a module without simulated data."""
    keys = tuple(str(k) for k in _schema_file(module).get(OWN_DATA_KEYWORD, ()))
    for key in keys:
        schema_node(f"{module}.{key}")
    return keys


def schema_properties(path: str) -> dict[str, Any]:
    """The sub-keys of the config key at dotted ``path`` and their schemas, ``$ref`` resolved."""
    return _resolve(schema_node(path)).get("properties", {})


def schema_defaults(path: str) -> dict[str, Any]:
    """``{key: default}`` of the keys of the section at ``path`` that have a schema default."""
    props = _resolve(schema_node(path)).get("properties", {})
    return {k: copy.deepcopy(v["default"]) for k, v in props.items() if "default" in v}


def schema_default(path: str) -> Any:
    """A fresh copy of the schema default of the config key at dotted ``path``."""
    node = schema_node(path)
    if "default" not in node:
        raise ConfigError(f"schema key {path} has no default")
    return copy.deepcopy(node["default"])


# JSON-schema range keywords and the pydantic ``Field`` argument of each.
_BOUNDS = {"minimum": "ge", "exclusiveMinimum": "gt", "maximum": "le", "exclusiveMaximum": "lt"}


def schema_bounds(path: str) -> dict[str, float | int]:
    """The range of the config key at dotted ``path`` as pydantic ``Field`` arguments
    (``{"ge": 0, "lt": 1}`` for ``minimum: 0, exclusiveMaximum: 1``); {} for an unbounded key.
    The one reading of a key's range: ``genomelab predict`` options and ``genomelab serve``
    request fields standing for a key are checked against it."""
    node = schema_node(path)
    return {arg: node[k] for k, arg in _BOUNDS.items() if k in node}


def from_schema(path: str) -> Any:
    """A dataclass field whose default is the schema default of the key at dotted ``path``.

    The schema is read when a config is built without that value, not at import, so that
    importing genomelab needs no schema files; each instance gets its own copy.
    """
    return dataclasses.field(default_factory=functools.partial(schema_default, path))


def _accepted(annotation: Any) -> tuple[type, ...] | None:
    """Python types a value of ``annotation`` may have; None = do not check."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        accepted: tuple[type, ...] = ()
        for arg in typing.get_args(annotation):
            sub = type(None) if arg is type(None) else _accepted(arg)
            if sub is None:
                return None
            accepted += sub if isinstance(sub, tuple) else (sub,)
        return accepted
    return _ACCEPTED.get(origin if origin is not None else annotation)


def _check_type(value: Any, annotation: Any, where: str) -> None:
    accepted = _accepted(annotation)
    if accepted is None:
        return
    # bool is an int in Python; a YAML true where a number belongs is a mistake.
    if isinstance(value, bool) and bool not in accepted:
        ok = False
    else:
        ok = isinstance(value, accepted)
    if not ok:
        names = "/".join(sorted({t.__name__ for t in accepted}))
        raise ConfigError(f"{where} must be {names}, not {type(value).__name__} {value!r}")


def typed_config(cls: type[T], section: Mapping[str, Any], *, where: str, **extra: Any) -> T:
    """Build dataclass ``cls`` from the config section ``section`` at config path ``where``.

    ``extra`` sets fields the workflow supplies rather than the section (seed, data sizes);
    they may not appear in the section. Unknown keys, missing required fields and values of
    the wrong kind raise :class:`ConfigError` naming ``where`` and the key. A field whose type
    is itself a dataclass is built from its sub-section the same way.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a mapping of options, not {type(section).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    bad_extra = sorted(set(extra) - set(fields))
    if bad_extra:
        raise TypeError(f"{cls.__name__} has no field(s) {bad_extra} (extra values for {where})")
    known = set(fields) - set(extra)
    unknown = sorted(set(section) - known)
    if unknown:
        clash = [k for k in unknown if k in extra]
        if clash:
            raise ConfigError(f"{where}.{clash[0]} is set by the workflow and may not appear in the config")
        raise ConfigError(
            f"unknown option {where}.{unknown[0]} (all unknown: {unknown}); known: {sorted(known)}"
        )
    missing = [
        name
        for name, f in fields.items()
        if name not in section
        and name not in extra
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"missing option {where}.{missing[0]} (all missing: {missing})")
    values: dict[str, Any] = {}
    for name, value in section.items():
        annotation = hints.get(name)
        path = f"{where}.{name}"
        if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
            value = typed_config(annotation, value, where=path)
        else:
            _check_type(value, annotation, path)
        values[name] = value
    return cls(**values, **extra)


class ConfigSection:
    """Base of config dataclasses: ``SECTION`` is the config path they view (``"tissue.mlp"``).

    The same dotted path names the schema key whose defaults the fields take (:func:`from_schema`),
    and the test of defaults walks every subclass against it.
    """

    SECTION: ClassVar[str]

    @classmethod
    def from_dict(cls: type[T], values: Mapping[str, Any], *, where: str | None = None, **extra: Any) -> T:
        """:func:`typed_config` of this class; ``where`` overrides ``SECTION`` in messages."""
        return typed_config(cls, values, where=where or cls.SECTION, **extra)  # type: ignore[attr-defined]


def param(smk: Any, name: str) -> Any:
    """The value of ``smk.params.<name>``: a config section JSON string decoded, others as they are.

    ``config_json`` in ``common.smk`` passes sections as JSON objects or arrays (so that a
    changed option reruns the rule); plain strings (paths, device names) pass through.
    """
    rule = getattr(smk, "rule", "?")
    try:
        value = getattr(smk.params, name)
    except AttributeError:
        raise ConfigError(f"rule {rule} has no params.{name}") from None
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"rule {rule}: params.{name} is not valid JSON ({exc}): {value[:80]!r}"
            ) from None
    return value
