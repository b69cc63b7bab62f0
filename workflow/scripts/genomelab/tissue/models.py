"""Tissue classifiers: whole-sample (file-level) models and the region-level ablation.

Every model keeps the training split's per-region centre ``mu`` and scale ``sd`` as buffers,
so a saved model standardises its own input (NaN = uncovered region -> the centre).

Batches (tuples from a ``TensorDataset``):

- file-level: ``(means float32 [B, R] with NaN, coverage float32 [B, R], y int64 [B])``
- region-level: ``(region int64 [B], means float32 [B] with NaN, coverage float32 [B], y int64 [B])``
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from genomelab.config import ConfigSection, from_schema
from genomelab.tissue.kinds import MODEL_KINDS
from genomelab.tissue.read_profiles import ReadProfiles, ReadsConfig
from genomelab.tissue.sparse import degrade_batch
from genomelab.train.engine import LossOutput


def _check_common(section: str, dropout: float, label_smoothing: float, z_clip: float = 0.0) -> None:
    if not 0 <= dropout < 1:
        raise ValueError(f"tissue.{section}.dropout must be in [0, 1), not {dropout}")
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"tissue.{section}.label_smoothing must be in [0, 1), not {label_smoothing}")
    if z_clip < 0:
        raise ValueError(f"tissue.{section}.z_clip must be >= 0 (0 = off), not {z_clip}")


def _check_sparse(section: str, fraction: float, depths: list[float], observed: list[float]) -> None:
    if not 0 <= fraction <= 1:
        raise ValueError(f"tissue.{section}.sparse_training must be in [0, 1], not {fraction}")
    if len(depths) != 2 or not 1 <= depths[0] <= depths[1]:
        raise ValueError(
            f"tissue.{section}.train_depths must be [min, max] reads with 1 <= min <= max, not {depths}"
        )
    if len(observed) != 2 or not 0 < observed[0] <= observed[1] <= 1:
        raise ValueError(
            f"tissue.{section}.train_observed must be [min, max] fractions in (0, 1], not {observed}"
        )


def _check_hidden(section: str, hidden: list[int]) -> None:
    if not hidden or min(hidden) < 1:
        raise ValueError(f"tissue.{section}.hidden must list sizes >= 1, not {hidden}")


@dataclass
class MLPConfig(ConfigSection):
    """File-level MLP: input projection to ``hidden[0]``, then BatchNorm/ReLU/Dropout/Linear blocks."""

    SECTION = "tissue.mlp"

    hidden: list[int] = from_schema("tissue.mlp.hidden")
    dropout: float = from_schema("tissue.mlp.dropout")
    label_smoothing: float = from_schema("tissue.mlp.label_smoothing")
    z_clip: float = from_schema("tissue.mlp.z_clip")
    sparse_training: float = from_schema("tissue.mlp.sparse_training")
    train_depths: list[float] = from_schema("tissue.mlp.train_depths")
    train_observed: list[float] = from_schema("tissue.mlp.train_observed")

    def __post_init__(self) -> None:
        _check_hidden("mlp", self.hidden)
        _check_common("mlp", self.dropout, self.label_smoothing, self.z_clip)
        _check_sparse("mlp", self.sparse_training, self.train_depths, self.train_observed)


@dataclass
class AttentionConfig(ConfigSection):
    """Attention across regions on top of the MLP's region-mean pathway.

    ``hidden``/``dropout``: the MLP trunk (as in :class:`MLPConfig`); ``dim``: region token
    size; ``heads``: attention heads; ``gate_hidden``: hidden size of the gated attention
    scorer. ``region_dropout`` hides that fraction of regions from each training sample (an
    augmentation that stops the model from relying on a handful of regions).
    """

    SECTION = "tissue.attention"

    hidden: list[int] = from_schema("tissue.attention.hidden")
    dropout: float = from_schema("tissue.attention.dropout")
    dim: int = from_schema("tissue.attention.dim")
    heads: int = from_schema("tissue.attention.heads")
    gate_hidden: int = from_schema("tissue.attention.gate_hidden")
    label_smoothing: float = from_schema("tissue.attention.label_smoothing")
    region_dropout: float = from_schema("tissue.attention.region_dropout")
    z_clip: float = from_schema("tissue.attention.z_clip")
    read_likelihood: bool = from_schema("tissue.attention.read_likelihood")
    read_likelihood_folds: int = from_schema("tissue.attention.read_likelihood_folds")
    sparse_training: float = from_schema("tissue.attention.sparse_training")
    train_depths: list[float] = from_schema("tissue.attention.train_depths")
    train_observed: list[float] = from_schema("tissue.attention.train_observed")

    def __post_init__(self) -> None:
        for name in ("dim", "heads", "gate_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"tissue.attention.{name} must be >= 1, not {getattr(self, name)}")
        _check_hidden("attention", self.hidden)
        _check_common("attention", self.dropout, self.label_smoothing, self.z_clip)
        _check_sparse("attention", self.sparse_training, self.train_depths, self.train_observed)
        if not 0 <= self.region_dropout < 1:
            raise ValueError(f"tissue.attention.region_dropout must be in [0, 1), not {self.region_dropout}")
        if self.read_likelihood_folds < 0 or self.read_likelihood_folds == 1:
            raise ValueError(
                "tissue.attention.read_likelihood_folds must be 0 (in-sample) or >= 2 folds, "
                f"not {self.read_likelihood_folds}"
            )


MASKED_ENCODINGS = ("counts", "z")


@dataclass
class MaskedConfig(ConfigSection):
    """The masked single-layer model (the crossNN idea): one linear layer over three
    channels per region, trained with random masking and read resampling
    (``sparse_training`` of the samples per batch). ``encoding`` picks the channels: ``counts``
    (the depth-weighted level, see :func:`count_channels`) or ``z`` (the clipped z-score,
    see :func:`sparse_channels`; models exported before the option have it)."""

    SECTION = "tissue.masked"

    encoding: str = from_schema("tissue.masked.encoding")
    label_smoothing: float = from_schema("tissue.masked.label_smoothing")
    z_clip: float = from_schema("tissue.masked.z_clip")
    sparse_training: float = from_schema("tissue.masked.sparse_training")
    train_depths: list[float] = from_schema("tissue.masked.train_depths")
    train_observed: list[float] = from_schema("tissue.masked.train_observed")
    validation_draws: int = from_schema("tissue.masked.validation_draws")
    lr_scale: float = from_schema("tissue.masked.lr_scale")

    def __post_init__(self) -> None:
        if not self.lr_scale > 0:
            raise ValueError(f"tissue.masked.lr_scale must be > 0, not {self.lr_scale}")
        if self.validation_draws < 0:
            raise ValueError(f"tissue.masked.validation_draws must be >= 0, not {self.validation_draws}")
        if self.encoding not in MASKED_ENCODINGS:
            raise ValueError(
                f"tissue.masked.encoding must be one of {MASKED_ENCODINGS}, not {self.encoding!r}"
            )
        _check_common("masked", 0.0, self.label_smoothing, self.z_clip)
        _check_sparse("masked", self.sparse_training, self.train_depths, self.train_observed)


@dataclass
class RegionConfig(ConfigSection):
    """Region-level ablation: one region (identity + value) per example, labelled with its file's class.

    ``regions_per_sample`` covered regions are drawn from each sample to make examples.
    """

    SECTION = "tissue.region"

    dim: int = from_schema("tissue.region.dim")
    hidden: int = from_schema("tissue.region.hidden")
    dropout: float = from_schema("tissue.region.dropout")
    label_smoothing: float = from_schema("tissue.region.label_smoothing")
    regions_per_sample: int = from_schema("tissue.region.regions_per_sample")

    def __post_init__(self) -> None:
        for name in ("dim", "hidden", "regions_per_sample"):
            if getattr(self, name) < 1:
                raise ValueError(f"tissue.region.{name} must be >= 1, not {getattr(self, name)}")
        _check_common("region", self.dropout, self.label_smoothing)


CONFIGS = {
    "mlp": MLPConfig,
    "attention": AttentionConfig,
    "masked": MaskedConfig,
    "reads": ReadsConfig,
    "region": RegionConfig,
}


class _Standardise(nn.Module):
    """z-scores of region means with the training split's statistics; NaN -> 0 (the centre)."""

    def __init__(self, mu: np.ndarray, sd: np.ndarray, n_positions: int, z_clip: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32))
        self.register_buffer("sd", torch.as_tensor(sd, dtype=torch.float32))
        # Coverage enters as log1p(valid calls) / log1p(n_positions), i.e. roughly in [0, 1].
        self.cov_scale = 1.0 / math.log1p(max(n_positions, 1))
        # At low coverage a region's training sd can be tiny, so one unusual read gives |z| in
        # the hundreds and dominates a sample; z_clip * tanh(z / z_clip) bounds it smoothly
        # (about z for |z| << z_clip; 0 = off).
        self.z_clip = z_clip

    def forward(
        self, means: torch.Tensor, coverage: torch.Tensor, region: torch.Tensor | None = None
    ) -> torch.Tensor:
        """means/coverage [..., R] (or [B] with ``region`` [B]) -> features [..., 3]: z, observed, log-coverage."""
        mu = self.mu if region is None else self.mu[region]
        sd = self.sd if region is None else self.sd[region]
        observed = torch.isfinite(means)
        z = torch.where(observed, (means - mu) / sd, torch.zeros_like(means))
        if self.z_clip > 0:
            z = self.z_clip * torch.tanh(z / self.z_clip)
        logcov = torch.log1p(coverage.float()) * self.cov_scale
        return torch.stack([z, observed.float(), logcov], dim=-1)


