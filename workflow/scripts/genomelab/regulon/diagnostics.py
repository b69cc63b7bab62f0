"""Step 3, diagnostics that gate GPU training.

The history: a regression head fed 0/1 presence flags and raw TPM started at a loss above
5,000, never fell, and the same code had "worked" on dummy data. Each check below catches
one piece of that: target type vs head type, normalisation, NaN/inf, constant targets,
an initial loss far from the chance level or outside a sane range, and an untrained
model whose loss on real data is far above its loss on dummy data of the expected types.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from genomelab.config import ConfigSection, from_schema
from genomelab.diagnostics.checks import group_leakage, initial_loss_vs_chance, target_range
from genomelab.diagnostics.core import FAIL, PASS, WARN, DiagnosticResult, write_results
from genomelab.io.metrics import read_json_file
from genomelab.regulon.model import HEAD_KINDS, RegulonModelConfig, RegulonNet
from genomelab.regulon.targets import TargetData, WindowTensors
from genomelab.regulon.training import build_model
from genomelab.train.device import resolve_device

logger = logging.getLogger(__name__)


@dataclass
class DiagnosticsConfig(ConfigSection):
    """``regulon.diagnostics`` in config."""

    SECTION = "regulon.diagnostics"

    max_initial_ratio: float = from_schema("regulon.diagnostics.max_initial_ratio")
    max_initial_loss: float = from_schema("regulon.diagnostics.max_initial_loss")
    max_dummy_ratio: float = from_schema("regulon.diagnostics.max_dummy_ratio")
    min_expression_coverage: float = from_schema("regulon.diagnostics.min_expression_coverage")
    n_check_windows: int = from_schema("regulon.diagnostics.n_check_windows")

    def __post_init__(self) -> None:
        if not (self.max_initial_ratio > 1 and self.max_dummy_ratio > 1 and self.max_initial_loss > 0):
            raise ValueError("regulon.diagnostics ratios must be > 1 and max_initial_loss > 0")
        if self.n_check_windows < 1:
            raise ValueError(f"regulon.diagnostics.n_check_windows must be >= 1, not {self.n_check_windows}")


def target_checks(data: TargetData) -> list[DiagnosticResult]:
    """Each target against the kind its head can represent (shared ``target_range``).

    No expression at all is a valid input (expression often comes from elsewhere): the
    expression head is then untrained and reported, not a failure."""
    expr = data.expression
    measured = np.isfinite(expr)
    expression = (
        target_range(expr, "expression", kind=HEAD_KINDS["expression"], mask=measured)
        if measured.any()
        else DiagnosticResult(
            "target_range[expression]",
            WARN,
            "no expression measured: the expression head is not trained and its metrics are skipped",
            blocking=False,
        )
    )
    return [
        expression,
        target_range(data.density, "density", kind=HEAD_KINDS["density"]),
        target_range(data.operon, "operon", kind=HEAD_KINDS["operon"]),
    ]


def sequence_check(data: TargetData) -> DiagnosticResult:
    n_frac = float((data.sequence >= 4).mean())
    details = {"n_bp": int(data.sequence.size), "n_fraction": n_frac}
    if n_frac > 0.5:
        return DiagnosticResult("sequence", FAIL, f"{n_frac:.0%} of the region is N", details=details)
    return DiagnosticResult("sequence", PASS, f"{data.sequence.size} bp, {n_frac:.2%} N", details=details)


def coverage_check(data: TargetData, min_fraction: float) -> DiagnosticResult:
    frac = float(np.isfinite(data.expression).any(axis=0).mean())
    details = {"measured_fraction_positions": frac}
    if frac < min_fraction:
        return DiagnosticResult(
            "expression_coverage",
            WARN,
            f"only {frac:.1%} of positions have an expression "
            "measurement; the expression head learns from few positions",
            blocking=False,
            details=details,
        )
    return DiagnosticResult(
        "expression_coverage",
        PASS,
        f"{frac:.1%} of positions measured (either strand)",
        blocking=False,
        details=details,
    )


def split_checks(data: TargetData) -> list[DiagnosticResult]:
    """Blocks in one split only, and no window overlapping a window of another split."""
    w = data.windows.sort_values("start")
    groups = {s: w.loc[w["split"] == s, "block"].unique().tolist() for s in ("train", "val", "test")}
    leak = group_leakage(groups, name="block_leakage", what="genome block")
    starts, splits = w["start"].to_numpy(), w["split"].to_numpy()
    overlap = (np.diff(starts) < data.config.window_bp) & (splits[1:] != splits[:-1])
    n = int(overlap.sum())
    # Fixed-length windows: if any two windows of different splits overlap, some neighbouring
    # pair (in start order) of different splits overlaps too, so neighbours suffice.
    if n:
        i = int(np.nonzero(overlap)[0][0])
        res = DiagnosticResult(
            "window_overlap",
            FAIL,
            f"{n} windows overlap a window of another split (e.g. "
            f"{splits[i]}@{starts[i]} and {splits[i + 1]}@{starts[i + 1]})",
        )
    else:
        res = DiagnosticResult(
            "window_overlap",
            PASS,
            "no window overlaps a window of another split",
            details={"n_windows": len(w)},
        )
    return [leak, res]


def chance_losses(t: WindowTensors, density_loss: str) -> dict[str, float]:
    """Loss of the best constant prediction per head (the chance level)."""
    m = t.expression_mask
    expr = t.expression[m]
    dens = t.density.astype(np.float64)
    if density_loss == "poisson":
        rate = max(dens.mean(), 1e-6)
        d = torch.nn.functional.poisson_nll_loss(
            torch.full(dens.shape, rate), torch.from_numpy(dens), log_input=False, full=True, eps=1e-6
        )
        density = float(d)
    else:
        density = float(dens.var())
    p = float(np.clip(t.operon.mean(), 1e-6, 1 - 1e-6))
    return {
        "expression": float(expr.var()) if expr.size else float("nan"),
        "density": density,
        "operon": float(-(p * math.log(p) + (1 - p) * math.log(1 - p))),
    }


def _rows(t: WindowTensors, rows: np.ndarray) -> WindowTensors:
    """The windows ``rows`` of ``t``."""
    values = (getattr(t, f.name) for f in dataclasses.fields(t))
    return WindowTensors(*(v if v is None else v[rows] for v in values))


def _tensors(t: WindowTensors, device: torch.device) -> tuple[torch.Tensor, ...]:
    # The model's batch layout (training.tensor_dataset): annotation last, when there is one.
    arrays = (t.codes, t.expression, t.expression_mask, t.density, t.operon, t.annotation)
    return tuple(torch.from_numpy(np.ascontiguousarray(a)).to(device) for a in arrays if a is not None)


@torch.no_grad()
def _untrained_terms(model: RegulonNet, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
    model.eval()
    return {k: float(v) for k, v in model.loss_terms(batch).items()}


def dummy_tensors(n: int, window_bp: int, cfg: RegulonModelConfig, rng: np.random.Generator) -> WindowTensors:
    """Data of the types each head expects (what a model is usually developed on)."""
    r, b = window_bp // cfg.resolution_bp, window_bp // cfg.bin_bp
    mask = rng.random((n, 2, r)) < 0.5
    return WindowTensors(
        rng.integers(0, 4, (n, window_bp), dtype=np.uint8),
        np.where(mask, rng.standard_normal((n, 2, r)), 0).astype(np.float32),
        mask,
        rng.poisson(0.5, (n, 2, b)).astype(np.float32),
        (rng.random((n, 2, r)) < 0.3).astype(np.float32),
        np.zeros(n, np.int64),
        # Gene-body flags on either strand at random (bits 0-1 of the packed annotation).
        rng.integers(0, 4, (n, window_bp), dtype=np.uint8),
    )


def loss_checks(
    data: TargetData, model_cfg: RegulonModelConfig, cfg: DiagnosticsConfig, seed: int, device: torch.device
) -> list[DiagnosticResult]:
    """Initial loss per head vs chance, total in a sane range, and dummy vs real."""
    rng = np.random.default_rng(seed)
    train = data.tensors("train")
    pick = np.sort(rng.choice(len(train), min(len(train), cfg.n_check_windows), replace=False))
    real = _rows(train, pick)
    torch.manual_seed(seed)
    # Built as training builds it: heads at the priors of the whole training set.
    model = build_model(model_cfg, train).to(device)
    terms = _untrained_terms(model, _tensors(real, device))
    chance = chance_losses(real, model_cfg.density_loss)
    # A head without targets (no expression measured) has no chance level and no check.
    out = [
        initial_loss_vs_chance(
            terms[h], chance[h], name=f"initial_loss[{h}]", max_ratio=cfg.max_initial_ratio
        )
        for h in terms
        if math.isfinite(chance[h])
    ]
    w = model_cfg.loss_weights
    total = sum(w[h] * terms[h] for h in terms)
    details = {"initial_loss": total, "terms": terms, "chance": chance}
    if not math.isfinite(total) or total > cfg.max_initial_loss:
        out.append(
            DiagnosticResult(
                "initial_loss_range",
                FAIL,
                f"initial total loss {total:.4g} is above "
                f"{cfg.max_initial_loss:g} (the history's loss sat above 5,000): targets and "
                "heads live on different scales",
                details=details,
            )
        )
    else:
        out.append(
            DiagnosticResult(
                "initial_loss_range",
                PASS,
                f"initial total loss {total:.4g} (sane range: under {cfg.max_initial_loss:g})",
                details=details,
            )
        )
    dummy = dummy_tensors(len(pick), data.config.window_bp, model_cfg, rng)
    dterms = _untrained_terms(model, _tensors(dummy, device))
    dtotal = sum(w[h] * dterms[h] for h in dterms)
    ratio = total / dtotal if dtotal > 0 else math.inf
    ddetails = {
        "real_loss": total,
        "dummy_loss": dtotal,
        "ratio": ratio,
        "real_terms": terms,
        "dummy_terms": dterms,
        "real_stats": _stats(real),
        "dummy_stats": _stats(dummy),
    }
    if ratio > cfg.max_dummy_ratio:
        out.append(
            DiagnosticResult(
                "dummy_vs_real",
                FAIL,
                f"untrained loss on real data {total:.4g} is {ratio:.1f}x "
                f"that on dummy data {dtotal:.4g}: real targets are not in the range the model "
                "was built for",
                details=ddetails,
            )
        )
    else:
        out.append(
            DiagnosticResult(
                "dummy_vs_real",
                PASS,
                f"untrained loss real {total:.4g} vs dummy {dtotal:.4g} (ratio {ratio:.2f})",
                details=ddetails,
            )
        )
    return out


def overfit_check(
    data: TargetData,
    model_cfg: RegulonModelConfig,
    seed: int,
    device: torch.device,
    n_windows: int = 8,
    steps: int = 100,
    lr: float = 3e-3,
    max_loss_ratio: float = 0.5,
) -> DiagnosticResult:
    """A fresh network must memorise ``n_windows`` training windows: its total loss must fall
    below ``max_loss_ratio`` times its start (not towards 0: a Poisson density loss has a floor).

    Dropout and reverse-complement augmentation are off, so the same windows are seen at every step.
    """
    from genomelab.train import overfit

    train = data.tensors("train")
    pick = np.sort(np.random.default_rng(seed).choice(len(train), min(len(train), n_windows), replace=False))
    batch = _tensors(_rows(train, pick), device)
    torch.manual_seed(seed)
    model = build_model(dataclasses.replace(model_cfg, dropout=0.0, rc_augment=False), train).to(device)
    with torch.no_grad():
        initial = overfit.loss_report(model.eval(), batch)["loss"]

    def report(model: nn.Module, batch: tuple[torch.Tensor, ...]) -> dict[str, float]:
        return {**overfit.loss_report(model, batch), "initial_loss": initial}

    return overfit.overfit_check(
        model,
        batch,
        len(pick),
        steps=steps,
        lr=lr,
        report=report,
        max_final_loss=max_loss_ratio * initial,
        name=f"overfit {len(pick)} windows",
    )


def _stats(t: WindowTensors) -> dict[str, dict[str, float]]:
    e = t.expression[t.expression_mask]
    return {
        name: {"mean": float(a.mean()), "std": float(a.std()), "min": float(a.min()), "max": float(a.max())}
        for name, a in (("expression", e), ("density", t.density), ("operon", t.operon))
        if a.size
    }


def report_warnings(report: dict[str, Any]) -> list[DiagnosticResult]:
    """The data report's unit/range warnings, shown next to the checks (not blocking)."""
    return [
        DiagnosticResult(f"data_report[{i}]", WARN, w, blocking=False)
        for i, w in enumerate(report.get("warnings", []))
    ]


def run_diagnostics(
    data: TargetData,
    model_cfg: RegulonModelConfig,
    cfg: DiagnosticsConfig,
    report: dict[str, Any],
    seed: int,
    device: torch.device,
) -> list[DiagnosticResult]:
    results = [
        sequence_check(data),
        *target_checks(data),
        coverage_check(data, cfg.min_expression_coverage),
        *split_checks(data),
        *report_warnings(report),
    ]
    # A loss check on targets that already failed would only repeat the failure in other words.
    if all(r.status != FAIL for r in results):
        results += loss_checks(data, model_cfg, cfg, seed, device)
        results.append(overfit_check(data, model_cfg, seed, device))
    return results


def diagnose(
    targets_path: str | os.PathLike,
    report_path: str | os.PathLike,
    model_cfg: RegulonModelConfig,
    diag_cfg: DiagnosticsConfig,
    out: str | os.PathLike,
    seed: int = 0,
    device: str = "cpu",
) -> list:
    data = TargetData(targets_path)
    results = run_diagnostics(
        data, model_cfg, diag_cfg, read_json_file(report_path), seed, resolve_device(device)
    )
    write_results(out, "regulon", results)
    return results
