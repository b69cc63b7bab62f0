"""The shared training engine: learning, early stopping, checkpoints, resumption, signals."""

from __future__ import annotations

import json
import os
import random
import signal

import numpy as np
import pytest
import torch
from genomelab.train import (
    CheckpointError,
    LossOutput,
    TrainConfig,
    Trainer,
    TrainingInterrupted,
    load_checkpoint,
)
from genomelab.train.engine import config_fingerprint
from torch import nn
from torch.utils.data import Dataset, Subset, TensorDataset


class TinyClassifier(nn.Module):
    """[batch, 8] -> logits [batch, 3]; dropout makes RNG state matter for resumption."""

    def __init__(self, fail_after: int | None = None, signal_after: int | None = None) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
        self.calls = 0
        self.fail_after = fail_after
        self.signal_after = signal_after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, batch) -> LossOutput:
        if self.training:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise KeyboardInterrupt("simulated kill -9")
            if self.signal_after is not None and self.calls == self.signal_after:
                os.kill(os.getpid(), signal.SIGTERM)
        x, y = batch
        logits = self(x)
        ce = nn.functional.cross_entropy(logits, y)
        return LossOutput(ce, {"ce": ce, "acc": (logits.argmax(1) == y).float().mean()}, len(y))


def easy_data(n: int = 240, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return TensorDataset(x, y)


def make_trainer(tmp_path, model_cls=TinyClassifier, model_kwargs=None, **overrides) -> Trainer:
    cfg = dict(max_epochs=6, batch_size=32, lr=2e-2, device="cpu", seed=3, patience=50)
    cfg.update(overrides)
    torch.manual_seed(0)  # identical initial weights in every run
    model = model_cls(**(model_kwargs or {}))
    return Trainer(
        model,
        TrainConfig(**cfg),
        tmp_path / "state",
        tmp_path / "metrics.json",
        tmp_path / "tb",
        device="cpu",
    )


def weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_loss_falls_and_metrics_are_written(tmp_path):
    trainer = make_trainer(tmp_path)
    result = trainer.fit(easy_data(), easy_data(seed=1))
    losses = [h["train/loss"] for h in result.history]
    assert losses[-1] < 0.6 * losses[0]
    assert result.history[-1]["val/acc"] > 0.75
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs_run"] == 6 and len(metrics["history"]) == 6
    assert {"train/loss", "train/ce", "val/loss", "val/ce", "lr"} <= set(metrics["final"])
    assert metrics["stopped_reason"] == "reached max_epochs=6"
    assert any(name.startswith("events.out.tfevents") for name in os.listdir(tmp_path / "tb"))
    assert (tmp_path / "state" / "best.pt").exists() and (tmp_path / "state" / "last.pt").exists()


def test_same_seed_gives_same_weights(tmp_path):
    a = make_trainer(tmp_path / "a")
    a.fit(easy_data(), easy_data(seed=1))
    b = make_trainer(tmp_path / "b")
    b.fit(easy_data(), easy_data(seed=1))
    for k, v in weights(a.model).items():
        assert torch.equal(v, weights(b.model)[k]), k
    # The seed is what decides: without dropout only the batch order draws from it, and
    # another seed (same initial weights) ends elsewhere.
    plain = [make_trainer(tmp_path / f"plain{s}", model_cls=PlainClassifier, seed=s) for s in (3, 3, 4)]
    for trainer in plain:
        trainer.fit(easy_data(), easy_data(seed=1))
    same, other = weights(plain[1].model), weights(plain[2].model)
    assert all(torch.equal(v, same[k]) for k, v in weights(plain[0].model).items())
    assert not all(torch.allclose(v, other[k]) for k, v in weights(plain[0].model).items())


def test_resume_after_kill_equals_uninterrupted_run(tmp_path):
    ref = make_trainer(tmp_path / "ref")
    ref.fit(easy_data(), easy_data(seed=1))
    # A crash half-way through epoch 3 (8 batches per epoch) leaves last.pt of epoch 2.
    crashed = make_trainer(tmp_path / "run", model_kwargs={"fail_after": 8 * 2 + 4})
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(easy_data(), easy_data(seed=1))
    assert load_checkpoint(tmp_path / "run" / "state" / "last.pt")["epoch"] == 2
    resumed = make_trainer(tmp_path / "run")
    result = resumed.fit(easy_data(), easy_data(seed=1))
    assert result.epochs_run == 6
    for k, v in weights(ref.model).items():
        assert torch.equal(v, weights(resumed.model)[k]), k
    ref_hist = [h["val/loss"] for h in ref.history]
    assert [h["val/loss"] for h in result.history] == pytest.approx(ref_hist, rel=0, abs=0)


def test_temporary_files_of_a_killed_checkpoint_write_are_removed(tmp_path, killed_writer):
    """Those of writers killed with -9 go; one whose writer still runs (here this process, as a
    job left running when Snakemake was killed, training in the same folder) stays."""
    from genomelab.io.atomic import atomic_output

    crashed = make_trainer(tmp_path, model_kwargs={"fail_after": 8 * 2 + 4})
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(easy_data(), easy_data(seed=1))
    state = tmp_path / "state"
    # What io.atomic leaves when the process dies between creating and renaming its file.
    killed = [killed_writer(state / "last.pt"), killed_writer(state / "best.pt")]
    (state / "notes.txt").write_text("not ours")
    with atomic_output(state / "best.pt") as live:
        live.write_bytes(b"a checkpoint being written")
        resumed = make_trainer(tmp_path)
        assert resumed.fit(easy_data(), easy_data(seed=1)).epochs_run == 6
        assert live.read_bytes() == b"a checkpoint being written"
        assert not any(k.exists() for k in killed)
        assert sorted(p.name for p in state.iterdir()) == sorted(
            ["best.pt", "last.pt", "notes.txt", live.name]
        )


def test_sparser_epoch_checkpoints_still_resume_exactly(tmp_path):
    ref = make_trainer(tmp_path / "ref", checkpoint_every_epochs=2)
    ref.fit(easy_data(), easy_data(seed=1))
    crashed = make_trainer(
        tmp_path / "run", model_kwargs={"fail_after": 8 * 3 + 2}, checkpoint_every_epochs=2
    )
    with pytest.raises(KeyboardInterrupt):
        crashed.fit(easy_data(), easy_data(seed=1))
    assert load_checkpoint(tmp_path / "run" / "state" / "last.pt")["epoch"] == 2
    resumed = make_trainer(tmp_path / "run", checkpoint_every_epochs=2)
    resumed.fit(easy_data(), easy_data(seed=1))
    for k, v in weights(ref.model).items():
        assert torch.equal(v, weights(resumed.model)[k]), k


def test_sigterm_saves_mid_epoch_and_resume_is_exact(tmp_path):
    ref = make_trainer(tmp_path / "ref", grad_accum_steps=2)
    ref.fit(easy_data(), easy_data(seed=1))
    run = make_trainer(tmp_path / "run", model_kwargs={"signal_after": 11}, grad_accum_steps=2)
    with pytest.raises(TrainingInterrupted) as info:
        run.fit(easy_data(), easy_data(seed=1))
    assert info.value.signum == signal.SIGTERM
    state = load_checkpoint(tmp_path / "run" / "state" / "last.pt")
    assert state["epoch"] == 1 and state["batch_in_epoch"] == 4 and not state["finished"]
    resumed = make_trainer(tmp_path / "run", grad_accum_steps=2)
    resumed.fit(easy_data(), easy_data(seed=1))
    for k, v in weights(ref.model).items():
        assert torch.equal(v, weights(resumed.model)[k]), k


def test_rerun_of_a_finished_run_trains_again_to_the_same_weights(tmp_path):
    first = make_trainer(tmp_path)
    first.fit(easy_data(), easy_data(seed=1))
    again = make_trainer(tmp_path, model_kwargs={"fail_after": 10**9})
    result = again.fit(easy_data(), easy_data(seed=1))
    assert result.epochs_run == 6
    assert again.model.calls == 6 * 8  # trained every batch again, not resumed
    for k, v in weights(first.model).items():
        assert torch.equal(v, weights(again.model)[k]), k


def test_early_stopping_fires_and_says_why(tmp_path):
    # Random labels: validation loss cannot keep improving.
    data = easy_data()
    noisy = TensorDataset(
        data.tensors[0], torch.randint(0, 3, (240,), generator=torch.Generator().manual_seed(5))
    )
    trainer = make_trainer(tmp_path, max_epochs=100, patience=3, lr=5e-2)
    result = trainer.fit(noisy, easy_data(seed=9))
    assert result.epochs_run < 100
    assert "did not improve" in result.stopped_reason and "3 epochs" in result.stopped_reason
    assert result.epochs_run == result.best_epoch + 1 + 3


@pytest.mark.parametrize(
    ("cfg", "values", "stop_epoch", "reason"),
    [
        # Gains of 0.05 and 0.03 are below min_delta 0.1; epochs 1-2 are warm-up (not counted).
        (
            {"patience": 2, "min_delta": 0.1, "early_stopping_warmup": 3},
            [1.0, 0.95, 0.92, 0.85, 0.80, 0.79],
            5,
            "val/loss did not improve by more than 0.1 for 2 epochs (best 0.85 at epoch 3)",
        ),
        # mode max: 0.7 beats 0.5 + 0.1, 0.75 does not beat 0.7 + 0.1.
        (
            {"monitor": "val/acc", "mode": "max", "patience": 1, "min_delta": 0.1},
            [0.5, 0.7, 0.75],
            2,
            "val/acc did not improve by more than 0.1 for 1 epochs (best 0.7 at epoch 1)",
        ),
    ],
)
def test_early_stopping_counts_min_delta_warmup_and_mode_from_the_config(
    tmp_path, cfg, values, stop_epoch, reason
):
    stopper = make_trainer(tmp_path, **cfg).stopper
    monitor = cfg.get("monitor", "val/loss")
    steps = [stopper.step(epoch, {monitor: v}) for epoch, v in enumerate(values)]
    assert [stop for _, stop in steps] == [False] * stop_epoch + [True]
    assert stopper.reason == reason


def test_changed_config_refuses_foreign_checkpoint(tmp_path):
    make_trainer(tmp_path, max_epochs=2).fit(easy_data(), easy_data(seed=1))
    with pytest.raises(CheckpointError, match="different run"):
        make_trainer(tmp_path, max_epochs=2, lr=1e-3).fit(easy_data(), easy_data(seed=1))


def test_truncated_checkpoint_is_an_error_not_a_restart(tmp_path):
    make_trainer(tmp_path, max_epochs=2).fit(easy_data(), easy_data(seed=1))
    last = tmp_path / "state" / "last.pt"
    last.write_bytes(last.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="unreadable"):
        make_trainer(tmp_path, max_epochs=2).fit(easy_data(), easy_data(seed=1))


def test_validation_set_is_required(tmp_path):
    with pytest.raises(ValueError, match="validation set is required"):
        make_trainer(tmp_path).fit(easy_data(), TensorDataset(torch.zeros(0, 8), torch.zeros(0).long()))


def test_non_finite_loss_is_reported(tmp_path):
    class Exploding(TinyClassifier):
        def loss(self, batch):
            out = super().loss(batch)
            return LossOutput(out.loss * float("nan"), out.terms, out.n)

    with pytest.raises(FloatingPointError, match="non-finite training loss"):
        make_trainer(tmp_path, model_cls=Exploding).fit(easy_data(), easy_data(seed=1))


class DictDataset(Dataset):
    """A map-style dataset of dicts, exercising the DataLoader path."""

    def __init__(self, base: TensorDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        x, y = self.base[i]
        return {"x": x, "y": y}


class DictModel(TinyClassifier):
    def loss(self, batch) -> LossOutput:
        return super().loss((batch["x"], batch["y"]))


def test_map_style_datasets_match_tensor_datasets(tmp_path):
    a = make_trainer(tmp_path / "a")
    a.fit(easy_data(), easy_data(seed=1))
    b = make_trainer(tmp_path / "b", model_cls=DictModel)
    b.fit(DictDataset(easy_data()), DictDataset(easy_data(seed=1)))
    for k, v in weights(a.model).items():
        assert torch.allclose(v, weights(b.model)[k], atol=1e-6), k


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"batch_size": 0}, "batch_size"),
        ({"lr": 0}, "lr"),
        ({"precision": "fp8"}, "precision"),
        ({"schedule": "step"}, "schedule"),
        ({"grad_clip": -1.0}, "grad_clip"),
    ],
)
def test_train_config_rejects_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**bad)


