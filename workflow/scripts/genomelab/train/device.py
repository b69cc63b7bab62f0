"""Device choice: CUDA when present, else CPU, always overridable."""

from __future__ import annotations

import torch


def resolve_device(requested: str = "auto") -> torch.device:
    """Return the torch device for ``requested`` ("auto", "cpu", "cuda", "cuda:1", "mps").

    Asking for CUDA on a machine without it is an error rather than a silent CPU run:
    a GPU job that quietly trains on the CPU burns hours of an allocation.
    """
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available on this machine")
    return device
