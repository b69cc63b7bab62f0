"""Atomic writers: a failed write leaves neither a partial target nor temporary files."""

from __future__ import annotations

import json

import pytest
from genomelab.io.atomic import atomic_output, atomic_write_json, atomic_write_text


def test_atomic_output_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_output(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
    with atomic_output(target) as tmp:
        assert tmp.suffix == ".txt" and tmp.parent == tmp_path
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_json_and_text(tmp_path):
    import numpy as np

    atomic_write_json(
        tmp_path / "a" / "m.json", {"x": np.float32(1.5), "arr": np.arange(3), "bad": float("inf")}
    )
    assert json.loads((tmp_path / "a" / "m.json").read_text()) == {"x": 1.5, "arr": [0, 1, 2], "bad": None}
    atomic_write_text(tmp_path / "t.md", "hello")
    assert (tmp_path / "t.md").read_text() == "hello"


def test_outputs_get_the_umask_mode_not_0600(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "shared.txt", "x")
    finally:
        os.umask(umask)
    assert (tmp_path / "shared.txt").stat().st_mode & 0o777 == 0o644


KILLED_WRITER = """
import os, signal, sys
from genomelab.io.atomic import atomic_output
with atomic_output(sys.argv[1]) as tmp:
    tmp.write_bytes(b"half of a large file")
    os.kill(os.getpid(), signal.SIGKILL)  # kill -9 mid-write: no cleanup can run
"""


def test_the_temporary_file_of_a_writer_killed_with_sigkill_goes_with_the_next_write(tmp_path):
    """kill -9 leaves the writer's temporary file (never the target); the next write of the same
    target removes it, so reruns after kills do not pile up half-written copies."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    target = tmp_path / "features.h5"
    scripts = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
    env = dict(os.environ, PYTHONPATH=str(scripts))
    res = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], env=env, timeout=60)
    assert res.returncode == -9
    (left,) = tmp_path.iterdir()
    assert left.name.startswith(".features.h5.") and left.read_bytes() == b"half of a large file"
    (tmp_path / ".other.h5.abc.tmp.h5").write_text("another target's: kept")
    with atomic_output(target) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.h5.abc.tmp.h5", "features.h5"]
    assert target.read_text() == "whole"
