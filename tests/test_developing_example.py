"""docs/DEVELOPING.md's worked example is true: its blocks, written into a copy of the
repository, make a module that Snakemake plans, lints and (slow test) runs end to end.

The doc marks each block with its first line: ``# file: <path>`` (a new file, written with
that line) or ``# edit: <path>, before: <line text>`` / ``after: <line text>`` / ``at the end``
(the block's other lines inserted there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from genomelab.config_schema import module_sections

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "DEVELOPING.md"
SCHEMA = Path("workflow") / "schemas" / "config.schema.yaml"
BLOCK_RE = re.compile(r"^```[a-z]*\n(# (?:file|edit): [^\n]*)\n(.*?)^```$", re.M | re.S)
EDIT_RE = re.compile(r"# edit: (?P<path>[^,]+), (?:(?P<where>before|after): (?P<anchor>.+)|at the end.*)$")
# The places the doc says a new module touches; anything more means the doc or the
# registration grew a step.
TOUCHED = {
    "workflow/rules/toy.smk",
    "workflow/schemas/toy.schema.yaml",
    "workflow/schemas/config.schema.yaml",
    "workflow/scripts/genomelab/steps_registry.py",
    "workflow/scripts/genomelab/toy/__init__.py",
    "workflow/scripts/genomelab/toy/data.py",
    "workflow/scripts/genomelab/toy/model.py",
    "workflow/scripts/genomelab/toy/steps.py",
    "toy.yaml",
}
TOY_RULES = {"toy_table", "toy_features", "toy_diagnostics", "toy_baselines", "toy_train", "toy_summary"}


@dataclass
class Block:
    header: str  # the marker line
    path: str
    body: str  # the lines after the marker
    where: str = "file"  # file | before | after | end
    anchor: str = ""


def example_blocks(text: str) -> list[Block]:
    blocks = []
    for match in BLOCK_RE.finditer(text):
        header, body = match.group(1), match.group(2)
        if header.startswith("# file: "):
            blocks.append(Block(header, header.removeprefix("# file: ").strip(), body))
            continue
        edit = EDIT_RE.fullmatch(header)
        assert edit, f"{DOC}: unreadable edit marker {header!r}"
        where = edit["where"] or "end"
        blocks.append(Block(header, edit["path"].strip(), body, where, (edit["anchor"] or "").strip()))
    return blocks


def apply_block(root: Path, block: Block) -> None:
    target = root / block.path
    if block.where == "file":
        assert not target.exists(), f"{DOC}: {block.path} exists already; the example must add it"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f"{block.header}\n{block.body}")
        return
    lines = target.read_text().splitlines(keepends=True)
    if block.where == "end":
        lines.append(block.body)
    else:
        hits = [i for i, line in enumerate(lines) if line.strip() == block.anchor]
        assert len(hits) == 1, (
            f"{DOC}: {block.header!r}: the line {block.anchor!r} occurs {len(hits)} times in {block.path}"
        )
        at = hits[0] + (block.where == "after")
        lines.insert(at, block.body)
    target.write_text("".join(lines))


def repo_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


def tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


@pytest.fixture(scope="module")
def toy_repo(tmp_path_factory) -> Path:
    """A copy of the repository with the doc's toy module added, and a config running only it."""
    root = tmp_path_factory.mktemp("toy_repo")
    for rel in repo_files():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, root / rel)
    for block in example_blocks(DOC.read_text()):
        apply_block(root, block)
    return root


def snakemake(root: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    # The copy's own package first, as the rules' run_step.py does for the jobs.
    env = dict(os.environ, PYTHONPATH=str(root / "workflow" / "scripts"), PYTHONWARNINGS="ignore")
    cmd = [tool("snakemake"), *args, "--configfile", "toy.yaml"]
    return subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=timeout, env=env)


