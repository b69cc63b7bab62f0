"""Datasets, score functions and one training run of the association network."""

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

from genomelab.assoc.data import DIRECTIONS, MASKED, S2T, Links, SplitLabels, all_labels, load_data
from genomelab.assoc.features import features_fingerprint, load_features
from genomelab.assoc.grid import run_name
from genomelab.assoc.metrics import KS, ScoreFn, evaluate
from genomelab.assoc.model import DIRECTION_INDEX, AssocModel, AssocModelConfig
from genomelab.io.atomic import atomic_write_json
from genomelab.train.engine import TrainConfig, Trainer
from genomelab.train.export import ExportedModel, load_exported, save_exported
from genomelab.train.run import RunOutputs, RunSpec, RunState, run_training

logger = logging.getLogger(__name__)

# Kind of the association network's exported model (train/export.py).
KIND = "assoc"

# Quick mode (``--quick-test``): a handful of epochs, patience 5, to check the wiring.
QUICK_MAX_EPOCHS = 5
QUICK_PATIENCE = 5
# TensorBoard names the issue asks for, written next to the engine's own names.
TB_ALIASES = {
    "train/loss": "Loss/train",
    "val/loss": "Loss/val",
    "lr": "LR",
    "val/consistency@10": "Metrics/bidirectional_consistency",
}


class AssocDataset(TensorDataset):
    """Tensors (direction [n], query [n], labels [n, C_max]) that know their split name.

    The split name lets the evaluation function pick the right filtered labels.
    """

    def __init__(self, split: str, *tensors: torch.Tensor) -> None:
        super().__init__(*tensors)
        self.split = split


def build_dataset(labels: SplitLabels, n_candidates: dict[str, int]) -> AssocDataset:
    """One example per (direction, query) of ``labels``; rows padded with MASKED.

    Memory is n_examples x max(N_s, N_t) float32: fine up to vocabularies of ~10^4 (a
    sparse collate would be the next step beyond that).
    """
    c_max = max(n_candidates.values())
    dirs, queries, rows = [], [], []
    for d in DIRECTIONS:
        q = labels.queries[d]
        dense = np.full((len(q), c_max), MASKED, np.float32)
        dense[:, : n_candidates[d]] = labels.dense_rows(d, q)
        dirs.append(np.full(len(q), DIRECTION_INDEX[d]))
        queries.append(q)
        rows.append(dense)
    return AssocDataset(
        labels.split,
        torch.as_tensor(np.concatenate(dirs), dtype=torch.long),
        torch.as_tensor(np.concatenate(queries), dtype=torch.long),
        torch.from_numpy(np.concatenate(rows)),
    )


