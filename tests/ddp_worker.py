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
    mode = sys.argv[2] if len(sys.argv) > 2 else ""
    if mode == "leave":
        # Rank 1 leaves without waiting for rank 0: rank 0's final wait fails, and it must
        # still end well (its work is done), saying so in its log.
        import logging

        from genomelab.train.distributed import init_from_env

        logging.basicConfig(level=logging.INFO)
        rank, _ = init_from_env("cpu")
        if rank == 1:
            torch.distributed.destroy_process_group()
            sys.exit(0)
        shutdown()
        (out / "rank0_done").write_text("ok")
        sys.exit(0)
    norm = mode == "norm"
    trainer = train_once(out / "state", NormRegressor if norm else Regressor)
    rank = torch.distributed.get_rank()
    if norm:
        # Each rank's own view: its validation losses and its buffers after training.
        val = [m["val/loss"] for m in trainer.history]
        torch.save({"val": val, "buffers": dict(trainer.model.named_buffers())}, out / f"rank{rank}.pt")
    elif rank == 0:
        torch.save(trainer.model.state_dict(), out / "weights.pt")
    shutdown()
