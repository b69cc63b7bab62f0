"""Atomic file writes: a half-written file must never look like a finished one.

Everything is written to a temporary sibling (same directory, so ``os.replace`` is an
atomic rename on POSIX file systems) and moved into place only after it was closed and
flushed. On any exception the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import math
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    ``suffix`` defaults to the target's suffix so that libraries which pick a format by
    extension (matplotlib, numpy) keep working on the temporary name.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=_temp_prefix(target),
        suffix=f".tmp{suffix if suffix is not None else target.suffix}",
        dir=target.parent,
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        _fsync_path(tmp)
        # mkstemp creates 0600 files; give outputs the usual umask-based mode instead.
        if tmp.is_file():
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _host() -> str:
    # At most 32 characters: the temporary's name must stay within 255 with a long target name.
    host = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:32] or "host"
    # Containers that share the host's name (Docker's --network host) each number their
    # processes apart: their PID namespace is part of the machine, so that one never checks
    # another's process ids.
    with contextlib.suppress(OSError):
        host += "-" + re.sub(r"\D", "", os.readlink("/proc/self/ns/pid"))
    return host


def _temp_prefix(target: Path) -> str:
    # The writer's machine and process id are in the name: a later write of the target removes
    # the temporary only once that process is gone (_leftovers).
    return f".{target.name}.{_host()}.{os.getpid()}."


def _pid_gone(pid: int) -> bool:
    """Whether no process ``pid`` runs on this machine (False when it cannot be told)."""
    if os.name != "posix":
        return False  # os.kill(pid, 0) would end the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # PermissionError: it runs, as another user
    return False


def _leftovers(target: Path, tail: str) -> list[Path]:
    """The temporaries of ``target`` (names ending with the regex ``tail``) left by a writer
    that was killed: made on this machine by a process that no longer runs.

    A temporary is never taken for a leftover by its name alone: another job may be writing
    the same target right now (a job left running on a SLURM node when Snakemake was killed,
    and the rerun's), or a target whose name starts with this one's (``x.h5`` and
    ``x.h5.gz``); deleting its live temporary would lose what it has written. A writer on
    another machine (a node sharing the file system) cannot be checked, so its temporaries
    stay; the name says which machine and process made them.
    """
    own = re.compile(rf"\.{re.escape(target.name)}\.([A-Za-z0-9-]+)\.(\d+)\.[a-z0-9_]{{8}}{tail}")
    host = _host()
    found = []
    for path in target.parent.glob(f".{glob.escape(target.name)}.*"):
        m = own.fullmatch(path.name)
        if m and m.group(1) == host and _pid_gone(int(m.group(2))):
            found.append(path)
    return found


def remove_leftovers(target: Path) -> None:
    """Remove the temporary files of ``target`` that writers killed with SIGKILL left
    (:func:`_leftovers`); :func:`atomic_output` does it before every write."""
    # A writer killed with SIGKILL (kill -9, the out-of-memory killer, a lost node) cannot
    # remove its temporary file; a rerun writes a new one, and the old one (a features file can
    # take gigabytes) would stay for good.
    for stale in _leftovers(target, r"\.tmp.*"):
        if stale.is_file() or stale.is_symlink():
            try:
                stale.unlink(missing_ok=True)
            except OSError as exc:
                # Cleanup is a courtesy: a leftover this user may not delete (another user's,
                # in a shared sticky-bit folder) must not fail the write it precedes.
                logger.warning("could not remove %s, left by a killed writer of %s: %s", stale, target, exc)
                continue
            logger.info("removed %s, left by a writer of %s that was killed", stale, target)


def staging_dir(target: str | os.PathLike) -> Path:
    """A new hidden folder beside ``target`` to build it in (then renamed onto it), after
    removing the folders that writers of ``target`` killed with SIGKILL left (:func:`_leftovers`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in _leftovers(target, r"\.partial"):
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
            logger.info("removed %s, left by a writer of %s that was killed", stale, target)
    return Path(tempfile.mkdtemp(prefix=_temp_prefix(target), suffix=".partial", dir=target.parent))


def _fsync_path(path: Path) -> None:
    # Without fsync a crash right after the rename can leave an empty file under the
    # final name on some file systems (ext4 delayed allocation).
    if path.is_file():
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)


def _json_default(obj: Any) -> Any:
    # numpy scalars/arrays and paths appear in metric dicts all the time.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serialisable")


def _clean_floats(obj: Any) -> Any:
    # JSON has no NaN/inf; write null so that strict parsers (jq, browsers) accept the file.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_floats(v) for v in obj]
    return obj


def atomic_write_json(path: str | os.PathLike, data: Any, indent: int = 2) -> None:
    """Write ``data`` as JSON atomically; NaN and inf become ``null``."""
    text = json.dumps(
        _clean_floats(json.loads(json.dumps(data, default=_json_default))), indent=indent, sort_keys=False
    )
    atomic_write_text(path, text + "\n")
