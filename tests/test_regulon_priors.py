"""regulon: heads start at their label priors, so the untrained loss is the chance level."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from genomelab.diagnostics.checks import initial_loss_vs_chance
from genomelab.diagnostics.core import PASS
from genomelab.regulon.diagnostics import chance_losses
from genomelab.regulon.model import LabelPriors, RegulonModelConfig, RegulonNet
from genomelab.regulon.targets import WindowTensors

pytestmark = pytest.mark.usefixtures("one_torch_thread")
OPERON_RATE = 0.066  # RegulonDB's own operon set: 6.6% of positions positive


def _windows(
    rng: np.random.Generator, cfg: RegulonModelConfig, n: int = 32, window_bp: int = 1024
) -> WindowTensors:
    """Random sequence; operon labels at 6.6%; expression z off-centre; density a count."""
    r, b = window_bp // cfg.resolution_bp, window_bp // cfg.bin_bp
    mask = rng.random((n, 2, r)) < 0.4
    return WindowTensors(
        rng.integers(0, 4, (n, window_bp), dtype=np.uint8),
        np.where(mask, rng.normal(1.5, 1.0, (n, 2, r)), 0).astype(np.float32),
        mask,
        rng.poisson(2.5, (n, 2, b)).astype(np.float32),
        (rng.random((n, 2, r)) < OPERON_RATE).astype(np.float32),
        np.zeros(n, np.int64),
    )


def _untrained(model: RegulonNet, t: WindowTensors) -> dict[str, float]:
    batch = tuple(
        torch.from_numpy(a) for a in (t.codes, t.expression, t.expression_mask, t.density, t.operon)
    )
    model.eval()
    with torch.no_grad():
        return {k: float(v) for k, v in model.loss_terms(batch).items()}


@pytest.mark.parametrize("density_loss", ["mse", "poisson"])
def test_model_built_for_a_6_6_percent_prior_starts_at_chance(density_loss):
    rng = np.random.default_rng(0)
    cfg = RegulonModelConfig(channels=32, n_layers=3, density_loss=density_loss, inputs="sequence")
    t = _windows(rng, cfg)
    priors = LabelPriors.from_targets(t.expression, t.expression_mask, t.density, t.operon)
    assert abs(priors.operon_rate - OPERON_RATE) < 0.01
    torch.manual_seed(0)
    model = RegulonNet(cfg)
    model.set_priors(priors)
    assert torch.sigmoid(model.operon_head.bias).allclose(torch.tensor(priors.operon_rate), atol=1e-6)
    terms, chance = _untrained(model, t), chance_losses(t, density_loss)
    for head in ("operon", "expression", "density"):
        assert terms[head] <= 1.10 * chance[head], (head, terms[head], chance[head])
        # The gate's check, with its threshold unchanged, passes by construction.
        assert initial_loss_vs_chance(terms[head], chance[head], max_ratio=3.0).status == PASS


def test_without_priors_the_gate_check_still_catches_it():
    """The same network with its biases at zero is far above chance on a 6.6% label:
    the check is kept as it was, and it is the initialisation that moved."""
    rng = np.random.default_rng(1)
    cfg = RegulonModelConfig(channels=32, n_layers=3, inputs="sequence")
    t = _windows(rng, cfg)
    torch.manual_seed(0)
    model = RegulonNet(cfg)  # biases 0: P(operon) about 0.5 everywhere
    terms, chance = _untrained(model, t), chance_losses(t, "mse")
    assert terms["operon"] > 0.9 * math.log(2)
    assert terms["operon"] / chance["operon"] > 2.5
    assert terms["density"] / chance["density"] > 1.5
