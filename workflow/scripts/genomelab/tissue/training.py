"""Train one tissue model with the shared engine and evaluate it on the task's test split."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import TensorDataset

from genomelab.diagnostics import FAIL, PASS, WARN, DiagnosticResult, read_results, write_results
from genomelab.diagnostics.checks import (
    chance_cross_entropy,
    initial_loss_vs_chance,
    loss_stuck_at_chance,
    prediction_collapse,
)
from genomelab.io.metrics import Metrics, read_metrics, write_metrics
from genomelab.tissue.calibration import (
    CalibrationConfig,
    ProfileTemperature,
    apply_temperature,
    calibrate,
    call_records,
    sample_profile,
)
from genomelab.tissue.kinds import CLOSED_FORM, FILE_LEVEL, MODEL_TITLES
from genomelab.tissue.metrics import classification_metrics
from genomelab.tissue.models import (
    CONFIGS,
    RegionAttention,
    build_model,
    exported_config,
)
from genomelab.tissue.sparse import SparsityConfig, degrade, evaluate_grid
from genomelab.tissue.task import TissueData, impute_standardise_params
from genomelab.train.engine import TrainConfig
from genomelab.train.export import data_fingerprint, load_exported, save_exported
from genomelab.train.run import RunOutputs, RunSpec, RunState, run_training

logger = logging.getLogger(__name__)

# Kind of an ensemble's exported model: "mlp-ensemble" holds the members of "mlp" models.
ENSEMBLE_SUFFIX = "-ensemble"


def region_examples(data: TissueData, split: str, n_per_sample: int, seed: int) -> TensorDataset:
    """Region-level examples of one split: ``n_per_sample`` covered regions per sample.

    Returns a TensorDataset of (region int64 [N], means float32 [N], coverage float32 [N],
    y int64 [N]); each region carries its file's label (the granularity mistake under study).
    """
    rng = np.random.default_rng(seed + {"train": 0, "val": 1, "test": 2}[split])
    rows, regions = [], []
    for i in data.index(split):
        covered = np.flatnonzero(data.coverage[i] > 0)
        if len(covered) == 0:
            continue
        pick = rng.choice(covered, size=min(n_per_sample, len(covered)), replace=False)
        rows.append(np.full(len(pick), i))
        regions.append(pick)
    if not rows:
        raise ValueError(f"no covered region in the {split} split; cannot build region-level examples")
    r, c = np.concatenate(rows), np.concatenate(regions)
    return TensorDataset(
        torch.as_tensor(c, dtype=torch.int64),
        torch.as_tensor(data.means[r, c], dtype=torch.float32),
        torch.as_tensor(data.coverage[r, c].astype(np.float32)),
        torch.as_tensor(data.y[r], dtype=torch.int64),
    )


def file_examples(data: TissueData, split: str) -> TensorDataset:
    """(means float32 [n, R] with NaN, coverage float32 [n, R], y int64 [n]) of one split."""
    idx = data.index(split)
    return TensorDataset(
        torch.as_tensor(data.means[idx], dtype=torch.float32),
        torch.as_tensor(data.coverage[idx].astype(np.float32)),
        torch.as_tensor(data.y[idx], dtype=torch.int64),
    )


def make_datasets(
    kind: str, data: TissueData, model_cfg: Any, seed: int, train_folds: np.ndarray | None = None
) -> dict[str, TensorDataset]:
    """Train/val/test datasets of ``kind``. ``train_folds`` [n_train] (a cross-fitted read
    likelihood): each training sample's fold, added to its examples before the label, as
    (means, coverage, fold int64, y)."""
    if kind in FILE_LEVEL:
        out = {s: file_examples(data, s) for s in ("train", "val", "test")}
        if train_folds is not None:
            means, coverage, y = out["train"].tensors
            out["train"] = TensorDataset(means, coverage, torch.as_tensor(train_folds, dtype=torch.int64), y)
        return out
    return {s: region_examples(data, s, model_cfg.regions_per_sample, seed) for s in ("train", "val", "test")}


def with_degraded_validation(
    datasets: dict[str, TensorDataset], model_cfg: Any, seed: int
) -> dict[str, TensorDataset]:
    """The datasets with ``model_cfg.validation_draws`` degraded copies of each validation
    sample appended after the complete ones (a sparse-trained file-level model's option, see
    :func:`genomelab.tissue.sparse.degraded_copies`); unchanged where it is 0 or absent.

    Why: early stopping on complete validation samples keeps the weights best at full
    coverage, which for a sparse-trained model came after two or three epochs, before it
    had learned to read a few reads (the masked model on TCGA, docs/tissue.md)."""
    draws = getattr(model_cfg, "validation_draws", 0)
    if draws <= 0 or getattr(model_cfg, "sparse_training", 0.0) <= 0:
        return datasets
    from genomelab.tissue.sparse import degraded_copies

    means, coverage, y = datasets["val"].tensors
    n = len(y)
    # Filled in place, one copy at a time: the copies are most of the validation set's memory.
    all_means = torch.empty((n * (draws + 1), means.shape[1]), dtype=torch.float32)
    all_cov = torch.empty_like(all_means)
    all_means[:n], all_cov[:n] = means, coverage
    copies = degraded_copies(
        means.numpy(), draws, tuple(model_cfg.train_depths), tuple(model_cfg.train_observed), seed
    )
    for j, (m, c) in enumerate(copies, start=1):
        all_means[j * n : (j + 1) * n] = torch.from_numpy(m)
        all_cov[j * n : (j + 1) * n] = torch.from_numpy(c)
    return {**datasets, "val": TensorDataset(all_means, all_cov, y.repeat(draws + 1))}


def labels_of(dataset: TensorDataset) -> np.ndarray:
    """The labels int64 [n] of a dataset (its last tensor), wherever the tensors live."""
    return dataset.tensors[-1].cpu().numpy()


def preload_datasets(
    datasets: dict[str, TensorDataset], device: torch.device, fraction: float = 0.5
) -> dict[str, TensorDataset]:
    """The datasets with every tensor moved to ``device`` when it is a GPU and all of them
    fit in ``fraction`` of its free memory; else unchanged.

    Resident data lets the engine slice batches on the GPU: at 51,089 regions one batch of
    64 samples is 26 MB of means and coverage, and copying it from pageable host memory
    every step would leave the GPU waiting on the host.
    """
    if device.type != "cuda":
        return datasets
    need = sum(t.element_size() * t.nelement() for ds in datasets.values() for t in ds.tensors)
    free, _ = torch.cuda.mem_get_info(device)
    if need > fraction * free:
        logger.info(
            "tissue data (%.2f GB) kept in host memory: more than %.0f%% of the GPU's free %.2f GB",
            need / 1e9,
            100 * fraction,
            free / 1e9,
        )
        return datasets
    logger.info("tissue data (%.2f GB) preloaded on %s", need / 1e9, device)
    return {s: TensorDataset(*(t.to(device) for t in ds.tensors)) for s, ds in datasets.items()}


def eval_batch_size(model: torch.nn.Module, dataset: TensorDataset, device: torch.device) -> int:
    """Examples per prediction batch, so that activations stay within a fixed budget.

    The attention model holds several [B, R, dim or gate_hidden] float32 tensors at once:
    with 51,089 regions that is ~70 MB per sample, so a fixed batch of 256 would need ~17 GB.
    Budget: 256 MB on the CPU (the ensemble job), 1 GB on a GPU.
    """
    if not isinstance(model, RegionAttention):
        return 256
    n_regions = dataset.tensors[0].shape[1]
    cfg = model.cfg
    per_example = 4 * n_regions * (4 * cfg.dim + 3 * cfg.gate_hidden + cfg.heads + 8)
    budget = 2**30 if device.type == "cuda" else 2**28
    return int(max(1, min(256, budget // per_example)))


@torch.no_grad()
def predict_proba(
    model: torch.nn.Module, dataset: TensorDataset, device: torch.device, batch_size: int | None = None
) -> np.ndarray:
    """Class probabilities float64 [n, C] of a TensorDataset (last tensor = labels, unused).

    ``batch_size`` None: :func:`eval_batch_size`."""
    model.eval()
    out = []
    n = len(dataset)
    batch_size = batch_size or eval_batch_size(model, dataset, device)
    for start in range(0, n, batch_size):
        batch = [t[start : start + batch_size].to(device) for t in dataset.tensors[:-1]]
        out.append(torch.softmax(model(*batch).float(), dim=-1).cpu())
    return torch.cat(out).double().numpy()


def complete_rows(dataset: TensorDataset, n_complete: int | None) -> TensorDataset:
    """The first ``n_complete`` examples of ``dataset`` (the complete validation samples
    ahead of their degraded copies, :func:`with_degraded_validation`); all where None."""
    if n_complete is None or n_complete >= len(dataset):
        return dataset
    return TensorDataset(*(t[:n_complete] for t in dataset.tensors))


def make_eval_fn(classes: np.ndarray, n_complete: int | None = None):
    """Validation metrics for the engine; ``n_predicted_classes`` tracks collapse epoch by epoch.

    ``n_complete``: with degraded validation copies, the metrics (and ``nll``, which the
    chance check reads) are over the complete samples only, the first ``n_complete`` rows;
    the engine's ``val/loss``, which early stopping follows, stays over every row."""

    def eval_fn(model: torch.nn.Module, dataset: TensorDataset, device: torch.device) -> dict[str, float]:
        trimmed = complete_rows(dataset, n_complete)
        proba = predict_proba(model, trimmed, device)
        m = classification_metrics(labels_of(trimmed), proba, classes)
        keep = ("accuracy", "balanced_accuracy", "macro_f1", "ece", "n_predicted_classes")
        out = {k: m[k] for k in keep}
        if trimmed is not dataset:
            out["nll"] = m["nll"]  # else the engine's own nll, the same samples
        return out

    return eval_fn


