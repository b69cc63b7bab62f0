"""Data-parallel training across processes (torchrun), kept out of the training loop's way.

With ``WORLD_SIZE`` > 1 in the environment (set by ``torchrun``), :func:`init_from_env`
joins the process group (NCCL on GPUs, gloo on CPUs). The Trainer then gives every rank a
slice of each global batch, averages gradients across ranks before each optimiser step,
sums epoch metrics, and lets only rank 0 write checkpoints, metrics and logs. A global
batch is the same set of examples whatever the number of processes, so 2 processes reach
the result of 1 up to floating-point summation order.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from datetime import timedelta

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

# How long a rank waits at the end for the others (rank 0 alone writes the exported model,
# metrics and plots after training, which can take minutes on a shared file system). NCCL's
# default collective timeout (10 minutes) would fail a finished job there, so the final wait
# goes through a gloo group of its own with this timeout.
FINAL_WAIT = timedelta(hours=2)
_final_group: dist.ProcessGroup | None = None


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device_type: str = "cpu") -> tuple[int, int]:
    """Join the process group described by torchrun's environment, if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return dist_info()
    backend = "nccl" if device_type == "cuda" and torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    global _final_group
    # Created now, by every rank at the same point, as new_group requires.
    _final_group = dist.new_group(backend="gloo", timeout=FINAL_WAIT)
    rank, world = dist_info()
    logger.info("joined process group: rank %d of %d (%s)", rank, world, backend)
    return rank, world


def local_device(device: torch.device) -> torch.device:
    """The GPU of this rank (``LOCAL_RANK``) when training on CUDA in a process group."""
    if device.type == "cuda" and dist_info()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def _average_in_place(tensors: list[torch.Tensor], world: int) -> None:
    """All-reduce ``tensors`` in one flat buffer, divide by the world size, copy back."""
    if not tensors or world <= 1:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world
    offset = 0
    for t in tensors:
        t.copy_(flat[offset : offset + t.numel()].view_as(t))
        offset += t.numel()


def average_gradients(params: Iterable[torch.nn.Parameter], world: int) -> None:
    """All-reduce gradients in one flat buffer and divide by the world size."""
    _average_in_place([p.grad for p in params if p.grad is not None], world)


def broadcast_module(module: torch.nn.Module) -> None:
    """Make every rank start from rank 0's parameters and buffers."""
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)


def average_buffers(module: torch.nn.Module, world: int) -> None:
    """Average floating-point buffers (BatchNorm running statistics) over ranks, in place.

    Gradients are averaged every step, so parameters stay equal on every rank, but each
    rank updates running statistics from its own shard of the batch. Without this, ranks
    evaluate different models, disagree on the validation loss and so on the best epoch
    and on early stopping. Integer buffers (``num_batches_tracked``) are equal already.
    """
    _average_in_place([b for b in module.buffers() if b.is_floating_point()], world)


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (e.g. a SIGTERM arrived)."""
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier() -> None:
    if dist_info()[1] > 1:
        dist.barrier()


def shutdown() -> None:
    """Leave the process group after a successful run: wait for every rank, then destroy it.

    Call it on the success path only: a rank that failed exits without it, and torchrun
    stops the others. Why both steps: a process that exits with the group still alive, or
    that tears down its gloo connections while a peer is still using them, can abort at
    exit ("terminate called without an active exception", SIGABRT) after its work is done;
    torchrun then reports the whole job as failed. The wait is on a gloo group with a long
    timeout (:data:`FINAL_WAIT`), not NCCL's; if it still fails (a peer died: torchrun
    reports that one), this rank's work is done, so it is logged, not raised.
    """
    global _final_group
    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        dist.barrier(group=_final_group)
    except Exception as exc:  # noqa: BLE001 - this rank finished; the failing one is reported
        logger.warning("ranks did not all reach the end together (%s); leaving the process group", exc)
    finally:
        _final_group = None
        dist.destroy_process_group()
