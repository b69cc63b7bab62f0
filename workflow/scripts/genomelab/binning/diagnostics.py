"""Torch diagnostics of the binning VAE: its untrained loss and whether it can memorise.

Both compare the reconstruction loss with two references computed from the same contigs:
the mean profile (what an untrained model predicts) and the contigs' own profiles (a perfect
reconstruction; above 0 because the k-mer cross-entropy of a profile is its entropy).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from genomelab.binning.bins import n50
from genomelab.binning.kmers import GROUP_SLICES, N_FEATURES, read_profiles_h5
from genomelab.binning.model import KmerVAE, VAEConfig
from genomelab.diagnostics import FAIL, PASS, WARN, DiagnosticResult, write_results
from genomelab.diagnostics.checks import initial_loss_vs_chance
from genomelab.io.fasta import read_fasta
from genomelab.io.tables import check_names, read_abundance_table, read_truth


def decoder_output_of(profiles: torch.Tensor, cfg: VAEConfig) -> torch.Tensor:
    """The raw decoder output [b, D] whose decoded profile is ``profiles`` [b, D].

    Softmax groups take log-frequencies, GC its logit, depth columns themselves.
    """
    raw = torch.log(profiles.clamp_min(1e-9))
    gc = GROUP_SLICES["gc"]
    raw[:, gc] = torch.logit(profiles[:, gc].clamp(cfg.eps, 1 - cfg.eps))
    raw[:, N_FEATURES:] = profiles[:, N_FEATURES:]
    return raw


@torch.no_grad()
def recon_loss_of(model: KmerVAE, x: torch.Tensor, profiles: torch.Tensor) -> float:
    """Reconstruction loss of inputs ``x`` [b, D] when the decoder outputs ``profiles`` [b, D]."""
    zeros = torch.zeros(len(x), model.config.latent)
    raw = decoder_output_of(profiles, model.config)
    return float(model.loss_terms(x, raw, zeros, zeros)["recon"])


def overfit_check(
    x: np.ndarray,
    model_cfg: dict[str, Any],
    seed: int,
    n_contigs: int = 8,
    steps: int = 200,
    lr: float = 1e-3,
    min_memorised: float = 0.5,
) -> DiagnosticResult:
    """A fresh VAE (no dropout) must memorise ``n_contigs`` contigs of ``x`` [n, D].

    Passes when its reconstruction loss closes at least ``min_memorised`` of the gap between
    the mean profile and a perfect reconstruction.
    """
    from genomelab.train.overfit import overfit_check as check

    rows = np.sort(np.random.default_rng(seed).choice(len(x), min(n_contigs, len(x)), replace=False))
    xt = torch.from_numpy(np.ascontiguousarray(x[rows]))
    cfg = VAEConfig.from_dict({**model_cfg, "dropout": 0.0}, n_depth=xt.shape[1] - N_FEATURES)
    torch.manual_seed(seed)
    model = KmerVAE(cfg)
    mean_loss = recon_loss_of(model, xt, xt.mean(dim=0, keepdim=True).expand_as(xt).clone())
    perfect = recon_loss_of(model, xt, xt.clone())

    def report(model: torch.nn.Module, batch: tuple[torch.Tensor]) -> dict[str, float]:
        recon = float(model.loss(batch).terms["recon"])
        return {"loss": recon, "mean_profile_loss": mean_loss, "perfect_loss": perfect}

    return check(
        model,
        (xt,),
        len(rows),
        steps=steps,
        lr=lr,
        report=report,
        max_final_loss=perfect + (1 - min_memorised) * (mean_loss - perfect),
        name=f"overfit {len(rows)} contigs",
    )


def contig_length_check(lengths: np.ndarray, min_median: int = 2500) -> DiagnosticResult:
    """Median and N50 of the profiled contig ``lengths`` [n]; warns below ``min_median`` bp.

    ``n50`` is the assembly N50 (the length L such that contigs of at least L bp hold half
    of the bases), not the median.
    """
    median = float(np.median(lengths))
    return DiagnosticResult(
        "contig_lengths",
        PASS if median >= min_median else WARN,
        f"median contig length {median:.0f} bp, N50 {n50(lengths)} bp"
        + ("" if median >= min_median else ": k-mer profiles of short contigs are noisy"),
        blocking=False,
        details={"median": median, "n50": n50(lengths)},
    )


def profile_checks(
    features_h5: str | os.PathLike,
    min_contigs: int,
    truth: str | None,
    depth: str | None,
    model_cfg: dict[str, Any],
    seed: int,
    contigs: str | os.PathLike | None = None,
) -> list[DiagnosticResult]:
    """Cheap checks before training: profile sanity, contig counts, names, and the initial
    loss and overfit checks of the model ``model_cfg['kind']`` trains: the contrastive
    encoder (on views cut from ``contigs``), the VAE (kind ``vae`` or unset), none for
    ``tnf``, which trains nothing."""
    prof = read_profiles_h5(features_h5)
    x = prof.features
    results = []
    sums = {g: x[:, s].sum(axis=1) for g, s in GROUP_SLICES.items() if g != "gc"}
    worst = max(float(np.abs(v - 1).max()) for v in sums.values())
    gc = x[:, GROUP_SLICES["gc"]]
    finite = bool(np.isfinite(x).all())
    if not finite or worst > 1e-3 or (gc < 0).any() or (gc > 1).any():
        results.append(
            DiagnosticResult(
                "profile_sanity",
                FAIL,
                f"k-mer profiles are malformed (finite: {finite}, "
                f"worst group sum off by {worst:.2g}, GC range {gc.min():.3g}..{gc.max():.3g})",
            )
        )
    else:
        results.append(
            DiagnosticResult(
                "profile_sanity",
                PASS,
                f"{len(x)} profiles finite, each k group sums to 1 "
                f"(max error {worst:.1e}), GC in {gc.min():.3f}..{gc.max():.3f}",
            )
        )
    n = len(x)
    status = PASS if n >= min_contigs else FAIL
    results.append(
        DiagnosticResult(
            "n_contigs",
            status,
            f"{n} contigs pass the length filter (need >= {min_contigs} to train and cluster)",
            details={"n": n},
        )
    )
    results.append(contig_length_check(prof.lengths))
    records: set[str] | None = None  # every FASTA record's name, read once when needed
    for label, path, reader in (
        ("truth", truth, lambda p: read_truth(p).index),
        ("depth", depth, lambda p: read_abundance_table(p)[0]),
    ):
        if not path:
            continue
        try:
            names = reader(path)
            check_names(prof.names, names, "the k-mer profiles", f"{label} table {path}")
        except (ValueError, FileNotFoundError) as exc:
            results.append(DiagnosticResult(f"names_{label}", FAIL, str(exc)))
            continue
        extra = sorted(set(names) - set(prof.names))
        if extra and contigs and records is None:
            records = {name for name, _ in read_fasta(contigs)}
        absent = [c for c in extra if c not in records] if extra and records is not None else []
        if absent:
            # Not the FASTA's short contigs (those are expected): names of no record at all,
            # e.g. a table of another assembly or of renamed contigs. Ignored, but said.
            results.append(
                DiagnosticResult(
                    f"names_{label}",
                    WARN,
                    f"all {n} contigs are in {path}, but {len(absent)} of its contigs are no record of "
                    f"{contigs} (first: {absent[:5]}): another assembly's or renamed contigs? ignored",
                    details={"n_absent": len(absent), "absent": absent[:5]},
                )
            )
        else:
            results.append(DiagnosticResult(f"names_{label}", PASS, f"all {n} contigs are in {path}"))
    if model_cfg.get("kind") == "tnf":
        return results  # no model is trained: its loss checks have nothing to check
    if model_cfg.get("kind") == "contrastive":
        # The model that will train is the encoder, so check it, not the VAE.
        if not contigs:
            raise ValueError("the contrastive encoder's checks need the contigs FASTA (its views)")
        return results + contrastive_checks(contigs, prof.names, prof.features, model_cfg, seed)
    usable_depth = depth if not any(r.status == FAIL and r.name == "names_depth" for r in results) else None
    results.append(_initial_loss_check(prof.features, model_cfg, usable_depth, prof.names, seed))
    results.append(overfit_check(_with_depth(prof.features, prof.names, usable_depth), model_cfg, seed))
    return results


def contrastive_checks(
    contigs: str | os.PathLike,
    names: np.ndarray,
    features: np.ndarray,
    model_cfg: dict[str, Any],
    seed: int,
    n_contigs: int = 32,
    steps: int = 200,
    lr: float = 1e-3,
) -> list[DiagnosticResult]:
    """The contrastive encoder's initial NT-Xent against chance, and its memorisation of
    ``n_contigs`` contigs: views cut from their sequences in ``contigs`` as the views rule
    cuts them (``model_cfg['contrastive']`` options), view 0 their rows of ``features``
    [n, 2761] (``names`` [n]). Chance is log(2b - 1) for a batch of b contigs. An untrained
    encoder already starts below it (two views of one contig share their k-mer profile, and
    a random projection keeps that), so memorised means the final loss (eval mode: view 0
    against view 1) at most half the initial one: a frozen or detached encoder fails.
    Abundance columns are left out here: they are the same for every view of a contig."""
    from genomelab.binning.contrastive_model import ContrastiveConfig, ContrastiveEncoder
    from genomelab.binning.contrastive_views import cut_views
    from genomelab.io.fasta import read_fasta
    from genomelab.train.overfit import loss_report
    from genomelab.train.overfit import overfit_check as check

    cfg = ContrastiveConfig.from_dict({**model_cfg.get("contrastive", {}), "dropout": 0.0})
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(names), min(n_contigs, len(names)), replace=False))
    wanted = {str(names[i]): k for k, i in enumerate(rows)}
    seqs: list[bytes | None] = [None] * len(rows)
    for name, seq in read_fasta(contigs):
        if name in wanted:
            seqs[wanted[name]] = seq
    missing = [name for name, k in wanted.items() if seqs[k] is None]
    if missing:
        raise ValueError(f"{contigs} lacks {len(missing)} profiled contigs, e.g. {missing[:3]}")
    _, views = cut_views(
        seqs,  # type: ignore[arg-type]
        features[rows],
        cfg.groups,
        cfg.n_views,
        cfg.min_fraction,
        cfg.min_bp,
        rng,
    )
    batch = (torch.from_numpy(views.astype(np.float32)), torch.zeros(len(rows), 0))
    mean, sd = ContrastiveEncoder.standardiser(views[:, 0], cfg.pseudocount)
    torch.manual_seed(seed)
    model = ContrastiveEncoder(cfg, mean, sd).eval()
    chance = float(np.log(2 * len(rows) - 1))
    with torch.no_grad():
        initial = float(model.loss(batch).loss)
    return [
        initial_loss_vs_chance(initial, chance, name="initial_nt_xent_vs_chance"),
        check(
            model,
            batch,
            len(rows),
            steps=steps,
            lr=lr,
            report=loss_report,
            max_final_loss=0.5 * initial,
            name=f"overfit {len(rows)} contigs (contrastive encoder)",
        ),
    ]


def _with_depth(x: np.ndarray, names: np.ndarray, depth: str | None) -> np.ndarray:
    """The model's inputs: k-mer profiles [n, N_FEATURES], then depth columns if given."""
    if not depth:
        return x
    from genomelab.binning.depth import depth_features

    return np.concatenate([x, depth_features(names, depth)], axis=1)


