"""Real process kills: kill -9 at random points and SIGTERM, then resume to the same result."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

WORKER = Path(__file__).resolve().parent / "interrupt_worker.py"
ENV = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")


def start(out: Path, delay: float, capture: bool = False) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(out), str(delay)],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else subprocess.DEVNULL,
        text=True,
    )


def wait_for_checkpoint(out: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    last = out / "state" / "last.pt"
    before = last.stat().st_mtime_ns if last.exists() else 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if last.exists() and last.stat().st_mtime_ns != before:
            return
        time.sleep(0.02)


@pytest.mark.slow
def test_kill9_and_sigterm_then_resume_give_the_uninterrupted_weights(tmp_path):
    ref = tmp_path / "ref"
    assert subprocess.run([sys.executable, str(WORKER), str(ref), "0"], env=ENV, timeout=300).returncode == 0

    run = tmp_path / "run"
    rng = random.Random(7)
    for attempt in range(3):
        proc = start(run, 0.02)
        wait_for_checkpoint(run, proc)
        time.sleep(rng.uniform(0.0, 0.3))  # a random point, between or during checkpoint writes
        proc.kill()  # kill -9: no handler runs
        proc.wait()
        assert not (run / "done.json").exists(), f"attempt {attempt} finished before the kill"
    proc = start(run, 0.02, capture=True)
    wait_for_checkpoint(run, proc)
    proc.send_signal(signal.SIGTERM)  # SLURM preemption: save and exit 128 + 15
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "stopped by signal 15" in err, err[-2000:]
    # No temporary or truncated checkpoint is left that could be mistaken for a good one (a
    # kill -9 during a write leaves a temporary file; the next run removes it).
    assert sorted(p.name for p in (run / "state").iterdir()) in (["best.pt", "last.pt"], ["last.pt"])

    final = subprocess.run(
        [sys.executable, str(WORKER), str(run), "0"], env=ENV, timeout=300, capture_output=True, text=True
    )
    assert final.returncode == 0, final.stderr[-2000:]
    assert "resumed from" in final.stderr
    a = torch.load(ref / "final.pt", weights_only=True)
    b = torch.load(run / "final.pt", weights_only=True)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    ref_metrics = json.loads((ref / "metrics.json").read_text())
    run_metrics = json.loads((run / "metrics.json").read_text())
    assert [h["val/loss"] for h in run_metrics["history"]] == [h["val/loss"] for h in ref_metrics["history"]]