class _Classifier(nn.Module):
    """Shared ``loss``: label-smoothed cross-entropy, plus unsmoothed NLL and accuracy terms."""

    label_smoothing: float = 0.0
    # Sparse-training augmentation on in training mode; the overfit check turns it off.
    augment: bool = True

    def logits_of(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        # File-level batches: (means, coverage[, fold], y); only means and coverage are degraded.
        inputs = batch[:-1]
        cfg = getattr(self, "cfg", None)
        fraction = getattr(cfg, "sparse_training", 0.0)
        if self.training and self.augment and fraction > 0:
            # What sequencing gives: per sample a random depth and subset of regions.
            degraded = degrade_batch(
                inputs[0], inputs[1], fraction, tuple(cfg.train_depths), tuple(cfg.train_observed)
            )
            inputs = (*degraded, *inputs[2:])
        return self(*inputs)

    def loss(self, batch: tuple[torch.Tensor, ...]) -> LossOutput:
        y = batch[-1]
        logits = self.logits_of(batch).float()
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        with torch.no_grad():
            # The NLL without smoothing is what chance-level checks compare with ln(C).
            nll = F.cross_entropy(logits, y)
            acc = (logits.argmax(-1) == y).float().mean()
        return LossOutput(loss, {"nll": nll, "accuracy": acc}, n=len(y))


def sparse_channels(feats: torch.Tensor) -> torch.Tensor:
    """[B, R, 3] (z, observed, log-coverage) -> [B, 3R]: per region the value, whether it was
    observed and the value weighted by depth, so a linear layer can trust a deep region more."""
    z, observed, logcov = feats.unbind(-1)
    return torch.cat([z, observed, z * logcov], dim=-1)


def count_channels(
    means: torch.Tensor,
    coverage: torch.Tensor,
    mu: torch.Tensor,
    sd: torch.Tensor,
    kappa: torch.Tensor,
    z_clip: float = 0.0,
) -> torch.Tensor:
    """means (NaN = unobserved), coverage [B, R]; mu, sd, kappa [R] -> [B, 3R]: per region
    w z, whether it was observed, and w, with z the level's z-score (soft-clipped at
    ``z_clip``, 0 = off) and w = d / (kappa + d) at d reads (for NPZ inputs d counts the
    region's CpG calls, as the read-profile model's counts do).

    Why: d reads of one region share its level, which varies around a class's profile like a
    beta of concentration kappa, so their evidence is the binomial's divided by
    (kappa + d) / (kappa + 1) (:mod:`genomelab.tissue.read_profiles`). A linear layer over
    these channels therefore scores k methylated of d reads as the tempered log-likelihood
    ratio f(d) [k A + (d - k) B] of every class (exactly so without the clip and the sd,
    which only rescale per region): one read weighs 1 / (kappa + 1) of a region whose depth
    is well above kappa. A plain z-score instead treats a single read's 0 or 1 as an extreme
    sample (measured on TCGA: 14 points below logistic regression at one read,
    docs/tissue.md). The clip keeps one region from dominating a sample: in a region of low
    spread near 0 or 1 (a CpG island at 0.02, sd 0.03) a fully covered level of 0.5 is 17
    SDs out, and one methylated read 35 SDs times w = 1/26.
    """
    observed = torch.isfinite(means) & (coverage > 0)
    d = torch.where(observed, coverage.float(), torch.zeros_like(coverage, dtype=torch.float32))
    w = d / (kappa + d)  # 0 where unobserved
    z = torch.where(observed, (means.float() - mu) / sd, torch.zeros_like(w))
    if z_clip > 0:
        z = z_clip * torch.tanh(z / z_clip)
    return torch.cat([w * z, observed.float(), w], dim=-1)


def _mlp_body(sizes: list[int], dropout: float, n_classes: int) -> nn.Sequential:
    """(BatchNorm, ReLU, Dropout, Linear) per layer: [B, sizes[0]] -> logits [B, n_classes]."""
    sizes = [*sizes, n_classes]
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers += [
            nn.BatchNorm1d(sizes[i]),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(sizes[i], sizes[i + 1]),
        ]
    return nn.Sequential(*layers)


class FileMLP(_Classifier):
    """Whole-sample classifier on region means.

    [B, R] means -> (clipped) z-scores -> Linear(R, hidden[0]) -> (BatchNorm, ReLU, Dropout,
    Linear) per further layer -> BatchNorm, ReLU, Dropout -> Linear(hidden[-1], C) logits [B, C].
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
        self.standardise = _Standardise(mu, sd, n_positions, cfg.z_clip)
        # Trained on sparse inputs it also reads which regions were observed and how deeply.
        self.channels = 3 if cfg.sparse_training > 0 else 1
        self.input_proj = nn.Linear(self.channels * n_regions, cfg.hidden[0])
        self.body = _mlp_body(cfg.hidden, cfg.dropout, n_classes)

    def forward(self, means: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        feats = self.standardise(means, coverage)
        x = feats[..., 0] if self.channels == 1 else sparse_channels(feats)
        return self.body(self.input_proj(x))


class MaskedLinear(_Classifier):
    """The masked single-layer model: logits [B, C] = Linear(3R, C) of :meth:`features`
    (:func:`count_channels` or, with ``encoding: z``, :func:`sparse_channels`).

    An unobserved region contributes nothing (every channel 0), so the model reads any subset
    of regions; trained with masking and read resampling it learns weights that hold up when
    most regions are missing (the crossNN idea, Yuan et al. 2025 Nat Cancer). The strong
    simple baseline for sparse inputs: as cheap as logistic regression.
    """

    def __init__(
        self,
        n_regions: int,
        n_classes: int,
        cfg: MaskedConfig,
        mu: np.ndarray,
        sd: np.ndarray,
        n_positions: int = 150,
        kappa: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.label_smoothing = cfg, cfg.label_smoothing
        self.encoding = cfg.encoding
        self.standardise = _Standardise(mu, sd, n_positions, cfg.z_clip)
        if self.encoding == "counts":
            # Per region the concentration of its level around the class profiles, from the
            # training split (None: ones, an exported model's buffer is loaded next).
            k = np.ones(n_regions, np.float32) if kappa is None else kappa
            self.register_buffer("kappa", torch.as_tensor(k, dtype=torch.float32))
        self.linear = nn.Linear(3 * n_regions, n_classes)
        # A linear softmax model is convex: start from uniform class probabilities (loss ln C)
        # rather than from random logits summed over thousands of inputs.
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def features(self, means: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        """means (NaN = unobserved), coverage [B, R] -> the linear layer's input [B, 3R]."""
        if self.encoding == "z":
            return sparse_channels(self.standardise(means, coverage))
        std = self.standardise
        return count_channels(means, coverage, std.mu, std.sd, self.kappa, std.z_clip)

    def forward(self, means: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        return self.linear(self.features(means, coverage))


def _read_counts(
    means: torch.Tensor, coverage: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """means, coverage [B, R] -> (observed bool, methylated reads k, reads d) [B, R]; k and d
    are 0 where a region is unobserved (NaN mean or no coverage)."""
    cov = coverage.float()
    observed = torch.isfinite(means) & (cov > 0)
    d = torch.where(observed, cov, torch.zeros_like(cov))
    k = torch.where(observed, torch.round(torch.nan_to_num(means.float()) * d), torch.zeros_like(d))
    return observed, k, d


def beta_binomial_terms(
    k: torch.Tensor, d: torch.Tensor, a: torch.Tensor, b: torch.Tensor, norm: torch.Tensor
) -> torch.Tensor:
    """Per-region log B(k + a, d - k + b) - log B(a, b) (the binomial coefficient, the same
    for every class, left out) of k of d methylated reads, broadcast over the arguments'
    shapes; 0 where k = d = 0 (unobserved). The one place this term is written: the members'
    forward and the per-query path (:mod:`genomelab.tissue.inference`) must agree to the bit."""
    return torch.lgamma(k + a) + torch.lgamma(d - k + b) - torch.lgamma(d + a + b) - norm


def _beta_binomial_sum(
    k: torch.Tensor, d: torch.Tensor, a: torch.Tensor, b: torch.Tensor, norm: torch.Tensor | None = None
) -> torch.Tensor:
    """k, d [B, R] methylated and total reads (0, 0 where unobserved); a, b [C, R] (``norm``
    = log B(a, b) when known) -> summed log B(k + a, d - k + b) - log B(a, b) over regions, [B, C]."""
    if norm is None:
        norm = torch.lgamma(a) + torch.lgamma(b) - torch.lgamma(a + b)
    return torch.stack(
        [beta_binomial_terms(k, d, a[c], b[c], norm[c]).sum(-1) for c in range(a.shape[0])], dim=-1
    )


class _ReadLikelihood(nn.Module):
    """Beta-binomial log-likelihood of each class from a sample's read counts, as logits.

    Buffers ``a``, ``b`` [C, R]: per class and region the beta of the methylation level
    (:class:`genomelab.tissue.baselines.ReadNaiveBayes`, fitted on the training split; ones,
    i.e. no information, until loaded). forward(means, coverage [B, R], fold [B] or None) ->
    [B, C]: the summed log-likelihood of k = mean x coverage methylated of coverage reads over
    observed regions, centred over classes, times w = exp(g0 + g1 log1p(observed regions) +
    g2 log1p(mean depth)). A naive Bayes sum is overconfident by a factor that grows with what
    it sums (regions are not independent), so the weight is learned as powers of the two; the
    likelihood itself is fixed.

    Cross-fitting (``fold_params`` (a, b) [K, C, R], training only): a training sample of fold
    f >= 0 is scored with the fit made without fold f, so the weight is learned on evidence
    as strong as a new sample's; fold -1 (or None) uses the full fit. The fold fits are
    non-persistent buffers: the export carries only the full fit, as before.
    """

    def __init__(
        self,
        n_classes: int,
        n_regions: int,
        params: tuple[np.ndarray, np.ndarray] | None,
        fold_params: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        a, b = params if params is not None else (np.ones((n_classes, n_regions)),) * 2
        self.register_buffer("a", torch.as_tensor(a, dtype=torch.float32))
        self.register_buffer("b", torch.as_tensor(b, dtype=torch.float32))
        self.register_buffer(
            "norm", torch.lgamma(self.a) + torch.lgamma(self.b) - torch.lgamma(self.a + self.b)
        )
        folds = (
            None if fold_params is None else [torch.as_tensor(p, dtype=torch.float32) for p in fold_params]
        )
        if folds is not None and (folds[0].shape[1:] != self.a.shape or folds[1].shape != folds[0].shape):
            raise ValueError(
                f"read likelihood: fold fits {tuple(folds[0].shape)} / {tuple(folds[1].shape)} must be "
                f"[K, {n_classes}, {n_regions}]"
            )
        self.register_buffer("a_folds", None if folds is None else folds[0], persistent=False)
        self.register_buffer("b_folds", None if folds is None else folds[1], persistent=False)
        # x 10 in forward: the engine's learning rate suits weights, these need bigger steps.
        # Weight exp(g0 + g1 log1p(observed regions) + g2 log1p(mean depth)): how far a sum of
        # naive-Bayes terms overstates the evidence depends on how many regions it sums (they
        # are correlated) and on how deep each one is, separately.
        self.gate = nn.Parameter(torch.tensor([0.0, -0.05, -0.05]))

    def log_likelihood(
        self, means: torch.Tensor, coverage: torch.Tensor, fold: torch.Tensor | None = None
    ) -> torch.Tensor:
        """[B, C] summed log-likelihood (not centred, not weighted): the full fit, or per
        sample its fold's out-of-fold fit where ``fold`` [B] is >= 0 (cross-fitted training)."""
        return self._log_likelihood(*_read_counts(means, coverage)[1:], fold)

    def _log_likelihood(self, k: torch.Tensor, d: torch.Tensor, fold: torch.Tensor | None) -> torch.Tensor:
        if fold is None or self.a_folds is None or not bool((fold >= 0).any()):
            return _beta_binomial_sum(k, d, self.a, self.b, self.norm)
        ll = torch.empty(len(k), self.a.shape[0], device=k.device)
        # One pass per fold present in the batch: memory [B, R] per class, never [B, C, R].
        for f in torch.unique(fold).tolist():
            rows = fold == f
            if f < 0:
                ll[rows] = _beta_binomial_sum(k[rows], d[rows], self.a, self.b, self.norm)
            else:
                ll[rows] = _beta_binomial_sum(k[rows], d[rows], self.a_folds[f], self.b_folds[f])
        return ll

    def forward(
        self, means: torch.Tensor, coverage: torch.Tensor, fold: torch.Tensor | None = None
    ) -> torch.Tensor:
        with torch.no_grad():  # the likelihood is fixed: no graph over [B, C, R]
            observed, k, d = _read_counts(means, coverage)
            ll = self._log_likelihood(k, d, fold)
            ll = ll - ll.mean(-1, keepdim=True)
            n_obs = observed.sum(-1).float()
            depth = d.sum(-1) / n_obs.clamp(min=1)
            features = torch.stack([torch.log1p(n_obs), torch.log1p(depth)], dim=-1)
        g = 10 * self.gate
        weight = torch.exp(torch.clamp(g[0] + features @ g[1:], -12.0, 4.0))
        return weight[:, None] * ll


class RegionAttention(_Classifier):
    """Whole-sample classifier that attends across regions, over the MLP's region-mean pathway.

    Two pathways meet in the first hidden layer:

    - region means: Linear(R, hidden[0]) of all (clipped) z-scores, as in :class:`FileMLP`;
    - attention: each kept region r is a token h_r = E_r + z_r * V_r + W [z_r, observed_r,
      log-coverage_r] (E_r, V_r learned per region: which region it is and how its value
      reads; W shared), so a token carries the region's identity, mean methylation and
      coverage. Gated attention (Ilse et al. 2018, ICML) with ``heads`` heads pools
      sum_r a_rk h_r per head; LayerNorm and a projection to hidden[0] follow.

    The projection of the pooled tokens starts at zero, so the untrained model is exactly the
    MLP and attention only adds what the data support; the trunk (BatchNorm/ReLU/Dropout/Linear
    per ``hidden``) then gives logits [B, C]. Uncovered regions (z = 0 on the region-mean
    pathway) and, in training, ``region_dropout`` of the regions are masked from attention.
    Cost is linear in R, so 51,089 regions fit on a GPU.
    """

    def __init__(
        self,
        n_regions: int,
        n_classes: int,
        cfg: AttentionConfig,
        mu: np.ndarray,
        sd: np.ndarray,
        n_positions: int = 150,
        read_params: tuple[np.ndarray, np.ndarray] | None = None,
        fold_params: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.cfg, self.label_smoothing = cfg, cfg.label_smoothing
        self.standardise = _Standardise(mu, sd, n_positions, cfg.z_clip)
        self.reads = (
            _ReadLikelihood(n_classes, n_regions, read_params, fold_params) if cfg.read_likelihood else None
        )
        self.input_proj = nn.Linear(n_regions, cfg.hidden[0])
        self.region_embedding = nn.Parameter(0.02 * torch.randn(n_regions, cfg.dim))
        self.value_weights = nn.Parameter(0.02 * torch.randn(n_regions, cfg.dim))
        self.value_proj = nn.Linear(3, cfg.dim)
        self.attn_v = nn.Linear(cfg.dim, cfg.gate_hidden)
        self.attn_u = nn.Linear(cfg.dim, cfg.gate_hidden)
        self.attn_w = nn.Linear(cfg.gate_hidden, cfg.heads)
        self.pooled_norm = nn.LayerNorm(cfg.heads * cfg.dim)
        self.pooled_proj = nn.Linear(cfg.heads * cfg.dim, cfg.hidden[0])
        nn.init.zeros_(self.pooled_proj.weight)
        nn.init.zeros_(self.pooled_proj.bias)
        self.body = _mlp_body(cfg.hidden, cfg.dropout, n_classes)

    def attention(
        self, means: torch.Tensor, coverage: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """z-scores [B, R], tokens [B, R, dim], attention weights [B, R, heads] (softmax over
        regions) and the kept mask [B, R]."""
        feats = self.standardise(means, coverage)
        z = feats[..., 0]
        keep = feats[..., 1] > 0
        if self.training and self.cfg.region_dropout > 0:
            keep = keep & (torch.rand(keep.shape, device=keep.device) >= self.cfg.region_dropout)
        tokens = self.region_embedding + z[..., None] * self.value_weights + self.value_proj(feats)
        # Scores see each token normalised, so a region's scale does not decide its weight.
        normed = F.layer_norm(tokens, (tokens.shape[-1],))
        scores = self.attn_w(torch.tanh(self.attn_v(normed)) * torch.sigmoid(self.attn_u(normed)))
        # A finite large negative (not -inf) keeps a sample with no kept region at uniform weights.
        scores = scores.float().masked_fill(~keep[..., None], -1e4)
        return z, tokens, torch.softmax(scores, dim=1), keep

    def forward(
        self, means: torch.Tensor, coverage: torch.Tensor, fold: torch.Tensor | None = None
    ) -> torch.Tensor:
        """means, coverage [B, R] -> logits [B, C]; ``fold`` [B] (training batches with a
        cross-fitted read likelihood): each sample's fold, -1 = the full fit."""
        z, tokens, weights, _ = self.attention(means, coverage)
        pooled = torch.einsum("brh,brd->bhd", weights, tokens.float()).flatten(1)
        # The region-mean pathway sees every region, exactly as the MLP does; region dropout
        # acts on the attention pathway only.
        hidden = self.input_proj(z) + self.pooled_proj(self.pooled_norm(pooled))
        logits = self.body(hidden)
        return logits if self.reads is None else logits + self.reads(means, coverage, fold)


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


# Model options added after models were first exported, with the behaviour of the models
# exported before them: an export whose config lacks the key was trained without it.
_LATER_OPTIONS = {
    "attention": {"read_likelihood": False, "read_likelihood_folds": 0},
    "masked": {"encoding": "z", "validation_draws": 0, "lr_scale": 1.0},
}


def exported_config(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    """An exported model's config with options it predates set to their earlier behaviour
    (the schema default of a later option describes new runs, not old files)."""
    return {**_LATER_OPTIONS.get(kind, {}), **config}


def build_model(
    kind: str,
    cfg: Any,
    n_regions: int,
    n_classes: int,
    mu: np.ndarray,
    sd: np.ndarray,
    n_positions: int,
    read_params: tuple[np.ndarray, np.ndarray] | None = None,
    fold_params: tuple[np.ndarray, np.ndarray] | None = None,
    kappa: np.ndarray | None = None,
) -> nn.Module:
    """Instantiate a model of ``kind`` (one of MODEL_KINDS) from its config dataclass or dict.

    ``read_params``: the beta (a, b) [C, R] of the read-likelihood pathway (attention with
    ``read_likelihood``); None where the exported buffers are loaded next. ``fold_params``:
    the out-of-fold fits (a, b) [K, C, R] that score training samples (training only).
    ``kappa`` [R]: the masked model's region concentrations (:func:`region_concentration`);
    None where the exported buffers are loaded next."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown tissue model {kind!r}; choose from {MODEL_KINDS}")
    if isinstance(cfg, dict):
        cfg = CONFIGS[kind].from_dict(cfg)
    cls: Any = {
        "mlp": FileMLP,
        "attention": RegionAttention,
        "masked": MaskedLinear,
        "reads": ReadProfiles,
        "region": RegionLevelClassifier,
    }[kind]
    if kind == "attention":
        return RegionAttention(n_regions, n_classes, cfg, mu, sd, n_positions, read_params, fold_params)
    if kind == "reads":
        # Empty profiles: genomelab.tissue.read_profiles.fit_read_profiles fits them, or an
        # exported model's buffers are loaded next (they take the file's shapes).
        return ReadProfiles(n_regions, n_classes, cfg.families)
    if kind == "masked":
        return MaskedLinear(n_regions, n_classes, cfg, mu, sd, n_positions, kappa)
    return cls(n_regions, n_classes, cfg, mu, sd, n_positions)
