"""Each rule's conda environment provides every package its step imports.

CI runs the workflow in the project's virtualenv, never under ``--use-conda``, so a package
missing from ``envs/*.yaml`` would show only on a user's cluster: as ModuleNotFoundError, or
worse as a package picked up from Snakemake's own installation, which Snakemake's script
preamble appends to ``sys.path``. The session's run of config/test.yaml records, per job, the
packages its step imported (``genomelab.entry.record_imports``); each must come from a
package its rule's environment lists or from one of those packages' dependencies (read from
the installed distributions' metadata, as conda installs them too). An import inside
``try: ... except ImportError`` is optional and may be missing, and so is one made below
such a ``try``; but a module's top-level import, which Python runs at the module's first
import only, is required when the job imports the module on any required path.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

# conda-forge names that differ from the distribution's name on PyPI.
CONDA_TO_PYPI = {"pytorch": "torch", "matplotlib-base": "matplotlib", "python-igraph": "igraph"}
# Snakemake's script preamble imports snakemake; the job reaches it through the preamble's
# search path by design, not through the environment.
PROVIDED_BY_SNAKEMAKE = {"snakemake"}


def rule_envs() -> dict[str, str]:
    """Rule name -> the env variable its ``conda:`` names (ENV_CPU, ENV_TORCH), from the rule files."""
    envs: dict[str, str] = {}
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        rule = None
        lines = smk.read_text().splitlines()
        for i, line in enumerate(lines):
            if m := re.match(r"\s*rule (\w+):", line):
                rule = m.group(1)
            elif line.strip() == "conda:" and rule is not None:
                envs[rule] = lines[i + 1].strip()
    return envs


def env_files() -> dict[str, Path]:
    """ENV_CPU -> envs/cpu.yaml, as common.smk defines them."""
    text = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    return {
        name: (ROOT / "workflow" / "rules" / rel).resolve()
        for name, rel in re.findall(r'^(ENV_\w+) = "([^"]+)"', text, flags=re.M)
    }


def _top_level_of() -> dict[str, set[str]]:
    """Canonical distribution name -> the top-level modules it installs."""
    out: dict[str, set[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            out.setdefault(canonicalize_name(dist), set()).add(module)
    return out


def provided_modules(env_file: Path) -> set[str]:
    """Top-level modules of the env's packages and their dependencies (closure over the
    installed distributions' requirements, extras left out); packages not installed here
    are skipped, as nothing in this run can have imported them."""
    deps = yaml.safe_load(env_file.read_text())["dependencies"]
    names = [re.split(r"[=<>! ]", d, maxsplit=1)[0] for d in deps if isinstance(d, str)]
    todo = [canonicalize_name(CONDA_TO_PYPI.get(n, n)) for n in names if n != "python"]
    top = _top_level_of()
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for req in map(Requirement, requires):
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return set().union(*(top.get(n, set()) for n in seen)) | PROVIDED_BY_SNAKEMAKE


OPTIONAL_HANDLERS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})
# Above the import (``via``) only a handler of ImportError itself makes it optional: the rule
# runner's ``try: step(smk) except Exception`` logs the failure and exits non-zero.
VIA_HANDLERS = frozenset({"ImportError", "ModuleNotFoundError"})


@functools.cache
def _optional_lines(file: Path, handlers: frozenset[str] = OPTIONAL_HANDLERS) -> frozenset[int]:
    """Lines of the statements in ``file`` inside ``try:`` blocks that catch ImportError (or a
    base of it): an import there, or one made by what a statement there runs (a genomelab
    module it imports, a function it calls), is optional: a missing package does not break it."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if not isinstance(node, ast.Try):
            continue
        caught = set()
        for handler in node.handlers:
            types = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            caught |= {"BaseException" if t is None else ast.unparse(t).rpartition(".")[2] for t in types}
        if caught & handlers:
            for stmt in node.body:
                lines.update(range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1))
    return frozenset(lines)


def _source(file: str) -> Path:
    """A recorded file: relative to the folder holding genomelab, or absolute."""
    return Path(file) if Path(file).is_absolute() else ROOT / "workflow" / "scripts" / file


@functools.cache
def _readable(file: str) -> bool:
    return not file.startswith("<") and _source(file).is_file()


