"""The NNLS baseline (MethAtlas) on one phase's test mixtures: proportions and metrics."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from genomelab.deconv.io import save_predictions
from genomelab.deconv.metrics import deconv_metrics
from genomelab.deconv.mixtures import read_mixtures
from genomelab.deconv.nnls import deconvolve_nnls
from genomelab.deconv.reference import load_reference
from genomelab.io.metrics import Metrics, write_metrics


def evaluate_nnls(
    mixtures: str | os.PathLike,
    reference: str | os.PathLike,
    call: float,
    unknown_component: bool,
    split: str = "test",
) -> tuple[np.ndarray, dict[str, Any]]:
    ref = load_reference(reference)
    ms = read_mixtures(mixtures, split)
    if list(ms.tissues) != list(ref.tissues):
        raise ValueError(
            f"{mixtures}: tissues {list(ms.tissues)} differ from the reference's {list(ref.tissues)}"
        )
    res = deconvolve_nnls(ref.profiles, ms.beta.astype(np.float64), unknown_component)
    metrics = deconv_metrics(ms.proportions, res.proportions, ref.tissues, call)
    metrics["mean_residual"] = float(res.residual.mean())
    return res.proportions, metrics


def run_nnls(
    mixtures: str | os.PathLike,
    reference: str | os.PathLike,
    phase: str,
    call: float,
    unknown_component: bool,
    out_predictions: str | os.PathLike,
    out_metrics: str | os.PathLike,
) -> dict[str, Any]:
    """:func:`evaluate_nnls` on the test split, written as predictions NPZ and metrics JSON."""
    props, metrics = evaluate_nnls(mixtures, reference, call, unknown_component)
    ref = load_reference(reference)
    save_predictions(out_predictions, props, ref.tissues)
    record = Metrics({"method": "nnls", "phase": phase, "test": metrics}, out_metrics)
    write_metrics(out_metrics, record)
    return metrics
