"""The beta-VAE over k-mer profiles (plus optional abundances).

Inputs are the 2,761 profile columns (``kmers.GROUP_SLICES``) followed by ``n_depth``
abundance columns. The decoder predicts each k-mer group as a softmax (frequencies that sum
to 1 like the input), GC as a logit and abundances directly. Loss per group:

* 6-mers, 5-mers: binary cross-entropy per column, predictions clipped to [eps, 1 - eps];
* 4-mers, 3-mers: MSE between ``log(p + c)`` and ``log(x + c)`` (c = ``log_pseudocount``);
* GC: MSE between the predicted logit and ``logit(gc)``; abundances: MSE;
* ``recon = (bce6 + bce5) * D * s / 2 + (mse4 + mse3 + mse_gc) * D * s / 3`` with D = 2,761
  and s = ``recon_scale`` (plus ``depth_weight * mse_depth * D * s / 3`` with abundances);
* ``loss = recon + beta_t * KL`` where ``beta_t`` rises linearly from 0 to ``beta`` over
  ``kl_warmup_steps`` training batches. Evaluation always uses the full ``beta`` so that
  validation losses of different epochs are comparable (early stopping stays meaningful).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from genomelab.binning.kmers import GROUP_SLICES, N_FEATURES
from genomelab.config import ConfigSection, from_schema
from genomelab.train.engine import LossOutput

TERMS = ("bce6", "bce5", "mse4", "mse3", "mse_gc", "kl", "recon")
# binning.model keys that are not the VAE's: the model choice and the contrastive encoder's section.
NOT_VAE_KEYS = ("kind", "contrastive")


def vae_options(model_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The VAE's keys of a ``binning.model`` section (all but :data:`NOT_VAE_KEYS`)."""
    return {k: v for k, v in model_cfg.items() if k not in NOT_VAE_KEYS}


@dataclass
class VAEConfig(ConfigSection):
    SECTION = "binning.model"

    n_depth: int = 0
    hidden: tuple[int, ...] = from_schema("binning.model.hidden")
    latent: int = from_schema("binning.model.latent")
    dropout: float = from_schema("binning.model.dropout")
    beta: float = from_schema("binning.model.beta")
    kl_warmup_steps: int = from_schema("binning.model.kl_warmup_steps")
    eps: float = from_schema("binning.model.eps")
    log_pseudocount: float = from_schema("binning.model.log_pseudocount")
    recon_scale: float = from_schema("binning.model.recon_scale")
    depth_weight: float = from_schema("binning.model.depth_weight")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], *, where: str | None = None, **extra: Any) -> VAEConfig:
        """The VAE's view of ``binning.model``: ``kind`` and ``contrastive`` are skipped."""
        return super().from_dict(vae_options(values), where=where, **extra)

    def __post_init__(self) -> None:
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(
                f"model.hidden must be a non-empty list of positive sizes, not {list(self.hidden)}"
            )
        checks = {
            "latent": self.latent >= 1,
            "n_depth": self.n_depth >= 0,
            "dropout": 0.0 <= self.dropout < 1.0,
            "beta": self.beta >= 0,
            "kl_warmup_steps": self.kl_warmup_steps >= 0,
            "eps": 0 < self.eps < 0.5,
            "log_pseudocount": self.log_pseudocount > 0,
            "recon_scale": self.recon_scale > 0,
            "depth_weight": self.depth_weight >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid model option(s) {bad}: " + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            )

    @property
    def n_inputs(self) -> int:
        return N_FEATURES + self.n_depth


def _mlp(sizes: list[int], dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b), nn.LeakyReLU(), nn.Dropout(dropout)]
    return nn.Sequential(*layers)


class KmerVAE(nn.Module):
    """Encoder ``D -> hidden... -> (mu, logvar)[latent]``; decoder mirrors it."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        d = config.n_inputs
        self.encoder = _mlp([d, *config.hidden], config.dropout)
        self.mu = nn.Linear(config.hidden[-1], config.latent)
        self.logvar = nn.Linear(config.hidden[-1], config.latent)
        self.decoder = _mlp([config.latent, *reversed(config.hidden)], config.dropout)
        self.out = nn.Linear(config.hidden[0], d)
        # Start near "every contig looks average": small output weights give near-uniform
        # softmax groups and GC 0.5, so the initial loss sits at the mean-profile level
        # instead of far above it (the diagnostics check this).
        with torch.no_grad():
            self.out.weight.mul_(0.01)
            self.out.bias.zero_()
        # Training batches seen, for the KL warm-up; a buffer so checkpoints resume it.
        self.register_buffer("kl_step", torch.zeros((), dtype=torch.long))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[b, D] -> (mu [b, latent], logvar [b, latent])."""
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(-20.0, 10.0)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[b, D] -> (raw decoder output [b, D], mu, logvar); sampling only in training."""
        mu, logvar = self.encode(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar) if self.training else mu
        return self.out(self.decoder(z)), mu, logvar

    def current_beta(self) -> float:
        cfg = self.config
        if not self.training or cfg.kl_warmup_steps == 0:
            return cfg.beta
        return cfg.beta * min(1.0, float(self.kl_step) / cfg.kl_warmup_steps)

    def loss_terms(
        self, x: torch.Tensor, raw: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Per-group mean losses for inputs ``x`` [b, D] and decoder output ``raw`` [b, D]."""
        cfg = self.config
        raw, x = raw.float(), x.float()
        terms: dict[str, torch.Tensor] = {}
        for k in (6, 5):
            sl = GROUP_SLICES[f"k{k}"]
            p = torch.softmax(raw[:, sl], dim=1).clamp(cfg.eps, 1 - cfg.eps)
            t = x[:, sl]
            terms[f"bce{k}"] = -(t * torch.log(p) + (1 - t) * torch.log1p(-p)).mean()
        c = cfg.log_pseudocount
        for k in (4, 3):
            sl = GROUP_SLICES[f"k{k}"]
            p = torch.softmax(raw[:, sl], dim=1)
            terms[f"mse{k}"] = F.mse_loss(torch.log(p + c), torch.log(x[:, sl] + c))
        gc = GROUP_SLICES["gc"]
        target = torch.logit(x[:, gc].clamp(cfg.eps, 1 - cfg.eps))
        terms["mse_gc"] = F.mse_loss(raw[:, gc], target)
        terms["kl"] = (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()
        scale = N_FEATURES * cfg.recon_scale
        recon = (terms["bce6"] + terms["bce5"]) * scale / 2
        recon = recon + (terms["mse4"] + terms["mse3"] + terms["mse_gc"]) * scale / 3
        if cfg.n_depth:
            terms["mse_depth"] = F.mse_loss(raw[:, N_FEATURES:], x[:, N_FEATURES:])
            recon = recon + cfg.depth_weight * terms["mse_depth"] * scale / 3
        terms["recon"] = recon
        return terms

    def loss(self, batch: Any) -> LossOutput:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        raw, mu, logvar = self(x)
        terms = self.loss_terms(x, raw, mu, logvar)
        beta = self.current_beta()
        if self.training:
            self.kl_step += 1
        total = terms["recon"] + beta * terms["kl"]
        terms["beta"] = torch.tensor(beta)
        return LossOutput(total, terms, n=x.shape[0])

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """[n, D] -> [n, latent] latent means, in batches (eval mode, no sampling)."""
        was_training = self.training
        self.eval()
        out = [self.encode(x[i : i + batch_size])[0].float() for i in range(0, len(x), batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.config.latent)