def test_train_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match=r"unknown option train\.epochs"):
        TrainConfig.from_dict({"epochs": 3})


def test_warmup_then_cosine_schedule(tmp_path):
    # 8 batches per epoch, 4 epochs = 32 steps; warm-up over the first 4.
    trainer = make_trainer(tmp_path, max_epochs=4, warmup_steps=4, min_lr_ratio=0.1)
    optimizer = trainer._make_optimizer()
    scheduler = trainer._make_scheduler(optimizer, 32)
    lrs = []
    for _ in range(32):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[:4] == pytest.approx([0.005, 0.01, 0.015, 0.02])
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:], strict=False))
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.002)


class PlainClassifier(TinyClassifier):
    """Without dropout: batches of 16 and 32 then draw no random numbers that could differ."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))


def test_two_accumulated_batches_of_16_train_like_batches_of_32(tmp_path):
    data = easy_data(256)  # 8 batches of 32: no short last batch
    whole = make_trainer(tmp_path / "whole", model_cls=PlainClassifier, max_epochs=2)
    whole.fit(data, easy_data(seed=1))
    accum = make_trainer(
        tmp_path / "accum", model_cls=PlainClassifier, max_epochs=2, batch_size=16, grad_accum_steps=2
    )
    accum.fit(data, easy_data(seed=1))
    every = make_trainer(tmp_path / "every", model_cls=PlainClassifier, max_epochs=2, batch_size=16)
    every.fit(data, easy_data(seed=1))
    for k, v in weights(whole.model).items():
        torch.testing.assert_close(weights(accum.model)[k], v, rtol=1e-5, atol=1e-6)
    # The check can tell: 16 optimiser steps of 16 examples end elsewhere.
    assert any(
        not torch.allclose(weights(every.model)[k], v, atol=1e-3) for k, v in weights(whole.model).items()
    )


def test_a_short_last_accumulation_group_steps_with_the_mean_of_its_batches(tmp_path):
    """240 examples in batches of 16 accumulated 2 at a time: 7 groups of two and a lone
    last batch, whose step must use its whole gradient (as batch 32's last batch of 16 does),
    not half of it."""
    data = easy_data(240)
    whole = make_trainer(tmp_path / "whole", model_cls=PlainClassifier, max_epochs=2)
    whole.fit(data, easy_data(seed=1))
    accum = make_trainer(
        tmp_path / "accum", model_cls=PlainClassifier, max_epochs=2, batch_size=16, grad_accum_steps=2
    )
    accum.fit(data, easy_data(seed=1))
    for k, v in weights(whole.model).items():
        torch.testing.assert_close(weights(accum.model)[k], v, rtol=1e-5, atol=1e-6)


def test_gradients_are_clipped_to_grad_clip_before_the_step(tmp_path):
    trainer = make_trainer(tmp_path, model_cls=PlainClassifier, grad_clip=0.5)
    params = list(trainer.model.parameters())
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.full_like(p, 3.0)  # norm 3 * sqrt(n_parameters), far above 0.5
    # Plain SGD with lr 1 moves the weights by exactly the (clipped) gradient.
    sgd = torch.optim.SGD(params, lr=1.0)
    trainer._optimizer_step(sgd, torch.optim.lr_scheduler.LambdaLR(sgd, lambda step: 1.0))
    step = torch.cat([(b - p.detach()).flatten() for b, p in zip(before, params, strict=True)])
    assert float(step.norm()) == pytest.approx(0.5, rel=1e-4)
    assert torch.allclose(step, step[0].expand_as(step))  # the direction is kept


def test_fingerprint_is_stable_and_sensitive():
    assert config_fingerprint({"a": 1, "b": 2}) == config_fingerprint({"b": 2, "a": 1})
    assert config_fingerprint({"a": 1}) != config_fingerprint({"a": 2})


class NormClassifier(TinyClassifier):
    """With BatchNorm, which cannot train on a batch of one example."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 3))


def test_a_last_batch_of_one_is_dropped_only_for_batchnorm_models(tmp_path):
    # 65 = 2 x 32 + 1: the last batch would hold one example.
    norm = make_trainer(tmp_path / "norm", model_cls=NormClassifier, max_epochs=2)
    norm.fit(easy_data(65), easy_data(seed=1))
    assert json.loads((tmp_path / "norm" / "metrics.json").read_text())["epochs_run"] == 2
    assert norm._batches_per_epoch(65) == 2
    plain = make_trainer(tmp_path / "plain", max_epochs=1)
    assert plain._batches_per_epoch(65) == 3
    assert [len(b) for b in plain._index_batches(torch.arange(65), drop_last=False)] == [32, 32, 1]
    assert [len(b) for b in norm._index_batches(torch.arange(65), drop_last=False)] == [32, 32]
    # Evaluation still sees every example.
    assert norm.evaluate(easy_data(65), "val")["val/loss"] > 0


class NoisyDataset(DictDataset):
    """A user's own dataset with an augmentation: noise from torch, numpy and ``random`` in
    ``__getitem__``, so that with ``num_workers > 0`` the worker processes' RNGs draw it."""

    def __getitem__(self, i):
        item = super().__getitem__(i)
        noise = 0.3 * torch.randn(8) + float(np.random.normal(scale=0.3)) + random.gauss(0.0, 0.3)
        return {"x": item["x"] + noise, "y": item["y"]}


def test_resume_with_loader_workers_replays_the_augmentation_of_an_uninterrupted_run(tmp_path):
    """Two workers draw the noise: a run stopped by SIGTERM in the middle of epoch 0 and
    resumed ends with the weights and validation losses of an uninterrupted run (each
    sample's draws are seeded from the run's seed, the epoch and its place in the epoch)."""
    kwargs = dict(max_epochs=2, batch_size=16, num_workers=2, model_cls=DictModel)
    train, val = NoisyDataset(easy_data(96)), NoisyDataset(easy_data(48, seed=1))
    ref = make_trainer(tmp_path / "ref", **kwargs)
    ref.fit(train, val)
    run = make_trainer(tmp_path / "run", model_kwargs={"signal_after": 3}, **kwargs)
    with pytest.raises(TrainingInterrupted):
        run.fit(train, val)
    state = load_checkpoint(tmp_path / "run" / "state" / "last.pt")
    assert state["epoch"] == 0 and state["batch_in_epoch"] == 3
    resumed = make_trainer(tmp_path / "run", **kwargs)
    result = resumed.fit(train, val)
    assert result.epochs_run == 2
    diff = max(float((v - weights(resumed.model)[k]).abs().max()) for k, v in weights(ref.model).items())
    assert diff == 0.0, f"resumed weights differ from the uninterrupted run's by up to {diff:.3g}"
    assert [h["val/loss"] for h in result.history] == [h["val/loss"] for h in ref.history]
    # A sample's noise depends on its place in the epoch, not on the worker that drew it.
    one = make_trainer(tmp_path / "one", **dict(kwargs, num_workers=1))
    one.fit(train, val)
    assert all(torch.equal(v, weights(one.model)[k]) for k, v in weights(ref.model).items())


@pytest.mark.parametrize("wrap", [lambda d: d, lambda d: Subset(d, range(len(d)))], ids=["item", "batched"])
def test_a_resumed_epochs_loader_gives_its_batches_the_draws_of_the_whole_epochs(tmp_path, wrap):
    """The batches of an epoch resumed after batch 2 equal batches 2.. of the whole epoch,
    for a dataset fetched item by item and for one with a batched ``__getitems__``
    (``Subset``), seeded once per batch."""
    trainer = make_trainer(tmp_path, batch_size=8, num_workers=2, model_cls=DictModel)
    data = wrap(NoisyDataset(easy_data(40)))
    order = trainer._epoch_permutation(40, 1)
    whole = list(trainer._batches(data, order, False, epoch=1))
    rest = list(trainer._batches(data, order[16:], False, epoch=1, first=16))
    assert len(whole) == 5 and len(rest) == 3
    for a, b in zip(whole[2:], rest, strict=True):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
    # The noise is there, and differs between epochs.
    assert not torch.equal(whole[0]["x"], easy_data(40).tensors[0][order[:8]])
    other = list(trainer._batches(data, trainer._epoch_permutation(40, 1), False, epoch=2))
    assert not torch.equal(whole[0]["x"], other[0]["x"])
