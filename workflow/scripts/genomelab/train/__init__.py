"""The shared training engine: one loop for every module (it knows no biology)."""

from genomelab.train.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from genomelab.train.device import resolve_device
from genomelab.train.early_stopping import EarlyStopping
from genomelab.train.engine import FitResult, LossOutput, TrainConfig, Trainer, TrainingInterrupted

__all__ = [
    "CheckpointError",
    "EarlyStopping",
    "FitResult",
    "LossOutput",
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "load_checkpoint",
    "resolve_device",
    "save_checkpoint",
]