def data_digest(data: TissueData) -> str:
    """A hash of the task a model is trained on (recorded in its exported model; an ensemble
    refuses a member of another task)."""
    return data_fingerprint(data.samples, data.split, data.labels, data.regions, data.means)


def inputs_digest(data: TissueData) -> str:
    """A hash of what else training reads: the coverage (the read likelihood's counts, the
    depth channels), the source samples (the cross-fitting folds) and the positions per
    region (the coverage scale). With :func:`data_digest` it keys the state folder, so that a
    rerun on data changed in any of them starts afresh instead of resuming the old state."""
    return data_fingerprint(data.coverage, data.groups.astype(str), int(data.n_positions))


def read_params(data: TissueData) -> tuple[np.ndarray, np.ndarray]:
    """Beta (a, b) [C, R] per class and region from the training split (the read-likelihood
    pathway's fixed part; the same fit as the naive Bayes baseline's)."""
    from genomelab.tissue.baselines import ReadNaiveBayes

    train = data.index("train")
    nb = ReadNaiveBayes().fit(data.means[train], data.y[train], len(data.classes))
    return nb.a_, nb.b_


def masked_kappa(kind: str, model_cfg: Any, data: TissueData) -> np.ndarray | None:
    """The masked model's region concentrations [R] from the training split where its count
    channels use them (:func:`genomelab.tissue.models.count_channels`), else None."""
    if kind != "masked" or model_cfg.encoding != "counts":
        return None
    from genomelab.tissue.read_profiles import region_concentration

    train = data.index("train")
    return region_concentration(data.means[train], data.y[train], len(data.classes))


