"""The deconv_infer step: deconvolve user samples with the chosen network, NNLS (MethAtlas)
and the weighted NNLS with an offset (issue 19; the network's prior when it has a weighted
one) side by side."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.deconv.io import (
    join_regions,
    read_table,
    sources_from_features,
    sources_from_sheet,
    write_table,
)
from genomelab.deconv.metrics import deconv_metrics, headline
from genomelab.deconv.nnls import deconvolve_nnls, deconvolve_weighted
from genomelab.deconv.reference import load_reference
from genomelab.io.atomic import atomic_write_json
from genomelab.io.sheets import is_sample_sheet

logger = logging.getLogger(__name__)


def read_user_samples(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """User samples as ``(betas [S, R], region IDs [R], sample names [S])``.

    ``.h5``/``.hdf5``: a region-means file; ``.tsv`` with a ``file`` column: a sample sheet
    of NPZ files; any other CSV/TSV: regions x samples (MethAtlas input).
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith((".h5", ".hdf5")):
        src = sources_from_features(path)
        return src.beta.astype(np.float64), src.regions, src.samples
    if is_sample_sheet(path):
        # New samples: no tissue label needed (one would be their answer).
        src = sources_from_sheet(path, labels=False)
        return src.beta.astype(np.float64), src.regions, src.samples
    values, regions, samples = read_table(path, "samples table")
    return values.T, regions, samples


def read_truth(path: str | os.PathLike, tissues: Any, samples: Any) -> np.ndarray:
    """True proportions float64 [samples, tissues] from a tissues x samples table (first column
    the reference's tissue names, one column per deconvolved sample, in any order).

    Every sample and every reference tissue needs its value (0 where a tissue is absent); a
    sample or tissue the table lacks, or a row naming no reference tissue (a misspelt name),
    is an error naming the table, the names and the closest reference tissue."""
    import difflib

    values, t_tissues, t_samples = read_table(path, "truth table", "proportions")
    t_tissues, t_samples = [str(t) for t in t_tissues], [str(s) for s in t_samples]
    tissues, samples = [str(t) for t in tissues], [str(s) for s in samples]
    problems = []
    missing = [s for s in samples if s not in t_samples]
    if missing:
        problems.append(f"no column for sample(s) {missing[:5]} (its columns: {t_samples[:5]})")
    unknown = [t for t in t_tissues if t not in tissues]
    if unknown:
        hints = [
            f"{t!r}"
            + (
                f" (did you mean {close[0]!r}?)"
                if (close := difflib.get_close_matches(t, tissues, 1))
                else ""
            )
            for t in unknown[:5]
        ]
        problems.append(f"row(s) {', '.join(hints)} name no tissue of the reference")
    absent = [t for t in tissues if t not in t_tissues]
    if absent:
        problems.append(f"no row for reference tissue(s) {absent[:5]} (write 0 where a tissue is absent)")
    if problems:
        raise ValueError(f"truth table {path}: " + "; ".join(problems))
    order = [t_samples.index(s) for s in samples]
    rows = [t_tissues.index(t) for t in tissues]
    return values[np.ix_(rows, order)].T


def check_observed(aligned: np.ndarray, names: Any, n_tissues: int, source: str) -> None:
    """Refuse samples (rows of ``aligned`` [S, R], joined to the reference) that NNLS cannot
    deconvolve: no value on any reference region, or values on fewer regions than there are
    tissues (the proportions are then not determined, and the solver would blame the
    reference). The error names ``source`` and the samples."""
    n_valid = np.isfinite(aligned).sum(1)
    problems = []
    for bad, why in (
        (n_valid == 0, "have no value on any reference region"),
        (
            (n_valid > 0) & (n_valid < n_tissues),
            f"have values on fewer reference regions than the reference's {n_tissues} tissues, "
            "so their proportions are not determined",
        ),
    ):
        if bad.any():
            shown = [f"{n} ({k} regions)" for n, k, b in zip(names, n_valid, bad, strict=True) if b]
            problems.append(f"{int(bad.sum())} sample(s) {why}: {shown[:5]}")
    if problems:
        # Every kind at once, so one correction of the input is enough.
        raise ValueError(f"{source}: " + "; ".join(problems))


