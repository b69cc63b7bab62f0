"""Data-parallel training: 2 CPU processes (gloo) reach the result of 1 process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from genomelab.train import LossOutput, TrainConfig, Trainer
from torch import nn
from torch.utils.data import TensorDataset

HERE = Path(__file__).resolve().parent


class Regressor(nn.Module):
    """No dropout: with identical batches the only difference is summation order."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 1))

    def forward(self, x):
        return self.net(x).squeeze(-1)

    def loss(self, batch) -> LossOutput:
        x, y = batch
        mse = nn.functional.mse_loss(self(x), y)
        return LossOutput(mse, {"mse": mse}, len(y))


def data(seed: int) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 6, generator=g)
    return TensorDataset(x, x[:, 0] * 2 - x[:, 1] + 0.1 * torch.randn(256, generator=g))


class NormRegressor(Regressor):
    """With BatchNorm: running statistics are buffers each rank updates from its own shard."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.Tanh(), nn.Linear(16, 1))


def train_once(state_dir: Path, model_cls: type[nn.Module] = Regressor) -> Trainer:
    torch.manual_seed(0)
    cfg = TrainConfig(max_epochs=4, batch_size=32, lr=1e-2, device="cpu", seed=1, patience=20)
    trainer = Trainer(model_cls(), cfg, state_dir, device="cpu")
    trainer.fit(data(0), data(1))
    return trainer


def run_two_ranks(out: Path, *worker_args: str) -> subprocess.CompletedProcess:
    """tests/ddp_worker.py under torchrun with 2 CPU processes (gloo), writing under ``out``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node=2",
        str(HERE / "ddp_worker.py"),
        str(out),
        *worker_args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    single = train_once(tmp_path / "single").model
    out = tmp_path / "ddp"
    out.mkdir()
    res = run_two_ranks(out)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ddp_weights = torch.load(out / "weights.pt", weights_only=True)
    for name, value in single.state_dict().items():
        assert torch.allclose(value, ddp_weights[name], atol=1e-5), name
    # Only rank 0 wrote checkpoints.
    assert sorted(p.name for p in (out / "state").iterdir()) == ["best.pt", "last.pt"]


@pytest.mark.slow
def test_a_rule_asking_for_two_gpus_is_relaunched_under_torchrun(tmp_path):
    single = train_once(tmp_path / "single").model
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env.pop("WORLD_SIZE", None)
    res = subprocess.run(
        [sys.executable, str(HERE / "relaunch_worker.py"), str(tmp_path), "2"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "launching 2 processes with torchrun" in (tmp_path / "rule.log").read_text()
    assert (tmp_path / "world_size.txt").read_text() == "2"
    weights = torch.load(tmp_path / "weights.pt", weights_only=True)
    for name, value in single.state_dict().items():
        assert torch.allclose(value, weights[name], atol=1e-5), name


@pytest.mark.slow
def test_ranks_agree_on_validation_with_batchnorm(tmp_path):
    """Every rank evaluates the same model, so early stopping and the best epoch agree."""
    res = run_two_ranks(tmp_path, "norm")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["val"] == ranks[1]["val"] and len(ranks[0]["val"]) == 4
    for name, value in ranks[0]["buffers"].items():
        assert torch.equal(value, ranks[1]["buffers"][name]), name


@pytest.mark.slow
def test_a_rank_whose_peer_left_early_still_ends_well(tmp_path):
    """The final wait failing (a peer gone) is logged, not raised: the rank's work is done."""
    res = run_two_ranks(tmp_path, "leave")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert (tmp_path / "rank0_done").read_text() == "ok"
    assert "ranks did not all reach the end together" in res.stderr


def test_shutdown_leaves_the_process_group_and_is_a_no_op_outside_one(tmp_path):
    from genomelab.train import distributed as ddp

    ddp.shutdown()  # no group: nothing to do, no error
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    assert ddp.dist_info() == (0, 1)
    ddp.shutdown()
    assert not torch.distributed.is_initialized()
