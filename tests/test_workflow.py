"""The workflow as a user drives it: lint, formatting, dry runs, config validation, a real run.

Every run happens in a copy of the repository under tmp_path, so the tests never touch a
developer's own results/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODULES = ("tissue", "deconv", "regulon", "assoc", "binning")


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else name


def run(cmd: list[str], cwd: Path, timeout: int = 600, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env, **kw)


def repo_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the repository's tracked (and new, unignored) files."""
    dest = tmp_path_factory.mktemp("repo")
    for rel in repo_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    return dest


def snakemake(workdir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return run([tool("snakemake"), *args], workdir, timeout=timeout)


def test_lint_is_clean(workdir):
    res = snakemake(workdir, "--lint")
    assert res.returncode == 0, res.stdout + res.stderr


def test_snakefmt_is_clean(workdir):
    res = run([tool("snakefmt"), "--check", "Snakefile", "workflow/rules"], workdir)
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("configfile", ["config/config.yaml", "config/test.yaml"])
def test_dry_run(workdir, configfile):
    res = snakemake(workdir, "-n", "--cores", "2", "--configfile", configfile)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "report_summary" in res.stdout


def test_dry_run_with_slurm_profile_requests_gpus(workdir):
    # The SLURM executor plugin plans jobs without any SLURM binaries in a dry run.
    res = snakemake(workdir, "-n", "--profile", "profiles/slurm", "--configfile", "config/test.yaml")
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_module_is_enabled_in_the_test_config():
    config = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    enabled = [m for m in MODULES if config.get(m, {}).get("enabled")]
    assert "tissue" in enabled


def test_invalid_config_stops_before_any_job(workdir):
    res = snakemake(workdir, "-n", "--cores", "1", "--config", "seed=-3")
    assert res.returncode != 0
    assert "seed" in res.stderr + res.stdout and "minimum" in res.stderr + res.stdout
    res = snakemake(workdir, "-n", "--cores", "1", "--config", "no_such_key=1")
    assert res.returncode != 0 and "no_such_key" in res.stderr + res.stdout
    assert not (workdir / "results").exists()


def test_env_files_are_pinned():
    for env_file in (ROOT / "envs").glob("*.yaml"):
        env = yaml.safe_load(env_file.read_text())
        assert env["channels"], env_file
        for dep in env["dependencies"]:
            assert isinstance(dep, str) and "=" in dep, f"{env_file.name}: {dep} is not pinned"


def test_every_rule_names_a_conda_env_and_a_log():
    # snakemake --lint checks this too; this keeps the message specific.
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        text = smk.read_text()
        n_rules = sum(1 for line in text.splitlines() if line.startswith("rule "))
        assert text.count("    conda:") >= n_rules, f"{smk.name}: a rule lacks conda:"
        assert text.count("    log:") >= n_rules, f"{smk.name}: a rule lacks log:"


@pytest.mark.slow
def test_end_to_end_on_the_test_config(workdir):
    res = snakemake(workdir, "--cores", "2", "--configfile", "config/test.yaml", timeout=1200)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    config = yaml.safe_load((workdir / "config" / "test.yaml").read_text())
    summary = (workdir / "results" / "report" / "summary.md").read_text()
    for module in MODULES:
        if config.get(module, {}).get("enabled"):
            data = json.loads((workdir / "results" / module / "summary.json").read_text())
            assert data["module"] == module
            assert f'id="{module}"' in summary
    versions = json.loads((workdir / "results" / "report" / "software_versions.json").read_text())
    assert versions["packages"]["torch"]
    # Nothing left to do: the run is complete and consistent.
    again = snakemake(workdir, "-n", "--cores", "2", "--configfile", "config/test.yaml")
    assert again.returncode == 0 and "Nothing to be done" in again.stdout + again.stderr, again.stdout