def infer(
    model_path: str | os.PathLike,
    reference: str | os.PathLike,
    samples: str | os.PathLike,
    out_dir_files: dict[str, str],
    call: float,
    min_match: float,
    unknown_component: bool,
    other_threshold: float,
    truth: str | os.PathLike | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """Deconvolve user samples with the chosen network, NNLS and the weighted NNLS with an
    offset side by side; the network runs on ``device`` (``auto``: CUDA when present).

    ``out_dir_files``: ``nnls``, ``weighted`` and ``model`` (proportions tables, tissues x
    samples; NNLS with an ``unknown`` row when ``unknown_component``), ``residuals`` (per
    sample), ``join`` (JSON summary) and ``stacked`` (PNG). The weighted NNLS uses the
    network's prior weight floor (``model.weighted_floor``) and no unknown component."""
    import torch

    from genomelab.deconv import plots as P
    from genomelab.deconv.model import check_prior_reference, load_model, weighted_record
    from genomelab.train.device import resolve_device
    from genomelab.train.export import ExportError, check_ids

    on = resolve_device(device)  # a device this machine lacks is refused before anything is read
    ref = load_reference(reference)
    # A model made for another reference is refused, naming both ID lists and the reference.
    model, exported = load_model(model_path)
    for name, ids in (("regions", ref.regions), ("tissues", ref.tissues)):
        try:
            check_ids(model_path, name, exported.ids.get(name), [str(x) for x in ids])
        except ExportError as exc:
            raise ExportError(
                f"{exc}. The data is the reference {reference}: a model is used with its own run's "
                "reference (results/<run>/deconv/reference/reference.tsv)"
            ) from exc
    check_prior_reference(model, ref.profiles, str(reference))
    betas, regions, names = read_user_samples(samples)
    aligned, report = join_regions(ref.regions, regions, betas, names, min_match, str(samples))
    check_observed(aligned, names, len(ref.tissues), str(samples))
    # The truth table is checked before anything is computed or written: a misspelt tissue
    # or sample must not leave the proportions tables written without their scores.
    true = read_truth(truth, ref.tissues, names) if truth else None
    nn = deconvolve_nnls(ref.profiles, aligned, unknown_component)
    weighted = weighted_record(model, ref.profiles)
    wn = deconvolve_weighted(ref.profiles, aligned, weighted["weight_floor"])
    logger.info("the network deconvolves %d sample(s) on %s", len(names), on)
    with torch.no_grad():
        x = torch.tensor(aligned, dtype=torch.float32, device=on)
        net = model.to(on).predict(x).float().cpu().numpy().astype(np.float64)
    # Residual of each method: RMS of (reference @ proportions - sample) over valid regions.
    valid = np.isfinite(aligned)

    def rms(p: np.ndarray) -> np.ndarray:
        d = np.where(valid, p @ ref.profiles.T - np.where(valid, aligned, 0), 0)
        return np.sqrt((d**2).sum(1) / valid.sum(1))

    tissues = list(ref.tissues)
    nn_rows = (
        np.concatenate([nn.proportions, nn.unknown[:, None]], 1) if unknown_component else nn.proportions
    )
    nn_names = tissues + (["unknown"] if unknown_component else [])
    write_table(out_dir_files["nnls"], nn_rows.T, nn_names, names, index_name="tissue")
    write_table(out_dir_files["weighted"], wn.proportions.T, tissues, names, index_name="tissue")
    write_table(out_dir_files["model"], net.T, tissues, names, index_name="tissue")
    # weighted_nnls_residual: RMS of its own fit (offset and unscaled proportions), like
    # nnls_raw_residual; the *_residual of proportions summing to 1 compare the methods.
    res = np.stack(
        [nn.residual, rms(nn.proportions), wn.residual, rms(wn.proportions), rms(net), valid.sum(1)], 1
    )
    write_table(
        out_dir_files["residuals"],
        res,
        names,
        [
            "nnls_raw_residual",
            "nnls_residual",
            "weighted_nnls_raw_residual",
            "weighted_nnls_residual",
            "model_residual",
            "n_regions_used",
        ],
        index_name="sample",
    )
    summary: dict[str, Any] = {
        "samples": [str(n) for n in names],
        "model": str(model_path),
        "variant": exported.extra.get("variant"),
        "join": report.to_dict(),
        "weighted_nnls": weighted,
    }
    if true is not None:
        summary["vs_truth"] = {
            "nnls": headline(deconv_metrics(true, nn.proportions, tissues, call)),
            "weighted_nnls": headline(deconv_metrics(true, wn.proportions, tissues, call)),
            "model": headline(deconv_metrics(true, net, tissues, call)),
        }
    atomic_write_json(out_dir_files["join"], summary)
    P.stacked_bar_plot(
        {
            "NNLS": nn.proportions,
            "weighted NNLS + offset": wn.proportions,
            f"network ({exported.extra.get('variant')})": net,
        },
        list(names),
        tissues,
        out_dir_files["stacked"],
        other_threshold,
    )
    return summary
