"""A record of the software a run used, so results can be traced and reproduced."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from genomelab import __version__
from genomelab.io.atomic import atomic_write_json

PACKAGES = (
    "numpy",
    "scipy",
    "pandas",
    "h5py",
    "scikit-learn",
    "matplotlib",
    "torch",
    "tensorboard",
    "biopython",
    "pymongo",
    "snakemake",
)


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _git_commit(root: Path) -> str | None:
    """The commit of the workflow checkout at ``root``, or None where git cannot say.

    A release archive unpacked inside another git repository (a user's project) is not a
    checkout of its own: ``git rev-parse HEAD`` there answers with the enclosing repository's
    commit, which says nothing of the workflow's files unless that repository tracks them.
    So a commit is reported only when ``root`` is the repository's top level, or when the
    enclosing repository's HEAD holds the workflow's Snakefile (the workflow vendored and
    committed there, whose commit then does pin it; staged is not enough)."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0 or not top.stdout.strip():
        return None
    if Path(top.stdout.strip()).resolve() != root.resolve():
        # In the commit itself, not merely staged: HEAD must hold the Snakefile.
        tracked = _git(root, "cat-file", "-e", "HEAD:./Snakefile")
        if tracked is None or tracked.returncode != 0:
            return None
    head = _git(root, "rev-parse", "HEAD")
    return head.stdout.strip() or None if head is not None and head.returncode == 0 else None


def reported_config(config: dict[str, Any], modules: Iterable[str]) -> dict[str, Any]:
    """What the record reports of a run's config (its hash and seed): all of it but each
    module's ``predict`` section, a copy (``config`` is left as it is).

    The predict sections only point the ``<module>_predict`` rules at new inputs, whose
    outputs name their own model and inputs; nothing the run summary reports depends on them.
    The report rule passes this as a ``params:`` value, so that editing them (adding
    ``tissue.predict.inputs`` to a finished run) does not rerun the record and the summary
    after it, while any other setting does (Snakemake's params rerun trigger).
    """
    reported = dict(config)
    for module in modules:
        section = reported.get(module)
        if isinstance(section, dict) and "predict" in section:
            reported[module] = {k: v for k, v in section.items() if k != "predict"}
    return reported


def _seed(config_text: str) -> int | None:
    """The run's seed, read from the JSON config the report rule passes in."""
    try:
        return json.loads(config_text).get("seed")
    except (ValueError, AttributeError):
        return None


# The workflow's conda environment files: envs/ at the root of the checkout this package is in.
ENVS_DIR = Path(__file__).resolve().parents[4] / "envs"


def conda_envs(envs_dir: Path = ENVS_DIR) -> dict[str, list[str]]:
    """``{"envs/cpu.yaml": [pinned specs], ...}``: what ``--use-conda`` installs for the rules."""
    import yaml

    return {
        f"envs/{path.name}": [
            str(d) for d in (yaml.safe_load(path.read_text()) or {}).get("dependencies", [])
        ]
        for path in sorted(envs_dir.glob("*.yaml"))
    }


# The checkout this package belongs to (workflow/scripts/genomelab/report/versions.py): its
# commit is the workflow's version, whatever folder Snakemake runs in (`--directory` a
# project folder, which may be a git repository of its own).
WORKFLOW_ROOT = Path(__file__).resolve().parents[4]


def software_versions(config_text: str = "", cwd: str | os.PathLike = WORKFLOW_ROOT) -> dict[str, Any]:
    """Versions of Python, key packages, torch/CUDA and the GPU; git commit; config hash.

    ``packages``, ``torch_cuda`` and ``gpus`` are what the job writing the record sees: under
    ``--use-conda`` it runs in the CPU environment (no torch), and under SLURM on a node that
    may have no GPU. So the record also keeps each rule environment's pinned specs
    (``conda_envs``) and the job's interpreter (``python_prefix``); each training job's log
    names its own device, GPU, torch and CUDA."""
    record: dict[str, Any] = {
        "genomelab": __version__,
        "python": platform.python_version(),
        "python_prefix": sys.prefix,
        "platform": platform.platform(),
        "git_commit": _git_commit(Path(cwd)),
        "config_sha256": hashlib.sha256(config_text.encode()).hexdigest(),
        "seed": _seed(config_text),
        "packages": {},
    }
    for name in PACKAGES:
        try:
            record["packages"][name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            record["packages"][name] = None
    try:
        import torch

        record["torch_cuda"] = torch.version.cuda
        record["cuda_available"] = torch.cuda.is_available()
        record["gpus"] = (
            [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available()
            else []
        )
    except ImportError:
        record["torch_cuda"], record["cuda_available"], record["gpus"] = None, False, []
    record["conda_envs"] = conda_envs()
    return record


def write_software_versions(path: str | os.PathLike, config_text: str = "") -> None:
    atomic_write_json(path, software_versions(config_text))