def planned_rules(output: str) -> set[str]:
    """Rule names of the 'Job stats' table of a (dry) run."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("Job stats"))
    rules = set()
    for line in lines[start + 3 :]:
        parts = line.split()
        if not parts or parts[0] == "total":
            break
        rules.add(parts[0])
    return rules


def test_the_doc_adds_a_module_in_the_documented_places_only():
    blocks = example_blocks(DOC.read_text())
    assert {b.path for b in blocks} == TOUCHED
    # One registry line per rule, named alike (rule <m>_<name> -> genomelab.<m>.steps:<name>_step).
    registry = next(b for b in blocks if b.path.endswith("steps_registry.py")).body
    entries = dict(re.findall(r'"(toy_\w+)": "genomelab\.toy\.steps:(\w+)"', registry))
    assert set(entries) == TOY_RULES
    assert all(step == f"{rule.removeprefix('toy_')}_step" for rule, step in entries.items())
    rule_file = next(b for b in blocks if b.path == "workflow/rules/toy.smk").body
    assert set(re.findall(r"^rule (\w+):", rule_file, re.M)) == TOY_RULES


def test_modules_are_the_schema_sections_with_a_schema_of_their_own(tmp_path):
    assert module_sections(ROOT / SCHEMA) == ["ingest", "tissue", "deconv", "regulon", "assoc", "binning"]
    schema = {
        "properties": {
            "seed": {"type": "integer"},
            "zeta": {"$ref": "zeta.schema.yaml", "default": {}},
            "train": {"$ref": "other.schema.yaml"},  # a shared section, not a module
            "alpha": {"$ref": "./alpha.schema.yaml"},
        }
    }
    path = tmp_path / "config.schema.yaml"
    path.write_text(yaml.safe_dump(schema, sort_keys=False))
    assert module_sections(path) == ["zeta", "alpha"]


def test_the_example_module_plans_lints_and_formats(toy_repo):
    assert "toy" in module_sections(toy_repo / SCHEMA)
    res = snakemake(toy_repo, "-n", "--cores", "2")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert planned_rules(res.stdout) == TOY_RULES | {
        "gate",
        "report_summary",
        "report_software_versions",
        "all",
    }
    lint = snakemake(toy_repo, "--lint")
    assert lint.returncode == 0, lint.stdout[-3000:] + lint.stderr[-3000:]
    fmt = subprocess.run(
        [tool("snakefmt"), "--check", "workflow/rules/toy.smk"], cwd=toy_repo, capture_output=True, text=True
    )
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr
    for check in (["check"], ["format", "--check"]):
        ruff = subprocess.run(
            [tool("ruff"), *check, "workflow/scripts/genomelab/toy"],
            cwd=toy_repo,
            capture_output=True,
            text=True,
        )
        assert ruff.returncode == 0, ruff.stdout + ruff.stderr


@pytest.mark.slow
def test_the_example_module_runs_end_to_end(toy_repo):
    res = snakemake(toy_repo, "--cores", "2")
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    out = toy_repo / "results" / "toy" / "toy"
    summary = json.loads((out / "summary.json").read_text())
    (comparison,) = summary["comparisons"]
    assert comparison["kinds"] == {
        "2-layer network": "model",
        "training mean": "baseline",
        "ridge": "baseline",
    }
    # The target is non-linear: the network must beat both baselines, as the doc says.
    rmse = {name: row["rmse"] for name, row in comparison["rows"].items()}
    assert rmse["2-layer network"] < rmse["ridge"] < rmse["training mean"], rmse
    # Ahead, but without a paired test the verdict is a tie (as the doc says).
    assert comparison["verdict"].startswith("2-layer network") and " ties with ridge" in comparison["verdict"]
    assert "no paired test" in comparison["verdict"]
    assert [d["status"] for d in summary["diagnostics"]] == ["pass"] * 3
    assert json.loads((out / "diagnostics" / "gate.json").read_text())["opened"]
    # model.pt is the shared exported format, refused for other feature IDs.
    from genomelab.train.export import ExportError, load_exported

    model = load_exported(out / "mlp" / "model.pt", expect_ids={"features": ["x1", "x2", "x3", "x4"]})
    assert model.kind == "toy_mlp" and model.config == {"hidden": 32, "n_features": 4}
    with pytest.raises(ExportError, match="features"):
        load_exported(out / "mlp" / "model.pt", expect_ids={"features": ["x1", "x2", "x3", "x5"]})
    # The run report includes the module, and nothing is left to do.
    assert (
        "Toy regression (worked example)"
        in (toy_repo / "results" / "toy" / "report" / "summary.md").read_text()
    )
    again = snakemake(toy_repo, "-n", "--cores", "2")
    assert "Nothing to be done" in again.stdout + again.stderr, again.stdout[-3000:]
