"""The config a workflow run uses: the user's own file(s), schema defaults, nothing else.

No config file is read behind the user's back: the demo is ``config/demo.yaml``, passed like
any other with ``--configfile``. Every key a user leaves out takes its schema default, every
module is off unless the config turns it on, and ``run`` names the folders the run writes
(``results/<run>/``, ``logs/<run>/``), so two datasets never share one. The checks here stop
Snakemake at parse time with a message that says what to do.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from genomelab.config import ConfigError, own_data_keys
from genomelab.config_schema import fill_defaults

# Inputs an enabled module cannot run without (no demo data stands in for them): dotted key,
# or "a|b|..." for any one of several keys (regulon: a dump, a live MongoDB or flat files,
# docs/regulon.md).
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "regulon": ("dump_dir|mongodb_uri_env|flat_files.genes|flat_files.operons", "genome"),
    "assoc": ("data.links", "data.sources", "data.targets"),
}
# An unfilled value of a starter config written by ``genomelab init``: "<what to put here>".
PLACEHOLDER = re.compile(r"^<[^<>]*>$")
# What a user runs instead, quoted in every message that stops a run without a usable config.
HOW_TO = (
    "Run the demo with `make demo` (or `snakemake --cores 2 --configfile config/demo.yaml`), or "
    "write a config for your data with `genomelab init <module> --out my.yaml`, fill it in and "
    "run `snakemake --cores 4 --configfile my.yaml`."
)

# Modules whose data the workflow can also simulate (the demo's), with the keys that name a
# user's own data: their schemas' `x-own-data` lists. Enabled with none of them set, such a
# module would train on simulated data under the user's run name: it does so only when the
# config asks for it, with a `<module>.simulate` section (or tissue.input.source: simulate).
OWN_DATA_INPUTS: dict[str, tuple[str, ...]] = {m: own_data_keys(m) for m in ("tissue", "deconv")}

# Modules whose `<module>_predict` rule runs without the module's training (`enabled: false`
# with `predict.inputs` set: a predict-only run, e.g. ingest new samples and classify them
# with an earlier run's model), with the keys that must then name that run's files.
PREDICT_ONLY: dict[str, tuple[str, ...]] = {
    "tissue": ("predict.model",),
    "deconv": ("predict.model", "predict.reference"),
}


def predict_only(config: Mapping[str, Any]) -> list[str]:
    """Modules that are off but have ``predict.inputs`` set: their predict rule is the run's."""
    return [
        m
        for m in PREDICT_ONLY
        if isinstance(config.get(m), Mapping)
        and not config[m].get("enabled")
        and (config[m].get("predict") or {}).get("inputs")
    ]


def _check_predict_sections(
    config: Mapping[str, Any], configfiles: Sequence[str | os.PathLike], modules: list[str]
) -> list[str]:
    """The predict-only modules of ``config`` (:func:`predict_only`); ConfigError when one
    leaves the files it needs unnamed, or a module without predict-only runs is off with
    ``predict.inputs`` set."""
    predicting = predict_only(config)
    unnamed = [f"{m}.{key}" for m in predicting for key in PREDICT_ONLY[m] if not _get(config[m], key)]
    if unnamed:
        raise ConfigError(
            f"{_named(configfiles)} sets {', '.join(f'{m}.predict.inputs' for m in predicting)} with the "
            f"module off, a predict-only run, but leaves {', '.join(unnamed)} empty: this run trains "
            "no model to predict with. Name a trained run's files (tissue: results/<run>/tissue/"
            "train/<model>/model.pt; deconv: results/<run>/deconv/phase3/sparse/rep0/model.pt and "
            "results/<run>/deconv/reference/reference.tsv), or enable the module to train first "
            "(docs/predict.md)"
        )
    # The other modules' predict rules read their own run's files (assoc its links, regulon
    # its gene table, binning its settings): off with predict.inputs set they would plan
    # nothing, silently.
    idle = [
        m
        for m in modules
        if m not in PREDICT_ONLY
        and isinstance(config[m].get("predict"), Mapping)
        and config[m]["predict"].get("inputs")
        and not config[m]["enabled"]
    ]
    if idle:
        raise ConfigError(
            f"{_named(configfiles)} sets {', '.join(f'{m}.predict.inputs' for m in idle)} with the "
            f"module off: its predict rule runs only inside a run that trains it (predict-only runs "
            f"exist for {' and '.join(PREDICT_ONLY)}). Use `genomelab predict {idle[0]} --model "
            f"results/<run>/{idle[0]}/... --inputs ...` with an earlier run's model, or enable the "
            "module (docs/predict.md)"
        )
    return predicting


def _asks_for_simulation(config: Mapping[str, Any], module: str) -> bool:
    """Whether the user's (unfilled) config asks for ``module``'s simulated data."""
    section = config.get(module)
    if not isinstance(section, Mapping):
        return False
    source = section.get("input", {}).get("source") if isinstance(section.get("input"), Mapping) else None
    return "simulate" in section or source == "simulate"


