"""One source of config truth: schema defaults, typed config sections, Snakemake params."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import pkgutil
import re
from pathlib import Path
from types import SimpleNamespace

import genomelab
import pytest
from genomelab.config import (
    ConfigError,
    ConfigSection,
    from_schema,
    param,
    schema_default,
    schema_defaults,
    schema_node,
    typed_config,
)
from genomelab.config_schema import fill_defaults
from genomelab.ingest.slots import CallConfig

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
# Config dataclasses that view part of a section rather than a whole one.
PARTIAL_VIEWS = {CallConfig: "ingest"}
# Fields filled from other config keys than the class's own section.
OTHER_KEYS = {
    ("RegulonModelConfig", "resolution_bp"): "regulon.targets.resolution_bp",
    ("RegulonModelConfig", "bin_bp"): "regulon.targets.bin_bp",
    ("DeconvNetConfig", "presence_target"): "deconv.presence_threshold",
    ("DeconvNetConfig", "mse_weight"): "deconv.model.loss_weights.mse",
    ("DeconvNetConfig", "presence_weight"): "deconv.model.loss_weights.presence",
    ("DeconvNetConfig", "sparsity_weight"): "deconv.model.loss_weights.sparsity",
    ("TrainConfig", "device"): "config.device",
}


@functools.cache
def _config_dataclasses() -> dict[type, str]:
    """Every dataclass named ``*Config`` in genomelab -> the config path it views."""
    found: dict[type, str] = {}
    for info in pkgutil.walk_packages(genomelab.__path__, "genomelab."):
        if info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if (
                isinstance(obj, type)
                and dataclasses.is_dataclass(obj)
                and obj.__module__ == module.__name__
                and name.endswith("Config")
            ):
                found[obj] = PARTIAL_VIEWS.get(obj) or getattr(obj, "SECTION", None)
    return found


def _filled_config() -> dict:
    return fill_defaults({}, SCHEMA)


def _walk(config: dict, path: str):
    node = config
    for part in path.split("."):
        node = node[part]
    return node


@dataclasses.dataclass
class _Inner(ConfigSection):
    SECTION = "x.inner"

    a: int
    b: float = 0.5


@dataclasses.dataclass
class _Outer(ConfigSection):
    SECTION = "x"

    n: int
    inner: _Inner
    names: list[str] = dataclasses.field(default_factory=list)
    limit: int | None = None
    seed: int = 0


def test_every_config_dataclass_views_a_schema_section():
    found = _config_dataclasses()
    assert len(found) >= 20, sorted(c.__name__ for c in found)
    unmapped = sorted(f"{c.__module__}.{c.__name__}" for c, path in found.items() if not path)
    assert not unmapped, f"config dataclasses without a schema section (subclass ConfigSection): {unmapped}"
    for cls, path in found.items():
        assert "properties" in schema_node(path) or "$ref" in schema_node(path), (cls, path)


def test_no_dataclass_default_is_a_second_literal_of_a_schema_default():
    """A field backed by a schema key takes its default from the schema, never from a literal."""
    problems = []
    for cls, path in _config_dataclasses().items():
        keys = schema_defaults(path)
        for f in dataclasses.fields(cls):
            key = OTHER_KEYS.get((cls.__name__, f.name)) or (f"{path}.{f.name}" if f.name in keys else None)
            if key is None:
                continue  # supplied by the workflow (seeds, data sizes), not by the config
            factory = f.default_factory
            from_the_schema = (
                f.default is dataclasses.MISSING
                and isinstance(factory, functools.partial)
                and factory.func is schema_default
                and factory.args == (key,)
            )
            if not from_the_schema:
                literal = f.default if f.default is not dataclasses.MISSING else factory
                problems.append(f"{cls.__module__}.{cls.__name__}.{f.name} = {literal!r} (schema key {key})")
    assert not problems, "literal defaults duplicating the schema:\n" + "\n".join(problems)


def test_default_configs_equal_the_workflow_config_built_from_an_empty_config_file():
    """What a test or library user gets from ``Cls()`` is what the workflow runs with."""
    config = _filled_config()
    sizes = {"AssocModelConfig": dict(text_dim=8, max_fields=2, n_numeric_source=1, n_numeric_target=1)}
    checked = 0
    for cls, path in _config_dataclasses().items():
        if cls in PARTIAL_VIEWS or cls.__name__ == "DeconvNetConfig":
            continue
        extra = sizes.get(cls.__name__, {})
        sections = (
            [config[m]["train"] for m in ("tissue", "deconv", "regulon", "assoc", "binning")]
            if path == "train"
            else [_walk(config, path)]
        )
        for section in sections:
            assert cls.from_dict(section, **extra) == cls(**extra), (cls, path)
            checked += 1
    assert checked >= 20
    from genomelab.deconv.model import DeconvNetConfig

    deconv = config["deconv"]
    built = DeconvNetConfig.from_config(deconv["model"], 10, 3, True, deconv["presence_threshold"])
    assert built == DeconvNetConfig(n_regions=10, n_tissues=3)


def test_schema_wins_where_dataclass_and_schema_disagreed():
    from genomelab.assoc.features import FeatureConfig
    from genomelab.deconv.mixtures import PhaseConfig
    from genomelab.train import TrainConfig

    assert TrainConfig().max_epochs == schema_default("train.max_epochs") == 50
    assert FeatureConfig().max_fields == schema_default("assoc.features.max_fields") == 2
    assert PhaseConfig().background == schema_default("deconv.mixtures.phase3.background") == []
    # Mutable defaults are copies: one instance cannot change another's default.
    a, b = PhaseConfig(), PhaseConfig()
    a.background.append("Liver")
    assert b.background == schema_default("deconv.mixtures.phase1.background")


def test_typed_config_builds_nested_sections_and_supplied_fields():
    cfg = typed_config(_Outer, {"n": 3, "inner": {"a": 1}, "names": ("x",)}, where="x", seed=7)
    assert cfg == _Outer(n=3, inner=_Inner(a=1), names=("x",), seed=7)
    assert typed_config(_Outer, {"n": 1, "inner": {"a": 2, "b": 1}, "limit": None}, where="x").inner.b == 1


@pytest.mark.parametrize(
    ("section", "extra", "message"),
    [
        ({"n": 1, "inner": {"a": 1}, "nn": 2}, {}, r"unknown option tissue\.model\.nn"),
        ({"n": 1, "inner": {"a": 1, "c": 2}}, {}, r"unknown option tissue\.model\.inner\.c"),
        ({"inner": {"a": 1}}, {}, r"missing option tissue\.model\.n\b"),
        ({"n": 1, "inner": {}}, {}, r"missing option tissue\.model\.inner\.a"),
        ({"n": "3", "inner": {"a": 1}}, {}, r"tissue\.model\.n must be int, not str '3'"),
        ({"n": True, "inner": {"a": 1}}, {}, r"tissue\.model\.n must be int, not bool"),
        ({"n": 1, "inner": {"a": 1, "b": "x"}}, {}, r"tissue\.model\.inner\.b must be float/int"),
        ({"n": 1, "inner": {"a": 1}, "names": "abc"}, {}, r"tissue\.model\.names must be list/tuple"),
        ({"n": 1, "inner": {"a": 1}, "limit": 1.5}, {}, r"tissue\.model\.limit must be NoneType/int"),
        ({"n": 1, "inner": {"a": 1}, "seed": 3}, {"seed": 1}, r"tissue\.model\.seed is set by the workflow"),
        ([1, 2], {}, r"tissue\.model must be a mapping"),
    ],
)
def test_typed_config_names_the_section_path_and_key(section, extra, message):
    with pytest.raises(ConfigError, match=message):
        typed_config(_Outer, section, where="tissue.model", **extra)


def test_config_section_from_dict_uses_its_section_path():
    from genomelab.tissue.models import MLPConfig

    with pytest.raises(ConfigError, match=r"unknown option tissue\.mlp\.hiden"):
        MLPConfig.from_dict({"hiden": [3]})
    with pytest.raises(ConfigError, match=r"unknown option deconv\.mixtures\.phase3\.n_tran"):
        importlib.import_module("genomelab.deconv.mixtures").PhaseConfig.from_dict(
            {"n_tran": 3}, where="deconv.mixtures.phase3"
        )
    with pytest.raises(TypeError, match="no field"):
        MLPConfig.from_dict({}, seed=1)


def test_schema_paths_fail_loudly():
    with pytest.raises(ConfigError, match=r"no key tissue\.mlp\.width"):
        schema_node("tissue.mlp.width")
    with pytest.raises(ConfigError, match="no schema"):
        schema_node("nomodule.x")
    with pytest.raises(ConfigError, match="has no default"):
        schema_default("tissue")  # the root of tissue.schema.yaml has no default
    field = from_schema("tissue.mlp.hidden")
    assert field.default_factory() == [256, 128] and field.default_factory() is not field.default_factory()


def _smk(**params):
    return SimpleNamespace(rule="deconv_reference", params=SimpleNamespace(**params))


def test_param_decodes_config_json_and_passes_other_values_through():
    section = {"b": [1, 2], "a": {"x": None}}
    smk = _smk(reference=json.dumps(section, sort_keys=True), seed=3, device="auto", data={"k": 1}, fr=[0.5])
    assert param(smk, "reference") == section
    assert param(smk, "seed") == 3
    assert param(smk, "device") == "auto"
    assert param(smk, "data") == {"k": 1}
    assert param(smk, "fr") == [0.5]
    assert param(_smk(lst="[1, 2]"), "lst") == [1, 2]


def test_param_errors_name_the_rule_and_param():
    with pytest.raises(ConfigError, match=r"rule deconv_reference has no params\.referense"):
        param(_smk(reference="{}"), "referense")
    with pytest.raises(ConfigError, match=r"rule deconv_reference: params\.reference is not valid JSON"):
        param(_smk(reference="{'a': 1}"), "reference")


def _readme_section(module: str) -> str:
    text = (ROOT / "config" / "README.md").read_text()
    return next(p for p in text.split("\n## ") if p.split("\n", 1)[0].strip() == module)


def _schema_keys(node: dict, prefix: str = "") -> list[str]:
    """Dotted keys of a module schema's values (objects' own keys, not the objects); `$ref` sections (train,
    evaluation) and `predict` are documented in their own tables of config/README.md."""
    keys = []
    for key, sub in node.get("properties", {}).items():
        dotted = f"{prefix}{key}"
        if "$ref" in sub or dotted == "predict":
            continue
        keys += _schema_keys(sub, f"{dotted}.") if "properties" in sub else [dotted]
    return keys


@pytest.mark.parametrize("module", ["tissue", "deconv", "regulon", "assoc", "binning"])
def test_config_readme_names_every_predict_key_of_the_module(module):
    """The `<module>.predict` table of config/README.md names each module's predict keys
    (regulon's `annotation` was left out: a gene-annotation model cannot predict without it)."""
    section = _readme_section("`<module>.predict` (every module; docs/predict.md)")
    named = set(re.findall(r"`(?:[\w.]*\.)?(\w+)`", section))
    keys = list(schema_node(module)["properties"]["predict"]["properties"])
    missing = [k for k in keys if k not in named]
    assert not missing, f"config/README.md's <module>.predict table does not name {module}.predict.{missing}"


@pytest.mark.parametrize("module", ["ingest", "tissue", "deconv", "regulon", "assoc", "binning"])
def test_config_readme_names_every_key_of_the_module_with_its_default(module):
    """config/README.md "explains every key": each schema key is named (as `key`, `a.key` or
    its object's name), and a row giving one key and one plain value gives the schema default."""
    section = _readme_section(module)
    named = set(re.findall(r"`(?:[\w.]*\.)?(\w+)(?:\.\*)?`", section))
    keys = _schema_keys(schema_node(module))
    missing = [k for k in keys if not {k.split(".")[-1], (k.split(".")[-2:-1] or [""])[0]} & named]
    assert not missing, f"config/README.md section {module} does not name {missing}"
    for key, cell in re.findall(r"^\| `([\w.]+)` \| `?([^|`\s]+)`? \|", section, flags=re.M):
        default = schema_default(f"{module}.{key}")
        if isinstance(default, bool) or default is None or default == "":
            ok = cell == json.dumps(default)
        elif isinstance(default, (int, float)):
            ok = float(cell.replace(",", "")) == default
        else:
            ok = cell == default or not isinstance(default, str)
        assert ok, f"config/README.md gives {module}.{key} the default {cell!r}, the schema {default!r}"


# JSON-schema keywords a property's schema may carry (what the module schemas use).
_SCHEMA_KEYWORDS = {
    "type",
    "default",
    "description",
    "properties",
    "additionalProperties",
    "items",
    "enum",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "minLength",
    "pattern",
    "required",
    "$ref",
    "oneOf",
    "anyOf",
    "allOf",
    "not",
    "const",
    "uniqueItems",
    "propertyNames",
    "patternProperties",
    "examples",
    "title",
    "if",
    "then",
    "else",
    "minProperties",
    "maxProperties",
    "$schema",
    "$id",
    "definitions",
    "$defs",
    "format",
}


def _stray_keys(node, where: str) -> list[str]:
    """Keys of property schemas under ``node`` that are no JSON-schema keyword: a flow-style
    `{..., description: a, b}` ends the description at the comma and makes `b` a key."""
    found: list[str] = []
    if isinstance(node, dict):
        found += [f"{where}: {k!r}" for k in node if k not in _SCHEMA_KEYWORDS]
        for name, sub in (node.get("properties") or {}).items():
            found += _stray_keys(sub, f"{where}.{name}")
        if isinstance(node.get("items"), dict):
            found += _stray_keys(node["items"], f"{where}[]")
    return found


@pytest.mark.parametrize("schema", sorted(p.name for p in SCHEMA.parent.glob("*.schema.yaml")))
def test_schema_descriptions_are_whole(schema):
    """Every description reaches `genomelab init` and config/README.md whole: a comma inside an
    unquoted flow-style description cut tissue.predict.inputs' to 'Samples to classify
    (features HDF5' and made the rest of it stray schema keys."""
    import yaml

    raw = yaml.safe_load((SCHEMA.parent / schema).read_text())
    stray = [s for name, sub in raw["properties"].items() for s in _stray_keys(sub, name)]
    assert not stray, f"{schema}: keys that are no schema keyword (a cut description?): {stray}"


def test_schema_files_are_parsed_once_and_as_the_safe_loader_reads_them(tmp_path):
    """Snakemake's parse read each schema from several places: 33 parses per start. A file
    is now parsed once per version (an edited file is read again), with libyaml where PyYAML
    has it, into what yaml.safe_load reads."""
    import os

    import yaml
    from genomelab.config import SCHEMA_DIR
    from genomelab.config_schema import load_schema_file

    for path in sorted(SCHEMA_DIR.glob("*.schema.yaml")):
        assert load_schema_file(path) == yaml.safe_load(path.read_text()), path.name
        assert load_schema_file(path) is load_schema_file(path)
    own = tmp_path / "toy.schema.yaml"
    own.write_text("properties: {a: {default: 1}}\n")
    first = load_schema_file(own)
    own.write_text("properties: {a: {default: 22}}\n")
    os.utime(own, ns=(0, own.stat().st_mtime_ns + 1_000_000))
    assert first["properties"]["a"]["default"] == 1
    assert load_schema_file(own)["properties"]["a"]["default"] == 22
