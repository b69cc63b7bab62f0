"""Each module's "Your own data" example (docs/<module>.md) runs as it stands.

The example's blocks marked ``<!-- file: PATH -->`` (its config and its input tables) are
written to PATH in a copy of the repository; the files those tables name (NPZ samples,
FASTA, BSON dumps, methylation calls) are made here with small data. ``snakemake -n`` with
the example's config must then plan that module's jobs, its gate and the run report, and
nothing else. Where a real run is cheap on a CPU, a ``slow`` test runs it.
"""

from __future__ import annotations

import csv
import gzip
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import test_workflow
import yaml
from test_workflow import job_counts, snakemake

# The same fixture as test_workflow.py's: a copy of the repository per module.
workdir = test_workflow.workdir

ROOT = Path(__file__).resolve().parents[1]
MODULES = ("tissue", "deconv", "regulon", "assoc", "binning", "ingest")
# Rules of every run besides its modules' own.
RUN_RULES = {"all", "gate", "report_summary", "report_software_versions"}
MARK = re.compile(r"^<!-- (file|bson): (\S+) -->\n```[a-z]*\n(.*?)^```", flags=re.M | re.S)


def own_data_section(module: str) -> str:
    """The text of the "## Your own data" section of docs/<module>.md."""
    text = (ROOT / "docs" / f"{module}.md").read_text()
    start = text.find("\n## Your own data\n")
    assert start >= 0, f"docs/{module}.md has no '## Your own data' section"
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else len(text)]


def marked_blocks(module: str, kind: str = "file") -> dict[str, str]:
    """``{path or name: block text}`` of the section's blocks marked ``<!-- kind: ... -->``."""
    return {name: body for k, name, body in MARK.findall(own_data_section(module)) if k == kind}


class Example:
    """One module's example: its config (the one marked ``.yaml`` block) and input tables."""

    def __init__(self, module: str, root: Path):
        self.module, self.root = module, root
        self.blocks = marked_blocks(module)
        configs = [name for name in self.blocks if name.endswith(".yaml")]
        assert len(configs) == 1, f"docs/{module}.md: mark exactly one config block, found {configs}"
        self.config_name = configs[0]
        self.config = yaml.safe_load(self.blocks[self.config_name])
        self.run = self.config["run"]

    def write(self, name: str) -> Path:
        """Write the marked block ``name`` to that path under the repository copy."""
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.blocks[name])
        return path

    def rows(self, name: str) -> list[dict[str, str]]:
        """The rows of the tab-separated block ``name``."""
        return list(csv.DictReader(self.blocks[name].splitlines(), delimiter="\t"))

    def write_config(self) -> Path:
        return self.write(self.config_name)

    def section(self) -> dict:
        return self.config[self.module]


def plan(root: Path, *configs: Path) -> dict[str, int]:
    """``{rule: jobs}`` of a dry run of ``configs``; the dry run must succeed."""
    res = snakemake(root, "-n", "--cores", "2", "--configfile", *map(str, configs))
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return job_counts(res.stdout)


def assert_plans_only(example: Example, counts: dict[str, int]) -> None:
    modules = {rule.split("_")[0] for rule in counts if rule not in RUN_RULES}
    assert modules == {example.module}, counts
    assert counts.get("report_summary") == 1, counts


# -- the input files each example describes, made with small data


def simulated_npz(folder: Path, tissues: list[str], per_tissue: int = 2) -> list[Path]:
    """Tiny NPZ samples of the tissue simulator (same regions in each), in simulator order."""
    from genomelab.io.sheets import read_sample_sheet
    from genomelab.tissue.simulate import SimulationConfig, simulate_dataset

    cfg = SimulationConfig(tissues=tissues, n_subtypes=1, samples_per_subtype=per_tissue, n_regions=40)
    return [rec.file for rec in read_sample_sheet(simulate_dataset(cfg, folder))]


def npz_sheet(example: Example, name: str) -> Path:
    """Write the sheet block ``name`` and a simulated NPZ at each file it names."""
    sheet = example.write(name)
    rows = example.rows(name)
    made = simulated_npz(example.root / "simulated" / example.run, ["A", "B"])
    # A dry run reads the sheet, not the NPZ contents: any valid sample stands in for each row.
    for row, source in zip(rows, made * len(rows), strict=False):
        dest = sheet.parent / row["file"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, dest)
    return sheet


# -- tissue


def test_every_module_doc_has_an_own_data_example():
    for module in MODULES:
        blocks = marked_blocks(module)
        assert any(name.endswith(".yaml") for name in blocks), f"docs/{module}.md: no marked config"
        text = own_data_section(module)
        for needed in ("snakemake -n", "--profile profiles/slurm", f"results/{Example(module, ROOT).run}/"):
            assert needed in text, f"docs/{module}.md 'Your own data' does not show {needed!r}"


def test_every_path_the_config_names_is_a_marked_block_or_made_by_the_test():
    """The config's input paths are the doc's own blocks' paths (so the doc is consistent)."""
    for module in MODULES:
        example = Example(module, ROOT)
        named = [v for v in _strings(example.section()) if "/" in v and not v.startswith("results/")]
        for value in named:
            assert value.startswith(f"data/{example.run}/"), (module, value)


def _strings(node) -> list[str]:
    if isinstance(node, dict):
        return [s for v in node.values() for s in _strings(v)]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


def tissue_inputs(example: Example) -> None:
    npz_sheet(example, example.section()["input"]["sheet"])


def test_the_tissue_example_plans_only_tissue(workdir):
    example = Example("tissue", workdir)
    tissue_inputs(example)
    counts = plan(workdir, example.write_config())
    assert_plans_only(example, counts)
    assert "tissue_simulate" not in counts
