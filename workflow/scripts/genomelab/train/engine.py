"""One training loop for every module.

A model is a plain ``nn.Module`` that also has ``loss(batch) -> LossOutput``: it runs its own
forward pass on the batch (a tensor, tuple or dict already on the device) and returns the
scalar to minimise plus named terms to log. The engine owns everything else: device,
precision, optimiser, schedule, clipping, accumulation, early stopping, checkpoints,
resumption, signals and metric files. It knows no biology.

Determinism: the order of training examples in epoch ``e`` is a permutation drawn from a
generator seeded with ``(seed, e)``, and every RNG state is saved in ``last.pt``. A run that
is killed and resumed therefore replays exactly the batches and dropout masks an
uninterrupted run would have seen, and ends with the same weights (on the CPU; CUDA kernels
are not all bitwise deterministic). Random draws in a dataset's ``__getitem__`` (an
augmentation) are replayed too: with ``num_workers = 0`` they come from the main process's
RNGs, which ``last.pt`` holds; with worker processes the training loader seeds torch, numpy
and ``random`` before each sample from ``(seed, e, the sample's position in the epoch's
order)`` (``_SeededSamples``), so a sample's draws depend neither on the worker that fetches
it nor on where a resumed epoch starts, nor on the number of workers. ``collate_fn`` runs in
the worker after its batch's samples and is replayed as well. Evaluation loaders are left
as they are: their order always starts at sample 0, so their workers' RNGs start from the
same seeds at every evaluation, and a resumed run evaluates as the uninterrupted one does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, Protocol, cast

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LRScheduler
from torch.utils.data import DataLoader, Dataset, TensorDataset

from genomelab import __version__
from genomelab.config import ConfigSection, from_schema
from genomelab.io.atomic import remove_leftovers
from genomelab.io.metrics import Metrics, write_metrics
from genomelab.runtime import with_default_cadence
from genomelab.train import distributed as ddp
from genomelab.train.checkpoint import BEST, LAST, CheckpointError, load_checkpoint, save_checkpoint
from genomelab.train.device import resolve_device
from genomelab.train.early_stopping import EarlyStopping

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "constant")


@dataclass
class LossOutput:
    """What ``model.loss(batch)`` returns.

    ``loss`` is the scalar that is back-propagated; ``terms`` are logged as
    ``{split}/{name}`` (the total is logged as ``{split}/loss``); ``n`` is the number of
    examples in the batch, used to weight epoch averages.
    """

    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    n: int = 1


class LossModel(Protocol):
    """What the engine asks of a model besides being an ``nn.Module``."""

    def loss(self, batch: Any) -> LossOutput: ...


@dataclass
class TrainConfig(ConfigSection):
    """Hyper-parameters of the loop itself (model sizes live in each model's config)."""

    SECTION = "train"

    max_epochs: int = from_schema("train.max_epochs")
    batch_size: int = from_schema("train.batch_size")
    lr: float = from_schema("train.lr")
    weight_decay: float = from_schema("train.weight_decay")
    warmup_steps: int = from_schema("train.warmup_steps")
    schedule: str = from_schema("train.schedule")
    min_lr_ratio: float = from_schema("train.min_lr_ratio")
    grad_clip: float | None = from_schema("train.grad_clip")
    grad_accum_steps: int = from_schema("train.grad_accum_steps")
    precision: str = from_schema("train.precision")
    seed: int = 0
    monitor: str = from_schema("train.monitor")
    mode: str = from_schema("train.mode")
    patience: int = from_schema("train.patience")
    min_delta: float = from_schema("train.min_delta")
    early_stopping_warmup: int = from_schema("train.early_stopping_warmup")
    num_workers: int = from_schema("train.num_workers")
    device: str = from_schema("config.device")
    drop_last: bool = from_schema("train.drop_last")
    checkpoint_every_steps: int = from_schema("train.checkpoint_every_steps")
    checkpoint_every_epochs: int = from_schema("train.checkpoint_every_epochs")
    log_every_steps: int = from_schema("train.log_every_steps")

    def __post_init__(self) -> None:
        positive = {
            "max_epochs": self.max_epochs,
            "batch_size": self.batch_size,
            "grad_accum_steps": self.grad_accum_steps,
            "patience": self.patience,
            "checkpoint_every_epochs": self.checkpoint_every_epochs,
        }
        for name, value in positive.items():
            if int(value) < 1:
                raise ValueError(f"train.{name} must be >= 1, not {value}")
        if not self.lr > 0:
            raise ValueError(f"train.lr must be > 0, not {self.lr}")
        for name in (
            "weight_decay",
            "warmup_steps",
            "min_delta",
            "num_workers",
            "early_stopping_warmup",
            "checkpoint_every_steps",
            "log_every_steps",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"train.{name} must be >= 0, not {getattr(self, name)}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"train.grad_clip must be > 0 or null, not {self.grad_clip}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"train.schedule must be one of {SCHEDULES}, not {self.schedule!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"train.min_lr_ratio must be in [0, 1], not {self.min_lr_ratio}")
        if self.mode not in ("min", "max"):
            raise ValueError(f"train.mode must be 'min' or 'max', not {self.mode!r}")


@dataclass
class FitResult:
    """Summary of a finished ``fit``; the model holds the best weights afterwards."""

    best_epoch: int
    best_value: float
    epochs_run: int
    stopped_reason: str
    history: list[dict[str, float]]
    best_checkpoint: Path


def _device_name(device: torch.device) -> str:
    """``cuda:0 (NVIDIA H100 80GB HBM3)``: the log of a training job says which GPU trained it
    (the run's software_versions.json is written by a job on another node, often without one)."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


class TrainingInterrupted(RuntimeError):
    """Raised after a signal made the trainer save ``last.pt`` and stop."""

    def __init__(self, signum: int, checkpoint: Path):
        self.signum = signum
        self.checkpoint = checkpoint
        super().__init__(f"training stopped by signal {signum}; state saved to {checkpoint}")


def config_fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable configuration parts.

    Used to name state folders: a changed hyper-parameter gives a fresh folder (a new run),
    an unchanged one finds its ``last.pt`` and resumes.
    """
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _rng_state() -> dict[str, Any]:
    # Plain lists and ints only, so that weights_only=True loading accepts them.
    np_state = cast(tuple[Any, ...], np.random.get_state())  # the legacy tuple form
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": list(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _sample_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for the sample at ``position`` of epoch ``epoch``'s order in run ``seed``."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def _seed_all(seed: int) -> None:
    """Seed torch's CPU generator, numpy's legacy global RNG and ``random`` (a worker's, per
    sample). Only the CPU generator: ``torch.manual_seed`` also seeds every CUDA device's,
    which a loader worker does not draw from, at ~160 us per call against ~1 us."""
    torch.default_generator.manual_seed(seed)
    np.random.seed([seed & 0xFFFF_FFFF, seed >> 32])
    random.seed(seed)


class _SeededSamples(Dataset):
    """A training set whose items are fetched by ``(position, index)``: before fetching
    ``dataset[index]`` it seeds the RNGs from ``(seed, epoch, position)``, ``position`` being
    the sample's place in the whole epoch's order.

    Used only when the loader has worker processes. A worker's RNGs are seeded once per loader from the
    loader's generator and the worker id, and batches go to workers in turn, so without this
    a resumed epoch (a loader over the rest of the order) would give its samples other
    augmentations than the uninterrupted run. A dataset with a batched ``__getitems__`` is
    seeded once per batch, from its first sample's position (batches are the same in every
    run: resumption starts at a batch boundary).
    """

    def __init__(self, dataset: Dataset, seed: int, epoch: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: list[int]) -> Any:
        position, index = key
        _seed_all(_sample_seed(self.seed, self.epoch, position))
        return self.dataset[index]

    def __getitems__(self, keys: list[list[int]]) -> Any:
        batched = getattr(self.dataset, "__getitems__", None)
        if not batched:
            return [self[key] for key in keys]
        _seed_all(_sample_seed(self.seed, self.epoch, keys[0][0]))
        return batched([index for _, index in keys])


def _duration(seconds: float) -> str:
    """``h:mm:ss`` of a non-negative number of seconds (progress lines)."""
    whole = int(round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _accumulate(sums: dict[str, torch.Tensor], out: LossOutput) -> None:
    """Add ``n``-weighted loss terms to on-device float64 sums.

    Kept on the device so that a GPU is not synchronised once per term per batch; the sums
    become Python floats only where they are logged or saved.
    """
    for name, value in {"loss": out.loss, **out.terms}.items():
        term = value.detach().to(torch.float64) * out.n
        sums[name] = sums[name] + term if name in sums else term


def _as_floats(sums: dict[str, torch.Tensor]) -> dict[str, float]:
    if not sums:
        return {}
    values = torch.stack([v.reshape(()) for v in sums.values()]).tolist()  # one device sync
    return dict(zip(sums, values, strict=True))


def _check_splits(train: Dataset, val: Dataset | None) -> int:
    """Refuse an empty training set or a missing validation set; return the training set size."""
    n_train = len(train)  # type: ignore[arg-type]
    if n_train == 0:
        raise ValueError("the training set is empty")
    if val is None or len(val) == 0:  # type: ignore[arg-type]
        raise ValueError(
            "a non-empty validation set is required (early stopping and best checkpoint are chosen on it)"
        )
    return n_train


class _SignalFlag:
    """Turn SIGTERM/SIGUSR1 (SLURM preemption and time-limit warnings) into a flag."""

    SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGUSR1", None)) if s)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _SignalFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        logger.warning("received signal %d: will save state and stop at the next step", signum)
        self.signum = signum

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


@dataclass
class _FitState:
    """What the parts of one ``fit`` call share: optimiser, schedule, epoch length, signals."""

    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    batches_per_epoch: int
    flag: _SignalFlag


@dataclass
class _EpochSums:
    """The current epoch's ``n``-weighted loss sums (float64, on the device) and examples seen."""

    sums: dict[str, torch.Tensor]
    n_seen: int

    @classmethod
    def restore(cls, running: dict[str, float], device: torch.device) -> _EpochSums:
        """Continue from the ``running`` record of a mid-epoch ``last.pt`` (empty: a fresh epoch)."""
        values = dict(running)
        n_seen = int(values.pop("__n__", 0))
        sums = {k: torch.tensor(v, dtype=torch.float64, device=device) for k, v in values.items()}
        return cls(sums, n_seen)

    def add(self, out: LossOutput) -> None:
        self.n_seen += out.n
        _accumulate(self.sums, out)

    def running(self) -> dict[str, float]:
        """The record a mid-epoch ``last.pt`` stores (``__n__``: examples seen)."""
        return dict(_as_floats(self.sums), __n__=self.n_seen)


def _after_earlier_event_files(folder: Path) -> None:
    """Wait (under a second) until the clock's whole second is past every event file's in
    ``folder``. TensorBoard reads a folder's event files in name order,
    ``events.out.tfevents.<seconds>.<host>.<pid>.<n>``, and compares the pid and n as text: a
    resumed attempt opened within the same second as the attempt it resumes (pid 998 after
    999, n 10 after 9) would be read first, and its purge would drop its own epochs."""
    stamps = [
        int(parts[3])
        for f in folder.glob("events.out.tfevents.*")
        if len(parts := f.name.split(".")) > 3 and parts[3].isdigit()
    ]
    if stamps:
        while int(time.time()) <= max(stamps):
            time.sleep(0.05)


class Trainer:
    """Fit a model with ``loss(batch) -> LossOutput`` on map-style datasets.

    Parameters
    ----------
    model: the ``nn.Module``; it is moved to the device here.
    config: loop hyper-parameters.
    state_dir: folder for ``last.pt``/``best.pt``; Snakemake must not manage it (it deletes
        declared outputs before a rerun), so a rerun finds ``last.pt`` and resumes.
    metrics_path: per-epoch history and final metrics as JSON (rewritten every epoch).
    tensorboard_dir: TensorBoard event files with the same scalars.
    eval_fn: ``eval_fn(model, dataset, device) -> {name: value}``, extra validation metrics
        (accuracy, correlation, ...) logged as ``val/{name}``.
    collate_fn: passed to the DataLoader for non-tensor datasets.
    run_config: extra configuration (model, data) stored in checkpoints and part of the
        fingerprint that must match on resume.
    reuse_finished: a ``last.pt`` of a finished run is taken as it is (no training) rather
        than trained again from scratch: the job that trained it was killed before it wrote
        its outputs (genomelab.train.run decides).
    """

    _writer: SummaryWriter | None

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        state_dir: str | os.PathLike,
        metrics_path: str | os.PathLike | None = None,
        tensorboard_dir: str | os.PathLike | None = None,
        eval_fn: Callable[[nn.Module, Dataset, torch.device], dict[str, float]] | None = None,
        collate_fn: Callable | None = None,
        run_config: dict[str, Any] | None = None,
        device: torch.device | str | None = None,
        reuse_finished: bool = False,
    ) -> None:
        if not hasattr(model, "loss"):
            raise TypeError(f"{type(model).__name__} has no loss(batch) method")
        self.config = config
        device = torch.device(device) if device is not None else resolve_device(config.device)
        self.rank, self.world = ddp.init_from_env(device.type)
        self.is_main = self.rank == 0
        self.device = ddp.local_device(device)
        self.model = model.to(self.device)
        # BatchNorm cannot train on a batch of one (no variance): a training batch must give
        # every rank at least two examples, so a last batch smaller than that is dropped.
        self._min_share = (
            2 if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()) else 1
        )
        if self.world > 1:
            ddp.broadcast_module(self.model)
        self.state_dir = Path(state_dir)
        self.metrics_path = Path(metrics_path) if metrics_path else None
        self.tensorboard_dir = Path(tensorboard_dir) if tensorboard_dir else None
        self.eval_fn = eval_fn
        self.collate_fn = collate_fn
        self.run_config = run_config or {}
        self.reuse_finished = reuse_finished
        self.fingerprint = config_fingerprint(
            with_default_cadence(dataclasses.asdict(config)), self.run_config, self._model_signature()
        )
        self.autocast_dtype = self._autocast_dtype()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.autocast_dtype is torch.float16)
        self.history: list[dict[str, float]] = []
        # (wall clock when this attempt's fit started, epochs in the history before it)
        self._clock: tuple[float | None, int] = (None, 0)
        self.stopper = EarlyStopping(
            config.monitor, config.mode, config.patience, config.min_delta, config.early_stopping_warmup
        )
        self._writer = None

    # ----------------------------------------------------------------- set-up
    def _model_signature(self) -> list[list[Any]]:
        return [[name, list(p.shape)] for name, p in self.model.state_dict().items()]

    def _autocast_dtype(self) -> torch.dtype | None:
        precision = self.config.precision
        if precision == "auto":
            # bf16 needs no loss scaling and halves activation memory; CPU autocast is slow.
            if self.device.type == "cuda" and torch.cuda.is_bf16_supported():
                return torch.bfloat16
            return None
        return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]

    def _make_optimizer(self) -> torch.optim.Optimizer:
        # No weight decay on biases and normalisation parameters (1-D tensors).
        decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.model.parameters() if p.requires_grad and p.ndim < 2]
        groups = [
            {"params": decay, "weight_decay": self.config.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        fused = self.device.type == "cuda"
        return torch.optim.AdamW(groups, lr=self.config.lr, fused=fused)

    def _make_scheduler(self, optimizer: torch.optim.Optimizer, total_steps: int) -> LambdaLR:
        cfg = self.config
        warmup = cfg.warmup_steps

        def factor(step: int) -> float:
            if warmup and step < warmup:
                return (step + 1) / warmup
            if cfg.schedule == "constant":
                return 1.0
            progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
            return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

        return LambdaLR(optimizer, factor)

    # --------------------------------------------------------------- batching
    def _epoch_permutation(self, n: int, epoch: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return torch.randperm(n, generator=gen)

    def _batches(
        self,
        dataset: Dataset,
        order: torch.Tensor,
        drop_last: bool,
        every_sample: bool = False,
        epoch: int | None = None,
        first: int = 0,
    ) -> Iterator[Any]:
        """Yield this rank's part of each global batch of ``order`` (the whole batch on 1 process).

        ``every_sample``: keep a last batch too small to give every rank a part (evaluation
        must see every sample; training needs equal step counts on all ranks instead).
        ``epoch``: a training epoch whose order ``order`` is from position ``first`` on; with
        worker processes each sample is fetched with RNGs seeded from its position
        (``_SeededSamples``).
        """
        if isinstance(dataset, TensorDataset):
            # Fast path: slice whole tensors instead of collating single items. Tensors
            # already on the GPU (preloaded by the caller) never touch the host: the epoch's
            # order is copied to their device once, because a host-to-device copy of every
            # batch's indices (pageable memory) makes the host wait for the GPU each step.
            per_device = {
                d: self._index_batches(order.to(d), drop_last, every_sample)
                for d in {t.device for t in dataset.tensors}
            }
            for i in range(len(next(iter(per_device.values()), []))):
                yield tuple(t[per_device[t.device][i]] for t in dataset.tensors)
            return
        if not len(order):
            return
        generator = torch.Generator().manual_seed(int(order[0]))
        if epoch is not None and self.config.num_workers > 0:
            # Without workers __getitem__ draws from the main process's RNGs, which last.pt
            # saves: that path stays as it is. Workers' RNGs are not saved, and a resumed
            # epoch's loader seeds and assigns them differently: each sample is seeded from
            # its position in the whole epoch's order instead. Rows (position, index) are
            # batched exactly as the indices alone would be.
            positions = torch.arange(first, first + len(order), device=order.device)
            order = torch.stack([positions, order], dim=1)
            dataset = _SeededSamples(dataset, self.config.seed, epoch)
        index_batches = self._index_batches(order, drop_last, every_sample)
        if not index_batches:
            return
        loader = DataLoader(
            dataset,
            batch_sampler=[b.tolist() for b in index_batches],
            collate_fn=self.collate_fn,
            num_workers=self.config.num_workers,
            pin_memory=self.device.type == "cuda",
            generator=generator,
        )
        yield from loader

    def _index_batches(
        self, order: torch.Tensor, drop_last: bool, every_sample: bool = False
    ) -> list[torch.Tensor]:
        """This rank's slice of each global batch of ``order`` (views, on ``order``'s device)."""
        bs = self.config.batch_size
        n = len(order)
        stop = (n // bs) * bs if drop_last else n
        index_batches = [order[start : start + bs] for start in range(0, stop, bs)]
        if self.world > 1 and every_sample:
            # Evaluation: no collective runs per batch, so ranks may differ in batch count.
            index_batches = [b.tensor_split(self.world)[self.rank] for b in index_batches]
            index_batches = [b for b in index_batches if len(b)]
        elif not every_sample:
            # Every rank must see the same number of steps; a last batch that cannot give each
            # rank ``_min_share`` examples is dropped on all of them.
            index_batches = [
                b.tensor_split(self.world)[self.rank] if self.world > 1 else b
                for b in index_batches
                if len(b) >= self.world * self._min_share
            ]
        return index_batches

    def _n_batches(self, n: int, drop_last: bool) -> int:
        bs = self.config.batch_size
        return n // bs if drop_last else math.ceil(n / bs)

    # ------------------------------------------------------------- checkpoints
    def _state(
        self, run: _FitState, epoch: int, batch_in_epoch: int, running: dict[str, float], finished: bool
    ) -> dict[str, Any]:
        """Everything ``last.pt`` needs to continue at batch ``batch_in_epoch`` of ``epoch``."""
        return {
            "model": self.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": run.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "running": running,
            "early_stopping": self.stopper.state_dict(),
            "history": self.history,
            "rng": _rng_state(),
            "train_config": dataclasses.asdict(self.config),
            "run_config": json.loads(json.dumps(self.run_config, default=str)),
            "fingerprint": self.fingerprint,
            "finished": finished,
            "stopped_reason": self.stopper.reason,
            "genomelab_version": __version__,
        }

    def _save_last(
        self, run: _FitState, epoch: int, batch_in_epoch: int, running: dict[str, float], finished: bool
    ) -> Path:
        path = self.state_dir / LAST
        state = self._state(run, epoch, batch_in_epoch, running, finished)
        if self.world > 1:
            # Each rank has its own dropout stream; keep all of them for an exact resume.
            rngs: list[Any] = [None] * self.world
            torch.distributed.all_gather_object(rngs, state["rng"])
            state["rng_by_rank"] = rngs
        if self.is_main:
            save_checkpoint(path, state)
        ddp.barrier()
        return path

    def _save_best(self, epoch: int, metrics: dict[str, float]) -> None:
        save_checkpoint(
            self.state_dir / BEST,
            {
                "model": self.model.state_dict(),
                "epoch": epoch,
                "metrics": metrics,
                "train_config": dataclasses.asdict(self.config),
                "run_config": json.loads(json.dumps(self.run_config, default=str)),
                "fingerprint": self.fingerprint,
            },
        )

    def _resume(
        self, optimizer: torch.optim.Optimizer, scheduler: LRScheduler
    ) -> tuple[int, int, dict[str, float], bool]:
        """Load ``last.pt`` if there is one; return epoch, batch in epoch, running sums, finished."""
        path = self.state_dir / LAST
        if not path.exists():
            return 0, 0, {}, False
        ckpt = load_checkpoint(path)
        if ckpt.get("fingerprint") != self.fingerprint:
            raise CheckpointError(
                f"{path} belongs to a different run (fingerprint {ckpt.get('fingerprint')} != "
                f"{self.fingerprint}); remove {self.state_dir} to start afresh"
            )
        if ckpt["finished"] and not self.reuse_finished:
            # A finished run is only rerun on purpose (snakemake -R, a changed script): train
            # again from scratch. Same seed and config, so the result is the same.
            logger.info("%s holds a finished run; this rerun trains again from scratch", path)
            self.history = []
            return 0, 0, {}, False
        if ckpt["finished"]:
            logger.info("%s holds a finished run whose outputs were never written: using it", path)
        self.model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        self.scaler.load_state_dict(ckpt["scaler"])
        self.stopper.load_state_dict(ckpt["early_stopping"])
        self.stopper.reason = ckpt.get("stopped_reason", "")
        self.history = list(ckpt["history"])
        by_rank = ckpt.get("rng_by_rank")
        _set_rng_state(by_rank[self.rank] if by_rank and len(by_rank) == self.world else ckpt["rng"])
        logger.info("resumed from %s at epoch %d, batch %d", path, ckpt["epoch"], ckpt["batch_in_epoch"])
        return int(ckpt["epoch"]), int(ckpt["batch_in_epoch"]), dict(ckpt["running"]), bool(ckpt["finished"])

    # --------------------------------------------------------------- logging
    def _tb(self) -> SummaryWriter | None:
        if self._writer is None and self.tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step drops the events a killed attempt wrote after its last checkpoint
            # (TensorBoard ignores earlier files' events at steps >= purge_step), so a resumed
            # run that writes into the same folder shows every epoch once.
            _after_earlier_event_files(Path(self.tensorboard_dir))
            self._writer = SummaryWriter(str(self.tensorboard_dir), purge_step=len(self.history))
        return self._writer

    def _log_epoch(self, metrics: dict[str, float]) -> None:
        if not self.is_main:
            return
        writer = self._tb()
        if writer is not None:
            for name, value in metrics.items():
                if name != "epoch":
                    writer.add_scalar(name, value, int(metrics["epoch"]))
            writer.flush()
        logger.info("%s", self._progress_line(metrics))

    def _progress_line(self, metrics: dict[str, float]) -> str:
        """``epoch 11: 12/60 done, 0:01:23 elapsed, at most 0:04:10 left; val/loss=0.123 (best
        0.120); ...``: the epoch's index (0-based, as in the metrics JSON and TensorBoard),
        epochs done of ``max_epochs``, times, the monitored metric, then the other metrics.

        Elapsed time is this attempt's wall time since training started (checkpoints, logging
        and the rest between epochs included: with many short epochs they can take longer than
        the epochs themselves) plus the epoch times of the attempts before it, from the
        history; the time left is this attempt's wall time per epoch times the epochs left,
        assuming every remaining epoch runs (early stopping may end sooner)."""
        done, total = len(self.history), self.config.max_epochs
        times = [h.get("time/epoch_s", 0.0) for h in self.history]
        start, before = self._clock
        if start is None or done <= before:
            elapsed, per_epoch = sum(times), sum(times) / max(done, 1)
        else:
            wall = time.perf_counter() - start
            elapsed, per_epoch = sum(times[:before]) + wall, wall / (done - before)
        left = per_epoch * max(total - done, 0)
        monitor = self.config.monitor
        head = (
            f"epoch {int(metrics['epoch'])}: {done}/{total} done, "
            f"{_duration(elapsed)} elapsed, at most {_duration(left)} left"
        )
        if monitor in metrics:
            value = metrics[monitor]
            # The stopper sees this epoch after the line is logged: count it as it will.
            best = value if self.stopper.improved(value) else self.stopper.best
            head += f"; {monitor}={value:.4g} (best {best:.4g})"
        shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k not in ("epoch", monitor))
        return f"{head}; {shown}"

    def metrics_payload(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The metrics JSON: per-epoch history, best epoch, final values and config."""
        return self._metrics_record(extra).to_dict()

    def _metrics_record(self, extra: dict[str, Any] | None = None) -> Metrics:
        # One record type for every metrics.json (genomelab.io.metrics), in the engine's key order.
        return Metrics.training_run(
            genomelab_version=__version__,
            device=str(self.device),
            precision=str(self.autocast_dtype or torch.float32).replace("torch.", ""),
            train_config=dataclasses.asdict(self.config),
            monitor=self.config.monitor,
            best_epoch=self.stopper.best_epoch,
            best_value=self.stopper.best,
            stopped_reason=self.stopper.reason,
            history=self.history,
            extra=extra,
            source=str(self.metrics_path or "metrics"),
        )

    def write_metrics(
        self, extra: dict[str, Any] | None = None, path: str | os.PathLike | None = None
    ) -> None:
        """Write the metrics JSON (rank 0) to ``path``, by default the per-epoch ``metrics_path``."""
        target = path if path is not None else self.metrics_path
        if target is not None and self.is_main:
            write_metrics(target, self._metrics_record(extra))

    def log_scalars(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Write extra scalars (e.g. ``test/accuracy``) to TensorBoard."""
        writer = self._tb() if self.is_main else None
        if writer is not None:
            for name, value in metrics.items():
                writer.add_scalar(name, value, len(self.history) if step is None else step)
            writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    # -------------------------------------------------------------- the loop
    def _loss(self, batch: Any) -> LossOutput:
        return cast(LossModel, self.model).loss(batch)

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )

    @torch.no_grad()
    def evaluate(self, dataset: Dataset, split: str = "val") -> dict[str, float]:
        """Average loss terms over ``dataset`` (plus ``eval_fn`` metrics) as ``{split}/{name}``.

        In a process group each rank evaluates its share of every batch and the sums are
        added over ranks, so every rank gets the same averages over every sample.
        """
        if len(dataset) == 0:  # type: ignore[arg-type]
            raise ValueError(f"cannot evaluate on an empty {split} set")
        self.model.eval()
        sums: dict[str, torch.Tensor] = {}
        total = 0
        order = torch.arange(len(dataset))  # type: ignore[arg-type]
        for batch in self._batches(dataset, order, drop_last=False, every_sample=True):
            with self._autocast():
                out = self._loss(_to_device(batch, self.device))
            total += out.n
            _accumulate(sums, out)
        averages = _as_floats(sums)
        if self.world > 1:
            keys = sorted(averages)
            reduced = ddp.all_reduce_sum([float(total)] + [averages[k] for k in keys], self.device)
            total, averages = int(reduced[0]), dict(zip(keys, reduced[1:], strict=True))
        metrics = {f"{split}/{k}": v / total for k, v in averages.items()}
        if self.eval_fn is not None:
            extra = self.eval_fn(self.model, dataset, self.device)
            metrics.update({f"{split}/{k}": float(v) for k, v in extra.items()})
        return metrics

    def fit(self, train: Dataset, val: Dataset) -> FitResult:
        """Train until ``max_epochs`` or early stopping; resume from ``last.pt`` if present.

        Raises ``TrainingInterrupted`` after SIGTERM/SIGUSR1 (state saved first) and
        ``ValueError`` without a validation set: early stopping and best-checkpoint
        selection are meaningless on training loss.

        Each epoch is a training pass (``_run_epoch`` over ``_run_batch`` and ``_step``, with
        mid-epoch checkpoints), validation (``_epoch_metrics``), early stopping and the best
        checkpoint (``_early_stopping``), then ``last.pt`` (``_checkpoint_epoch``).
        """
        from genomelab.runtime import seed_everything

        cfg = self.config
        n_train = _check_splits(train, val)
        self._remove_stale_temporaries()
        # Ranks share the seed of the permutation but draw different dropout masks.
        seed_everything(cfg.seed + 7919 * self.rank)
        optimizer = self._make_optimizer()
        batches_per_epoch = self._batches_per_epoch(n_train)
        steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum_steps)
        scheduler = self._make_scheduler(optimizer, steps_per_epoch * cfg.max_epochs)
        epoch, skip_batches, running, finished = self._resume(optimizer, scheduler)
        # Wall clock of this attempt and the epochs before it, for the progress line.
        self._clock = (time.perf_counter(), len(self.history))
        if self.is_main:
            # Open the event file before the first epoch, so that its purge_step is the number
            # of epochs last.pt kept (see _tb).
            self._tb()
        logger.info(
            "training on %s (%s; torch %s, CUDA %s), %d train / %d val examples, %d batches/epoch, "
            "state in %s",
            _device_name(self.device),
            self.metrics_payload()["precision"],
            torch.__version__,
            torch.version.cuda or "none",
            n_train,
            len(val),  # type: ignore[arg-type]
            batches_per_epoch,
            self.state_dir,
        )
        with _SignalFlag() as flag:
            run = _FitState(optimizer, scheduler, batches_per_epoch, flag)
            while not finished and epoch < cfg.max_epochs:
                t0 = time.perf_counter()
                train_metrics = self._run_epoch(run, train, epoch, skip_batches, running)
                skip_batches, running = 0, {}
                metrics = self._epoch_metrics(run, val, epoch, train_metrics, t0)
                finished = self._early_stopping(epoch, metrics)
                epoch += 1
                self._checkpoint_epoch(run, epoch, finished)
        return self._finish()

    # ------------------------------------------------------- parts of fit
    def _remove_stale_temporaries(self) -> None:
        # A process killed (kill -9, OOM, node failure) while writing a checkpoint leaves its
        # temporary file (io.atomic) behind; last.pt itself is intact. Such leftovers are
        # removed instead of piling up; a temporary whose writer still runs stays (a job left
        # running on its node when Snakemake was killed trains in the same folder).
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for name in (LAST, BEST):
            remove_leftovers(self.state_dir / name)

    def _batches_per_epoch(self, n_train: int) -> int:
        cfg = self.config
        n_batches = self._n_batches(n_train, cfg.drop_last)
        tail = n_train % cfg.batch_size
        if not cfg.drop_last and 0 < tail < self.world * self._min_share:
            n_batches -= 1  # _index_batches drops a last batch too small to share between ranks
        if n_batches == 0:
            raise ValueError(
                f"batch_size {cfg.batch_size} with drop_last leaves no batch of {n_train} examples"
            )
        return n_batches

    def _run_epoch(
        self, run: _FitState, train: Dataset, epoch: int, skip_batches: int, running: dict[str, float]
    ) -> dict[str, float]:
        """Train on epoch ``epoch`` from batch ``skip_batches`` on (a resumed epoch continues
        with the sums ``running`` that ``last.pt`` saved); return ``train/{name}`` averages
        over all ranks."""
        cfg = self.config
        self.model.train()
        first = skip_batches * cfg.batch_size
        order = self._epoch_permutation(len(train), epoch)[first:]  # type: ignore[arg-type]
        sums = _EpochSums.restore(running, self.device)
        run.optimizer.zero_grad(set_to_none=True)
        progress = self._progress(run.batches_per_epoch, skip_batches, epoch)
        k = cfg.grad_accum_steps
        for i, batch in enumerate(
            self._batches(train, order, cfg.drop_last, epoch=epoch, first=first), start=skip_batches
        ):
            # Each step averages the batches of its group: the epoch's last group may hold
            # fewer than grad_accum_steps (its gradient is then still a mean, not a fraction).
            group_start = i - i % k
            self._run_batch(batch, sums, min(k, run.batches_per_epoch - group_start))
            if (i + 1) % k == 0 or i + 1 == run.batches_per_epoch:
                self._step(run, epoch, i + 1, sums, progress, i + 1 - group_start)
        if progress is not None:
            progress.close()
        return self._train_averages(sums, epoch)

    def _run_batch(self, batch: Any, sums: _EpochSums, group: int) -> None:
        """Forward and backward pass of one batch of a group of ``group`` batches; gradients
        accumulate (each batch's loss / ``group``) until ``_step``."""
        with self._autocast():
            out = self._loss(_to_device(batch, self.device))
        self.scaler.scale(out.loss / group).backward()
        sums.add(out)

    def _step(
        self, run: _FitState, epoch: int, n_done: int, sums: _EpochSums, progress: Any, n_batches: int
    ) -> None:
        """The optimiser step after ``n_done`` batches of ``epoch`` (``n_batches`` of them since
        the last step), then progress, log and checkpoint."""
        cfg = self.config
        self._optimizer_step(run.optimizer, run.scheduler)
        if progress is not None:
            progress.update(n_batches)
        if cfg.log_every_steps and n_done % cfg.log_every_steps == 0:
            logger.info(
                "epoch %d batch %d/%d: train/loss=%.4g",
                epoch,
                n_done,
                run.batches_per_epoch,
                float(sums.sums["loss"]) / max(sums.n_seen, 1),
            )
        self._checkpoint_mid_epoch(run, epoch, n_done, sums)

    def _optimizer_step(self, optimizer: torch.optim.Optimizer, scheduler: LRScheduler) -> None:
        if self.world > 1:
            ddp.average_gradients(self.model.parameters(), self.world)
        if self.config.grad_clip is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    def _checkpoint_mid_epoch(self, run: _FitState, epoch: int, n_done: int, sums: _EpochSums) -> None:
        """Save ``last.pt`` after ``n_done`` batches when due or when a signal asks to stop (then stop)."""
        every = self.config.checkpoint_every_steps
        stop_now = self._stop_requested(run.flag)  # a collective: every rank calls it at every step
        if not (stop_now or (every and n_done % every == 0)):
            return
        running = sums.running()
        self._check_finite(running["loss"], epoch)
        path = self._save_last(run, epoch, n_done, running, False)
        # Beside every last.pt its metrics JSON (no stop reason yet): a state killed in its
        # first epoch is then known as interrupted, which state pruning keeps (last_good).
        self.write_metrics()
        if stop_now:
            self._interrupt(run.flag, path)

    def _train_averages(self, sums: _EpochSums, epoch: int) -> dict[str, float]:
        """``train/{name}`` averages of the epoch's sums over all ranks."""
        totals = _as_floats(sums.sums)
        self._check_finite(totals.get("loss", 0.0), epoch)
        n_seen = sums.n_seen
        if self.world > 1:
            keys = sorted(totals)
            reduced = ddp.all_reduce_sum([float(n_seen)] + [totals[k] for k in keys], self.device)
            n_seen, totals = int(reduced[0]), dict(zip(keys, reduced[1:], strict=True))
        return {f"train/{k}": v / max(n_seen, 1) for k, v in totals.items()}

    def _epoch_metrics(
        self, run: _FitState, val: Dataset, epoch: int, train_metrics: dict[str, float], t0: float
    ) -> dict[str, float]:
        """Validate after epoch ``epoch``; log and record its metrics in the history."""
        metrics = {"epoch": float(epoch), **train_metrics}
        if self.world > 1:
            ddp.average_buffers(self.model, self.world)
        metrics.update(self.evaluate(val, "val"))
        metrics["lr"] = run.optimizer.param_groups[0]["lr"]
        metrics["time/epoch_s"] = time.perf_counter() - t0
        self.history.append(metrics)
        self._log_epoch(metrics)
        return metrics

    def _early_stopping(self, epoch: int, metrics: dict[str, float]) -> bool:
        """Feed epoch ``epoch`` to the stopper, save ``best.pt`` if it improved; return whether training is over."""
        max_epochs = self.config.max_epochs
        is_best, stop = self.stopper.step(epoch, metrics)
        if is_best and self.is_main:
            self._save_best(epoch, metrics)
        if stop:
            logger.info("early stopping: %s", self.stopper.reason)
        elif epoch + 1 >= max_epochs:
            self.stopper.reason = f"reached max_epochs={max_epochs}"
        return stop or epoch + 1 >= max_epochs

    def _checkpoint_epoch(self, run: _FitState, next_epoch: int, finished: bool) -> None:
        """Save ``last.pt`` at an epoch boundary when due, rewrite the metrics, stop on a signal."""
        stop_now = self._stop_requested(run.flag)
        # Saving every epoch costs an fsync that dominates tiny CPU runs; with
        # checkpoint_every_epochs > 1 a resume replays the epochs since the last save.
        if finished or stop_now or next_epoch % self.config.checkpoint_every_epochs == 0:
            self._save_last(run, next_epoch, 0, {}, finished)
        self.write_metrics()
        if stop_now and not finished:
            self._interrupt(run.flag, self.state_dir / LAST)

    def _stop_requested(self, flag: _SignalFlag) -> bool:
        """Whether a signal reached any rank (all ranks must stop at the same step)."""
        stop_now = flag.signum is not None
        if self.world > 1:
            stop_now = ddp.any_rank(stop_now, self.device)
        return stop_now

    def _interrupt(self, flag: _SignalFlag, checkpoint: Path) -> NoReturn:
        self.close()
        raise TrainingInterrupted(flag.signum or signal.SIGTERM, checkpoint)

    def _finish(self) -> FitResult:
        """Load the best weights into the model and summarise the run."""
        ddp.barrier()
        if not (self.state_dir / BEST).exists():
            raise CheckpointError(f"training finished without a best checkpoint in {self.state_dir}")
        best = load_checkpoint(self.state_dir / BEST)
        self.model.load_state_dict(best["model"])
        logger.info(
            "finished after %d epochs (%s); best %s=%.6g at epoch %d",
            len(self.history),
            self.stopper.reason,
            self.config.monitor,
            self.stopper.best,
            self.stopper.best_epoch,
        )
        return FitResult(
            self.stopper.best_epoch,
            self.stopper.best,
            len(self.history),
            self.stopper.reason,
            self.history,
            self.state_dir / BEST,
        )

    @staticmethod
    def _check_finite(loss_sum: float, epoch: int) -> None:
        # Checked where the sums are synchronised anyway, not per batch; the state of the
        # last good checkpoint is untouched when this fires.
        if not math.isfinite(loss_sum):
            raise FloatingPointError(
                f"non-finite training loss in epoch {epoch}; check target normalisation and the learning rate"
            )

    def _progress(self, total: int, done: int, epoch: int) -> Any:
        # Progress bars only on a terminal: in rule logs they are noise.
        if not sys.stderr.isatty():
            return None
        try:
            from tqdm.auto import tqdm
        except ImportError:
            return None
        return tqdm(
            total=total,
            initial=done,
            desc=f"epoch {epoch} ({epoch + 1}/{self.config.max_epochs})",
            leave=False,
        )
