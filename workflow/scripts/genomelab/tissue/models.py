"""Tissue classifiers: whole-sample (file-level) models and the region-level ablation.

Every model keeps the training split's per-region centre ``mu`` and scale ``sd`` as buffers,
so a saved model standardises its own input (NaN = uncovered region -> the centre).

Batches (tuples from a ``TensorDataset``):

- file-level: ``(means float32 [B, R] with NaN, coverage float32 [B, R], y int64 [B])``
- region-level: ``(region int64 [B], means float32 [B] with NaN, coverage float32 [B], y int64 [B])``
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genomelab.train.engine import LossOutput

FILE_LEVEL = ("mlp", "attention")
REGION_LEVEL = ("region",)
MODEL_KINDS = FILE_LEVEL + REGION_LEVEL
MODEL_TITLES = {
    "mlp": "file-level MLP",
    "attention": "region-attention model",
    "region": "region-level (ablation)",
}


def _from_dict(cls: type, values: dict[str, Any], section: str) -> Any:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} in tissue.{section}; known: {sorted(known)}")
    return cls(**values)


def _check_common(section: str, dropout: float, label_smoothing: float) -> None:
    if not 0 <= dropout < 1:
        raise ValueError(f"tissue.{section}.dropout must be in [0, 1), not {dropout}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"tissue.{section}.label_smoothing must be in [0, 1), not {label_smoothing}")


@dataclass
class MLPConfig:
    """File-level MLP: input projection to ``hidden[0]``, then BatchNorm/ReLU/Dropout/Linear blocks."""

    hidden: list[int] = field(default_factory=lambda: [256, 128])
    dropout: float = 0.5
    label_smoothing: float = 0.1

    def __post_init__(self) -> None:
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"tissue.mlp.hidden must list sizes >= 1, not {self.hidden}")
        _check_common("mlp", self.dropout, self.label_smoothing)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MLPConfig:
        return _from_dict(cls, values, "mlp")


@dataclass
class AttentionConfig:
    """Attention across regions: region tokens, gated attention pooling with ``heads`` heads.

    ``region_dropout`` hides that fraction of regions from each training sample (an
    augmentation that stops the model from relying on a handful of regions).
    """

    dim: int = 32
    heads: int = 4
    hidden: int = 64
    dropout: float = 0.2
    label_smoothing: float = 0.1
    region_dropout: float = 0.1

    def __post_init__(self) -> None:
        for name in ("dim", "heads", "hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"tissue.attention.{name} must be >= 1, not {getattr(self, name)}")
        _check_common("attention", self.dropout, self.label_smoothing)
        if not 0 <= self.region_dropout < 1:
            raise ValueError(f"tissue.attention.region_dropout must be in [0, 1), not {self.region_dropout}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AttentionConfig:
        return _from_dict(cls, values, "attention")


@dataclass
class RegionConfig:
    """Region-level ablation: one region (identity + value) per example, labelled with its file's class.

    ``regions_per_sample`` covered regions are drawn from each sample to make examples.
    """

    dim: int = 32
    hidden: int = 64
    dropout: float = 0.1
    label_smoothing: float = 0.0
    regions_per_sample: int = 256

    def __post_init__(self) -> None:
        for name in ("dim", "hidden", "regions_per_sample"):
            if getattr(self, name) < 1:
                raise ValueError(f"tissue.region.{name} must be >= 1, not {getattr(self, name)}")
        _check_common("region", self.dropout, self.label_smoothing)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RegionConfig:
        return _from_dict(cls, values, "region")


CONFIGS = {"mlp": MLPConfig, "attention": AttentionConfig, "region": RegionConfig}


class _Standardise(nn.Module):
    """z-scores of region means with the training split's statistics; NaN -> 0 (the centre)."""

    def __init__(self, mu: np.ndarray, sd: np.ndarray, n_positions: int) -> None:
        super().__init__()
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
        self.register_buffer("sd", torch.as_tensor(sd, dtype=torch.float32))
        # Coverage enters as log1p(valid calls) / log1p(n_positions), i.e. roughly in [0, 1].
        self.cov_scale = 1.0 / math.log1p(max(n_positions, 1))

    def forward(
        self, means: torch.Tensor, coverage: torch.Tensor, region: torch.Tensor | None = None
    ) -> torch.Tensor:
        """means/coverage [..., R] (or [B] with ``region`` [B]) -> features [..., 3]: z, observed, log-coverage."""
        mu = self.mu if region is None else self.mu[region]
        sd = self.sd if region is None else self.sd[region]
        observed = torch.isfinite(means)
        z = torch.where(observed, (means - mu) / sd, torch.zeros_like(means))
        logcov = torch.log1p(coverage.float()) * self.cov_scale
        return torch.stack([z, observed.float(), logcov], dim=-1)


