"""Real process kills: kill -9 at random points and SIGTERM, then resume to the same result."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "interrupt_worker.py"
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


SNAKEFILE = """
rule train:
    output:
        metrics="out/metrics.json",
        model="out/model.pt",
        tensorboard=directory("out/tensorboard"),
    log:
        "logs/train.log",
    params:
        state_dir="state/train",
        max_epochs={max_epochs},
        delay={delay},
    script:
        {worker!r}
"""


def make_workflow(path: Path, max_epochs: int, delay: float) -> Path:
    """A one-rule workflow training like a module's rule, with the repository's local profile."""
    path.mkdir(parents=True)
    text = SNAKEFILE.format(max_epochs=max_epochs, delay=delay, worker=str(WORKER))
    (path / "Snakefile").write_text(text)
    # The workflow profile every run of the real workflow gets (rerun-incomplete: true).
    shutil.copytree(ROOT / "profiles" / "default", path / "profiles" / "default")
    return path


def snakemake(workdir: Path, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "snakemake"), "--cores", "1", *args],
        cwd=workdir,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group: the test kills Snakemake and its jobs
        **kw,
    )


def finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def epochs_done(state: Path) -> int:
    """Epochs in the per-epoch metrics JSON that a training run keeps in its state folder."""
    try:
        return len(json.loads(next(state.glob("*/metrics.json")).read_text())["history"])
    except (OSError, ValueError, KeyError, StopIteration):
        return 0


def scalars(folder: Path, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return [(e.step, e.value) for e in events.Scalars(tag)]


@pytest.mark.slow
def test_a_killed_workflow_resumes_with_its_whole_history(tmp_path):
    """kill -9 of Snakemake and its training job mid-run (a node crash, a lost login session),
    then what docs/slurm.md says to do: the lock names --unlock; after it the same command
    resumes from last.pt. The TensorBoard curves hold every epoch once, in order, the killed
    attempt's log is kept, and the result equals an uninterrupted run's."""
    max_epochs, delay = 8, 0.03
    ref = make_workflow(tmp_path / "ref", max_epochs, delay)
    reference = snakemake(ref)  # uninterrupted, alongside
    run = make_workflow(tmp_path / "run", max_epochs, delay)
    proc = snakemake(run)
    deadline = time.monotonic() + 300
    while proc.poll() is None and epochs_done(run / "state" / "train") < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    done = epochs_done(run / "state" / "train")
    assert 3 <= done < max_epochs, f"killed after {done} of {max_epochs} epochs"
    # No declared output looks finished: the metrics JSON is written when training has ended.
    assert not (run / "out" / "metrics.json").exists() and not (run / "out" / "model.pt").exists()

    rc, out = finish(snakemake(run))
    assert rc != 0 and "--unlock" in out, out[-3000:]
    rc, out = finish(snakemake(run, "--unlock"))
    assert rc == 0, out[-3000:]
    rc, out = finish(snakemake(run))
    assert rc == 0, out[-3000:]
    log = (run / "logs" / "train.log").read_text()
    assert "resumed from state/train/" in log, log[-3000:]

    # Every attempt's log: the killed one stops inside training, the second one resumed.
    attempts = run / "state" / "train" / "attempts"
    assert sorted(p.name for p in attempts.iterdir()) == ["attempt1.log", "attempt2.log"]
    first, second = (attempts / "attempt1.log").read_text(), (attempts / "attempt2.log").read_text()
    assert f"epoch {done - 1}: " in first and "rule train finished" not in first, first[-3000:]
    assert "resumed from" in second and "rule train finished" in second, second[-3000:]
    assert "attempts/attempt2.log" in log, log[-3000:]

    rc, out = finish(reference)
    assert rc == 0, out[-3000:]
    resumed = json.loads((run / "out" / "metrics.json").read_text())["history"]
    clean = json.loads((ref / "out" / "metrics.json").read_text())["history"]
    assert [h["val/loss"] for h in resumed] == [h["val/loss"] for h in clean]
    for name in ("val/loss", "train/loss"):
        curve = scalars(run / "out" / "tensorboard", name)
        assert [step for step, _ in curve] == list(range(max_epochs)), (name, curve)
        assert [v for _, v in curve] == pytest.approx([h[name] for h in clean], rel=1e-6), name
    a = torch.load(next((ref / "state" / "train").rglob("best.pt")), weights_only=True)["model"]
    b = torch.load(next((run / "state" / "train").rglob("best.pt")), weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_resumed_run_writes_each_epoch_to_tensorboard_once(tmp_path, monkeypatch):
    """A crash after an epoch was logged but before last.pt caught up with it (here
    checkpoint_every_epochs=2 and an error in epoch 3's validation): the resumed run writes
    that epoch again, and TensorBoard must show it once, with the resumed run's values.
    The event files' counter starts at 9, so that within one second the resumed file (n 10)
    would sort before the first (n 9) by name; it failed so when the suite's order did that."""
    from genomelab.train import Trainer
    from interrupt_worker import SlowClassifier, datasets, train_config
    from tensorboard.summary.writer import event_file_writer

    monkeypatch.setattr(event_file_writer, "_global_uid", event_file_writer.AtomicCounter(9))

    data = datasets()
    cfg = dataclasses.replace(train_config(max_epochs=5), checkpoint_every_epochs=2, checkpoint_every_steps=0)
    calls = []

    def crash_in_epoch_3(model, dataset, device):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("node lost")
        return {}

    def trainer(eval_fn=None) -> Trainer:
        torch.manual_seed(0)
        return Trainer(
            SlowClassifier(0.0),
            cfg,
            tmp_path / "state",
            tensorboard_dir=tmp_path / "tb",
            eval_fn=eval_fn,
            device="cpu",
        )

    first = trainer(crash_in_epoch_3)
    with pytest.raises(RuntimeError, match="node lost"):
        first.fit(data["train"], data["val"])
    first.close()
    assert [s for s, _ in scalars(tmp_path / "tb", "val/loss")] == [0, 1, 2]  # last.pt holds 2 epochs

    second = trainer()
    second.fit(data["train"], data["val"])
    second.close()
    for name in ("val/loss", "train/loss"):
        curve = scalars(tmp_path / "tb", name)
        assert [s for s, _ in curve] == [0, 1, 2, 3, 4], (name, curve)
        assert [v for _, v in curve] == pytest.approx([h[name] for h in second.history], rel=1e-6), name


def test_a_new_event_file_sorts_after_the_folders_earlier_ones(tmp_path, monkeypatch):
    """TensorBoard reads event files in name order, and the name's pid and counter compare as
    text; the engine opens its file only once the clock's second is past every earlier file's.
    A clock of its own (advanced by each sleep), so nothing here depends on the machine's."""
    from genomelab.train import engine

    class Clock:
        now, sleeps = 1_700_000_000.25, 0

        def time(self) -> float:
            return self.now

        def sleep(self, seconds: float) -> None:
            self.sleeps += 1
            self.now += seconds

    clock = Clock()
    monkeypatch.setattr(engine, "time", clock)
    (tmp_path / "events.out.tfevents.1700000000.host.999.9").write_bytes(b"")
    (tmp_path / "events.out.tfevents.notatime").write_bytes(b"")
    engine._after_earlier_event_files(tmp_path)
    assert int(clock.now) == 1_700_000_001 and clock.sleeps > 0  # the next second, no later
    before = clock.sleeps
    engine._after_earlier_event_files(tmp_path)  # already past: no wait
    engine._after_earlier_event_files(tmp_path / "empty")  # no files (nor folder): no wait
    assert clock.sleeps == before