def _named(configfiles: Sequence[str | os.PathLike], cli: Mapping[str, Any] | None = None) -> str:
    """The config's sources for a message: its files, and the ``--config`` values concerned."""
    files = ", ".join(str(p) for p in configfiles)
    if not cli:
        return files or "the --config values"
    given = f"--config {', '.join(cli)}"
    if any(isinstance(v, (Mapping, list)) for v in cli.values()):
        # Snakemake's --config 'resources={training_mem_mb: 8000}' keeps 8000 a string.
        given += (
            " (Snakemake reads the values inside a nested --config value as strings: write "
            "nested sections such as resources or a module's settings in a config file)"
        )
    return f"{files} with {given}" if files else given


def _overridden(problems: Sequence[str], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``--config`` values among the top-level keys of ``problems`` (``key.sub: message``)."""
    tops = {re.split(r"[.:\[]", p, maxsplit=1)[0] for p in problems}
    return {k: v for k, v in sorted((overrides or {}).items()) if k in tops}


def placeholders(config: Any, where: str = "") -> list[str]:
    """Dotted keys (``tissue.input.sheet``) whose value is still a ``<...>`` placeholder."""
    found: list[str] = []
    if isinstance(config, Mapping):
        for key, value in config.items():
            found += placeholders(value, f"{where}.{key}" if where else str(key))
    elif isinstance(config, list):
        for i, value in enumerate(config):
            found += placeholders(value, f"{where}[{i}]")
    elif isinstance(config, str) and PLACEHOLDER.match(config):
        found.append(where)
    return found


def _other_inputs(key: str) -> str:
    """For a placeholder of one of a module's own-data inputs (``genomelab init deconv``
    writes ``input.sample_sheet``), the others that can name the data instead (an atlas
    alone), so a user who has one of those knows to delete the line; else ""."""
    module, _, rest = key.partition(".")
    own = OWN_DATA_INPUTS.get(module, ())
    others = [f"{module}.{k}" for k in own if k != rest]
    if rest not in own or not others:
        return ""
    return f" (or delete that line if your data is named by {' or '.join(others)} instead)"


def _check_targets_read_as_configs(
    configfiles: Sequence[str | os.PathLike], schema_path: str | os.PathLike
) -> None:
    """Refuse a non-YAML "config file" with keys the config does not know: `snakemake
    --configfile my.yaml results/x/summary.json` reads every path after --configfile as a
    config file, and a target placed there came back as a screen of unknown keys (its JSON's)
    without a word of the cause. A YAML file's unknown keys are left to the schema's messages."""
    import yaml

    from genomelab.config_schema import load_schema_file

    known = set(load_schema_file(schema_path).get("properties", {}))
    strays = {}
    for path in configfiles:
        if Path(path).suffix.lower() in (".yaml", ".yml"):
            continue
        try:
            with open(path, encoding="utf-8") as fh:
                content = yaml.safe_load(fh)
        except (OSError, yaml.YAMLError, UnicodeDecodeError):
            continue  # Snakemake itself reports a config file it cannot read
        unknown = sorted(set(content) - known) if isinstance(content, Mapping) else []
        if unknown:
            strays[str(path)] = unknown
    if strays:
        named = "; ".join(
            f"{p} (keys {', '.join(k[:5])}{', ...' if len(k) > 5 else ''})" for p, k in strays.items()
        )
        raise ConfigError(
            f"{named}: read as a config file, with keys that are no config keys. Snakemake's "
            "--configfile takes every path after it: name targets before it (`snakemake "
            "results/<run>/tissue/summary.json --configfile my.yaml`) or end the list with "
            "another option."
        )


def load_run_config(
    config: dict[str, Any],
    configfiles: Sequence[str | os.PathLike],
    schema_path: str | os.PathLike,
    modules: Iterable[str],
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check ``config`` (what Snakemake read from ``configfiles`` and ``--config``), fill its
    schema defaults in place and validate it; raise ConfigError saying what to fix.

    The one validation of the config: :func:`fill_defaults` fills every default (across the
    module schema files) and :func:`schema_errors` reports every problem, one line per key.
    Snakemake's ``validate(config, schema)`` is not run as well: after these it filled
    nothing and could fail on nothing, and where it did fail it printed the whole schema
    section and config instead of the key.

    ``modules`` are the config sections with an ``enabled`` key; at least one must be on.
    ``overrides`` are the ``--config`` values: a problem in one of them is named as such.
    """
    if not config and not configfiles:
        raise ConfigError(f"No config given: genomelab reads no config file by default. {HOW_TO}")
    if "run" not in config:
        raise ConfigError(
            f"{_named(configfiles)} names no run: add a line `run: <name>` (a dataset or "
            "experiment name); outputs then go to results/<name>/ and logs to logs/<name>/, "
            "so runs with other names never overwrite them."
        )
    unfilled = placeholders(config)
    if unfilled:
        raise ConfigError(
            f"{_named(configfiles)} still has placeholders to fill in: "
            + ", ".join(
                f"{key} = {_get(config, key)!r}{_given_instead(config, key) or _other_inputs(key)}"
                for key in unfilled
            )
        )
    _check_targets_read_as_configs(configfiles, schema_path)
    simulated = {m for m in OWN_DATA_INPUTS if _asks_for_simulation(config, m)}
    # As written, before the defaults: assoc.train.lr at its default value is still unused.
    assoc = config.get("assoc")
    assoc_train = assoc.get("train") if isinstance(assoc, Mapping) else None
    assoc_train = dict(assoc_train) if isinstance(assoc_train, Mapping) else {}
    fill_defaults(config, schema_path)
    problems = schema_errors(config, schema_path)
    if problems:
        raise ConfigError(
            f"{_named(configfiles, _overridden(problems, overrides))} is invalid: {len(problems)} "
            "problem(s) (config/README.md explains every key):\n" + "\n".join(f"  - {p}" for p in problems)
        )
    modules = list(modules)
    predicting = _check_predict_sections(config, configfiles, modules)
    # ingest's UXM rules (ingest.uxm.enabled) run on their own too (docs/ingest.md), and a
    # predict-only module's predict rule does.
    if (
        not any(config[m]["enabled"] for m in modules)
        and not config.get("ingest", {}).get("uxm", {}).get("enabled")
        and not predicting
    ):
        raise ConfigError(
            f"{_named(configfiles)} enables no module: every module is off unless the config "
            f"says `<module>: {{enabled: true}}` (modules: {', '.join(modules)}). {HOW_TO}"
        )
    missing = [
        " or ".join(f"{module}.{key}" for key in keys.split("|"))
        for module, required in REQUIRED_INPUTS.items()
        if config[module]["enabled"]
        for keys in required
        if not any(_get(config[module], key) for key in keys.split("|"))
    ]
    if missing:
        raise ConfigError(
            f"{_named(configfiles)} enables a module without its input(s): set {', '.join(missing)} "
            "(`genomelab init <module>` lists them; config/README.md describes each)"
        )
    _check_modules(config, configfiles, assoc_train)
    for module, keys in OWN_DATA_INPUTS.items():
        # tissue.input.source sheet or hdf5 with its file left empty: tissue's own check
        # (tissue.task.check_input) names the key to fill.
        chosen = config[module].get("input", {}).get("source", "simulate") != "simulate"
        if (
            config[module]["enabled"]
            and not chosen
            and module not in simulated
            and not any(_get(config[module], k) for k in keys)
        ):
            raise ConfigError(
                f"{_named(configfiles)} enables {module} but names no data of yours "
                f"({' or '.join(f'{module}.{k}' for k in keys)}) and does not ask for the demo's "
                f"simulated data: set your input (docs/{module}.md, 'Your own data'), or add "
                f"`simulate: {{}}` under {module} to train on simulated data on purpose"
            )
    beside = [
        (key, value, found)
        for module in modules
        if config[module]["enabled"]
        for key, value, found in _beside_config(config[module], configfiles, module)
    ]
    if beside:
        raise ConfigError(
            f"{_named(configfiles)}: relative paths are taken from the folder Snakemake runs in "
            f"({Path.cwd()}), not from the config file's folder: "
            + "; ".join(f"{key} = {value!r} is not there but is {found}" for key, value, found in beside)
            + ". Write absolute paths (or paths relative to that folder)."
        )
    return config


def _check_modules(
    config: Mapping[str, Any], configfiles: Sequence[str | os.PathLike], assoc_train: Mapping[str, Any]
) -> None:
    """The enabled modules' own parse-time checks; ``assoc_train`` is assoc.train as written."""
    if config["regulon"]["enabled"]:
        _check_regulon_flat_files(config["regulon"], configfiles)
    if config["assoc"]["enabled"]:
        from genomelab.assoc.grid import check_train_keys

        try:
            check_train_keys(assoc_train, config["assoc"]["grid"])
        except ValueError as exc:
            raise ConfigError(f"{_named(configfiles)}: {exc}") from None


def _beside_config(
    node: Any, configfiles: Sequence[str | os.PathLike], where: str
) -> Iterable[tuple[str, str, Path]]:
    """(key, value, file) for each relative path value that does not exist from the working
    directory but does beside one of ``configfiles``: the config was written with paths
    relative to itself, which Snakemake does not read them as. Only values shaped like a path
    (a folder part or a file suffix: ``data/x.h5``, ``samples.tsv``) are looked for: a word
    (``contrastive``, a tissue name) is a setting, whatever the config's folder holds."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _beside_config(value, configfiles, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _beside_config(value, configfiles, f"{where}[{i}]")
    elif (
        isinstance(node, str)
        and node
        and ("/" in node or Path(node).suffix)
        and not os.path.isabs(node)
        and not os.path.exists(node)
    ):
        for configfile in configfiles:
            folder = Path(configfile).resolve().parent
            if folder != Path.cwd().resolve() and (folder / node).exists():
                yield where, node, folder / node
                break


# Longest value quoted in a schema error (a whole section would bury the message).
MAX_ERROR_CHARS = 300


def schema_errors(config: Mapping[str, Any], schema_path: str | os.PathLike) -> list[str]:
    """Every way ``config`` breaks the schema, one line each, led by the dotted key
    (``tissue.train.max_epochs: 'five' is not of type 'integer'``); an unknown key gets the
    closest known one or the keys allowed there. [] when the config is valid.

    Snakemake's own validation reports only the first error, followed by the whole schema
    section and the whole config (1,600 lines for one misspelt key of a module).
    """
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    from jsonschema import Draft202012Validator
    from referencing import Registry, Resource

    from genomelab.config_schema import load_schema_file as load

    path = Path(schema_path).resolve()
    schema = {**load(path), "$id": path.as_uri()}
    registry: Registry = Registry(
        retrieve=lambda uri: Resource.from_contents(load(url2pathname(urlparse(uri).path)))
    )
    validator = Draft202012Validator(schema, registry=registry)
    problems = []
    for err in sorted(validator.iter_errors(config), key=lambda e: [str(k) for k in e.absolute_path]):
        # tissue.models[1], as placeholders() names list items.
        where = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in err.absolute_path).lstrip(".")
        if err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            allowed = list(err.schema.get("properties", {}))
            for key in [k for k in err.instance if k not in allowed]:
                close = difflib.get_close_matches(str(key), allowed, n=1)
                hint = (
                    f"did you mean {'.'.join(filter(None, [where, close[0]]))}?"
                    if close
                    else f"keys allowed here: {', '.join(allowed)}"
                )
                problems.append(
                    f"{'.'.join(filter(None, [where, str(key)]))}: unknown key ('{key}' was unexpected; {hint})"
                )
            continue
        message = err.message
        if len(message) > MAX_ERROR_CHARS:
            message = message[:MAX_ERROR_CHARS] + " ..."
        problems.append(f"{where or 'the config'}: {message}")
    return problems


def _given_instead(config: Mapping[str, Any], dotted: str) -> str:
    """For a placeholder left in one of several alternative inputs (regulon.dump_dir, when
    flat files are given): that the line is to delete, naming the alternative given."""
    module, _, key = dotted.partition(".")
    section = config.get(module)
    for keys in REQUIRED_INPUTS.get(module, ()):
        alternatives = keys.split("|")
        if key not in alternatives or not isinstance(section, Mapping):
            continue
        for other in alternatives:
            try:
                value = _get(section, other)
            except (KeyError, TypeError, IndexError):
                continue
            if other != key and value and not PLACEHOLDER.match(str(value)):
                return f" (delete this line: {module}.{other} is given instead)"
    return ""


def _check_regulon_flat_files(regulon: Mapping[str, Any], configfiles: Sequence[str | os.PathLike]) -> None:
    """Flat files replace ``dump_dir``: they are then the only source of operons (without an
    operons file the operon target is all 0 and the gate stops the run after the data step),
    and the operons' members need genes (a genes file or ``annotation``)."""
    flat = regulon.get("flat_files") or {}
    if not (flat.get("genes") or flat.get("operons")):
        return
    where = _named(configfiles)
    if regulon.get("mongodb_uri_env"):
        raise ConfigError(f"{where}: give one of regulon.flat_files and regulon.mongodb_uri_env, not both")
    if not flat.get("operons"):
        raise ConfigError(
            f"{where}: regulon.flat_files.genes is set but regulon.flat_files.operons is not: flat "
            "files replace dump_dir, so no operon would be read, the operon target would be all 0 "
            "and the gate would stop the run before training; give the operons file (OperonSet.txt "
            "or a 10.x-12.x OperonSet datamart) as regulon.flat_files.operons"
        )
    if not flat.get("genes") and not regulon.get("annotation"):
        raise ConfigError(
            f"{where}: regulon.flat_files.operons is set but neither regulon.flat_files.genes nor "
            "regulon.annotation: the operons' genes would have no coordinates; give the genes file "
            "(GeneProductSet) as regulon.flat_files.genes or a GFF3/GenBank as regulon.annotation"
        )


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in re.split(r"\.|\[(\d+)\]", dotted):
        if part:
            node = node[int(part)] if isinstance(node, list) else node[part]
    return node