def crossfit_read_params(
    data: TissueData, k: int, seed: int
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]] | None:
    """Out-of-fold read-likelihood fits for the training split.

    The training samples are dealt into ``k`` folds by source sample (augmented copies of one
    sample stay together, else a copy would score its twin), stratified by class and seeded
    (:func:`genomelab.splits.group_kfold`); fold f's fit is :func:`read_params`' on the other
    folds. Returns (folds int64 [n_train], in ``data.index("train")`` order; (a, b)
    [K, C, R]), or None when fewer than 2 source samples leave nothing to cross-fit. ``k`` is
    lowered to the number of source samples when there are fewer.
    """
    from genomelab.splits import group_kfold
    from genomelab.tissue.baselines import ReadNaiveBayes

    train = data.index("train")
    groups, y = data.groups[train], data.y[train]
    n_groups = len(np.unique(groups.astype(str)))
    k = min(k, n_groups)
    if k < 2:
        logger.warning("read likelihood: %d source sample(s) in training, no cross-fitting", n_groups)
        return None
    folds = group_kfold(groups, k, seed=seed, stratify=y)
    fits = [
        ReadNaiveBayes().fit(data.means[train[folds != f]], y[folds != f], len(data.classes))
        for f in range(k)
    ]
    logger.info(
        "read likelihood cross-fitted on %d folds of %d training samples (%d source samples)",
        k,
        len(train),
        n_groups,
    )
    return folds, (np.stack([nb.a_ for nb in fits]), np.stack([nb.b_ for nb in fits]))


def log_test_metrics(title: str, test: dict[str, Any], detail: str = "") -> None:
    """The one line a trained or fitted model logs: its test accuracy, balanced accuracy,
    macro-F1 and ECE (``test``: :func:`classification_metrics` of the test split), then
    ``detail`` in brackets where given."""
    logger.info(
        "%s: test accuracy %.3f, balanced %.3f, macro-F1 %.3f, ECE %.3f%s",
        title,
        test["accuracy"],
        test["balanced_accuracy"],
        test["macro_f1"],
        test["ece"],
        f" ({detail})" if detail else "",
    )


