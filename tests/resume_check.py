"""Resume equals an uninterrupted run, for a module's own training function.

``assert_resume_is_exact(train, tmp_path)`` runs ``train(root)`` (a module's training step,
its state under ``root / "state"``) once uninterrupted; then, in fresh roots, once stopped by
SIGTERM mid-epoch (SLURM preemption: the engine saves ``last.pt`` at the next step) and once
killed mid-epoch (KeyboardInterrupt, no handler: the epoch-boundary ``last.pt`` stays), each
followed by the same call, which resumes. The final weights (``last.pt``), the best weights
(``best.pt``) and the history (without wall-clock times) must equal the uninterrupted run's
bit for bit, and the resumed call must have trained only the batches left.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from genomelab.train.checkpoint import BEST, LAST, load_checkpoint
from genomelab.train.engine import Trainer, TrainingInterrupted

CRASHES = ("sigterm", "kill")


class BatchCounter:
    """Counts training batches (``Trainer._run_batch`` calls); ``crash`` ends the run on one."""

    def __init__(self) -> None:
        self.n = 0
        self.crash_at: int | None = None
        self.how = ""

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        original = Trainer._run_batch
        counter = self

        def run_batch(trainer: Trainer, batch: Any, *args: Any) -> None:
            counter.n += 1
            if counter.n == counter.crash_at:
                if counter.how == "kill":
                    raise KeyboardInterrupt("simulated kill -9 mid-epoch")
                os.kill(os.getpid(), signal.SIGTERM)  # saved and stopped at the next step
            original(trainer, batch, *args)

        monkeypatch.setattr(Trainer, "_run_batch", run_batch)


def _state(root: Path) -> Path:
    (folder,) = [p for p in (root / "state").iterdir() if (p / LAST).exists()]
    return folder


def _without_times(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if not k.startswith("time/")} for h in history]


def assert_same_run(ref: Path, run: Path) -> None:
    """The final and best weights and the history of two runs' states are identical."""
    for name in (LAST, BEST):
        a, b = load_checkpoint(_state(ref) / name), load_checkpoint(_state(run) / name)
        assert a["model"].keys() == b["model"].keys(), name
        for k, v in a["model"].items():
            assert torch.equal(v, b["model"][k]), f"{name}: {k} differs after resuming"
    a, b = load_checkpoint(_state(ref) / LAST), load_checkpoint(_state(run) / LAST)
    assert _without_times(b["history"]) == _without_times(a["history"])
    assert b["epoch"] == a["epoch"] and b["stopped_reason"] == a["stopped_reason"]


def assert_resume_is_exact(
    train: Callable[[Path], Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    crashes: tuple[str, ...] = CRASHES,
) -> None:
    """See the module docstring. ``train`` must run at least 3 epochs of at least 3 batches
    with the engine's default of one ``last.pt`` per epoch and no early stop before the end."""
    counter = BatchCounter()
    counter.install(monkeypatch)
    train(tmp_path / "ref")
    total = counter.n
    epochs = load_checkpoint(_state(tmp_path / "ref") / LAST)["epoch"]
    per_epoch = total // epochs
    assert epochs >= 3 and per_epoch >= 3 and per_epoch * epochs == total, (epochs, total)
    # Half-way through the third epoch: the kill leaves last.pt of epoch 2, SIGTERM saves
    # the batches done of the third.
    crash_at = 2 * per_epoch + per_epoch // 2 + 1
    for how in crashes:
        root = tmp_path / how
        counter.n, counter.crash_at, counter.how = 0, crash_at, how
        with pytest.raises(KeyboardInterrupt if how == "kill" else TrainingInterrupted):
            train(root)
        saved = load_checkpoint(_state(root) / LAST)
        done = saved["epoch"] * per_epoch + saved["batch_in_epoch"]
        assert not saved["finished"] and done == (2 * per_epoch if how == "kill" else crash_at), done
        counter.n, counter.crash_at = 0, None
        train(root)
        assert counter.n == total - done, f"{how}: the rerun trained {counter.n} batches, not resumed"
        assert_same_run(tmp_path / "ref", root)
