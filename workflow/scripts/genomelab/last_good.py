"""The last good outputs of every job, kept where a failed rerun cannot delete them.

Snakemake deletes a job's outputs before it runs the job again, and deletes what the failed
attempt wrote when it fails: a rerun that fails (a bad new setting, a node lost mid-training)
would leave the run without the results it had. After every successful job, ``keep`` hard-links
each output file under ``results/<run>/.state/last_good/`` (the same relative path); the state
folder is never an output, so Snakemake leaves it alone. A hard link costs no disk space while
the output exists, and the next success of the job replaces it, so one version is kept.
``restore`` links them back: ``genomelab restore --configfile my.yaml``. ``prune_states``
keeps a training job's state folder from growing with every change of its settings.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path

logger = logging.getLogger(__name__)

LAST_GOOD = Path(".state") / "last_good"


def _files(path: Path) -> list[Path]:
    """``path`` itself, or the files below it for a directory output."""
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    return [path] if path.is_file() else []


def _link(src: Path, dest: Path) -> None:
    """Hard-link ``src`` as ``dest`` atomically (copy where the file system cannot link)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dest)


def keep(outputs: Iterable[str | os.PathLike], results: str | os.PathLike) -> int:
    """Link every output file under ``results`` into ``results/.state/last_good``.

    Outputs outside ``results`` (none in this workflow) are skipped. A directory output's old
    copy is replaced whole, so files the new version no longer has do not linger.
    Returns the number of files kept.
    """
    root = Path(results).resolve()
    store = root / LAST_GOOD
    n = 0
    for output in outputs:
        # A temp() output is deleted to free its space: a kept link would hold it.
        if "temp" in getattr(output, "flags", {}):
            continue
        path = Path(output).resolve()
        if not path.is_relative_to(root) or path.is_relative_to(root / ".state"):
            continue
        target = store / path.relative_to(root)
        if path.is_dir() and target.exists():
            shutil.rmtree(target)
        for file in _files(path):
            _link(file, store / file.relative_to(root))
            n += 1
    return n


def restore(results: str | os.PathLike, only: Iterable[str] = (), overwrite: bool = False) -> list[Path]:
    """Link the kept outputs of ``results`` back to their places; return what was restored.

    ``only`` limits it to these paths (files or folders, relative to ``results`` or to the
    working directory); an existing output is left alone unless ``overwrite``.
    Raises FileNotFoundError naming the folder when nothing was ever kept there.
    """
    root = Path(results).resolve()
    store = root / LAST_GOOD
    if not store.is_dir():
        raise FileNotFoundError(
            f"{store}: no last good outputs kept for {results} (has a job finished there?)"
        )
    wanted = [Path(p).resolve() if Path(p).resolve().is_relative_to(root) else root / p for p in only]
    restored = []
    for kept in _files(store):
        dest = root / kept.relative_to(store)
        if wanted and not any(dest == w or dest.is_relative_to(w) for w in wanted):
            continue
        if dest.exists() and not overwrite:
            continue
        _link(kept, dest)
        restored.append(dest)
    logger.info("restored %d file(s) of %s from %s", len(restored), results, store)
    return restored


def interrupted(state: Path) -> bool:
    """Whether the job of a state folder was interrupted: its training had not finished (its
    per-epoch metrics JSON, genomelab.train.run, has no stop reason yet), or it had and the
    job was killed before it wrote its outputs (``outputs_pending``). A rerun with its
    settings resumes it, or takes the finished training as it is."""
    if (state / "outputs_pending").exists():  # genomelab.train.run.outputs_pending
        return True
    try:
        return not json.loads((state / "metrics.json").read_text()).get("stopped_reason")
    except (OSError, ValueError, AttributeError):
        return False  # no readable metrics (a state from before they were kept there)


def prune_states(state_dir: str | os.PathLike, keep: int) -> list[Path]:
    """Delete the finished training states in ``state_dir`` but the ``keep`` newest states;
    return the deleted.

    A state is a fingerprint folder holding ``last.pt`` or ``best.pt`` (genomelab.train.run
    keys it by data and settings, so changing either starts a new one and the old one stays
    behind); newest by its checkpoint's modification time. An older state whose job was
    interrupted (:func:`interrupted`) stays: going back to its settings resumes it. The
    attempt logs stay; a state that cannot be deleted (a link, say) stays with a warning.
    """
    root = Path(state_dir)
    if keep < 1:
        raise ValueError(f"keep must be at least 1, not {keep}")
    if not root.is_dir():
        return []

    def newest(folder: Path) -> float:
        return max((folder / n).stat().st_mtime for n in ("last.pt", "best.pt") if (folder / n).exists())

    states = [
        p for p in root.iterdir() if p.is_dir() and ((p / "last.pt").exists() or (p / "best.pt").exists())
    ]
    states.sort(key=newest, reverse=True)
    deleted = []
    for old in states[keep:]:
        if interrupted(old):
            logger.info("kept the older training state %s: its training was interrupted", old)
            continue
        try:
            shutil.rmtree(old)
        except OSError as exc:
            # It runs after the job wrote its outputs: failing the job would make Snakemake
            # delete them. A linked folder, a file still open on NFS, no permission: leave it.
            logger.warning("could not delete the old training state %s: %s", old, exc)
            continue
        deleted.append(old)
        logger.info("deleted the old training state %s (state.keep = %d)", old, keep)
    return deleted