def _initial_loss_check(
    x: np.ndarray,
    model_cfg: dict[str, Any],
    depth: str | None,
    names: np.ndarray,
    seed: int,
    n_sample: int = 256,
) -> DiagnosticResult:
    """The untrained VAE's reconstruction loss vs predicting every contig's mean profile."""
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(x), min(n_sample, len(x)), replace=False))
    xs = _with_depth(x, names, depth)[rows]
    cfg = VAEConfig.from_dict(model_cfg, n_depth=xs.shape[1] - N_FEATURES)
    torch.manual_seed(seed)
    model = KmerVAE(cfg).eval()
    xt = torch.from_numpy(xs)
    with torch.no_grad():
        raw, mu, logvar = model(xt)
        initial = float(model.loss_terms(xt, raw, mu, logvar)["recon"])
    chance = recon_loss_of(model, xt, xt.mean(dim=0, keepdim=True).expand_as(xt).clone())
    return initial_loss_vs_chance(initial, chance, name="initial_recon_vs_mean_profile")


def diagnose(
    features_h5: str | os.PathLike,
    min_contigs: int,
    truth: str | None,
    depth: str | None,
    model_cfg: dict[str, Any],
    seed: int,
    out: str | os.PathLike,
    contigs: str | os.PathLike | None = None,
) -> list[DiagnosticResult]:
    """:func:`profile_checks`, written to ``out``."""
    results = profile_checks(features_h5, min_contigs, truth, depth, model_cfg, seed, contigs)
    write_results(out, "binning", results)
    return results
