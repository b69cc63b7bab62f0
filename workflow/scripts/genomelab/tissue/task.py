"""A tissue task: its labels, splits and in-memory feature matrices (``TissueData``).

The features HDF5 (see :mod:`genomelab.tissue.features`) holds every sample; a *task*
chooses the label column (``tissue`` or, for fine-grained classes, ``subtype``) and
optionally restricts the samples to some broad tissues (e.g. only Blood, to separate blood
subtypes). Splits are made once per task, by ``source_sample`` groups, and written as a TSV
that every baseline, diagnostic and model reads, so all of them see the same held-out set.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np

from genomelab.config import ConfigSection, from_schema
from genomelab.io.features import read_features, read_n_positions
from genomelab.io.tables import read_split_table
from genomelab.splits import group_split

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("tissue", "subtype")


@dataclass
class TaskConfig(ConfigSection):
    """What to classify: ``label`` column, optional broad-tissue ``subset``, split fractions."""

    SECTION = "tissue.task"

    label: str = from_schema("tissue.task.label")
    subset: list[str] = from_schema("tissue.task.subset")
    fractions: list[float] = from_schema("tissue.task.fractions")

    def __post_init__(self) -> None:
        if self.label not in LABEL_COLUMNS:
            raise ValueError(f"tissue.task.label must be one of {LABEL_COLUMNS}, not {self.label!r}")
        if len(self.fractions) != 3 or min(self.fractions) < 0 or self.fractions[0] <= 0:
            raise ValueError(
                f"tissue.task.fractions must be three numbers >= 0 with train > 0, not {self.fractions}"
            )
        if self.fractions[1] <= 0 or self.fractions[2] <= 0:
            raise ValueError(
                "tissue.task.fractions: validation and test fractions must be > 0 "
                "(early stopping needs val, the comparison needs test)"
            )


@dataclass
class TissueData:
    """One task's samples in memory.

    means, coverage: float32 / uint16 [n_samples, n_regions] (means NaN where uncovered);
    y: int64 [n_samples] index into ``classes``; groups: source sample per row;
    split: "train"/"val"/"test" per row (empty before splits are attached).
    """

    samples: np.ndarray
    groups: np.ndarray
    tissue: np.ndarray
    labels: np.ndarray
    classes: np.ndarray
    y: np.ndarray
    means: np.ndarray
    coverage: np.ndarray
    regions: np.ndarray
    n_positions: int
    split: np.ndarray

    def index(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)

    def predictions(self, split: str, proba: np.ndarray) -> dict[str, list]:
        """Per-sample record of a split's predictions, as metrics JSON files keep it (the
        summary's paired tests match models and baselines on it): sample names, true and
        predicted class indices. ``proba``: [n_split, C] in ``index(split)`` order."""
        idx = self.index(split)
        if len(proba) != len(idx):
            raise ValueError(f"{len(proba)} predictions for {len(idx)} {split} samples")
        return {
            "sample": self.samples[idx].tolist(),
            "true": self.y[idx].tolist(),
            "pred": np.asarray(proba).argmax(1).tolist(),
        }

    def subset(self, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(means, coverage, y)`` rows of one split."""
        idx = self.index(split)
        return self.means[idx], self.coverage[idx], self.y[idx]


def select_task(features: dict[str, np.ndarray], task: TaskConfig, source: str = "features") -> np.ndarray:
    """Row mask of the samples a task uses; raises when labels are missing or the subset is empty."""
    keep = np.ones(len(features["samples"]), dtype=bool)
    if task.subset:
        unknown = sorted(set(task.subset) - set(features["tissue"]))
        if unknown:
            raise ValueError(
                f"{source}: tissue.task.subset names tissues {unknown} that no sample has "
                f"(tissues: {sorted(set(features['tissue']))})"
            )
        keep &= np.isin(features["tissue"], task.subset)
    labels = features[task.label]
    empty = keep & (labels == "")
    if empty.any():
        names = features["samples"][empty][:5].tolist()
        raise ValueError(
            f"{source}: {int(empty.sum())} sample(s) have no {task.label!r} label "
            f"(e.g. {names}); fill the column in the sample sheet or use label: tissue"
        )
    return keep


def make_splits(features_h5: str | os.PathLike, task: TaskConfig, seed: int) -> list[dict[str, str]]:
    """Split a task's samples by ``source_sample`` (augmented copies stay together), stratified by label."""
    feats = read_features(features_h5)
    keep = select_task(feats, task, str(features_h5))
    groups, labels = feats["source_sample"][keep], feats[task.label][keep]
    n_classes = len(np.unique(labels))
    if n_classes < 2:
        raise ValueError(f"{features_h5}: task needs at least 2 classes of {task.label!r}, found {n_classes}")
    split = group_split(groups, task.fractions, seed=seed, stratify=labels)
    return [
        {"sample": s, "source_sample": g, "tissue": t, "label": lab, "split": sp}
        for s, g, t, lab, sp in zip(
            feats["samples"][keep], groups, feats["tissue"][keep], labels, split, strict=True
        )
    ]


def load_task(features_h5: str | os.PathLike, splits_tsv: str | os.PathLike) -> TissueData:
    """Join the features HDF5 with a splits TSV (sample IDs must all be present)."""
    feats = read_features(features_h5)
    rows = read_split_table(splits_tsv)
    row_of = {s: i for i, s in enumerate(feats["samples"])}
    missing = [r["sample"] for r in rows if r["sample"] not in row_of]
    if missing:
        raise ValueError(
            f"splits file {splits_tsv} names {len(missing)} sample(s) absent from "
            f"{features_h5} (e.g. {missing[:3]}); rerun the splits rule"
        )
    idx = np.asarray([row_of[r["sample"]] for r in rows], dtype=np.int64)
    labels = np.asarray([r["label"] for r in rows])
    classes, y = np.unique(labels, return_inverse=True)
    n_positions = read_n_positions(features_h5)
    return TissueData(
        samples=feats["samples"][idx],
        groups=np.asarray([r["source_sample"] for r in rows]),
        tissue=np.asarray([r["tissue"] for r in rows]),
        labels=labels,
        classes=classes,
        y=y.astype(np.int64),
        means=feats["means"][idx].astype(np.float32, copy=False),
        coverage=feats["coverage"][idx],
        regions=feats["regions"],
        n_positions=n_positions,
        split=np.asarray([r["split"] for r in rows]),
    )


def impute_standardise_params(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-region centre and scale from training rows ([n, R] with NaN) -> ``(mu [R], sd [R])``.

    Regions never covered in training get centre 0.5 and scale 1, so they carry nothing.
    """
    # All-NaN columns (regions no training sample covers) are expected and handled below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mu = np.nanmean(means, axis=0)
        sd = np.nanstd(means, axis=0)
    mu = np.where(np.isfinite(mu), mu, 0.5).astype(np.float32)
    sd = np.where(np.isfinite(sd) & (sd > 1e-3), sd, 1.0).astype(np.float32)
    return mu, sd


def standardise(means: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """z-scores with missing values at 0 (the training mean): float32 [n, R]."""
    z = (means - mu) / sd
    return np.where(np.isfinite(z), z, 0.0).astype(np.float32)
