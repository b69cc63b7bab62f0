"""Worker for tests/test_train_interruption.py: a training run that can be killed at any time."""

import json
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
from genomelab.runtime import setup_logging  # noqa: E402
from genomelab.train import LossOutput, TrainConfig, Trainer  # noqa: E402


class SlowClassifier(nn.Module):
    """Dropout (RNG matters) and a short sleep per training step (room to be killed)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
        self.delay = delay

    def forward(self, x):
        return self.net(x)

    def loss(self, batch) -> LossOutput:
        if self.training and self.delay:
            time.sleep(self.delay)
        x, y = batch
        ce = nn.functional.cross_entropy(self(x), y)
        return LossOutput(ce, {"ce": ce}, len(y))


def main(out: Path, delay: float) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    torch.manual_seed(0)
    cfg = TrainConfig(
        max_epochs=5, batch_size=32, lr=2e-2, device="cpu", seed=3, patience=50, checkpoint_every_steps=3
    )
    trainer = Trainer(SlowClassifier(delay), cfg, out / "state", out / "metrics.json", device="cpu")
    trainer.fit(TensorDataset(x[:256], y[:256]), TensorDataset(x[256:], y[256:]))
    torch.save(trainer.model.state_dict(), out / "final.pt")
    (out / "done.json").write_text(json.dumps({"epochs": len(trainer.history)}))


if __name__ == "__main__":
    setup_logging()
    main(Path(sys.argv[1]), float(sys.argv[2]))
