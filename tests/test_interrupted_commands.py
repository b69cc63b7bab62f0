"""`genomelab report` and `genomelab predict` killed mid-write leave no partial output in place.

Python ends a process on SIGTERM (kill, scancel, a SLURM time limit) or SIGHUP (a closed
terminal) without running ``finally`` or ``except BaseException``; both commands turn these
signals into an exit that removes what they wrote, and the report is written to a staged file
that is renamed onto the target only when Snakemake finished it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT / "workflow" / "scripts"), PYTHONWARNINGS="ignore")

# A child that writes half a report into the staged path it is given, then waits to be killed.
HALF_WRITER = "import sys, time; open(sys.argv[1], 'w').write('<html>half'); time.sleep(120)"
PARENT = """
import sys
from pathlib import Path
from genomelab.cli import run_staged
half = {half!r}
sys.exit(run_staged(lambda staged: [sys.executable, "-c", half, str(staged)], Path(sys.argv[1])))
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the child process")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_killed_report_leaves_the_earlier_report_and_nothing_partial(tmp_path, sig):
    target = tmp_path / "results" / "r1" / "report.html"
    target.parent.mkdir(parents=True)
    target.write_text("<html>the earlier, complete report</html>")
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT.format(half=HALF_WRITER), str(target)],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    staged: list[Path] = []
    while not staged and parent.poll() is None and time.monotonic() < deadline:
        staged = [p for p in target.parent.glob(".report.html.*.partial/report.html") if p.stat().st_size]
        time.sleep(0.02)
    assert staged, parent.stderr.read() if parent.poll() is not None else "no staged report appeared"
    children = _children(parent.pid)
    assert children, "the report's child process is not running"
    parent.send_signal(sig)
    _, err = parent.communicate(timeout=60)
    assert parent.returncode == 128 + sig, err
    assert target.read_text() == "<html>the earlier, complete report</html>"
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.html"]
    # The child (Snakemake, in real use) was stopped too: it cannot write after the cleanup.
    assert not [c for c in children if Path(f"/proc/{c}").exists() and "Z" not in _state(c)]


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def test_a_report_replaces_the_target_only_when_the_child_succeeds(tmp_path):
    from genomelab.cli import run_staged

    target = tmp_path / "report.zip"
    target.write_text("old")
    write = "import sys; open(sys.argv[1], 'w').write('new'); sys.exit(int(sys.argv[2]))"
    assert run_staged(lambda staged: [sys.executable, "-c", write, str(staged), "3"], target) == 3
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["report.zip"]
    assert run_staged(lambda staged: [sys.executable, "-c", write, str(staged), "0"], target) == 0
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["report.zip"]
    # A child that succeeds without writing the file: not a success (it returned 0, and the
    # earlier report stayed in place as if it were the new one).
    assert run_staged(lambda staged: [sys.executable, "-c", "pass"], target) == 1
    assert target.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["report.zip"]


PREDICT = """
import os, signal, sys, time
from genomelab.cli import main
from genomelab.predict import cli as predict_cli

def half_then_sigterm(args, out):
    (out / "predictions.tsv").write_text("sample\\tpredicted\\n")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the signal arrives before this ends
    (out / "predictions.json").write_text("{}")

predict_cli.RUNNERS["tissue"] = half_then_sigterm
main(["predict", "tissue", "--model", "m.pt", "--inputs", "x.h5", "--out", sys.argv[1]])
"""


def test_a_prediction_stopped_by_sigterm_removes_its_partial_folder(tmp_path):
    """SIGTERM after a prediction wrote its first file: the exit code says which signal, and
    --out is gone (it was new), so a rerun into it is not refused as non-empty. (The module's
    prediction is replaced by one that signals itself after its first file: a real one ends
    before a test could signal it at a known point.)"""
    out = tmp_path / "pred"
    res = subprocess.run(
        [sys.executable, "-c", PREDICT, str(out)], env=ENV, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 128 + signal.SIGTERM, res.stderr[-3000:]
    assert not out.exists(), sorted(p.name for p in out.iterdir())
    assert "removed the partial outputs" not in res.stderr  # a new folder goes whole


def test_a_prediction_under_nohup_survives_the_closed_terminal(tmp_path):
    """``nohup genomelab predict ...`` starts with SIGHUP ignored: the hang-up of a closed
    terminal must not stop it (and delete what it wrote), as it did not before SIGHUP was
    handled; the prediction ends with all its files."""
    out = tmp_path / "pred"
    res = subprocess.run(
        [sys.executable, "-c", PREDICT.replace("SIGTERM", "SIGHUP"), str(out)],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),  # what nohup does
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["predictions.json", "predictions.tsv"]


# A child that, asked to stop, takes its time (as Snakemake finishing its jobs) and says so.
SLOW_TO_STOP = """
import signal, sys, time
from pathlib import Path
def stopping(signum, frame):
    Path(sys.argv[1]).parents[2].joinpath("stopping").write_text("yes")  # beside out/
    time.sleep(60)
    sys.exit(1)
signal.signal(signal.SIGTERM, stopping)
open(sys.argv[1], "w").write("<html>half")
time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the child process")
def test_a_second_signal_while_the_report_stops_kills_its_child(tmp_path):
    """SIGTERM, then SIGTERM again while the child is still ending (Ctrl-C pressed twice, SIGHUP
    then SIGTERM): the child is killed and waited for, not left running alone after the
    command exited and removed its staged folder."""
    target = tmp_path / "out" / "report.html"
    target.parent.mkdir()
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT.format(half=SLOW_TO_STOP), str(target)],
        env=ENV,
        stderr=subprocess.PIPE,
        text=True,
    )
    children: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while (
            not list(target.parent.glob(".report.html.*.partial/report.html")) and time.monotonic() < deadline
        ):
            time.sleep(0.02)
        children = _children(parent.pid)
        assert children, parent.stderr.read() if parent.poll() is not None else "no child"
        parent.send_signal(signal.SIGTERM)
        while not (tmp_path / "stopping").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert (tmp_path / "stopping").exists(), "the child was not asked to stop"
        parent.send_signal(signal.SIGTERM)
        _, err = parent.communicate(timeout=60)
        assert parent.returncode == 128 + signal.SIGTERM, err
        alive = [c for c in children if Path(f"/proc/{c}").exists() and "Z" not in _state(c)]
        assert not alive, "the report's child still runs after the command exited"
        assert sorted(p.name for p in target.parent.iterdir()) == []
    finally:
        for c in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(c, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