def vocab_tensors(features: dict[str, dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    out = {}
    for side in ("source", "target"):
        for name in ("text", "text_mask", "numeric"):
            out[f"{side}_{name}"] = torch.from_numpy(np.ascontiguousarray(features[side][name]))
    return out


def label_priors(train: SplitLabels) -> dict[str, float]:
    """Fraction of positive entries among unmasked training labels, per direction."""
    priors = {}
    for d in DIRECTIONS:
        rows = train.dense_rows(d, train.queries[d])
        valid = rows != MASKED
        p = float((rows > 0).sum() / max(valid.sum(), 1))
        priors[d] = min(max(p, 1e-4), 0.5)
    return priors


def model_config(
    model_section: dict[str, Any], features: dict[str, dict[str, np.ndarray]], train: SplitLabels
) -> AssocModelConfig:
    """The model's configuration: the config section plus sizes and priors from the data."""
    priors = label_priors(train)
    return AssocModelConfig.from_dict(
        model_section,
        text_dim=int(features["source"]["text"].shape[2]),
        max_fields=int(features["source"]["text"].shape[1]),
        n_numeric_source=int(features["source"]["numeric"].shape[1]),
        n_numeric_target=int(features["target"]["numeric"].shape[1]),
        prior_s2t=priors["s2t"],
        prior_t2s=priors["t2s"],
    )


def build_model(
    model_section: dict[str, Any], features: dict[str, dict[str, np.ndarray]], train: SplitLabels
) -> AssocModel:
    cfg = model_config(model_section, features, train)
    vocab = vocab_tensors(features)
    # Entities with a training link in either direction get a link-structure vector. (A
    # vocabulary subset, as in the memorisation check, keeps the default: all linked.)
    s2t, t2s = (train.labels[d].tocsr() for d in ("s2t", "t2s"))
    if s2t.shape == (len(features["source"]["text"]), len(features["target"]["text"])):
        vocab["source_linked"] = torch.from_numpy(_has_positive(s2t, 1) | _has_positive(t2s, 0))
        vocab["target_linked"] = torch.from_numpy(_has_positive(s2t, 0) | _has_positive(t2s, 1))
    return AssocModel(cfg, vocab)


def _has_positive(matrix, axis: int) -> np.ndarray:
    """Rows (axis=1) or columns (axis=0) of a sparse label matrix with a positive entry."""
    return np.asarray((matrix > 0).sum(axis=axis)).ravel() > 0


def model_score_fn(model: AssocModel, device: torch.device | str, batch: int = 1024) -> ScoreFn:
    """Score function over vocabulary queries; encodes each vocabulary once per call site."""
    model.eval()
    model.to(device)
    model.cache_vocabulary()

    @torch.no_grad()
    def score(direction: str, queries: np.ndarray) -> np.ndarray:
        out = []
        for start in range(0, len(queries), batch):
            q = torch.as_tensor(
                queries[start : start + batch], dtype=torch.long, device=model.source_text.device
            )
            out.append(model(direction, q).float().cpu().numpy())
        n_c = model.n_entities("target" if direction == S2T else "source")
        return np.concatenate(out) if out else np.zeros((0, n_c), np.float32)

    return score


def make_eval_fn(
    labels_by_split: dict[str, SplitLabels],
    links: Links,
    link_split: np.ndarray,
    consistency_k: int = 10,
    ranks: dict[str, dict] | None = None,
    known: np.ndarray | None = None,
):
    """``eval_fn(model, dataset, device)`` for the Trainer: ranking metrics of the dataset's split.

    With ``ranks`` (a dict), the test evaluation (once, after fitting) also stores its
    per-query and per-link ranks there under ``"test"``; ``known`` [n_links] bool marks
    links of the user's known source (see :func:`genomelab.assoc.metrics.evaluate`).
    """

    def eval_fn(model: AssocModel, dataset: AssocDataset, device: torch.device) -> dict[str, float]:
        score = model_score_fn(model, device)
        keep = ranks is not None and dataset.split == "test"
        split_ranks: dict[str, dict[str, list]] | None = {} if keep else None
        metrics = evaluate(
            score,
            labels_by_split[dataset.split],
            links,
            link_split,
            KS,
            consistency_k,
            ranks_out=split_ranks,
            known=known,
        )
        if keep:
            ranks["test"] = split_ranks
        model.train()
        return {k: v for k, v in metrics.items() if not k.startswith("n_")}

    return eval_fn


def effective_train_config(train_section: dict[str, Any], quick_test: bool) -> TrainConfig:
    values = dict(train_section)
    if quick_test:
        values["max_epochs"] = min(int(values["max_epochs"]), QUICK_MAX_EPOCHS)
        values["patience"] = QUICK_PATIENCE
    return TrainConfig.from_dict(values)


def train_model(
    build: Callable[[], AssocModel],
    config: dict[str, Any],
    train_cfg: TrainConfig,
    labels: dict[str, SplitLabels],
    links: Links,
    link_split: np.ndarray,
    ids: dict[str, list[str]],
    data_fingerprint: str,
    out_dir: Path,
    state_root: str | os.PathLike,
    device: torch.device | str,
    run_config: dict[str, Any],
    make_report: Callable[[AssocModel, dict[str, Any]], dict[str, Any]],
    known: np.ndarray | None = None,
    featurizer_fingerprint: str = "",
) -> dict[str, Any]:
    """Fit ``build()`` (configuration ``config``) on ``labels['train']`` with early stopping
    on ``labels['val']``; test once at the end. ``featurizer_fingerprint`` (of the featuriser
    that made the features) goes into the exported model for inference to check.

    Writes ``metrics.json``, ``model.pt`` (exported, with the entity IDs), ``tensorboard/``
    (with the alias names) and ``training_report.json`` (``make_report(model, result)``,
    where ``result`` holds the fit summary, test metrics and per-query test ranks
    ``test_ranks``). ``known`` marks links of the user's known source. Returns the report.
    """
    built: dict[str, AssocModel] = {}
    ranks: dict[str, dict] = {}

    def build_model() -> AssocModel:
        built["model"] = build()
        return built["model"]

    def build_data(dev: torch.device) -> dict[str, AssocDataset]:
        model = built["model"]
        n_candidates = {"s2t": model.n_entities("target"), "t2s": model.n_entities("source")}
        datasets = {s: build_dataset(labels[s], n_candidates) for s in ("train", "val", "test")}
        for s, ds in datasets.items():
            if len(ds) == 0:
                raise ValueError(
                    f"the {labels[s].scheme} scheme has no {s} queries: too few links or "
                    "entities for the split fractions"
                )
        return datasets

    def after_fit(state: RunState) -> dict[str, Any]:
        fit, test, history = state.fit, state.test_losses, state.fit.history
        val_best = history[fit.best_epoch] if fit.best_epoch < len(history) else {}
        result = {
            "best_epoch": fit.best_epoch,
            "best_val_loss": fit.best_value,
            "epochs_run": fit.epochs_run,
            "stopped_reason": fit.stopped_reason,
            "val": {k: v for k, v in val_best.items() if k.startswith("val/")},
            "test": test,
            "initial_val_loss": history[0].get("val/loss") if history else None,
            "final_train_loss": history[-1].get("train/loss") if history else None,
            "first_train_loss": history[0].get("train/loss") if history else None,
            "train_config": dataclasses.asdict(train_cfg),
            # Per-query ranks of the final test evaluation: the summary's paired tests.
            "test_ranks": ranks.get("test", {}),
        }
        state.values["report"] = make_report(state.model, result)
        return {"test": test}

    def write_outputs(state: RunState) -> None:
        _write_aliases(state.trainer)
        atomic_write_json(out_dir / "training_report.json", state.values["report"])

    spec = RunSpec(
        kind=KIND,
        train_config=train_cfg,
        model_config=config,
        build_model=build_model,
        build_data=build_data,
        ids=ids,
        data_fingerprint=data_fingerprint,
        run_config=run_config,
        eval_fn=make_eval_fn(labels, links, link_split, ranks=ranks, known=known),
        after_fit=after_fit,
        write_outputs=write_outputs,
        export_extra=lambda state: {
            "scheme": run_config.get("scheme"),
            # The featuriser the features came from: inference checks the one it is given.
            "featurizer_fingerprint": featurizer_fingerprint,
        },
    )
    outputs = RunOutputs(out_dir / "metrics.json", out_dir / "model.pt", out_dir / "tensorboard")
    return run_training(spec, state_root, outputs, device).values["report"]


def _write_aliases(trainer: Trainer) -> None:
    """Write the issue's TensorBoard names (Loss/train, Accuracy/..., Metrics/...) per epoch.

    The engine logs ``train/loss``, ``val/s2t_acc@5``...; the same values go out again
    under the names dashboards of the original project used, from the finished history.
    """
    if trainer.tensorboard_dir is None:
        return
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(trainer.tensorboard_dir), filename_suffix=".aliases") as writer:
        for metrics in trainer.history:
            step = int(metrics["epoch"])
            for name, value in metrics.items():
                alias = alias_name(name)
                if alias:
                    writer.add_scalar(alias, value, step)


def alias_name(name: str) -> str | None:
    if name in TB_ALIASES:
        return TB_ALIASES[name]
    if name.startswith("val/") and "_acc@" in name:
        return "Accuracy/" + name[len("val/") :]
    if name.startswith("val/") and name.endswith("_mrr"):
        return "Metrics/MRR_" + name[len("val/") : -len("_mrr")]
    return None


def save_model(
    path: str | os.PathLike, model: AssocModel, ids: dict[str, list[str]], extra: dict[str, Any] | None = None
) -> None:
    """An exported model of ``model`` outside a training run (``ids``: sources, targets)."""
    save_exported(
        path, model, kind=KIND, config=model.config.to_dict(), ids=ids, data_fingerprint="", extra=extra
    )


def load_model(
    path: str | os.PathLike, source_ids: list[str] | None = None, target_ids: list[str] | None = None
) -> tuple[AssocModel, ExportedModel]:
    """Rebuild a model from an exported model file (vocabulary features included).

    ``source_ids``/``target_ids``, when given, must be the file's entity IDs (in order)."""
    expect = {k: v for k, v in (("sources", source_ids), ("targets", target_ids)) if v is not None}
    exported = load_exported(path, expect_ids=expect, kind=KIND)
    # Files written before the cold start existed scored unlinked entities without it.
    cfg = AssocModelConfig(**{"cold_start": "none", **exported.config})
    state = exported.weights
    vocab = {k: state[k] for k in state if k.split("_", 1)[0] in ("source", "target") and "." not in k}
    model = AssocModel(cfg, vocab)
    model.load_state_dict(state)
    model.eval()
    return model, exported


def train_run(
    data_dir: str | os.PathLike,
    features_path: str | os.PathLike,
    scheme: str,
    model_section: dict[str, Any],
    train_section: dict[str, Any],
    grid_point: dict[str, Any],
    out_dir: str | os.PathLike,
    state_dir: str | os.PathLike,
    device: str = "auto",
    quick_test: bool = False,
    splits_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Train one grid point on one scheme; write model.pt, metrics.json, training_report.json.
    ``splits_path``: a fold's splits (default: the data folder's ``splits.npz``)."""
    from genomelab.train.device import resolve_device
    from genomelab.train.export import data_fingerprint

    out = Path(out_dir)
    splits = Path(splits_path) if splits_path else Path(data_dir) / "splits.npz"
    sources, targets, links, assignment = load_data(data_dir, splits)
    feats = load_features(features_path)
    labels = all_labels(links, assignment, scheme, len(sources), len(targets))
    model_cfg = {
        **model_section,
        "dropout": float(grid_point["dropout"]),
        "bridge_dim": int(grid_point["bridge_dim"]),
    }
    train_cfg = effective_train_config(
        {**train_section, "lr": float(grid_point["lr"]), "batch_size": int(grid_point["batch_size"])},
        quick_test,
    )
    config = model_config(model_cfg, feats, labels["train"]).to_dict()
    dev = resolve_device(device)

    def make_report(model: torch.nn.Module, result: dict[str, Any]) -> dict[str, Any]:
        return {
            "module": "assoc",
            "scheme": scheme,
            "run": run_name(**grid_point),
            "quick_test": quick_test,
            "device": str(dev),
            "hyperparameters": {**grid_point, **result.pop("train_config")},
            "model_config": config,
            "n_parameters": int(sum(p.numel() for p in model.parameters())),
            **result,
        }

    # The state folder is keyed by the inputs' content and the configuration: changed data
    # or settings start a fresh run instead of resuming (or reusing) a stale last.pt.
    return train_model(
        lambda: build_model(model_cfg, feats, labels["train"]),
        config,
        train_cfg,
        labels,
        links,
        assignment.links[scheme],
        {"sources": sources.ids, "targets": targets.ids},
        data_fingerprint(Path(features_path), splits, Path(data_dir) / "links.tsv"),
        out,
        state_dir,
        dev,
        {"scheme": scheme, "quick_test": quick_test},
        make_report,
        assignment.known,
        featurizer_fingerprint=features_fingerprint(features_path),
    )