def _source_line(file: str, line: int) -> str:
    return _source(file).read_text().splitlines()[line - 1]


@functools.cache
def _function_lines(file: Path) -> frozenset[int]:
    """Lines of the bodies of ``file``'s functions: what runs when called, not when the module
    is imported (the rest, class bodies at the top included, runs once, at its first import)."""
    lines: set[int] = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            lines.update(range(node.body[0].lineno, (node.end_lineno or node.lineno) + 1))
    return frozenset(lines)


def _module_of(file: str) -> str | None:
    """``genomelab/a/b.py`` -> ``genomelab.a.b``, ``genomelab/a/__init__.py`` -> ``genomelab.a``;
    None for other files (a genomelab from elsewhere, named by its absolute path)."""
    parts = Path(file).with_suffix("").parts
    if Path(file).is_absolute() or parts[:1] != ("genomelab",):
        return None
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _required_path(chain: list[tuple[str, int, frozenset[str]]], loaded: frozenset[str]) -> bool:
    """Whether the statements ``chain`` (``(file, line, handlers)``, innermost first: an import,
    then the genomelab frames above it) fail when the import does. A frame inside a ``try``
    catching ``handlers`` makes it optional. A frame at the top of genomelab module M ran at
    M's first import only, so the frames above it tell one path that loads M: M also counts as
    required when it is in ``loaded`` (some path in the job loads it where it is required)."""
    for i, (file, line, handlers) in enumerate(chain):
        if not _readable(file):  # code with no file (python -c, Snakemake's script copy): not genomelab's
            continue
        if line in _optional_lines(_source(file), handlers):
            return False
        module = _module_of(file)
        if module is None or line in _function_lines(_source(file)):
            continue
        rest = chain[i + 1 :]
        # A class body's frame has its module's frame, at the class statement, above it.
        while rest and rest[0][0] == file and rest[0][1] not in _function_lines(_source(file)):
            if rest[0][1] in _optional_lines(_source(file), rest[0][2]):
                return False
            rest = rest[1:]
        return module in loaded or _required_path(rest, loaded)
    return True


def required(entry: dict, loaded: frozenset[str] = frozenset()) -> bool:
    """An import recorded by a job is required unless it, or a genomelab frame above it (the
    import of the module that made it, the call that ran it: ``via``), sits in a ``try`` that
    catches ImportError. An import that ran at the top of module M (``import numba`` in
    kmer_kernel) ran only at M's first import, maybe under such a ``try``: it is also required
    where M is in ``loaded``, the modules the job imports on a required path
    (``loaded_on_required_paths``)."""
    chain = [(entry["file"], entry["line"], OPTIONAL_HANDLERS)]
    chain += [(f, n, VIA_HANDLERS) for f, n in entry.get("via", [])]
    return _required_path(chain, loaded)


def loaded_on_required_paths(record: dict) -> frozenset[str]:
    """The genomelab modules that a job's record (``record_imports``) shows imported on at
    least one required path: by an import statement that ``required`` holds required, given
    the modules found so far (a fixed point: the job's script imports genomelab.entry, which
    imports ..., each import statement counting only once its own module is found). Records
    without ``genomelab_imports`` (written before they were kept) give none."""
    loaded: set[str] = set()
    statements = record.get("genomelab_imports", [])
    grew = True
    while grew:
        grew = False
        for entry in statements:
            if not loaded.issuperset(entry["modules"]) and required(entry, frozenset(loaded)):
                loaded.update(entry["modules"])
                grew = True
    return frozenset(loaded)


def test_optional_imports_are_told_from_required_ones(tmp_path):
    src = tmp_path / "mod.py"
    src.write_text(
        "import numpy\n"
        "try:\n    import torch\nexcept ImportError:\n    torch = None\n"
        "try:\n    import scipy\nexcept (ValueError, ModuleNotFoundError):\n    pass\n"
        "try:\n    import pandas\nexcept KeyError:\n    pass\n"
    )
    entries = {
        p: {"package": p, "file": str(src), "line": n}
        for p, n in [("numpy", 1), ("torch", 3), ("scipy", 7), ("pandas", 11)]
    }
    assert {p for p, e in entries.items() if required(e)} == {"numpy", "pandas"}


