"""Shared fixtures: paths, the ../shared data folder (skipped where absent), tiny RNG."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

SHARED_DATA = Path(os.environ.get("GENOMELAB_SHARED_DATA", ROOT.parent / "shared" / "data"))

# Idle OpenMP threads (torch's intra-op pool, in the tests and in every workflow job they
# start) sleep instead of spinning. CI's two pytest workers share two cores with the jobs
# of their Snakemake runs, so a spinning thread takes the core another process needs: the
# binning diagnostics' checks on a busy machine took 4.8 s CPU with the default policy and
# 1.9 s with PASSIVE, at the same two threads. Thread counts, the work each thread does and
# so every number are unchanged; set here, before torch loads, so subprocesses inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


# Test files that take minutes on CI's 2 cores (`make test`: 2 workers, one file at a time
# each), longest first. They go to the front of the collection, and the Makefile turns off
# pytest-xdist's reordering (by number of tests per file), so that they start at once on
# both workers and the many short files fill in around them; a long file taken last would
# run alone at the end. Every other file keeps its place after these.
LONGEST_FIRST = (
    "tests/slurm/test_slurm.py",
    "tests/test_workflow.py",
    "tests/test_workflow_folds.py",
    "tests/test_binning_cluster.py",
    "tests/test_own_data_docs.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::", 1)[0], len(rank)))


@pytest.fixture(scope="session")
def test_config_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """config/test.yaml run to completion once per session (tests/shared_run.py); work on a
    copy of it (``shared_run.copy_run``), never in it."""
    from shared_run import finished_test_config

    return finished_test_config(tmp_path_factory)


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present (a user's clone has none)")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch intra-op thread for every test (tiny models, run in this process).

    A second thread only adds synchronisation for models this small, and on a busy 2-core
    machine (CI runs two pytest workers) extra threads spin against each other: the binning
    diagnostics' overfit check of 25 contigs took 13 s of CPU with torch's default two
    threads and 1.8 s with one. Once opt-in per file, it is on for all: files without it
    paid that. Workflow jobs (subprocesses) keep the threads their rule gives them.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def drop_rule_log_handlers():
    """Remove the root handlers a test's ``setup_logging`` call installed, after the test.

    Tests that run a rule step in this process call ``setup_logging``, which puts a handler on
    the test's captured stderr and one on its log file on the root logger; left in place,
    every later test logged into that closed stream ("--- Logging error --- ValueError: I/O
    operation on closed file" in CI's output) and kept the file open. Only plain
    StreamHandler / FileHandler objects are setup_logging's: pytest's own are subclasses.
    """
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if type(handler) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(handler)
            handler.close()
    root.setLevel(level)


DECONV_TISSUES = ["Neutrophils", "Lymphocytes", "Liver", "Lung", "Colon", "Pancreas"]


@pytest.fixture(scope="session")
def simulate_deconv_sources():
    """Factory: simulated individuals of six tissues (two blood), split by individual, and a
    reference built from the training individuals, written like the workflow writes them.

    ``make(d, n_regions, markers=(hypo, hyper, blood), n_new, seed)`` returns
    ``(SimulationConfig, sources, reference, selection record)``; markers per tissue of the
    reference equal the simulated hypo/hyper counts, pairwise markers the hyper count.
    """

    def make(d: Path, n_regions: int, markers: tuple[int, int, int], n_new: int, seed: int):
        from genomelab.deconv import io as dio
        from genomelab.deconv.reference import ReferenceConfig, build_reference
        from genomelab.deconv.simulate import SimulationConfig, simulate_demo
        from genomelab.splits import group_split

        hypo, hyper, blood = markers
        cfg = SimulationConfig(
            tissues=DECONV_TISSUES,
            blood=DECONV_TISSUES[:2],
            samples_per_tissue=4,
            n_regions=n_regions,
            hypo_markers=hypo,
            hyper_markers=hyper,
            blood_markers=blood,
            n_new_samples=n_new,
            seed=seed,
        )
        simulate_demo(cfg, d / "samples", d / "sheet.tsv", d / "new.csv", d / "truth.csv", d / "profiles.csv")
        src = dio.sources_from_sheet(d / "sheet.tsv")
        src.splits = group_split(src.groups, (0.5, 0.25, 0.25), seed=0, stratify=src.tissues)
        ref, record = build_reference(
            src.subset(src.splits == "train"),
            ReferenceConfig(hypo_per_tissue=hypo, hyper_per_tissue=hyper, pairwise_per_tissue=hyper),
        )
        return cfg, src, ref, record

    return make


# A writer of io.atomic that dies by SIGKILL half-way: a temporary file (``atomic_output``) or
# a staged folder (``staging_dir``) of the target is left, named by this machine and the dead
# writer's process id, as a job killed with -9 leaves it.
_KILLED_WRITER = """
import os, signal, sys
from pathlib import Path
from genomelab.io.atomic import atomic_output, staging_dir
if sys.argv[2] == "folder":
    (staging_dir(sys.argv[1]) / "half").write_bytes(b"half of a folder")
else:
    with atomic_output(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half of a large file")
        os.kill(os.getpid(), signal.SIGKILL)
os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.fixture
def killed_writer():
    """``killed_writer(target, kind)`` runs a writer of ``target`` (kind "file" or "folder") that
    is killed with -9 and returns what it left beside ``target``."""
    import subprocess

    def run(target: Path, kind: str = "file") -> Path:
        before = set(Path(target).parent.glob(f".{Path(target).name}.*"))
        env = dict(os.environ, PYTHONPATH=str(SCRIPTS))
        res = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(target), kind], env=env, timeout=60)
        assert res.returncode == -9
        (left,) = set(Path(target).parent.glob(f".{Path(target).name}.*")) - before
        return left

    return run
