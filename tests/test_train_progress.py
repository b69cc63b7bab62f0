"""Training progress lines: epoch i/N, elapsed and remaining time, the monitored metric."""

from __future__ import annotations

import logging
import re

import pytest
import torch
from genomelab.train import LossOutput, TrainConfig, Trainer
from torch import nn
from torch.utils.data import TensorDataset

LINE = re.compile(
    r"epoch \d+: (\d+)/\d+ done, (\d+:\d\d:\d\d) elapsed, at most (\d+:\d\d:\d\d) left; "
    r"val/loss=(\S+) \(best (\S+)\); train/loss="
)


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(2, 1)

    def loss(self, batch) -> LossOutput:
        x, y = batch
        return LossOutput(nn.functional.mse_loss(self.fc(x).squeeze(-1), y), n=len(y))


def _data(n: int) -> TensorDataset:
    x = torch.randn(n, 2, generator=torch.Generator().manual_seed(n))
    return TensorDataset(x, x @ torch.tensor([1.0, -2.0]))


def test_each_epoch_logs_progress_and_the_monitored_metric(tmp_path, caplog):
    torch.manual_seed(0)
    cfg = TrainConfig(max_epochs=5, batch_size=8, lr=0.05, patience=5, device="cpu", seed=0)
    trainer = Trainer(Linear(), cfg, tmp_path / "state", device="cpu")
    with caplog.at_level(logging.INFO, logger="genomelab.train.engine"):
        result = trainer.fit(_data(64), _data(16))
    lines = [m for m in (LINE.search(r.getMessage()) for r in caplog.records) if m]
    assert [int(m.group(1)) for m in lines] == [1, 2, 3, 4, 5]
    values = [h["val/loss"] for h in result.history]
    for m, value, best in zip(lines, values, (min(values[: i + 1]) for i in range(5)), strict=True):
        assert float(m.group(4)) == pytest.approx(value, rel=1e-3)
        assert float(m.group(5)) == pytest.approx(best, rel=1e-3)
    assert lines[-1].group(3) == "0:00:00"  # nothing left after the last epoch


def test_elapsed_counts_the_time_between_epochs_too(tmp_path, caplog, monkeypatch):
    # Elapsed summed the epochs' own times only, so the work between them (checkpoints,
    # logging) was missing: the recovery trial's log said 0:00:19 after 80 s. The engine's
    # clock is replaced by one that stands still except in the checkpoint after each epoch,
    # which takes 100 s of it: the third epoch's line comes after two of those.
    import time
    import types

    from genomelab.train import engine

    clock = {"now": 1000.0}
    monkeypatch.setattr(
        engine,
        "time",
        types.SimpleNamespace(perf_counter=lambda: clock["now"], time=time.time, sleep=time.sleep),
    )
    save = Trainer._checkpoint_epoch

    def slow_save(self, *args, **kwargs):
        clock["now"] += 100.0
        return save(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "_checkpoint_epoch", slow_save)
    cfg = TrainConfig(max_epochs=3, batch_size=8, lr=0.05, patience=5, device="cpu", seed=0)
    trainer = Trainer(Linear(), cfg, tmp_path / "state", device="cpu")
    with caplog.at_level(logging.INFO, logger="genomelab.train.engine"):
        result = trainer.fit(_data(64), _data(16))
    assert [h["time/epoch_s"] for h in result.history] == [0.0, 0.0, 0.0]  # the epochs themselves
    progress = [m for m in (LINE.search(r.getMessage()) for r in caplog.records) if m]
    # Elapsed after each epoch: 0, 100 and 200 s of checkpoints; left: the wall time per epoch
    # so far (0, 100 / 2, 200 / 3) times the epochs to go (2, 1, 0).
    assert [(m.group(2), m.group(3)) for m in progress] == [
        ("0:00:00", "0:00:00"),
        ("0:01:40", "0:00:50"),
        ("0:03:20", "0:00:00"),
    ]


def test_the_first_line_names_device_precision_torch_and_cuda(tmp_path, caplog):
    """A training log says what trained it: the run's software_versions.json comes from a
    job on another node, often one without a GPU, so it cannot say which GPU and CUDA did."""
    from genomelab.train.engine import _device_name

    cfg = TrainConfig(max_epochs=1, batch_size=8, lr=0.05, patience=5, device="cpu", seed=0)
    with caplog.at_level(logging.INFO, logger="genomelab.train.engine"):
        Trainer(Linear(), cfg, tmp_path / "state", device="cpu").fit(_data(16), _data(8))
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("training on ")]
    assert line.startswith(f"training on cpu (float32; torch {torch.__version__}, CUDA ")
    assert _device_name(torch.device("cpu")) == "cpu"
