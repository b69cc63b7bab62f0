"""Checkpoint files: atomic writes, safe loads, strict compatibility checks."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from genomelab import __version__
from genomelab.io.atomic import atomic_output

logger = logging.getLogger(__name__)

LAST = "last.pt"
BEST = "best.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, or belongs to a different run."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Save ``state`` to ``path`` via a temporary file and rename.

    A job killed mid-write leaves only a ``.tmp`` file behind, never a truncated
    ``last.pt`` that a later run would try to resume from.
    """
    state = dict(state)
    state.setdefault("genomelab_version", __version__)
    with atomic_output(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no arbitrary code from pickles)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt archives
        raise CheckpointError(f"checkpoint {path} is unreadable ({type(exc).__name__}: {exc})") from exc


def load_model_weights(model: torch.nn.Module, path: str | os.PathLike) -> dict[str, Any]:
    """Load the model weights of a checkpoint into ``model``; return the checkpoint."""
    ckpt = load_checkpoint(path)
    if "model" not in ckpt:
        raise CheckpointError(f"checkpoint {path} holds no model weights")
    model.load_state_dict(ckpt["model"])
    return ckpt
