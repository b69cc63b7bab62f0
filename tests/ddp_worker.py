"""Worker for tests/test_train_distributed.py: train the same tiny model under torchrun."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from genomelab.train.distributed import shutdown  # noqa: E402
from test_train_distributed import NormRegressor, Regressor, train_once  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    norm = len(sys.argv) > 2 and sys.argv[2] == "norm"
    trainer = train_once(out / "state", NormRegressor if norm else Regressor)
    rank = torch.distributed.get_rank()
    if norm:
        # Each rank's own view: its validation losses and its buffers after training.
        val = [m["val/loss"] for m in trainer.history]
        torch.save({"val": val, "buffers": dict(trainer.model.named_buffers())}, out / f"rank{rank}.pt")
    elif rank == 0:
        torch.save(trainer.model.state_dict(), out / "weights.pt")
    shutdown()
