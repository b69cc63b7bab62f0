"""Copies of the repository, and config/test.yaml run to completion once per test session.

tests/test_workflow.py (its finished run), tests/slurm (the local reference next to the
SLURM run) and tests/test_regulon_folds.py (a finished one-split run to switch to folds) need
config/test.yaml run to completion, and CI runs such files at once on its two pytest
workers: each ran it itself, a third of the suite's CPU time for one result.
:func:`finished_test_config` runs it once: the first test to ask runs it, and under
pytest-xdist a test in another worker waits for it (a lock file in the folder the workers
share, pytest-xdist's recipe for session fixtures). Tests never change that run: they work
on a copy (:func:`copy_run`), which keeps the modification times, so Snakemake sees a
finished run there too.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TEST_CONFIG = "config/test.yaml"
RUN_TIMEOUT_S = 1500


def repo_files() -> list[str]:
    """The repository's tracked and new (unignored) files, relative to its root."""
    out = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return [f for f in out.stdout.splitlines() if (ROOT / f).is_file()]


def copy_repo(dest: Path) -> Path:
    """Copy the repository's tracked (and new, unignored) files into ``dest``."""
    for rel in repo_files():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    return dest


def copy_run(src: Path, dest: Path) -> Path:
    """A copy of a workflow folder with its results, logs and .snakemake records; file and
    folder times are kept, so the copy is as finished as ``src`` is."""
    shutil.copytree(src, dest, symlinks=True)
    return dest


def _session_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.getbasetemp()
    # Under pytest-xdist each worker has its own basetemp inside the session's folder.
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def finished_test_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of a copy of the repository in which ``snakemake --cores 2 --configfile
    config/test.yaml`` ran to completion, once for the whole session. Copy it before use.
    Beside it, ``test_config_run.imports/`` holds each job's record of the packages it
    imported (``genomelab.entry.record_imports``)."""
    folder = _session_folder(tmp_path_factory)
    run_dir, done, failed, imports = (
        folder / f"test_config_run{s}" for s in ("", ".done", ".failed", ".imports")
    )
    with open(folder / "test_config_run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if failed.exists():
            pytest.fail(f"the session's run of {TEST_CONFIG} failed (in another test):\n{failed.read_text()}")
        if not done.exists():
            shutil.rmtree(run_dir, ignore_errors=True)
            copy_repo(run_dir)
            shutil.rmtree(imports, ignore_errors=True)
            env = dict(
                os.environ,
                PYTHONWARNINGS="ignore",
                PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                # Each job lists the packages it imported (tests/test_envs.py).
                GENOMELAB_IMPORT_RECORD=str(imports),
            )
            exe = str(BIN / "snakemake") if (BIN / "snakemake").exists() else "snakemake"
            res = subprocess.run(
                [exe, "--cores", "2", "--configfile", TEST_CONFIG],
                cwd=run_dir,
                capture_output=True,
                text=True,
                timeout=RUN_TIMEOUT_S,
                env=env,
            )
            if res.returncode != 0:
                failed.write_text(res.stdout[-5000:] + res.stderr[-5000:])
                pytest.fail(f"{TEST_CONFIG} failed:\n{failed.read_text()}")
            done.touch()
    return run_dir
