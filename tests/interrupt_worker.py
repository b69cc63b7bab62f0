"""Worker for tests/test_train_interruption.py: a training run that can be killed at any time.

Run directly (``interrupt_worker.py OUT DELAY``) it drives a bare Trainer; as the ``script:``
of the test's small Snakemake workflow it runs the same training as a workflow rule does
(``run_rule`` and ``run_training``: rule log, attempt logs, TensorBoard copy).
"""

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
from genomelab.train.run import RunOutputs, RunSpec, run_training  # noqa: E402


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


def datasets() -> dict[str, TensorDataset]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(320, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return {"train": TensorDataset(x[:256], y[:256]), "val": TensorDataset(x[256:], y[256:])}


def train_config(max_epochs: int = 5) -> TrainConfig:
    return TrainConfig(
        max_epochs=max_epochs,
        batch_size=32,
        lr=2e-2,
        device="cpu",
        seed=3,
        patience=50,
        checkpoint_every_steps=3,
    )


def main(out: Path, delay: float) -> None:
    data = datasets()
    torch.manual_seed(0)
    trainer = Trainer(
        SlowClassifier(delay), train_config(), out / "state", out / "metrics.json", device="cpu"
    )
    trainer.fit(data["train"], data["val"])
    torch.save(trainer.model.state_dict(), out / "final.pt")
    (out / "done.json").write_text(json.dumps({"epochs": len(trainer.history)}))


def rule_step(smk) -> None:
    """The step of the test workflow's training rule, built like a module's training step."""
    spec = RunSpec(
        kind="slow_classifier",
        train_config=train_config(int(smk.params.max_epochs)),
        model_config={"delay": float(smk.params.delay)},
        build_model=lambda: SlowClassifier(float(smk.params.delay)),
        build_data=lambda device: datasets(),
        ids={"classes": ["0", "1", "2"]},
        data_fingerprint="interrupt_worker",
    )
    outputs = RunOutputs(smk.output.metrics, smk.output.model, smk.output.tensorboard)
    run_training(spec, smk.params.state_dir, outputs, "cpu")


if "snakemake" in globals():  # the script: of the test workflow's rule
    from genomelab.entry import run_rule  # noqa: E402

    run_rule(snakemake, rule_step)  # noqa: F821 - injected by Snakemake
elif __name__ == "__main__":
    setup_logging()
    main(Path(sys.argv[1]), float(sys.argv[2]))
