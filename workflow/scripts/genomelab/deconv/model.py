"""The two-stage deconvolution network and its plain variant (one code path).

Input: mixture betas x [B, M] over the reference's marker regions (NaN = no read).
A shared MLP trunk feeds

- a proportion head (softmax over tissues), trained with squared error against the true
  proportions;
- with ``two_stage``, a presence head (a sigmoid per tissue), trained with BCE against
  presence = true proportion >= ``presence_target`` (1%), plus an L1 penalty on the
  proportion mass given to tissues the presence head calls absent (with
  ``sparsity_below_nnls`` < 1 only to those whose NNLS proportion is below it). (A plain L1 norm of a
  softmax output is always 1, so the penalty has to act on that mass: it pushes the
  proportion head to agree with the presence head, so that the hard mask below removes
  little mass.) At inference tissues with presence probability below their threshold are
  masked to 0 and the rest renormalised. The thresholds (a buffer [T], ``presence_threshold``
  until calibrated) are set on validation mixtures after training
  (:mod:`genomelab.deconv.calibrate`), and a tissue whose NNLS proportion reaches
  ``nnls_guard`` is never masked. With ``presence_from_nnls`` the presence logits also get a
  per-tissue affine term of the log NNLS proportion (an NNLS-informed presence test that
  training refines). With ``log_prior_input`` the trunk sees those proportions on a log
  scale balanced against the betas (issue 19: seen raw, they were drowned among thousands
  of betas and the presence head stayed at chance for the epochs the budget allowed).

``two_stage: false`` drops the presence head, its loss terms and the mask: the plain
proportion model that let absent tissues steal mass in the project's history.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from genomelab.config import ConfigSection, from_schema, typed_config
from genomelab.train.engine import LossOutput
from genomelab.train.export import ExportedModel, load_exported

logger = logging.getLogger(__name__)


@dataclass
class DeconvNetConfig(ConfigSection):
    """Sizes, loss weights and thresholds of :class:`DeconvNet`."""

    SECTION = "deconv.model"

    n_regions: int
    n_tissues: int
    hidden: list[int] = from_schema("deconv.model.hidden")
    dropout: float = from_schema("deconv.model.dropout")
    two_stage: bool = True
    nnls_prior: bool = from_schema("deconv.model.nnls_prior")
    prior_weight_floor: float = from_schema("deconv.model.prior_weight_floor")
    log_prior_input: bool = from_schema("deconv.model.log_prior_input")
    presence_threshold: float = from_schema("deconv.model.presence_threshold")
    nnls_guard: float = from_schema("deconv.model.nnls_guard")
    presence_from_nnls: bool = from_schema("deconv.model.presence_from_nnls")
    calibrate: bool = from_schema("deconv.model.calibrate")
    calibrate_per_tissue: bool = from_schema("deconv.model.calibrate_per_tissue")
    calibrate_choice: str = from_schema("deconv.model.calibrate_choice")
    presence_target: float = from_schema("deconv.presence_threshold")
    mse_weight: float = from_schema("deconv.model.loss_weights.mse")
    presence_weight: float = from_schema("deconv.model.loss_weights.presence")
    sparsity_weight: float = from_schema("deconv.model.loss_weights.sparsity")
    sparsity_below_nnls: float = from_schema("deconv.model.sparsity_below_nnls")

    def __post_init__(self) -> None:
        if self.n_regions < 1 or self.n_tissues < 2:
            raise ValueError(
                f"model needs >= 1 region and >= 2 tissues, not {self.n_regions} and {self.n_tissues}"
            )
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"model.hidden must list positive layer sizes, not {self.hidden}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"model.dropout must be in [0, 1), not {self.dropout}")
        if not 0 < self.presence_threshold < 1:
            raise ValueError(f"model.presence_threshold must be in (0, 1), not {self.presence_threshold}")
        if self.prior_weight_floor < 0:
            raise ValueError(f"model.prior_weight_floor must be >= 0, not {self.prior_weight_floor}")
        if not 0 < self.nnls_guard <= 1:
            raise ValueError(f"model.nnls_guard must be in (0, 1], not {self.nnls_guard}")
        if not 0 < self.presence_target < 1:
            raise ValueError(
                f"presence_threshold (true proportion) must be in (0, 1), not {self.presence_target}"
            )
        if not 0 < self.sparsity_below_nnls <= 1:
            raise ValueError(f"model.sparsity_below_nnls must be in (0, 1], not {self.sparsity_below_nnls}")
        self._check_needs_nnls_prior()
        if self.calibrate_choice not in ("highest", "fewest_spurious"):
            raise ValueError(
                f"model.calibrate_choice must be 'highest' or 'fewest_spurious', not {self.calibrate_choice!r}"
            )
        for name in ("mse_weight", "presence_weight", "sparsity_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"model.loss_weights: {name} must be >= 0, not {getattr(self, name)}")

    def _check_needs_nnls_prior(self) -> None:
        """Options that read the NNLS proportions need ``nnls_prior`` (which computes them).
        The two that only shape the prior (``log_prior_input``, ``prior_weight_floor``, on by
        default) are switched off without one, so the exported config says what was used."""
        if self.nnls_prior:
            return
        self.log_prior_input, self.prior_weight_floor = False, 0.0
        needs = {
            "sparsity_below_nnls < 1": (self.sparsity_below_nnls < 1, "the NNLS proportions it reads"),
            "presence_from_nnls": (self.presence_from_nnls, "the NNLS proportions it reads"),
        }
        for name, (on, why) in needs.items():
            if on:
                raise ValueError(f"model.{name} needs model.nnls_prior ({why})")

    @classmethod
    def from_config(
        cls, model: dict[str, Any], n_regions: int, n_tissues: int, two_stage: bool, presence_target: float
    ) -> DeconvNetConfig:
        """Build from the ``deconv.model`` config section (loss weights nested)."""
        values = dict(model)
        weights = values.pop("loss_weights", {}) or {}
        unknown = sorted(set(weights) - {"mse", "presence", "sparsity"})
        if unknown:
            raise ValueError(
                f"unknown option {cls.SECTION}.loss_weights.{unknown[0]}; known: mse, presence, sparsity"
            )
        return typed_config(
            cls,
            {**values, **{f"{k}_weight": float(v) for k, v in weights.items()}},
            where=cls.SECTION,
            n_regions=n_regions,
            n_tissues=n_tissues,
            two_stage=two_stage,
            presence_target=presence_target,
        )


class DeconvNet(nn.Module):
    """MLP trunk, proportion head and (two-stage) presence head; see the module docstring.

    ``fill`` [M] replaces missing inputs (the mean reference profile) and is subtracted from
    every input, so a missing region contributes exactly nothing. With ``nnls_prior`` the
    network also sees the NNLS solution against ``reference`` [M, T] (computed in the
    forward pass, on the model's device) and its proportion head predicts a correction of
    the NNLS log-proportions; that head starts at zero, so the untrained network *is* NNLS
    and training can only have to improve on it (an MLP that must rediscover least squares
    from a few thousand mixtures loses accuracy to NNLS; see docs/deconv.md).
    """

    PRIOR_FLOOR = 1e-4

    def __init__(
        self,
        cfg: DeconvNetConfig,
        fill: np.ndarray | torch.Tensor | None = None,
        reference: np.ndarray | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        fill_t = (
            torch.full((cfg.n_regions,), 0.5) if fill is None else torch.as_tensor(fill, dtype=torch.float32)
        )
        if fill_t.shape != (cfg.n_regions,):
            raise ValueError(f"fill must have shape [{cfg.n_regions}], not {tuple(fill_t.shape)}")
        self.register_buffer("fill", fill_t.clone())
        if cfg.nnls_prior:
            ref_t = (
                torch.zeros(cfg.n_regions, cfg.n_tissues)
                if reference is None
                else torch.as_tensor(np.asarray(reference), dtype=torch.float32)
            )
            if ref_t.shape != (cfg.n_regions, cfg.n_tissues):
                raise ValueError(
                    f"reference must have shape [{cfg.n_regions}, {cfg.n_tissues}], not {tuple(ref_t.shape)}"
                )
            self.register_buffer("reference", ref_t.clone())
        # Whether the reference leaves room for the weighted prior's offset: found once per
        # reference (the first forward after construction or loading), not per batch.
        self._offset_ok: bool | None = None
        self.register_load_state_dict_post_hook(lambda module, _keys: setattr(module, "_offset_ok", None))
        layers: list[nn.Module] = []
        width = cfg.n_regions + (cfg.n_tissues if cfg.nnls_prior else 0)
        for h in cfg.hidden:
            layers += [nn.Linear(width, int(h)), nn.LayerNorm(int(h)), nn.GELU(), nn.Dropout(cfg.dropout)]
            width = int(h)
        self.trunk = nn.Sequential(*layers)
        self.proportion_head = nn.Linear(width, cfg.n_tissues)
        if cfg.nnls_prior:
            nn.init.zeros_(self.proportion_head.weight)
            nn.init.zeros_(self.proportion_head.bias)
        self.presence_head = nn.Linear(width, cfg.n_tissues) if cfg.two_stage else None
        self.nnls_presence = cfg.two_stage and cfg.nnls_prior and cfg.presence_from_nnls
        if self.nnls_presence:
            # Presence logit = scale * log(NNLS proportion) + offset + a learned correction; it
            # starts as "NNLS gives the tissue >= presence_target" (logit 0 there).
            self.presence_scale = nn.Parameter(torch.ones(cfg.n_tissues))
            self.presence_offset = nn.Parameter(
                torch.full((cfg.n_tissues,), -float(np.log(cfg.presence_target)))
            )
            nn.init.zeros_(self.presence_head.weight)
            nn.init.zeros_(self.presence_head.bias)
        # Per-tissue presence thresholds of the mask, calibrated after training.
        self.register_buffer("thresholds", torch.full((cfg.n_tissues,), float(cfg.presence_threshold)))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """x [B, M] -> ``proportions`` [B, T] (softmax), ``presence_logits`` [B, T] (two-stage)
        and ``nnls`` [B, T] (the NNLS proportions, with ``nnls_prior``)."""
        xf = torch.where(torch.isnan(x), self.fill, x) - self.fill
        if self.cfg.nnls_prior:
            from genomelab.deconv.nnls import nnls_torch

            # prior_weight_floor > 0: the weighted NNLS with an offset (deconvolve_weighted).
            floor = self.cfg.prior_weight_floor or None
            raw = nnls_torch(
                self.reference, x, weight_floor=floor, offset=self._offset_room() if floor else None
            )
            prior = (raw / raw.sum(-1, keepdim=True).clamp_min(1e-12)).to(xf.dtype)
            log_prior = torch.log(prior + self.PRIOR_FLOOR)
            z = self.trunk(torch.cat([xf, self._prior_features(prior, log_prior)], dim=-1))
            logits = log_prior + self.proportion_head(z)
        else:
            z = self.trunk(xf)
            logits = self.proportion_head(z)
        out = {"proportions": torch.softmax(logits, dim=-1)}
        if self.cfg.nnls_prior:
            out["nnls"] = prior
        if self.presence_head is not None:
            out["presence_logits"] = self.presence_head(z)
            if self.nnls_presence:
                out["presence_logits"] = (
                    out["presence_logits"] + self.presence_scale * log_prior + self.presence_offset
                )
        return out

    def _offset_room(self) -> bool:
        """``self._offset_ok``, found (and warned about) on first use for this reference."""
        if self._offset_ok is None:
            from genomelab.deconv.nnls import offset_room

            self._offset_ok = offset_room(self.reference.double().cpu().numpy())
            if not self._offset_ok:
                logger.warning(
                    "the reference's tissues nearly span a constant profile: the prior is plain NNLS, "
                    "not the weighted NNLS with an offset (model.prior_weight_floor %g has no effect)",
                    self.cfg.prior_weight_floor,
                )
        return self._offset_ok

    def _prior_features(self, prior: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
        """The NNLS proportions [B, T] as the trunk sees them. With ``log_prior_input`` on a
        log scale mapped to [0, 1] (0 = absent, 1 = the whole sample) times sqrt(M / T), so
        that the T of them weigh as much as the M beta inputs in the first layer (whose
        initial weights scale with 1 / sqrt(M + T)). Issue 19: presence is decided between 0
        and ~1 %, where the raw proportions are ~0.01 next to thousands of betas of ~0.5;
        the trunk took ~10 epochs to find them and the presence head sat at chance."""
        if not self.cfg.log_prior_input:
            return prior
        floor = float(np.log(self.PRIOR_FLOOR))
        scale = float(np.sqrt(self.cfg.n_regions / self.cfg.n_tissues))
        return (log_prior - floor) / -floor * scale

    def finalize(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """Final proportions [B, T]: the hard presence mask and renormalisation (two-stage)."""
        p = out["proportions"]
        if self.presence_head is None:
            return p
        prob = torch.sigmoid(out["presence_logits"])
        keep = prob >= self.thresholds
        if "nnls" in out:
            # Clear evidence in the data: NNLS itself gives the tissue nnls_guard or more.
            keep = keep | (out["nnls"] >= self.cfg.nnls_guard)
        # A sample with no tissue above the threshold keeps its most likely tissue.
        top = F.one_hot(prob.argmax(-1), p.shape[-1]).bool()
        keep = torch.where(keep.any(-1, keepdim=True), keep, top)
        q = p * keep
        return q / q.sum(-1, keepdim=True).clamp_min(1e-12)

    @torch.no_grad()
    def raw_outputs(self, x: torch.Tensor, batch_size: int = 4096) -> dict[str, torch.Tensor]:
        """``forward``'s outputs for x [B, M] in eval mode, in batches (presence as probabilities)."""
        was = self.training
        self.eval()
        outs = [self(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        self.train(was)
        res = {k: torch.cat([o[k] for o in outs]) for k in outs[0]} if outs else {}
        if "presence_logits" in res:
            res["presence"] = torch.sigmoid(res.pop("presence_logits"))
        return res

    @torch.no_grad()
    def predict(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Final proportions [B, T] for x [B, M], in eval mode, in batches."""
        was = self.training
        self.eval()
        outs = [self.finalize(self(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
        self.train(was)
        return torch.cat(outs) if outs else torch.zeros(0, self.cfg.n_tissues, device=x.device)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> LossOutput:
        """batch = (x [B, M], y [B, T] true proportions)."""
        x, y = batch
        out = self(x)
        p = out["proportions"].float()
        cfg = self.cfg
        # Squared error summed over tissues, averaged over samples: on the same scale as
        # the BCE (a per-entry mean would be ~T times smaller and drown in it).
        mse = ((p - y) ** 2).sum(-1).mean()
        present = (y >= cfg.presence_target).float()
        terms: dict[str, torch.Tensor] = {"mse_loss": mse}
        total = cfg.mse_weight * mse
        if self.presence_head is not None:
            logits = out["presence_logits"].float()
            bce = F.binary_cross_entropy_with_logits(logits, present)
            prob = torch.sigmoid(logits)
            push = p * (1 - prob.detach())
            if cfg.sparsity_below_nnls < 1:
                # Issue 19: only where NNLS is low too, so the presence head's errors on a
                # tissue NNLS sees cannot teach the proportion head to drop it.
                push = push * (out["nnls"] < cfg.sparsity_below_nnls).to(push.dtype)
            sparsity = push.sum(-1).mean()
            total = total + cfg.presence_weight * bce + cfg.sparsity_weight * sparsity
            terms.update(presence_loss=bce, sparsity_loss=sparsity)
            called = prob >= cfg.presence_threshold
        else:
            called = p >= cfg.presence_target
        terms["presence_accuracy"] = (called.float() == present).float().mean()
        terms["total_loss"] = total.detach()
        return LossOutput(total, {k: v.detach() for k, v in terms.items()}, n=len(x))


# Kind of the deconvolution network's exported model (train/export.py).
KIND = "deconv"


def weighted_floor(model: DeconvNet) -> float:
    """The weight floor of the weighted NNLS reported beside ``model``: its prior's
    (``prior_weight_floor`` of a network with a weighted NNLS prior), else the default
    (``nnls.WEIGHT_FLOOR``), so that a network with a plain prior or none is still shown
    next to the estimator that met issue 19's bar."""
    from genomelab.deconv.nnls import WEIGHT_FLOOR

    floor = model.cfg.prior_weight_floor if model.cfg.nnls_prior else 0.0
    return float(floor) or WEIGHT_FLOOR


def check_prior_reference(model: DeconvNet, profiles: np.ndarray, source: str) -> None:
    """Refuse ``profiles`` [R, T] (the reference NNLS runs against, read from ``source``) that
    differ from those ``model``'s NNLS prior was trained with: NNLS and the network would
    then be computed against different references. Nothing to check without a prior."""
    if not hasattr(model, "reference"):
        return
    prior = model.reference.double().cpu().numpy()
    if prior.shape != np.shape(profiles) or not np.allclose(prior, profiles, rtol=0, atol=1e-6):
        worst = float(np.abs(prior - profiles).max()) if prior.shape == np.shape(profiles) else float("nan")
        raise ValueError(
            f"{source}: profiles differ from those the model's NNLS prior was trained with "
            f"(by up to {worst:.3g}); give the reference of the model's run"
        )


def weighted_record(model: DeconvNet, profiles: np.ndarray) -> dict[str, Any]:
    """What the weighted NNLS reported beside ``model`` against ``profiles`` [R, T] is:
    ``weight_floor`` (:func:`weighted_floor`), ``offset`` (False where the reference nearly
    spans a constant profile, so ``deconvolve_weighted`` is plain NNLS) and
    ``network_prior`` (it is the network's own prior, not the default floor beside a network
    with a plain prior or none)."""
    from genomelab.deconv.nnls import offset_room

    return {
        "weight_floor": weighted_floor(model),
        "offset": offset_room(profiles),
        "network_prior": bool(model.cfg.nnls_prior and model.cfg.prior_weight_floor > 0),
    }


def load_model(path: Any, regions: Any = None, tissues: Any = None) -> tuple[DeconvNet, ExportedModel]:
    """The network of an exported ``model.pt`` (eval mode, CPU) and the file's content.

    ``regions``/``tissues``, when given, must be the file's ID lists (in order)."""
    expect = {k: v for k, v in (("regions", regions), ("tissues", tissues)) if v is not None}
    exported = load_exported(path, expect_ids=expect, kind=KIND)
    # Models exported before these options existed used the plain NNLS prior, fed raw (their
    # defaults have changed since; the weights would load either way, the answers would not).
    before = {"prior_weight_floor": 0.0, "log_prior_input": False}
    model = DeconvNet(DeconvNetConfig(**{**before, **exported.config}))
    model.load_state_dict(exported.weights)
    model.eval()
    return model, exported
