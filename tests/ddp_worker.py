"""Worker for tests/test_train_distributed.py: train the same tiny model under torchrun."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_train_distributed import train_once  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    model = train_once(out / "state")
    if torch.distributed.get_rank() == 0:
        torch.save(model.state_dict(), out / "weights.pt")
    torch.distributed.destroy_process_group()
