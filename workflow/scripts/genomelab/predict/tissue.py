"""Classify new samples with a trained tissue model (single model or ensemble).

Inputs are region means: a features HDF5 (``tissue_features`` output), a stacked methylation
HDF5 (made into region means as for training), a sample sheet of per-sample NPZ files
(ingest's ``samples.tsv``), or one NPZ; a sample's raw calls (Bismark, bedMethyl, wgbstools)
or an ingest sheet are refused, saying to run ingest first. Input regions are joined to
the model's by ID (absent regions, and regions with coverage 0, are "uncovered", as in
training); fewer than ``min_region_match`` of the model's regions is an error naming the
first mismatches.
Each sample gets the class probabilities of every member and of the ensemble (the members'
mean, as in training), the call, a confidence (the called class's probability) and a flag
when it covers fewer than ``min_covered`` of the model's regions. A sample is
``classifiable`` when it is not flagged and the ensemble's (temperature-calibrated)
confidence reaches the threshold (by default the one recorded with the model, the run's
``tissue.calibration.threshold``; 0 = every unflagged sample): below it the call is reported
"not classifiable", as diagnostic classifiers report a calibrated score below their cut-off.
Several model files of one class list (a cross-validated run's K folds' models) are
averaged: :class:`AveragedPredictor`, the mean of each file's calibrated probabilities, to
which the threshold then applies; files of other region lists (each fold of a run with
``tissue.task.select_regions`` keeps its own) each read their own regions of the inputs.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import torch
from torch.utils.data import TensorDataset

from genomelab.io.atomic import atomic_output, atomic_write_json
from genomelab.io.ids import IdIndex, IdMatch, InputMismatch, first_difference, match_ids, refuse_duplicates
from genomelab.tissue.calibration import ProfileTemperature, apply_temperature
from genomelab.tissue.inference import AttentionEnsemble, MaskedEnsemble
from genomelab.tissue.kinds import FILE_LEVEL, REGION_LEVEL
from genomelab.tissue.models import build_model, exported_config
from genomelab.tissue.training import ENSEMBLE_SUFFIX, predict_proba
from genomelab.train.device import resolve_device
from genomelab.train.export import (
    KIND_MODULES,
    ExportedModel,
    load_exported,
    model_files,
    refuse_repeated_files,
)

logger = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
ACCEPTED_INPUTS = (
    "tissue --inputs takes a features HDF5 (tissue_features output), a stacked methylation HDF5 "
    "(tissue.input.hdf5's layout, e.g. tissue_convert_tcga.py output), a tab-separated sample "
    "sheet (columns sample and file; tissue optional) of NPZ files (ingest's samples.tsv), or one NPZ"
)
# What to do with one sample's raw calls (Bismark, bedMethyl, wgbstools) or an ingest sheet.
INGEST_FIRST = (
    "run the ingest module on it first (docs/ingest.md: a regions BED naming each region as the "
    "model's regions are named), then predict the NPZ files it writes (results/<run>/ingest/samples.tsv)"
)


@dataclass
class TissueInputs:
    """Region means of new samples: means float32 [S, R] (NaN uncovered), coverage [S, R]."""

    samples: np.ndarray
    regions: np.ndarray
    means: np.ndarray
    coverage: np.ndarray
    source: str


@dataclass
class TissuePrediction:
    """Probabilities [S, C] per member name (and ``ensemble``), the call per sample, counts."""

    samples: list[str]
    classes: list[str]
    proba: dict[str, np.ndarray]
    match: IdMatch
    n_covered: np.ndarray
    flagged: np.ndarray
    threshold: float = 0.0
    # False: the model is one network without its run's calibration (raw probabilities).
    calibrated: bool = True
    # The model files whose probabilities were averaged (None: one model file, the
    # predictions' layout before averaging existed).
    model_files: list[str] | None = None

    @property
    def classifiable(self) -> np.ndarray:
        """[S] bool: not flagged and the ensemble's confidence at least ``threshold``."""
        return ~self.flagged & (self.confidence >= self.threshold)

    @property
    def call(self) -> list[str]:
        return [self.classes[i] for i in self.proba[ENSEMBLE].argmax(1)]

    @property
    def confidence(self) -> np.ndarray:
        return self.proba[ENSEMBLE].max(1)

    def records(self) -> list[dict[str, Any]]:
        """One JSON-ready record per sample."""
        out = []
        for i, sample in enumerate(self.samples):
            models = {
                name: {
                    "call": self.classes[int(p[i].argmax())],
                    "probabilities": dict(zip(self.classes, p[i].tolist(), strict=True)),
                }
                for name, p in self.proba.items()
            }
            out.append(
                {
                    "sample": sample,
                    "call": self.call[i],
                    "confidence": float(self.confidence[i]),
                    "n_regions_covered": int(self.n_covered[i]),
                    "flagged": bool(self.flagged[i]),
                    "classifiable": bool(self.classifiable[i]),
                    "models": models,
                }
            )
        return out