def train_model(
    kind: str,
    data: TissueData,
    model_cfg_dict: dict[str, Any],
    train_cfg_dict: dict[str, Any],
    state_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    device: str | torch.device = "cpu",
    seed: int = 0,
) -> dict[str, Any]:
    """Fit model ``kind`` on the train split (early stopping on val), evaluate on test.

    Writes into ``out_dir``: ``metrics.json`` (history, val/test metrics), ``model.pt``
    (the exported model: best weights, config, classes and regions), ``diagnostics.json``
    (initial loss, chance-level loss and prediction-collapse checks) and ``tensorboard/``.
    Resumable state lives in ``state_root/<fingerprint>``. Returns the test metrics.
    """
    if kind in CLOSED_FORM:
        raise ValueError(
            f"the {MODEL_TITLES[kind]} ({kind!r}) is fitted in closed form, not trained: use fit_read_model"
        )
    model_cfg = CONFIGS[kind].from_dict(model_cfg_dict)
    train_cfg = TrainConfig.from_dict(train_cfg_dict, seed=seed)
    scale = getattr(model_cfg, "lr_scale", 1.0)
    if scale != 1.0:
        # A model's own multiple of the module's learning rate (the masked model's lr_scale).
        train_cfg = dataclasses.replace(train_cfg, lr=train_cfg.lr * scale)
        logger.info("%s: learning rate %.3g (lr_scale %g)", MODEL_TITLES[kind], train_cfg.lr, scale)
    out_dir = Path(out_dir)
    mu, sd = impute_standardise_params(data.means[data.index("train")])
    uses_reads = getattr(model_cfg, "read_likelihood", False)
    crossfit = (
        crossfit_read_params(data, model_cfg.read_likelihood_folds, seed)
        if uses_reads and model_cfg.read_likelihood_folds > 0
        else None
    )

    # File-level validation sets may carry degraded copies after their complete samples.
    n_complete = len(data.index("val")) if kind in FILE_LEVEL else None

    def before_fit(state: RunState) -> None:
        train = state.datasets["train"]
        state.values["chance"] = chance_cross_entropy(
            np.bincount(labels_of(train), minlength=len(data.classes))
        )
        # The untrained model's loss, before fit() may load a checkpoint into it.
        state.values["initial"] = float(predict_nll(state.model, train, state.device))

    def after_fit(state: RunState) -> dict[str, Any]:
        # The complete validation samples: the first rows of a validation set with degraded copies.
        ds = {**state.datasets, "val": complete_rows(state.datasets["val"], n_complete)}
        probs = {s: predict_proba(state.model, ds[s], state.device) for s in ("val", "test")}
        metrics = {s: classification_metrics(labels_of(ds[s]), probs[s], data.classes) for s in probs}
        state.values.update(probs=probs, metrics=metrics, datasets=ds)
        extra = {
            "model": kind,
            "title": MODEL_TITLES[kind],
            "model_config": dataclasses.asdict(model_cfg),
            "granularity": "file" if kind in FILE_LEVEL else "region",
            "classes": data.classes.tolist(),
            "n_parameters": sum(p.numel() for p in state.model.parameters()),
            "chance_nll": state.values["chance"],
            "initial_nll": state.values["initial"],
            "val": metrics["val"],
            "test": metrics["test"],
            "test_losses": state.test_losses,
            "stopped_reason": state.fit.stopped_reason,
        }
        if kind in FILE_LEVEL:
            extra["predictions"] = data.predictions("test", probs["test"])
        log_test_metrics(MODEL_TITLES[kind], metrics["test"])
        return extra

    def write_outputs(state: RunState) -> None:
        v = state.values
        checks = training_checks(
            state.fit.history, v["chance"], v["initial"], v["probs"], v["datasets"], kind
        )
        write_results(out_dir / "diagnostics.json", "tissue", checks)

    spec = RunSpec(
        kind=kind,
        train_config=train_cfg,
        model_config=dataclasses.asdict(model_cfg),
        build_model=lambda: build_model(
            kind,
            model_cfg,
            len(data.regions),
            len(data.classes),
            mu,
            sd,
            data.n_positions,
            read_params(data) if uses_reads else None,
            None if crossfit is None else crossfit[1],
            masked_kappa(kind, model_cfg, data),
        ),
        build_data=lambda device: preload_datasets(
            with_degraded_validation(
                make_datasets(kind, data, model_cfg, seed, None if crossfit is None else crossfit[0]),
                model_cfg,
                seed,
            ),
            device,
        ),
        ids={"classes": data.classes, "regions": data.regions},
        data_fingerprint=data_digest(data),
        run_config={"classes": data.classes.tolist(), "inputs": inputs_digest(data)},
        eval_fn=make_eval_fn(data.classes, n_complete),
        before_fit=before_fit,
        after_fit=after_fit,
        write_outputs=write_outputs,
        # What it was trained on and how (seed aside), so that an ensemble refuses a member
        # of another run.
        export_extra=lambda state: {
            "n_positions": int(data.n_positions),
            "best_epoch": state.fit.best_epoch,
            "train_config": {k: v for k, v in dataclasses.asdict(train_cfg).items() if k != "seed"},
        },
    )
    outputs = RunOutputs(out_dir / "metrics.json", out_dir / "model.pt", out_dir / "tensorboard")
    result = run_training(spec, state_root, outputs, torch.device(device))
    return result.values["metrics"]["test"]


