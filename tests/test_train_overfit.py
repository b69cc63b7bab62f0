"""The shared overfit-a-tiny-subset check: a wired model memorises 8 samples, a broken one fails."""

from __future__ import annotations

import logging

import pytest
import torch
from genomelab.diagnostics import FAIL, PASS, DiagnosticResult
from genomelab.train import LossOutput
from genomelab.train.overfit import fit_tiny_batch, loss_report, overfit_check, terms_report
from torch import nn

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class Classifier(nn.Module):
    """[batch, 6] -> logits [batch, 4], with dropout (the loop trains in train mode)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> LossOutput:
        x, y = batch
        logits = self(x)
        nll = nn.functional.cross_entropy(logits, y)
        acc = (logits.argmax(1) == y).float().mean()
        return LossOutput(nll, {"nll": nll, "accuracy": acc}, len(y))


def eight_samples() -> tuple[torch.Tensor, torch.Tensor]:
    """8 random inputs [8, 6] with arbitrary labels [8] in 4 classes: learnable only by memorising."""
    g = torch.Generator().manual_seed(5)
    return torch.randn(8, 6, generator=g), torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])


def fresh(seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    return Classifier()


def memorise(model: Classifier, batch: tuple[torch.Tensor, torch.Tensor]) -> DiagnosticResult:
    """The check as a module runs it: loss below 0.05 and every sample right after 150 steps."""
    return overfit_check(
        model,
        batch,
        8,
        steps=150,
        lr=1e-2,
        report=terms_report("nll", "accuracy"),
        max_final_loss=0.05,
        min_accuracy=1.0,
    )


def test_a_wired_model_memorises_eight_samples():
    batch = eight_samples()
    model = fresh()
    with torch.no_grad():
        start = float(model.loss(batch).loss)
    result = memorise(model, batch)
    assert result.status == PASS, result.message
    assert result.details["loss"] < 0.05 < start and result.details["accuracy"] == 1.0
    assert "after training on 8 examples" in result.message
    assert not model.training  # reported, and left, in eval mode


def test_same_seed_gives_the_same_report():
    batch = eight_samples()
    a = fit_tiny_batch(fresh(3), batch, 20, 1e-2, terms_report("nll", "accuracy"))
    b = fit_tiny_batch(fresh(3), batch, 20, 1e-2, terms_report("nll", "accuracy"))
    c = fit_tiny_batch(fresh(4), batch, 20, 1e-2, terms_report("nll", "accuracy"))
    assert a == b and a != c


def test_frozen_weights_fail_the_check_with_a_warning(caplog):
    batch = eight_samples()
    model = fresh()
    for p in model.parameters():
        p.requires_grad_(False)
    before = loss_report(model.eval(), batch)["loss"]
    with caplog.at_level(logging.WARNING, logger="genomelab.train.overfit"):
        result = overfit_check(model, batch, 8, steps=50, lr=1e-2, max_final_loss=0.05)
    assert result.status == FAIL and "wiring is broken" in result.message
    assert result.details == {"loss": before}  # nothing could move
    assert "the loss has no gradient" in caplog.text


def test_a_model_that_cannot_fit_fails():
    # Only the output bias learns: a constant prediction cannot separate 4 classes of 2 each.
    batch = eight_samples()
    model = fresh()
    for name, p in model.named_parameters():
        p.requires_grad_(name == "net.3.bias")
    result = memorise(model, batch)
    assert result.status == FAIL, result.message
    assert result.details["loss"] > 0.5


@pytest.mark.parametrize(
    ("steps", "lr", "match"), [(0, 1e-2, "steps must be >= 1"), (5, 0.0, "lr must be > 0")]
)
def test_bad_arguments_raise(steps, lr, match):
    with pytest.raises(ValueError, match=match):
        fit_tiny_batch(fresh(), eight_samples(), steps, lr)