class _Classifier(nn.Module):
    """Shared ``loss``: label-smoothed cross-entropy, plus unsmoothed NLL and accuracy terms."""

    label_smoothing: float = 0.0

    def logits_of(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return self(*batch[:-1])

    def loss(self, batch: tuple[torch.Tensor, ...]) -> LossOutput:
        y = batch[-1]
        logits = self.logits_of(batch).float()
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        with torch.no_grad():
            # The NLL without smoothing is what chance-level checks compare with ln(C).
            nll = F.cross_entropy(logits, y)
            acc = (logits.argmax(-1) == y).float().mean()
        return LossOutput(loss, {"nll": nll, "accuracy": acc}, n=len(y))


class FileMLP(_Classifier):
    """Whole-sample classifier on region means.

    [B, R] means -> z-scores -> Linear(R, hidden[0]) -> (BatchNorm, ReLU, Dropout, Linear)
    per further layer -> BatchNorm, ReLU, Dropout -> Linear(hidden[-1], C) logits [B, C].
    """

    def __init__(
        self,
        n_regions: int,
        n_classes: int,
        cfg: MLPConfig,
        mu: np.ndarray,
        sd: np.ndarray,
        n_positions: int = 150,
    ) -> None:
        super().__init__()
        self.cfg, self.label_smoothing = cfg, cfg.label_smoothing
        self.standardise = _Standardise(mu, sd, n_positions)
        self.input_proj = nn.Linear(n_regions, cfg.hidden[0])
        layers: list[nn.Module] = []
        sizes = [*cfg.hidden, n_classes]
        for i in range(len(cfg.hidden)):
            layers += [
                nn.BatchNorm1d(sizes[i]),
                nn.ReLU(),
                nn.Dropout(cfg.dropout),
                nn.Linear(sizes[i], sizes[i + 1]),
            ]
        self.body = nn.Sequential(*layers)

    def forward(self, means: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        z = self.standardise(means, coverage)[..., 0]
        return self.body(self.input_proj(z))


class RegionAttention(_Classifier):
    """Whole-sample classifier that attends across regions.

    Each covered region r of a sample becomes a token h_r = z_r * E_r [dim] (z the
    standardised mean, E_r a learned per-region vector), so a token says which region
    it is and what it measured. Gated attention (Ilse et al. 2018, ICML) with ``heads``
    heads scores tokens per sample; the score also sees the region's log-coverage, so that
    well-read regions can count more. Uncovered and dropped regions are masked. Head k pools
    n_kept * sum_r a_rk h_r: at initialisation a is uniform and the pooled vector equals a
    linear projection of all region means (the MLP's input projection), so training starts
    from a learnable point and attention then re-weighs regions per head instead of
    averaging thousands of uninformative ones away. [B, heads*dim] -> BatchNorm/ReLU/
    Dropout/Linear -> logits [B, C]. Cost is linear in R, so 51,089 regions fit on a GPU.
    """

    def __init__(
        self,
        n_regions: int,
        n_classes: int,
        cfg: AttentionConfig,
        mu: np.ndarray,
        sd: np.ndarray,
        n_positions: int = 150,
    ) -> None:
        super().__init__()
        self.cfg, self.label_smoothing = cfg, cfg.label_smoothing
        self.standardise = _Standardise(mu, sd, n_positions)
        # Scaled like nn.Linear(n_regions, dim) weights so the summed token starts at unit scale.
        self.region_weights = nn.Parameter(torch.randn(n_regions, cfg.dim) / math.sqrt(n_regions))
        self.coverage_gain = nn.Parameter(torch.zeros(cfg.heads))
        self.attn_v = nn.Linear(cfg.dim, cfg.hidden)
        self.attn_u = nn.Linear(cfg.dim, cfg.hidden)
        self.attn_w = nn.Linear(cfg.hidden, cfg.heads)
        nn.init.zeros_(self.attn_w.weight)
        self.head = nn.Sequential(
            nn.BatchNorm1d(cfg.heads * cfg.dim),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.heads * cfg.dim, cfg.hidden),
            nn.BatchNorm1d(cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, n_classes),
        )

    def attention(
        self, means: torch.Tensor, coverage: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Tokens [B, R, dim], attention weights [B, R, heads] (softmax over regions), kept mask [B, R]."""
        feats = self.standardise(means, coverage)
        tokens = feats[..., 0, None] * self.region_weights
        # Scores see the token normalised per region so that a region's scale does not decide its weight.
        normed = F.layer_norm(tokens, (tokens.shape[-1],))
        scores = self.attn_w(torch.tanh(self.attn_v(normed)) * torch.sigmoid(self.attn_u(normed)))
        scores = scores + feats[..., 2, None] * self.coverage_gain
        keep = feats[..., 1] > 0
        if self.training and self.cfg.region_dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.cfg.region_dropout)
        # A finite large negative (not -inf) keeps a sample with no kept region at uniform weights.
        scores = scores.float().masked_fill(~keep[..., None], -1e4)
        return tokens, torch.softmax(scores, dim=1), keep

    def forward(self, means: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        tokens, weights, keep = self.attention(means, coverage)
        n_kept = keep.sum(dim=1).clamp(min=1).to(weights.dtype)
        pooled = torch.einsum("brh,brd->bhd", weights * n_kept[:, None, None], tokens.float())
        return self.head(pooled.flatten(1))


class RegionLevelClassifier(_Classifier):
    """The ablation: classify one region at a time with its file's label.

    A region token (embedding + measured value, as in :class:`RegionAttention`) goes
    through an MLP to logits [B, C]. It knows which region it sees, which is more than a
    sequence model over a single read window would, and still has too little information.
    """

    def __init__(
        self,
        n_regions: int,
        n_classes: int,
        cfg: RegionConfig,
        mu: np.ndarray,
        sd: np.ndarray,
        n_positions: int = 150,
    ) -> None:
        super().__init__()
        self.cfg, self.label_smoothing = cfg, cfg.label_smoothing
        self.standardise = _Standardise(mu, sd, n_positions)
        self.region_embedding = nn.Embedding(n_regions, cfg.dim)
        self.value = nn.Linear(3, cfg.dim)
        self.body = nn.Sequential(
            nn.LayerNorm(cfg.dim),
            nn.GELU(),
            nn.Linear(cfg.dim, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, n_classes),
        )

    def forward(self, region: torch.Tensor, means: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        feats = self.standardise(means, coverage, region)
        return self.body(self.region_embedding(region) + self.value(feats))


def build_model(
    kind: str, cfg: Any, n_regions: int, n_classes: int, mu: np.ndarray, sd: np.ndarray, n_positions: int
) -> _Classifier:
    """Instantiate a model of ``kind`` (one of MODEL_KINDS) from its config dataclass or dict."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown tissue model {kind!r}; choose from {MODEL_KINDS}")
    if isinstance(cfg, dict):
        cfg = CONFIGS[kind].from_dict(cfg)
    cls = {"mlp": FileMLP, "attention": RegionAttention, "region": RegionLevelClassifier}[kind]
    return cls(n_regions, n_classes, cfg, mu, sd, n_positions)
