"""Checks before the deconvolution networks train (the gate reads their JSON).

- split leakage: no individual (source group) feeds mixtures of two splits;
- proportions: every mixture's truth is a proper composition;
- reference: its condition number and near-identical tissue pairs (NNLS cannot tell
  collinear columns apart; a network will not either);
- pure recovery: NNLS assigns held-out pure samples to their own tissue;
- mixture missingness and presence balance per phase;
- initial loss vs chance and an overfit-a-tiny-subset run of the two-stage network.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from genomelab.deconv.io import Sources, read_sources
from genomelab.deconv.mixtures import SPLITS, MixtureSet, read_mixtures
from genomelab.deconv.nnls import deconvolve_nnls
from genomelab.deconv.reference import Reference, load_reference
from genomelab.diagnostics import FAIL, PASS, WARN, DiagnosticResult, write_results
from genomelab.diagnostics.checks import group_leakage, initial_loss_vs_chance

logger = logging.getLogger(__name__)


def check_leakage(phase: str, sets: Mapping[str, MixtureSet]) -> DiagnosticResult:
    groups = {}
    for split, ms in sets.items():
        used = np.unique(ms.sources[ms.sources >= 0])
        groups[split] = ms.source_groups[used].tolist()
    res = group_leakage(groups, name=f"source_leakage[{phase}]", what="source individual")
    return res


def check_proportions(phase: str, sets: Mapping[str, MixtureSet]) -> DiagnosticResult:
    name = f"proportions[{phase}]"
    for split, ms in sets.items():
        p = ms.proportions.astype(float)
        if (p < 0).any() or not np.allclose(p.sum(1), 1, atol=1e-4) or not np.isfinite(p).all():
            return DiagnosticResult(
                name,
                FAIL,
                f"{split} mixtures have proportions that are negative or do not sum to 1",
                details={"split": split},
            )
    p = sets["train"].proportions
    present = float((p >= 0.01).mean())
    details = {"present_fraction": present, "mean_tissues_per_mixture": float((p >= 0.01).sum(1).mean())}
    if present < 0.02:
        return DiagnosticResult(
            name,
            WARN,
            f"only {present:.1%} of (mixture, tissue) entries are present: "
            "the presence head will learn to say 'absent'",
            blocking=False,
            details=details,
        )
    return DiagnosticResult(
        name,
        PASS,
        f"compositions valid; {details['mean_tissues_per_mixture']:.2f} tissues >= 1% per mixture on average",
        details=details,
    )


def check_missing(phase: str, sets: Mapping[str, MixtureSet], max_missing: float = 0.5) -> DiagnosticResult:
    frac = {s: float(np.isnan(ms.beta).mean()) for s, ms in sets.items()}
    worst = max(frac.values())
    name = f"mixture_missing[{phase}]"
    if worst > max_missing:
        return DiagnosticResult(
            name,
            FAIL,
            f"{worst:.0%} of mixture regions have no read (limit {max_missing:.0%}): "
            "raise mixtures.coverage or check the source samples' coverage",
            details=frac,
        )
    return DiagnosticResult(name, PASS, f"at most {worst:.1%} of mixture regions lack reads", details=frac)


def check_reference(
    ref: Reference, max_condition: float = 1000.0, max_corr: float = 0.98
) -> DiagnosticResult:
    cond = float(np.linalg.cond(ref.profiles))
    corr = np.corrcoef(ref.profiles.T)
    pairs = [
        (str(ref.tissues[i]), str(ref.tissues[j]), float(corr[i, j]))
        for i in range(len(ref.tissues))
        for j in range(i + 1, len(ref.tissues))
        if corr[i, j] > max_corr
    ]
    details = {"condition_number": cond, "collinear_pairs": pairs, "n_markers": int(len(ref.regions))}
    if cond > max_condition or pairs:
        text = ", ".join(f"{a}/{b} r={r:.3f}" for a, b, r in pairs[:5])
        return DiagnosticResult(
            "reference_conditioning",
            WARN,
            f"reference condition number {cond:.0f}"
            + (f"; near-identical tissues: {text}" if pairs else "")
            + ": proportions among these tissues are poorly determined",
            blocking=False,
            details=details,
        )
    return DiagnosticResult(
        "reference_conditioning",
        PASS,
        f"reference condition number {cond:.1f} over "
        f"{len(ref.regions)} markers; no tissue pair correlates above {max_corr}",
        details=details,
    )


def check_pure_recovery(
    ref: Reference, src: Sources, split: str = "val", min_rate: float = 0.5
) -> DiagnosticResult:
    """NNLS on held-out pure samples: the largest proportion should be their own tissue."""
    name = "pure_sample_recovery"
    pos = {r: i for i, r in enumerate(src.regions.tolist())}
    cols = np.asarray([pos[r] for r in ref.regions.tolist()])
    sel = (src.splits == split) & np.isin(src.tissues, ref.tissues)
    if not sel.any():
        return DiagnosticResult(name, WARN, f"no {split} pure samples to check", blocking=False)
    beta = src.beta[sel][:, cols].astype(np.float64)
    res = deconvolve_nnls(ref.profiles, beta)
    called = ref.tissues[res.proportions.argmax(1)]
    truth = src.tissues[sel]
    rate = float((called == truth).mean())
    own = float(res.proportions[np.arange(len(truth)), [list(ref.tissues).index(t) for t in truth]].mean())
    wrong = [f"{s}->{c}" for s, c, t in zip(src.samples[sel], called, truth, strict=True) if c != t][:5]
    details = {"rate": rate, "mean_own_proportion": own, "n": int(sel.sum()), "wrong": wrong}
    text = (
        f"NNLS gives {rate:.0%} of {int(sel.sum())} held-out pure samples their own tissue as the largest "
        f"component (mean own proportion {own:.2f})"
    )
    if rate < min_rate:
        return DiagnosticResult(
            name,
            FAIL,
            text + f": below {min_rate:.0%}, the reference does not describe "
            "these samples (labels, region IDs or units?)",
            details=details,
        )
    if rate < 0.9:
        return DiagnosticResult(name, WARN, text, blocking=False, details=details)
    return DiagnosticResult(name, PASS, text, details=details)


def check_network(
    ms_train: MixtureSet,
    ms_val: MixtureSet,
    reference: np.ndarray,
    model_cfg: dict,
    presence_target: float,
    seed: int,
    n_tiny: int = 16,
    steps: int = 300,
) -> list[DiagnosticResult]:
    """Initial loss of an untrained two-stage network vs chance, and overfitting 16 mixtures."""
    import torch

    from genomelab.deconv.model import DeconvNet, DeconvNetConfig
    from genomelab.train.overfit import overfit_check, terms_report

    cfg = DeconvNetConfig.from_config(
        model_cfg, len(ms_train.regions), len(ms_train.tissues), True, presence_target
    )
    torch.manual_seed(seed)
    fill = reference.mean(1)
    model = DeconvNet(cfg, fill, reference)
    x_val = torch.tensor(ms_val.beta)
    y_val = torch.tensor(ms_val.proportions)
    model.eval()
    with torch.no_grad():
        init = float(model.loss((x_val, y_val)).terms["mse_loss"])
    mean_p = ms_train.proportions.mean(0)
    chance = float(((ms_val.proportions - mean_p) ** 2).sum(1).mean())
    results = [initial_loss_vs_chance(init, chance, name="initial_mse_vs_chance")]

    # Dropout off: memorising n_tiny mixtures must reach a near-zero loss.
    torch.manual_seed(seed)
    tiny = DeconvNet(DeconvNetConfig(**{**cfg.__dict__, "dropout": 0.0}), fill, reference)
    x, y = torch.tensor(ms_train.beta[:n_tiny]), torch.tensor(ms_train.proportions[:n_tiny])
    results.append(
        overfit_check(
            tiny,
            (x, y),
            n_tiny,
            steps=steps,
            lr=3e-3,
            report=terms_report("mse_loss", "presence_accuracy"),
            max_final_loss=0.01,
            min_accuracy=0.95,
            name="overfit_16_mixtures",
        )
    )
    return results


def run_checks(
    src: Sources,
    ref: Reference,
    phases: Mapping[str, Mapping[str, MixtureSet]],
    model_cfg: dict,
    presence_target: float,
    seed: int,
) -> list[DiagnosticResult]:
    results = [check_reference(ref), check_pure_recovery(ref, src)]
    for phase, sets in phases.items():
        results += [check_leakage(phase, sets), check_proportions(phase, sets), check_missing(phase, sets)]
    last = list(phases)[-2] if len(phases) > 1 else list(phases)[0]
    sets = phases[last]
    assert set(sets) == set(SPLITS)
    results += check_network(sets["train"], sets["val"], ref.profiles, model_cfg, presence_target, seed)
    return results


def diagnose(
    sources: str | os.PathLike,
    reference: str | os.PathLike,
    mixtures: list[str],
    model_cfg: dict,
    presence_target: float,
    seed: int,
    out: str | os.PathLike,
) -> None:
    """Run every check on the sources, reference and each phase's mixtures (file stem = phase)."""
    src = read_sources(sources)
    ref = load_reference(reference)
    phases = {}
    for path in mixtures:
        phase = Path(path).stem
        phases[phase] = {s: read_mixtures(path, s) for s in ("train", "val", "test")}
    results = run_checks(src, ref, phases, model_cfg, presence_target, seed)
    write_results(out, "deconv", results)