class _SampleClassifier:
    """What :meth:`predict` shares between one exported model (:class:`TissuePredictor`)
    and several averaged (:class:`AveragedPredictor`): the region join, the coverage flag and
    the threshold, around the subclass's ``predict_arrays``."""

    classes: list[str]
    regions: np.ndarray
    region_index: IdIndex
    n_positions: int
    threshold: float
    calibrated: bool
    model_files: list[str] | None = None

    def predict_arrays(
        self, means: np.ndarray, coverage: np.ndarray, batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def predict(
        self,
        inputs: TissueInputs,
        min_region_match: float,
        min_covered: float,
        threshold: float | None = None,
    ) -> TissuePrediction:
        """Join ``inputs`` to the model's regions, classify, flag poorly covered samples and
        mark those below the confidence ``threshold`` (None: the model's) not classifiable."""
        threshold = self.threshold if threshold is None else float(threshold)
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold: {threshold} is not in [0, 1)")
        try:
            match = match_ids(self.region_index, inputs.regions, "regions", inputs.source, min_region_match)
        except InputMismatch as exc:
            # The same error (a TooFewMatched stays one, for the option that relaxes it).
            exc.args = (f"{exc}{naming_hint(self.regions, inputs.regions)}",)
            raise
        found = match.index >= 0
        n = len(inputs.samples)
        if len(inputs.regions) == len(self.regions) and (match.index == np.arange(len(self.regions))).all():
            # Inputs in the model's order (a server request without region IDs): no join.
            # Copied only where read-only (a base64 request's buffer), as torch needs.
            means, coverage = (
                x if x.flags.writeable else x.copy()
                for x in (np.asarray(inputs.means, np.float32), np.asarray(inputs.coverage, np.float32))
            )
        else:
            means = np.full((n, len(self.regions)), np.nan, np.float32)
            coverage = np.zeros((n, len(self.regions)), np.float32)
            means[:, found] = inputs.means[:, match.index[found]]
            coverage[:, found] = inputs.coverage[:, match.index[found]]
        # A value with no calls behind it (coverage 0) is uncovered, as in training, whose
        # features are NaN wherever coverage is 0 (tissue.features.count_means/region_means):
        # the counts, the flag and every member see the region as missing.
        no_calls = np.isfinite(means) & ~(coverage > 0)
        if no_calls.any():
            means = np.where(no_calls, np.float32(np.nan), means)
        n_covered = np.isfinite(means).sum(1)
        flagged = n_covered < min_covered * len(self.regions)
        if flagged.any():
            logger.warning(
                "%s: %d of %d sample(s) cover fewer than %.0f%% of the model's %d regions (flagged): %s",
                inputs.source,
                int(flagged.sum()),
                n,
                100 * min_covered,
                len(self.regions),
                [str(s) for s in inputs.samples[flagged][:5]],
            )
        proba = self.predict_arrays(means, coverage)
        return TissuePrediction(
            [str(s) for s in inputs.samples],
            self.classes,
            proba,
            match,
            n_covered,
            flagged,
            threshold,
            self.calibrated,
            self.model_files,
        )


class TissuePredictor(_SampleClassifier):
    """An exported tissue model (one network, or an ensemble's members), ready to classify."""

    def __init__(self, exported: ExportedModel, path: str | os.PathLike, device: str | torch.device = "cpu"):
        kind = exported.kind.removesuffix(ENSEMBLE_SUFFIX)
        if kind in REGION_LEVEL:
            raise ValueError(
                f"{path}: a {exported.kind!r} model classifies single regions (the ablation), "
                f"not samples; predict with one of {FILE_LEVEL} or their ensembles"
            )
        if kind not in FILE_LEVEL:
            module = KIND_MODULES.get(kind)
            hint = f"; predict it with `genomelab predict {module}`" if module else ""
            raise ValueError(
                f"{path} holds a {exported.kind!r} model, expected a tissue model (one of "
                f"{FILE_LEVEL} or their ensembles){hint}"
            )
        self.path, self.exported, self.device = str(path), exported, resolve_device(str(device))
        self.classes = list(exported.ids["classes"])
        self.regions = np.asarray(exported.ids["regions"])
        self.region_index = IdIndex(self.regions)  # built once: requests are matched against it
        if not self.region_index.unique:
            # Exported before training refused repeated region IDs: still usable (each copy
            # gets the input's value for that ID), but the user should know why it differs.
            repeated = len(self.regions) - len(self.region_index.pos)
            logger.warning(
                "%s lists %d region ID(s) more than once (it was trained before genomelab refused "
                "repeated region IDs in training inputs): each copy gets the input's value for that "
                "region; retrain it from inputs without repeats",
                path,
                repeated,
            )
        self.n_positions = int(exported.extra["n_positions"])
        # The temperature fitted on validation when the ensemble was made (1 = none, as for a
        # single member, whose training metrics are uncalibrated too).
        self.temperature = float(exported.extra.get("temperature", 1.0))
        # Since round 25 (tissue.calibration.by_profile) one temperature per sample, from its
        # fraction of regions observed and reads per region; files before it hold one T.
        model = exported.extra.get("temperature_model")
        self.profile_temperature = ProfileTemperature.from_dict(model) if model else None
        # The run's "not classifiable" threshold on that calibrated confidence (0: none).
        self.threshold = float(exported.extra.get("threshold", 0.0))
        # Whether the file carries its run's calibration (an ensemble's model.pt does; one
        # member's file does not: its probabilities are raw and it knows no threshold).
        self.calibrated = "temperature" in exported.extra
        if not self.calibrated:
            logger.warning(
                "%s is one network without its run's calibration: its probabilities are not "
                "temperature-scaled and it records no tissue.calibration.threshold, so every sample "
                "not flagged is classifiable unless a threshold is given; the ensemble's model.pt "
                "(train/<model>/model.pt) carries both",
                path,
            )
        self.members = self._members(kind, exported)
        # Attention or masked members on the CPU: the per-query path with load-time constants
        # (the members' own forward, rearranged; genomelab.tissue.inference). None: the forward.
        members = list(self.members.values())
        self.fast: AttentionEnsemble | MaskedEnsemble | None = (
            (AttentionEnsemble.build(members) or MaskedEnsemble.build(members))
            if self.device.type == "cpu"
            else None
        )

    @classmethod
    def load(cls, path: str | os.PathLike, device: str | torch.device = "cpu") -> TissuePredictor:
        return cls(load_exported(path), path, device)

    def _members(self, kind: str, exported: ExportedModel) -> dict[str, torch.nn.Module]:
        if exported.kind.endswith(ENSEMBLE_SUFFIX):
            # An ensemble stores nn.ModuleList weights: "<member>.<parameter>".
            n = len(exported.extra.get("seeds", [])) or 1 + max(
                int(k.split(".", 1)[0]) for k in exported.weights
            )
            parts = [
                {k.split(".", 1)[1]: v for k, v in exported.weights.items() if k.split(".", 1)[0] == str(i)}
                for i in range(n)
            ]
            names = [f"member{i}" for i in range(n)]
        else:
            parts, names = [exported.weights], ["model"]
        n_regions = len(self.regions)
        members = {}
        for name, weights in zip(names, parts, strict=True):
            # mu/sd are placeholders: the model's own standardisation buffers are loaded next.
            model = build_model(
                kind,
                exported_config(kind, exported.config),
                n_regions,
                len(self.classes),
                np.zeros(n_regions, np.float32),
                np.ones(n_regions, np.float32),
                self.n_positions,
            )
            model.load_state_dict(weights)
            members[name] = model.to(self.device).eval()
        return members

    def predict_arrays(
        self, means: np.ndarray, coverage: np.ndarray, batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """Probabilities float64 [S, C] per member and ``ensemble`` for inputs already in the
        model's region order (means [S, R] NaN = uncovered, coverage [S, R]). Attention
        members on the CPU: :class:`AttentionEnsemble`, one sample at a time; masked members
        on the CPU: :class:`MaskedEnsemble`, all samples at once (``batch_size`` is not used
        by either)."""
        if means.ndim != 2 or means.shape[1] != len(self.regions) or coverage.shape != means.shape:
            raise ValueError(
                f"means and coverage must be [n_samples, {len(self.regions)}], not {means.shape} and {coverage.shape}"
            )
        if self.fast is not None:
            probs = self.fast.proba(
                torch.as_tensor(means, dtype=torch.float32), torch.as_tensor(np.asarray(coverage, np.float32))
            )
            proba = dict(zip(self.members, probs.double().numpy(), strict=True))
            proba[ENSEMBLE] = apply_temperature(
                np.mean(list(proba.values()), axis=0), self.temperatures(means, coverage)
            )
            return proba
        ds = TensorDataset(
            torch.as_tensor(means, dtype=torch.float32),
            torch.as_tensor(np.asarray(coverage, dtype=np.float32)),
            torch.zeros(len(means), dtype=torch.int64),  # labels: unused by predict_proba
        )
        proba = {name: predict_proba(m, ds, self.device, batch_size) for name, m in self.members.items()}
        proba[ENSEMBLE] = apply_temperature(
            np.mean(list(proba.values()), axis=0), self.temperatures(means, coverage)
        )
        return proba

    def temperatures(self, means: np.ndarray, coverage: np.ndarray) -> float | np.ndarray:
        """The temperature of each sample [S] (a file with a profile temperature), else the one T."""
        if self.profile_temperature is None:
            return self.temperature
        return self.profile_temperature.of_inputs(np.asarray(means), np.asarray(coverage))


class AveragedPredictor(_SampleClassifier):
    """Several exported tissue models over one class list, e.g. the K folds' models of a
    cross-validated run (``tissue.evaluation.folds`` > 1): each file's calibrated
    probabilities (its ensemble's, temperature-scaled on its own fold's validation split)
    are averaged per sample, a cross-validation ensemble, and the "not classifiable"
    threshold applies to that mean. Files of other region lists (or order) are averaged
    too: with ``tissue.task.select_regions`` each fold keeps the regions of its own training
    samples. The inputs are then joined to the union of the files' regions (in the order
    first seen; ``min_region_match`` and ``min_covered`` count over it) and each file reads
    its own. Models of other classes or slots per region are refused, naming both files."""

    def __init__(self, predictors: list[TissuePredictor]) -> None:
        if len(predictors) < 2:
            raise ValueError(f"averaging needs 2 model files or more, not {len(predictors)}")
        first = predictors[0]
        refuse_repeated_files([p.path for p in predictors], "tissue model files")
        for p in predictors:
            if p.classes != first.classes:
                raise ValueError(
                    f"{p.path} and {first.path} cannot be averaged: their classes differ "
                    f"({len(p.classes)} and {len(first.classes)}; "
                    f"{first_difference(p.classes, first.classes)}); average models of one run's "
                    "folds (the same inputs, task and tissue.models entry)"
                )
            if p.n_positions != first.n_positions:
                raise ValueError(
                    f"{p.path} and {first.path} cannot be averaged: they were trained on files of "
                    f"{p.n_positions} and {first.n_positions} slots per region"
                )
        self.predictors = predictors
        self.model_files = [p.path for p in predictors]
        self.classes, self.n_positions = first.classes, first.n_positions
        names = [p.regions.astype(str).tolist() for p in predictors]
        # Each file's columns of the joined inputs (None: the first file's regions, in order).
        self.columns: list[np.ndarray | None] = [None] * len(predictors)
        if all(n == names[0] for n in names):
            self.regions, self.region_index = first.regions, first.region_index
        else:
            union = list(dict.fromkeys(r for n in names for r in n))
            at = {r: i for i, r in enumerate(union)}
            self.columns = [np.asarray([at[r] for r in n], np.int64) for n in names]
            self.regions = np.asarray(union)
            self.region_index = IdIndex(self.regions)
            logger.info(
                "the %d model files name %d regions in all (%s each): each reads its own",
                len(predictors),
                len(union),
                "/".join(str(len(n)) for n in names),
            )
        # Calibrated when every file is (one member's file is not: its probabilities are raw).
        self.calibrated = all(p.calibrated for p in predictors)

    @classmethod
    def load(cls, paths: list[str | os.PathLike], device: str | torch.device = "cpu") -> AveragedPredictor:
        return cls([TissuePredictor.load(p, device) for p in paths])

    @property
    def threshold(self) -> float:  # type: ignore[override]
        """The threshold the files record (one run's tissue.calibration.threshold); files that
        record different ones are an error unless a threshold is given."""
        recorded = {p.path: p.threshold for p in self.predictors}
        if len(set(recorded.values())) > 1:
            raise ValueError(
                f"the tissue model files to average record different thresholds ({recorded}): give "
                "one (tissue.predict.threshold, or --threshold)"
            )
        return self.predictors[0].threshold

    def predict_arrays(
        self, means: np.ndarray, coverage: np.ndarray, batch_size: int | None = None
    ) -> dict[str, np.ndarray]:
        """Probabilities float64 [S, C] of each model file (its ``ensemble``'s, keyed by the
        file's path) and their mean (``ensemble``), for inputs in the order of ``regions``
        (the files' union when they differ: each file reads its own columns)."""
        proba = {
            p.path: p.predict_arrays(
                means if cols is None else means[:, cols],
                coverage if cols is None else coverage[:, cols],
                batch_size,
            )[ENSEMBLE]
            for p, cols in zip(self.predictors, self.columns, strict=True)
        }
        proba[ENSEMBLE] = np.mean(list(proba.values()), axis=0)
        return proba


def load_predictor(
    model: str | os.PathLike | Sequence[str | os.PathLike], device: str | torch.device = "cpu"
) -> TissuePredictor | AveragedPredictor:
    """One exported model (a path, or a list of one) or, for a list of several, their
    average (:class:`AveragedPredictor`)."""
    paths = model_files(model, "tissue model")
    if len(paths) == 1:
        return TissuePredictor.load(paths[0], device)
    return AveragedPredictor.load(paths, device)


# Region IDs ingest gives a BED region without a name (chrom:start-end), and those of an NPZ
# without region_ids (region_<i>).
COORDINATE_ID = re.compile(r"^[^:\s]+:\d+-\d+$")
INDEX_ID = re.compile(r"^region_\d+$")


def naming_hint(model_regions: np.ndarray, input_regions: np.ndarray) -> str:
    """Why input regions may miss the model's when their naming differs (else ""): named by
    coordinates (a regions BED without names given to ingest) or by index (NPZ files without
    ``region_ids``), where the model's are named otherwise (e.g. array probe IDs)."""
    model = [str(x) for x in model_regions[:100]]
    given = [str(x) for x in input_regions[:100]]
    if not given:
        return ""
    for pattern, what in (
        (COORDINATE_ID, "named by coordinates, as ingest names the regions of a BED without a name column"),
        (INDEX_ID, "named by index, as for NPZ files without region_ids"),
    ):
        if all(pattern.match(x) for x in given) and not any(pattern.match(x) for x in model):
            return (
                f". The input's regions are {what}, the model's are named like {model[:3]}: name each "
                "region as the model does (the BED's 4th column, e.g. the probe ID of an array-trained "
                "model) and ingest again"
            )
    return ""


# A new sample's NPZ must have the slot count of the model's training files.
PREDICT_SLOTS_FIX = (
    "the model was trained on files of {expected} slots per region: make this file again with "
    "genomelab ingest at ingest.n_positions: {expected} (docs/ingest.md, 'What happens to a sample')"
)


def read_inputs(path: str | os.PathLike, n_positions: int = 150) -> TissueInputs:
    """Region means of new samples from a features HDF5, a stacked methylation HDF5, a sample
    sheet of NPZ files or one NPZ (``n_positions`` positions per region in NPZ files)."""
    from genomelab.io.features import read_features
    from genomelab.io.sheets import is_sample_sheet
    from genomelab.tissue.features import npz_features

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tissue inputs {path} do not exist")
    name = path.name.lower()
    if name.endswith(".npz"):
        means, valid, regions = npz_features(path, n_positions, slots_fix=PREDICT_SLOTS_FIX)
        return TissueInputs(np.asarray([path.stem]), np.asarray(regions), means[None], valid[None], str(path))
    if is_sample_sheet(path):
        return _from_sheet(path, n_positions)
    if not h5py.is_hdf5(path):
        _refuse_other_input(path)
    if _is_stacked(path):
        # Per-position calls of several samples (the training input's layout): their region
        # means, as tissue_features makes them for training.
        from genomelab.tissue.features import extract_features_from_hdf5

        with tempfile.TemporaryDirectory() as tmp:
            h5 = extract_features_from_hdf5(path, Path(tmp) / "features.h5")
            return _from_h5(read_features(h5), str(path))
    return _from_h5(read_features(path), str(path))


def _from_sheet(path: Path, n_positions: int) -> TissueInputs:
    """Region means of a sheet's NPZ files over the union of their regions (NaN and coverage
    0 where a file lacks a region): files ingested over other region sets (another panel, a
    subset BED) are each joined to the model's regions by name, as a single NPZ is."""
    from genomelab.io.sheets import read_sample_sheet
    from genomelab.tissue.features import npz_features

    records = read_sample_sheet(path, labels=False)
    columns: dict[str, int] = {}
    rows, last_ids, last_idx, n_sets = [], None, None, 0
    for rec in records:
        means, valid, ids = npz_features(rec.file, n_positions, slots_fix=PREDICT_SLOTS_FIX)
        ids = [str(x) for x in ids]
        if ids != last_ids:
            refuse_duplicates(ids, "region", str(rec.file))
            last_ids, n_sets = ids, n_sets + 1
            last_idx = np.fromiter((columns.setdefault(x, len(columns)) for x in ids), np.int64, len(ids))
        rows.append((last_idx, means, valid))
    means = np.full((len(rows), len(columns)), np.nan, np.float32)
    coverage = np.zeros((len(rows), len(columns)), np.float32)
    for i, (idx, m, v) in enumerate(rows):
        means[i, idx], coverage[i, idx] = m, v
    if n_sets > 1:
        logger.info(
            "%s: the samples' NPZ files cover different region sets (%d regions in all); each "
            "sample's absent regions are uncovered",
            path,
            len(columns),
        )
    samples = np.asarray([r.sample for r in records])
    return TissueInputs(samples, np.asarray(list(columns)), means, coverage, str(path))


def _is_stacked(path: Path) -> bool:
    """Whether the HDF5 ``path`` is a stacked methylation file (``methylation`` [files,
    regions, positions]), not a features file."""
    with h5py.File(path, "r") as h5:
        return "methylation" in h5 and "means" not in h5


def _refuse_other_input(path: Path) -> None:
    """Raise ``FormatError`` naming ``path``, which is neither NPZ, HDF5 nor a sample sheet:
    what is wrong with it when it is a table (a sheet's missing columns, or a table of another
    layout), and which inputs are accepted."""
    from genomelab.ingest.formats import ARRAY, detect_format
    from genomelab.io.errors import FormatError
    from genomelab.io.sheets import PREDICT_COLUMNS
    from genomelab.io.streams import open_binary

    try:
        fmt = detect_format(path)
    except ValueError:
        fmt = ""
    if fmt and fmt != ARRAY:
        raise FormatError(
            path, f"a {fmt} file (one sample's methylation calls), not a tissue input: {INGEST_FIRST}"
        )
    try:
        with open_binary(path) as fh:
            first = fh.readline(65536).decode("utf-8", errors="replace").rstrip("\r\n")
    except (OSError, EOFError) as exc:
        raise FormatError(path, f"not a readable tissue input ({exc}); {ACCEPTED_INPUTS}") from exc
    sep = "\t" if first.count("\t") >= first.count(",") else ","
    header = [c.strip() for c in first.split(sep)]
    if "sample" in header or "file" in header:
        if sep == "," and {"sample", "file"} <= set(header):
            raise FormatError(
                path, f"a sample sheet must be tab-separated, this one uses commas; {ACCEPTED_INPUTS}"
            )
        missing = [c for c in PREDICT_COLUMNS if c not in header]
        if "path" in header and "file" not in header:
            raise FormatError(
                path,
                f"an ingest sample sheet (column path: raw methylation files), not a tissue input: {INGEST_FIRST}",
            )
        raise FormatError(
            path,
            f"a sample sheet needs the columns {list(PREDICT_COLUMNS)}; this one lacks {missing} "
            f"(has {header[:10]}); {ACCEPTED_INPUTS}",
        )
    if len(header) > 1:
        raise FormatError(
            path,
            f"a table with columns {header[:5]}{'...' if len(header) > 5 else ''} is not an accepted "
            f"tissue input (a regions x samples table is a deconv input; array betas, probes x samples, "
            f"an ingest input of format array); {ACCEPTED_INPUTS}",
        )
    raise FormatError(path, f"neither an NPZ, an HDF5 file nor a sample sheet; {ACCEPTED_INPUTS}")


def _from_h5(feats: dict[str, np.ndarray], source: str) -> TissueInputs:
    return TissueInputs(feats["samples"], feats["regions"], feats["means"], feats["coverage"], source)


def write_predictions(
    pred: TissuePrediction, out_tsv: str | os.PathLike, out_json: str | os.PathLike
) -> None:
    """A TSV with one row per sample and model (member, ``ensemble``): the call, confidence,
    coverage, flag, ``classifiable`` (the ensemble's rows; empty for members, whose
    probabilities are not calibrated) and one probability column per class; a JSON with the
    region join counts, the threshold and the per-sample records."""
    rows = []
    for name, p in pred.proba.items():
        for i, sample in enumerate(pred.samples):
            row = {
                "sample": sample,
                "model": name,
                "call": pred.classes[int(p[i].argmax())],
                "confidence": float(p[i].max()),
                "n_regions_covered": int(pred.n_covered[i]),
                "flagged": bool(pred.flagged[i]),
                "classifiable": bool(pred.classifiable[i]) if name == ENSEMBLE else None,
            }
            row.update({f"p_{c}": float(v) for c, v in zip(pred.classes, p[i], strict=True)})
            rows.append(row)
    with atomic_output(out_tsv) as tmp:
        pd.DataFrame(rows).to_csv(tmp, sep="\t", index=False, float_format="%.6g")
    atomic_write_json(
        out_json,
        {
            "classes": pred.classes,
            "regions": pred.match.to_dict(),
            "n_samples": len(pred.samples),
            "n_flagged": int(pred.flagged.sum()),
            "threshold": pred.threshold,
            "calibrated": pred.calibrated,
            **({} if pred.model_files is None else {"model_files": pred.model_files}),
            "n_not_classifiable": int((~pred.classifiable).sum()),
            "samples": pred.records(),
        },
    )


def predict_files(
    model: str | os.PathLike | Sequence[str | os.PathLike],
    inputs: str | os.PathLike,
    out_tsv: str | os.PathLike,
    out_json: str | os.PathLike,
    min_region_match: float,
    min_covered: float,
    device: str = "cpu",
    threshold: float | None = None,
) -> TissuePrediction:
    """:class:`TissuePredictor` on the samples of ``inputs``, written as TSV and JSON
    (``threshold`` None: the model's recorded one); ``model`` a list of several files:
    their calibrated probabilities averaged (:class:`AveragedPredictor`)."""
    predictor = load_predictor(model, device)
    if isinstance(predictor, AveragedPredictor):
        logger.info(
            "averaging the calibrated probabilities of %d model files: %s",
            len(predictor.model_files or []),
            predictor.model_files,
        )
    pred = predictor.predict(
        read_inputs(inputs, predictor.n_positions), min_region_match, min_covered, threshold
    )
    write_predictions(pred, out_tsv, out_json)
    logger.info("classified %d sample(s) from %s with %s", len(pred.samples), inputs, model)
    return pred
