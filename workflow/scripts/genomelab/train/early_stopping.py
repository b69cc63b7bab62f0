"""Early stopping that can explain itself and survive a restart."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class EarlyStopping:
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    ``warmup`` epochs are never counted against patience (losses of freshly initialised
    models often rise before they fall). State (``best``, ``best_epoch``, ``bad_epochs``)
    is saved in checkpoints so a resumed run stops exactly where an uninterrupted one would.
    """

    monitor: str = "val/loss"
    mode: str = "min"
    patience: int = 10
    min_delta: float = 0.0
    warmup: int = 0
    best: float = math.nan
    best_epoch: int = -1
    bad_epochs: int = 0
    reason: str = ""

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"early stopping mode must be 'min' or 'max', not {self.mode!r}")
        if self.patience < 1:
            raise ValueError(f"early stopping patience must be >= 1, not {self.patience}")
        if self.min_delta < 0:
            raise ValueError(f"early stopping min_delta must be >= 0, not {self.min_delta}")

    def improved(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if math.isnan(self.best):
            return True
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def step(self, epoch: int, metrics: dict[str, float]) -> tuple[bool, bool]:
        """Record one epoch; return ``(is_best, should_stop)``."""
        if self.monitor not in metrics:
            raise KeyError(
                f"early stopping monitors {self.monitor!r} but the epoch produced only {sorted(metrics)}"
            )
        value = float(metrics[self.monitor])
        if self.improved(value):
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
            return True, False
        if epoch >= self.warmup:
            self.bad_epochs += 1
        if self.bad_epochs >= self.patience:
            self.reason = (
                f"{self.monitor} did not improve by more than {self.min_delta:g} for "
                f"{self.patience} epochs (best {self.best:.6g} at epoch {self.best_epoch})"
            )
            return False, True
        return False, False

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict) -> None:
        self.best = float(state["best"])
        self.best_epoch = int(state["best_epoch"])
        self.bad_epochs = int(state["bad_epochs"])
