"""A rule-like script for tests/test_train_distributed.py: dispatch with ``resources.gpu = N``.

Like workflow/scripts/run_step.py, it dispatches by rule name (here to a toy registry);
run_rule sees N > 1 outside a process group and starts this very file again under torchrun
with N processes; each trains data-parallel and rank 0 saves the weights.
"""

import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "workflow" / "scripts"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from genomelab.entry import dispatch  # noqa: E402
from test_train_distributed import train_once  # noqa: E402


class _Wildcards(dict):
    pass


def step(smk) -> None:
    out = Path(smk.output[0]).parent
    model = train_once(out / "state").model
    rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
    if rank == 0:
        torch.save(model.state_dict(), smk.output[0])
        world = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        (out / "world_size.txt").write_text(str(world))


if __name__ == "__main__":
    out = Path(sys.argv[1])
    n_gpus = int(sys.argv[2])
    smk = SimpleNamespace(
        log=[str(out / "rule.log")],
        resources=SimpleNamespace(gpu=n_gpus),
        threads=1,
        rule="toy_train",
        wildcards=_Wildcards(),
        input=[],
        output=[str(out / "weights.pt")],
        config={"seed": 1},
    )
    dispatch(smk, {"toy_train": "relaunch_worker:step"})
