"""One training run, the same for every module.

A module describes its run with a :class:`RunSpec`: how to build the model and the
datasets, the metrics it computes after training, its ID lists and its extra outputs.
:func:`run_training` does the rest, identically for every module:

1. seed torch with ``train_config.seed`` and build the model (its initial weights);
2. key the state folder by training config, model config, run config and the data
   fingerprint, so that new data or settings start a fresh run while a rerun resumes;
3. build the :class:`~genomelab.train.engine.Trainer` (the data fingerprint is part of
   its run config, hence of the fingerprint a resumed ``last.pt`` must match);
4. build the datasets on the trainer's device, run the pre-training hook (initial loss
   vs chance), fit, evaluate the test split, run the module's metrics hook;
5. on rank 0 only: write the metrics JSON (the trainer's per-epoch copy of it stays in the
   state folder, so that a killed run leaves no partial metrics JSON among the outputs), the exported model (:mod:`genomelab.train.export`),
   the module's extra outputs and a copy of the TensorBoard events (written into the state
   folder, which a rerun keeps, so a resumed run's curves continue the killed attempt's);
6. close the trainer, also when any step above raised.

Between 4 and 5 a marker (:func:`outputs_pending`) says that training finished and the outputs
are not written yet: a job killed there is rerun from its finished state, not trained again.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from genomelab.io.atomic import staging_dir
from genomelab.runtime import CADENCE_KEYS, with_default_cadence
from genomelab.train.engine import (
    FitResult,
    TrainConfig,
    Trainer,
    config_fingerprint,
)
from genomelab.train.export import save_exported

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass
class RunState:
    """What the hooks of a run see; ``values`` carries a module's own intermediate results
    from one hook to the next (e.g. predictions computed after fit, written on rank 0)."""

    spec: RunSpec
    trainer: Trainer
    datasets: dict[str, Dataset]
    fit: FitResult | None = None
    test_losses: dict[str, float] = field(default_factory=dict)
    fit_seconds: float = 0.0
    values: dict[str, Any] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.trainer.model

    @property
    def device(self) -> torch.device:
        return self.trainer.device


@dataclass
class RunSpec:
    """What a module supplies for one training run.

    kind: the model's name (stored in the exported model).
    train_config: the engine's hyper-parameters; ``seed`` seeds the initial weights.
    model_config: plain-type configuration to rebuild the model (exported and keying state).
    build_model: ``() -> nn.Module``, called right after ``torch.manual_seed(seed)``.
    build_data: ``(device) -> {"train", "val"[, "test"]: Dataset}``, called with the
        trainer's device (preloading on a GPU is the module's choice).
    ids: named ID lists of the model's rows or outputs (classes, regions, contigs...).
    data_fingerprint: :func:`genomelab.train.export.data_fingerprint` of the training data.
    run_config: further settings that must start a fresh run when they change.
    eval_fn, collate_fn: passed to the Trainer.
    before_fit: ``(state) -> None``, after the datasets exist and before fit (initial
        loss, chance level); results go to ``state.values``.
    after_fit: ``(state) -> dict``, on every rank after test evaluation: the module's
        metrics, returned as the extra entries of the metrics JSON.
    write_outputs: ``(state) -> None``, rank 0 only, after the metrics JSON and the
        exported model: predictions, diagnostics, reports.
    export_extra: ``(state) -> dict``, plain-type metadata stored in the exported model.
    """

    kind: str
    train_config: TrainConfig
    model_config: dict[str, Any]
    build_model: Callable[[], nn.Module]
    build_data: Callable[[torch.device], dict[str, Dataset]]
    ids: dict[str, Sequence[str] | np.ndarray]
    data_fingerprint: str
    run_config: dict[str, Any] = field(default_factory=dict)
    eval_fn: Callable[[nn.Module, Dataset, torch.device], dict[str, float]] | None = None
    collate_fn: Callable | None = None
    before_fit: Callable[[RunState], None] | None = None
    after_fit: Callable[[RunState], dict[str, Any]] | None = None
    write_outputs: Callable[[RunState], None] | None = None
    export_extra: Callable[[RunState], dict[str, Any]] | None = None


@dataclass
class RunOutputs:
    """Where a run writes: metrics JSON, exported model, TensorBoard folder (optional).

    The TensorBoard folder is a copy, made when the run finishes, of the events the trainer
    writes into the state folder (:func:`events_dir`): Snakemake deletes a declared output
    folder before it reruns a job, the state folder it leaves alone.
    """

    metrics: Path
    model: Path
    tensorboard: Path | None = None

    def __post_init__(self) -> None:
        self.metrics, self.model = Path(self.metrics), Path(self.model)
        self.tensorboard = Path(self.tensorboard) if self.tensorboard else None


@dataclass
class RunResult:
    """A finished run: the model (best weights), fit summary, test losses, metrics payload."""

    model: nn.Module
    fit: FitResult
    test_losses: dict[str, float]
    payload: dict[str, Any]
    state_dir: Path
    values: dict[str, Any]


def events_dir(state_dir: Path) -> Path:
    """The TensorBoard folder of a run: beside its ``last.pt``, kept from attempt to attempt."""
    return state_dir / "tensorboard"


def copy_events(src: Path, dest: Path) -> None:
    """Replace the folder ``dest`` with a copy of ``src`` (every attempt's event files).

    The copy is made beside ``dest`` and renamed into place when complete, so a copy that
    fails or is killed leaves no partial ``dest`` (a failed one removes its staged folder).
    """
    staged = staging_dir(dest)
    try:
        if src.is_dir():
            shutil.copytree(src, staged, dirs_exist_ok=True)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(staged, dest)
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def progress_metrics(state_dir: Path) -> Path:
    """The metrics JSON the trainer rewrites every epoch (history so far), beside ``last.pt``."""
    return state_dir / "metrics.json"


def outputs_pending(state_dir: Path) -> Path:
    """A marker that training finished and the outputs are not written yet: a job killed
    between the two (a time limit while it writes, a SIGTERM as it exits) left it, and its
    rerun takes the finished ``last.pt`` as it is instead of training again from scratch (as a
    finished run without the marker is, on purpose: ``snakemake -R``)."""
    return state_dir / "outputs_pending"


def train_param(smk: Any, module: str, section: dict[str, Any]) -> dict[str, Any]:
    """A training rule's ``train`` section (``section``, from its params) with how often the
    run saves and logs (:data:`~genomelab.runtime.CADENCE_KEYS`) taken from the run's
    config: the rules' params hold them at their defaults, so that changing one retrains
    nothing (:func:`~genomelab.runtime.with_default_cadence`). A job object without a config
    (a test's) keeps ``section`` as it is."""
    config = getattr(smk, "config", None) or {}
    given = (config.get(module) or {}).get("train") or {}
    return {**section, **{k: given[k] for k in CADENCE_KEYS if k in given}}


def state_key(spec: RunSpec) -> str:
    """The state folder's name: changes with any setting or the data, not otherwise; how
    often the run saves and logs (:data:`~genomelab.runtime.CADENCE_KEYS`) is no setting
    of what it learns, so a killed run resumes after one of them changed."""
    return config_fingerprint(with_default_cadence(dataclasses.asdict(spec.train_config)), _run_config(spec))


def _run_config(spec: RunSpec) -> dict[str, Any]:
    return {
        "kind": spec.kind,
        "model": spec.model_config,
        "data": spec.data_fingerprint,
        **spec.run_config,
    }


def run_training(
    spec: RunSpec,
    state_root: str | os.PathLike,
    outputs: RunOutputs,
    device: torch.device | str | None = None,
    is_main: bool | None = None,
) -> RunResult:
    """Run ``spec`` end to end (see the module docstring); state in ``state_root/<key>``.

    ``device`` None: the train config's. ``is_main`` False suppresses the run's own writes
    as on a rank other than 0 (tests simulate a second rank with it; the engine's
    per-epoch metrics file follows the trainer's rank).
    """
    cfg = spec.train_config
    torch.manual_seed(cfg.seed)
    model = spec.build_model()
    state_dir = Path(state_root) / state_key(spec)
    trainer = Trainer(
        model,
        cfg,
        state_dir,
        # The per-epoch metrics go to the state folder: the declared metrics JSON is written
        # once, when the run has finished, so a killed run leaves no partial one in its place.
        progress_metrics(state_dir),
        events_dir(state_dir) if outputs.tensorboard is not None else None,
        eval_fn=spec.eval_fn,
        collate_fn=spec.collate_fn,
        run_config=_run_config(spec),
        device=device,
        reuse_finished=outputs_pending(state_dir).exists(),
    )
    writes = trainer.is_main and (is_main is None or is_main)
    try:
        state = RunState(spec, trainer, spec.build_data(trainer.device))
        missing = [s for s in ("train", "val") if s not in state.datasets]
        if missing:
            raise ValueError(f"{spec.kind}: build_data returned no {missing} split")
        if spec.before_fit is not None:
            spec.before_fit(state)
        t0 = time.perf_counter()
        state.fit = trainer.fit(state.datasets["train"], state.datasets["val"])
        state.fit_seconds = time.perf_counter() - t0
        if writes:
            outputs_pending(state_dir).touch()
        if "test" in state.datasets:
            state.test_losses = trainer.evaluate(state.datasets["test"], "test")
        trainer.log_scalars(state.test_losses)
        extra = spec.after_fit(state) if spec.after_fit is not None else {"test": state.test_losses}
        if writes:
            _write(spec, state, outputs, extra)
            outputs_pending(state_dir).unlink()
        return RunResult(
            trainer.model,
            state.fit,
            state.test_losses,
            trainer.metrics_payload(extra),
            state_dir,
            state.values,
        )
    finally:
        trainer.close()


def _write(spec: RunSpec, state: RunState, outputs: RunOutputs, extra: dict[str, Any]) -> None:
    state.trainer.write_metrics(extra, outputs.metrics)
    save_exported(
        outputs.model,
        state.model,
        kind=spec.kind,
        config=spec.model_config,
        ids=spec.ids,
        data_fingerprint=spec.data_fingerprint,
        extra=spec.export_extra(state) if spec.export_extra is not None else {},
    )
    if spec.write_outputs is not None:
        spec.write_outputs(state)
    if outputs.tensorboard is not None:
        state.trainer.close()  # flush the event file before copying it
        copy_events(events_dir(state.trainer.state_dir), outputs.tensorboard)
    logger.info("%s: wrote %s and %s", spec.kind, outputs.metrics, outputs.model)