@torch.no_grad()
def predict_nll(model: torch.nn.Module, dataset: TensorDataset, device: torch.device) -> float:
    """Mean unsmoothed NLL of ``dataset`` under ``model`` (eval mode)."""
    proba = predict_proba(model, dataset, device)
    y = labels_of(dataset)
    return float(-np.log(np.clip(proba[np.arange(len(y)), y], 1e-12, 1)).mean())


def training_checks(
    history: list[dict[str, float]],
    chance: float,
    initial: float,
    probs: dict[str, np.ndarray],
    datasets: dict[str, TensorDataset],
    kind: str,
) -> list[DiagnosticResult]:
    """Checks on a finished run: initial loss near chance, loss fell below chance, no collapse."""
    title = MODEL_TITLES[kind]
    results = [
        initial_loss_vs_chance(initial, chance, name=f"{kind}: initial loss vs chance"),
        loss_stuck_at_chance(history, chance, key="val/nll", name=f"{kind}: validation loss vs chance"),
    ]
    for split in ("val", "test"):
        results.append(
            prediction_collapse(
                probs[split].argmax(1),
                labels_of(datasets[split]),
                name=f"{kind}: prediction collapse ({split})",
            )
        )
    for r in results:
        # Post-training checks describe the run; they cannot gate it any more.
        r.blocking = False
        r.message = f"{title}: {r.message}"
    return results


_SEVERITY = {PASS: 0, WARN: 1, FAIL: 2}


def _load_member(path: Path, kind: str, data: TissueData, digest: str) -> tuple[torch.nn.Module, dict]:
    """A member's model from its exported ``model.pt``, checked against the task it is combined on.

    Returns the model (eval mode) and the file's metadata (model config and extras)."""
    exported = load_exported(path, expect_ids={"classes": data.classes, "regions": data.regions}, kind=kind)
    if exported.data_fingerprint != digest:
        raise ValueError(
            f"{path}: member training data and splits do not match the task being combined "
            "(a member of another run?)"
        )
    n_regions = len(data.regions)
    # mu/sd are placeholders: the member's own standardisation buffers are loaded below.
    model = build_model(
        kind,
        exported_config(kind, exported.config),
        n_regions,
        len(data.classes),
        np.zeros(n_regions, np.float32),
        np.ones(n_regions, np.float32),
        int(exported.extra["n_positions"]),
    )
    model.load_state_dict(exported.weights)
    return model.eval(), {"model_config": exported.config, **exported.extra}


def _worst_per_check(member_results: list[list[DiagnosticResult]]) -> list[DiagnosticResult]:
    """One result per training check: the worst status over members, naming that member."""
    out: dict[str, DiagnosticResult] = {}
    for i, results in enumerate(member_results):
        for r in results:
            current = out.get(r.name)
            if current is None or _SEVERITY[r.status] > _SEVERITY[current.status]:
                out[r.name] = dataclasses.replace(r, details={**r.details, "member": i})
    n = len(member_results)
    for r in out.values():
        if n > 1 and r.status == PASS:
            r.message = f"{r.message} (all {n} members pass; figures of member {r.details['member']})"
        elif n > 1:
            r.message = f"{r.message} (worst of {n} members: member {r.details['member']})"
    return list(out.values())


