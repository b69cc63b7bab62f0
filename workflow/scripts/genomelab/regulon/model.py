"""Step 4, the sequence model: a dilated-CNN trunk with three heads matched to target types.

Heads (the history's failure was a regression head fed 0/1 flags and raw TPM):
- expression: unbounded linear, z-scored log1p values, masked MSE (no measurement = no loss);
- density: non-negative (softplus), genes per 128-bp bin, MSE or Poisson NLL;
- operon membership: a logit, sigmoid in ``predict``, BCE.
All tracks are [B, 2, n] with rows plus/minus strand, so the reverse complement of a batch is
"reverse positions, swap strand rows" for inputs and targets alike.

Inputs (``regulon.model.inputs``): the one-hot sequence, and with ``sequence+annotation`` also
the six per-strand gene-body/start/end channels of :mod:`genomelab.regulon.features`, so that
gene boundaries and intergenic gaps are in view and not only inferred from sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genomelab.config import ConfigSection, from_schema
from genomelab.regulon.features import INPUTS, rc_annotation, unpack
from genomelab.train.engine import LossOutput

DENSITY_LOSSES = ("mse", "poisson")
# ``regulon.model.norm``: BatchNorm1d (running statistics in eval mode), a GroupNorm over each
# window (groups of channels x the window's positions: no batch statistics, but a position's
# output depends on the rest of its window) or a LayerNorm over the channels at each position
# (no batch or window statistics: a position's output depends on its receptive field only).
NORMS = ("batch", "group", "layer")
# Channel groups of ``norm: group`` (fewer where the channels are not a multiple).
NORM_GROUPS = 8
HEADS = ("expression", "density", "operon")
# What each head's activation can represent; diagnostics compare targets against this.
HEAD_KINDS = {"expression": "regression", "density": "count", "operon": "binary"}


@dataclass
class RegulonModelConfig(ConfigSection):
    """Sizes, heads and loss options (``regulon.model`` in config)."""

    SECTION = "regulon.model"

    channels: int = from_schema("regulon.model.channels")
    n_layers: int = from_schema("regulon.model.n_layers")
    kernel_size: int = from_schema("regulon.model.kernel_size")
    stem_kernel: int = from_schema("regulon.model.stem_kernel")
    dropout: float = from_schema("regulon.model.dropout")
    resolution_bp: int = from_schema("regulon.targets.resolution_bp")
    bin_bp: int = from_schema("regulon.targets.bin_bp")
    density_loss: str = from_schema("regulon.model.density_loss")
    loss_weights: dict[str, float] = from_schema("regulon.model.loss_weights")
    rc_augment: bool = from_schema("regulon.model.rc_augment")
    inputs: str = from_schema("regulon.model.inputs")
    # A model exported before this key existed has none in its config: it loads as "batch".
    norm: str = from_schema("regulon.model.norm")

    def __post_init__(self) -> None:
        if self.norm not in NORMS:
            raise ValueError(f"regulon.model.norm must be one of {list(NORMS)}, not {self.norm!r}")
        if self.inputs not in INPUTS:
            raise ValueError(f"regulon.model.inputs must be one of {list(INPUTS)}, not {self.inputs!r}")
        for name in ("channels", "n_layers", "kernel_size", "stem_kernel", "resolution_bp", "bin_bp"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"regulon.model.{name} must be >= 1, not {getattr(self, name)}")
        if self.kernel_size % 2 == 0 or self.stem_kernel % 2 == 0:
            raise ValueError(
                f"regulon.model kernel sizes must be odd (same-length padding), not "
                f"{self.kernel_size}/{self.stem_kernel}"
            )
        if self.bin_bp % self.resolution_bp:
            raise ValueError(
                f"regulon.model.bin_bp ({self.bin_bp}) must be a multiple of resolution_bp "
                f"({self.resolution_bp})"
            )
        if not 0 <= self.dropout < 1:
            raise ValueError(f"regulon.model.dropout must be in [0, 1), not {self.dropout}")
        if self.density_loss not in DENSITY_LOSSES:
            raise ValueError(
                f"regulon.model.density_loss must be one of {DENSITY_LOSSES}, not {self.density_loss!r}"
            )
        unknown = sorted(set(self.loss_weights) - set(HEADS))
        if unknown:
            raise ValueError(
                f"regulon.model.loss_weights has unknown head(s) {unknown}; heads: {list(HEADS)}"
            )
        self.loss_weights = {h: float(self.loss_weights.get(h, 1.0)) for h in HEADS}
        if any(w < 0 or not math.isfinite(w) for w in self.loss_weights.values()) or not any(
            self.loss_weights.values()
        ):
            raise ValueError(
                f"regulon.model.loss_weights must be finite, >= 0 and not all 0: {self.loss_weights}"
            )


# Scale of the heads' initial (Xavier) weights. Smaller keeps outputs nearer the priors
# (0.5: untrained loss within ~3% of chance per head at the default size, 1.0: up to ~11%
# on expression); much smaller (0.01-0.1) slowed the trunk's first epochs on the synthetic
# chain test (loss after 6 epochs 1.45-1.51 vs 1.28 at 0.5).
HEAD_INIT_SCALE = 0.5


@dataclass(frozen=True)
class LabelPriors:
    """Training-label statistics the heads start at (see ``RegulonNet.set_priors``)."""

    operon_rate: float
    expression_mean: float = 0.0
    density_mean: float = 0.0

    @classmethod
    def from_targets(cls, expression, mask, density, operon) -> LabelPriors:
        """From arrays [n, 2, r] (expression, its boolean mask, operon) and [n, 2, b] (density)."""
        e = expression[mask]
        return cls(
            operon_rate=float(operon.mean()) if operon.size else 0.5,
            expression_mean=float(e.mean()) if e.size else 0.0,
            density_mean=float(density.mean()) if density.size else 0.0,
        )


def one_hot(codes: torch.Tensor) -> torch.Tensor:
    """[B, L] integer codes (A=0 C=1 G=2 T=3 N=4) -> [B, 4, L] float; N is all zeros."""
    return F.one_hot(codes.long(), 5)[..., :4].transpose(1, 2).float()


_COMPLEMENT = torch.tensor([3, 2, 1, 0, 4], dtype=torch.uint8)


def rc_codes(codes: torch.Tensor) -> torch.Tensor:
    """[B, L] codes -> reverse complement."""
    return _COMPLEMENT.to(codes.device)[codes.flip(-1).long()].to(codes.dtype)


def rc_track(track: torch.Tensor) -> torch.Tensor:
    """[B, 2, n] strand-aware track -> reversed positions, swapped strands."""
    return track.flip(-1).flip(-2)


class ChannelLayerNorm(nn.LayerNorm):
    """LayerNorm over the channels of [B, C, L], each position on its own."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