def test_the_record_lists_genomelab_imports_only(tmp_path):
    """In a fresh interpreter with the recorder on: a genomelab module's third-party imports
    are listed (numpy, pandas), its standard-library ones are not (logging), nor what those
    libraries import themselves (pandas imports dateutil), nor imports made outside genomelab."""
    # packaging is not imported by genomelab: not listed.
    record = _record(tmp_path, "import genomelab.assoc.data\nimport packaging.version", "assoc_data")
    assert record["rule"] == "assoc_data"
    packages = {e["package"] for e in record["imports"]}
    assert {"numpy", "pandas"} <= packages
    assert not {"logging", "dateutil", "packaging", "genomelab"} & packages
    (pandas,) = [
        e for e in record["imports"] if e["package"] == "pandas" and e["file"] == "genomelab/assoc/data.py"
    ]
    assert "import pandas" in _source_line(pandas["file"], pandas["line"])


def _record(tmp_path: Path, code: str, rule: str = "x") -> dict:
    """What a fresh interpreter with the recorder on records for ``rule`` after running ``code``."""
    code = f"from genomelab.entry import record_imports\n{code}\n" + (
        f"record_imports(__import__('pathlib').Path({str(tmp_path)!r}), {rule!r})\n"
    )
    env = dict(
        os.environ, GENOMELAB_IMPORT_RECORD=str(tmp_path), PYTHONPATH=str(ROOT / "workflow" / "scripts")
    )
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    (path,) = tmp_path.glob(f"{rule}.*.json")
    return json.loads(path.read_text())


def test_an_import_made_by_a_module_imported_under_try_is_optional(tmp_path):
    """`import numba` sits at the top of kmer_kernel, outside any try, but kmers.resolve_engine
    imports kmer_kernel inside `try: ... except ImportError` and falls back to numpy: numba is
    optional there (it was counted as required). Imported directly, kmer_kernel needs it."""
    pytest.importorskip("numba")
    auto = _record(tmp_path / "a", "import genomelab.binning.kmers as k\nk.resolve_engine('auto')")
    (numba,) = [e for e in auto["imports"] if e["package"] == "numba"]
    assert numba["file"] == "genomelab/binning/kmer_kernel.py"
    assert any(f == "genomelab/binning/kmers.py" for f, _ in numba["via"])
    assert not any(f == "genomelab/entry.py" for f, _ in numba["via"])  # not the recorder's own frames
    assert not required(numba) and not required(numba, loaded_on_required_paths(auto))
    direct = _record(tmp_path / "b", "import genomelab.binning.kmer_kernel")
    (numba,) = [e for e in direct["imports"] if e["package"] == "numba"]
    assert required(numba) and required(numba, loaded_on_required_paths(direct))


def test_a_module_imported_outside_try_as_well_needs_its_top_level_imports(tmp_path):
    """Python runs kmer_kernel's `import numba` once, at its first import: here under
    resolve_engine's `try`, so the record's `via` names only that optional path. The same job
    then imports kmer_kernel outside any try, where a missing numba fails it: numba is required
    (it was counted as optional)."""
    pytest.importorskip("numba")
    record = _record(
        tmp_path,
        "import genomelab.binning.kmers as k\nk.resolve_engine('auto')\nimport genomelab.binning.kmer_kernel",
    )
    (numba,) = [e for e in record["imports"] if e["package"] == "numba"]
    assert any(f == "genomelab/binning/kmers.py" for f, _ in numba["via"])  # the first, optional path
    assert not required(numba)
    loaded = loaded_on_required_paths(record)
    assert {
        "genomelab",
        "genomelab.binning",
        "genomelab.binning.kmers",
        "genomelab.binning.kmer_kernel",
    } <= loaded
    assert required(numba, loaded)


