"""Snakemake-facing steps of the tissue module: unpack ``smk`` and call typed functions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from genomelab.config import param
from genomelab.tissue.features import extract_features_from_hdf5, extract_features_from_sheet
from genomelab.tissue.simulate import SimulationConfig, simulate_dataset

logger = logging.getLogger(__name__)


def _limit_threads(smk: Any) -> None:
    """Use exactly the rule's threads: BLAS and torch otherwise take every core on a shared node."""
    n = max(1, int(getattr(smk, "threads", 1) or 1))
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:  # threadpoolctl ships with scikit-learn; tolerate its absence
        pass
    try:
        import torch

        torch.set_num_threads(n)
    except ImportError:
        pass


def _task(smk: Any):
    from genomelab.tissue.task import TaskConfig

    return TaskConfig.from_dict(param(smk, "task"))


def _calibration(smk: Any):
    from genomelab.tissue.calibration import CalibrationConfig

    return CalibrationConfig.from_dict(param(smk, "calibration"))


def _sparsity(smk: Any):
    from genomelab.tissue.sparse import SparsityConfig

    return SparsityConfig.from_dict(param(smk, "sparsity"))


def simulate_step(smk: Any) -> None:
    cfg = SimulationConfig.from_dict(param(smk, "simulate"), seed=int(smk.params.seed))
    simulate_dataset(cfg, smk.params.out_dir)


def features_step(smk: Any) -> None:
    threads = max(1, int(smk.threads))
    if smk.params.source == "hdf5":
        extract_features_from_hdf5(
            smk.input.hdf5, smk.output.h5, sheet=smk.params.sheet or None, threads=threads
        )
    else:
        extract_features_from_sheet(
            smk.input.sheet, smk.output.h5, n_positions=int(smk.params.n_positions), threads=threads
        )


def splits_step(smk: Any) -> None:
    """One split (output ``tsv``), or K folds (outputs ``folds`` and one ``tsv`` per fold);
    a given split or folds from the ``given`` splits file or the ``sheet``'s column."""
    from genomelab.tissue.task import given_assignment, write_evaluation_splits

    given = given_assignment(smk.input.get("given"), smk.input.get("sheet"))
    folds = smk.output.get("folds")
    tsv = [smk.output.tsv] if folds is None else list(smk.output.tsv)
    write_evaluation_splits(smk.input.h5, _task(smk), int(smk.params.seed), tsv, folds, given)


def diagnostic_step(smk: Any) -> None:
    """One diagnostics rule: ``smk.params.check`` names the check (see diagnostics.CHECKS).

    ``smk.params.models``, where the check reads models: the one model of an overfit job, the
    region-level ones for learnability; the checks of the data alone have none.
    """
    from genomelab.tissue.diagnostics import DiagnosticsConfig, run_check

    _limit_threads(smk)
    run_check(
        smk.params.check,
        smk.input.h5,
        smk.input.get("splits"),
        _task(smk),
        DiagnosticsConfig.from_dict(param(smk, "diagnostics")),
        list(smk.params.models) if "models" in smk.params.keys() else [],
        param(smk, "model_configs") if "model_configs" in smk.params.keys() else None,
        int(smk.params.seed),
        smk.output.json,
        smk.output.png if "png" in smk.output.keys() else None,
    )


def baselines_step(smk: Any) -> None:
    from genomelab.tissue.baselines import BaselineConfig, write_baselines

    _limit_threads(smk)
    write_baselines(
        smk.input.h5,
        smk.input.splits,
        BaselineConfig.from_dict(param(smk, "baselines")),
        int(smk.params.seed),
        smk.output.json,
        _task(smk).select_regions,
        _calibration(smk),
        _sparsity(smk),
    )


def train_step(smk: Any) -> None:
    from genomelab.tissue.training import train_from_files
    from genomelab.train.run import train_param

    _limit_threads(smk)
    train_from_files(
        smk.wildcards.tissue_model,
        smk.input.h5,
        smk.input.splits,
        param(smk, "model_config"),
        train_param(smk, "tissue", param(smk, "train")),
        smk.params.state_dir,
        Path(smk.output.metrics).parent,
        smk.params.device,
        int(smk.params.seed),
        _task(smk).select_regions,
    )


def ensemble_step(smk: Any) -> None:
    from genomelab.tissue.task import load_task
    from genomelab.tissue.training import combine_members

    _limit_threads(smk)
    combine_members(
        smk.wildcards.tissue_model,
        load_task(smk.input.h5, smk.input.splits, _task(smk).select_regions),
        list(smk.input.models),
        list(smk.input.metrics),
        list(smk.input.diagnostics),
        Path(smk.output.metrics).parent,
        _calibration(smk),
        _sparsity(smk),
        int(smk.params.seed),
    )


def reads_step(smk: Any) -> None:
    from genomelab.tissue.task import load_task
    from genomelab.tissue.training import fit_read_model

    _limit_threads(smk)
    seed = int(smk.params.seed)
    fit_read_model(
        load_task(smk.input.h5, smk.input.splits, _task(smk).select_regions),
        param(smk, "model_config"),
        Path(smk.output.metrics).parent,
        _calibration(smk),
        _sparsity(smk),
        grid_seed=seed,
        seed=seed,
    )


def summary_step(smk: Any) -> None:
    from genomelab.tissue.report import summarise

    summarise(
        list(smk.params.models),
        param(smk, "task"),
        smk.input.splits,
        list(smk.input.baselines),
        list(smk.input.metrics),
        list(smk.input.model_diagnostics),
        list(smk.input.diagnostics),
        Path(smk.output.json).parent,
        smk.input.get("folds"),
    )