def make_norm(kind: str, channels: int) -> nn.Module:
    """The normalisation layer of ``regulon.model.norm``."""
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(NORM_GROUPS, channels), channels)
    if kind == "layer":
        return ChannelLayerNorm(channels)
    raise ValueError(f"regulon.model.norm must be one of {list(NORMS)}, not {kind!r}")


class _DilatedBlock(nn.Module):
    def __init__(
        self, channels: int, kernel: int, dilation: int, dropout: float, norm: str = "batch"
    ) -> None:
        super().__init__()
        self.norm = make_norm(norm, channels)
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation, padding=dilation * (kernel // 2))
        self.mix = nn.Conv1d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Residual, so that the receptive field grows with depth without losing local detail.
        return x + self.drop(self.mix(F.gelu(self.conv(F.gelu(self.norm(x))))))


class RegulonNet(nn.Module):
    """Sequence [B, L] codes (and, with annotation inputs, packed flags [B, L]) -> expression
    [B, 2, L/r], density [B, 2, L/bin], operon logits [B, 2, L/r].

    ``L`` must be a multiple of ``bin_bp``. Receptive field about
    ``stem_kernel + 2 * resolution_bp * (kernel_size - 1) / 2 * (2**n_layers - 1)`` bp.
    """

    def __init__(self, config: RegulonModelConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        self.uses_annotation = config.inputs == "sequence+annotation"
        self.stem = nn.Conv1d(INPUTS[config.inputs], c, config.stem_kernel, padding=config.stem_kernel // 2)
        self.pool = nn.MaxPool1d(config.resolution_bp)
        self.blocks = nn.Sequential(
            *[
                _DilatedBlock(c, config.kernel_size, 2**i, config.dropout, config.norm)
                for i in range(config.n_layers)
            ]
        )
        self.norm = make_norm(config.norm, c)
        self.expression_head = nn.Conv1d(c, 2, 1)
        self.operon_head = nn.Conv1d(c, 2, 1)
        self.density_pool = nn.AvgPool1d(config.bin_bp // config.resolution_bp)
        self.density_head = nn.Conv1d(c, 2, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Xavier keeps activations at unit scale through the stack. The heads' weights start
        # at half that scale, so each head's output is its bias (set by ``set_priors``) plus
        # little noise: the first loss sits at the chance level whatever the label rate.
        for m in self.modules():
            if isinstance(m, nn.Conv1d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        with torch.no_grad():
            for head in (self.expression_head, self.operon_head, self.density_head):
                head.weight.mul_(HEAD_INIT_SCALE)

    @torch.no_grad()
    def set_priors(self, priors: LabelPriors) -> None:
        """Biases at the training labels' priors: logit of the operon rate, the mean
        expression target, the inverse softplus of the mean density (a count head)."""
        p = min(max(priors.operon_rate, 1e-6), 1 - 1e-6)
        self.operon_head.bias.fill_(math.log(p / (1 - p)))
        self.expression_head.bias.fill_(priors.expression_mean)
        d = max(priors.density_mean, 1e-4)
        # softplus^-1(d) = log(expm1(d)); for large d that is d itself.
        self.density_head.bias.fill_(d if d > 20 else math.log(math.expm1(d)))

    def input_channels(self, codes: torch.Tensor, annotation: torch.Tensor | None) -> torch.Tensor:
        """[B, 4 or 10, L] network input of codes [B, L] and packed annotation [B, L]."""
        if codes.shape[-1] % self.config.bin_bp:
            raise ValueError(
                f"window length {codes.shape[-1]} is not a multiple of bin_bp={self.config.bin_bp}"
            )
        x = one_hot(codes)
        if not self.uses_annotation:
            return x
        if annotation is None or annotation.shape != codes.shape:
            raise ValueError(
                "this regulon model reads gene-annotation channels (regulon.model.inputs: "
                f"sequence+annotation): give packed annotation flags of shape {tuple(codes.shape)}"
            )
        return torch.cat([x, unpack(annotation)], dim=1)

    def hidden(self, codes: torch.Tensor, annotation: torch.Tensor | None = None) -> torch.Tensor:
        """The trunk's output [B, channels, L/r]."""
        h = self.pool(F.gelu(self.stem(self.input_channels(codes, annotation))))
        return F.gelu(self.norm(self.blocks(h)))

    def forward(self, codes: torch.Tensor, annotation: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        h = self.hidden(codes, annotation)
        return {
            "expression": self.expression_head(h),
            "operon_logit": self.operon_head(h),
            # softplus: a gene count is never negative.
            "density": F.softplus(self.density_head(self.density_pool(h))),
        }

    @torch.no_grad()
    def predict(
        self, codes: torch.Tensor, rc_average: bool = True, annotation: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Expression, density and operon probability; averaged with the reverse complement.

        Always in eval mode (running BatchNorm statistics with ``norm: batch``, no dropout); the previous mode is
        restored afterwards, so calling it mid-training is safe.
        """
        was_training = self.training
        self.eval()
        try:
            return self._predict(codes, rc_average, annotation)
        finally:
            self.train(was_training)

    def _predict(
        self, codes: torch.Tensor, rc_average: bool, annotation: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        out = self(codes, annotation)
        pred = {
            "expression": out["expression"],
            "density": out["density"],
            "operon": torch.sigmoid(out["operon_logit"]),
        }
        if rc_average:
            rc = self(rc_codes(codes), None if annotation is None else rc_annotation(annotation))
            pred = {
                "expression": 0.5 * (pred["expression"] + rc_track(rc["expression"])),
                "density": 0.5 * (pred["density"] + rc_track(rc["density"])),
                "operon": 0.5 * (pred["operon"] + rc_track(torch.sigmoid(rc["operon_logit"]))),
            }
        return pred

    def _augment(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        # Reverse-complement half the windows: same biology on the other strand, so the
        # strand rows of every target swap along with the sequence.
        codes, expr, mask, dens, oper = batch[:5]
        flip = torch.rand(codes.shape[0], device=codes.device) < 0.5
        f2, f3 = flip[:, None], flip[:, None, None]
        out = (
            torch.where(f2, rc_codes(codes), codes),
            torch.where(f3, rc_track(expr), expr),
            torch.where(f3, rc_track(mask), mask),
            torch.where(f3, rc_track(dens), dens),
            torch.where(f3, rc_track(oper), oper),
        )
        # The annotation flags swap strands with the sequence (features.rc_annotation).
        return out + tuple(torch.where(f2, rc_annotation(a), a) for a in batch[5:])

    def loss_terms(self, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        """Unweighted per-head losses of ``batch`` = (codes, expression, mask, density, operon[,
        annotation])."""
        codes, expr, mask, dens, oper = batch[:5]
        out = self(codes, batch[5] if len(batch) > 5 else None)
        m = mask.float()
        sq = (out["expression"].float() - expr) ** 2
        expression = (sq * m).sum() / m.sum().clamp_min(1.0)
        if self.config.density_loss == "poisson":
            density = F.poisson_nll_loss(out["density"].float(), dens, log_input=False, full=True, eps=1e-6)
        else:
            density = F.mse_loss(out["density"].float(), dens)
        operon = F.binary_cross_entropy_with_logits(out["operon_logit"].float(), oper)
        return {"expression": expression, "density": density, "operon": operon}

    def loss(self, batch: tuple[torch.Tensor, ...]) -> LossOutput:
        if self.training and self.config.rc_augment:
            batch = self._augment(batch)
        terms = self.loss_terms(batch)
        w = self.config.loss_weights
        total = sum(w[k] * v for k, v in terms.items())
        return LossOutput(total, {f"loss_{k}": v for k, v in terms.items()}, n=int(batch[0].shape[0]))