def test_only_imports_at_a_modules_top_count_its_required_imports():
    """kmer_kernel imported on a required path makes its top-level imports required, not one
    in a function of it called under an optional path (same file, same `via`)."""
    kernel = "genomelab/binning/kmer_kernel.py"
    tree = ast.parse(_source(kernel).read_text())
    (top,) = [n.lineno for n in tree.body if isinstance(n, ast.Import) and n.names[0].name == "numba"]
    in_function = next(n for n in tree.body if isinstance(n, ast.FunctionDef)).body[-1].lineno
    kmers = "genomelab/binning/kmers.py"
    # the kernel's import inside resolve_engine's try
    (under_try,) = [
        b.lineno
        for n in ast.walk(ast.parse(_source(kmers).read_text()))
        if isinstance(n, ast.Try)
        for b in n.body
        if isinstance(b, ast.Import) and b.names[0].name == "genomelab.binning.kmer_kernel"
    ]
    via = [[kmers, under_try]]
    loaded = frozenset({"genomelab.binning.kmer_kernel"})
    for line, want in [(top, True), (in_function, False)]:
        entry = {"package": "numba", "file": kernel, "line": line, "via": via}
        assert not required(entry) and required(entry, loaded) is want


def test_the_record_names_the_genomelab_modules_each_import_brings_in(tmp_path):
    """Each import of a genomelab module is listed every time it runs, by whatever code, with
    the full names it brings in: a submodule named in `from ... import`, not a function; a
    relative import resolved against its package."""
    code = (
        "import genomelab.binning.kmers\n"
        "from genomelab.binning.kmers import resolve_engine\n"
        "from genomelab.binning import kmers\n"
        "import genomelab.binning.kmers\n"
        # what `from .kmers import ENGINES` compiles to in a module of genomelab.binning
        "__import__('kmers', {'__name__': 'genomelab.binning.bins', '__package__': 'genomelab.binning'},"
        " None, ('ENGINES',), 1)"
    )
    record = _record(tmp_path, code)
    by_line = {e["line"]: e for e in record["genomelab_imports"] if e["file"] == "<string>"}
    kmers = ["genomelab", "genomelab.binning", "genomelab.binning.kmers"]
    assert {n: e["modules"] for n, e in by_line.items()} == {2: kmers, 3: kmers, 4: kmers, 5: kmers, 6: kmers}
    assert all(e["via"] == [] for e in by_line.values())
    # genomelab's own imports, with where they are (kmers imports genomelab.io.fasta at its top)
    (fasta,) = [
        e
        for e in record["genomelab_imports"]
        if e["file"] == "genomelab/binning/kmers.py" and "genomelab.io.fasta" in e["modules"]
    ]
    assert "genomelab.io" in _source_line(fasta["file"], fasta["line"])
    # the relative import by "genomelab.binning.bins" is genomelab's: listed, not as a package
    assert not {e["package"] for e in record["imports"]} & {"kmers", "genomelab"}


def test_the_torch_env_lacking_pytorch_would_fail(tmp_path):
    """The check can fail: without pytorch listed, torch is not provided."""
    env = tmp_path / "env.yaml"
    env.write_text("channels: [conda-forge]\ndependencies:\n  - python=3.12\n  - numpy=2.2.6\n")
    assert "numpy" in provided_modules(env) and "torch" not in provided_modules(env)


def env_gaps(folder: Path) -> tuple[set[str], list[str]]:
    """The rules recorded in ``folder`` (GENOMELAB_IMPORT_RECORD) and, for each required
    import that the rule's conda env does not provide, a line naming rule, env, package and
    the importing file and line."""
    records = [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]
    envs, files = rule_envs(), env_files()
    provided = {name: provided_modules(path) for name, path in files.items()}
    missing = set()
    for record in records:
        env = envs[record["rule"]]
        loaded = loaded_on_required_paths(record)
        for entry in record["imports"]:
            if entry["package"] not in provided[env] and required(entry, loaded):
                missing.add(
                    f"{record['rule']} ({files[env].relative_to(ROOT)}): {entry['package']}, "
                    f"imported at {entry['file']}:{entry['line']}"
                )
    return {r["rule"] for r in records}, sorted(missing)


@pytest.mark.slow
def test_every_rule_of_the_run_imports_only_what_its_conda_env_provides(test_config_run):
    rules, missing = env_gaps(test_config_run.parent / "test_config_run.imports")
    # The record is only worth something if the run's jobs wrote it.
    assert {"tissue_train", "tissue_features", "binning_encode", "regulon_train"} <= rules, rules
    assert not missing, "rules import packages their conda env does not provide:\n" + "\n".join(missing)
