"""deconv, issue 19: the NNLS-informed presence head (model.presence_from_nnls)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from genomelab.deconv.model import DeconvNet, DeconvNetConfig


def _net(presence_from_nnls: bool, seed: int = 0) -> DeconvNet:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    ref = rng.uniform(0, 1, (40, 3))
    cfg = DeconvNetConfig(n_regions=40, n_tissues=3, hidden=[8], presence_from_nnls=presence_from_nnls)
    return DeconvNet(cfg, fill=ref.mean(1), reference=ref), ref


def test_untrained_presence_is_the_nnls_call():
    net, ref = _net(True)
    props = np.array([[0.9, 0.08, 0.02], [0.985, 0.005, 0.01], [0.5, 0.5, 0.0]])
    out = net.raw_outputs(torch.tensor(props @ ref.T, dtype=torch.float32))
    np.testing.assert_allclose(out["nnls"].numpy(), props, atol=2e-3)
    # logit = log(NNLS + floor) - log(0.01): present exactly where NNLS reaches the call level.
    expect = (out["nnls"] + net.PRIOR_FLOOR) / ((out["nnls"] + net.PRIOR_FLOOR) + 0.01)
    np.testing.assert_allclose(out["presence"].numpy(), expect.numpy(), rtol=1e-4)
    assert (out["presence"][0] > 0.5).all() and out["presence"][1, 1] < 0.5 and out["presence"][2, 2] < 0.05


def test_presence_terms_are_trained_and_optional():
    net, ref = _net(True)
    names = {n for n, _ in net.named_parameters()}
    assert {"presence_scale", "presence_offset"} <= names
    x = torch.tensor(np.array([[0.7, 0.2, 0.1]]) @ ref.T, dtype=torch.float32)
    y = torch.tensor([[0.7, 0.2, 0.1]])
    net.loss((x, y)).loss.backward()
    assert net.presence_offset.grad is not None and net.presence_offset.grad.abs().sum() > 0
    plain, _ = _net(False)
    assert "presence_scale" not in {n for n, _ in plain.named_parameters()}
    with pytest.raises(ValueError, match="presence_from_nnls"):
        DeconvNetConfig(n_regions=4, n_tissues=2, hidden=[4], presence_from_nnls=True, nnls_prior=False)
