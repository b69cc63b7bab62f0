"""A commented starting config for one module (``genomelab init <module>``), written from the schema.

The module is enabled, the run is named, the inputs a user must point at their own data are
``<...>`` placeholders (Snakemake stops while one is left), and every other key of the module
and of the top level is written commented out at its schema default with the schema's
description. Because it is generated from ``workflow/schemas/``, the template never drifts from
what the workflow runs with.
"""

from __future__ import annotations

from typing import Any

import yaml

from genomelab import __version__
from genomelab.config import schema_properties

# Config sections a user can turn on, each with the keys that point it at the user's data:
# dotted key (below the module) -> placeholder, or a fixed value that selects the own-data path.
# tests/test_config_layering.py checks that every key exists in the module's schema.
OWN_DATA: dict[str, dict[str, Any]] = {
    "tissue": {"input.source": "sheet", "input.sheet": "<path/to/samples.tsv>"},
    "deconv": {"input.sample_sheet": "<path/to/samples.tsv>"},
    "regulon": {"dump_dir": "<path/to/regulondb_dump>", "genome": "<path/to/genome.fna.gz>"},
    "assoc": {
        "data.links": "<path/to/links.tsv>",
        "data.sources": "<path/to/sources.tsv>",
        "data.targets": "<path/to/targets.tsv>",
    },
    "binning": {"input.contigs": "<path/to/contigs.fna.gz>"},
    "ingest": {"samples": "<path/to/ingest_samples.tsv>", "regions": "<path/to/regions.bed>"},
}
RUN_PLACEHOLDER = "<name of this run, e.g. cohort1>"
# Per-job resource overrides are keyed by module; the template keeps its own module's.
PER_MODULE = {"resources.training"}
# Keys a module reads from elsewhere: written as a note, not at a default that does nothing
# (assoc trains every grid point with the grid's lr and batch size, and refuses other
# values under train; the template showed "lr: 0.001" while runs trained at 1e-4).
USED_FROM = {"assoc.train.lr": "assoc.grid.lr", "assoc.train.batch_size": "assoc.grid.batch_size"}


def config_template(module: str, filename: str = "my.yaml") -> str:
    """The YAML text of a starting config that enables ``module`` alone (to be saved as ``filename``)."""
    if module not in OWN_DATA:
        raise ValueError(f"no module {module!r}; genomelab init knows {', '.join(OWN_DATA)}")
    values: dict[str, Any] = {"run": RUN_PLACEHOLDER, f"{module}.enabled": True}
    values.update({f"{module}.{key}": value for key, value in OWN_DATA[module].items()})
    lines = [
        f"# genomelab config for your own data, module {module} (genomelab init {module}; genomelab {__version__}).",
        "# 1. Replace every <...> placeholder (Snakemake stops while one is left).",
        f"# 2. Check the plan, then run:  snakemake -n --configfile {filename};  snakemake --cores 4 --configfile {filename}",
        "# Outputs go to results/<run>/, logs to logs/<run>/: a new run name never overwrites another run.",
        "# Commented lines are the other options at their defaults (workflow/schemas/; config/README.md",
        "# explains each): uncomment a line and change its value to use it. Other modules stay off.",
    ]
    for key, node in schema_properties("config").items():
        if key in OWN_DATA and key != module:
            continue
        lines += _emit(key, node, key, 0, values, module)
    return "\n".join(lines) + "\n"


def _sets(path: str, values: dict[str, Any]) -> bool:
    return any(key == path or key.startswith(f"{path}.") for key in values)


def _emit(
    key: str, node: dict[str, Any], path: str, depth: int, values: dict, module: str, block: int | None = None
) -> list[str]:
    """Lines of ``key`` and its sub-keys. Keys ``values`` sets (and their parents) are live; the
    rest are commented out with the "# " at the indentation of the outermost commented key
    (``block``), so that uncommenting a whole block removes one "# " per line."""
    live = block is None and _sets(path, values)
    if not live and block is None:
        block = depth

    def line(text: str) -> str:
        return "  " * depth + text if live else "  " * block + "# " + "  " * (depth - block) + text

    if path in USED_FROM:
        return [line(f"# {key}: not set here: each run takes its own {USED_FROM[path]}")]
    note = f"  # {' '.join(node['description'].split())}" if node.get("description") else ""
    children = schema_properties(f"config.{path}")
    if path in PER_MODULE:
        children = {k: v for k, v in children.items() if k.startswith(module)}
    if children:
        lines = [line(f"{key}:{note}")]
        for sub_key, sub in children.items():
            lines += _emit(sub_key, sub, f"{path}.{sub_key}", depth + 1, values, module, block)
        return lines
    if live:
        return [line(f"{key}: {_flow(values[path])}{note}")]
    if "default" not in node:
        return [line(f"{key}:{note or '  #'} (no default)")]
    return [line(f"{key}: {_flow(node['default'])}{note}")]


def _flow(value: Any) -> str:
    """``value`` as one line of YAML (flow style for lists and mappings)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return text.removesuffix("\n...").removesuffix("...").strip()
