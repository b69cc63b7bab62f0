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


def test_the_temporary_file_of_a_writer_killed_with_sigkill_goes_with_the_next_write(tmp_path, killed_writer):
    """kill -9 leaves the writer's temporary file (never the target); the next write of the same
    target removes it, so reruns after kills do not pile up half-written copies."""
    target = tmp_path / "features.h5"
    left = killed_writer(target)
    assert left.read_bytes() == b"half of a large file"
    (tmp_path / ".other.h5.abc.tmp.h5").write_text("another target's: kept")
    with atomic_output(target) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.h5.abc.tmp.h5", "features.h5"]
    assert target.read_text() == "whole"


def test_a_leftover_that_cannot_be_removed_does_not_fail_the_write(
    tmp_path, killed_writer, monkeypatch, caplog
):
    # Another user's leftover in a shared sticky-bit folder cannot be deleted (EPERM); the
    # cleanup raised it and failed the write. As root the permission check never applies, so
    # the OS error is raised for that one path.
    import pathlib

    target = tmp_path / "features.h5"
    left = killed_writer(target)
    unlink = pathlib.Path.unlink

    def refuse(self, *args, **kwargs):
        if self == left:
            raise PermissionError(1, "Operation not permitted", str(self))
        return unlink(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "unlink", refuse)
    with caplog.at_level("WARNING"):
        atomic_write_text(target, "whole")
    assert target.read_text() == "whole" and left.exists()
    assert f"could not remove {left}" in caplog.text


# A writer that is still running: it writes half its file (or a file of its staged folder),
# waits for the test's go, then the rest through the path (as np.save, h5py or pandas reopen it).
LIVE_WRITER = """
import os, sys, time
from pathlib import Path
from genomelab.io.atomic import atomic_output, staging_dir
target, go, folder = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "folder"
def write(path):
    path.write_text("first half, ")
    while not go.exists():
        time.sleep(0.01)
    with open(path, "a") as fh:
        fh.write("second half")
if folder:
    stage = staging_dir(target)
    write(stage / "part")
    os.replace(stage, target)
else:
    with atomic_output(target) as tmp:
        write(tmp)
"""


@pytest.mark.parametrize(
    ("theirs", "ours", "kind"),
    [
        (
            "features.h5",
            "features.h5",
            "file",
        ),  # a job left running when Snakemake was killed, and the rerun's
        ("features.h5.gz", "features.h5", "file"),  # a target whose name starts with ours
        ("tensorboard", "tensorboard", "folder"),
        ("bins.old", "bins", "folder"),
    ],
)
def test_the_temporaries_of_a_writer_still_running_are_kept(tmp_path, theirs, ours, kind):
    """A temporary file or staged folder whose writer runs is no leftover, however like one its
    name looks: removing it made that writer rename a file holding only its second half onto
    its target, or fail."""
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from genomelab.io.atomic import staging_dir

    scripts = Path(__file__).resolve().parents[1] / "workflow" / "scripts"
    go = tmp_path / "go"
    (out := tmp_path / "out").mkdir()
    writer = subprocess.Popen(
        [sys.executable, "-c", LIVE_WRITER, str(out / theirs), str(go), kind],
        env=dict(os.environ, PYTHONPATH=str(scripts)),
    )
    try:
        deadline = time.monotonic() + 60
        while not _written(out) and writer.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _written(out), "the writer wrote nothing"
        if kind == "folder":
            staging_dir(out / ours)
        else:
            with atomic_output(out / ours) as tmp:
                tmp.write_text("ours")
    finally:
        go.touch()
        assert writer.wait(timeout=60) == 0
    written = out / theirs / "part" if kind == "folder" else out / theirs
    assert written.read_text() == "first half, second half"


def _written(folder) -> bool:
    return any(p.is_file() and p.stat().st_size for p in folder.rglob("*"))
