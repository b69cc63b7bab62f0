"""A small contrastive encoder of contig composition (self-supervised, NT-Xent).

Input of one view: the log k-mer frequencies of the view groups (``log(x + pseudocount)``),
standardised with the column means and SDs of the training contigs (buffers, so they travel
with the exported model), followed by the contig's ``n_depth`` abundance columns (the same
for every view: a fragment's coverage is its contig's). The encoder is an MLP
``n_inputs -> hidden... -> embedding``; the loss sees the L2-normalised embedding.

Loss: NT-Xent (SimCLR's normalised temperature-scaled cross-entropy). A batch of ``b``
contigs gives ``2b`` views, two per contig; each view's positive is the other view of its
contig, its negatives the ``2b - 2`` views of the other contigs in the batch. In training
the two views are drawn at random from the contig's ``1 + n_views`` views (two different
ones; torch's RNG, which checkpoints carry, so a resumed run draws the same pairs); in
evaluation they are always view 0 (whole contig) and view 1, so validation losses of
different epochs are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from genomelab.binning.contrastive_views import check_groups, group_columns
from genomelab.binning.model import _mlp
from genomelab.config import ConfigSection, from_schema
from genomelab.train.engine import LossOutput


@dataclass
class ContrastiveConfig(ConfigSection):
    SECTION = "binning.model.contrastive"

    n_depth: int = 0
    groups: tuple[str, ...] = from_schema("binning.model.contrastive.groups")
    n_views: int = from_schema("binning.model.contrastive.n_views")
    min_fraction: float = from_schema("binning.model.contrastive.min_fraction")
    min_bp: int = from_schema("binning.model.contrastive.min_bp")
    hidden: tuple[int, ...] = from_schema("binning.model.contrastive.hidden")
    embedding: int = from_schema("binning.model.contrastive.embedding")
    dropout: float = from_schema("binning.model.contrastive.dropout")
    temperature: float = from_schema("binning.model.contrastive.temperature")
    pseudocount: float = from_schema("binning.model.contrastive.pseudocount")

    def __post_init__(self) -> None:
        self.groups = check_groups(list(self.groups))
        self.hidden = tuple(int(h) for h in self.hidden)
        checks = {
            "hidden": bool(self.hidden) and all(h >= 1 for h in self.hidden),
            "n_views": self.n_views >= 1,
            "min_fraction": 0 < self.min_fraction <= 1,
            "min_bp": self.min_bp >= 1,
            "embedding": self.embedding >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "temperature": self.temperature > 0,
            "pseudocount": self.pseudocount > 0,
            "n_depth": self.n_depth >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid contrastive model option(s) {bad}: "
                + ", ".join(f"{k}={getattr(self, k)!r}" for k in bad)
            )

    @property
    def n_columns(self) -> int:
        return len(group_columns(self.groups))

    @property
    def n_inputs(self) -> int:
        return self.n_columns + self.n_depth


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent of the pairs ``(z1[i], z2[i])`` [b, d]; every other row of both is a negative."""
    z = F.normalize(torch.cat([z1, z2]).float(), dim=1)
    b = len(z1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))  # a view is not its own negative
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)]).to(z.device)
    return F.cross_entropy(sim, target)


class ContrastiveEncoder(nn.Module):
    """MLP encoder trained with NT-Xent on pairs of views of the same contig."""

    def __init__(
        self, config: ContrastiveConfig, mean: np.ndarray | None = None, sd: np.ndarray | None = None
    ):
        super().__init__()
        self.config = config
        n = config.n_columns
        self.register_buffer(
            "mean", torch.zeros(n) if mean is None else torch.as_tensor(mean, dtype=torch.float32)
        )
        self.register_buffer("sd", torch.ones(n) if sd is None else torch.as_tensor(sd, dtype=torch.float32))
        self.encoder = nn.Sequential(
            _mlp([config.n_inputs, *config.hidden], config.dropout),
            nn.Linear(config.hidden[-1], config.embedding),
        )

    @staticmethod
    def log_profile(x: torch.Tensor | np.ndarray, pseudocount: float) -> Any:
        """Log frequencies (the scale on which columns are standardised)."""
        if isinstance(x, np.ndarray):
            return np.log(x.astype(np.float64) + pseudocount)
        return torch.log(x.float() + pseudocount)

    @classmethod
    def standardiser(cls, columns: np.ndarray, pseudocount: float) -> tuple[np.ndarray, np.ndarray]:
        """Column means and SDs [n_columns] of ``log(columns + pseudocount)`` [n, n_columns]."""
        logged = cls.log_profile(columns, pseudocount)
        sd = logged.std(axis=0)
        return logged.mean(axis=0).astype(np.float32), np.where(sd > 0, sd, 1.0).astype(np.float32)

    def inputs(self, columns: torch.Tensor, depth: torch.Tensor | None = None) -> torch.Tensor:
        """[..., n_columns] profile columns (+ [..., n_depth] abundances) -> [..., n_inputs]."""
        x = (self.log_profile(columns, self.config.pseudocount) - self.mean) / self.sd
        if self.config.n_depth:
            if depth is None:
                raise ValueError(f"the model takes {self.config.n_depth} abundance columns, none given")
            x = torch.cat([x, depth.float()], dim=-1)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[b, n_inputs] -> [b, embedding]."""
        return self.encoder(x)

    def pick_views(self, views: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two different views per contig: [b, V, C] -> ([b, C], [b, C])."""
        b, n_views = views.shape[:2]
        rows = torch.arange(b, device=views.device)
        if not self.training:
            return views[:, 0], views[:, 1]
        first = torch.randint(0, n_views, (b,)).to(views.device)
        second = (first + torch.randint(1, n_views, (b,)).to(views.device)) % n_views
        return views[rows, first], views[rows, second]

    def loss(self, batch: Any) -> LossOutput:
        views, depth = batch
        a, b = self.pick_views(views)
        z1, z2 = self(self.inputs(a, depth)), self(self.inputs(b, depth))
        loss = nt_xent(z1, z2, self.config.temperature)
        # Chance level: log(2b - 1), the loss of an encoder that knows nothing.
        return LossOutput(loss, {"nt_xent": loss.detach()}, n=len(views))

    @torch.no_grad()
    def embed(self, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """[n, 2761 + n_depth] whole-contig model inputs -> [n, embedding] (eval mode)."""
        from genomelab.binning.kmers import N_FEATURES

        was_training = self.training
        self.eval()
        columns = torch.as_tensor(group_columns(self.config.groups), device=x.device)
        out = []
        for i in range(0, len(x), batch_size):
            xb = x[i : i + batch_size]
            depth = xb[:, N_FEATURES:] if self.config.n_depth else None
            out.append(self(self.inputs(xb[:, columns], depth)).float())
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.config.embedding)