def ensemble_predict(models: list[torch.nn.Module]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``predict(means [n, R], coverage [n, R]) -> proba [n, C]``: the members' mean, on the CPU."""
    dev = torch.device("cpu")

    def predict(means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        ds = TensorDataset(
            torch.as_tensor(means), torch.as_tensor(coverage), torch.zeros(len(means), dtype=torch.int64)
        )
        return np.mean([predict_proba(m, ds, dev) for m in models], axis=0)

    return predict


def profile_inputs(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray],
    data: TissueData,
    sparsity: SparsityConfig | None,
    seed: int,
    cal: CalibrationConfig,
) -> tuple[Any, Any]:
    """What :func:`~genomelab.tissue.calibration.calibrate` fits a temperature per sample
    profile on: the validation samples degraded to every grid point (stream [seed, i, 1]; the
    test grid draws with [seed, i]) as (proba, y, observed, depth), and the complete
    validation and test samples' (observed, depth). (None, None) without a grid, or where
    ``cal`` fits no profile temperature (``temperature`` or ``by_profile`` false): then the
    grid's predictions of the validation samples would be made for nothing."""
    if sparsity is None or not sparsity.points() or not (cal.temperature and cal.by_profile):
        return None, None
    means, _, y = data.subset("val")
    parts: list[tuple[np.ndarray, ...]] = []
    for i, (depth, frac) in enumerate(sparsity.points()):
        m, c = degrade(means, depth, frac, np.random.default_rng([seed, i, 1]))
        parts.append((predict(m, c), y, *sample_profile(m, c)))
    degraded = tuple(np.concatenate([p[j] for p in parts]) for j in range(4))
    profiles = tuple(
        sample_profile(data.means[data.index(s)], data.coverage[data.index(s)]) for s in ("val", "test")
    )
    return degraded, profiles


def calibrated(
    predict: Callable[[np.ndarray, np.ndarray], np.ndarray], calibration: dict[str, Any]
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``predict`` followed by the calibration record's temperature: per sample where the
    record holds a ``temperature_model``, else its one T."""
    model = calibration.get("temperature_model")
    profile = ProfileTemperature.from_dict(model) if model else None
    t = float(calibration["temperature"])

    def f(means: np.ndarray, coverage: np.ndarray) -> np.ndarray:
        return apply_temperature(
            predict(means, coverage), t if profile is None else profile.of_inputs(means, coverage)
        )

    return f


def ensemble_grid(
    models: list[torch.nn.Module],
    data: TissueData,
    sparsity: SparsityConfig,
    seed: int,
    calibration: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """The ensemble's accuracy on the test samples degraded to each grid point (the inputs the
    baselines rule draws with the same ``seed``); with the ``calibration`` record, its
    temperature applied and each point's reliability bins and ECE kept."""
    test = data.index("test")
    predict = ensemble_predict(models)
    if calibration is not None:
        predict = calibrated(predict, calibration)
    return evaluate_grid(
        predict,
        data.means[test],
        data.y[test],
        data.samples[test],
        data.classes,
        sparsity,
        seed,
        reliability=calibration is not None,
    )


def combine_members(
    kind: str,
    data: TissueData,
    member_models: list[str | os.PathLike],
    member_metrics: list[str | os.PathLike],
    member_diagnostics: list[str | os.PathLike],
    out_dir: str | os.PathLike,
    cal: CalibrationConfig | None = None,
    sparsity: SparsityConfig | None = None,
    grid_seed: int = 0,
) -> dict[str, Any]:
    """Ensemble of independently trained members: average their class probabilities.

    Members are runs of ``train_model`` with different seeds on the same task; averaging
    probabilities [n, C] lowers the variance that small cohorts give a single run (which
    test samples a run gets right depends on its seed) and improves calibration
    (Lakshminarayanan et al. 2017, NeurIPS). Writes into ``out_dir``: ``metrics.json``
    (ensemble val/test metrics, each member's seed, best epoch and accuracies, member 0's
    training history for the curves), ``model.pt`` (every member's weights) and
    ``diagnostics.json`` (each training check at its worst over members, plus prediction
    collapse of the ensemble). Returns the test metrics.
    """
    if not member_models or not (len(member_models) == len(member_metrics) == len(member_diagnostics)):
        raise ValueError("combine_members needs the same non-empty number of models, metrics and diagnostics")
    out_dir = Path(out_dir)
    dev = torch.device("cpu")
    infos = [read_metrics(p).to_dict() for p in member_metrics]
    digest = data_digest(data)
    loaded = [_load_member(Path(p), kind, data, digest) for p in member_models]
    models = [m for m, _ in loaded]
    # Members must differ only by their seed, and each metrics file must be its model's.
    for path, (_, meta), info in zip(member_models, loaded, infos, strict=True):
        if meta["model_config"] != loaded[0][1]["model_config"] or meta.get("train_config") != loaded[0][
            1
        ].get("train_config"):
            raise ValueError(f"{path}: member trained with another model or training config than member 0")
        if meta["best_epoch"] != info["best_epoch"] or info.get("model") != kind:
            raise ValueError(
                f"{path}: does not belong with its metrics file (best epoch or model kind differ)"
            )
    seeds = [int(info["train_config"]["seed"]) for info in infos]
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"ensemble members must have distinct seeds, got {seeds}")
    cfg = CONFIGS[kind].from_dict(infos[0]["model_config"])
    # Region-level examples are drawn with a seed; evaluate on member 0's draw.
    datasets = make_datasets(kind, data, cfg, int(infos[0]["train_config"]["seed"]))
    probs = {
        s: np.mean([predict_proba(m, datasets[s], dev) for m in models], axis=0) for s in ("val", "test")
    }
    labels = {s: labels_of(datasets[s]) for s in ("val", "test")}
    # One temperature for the ensemble's averaged probabilities, fitted on validation (per
    # sample profile for file-level models with a grid: tissue.calibration.by_profile).
    cal = cal or CalibrationConfig()
    degraded, profiles = (
        profile_inputs(ensemble_predict(models), data, sparsity, grid_seed, cal)
        if kind in FILE_LEVEL
        else (None, None)
    )
    probs["val"], probs["test"], calibration = calibrate(
        (probs["val"], labels["val"]), (probs["test"], labels["test"]), cal, degraded, profiles
    )
    metrics = {s: classification_metrics(labels[s], probs[s], data.classes) for s in ("val", "test")}
    metrics["test"]["ece_uncalibrated"] = calibration["ece_before"]
    members = [
        {
            "seed": int(info["train_config"]["seed"]),
            "best_epoch": info["best_epoch"],
            "epochs_run": info["epochs_run"],
            "stopped_reason": info["stopped_reason"],
            "val_accuracy": info["val"]["accuracy"],
            "test_accuracy": info["test"]["accuracy"],
            "test_balanced_accuracy": info["test"]["balanced_accuracy"],
        }
        for info in infos
    ]
    first = infos[0]
    payload: dict[str, Any] = {
        key: first[key]
        for key in (
            "genomelab_version",
            "model",
            "title",
            "model_config",
            "granularity",
            "classes",
            "chance_nll",
            "initial_nll",
            "train_config",
            "monitor",
            "history",
            "best_epoch",
            "epochs_run",
        )
    }
    payload.update(
        {
            "n_members": len(models),
            "n_parameters": int(sum(info["n_parameters"] for info in infos)),
            "members": members,
            "history_of": "member 0",
            "val": metrics["val"],
            "test": metrics["test"],
            "calibration": calibration,
        }
    )
    if kind in FILE_LEVEL and sparsity is not None and sparsity.points():
        payload["grid"] = ensemble_grid(models, data, sparsity, grid_seed, calibration)
    if kind in FILE_LEVEL:
        payload["predictions"] = {
            **data.predictions("test", probs["test"]),
            **call_records(probs["test"], cal.threshold),
        }
    # The members' weights side by side (keys "0.…", "1.…", as an nn.ModuleList names them).
    save_exported(
        out_dir / "model.pt",
        torch.nn.ModuleList(models),
        kind=f"{kind}{ENSEMBLE_SUFFIX}",
        config=first["model_config"],
        ids={"classes": data.classes, "regions": data.regions},
        data_fingerprint=digest,
        # The ensemble's calibration travels with it: predictions made later are scaled alike.
        extra={
            "seeds": [m["seed"] for m in members],
            "n_positions": int(data.n_positions),
            "temperature": float(calibration["temperature"]),
            # Per sample profile (tissue.calibration.by_profile): what predict applies instead.
            **(
                {"temperature_model": calibration["temperature_model"]}
                if "temperature_model" in calibration
                else {}
            ),
            "threshold": float(cal.threshold),
        },
    )
    checks = _worst_per_check([read_results(p) for p in member_diagnostics])
    title = MODEL_TITLES[kind]
    for split in ("val", "test"):
        r = prediction_collapse(
            probs[split].argmax(1),
            labels_of(datasets[split]),
            name=f"{kind}: ensemble prediction collapse ({split})",
        )
        r.blocking = False
        r.message = f"{title} ensemble: {r.message}"
        checks.append(r)
    write_results(out_dir / "diagnostics.json", "tissue", checks)
    write_metrics(out_dir / "metrics.json", Metrics(payload, str(out_dir / "metrics.json")))
    single = [m["test_accuracy"] for m in members]
    logger.info(
        "%s, ensemble of %d: test accuracy %.3f (members %.3f-%.3f), balanced %.3f, ECE %.3f",
        title,
        len(models),
        metrics["test"]["accuracy"],
        min(single),
        max(single),
        metrics["test"]["balanced_accuracy"],
        metrics["test"]["ece"],
    )
    return metrics["test"]


