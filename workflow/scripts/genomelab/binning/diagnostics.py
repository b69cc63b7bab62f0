"""Torch diagnostics of the binning VAE: its untrained loss and whether it can memorise.

Both compare the reconstruction loss with two references computed from the same contigs:
the mean profile (what an untrained model predicts) and the contigs' own profiles (a perfect
reconstruction; above 0 because the k-mer cross-entropy of a profile is its entropy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genomelab.binning.kmers import GROUP_SLICES, N_FEATURES
from genomelab.binning.model import KmerVAE, VAEConfig
from genomelab.diagnostics import DiagnosticResult


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
