"""A tissue task: its labels, splits and in-memory feature matrices (``TissueData``).

The features HDF5 (see :mod:`genomelab.tissue.features`) holds every sample; a *task*
chooses the label column (``tissue`` or, for fine-grained classes, ``subtype``) and
optionally restricts the samples to some broad tissues (e.g. only Blood, to separate blood
subtypes). Splits are made once per task, by ``source_sample`` groups, and written as a TSV
that every baseline, diagnostic and model reads, so all of them see the same held-out set.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from genomelab.config import ConfigSection, from_schema
from genomelab.io.features import read_features, read_n_positions
from genomelab.io.tables import read_given_assignment, read_split_table, write_split_table
from genomelab.splits import GivenAssignment, fold_split, group_kfold, group_split

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ("tissue", "subtype")


@dataclass
class TaskConfig(ConfigSection):
    """What to classify: ``label`` column, optional broad-tissue ``subset``, split fractions."""

    SECTION = "tissue.task"

    label: str = from_schema("tissue.task.label")
    subset: list[str] = from_schema("tissue.task.subset")
    fractions: list[float] = from_schema("tissue.task.fractions")
    select_regions: int = from_schema("tissue.task.select_regions")

    def __post_init__(self) -> None:
        if self.label not in LABEL_COLUMNS:
            raise ValueError(f"tissue.task.label must be one of {LABEL_COLUMNS}, not {self.label!r}")
        if len(self.fractions) != 3 or min(self.fractions) < 0 or self.fractions[0] <= 0:
            raise ValueError(
                f"tissue.task.fractions must be three numbers >= 0 with train > 0, not {self.fractions}"
            )
        if self.select_regions < 0:
            raise ValueError(f"tissue.task.select_regions must be >= 0 (0 = all), not {self.select_regions}")
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
                f"(tissues: {sorted({str(t) for t in features['tissue']})})"
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


def check_classes(features: dict[str, np.ndarray], keep: np.ndarray, task: TaskConfig, source: str) -> None:
    """Refuse a task of fewer than 2 classes; where the samples' subtypes would give classes
    (a stacked HDF5 from ``tissue_convert_tcga.py`` keeps the table's labels in ``subtype``
    and one broad ``tissue``), say to classify those."""
    classes = sorted({str(c) for c in features[task.label][keep]})
    if len(classes) >= 2:
        return
    subtypes = sorted({str(c) for c in features["subtype"][keep]} - {""})
    hint = (
        f"; the samples' subtype column has {len(subtypes)} classes ({subtypes[:5]}): to classify "
        "those, set tissue.task.label: subtype"
        if task.label == "tissue" and len(subtypes) >= 2
        else ""
    )
    raise ValueError(f"{source}: task needs at least 2 classes of {task.label!r}, found {classes}{hint}")


def check_input(section: Mapping[str, Any], sheet_exists: bool = True) -> None:
    """Parse-time check of a ``tissue`` config section against its input: the file that
    ``input.source`` names is set, every sample the task uses has its ``task.label``
    (``subtype`` needs the column filled), the task has 2 classes or more, ``task.subset``
    names tissues that exist, and a given split or folds (``input.splits`` or the sheet's
    column) reads and agrees with ``evaluation.folds``. Raises naming the key and the file,
    before a job runs (the same checks in ``tissue_splits``
    come after the features of the whole cohort). ``sheet_exists`` False: the sheet is made
    by this run (ingest), so only the keys are checked."""
    from genomelab.io.methylation import StackedHDF5
    from genomelab.io.sheets import read_sample_sheet
    from genomelab.io.streams import existing_file
    from genomelab.tissue.features import hdf5_records

    splits = section["input"].get("splits") or None
    if splits:
        # Misspelt on a run that had trained before, Snakemake reran only the report and the
        # earlier split stood; checked now, naming the key.
        existing_file(splits, "tissue.input.splits")
    source = section["input"]["source"]
    sheet = section["input"]["sheet"] if source != "simulate" and sheet_exists else ""
    if sheet:
        # Named by its key: the sheet reader's own error gives only the path.
        existing_file(sheet, "tissue.input.sheet")
    # A given split or folds (values, keys given twice, both a file and a sheet column),
    # named by file and line now, not after the features of the whole cohort.
    check_given_kind(given_assignment(splits, sheet or None), section.get("evaluation", {}).get("folds", 1))
    if source == "simulate":
        given = [k for k in ("sheet", "hdf5") if section["input"][k]]
        if given:
            # The schema's default source is the demo's simulator: a sheet without source: sheet
            # would be ignored and the run trained on simulated samples under the user's run name.
            raise ValueError(
                f"tissue.input.{given[0]} is set but tissue.input.source is 'simulate' (the default: "
                f"the demo's simulated samples, which would ignore your file): add `source: {given[0]}` "
                "under tissue.input"
            )
        return
    key = "sheet" if source == "sheet" else "hdf5"
    if not section["input"][key]:
        raise ValueError(
            f"tissue.input.source is {source!r} but tissue.input.{key} is empty: set it to your "
            + ("sample sheet" if key == "sheet" else "stacked methylation HDF5")
            + " (docs/tissue.md, 'Your own data')"
        )
    if source == "sheet" and section["input"]["hdf5"]:
        # With source: hdf5 the sheet is the HDF5's optional label sheet; the reverse has no
        # use for the HDF5, which would be ignored.
        raise ValueError(
            f"tissue.input.hdf5 ({section['input']['hdf5']}) is set but tissue.input.source is 'sheet', "
            "which reads only the sample sheet: remove tissue.input.hdf5, or set source: hdf5 (the sheet "
            "then gives the HDF5's labels)"
        )
    if source == "sheet":
        if not sheet_exists:
            return
        where = f"sample sheet {section['input']['sheet']}"
        records = read_sample_sheet(section["input"]["sheet"], check_files=False)
    else:
        existing_file(section["input"]["hdf5"], "tissue.input.hdf5")
        where = f"stacked HDF5 {section['input']['hdf5']}"
        records = hdf5_records(StackedHDF5.open(section["input"]["hdf5"]), section["input"]["sheet"] or None)
    labels = {
        "samples": np.array([r.sample for r in records]),
        "tissue": np.array([r.tissue for r in records]),
        "subtype": np.array([r.subtype for r in records]),
    }
    task = TaskConfig.from_dict(section["task"])
    where = f"{where} (tissue.task.label: {task.label})"
    check_classes(labels, select_task(labels, task, where), task, where)


@dataclass
class EvaluationConfig(ConfigSection):
    """How models are evaluated: ``folds`` = 1 is one train/val/test split, K > 1 is K-fold
    cross-validation by source sample (each fold's training its own job)."""

    SECTION = "tissue.evaluation"

    folds: int = from_schema("tissue.evaluation.folds")

    def __post_init__(self) -> None:
        if self.folds < 1:
            raise ValueError(f"tissue.evaluation.folds must be >= 1, not {self.folds}")


def _task_samples(features_h5: str | os.PathLike, task: TaskConfig) -> dict[str, np.ndarray]:
    """The task's samples: ``sample``, ``group`` (source sample), ``tissue``, ``label`` ([n] each)."""
    feats = read_features(features_h5)
    keep = select_task(feats, task, str(features_h5))
    check_classes(feats, keep, task, str(features_h5))
    labels = feats[task.label][keep]
    return {
        "sample": feats["samples"][keep],
        "group": feats["source_sample"][keep],
        "tissue": feats["tissue"][keep],
        "label": labels,
    }


def _rows(samples: dict[str, np.ndarray], kind: str, values: np.ndarray) -> list[dict[str, str]]:
    """Rows of a splits (``kind`` "split") or folds table (``kind`` "fold")."""
    return [
        {"sample": s, "source_sample": g, "tissue": t, "label": lab, kind: str(v)}
        for s, g, t, lab, v in zip(
            samples["sample"], samples["group"], samples["tissue"], samples["label"], values, strict=True
        )
    ]


def _given_values(samples: dict[str, np.ndarray], given: GivenAssignment) -> np.ndarray:
    """The given split or fold of each task sample (keyed by sample or by source sample)."""
    keys = samples["group"] if given.key == "source_sample" else samples["sample"]
    return given.assign(keys, samples["group"])


def check_given_kind(given: GivenAssignment | None, k: int) -> None:
    """Refuse a given split with ``k`` > 1 folds, given folds with one split (``k`` = 1), or
    given folds whose number is not ``k`` (``tissue.evaluation.folds``)."""
    if given is None:
        return
    if k == 1 and given.kind == "fold":
        raise ValueError(
            f"{given.source} gives {given.n_folds} folds but tissue.evaluation.folds is 1; set "
            f"evaluation: {{folds: {given.n_folds}}} or give a split column instead"
        )
    if k > 1 and given.kind == "split":
        raise ValueError(
            f"{given.source} gives one train/val/test split but tissue.evaluation.folds is {k}; "
            "give a fold column (0..K-1) for cross-validation or set folds: 1"
        )
    if k > 1 and given.n_folds != k:
        raise ValueError(
            f"{given.source} gives {given.n_folds} folds but tissue.evaluation.folds is {k}; make them agree"
        )


def make_splits(
    features_h5: str | os.PathLike, task: TaskConfig, seed: int, given: GivenAssignment | None = None
) -> list[dict[str, str]]:
    """Split a task's samples by ``source_sample`` (augmented copies stay together), stratified
    by label; or take the ``given`` split (checked: every sample assigned, no source sample
    in two splits)."""
    samples = _task_samples(features_h5, task)
    check_given_kind(given, 1)
    if given is None:
        split = group_split(samples["group"], task.fractions, seed=seed, stratify=samples["label"])
    else:
        split = _given_values(samples, given)
        logger.info("using the split given in %s", given.source)
    return _rows(samples, "split", split)


def make_folds(
    features_h5: str | os.PathLike,
    task: TaskConfig,
    seed: int,
    k: int,
    given: GivenAssignment | None = None,
) -> tuple[list[dict[str, str]], list[list[dict[str, str]]]]:
    """K folds of a task's samples by source sample, stratified by label, or the ``given`` folds.

    Returns the folds table (each sample's test fold) and, per fold, its splits table: the
    fold's samples are its test split; validation source samples are drawn from the other
    folds in the proportion val : train of ``task.fractions``.
    """
    samples = _task_samples(features_h5, task)
    check_given_kind(given, k)
    if given is None:
        folds = group_kfold(samples["group"], k, seed=seed, stratify=samples["label"])
    else:
        folds = _given_values(samples, given)
        logger.info("using the %d folds given in %s", k, given.source)
    val_fraction = task.fractions[1] / (task.fractions[0] + task.fractions[1])
    splits = [
        _rows(samples, "split", fold_split(folds, f, samples["group"], val_fraction, seed, samples["label"]))
        for f in range(k)
    ]
    return _rows(samples, "fold", folds), splits


def given_assignment(
    splits_file: str | os.PathLike | None, sheet: str | os.PathLike | None
) -> GivenAssignment | None:
    """The split or folds a user gave: ``tissue.input.splits`` (a ``split`` or ``fold`` column
    keyed by ``sample`` or ``source_sample``) or a ``split``/``fold`` column of the sample
    sheet; None when neither gives one. Both giving one is an error (which would win?)."""
    from_file = read_given_assignment(splits_file, ("sample", "source_sample")) if splits_file else None
    from_sheet = read_given_assignment(sheet, ("sample",), "sample sheet", required=False) if sheet else None
    if from_file is not None and from_sheet is not None:
        raise ValueError(
            f"both the splits file {splits_file} and the sample sheet {sheet} give a split or folds; "
            "keep one (remove tissue.input.splits or the sheet's column)"
        )
    return from_file if from_file is not None else from_sheet


def write_evaluation_splits(
    features_h5: str | os.PathLike,
    task: TaskConfig,
    seed: int,
    splits_tsv: list[str | os.PathLike],
    folds_tsv: str | os.PathLike | None = None,
    given: GivenAssignment | None = None,
) -> None:
    """Write the evaluation's splits: one splits table (``folds_tsv`` None), or the folds table
    and one splits table per fold (``splits_tsv`` [K], fold order)."""
    if folds_tsv is None:
        if len(splits_tsv) != 1:
            raise ValueError(f"one split has one splits table, not {len(splits_tsv)}")
        write_split_table(make_splits(features_h5, task, seed, given), splits_tsv[0])
        return
    fold_rows, per_fold = make_folds(features_h5, task, seed, len(splits_tsv), given)
    write_split_table(fold_rows, folds_tsv, kind="fold")
    for rows, path in zip(per_fold, splits_tsv, strict=True):
        write_split_table(rows, path)


def load_task(
    features_h5: str | os.PathLike, splits_tsv: str | os.PathLike, n_regions: int = 0
) -> TissueData:
    """Join the features HDF5 with a splits TSV (sample IDs must all be present); with
    ``n_regions`` > 0 keep the regions :func:`select_regions` picks on this split's training
    samples."""
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
    data = TissueData(
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
    return select_regions(data, n_regions)


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


def select_regions(data: TissueData, n_regions: int) -> TissueData:
    """The task restricted to the ``n_regions`` regions of highest F statistic (between- over
    within-class mean square of standardised means), computed on the TRAINING rows only.

    Validation and test rows never enter the choice, so with K folds each fold selects its
    own regions. ``n_regions`` 0 (or >= the number of regions) keeps all. Ties go to the
    earlier region, so the choice is deterministic. Returns a new ``TissueData``.
    """
    if n_regions <= 0 or n_regions >= len(data.regions):
        return data
    from genomelab.tissue.diagnostics import variance_ratio

    train = data.index("train")
    if len(train) == 0:
        raise ValueError("region selection needs training samples (the split has none)")
    mu, sd = impute_standardise_params(data.means[train])
    f, _, _ = variance_ratio(standardise(data.means[train], mu, sd), data.y[train], len(data.classes))
    f = np.where(np.isfinite(f), f, -np.inf)
    keep = np.sort(np.argsort(-f, kind="stable")[:n_regions])
    logger.info("kept %d of %d regions by training-split F statistic", len(keep), len(data.regions))
    return dataclasses.replace(
        data, means=data.means[:, keep], coverage=data.coverage[:, keep], regions=data.regions[keep]
    )