def fit_read_model(
    data: TissueData,
    model_cfg_dict: dict[str, Any],
    out_dir: str | os.PathLike,
    cal: CalibrationConfig | None = None,
    sparsity: SparsityConfig | None = None,
    grid_seed: int = 0,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit the read-profile model (:mod:`genomelab.tissue.read_profiles`) on the train
    split, choose its settings on the validation split, evaluate it on the test split.

    No engine, no epochs: the fit is closed-form (8 s for 5 folds of 843 regions, about 2
    minutes at 528 training samples x 51,089 regions on 2 threads). Writes into
    ``out_dir`` what an ensemble's folder holds, so the summary, the grid, the paired tests,
    ``tissue_predict`` and ``genomelab serve`` take it like any model: ``metrics.json`` (val
    and test metrics after one temperature fitted on validation, the grid, the settings
    chosen; an empty training history), ``model.pt`` (kind ``reads``, with its temperature
    and threshold) and ``diagnostics.json`` (prediction collapse). Returns the test metrics.
    """
    from genomelab.diagnostics.checks import chance_cross_entropy
    from genomelab.tissue.read_profiles import fit_read_profiles

    kind = "reads"
    cfg = CONFIGS[kind].from_dict(model_cfg_dict)
    cal = cal or CalibrationConfig()
    out_dir = Path(out_dir)
    tr, va = data.index("train"), data.index("val")
    model, choices = fit_read_profiles(
        data.means[tr], data.y[tr], data.means[va], data.y[va], len(data.classes), cfg, seed
    )
    datasets = {s: file_examples(data, s) for s in ("val", "test")}
    dev = torch.device("cpu")
    probs = {s: predict_proba(model, datasets[s], dev) for s in datasets}
    labels = {s: labels_of(datasets[s]) for s in datasets}
    uncalibrated_val = classification_metrics(labels["val"], probs["val"], data.classes)
    degraded, profiles = profile_inputs(ensemble_predict([model]), data, sparsity, grid_seed, cal)
    probs["val"], probs["test"], calibration = calibrate(
        (probs["val"], labels["val"]), (probs["test"], labels["test"]), cal, degraded, profiles
    )
    metrics = {s: classification_metrics(labels[s], probs[s], data.classes) for s in ("val", "test")}
    metrics["test"]["ece_uncalibrated"] = calibration["ece_before"]
    chance = chance_cross_entropy(np.bincount(data.y[tr], minlength=len(data.classes)))
    digest = data_digest(data)
    payload: dict[str, Any] = {
        "model": kind,
        "title": MODEL_TITLES[kind],
        "model_config": dataclasses.asdict(cfg),
        "granularity": "file",
        "classes": data.classes.tolist(),
        "chance_nll": chance,
        # Before the fit the model is its class prior: the chance loss.
        "initial_nll": chance,
        "train_config": {"seed": seed},
        "monitor": "closed-form fit; settings chosen on validation accuracy",
        "history": [],
        "best_epoch": 0,
        "epochs_run": 0,
        "stopped_reason": "closed-form fit",
        "n_members": 1,
        "n_parameters": 0,
        "n_profile_values": int(sum(b.numel() for b in model.buffers())),
        "choices": choices,
        "val_uncalibrated": uncalibrated_val,
        "val": metrics["val"],
        "test": metrics["test"],
        "calibration": calibration,
    }
    if sparsity is not None and sparsity.points():
        payload["grid"] = ensemble_grid([model], data, sparsity, grid_seed, calibration)
    payload["predictions"] = {
        **data.predictions("test", probs["test"]),
        **call_records(probs["test"], cal.threshold),
    }
    save_exported(
        out_dir / "model.pt",
        model,
        kind=kind,
        config=dataclasses.asdict(cfg),
        ids={"classes": data.classes, "regions": data.regions},
        data_fingerprint=digest,
        extra={
            "n_positions": int(data.n_positions),
            "temperature": float(calibration["temperature"]),
            # Per sample profile (tissue.calibration.by_profile): what predict applies instead.
            **(
                {"temperature_model": calibration["temperature_model"]}
                if "temperature_model" in calibration
                else {}
            ),
            "threshold": float(cal.threshold),
            "seed": int(seed),
        },
    )
    checks = []
    for split in ("val", "test"):
        r = prediction_collapse(
            probs[split].argmax(1), labels[split], name=f"{kind}: prediction collapse ({split})"
        )
        r.blocking = False
        r.message = f"{MODEL_TITLES[kind]}: {r.message}"
        checks.append(r)
    write_results(out_dir / "diagnostics.json", "tissue", checks)
    write_metrics(out_dir / "metrics.json", Metrics(payload, str(out_dir / "metrics.json")))
    chosen = {f: choices[f]["chosen"] for f in cfg.families}
    log_test_metrics(MODEL_TITLES[kind], metrics["test"], f"settings: {chosen}")
    return metrics["test"]


def train_from_files(
    kind: str,
    features_h5: str | os.PathLike,
    splits: str | os.PathLike,
    model_cfg_dict: dict[str, Any],
    train_cfg_dict: dict[str, Any],
    state_root: str | os.PathLike,
    out_dir: str | os.PathLike,
    device: str = "auto",
    seed: int = 0,
    select_regions: int = 0,
) -> dict[str, Any]:
    """:func:`train_model` on the task of the features file and splits table (the
    ``select_regions`` best regions of its training split, 0 = all), on ``device`` (``auto``:
    a GPU when there is one)."""
    from genomelab.tissue.task import load_task
    from genomelab.train.device import resolve_device

    data = load_task(features_h5, splits, select_regions)
    dev = resolve_device(device)
    logger.info("training tissue model %r on %s", kind, dev)
    return train_model(kind, data, model_cfg_dict, train_cfg_dict, state_root, out_dir, dev, seed)
