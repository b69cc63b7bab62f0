"""The config a workflow run uses: the user's own file(s), schema defaults, nothing else.

No config file is read behind the user's back: the demo is ``config/demo.yaml``, passed like
any other with ``--configfile``. Every key a user leaves out takes its schema default, every
module is off unless the config turns it on, and ``run`` names the folders the run writes
(``results/<run>/``, ``logs/<run>/``), so two datasets never share one. The checks here stop
Snakemake at parse time with a message that says what to do.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from genomelab.config import ConfigError
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


def _named(configfiles: Sequence[str | os.PathLike]) -> str:
    return ", ".join(str(p) for p in configfiles) or "the --config values"


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


def load_run_config(
    config: dict[str, Any],
    configfiles: Sequence[str | os.PathLike],
    schema_path: str | os.PathLike,
    modules: Iterable[str],
) -> dict[str, Any]:
    """Check ``config`` (what Snakemake read from ``configfiles`` and ``--config``), fill its
    schema defaults in place and validate it; raise ConfigError saying what to fix.

    ``modules`` are the config sections with an ``enabled`` key; at least one must be on.
    """
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

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
            + ", ".join(f"{key} = {_get(config, key)!r}" for key in unfilled)
        )
    fill_defaults(config, schema_path)
    try:
        validate(config, str(Path(schema_path).resolve()))
    except WorkflowError as exc:
        raise ConfigError(f"{_named(configfiles)} is invalid: {exc}") from exc
    modules = list(modules)
    # ingest's UXM rules (ingest.uxm.enabled) run on their own too (docs/ingest.md).
    if not any(config[m]["enabled"] for m in modules) and not config.get("ingest", {}).get("uxm", {}).get(
        "enabled"
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


def _beside_config(
    node: Any, configfiles: Sequence[str | os.PathLike], where: str
) -> Iterable[tuple[str, str, Path]]:
    """(key, value, file) for each relative path value that does not exist from the working
    directory but does beside one of ``configfiles``: the config was written with paths
    relative to itself, which Snakemake does not read them as."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield from _beside_config(value, configfiles, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _beside_config(value, configfiles, f"{where}[{i}]")
    elif isinstance(node, str) and node and not os.path.isabs(node) and not os.path.exists(node):
        for configfile in configfiles:
            folder = Path(configfile).resolve().parent
            if folder != Path.cwd().resolve() and (folder / node).exists():
                yield where, node, folder / node
                break


def _get(config: Mapping[str, Any], dotted: str) -> Any:
    node: Any = config
    for part in re.split(r"\.|\[(\d+)\]", dotted):
        if part:
            node = node[int(part)] if isinstance(node, list) else node[part]
    return node
