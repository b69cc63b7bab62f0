"""One training run for every module: outputs, exported model, rank-0 writes, closing."""

from __future__ import annotations

import json

import pytest
import torch
from genomelab.train import LossOutput, TrainConfig
from genomelab.train.export import ExportError, load_exported
from genomelab.train.run import RunOutputs, RunSpec, run_training
from torch import nn
from torch.utils.data import TensorDataset

CLASSES = ["a", "b", "c"]


class Tiny(nn.Module):
    """[batch, 4] -> logits [batch, 3]; ``fail_in_epoch`` makes training raise."""

    def __init__(self, fail_in_epoch: int | None = None) -> None:
        super().__init__()
        self.net = nn.Linear(4, 3)
        self.fail_in_epoch = fail_in_epoch
        self.epoch_calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def loss(self, batch) -> LossOutput:
        x, y = batch
        if self.training:
            self.epoch_calls += 1
            if self.fail_in_epoch is not None and self.epoch_calls > 4 * self.fail_in_epoch:
                raise RuntimeError("boom")
        return LossOutput(nn.functional.cross_entropy(self(x), y), n=len(y))


def _data(device: torch.device) -> dict[str, TensorDataset]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(96, 4, generator=g)
    y = x[:, :3].argmax(1)
    return {s: TensorDataset(x[i::3], y[i::3]) for i, s in enumerate(("train", "val", "test"))}


def _spec(fail_in_epoch=None, data_fp="d1", seen=None, **kw) -> RunSpec:
    seen = seen if seen is not None else {}

    def before(state):
        seen["trainer"] = state.trainer
        seen["before"] = True

    def after(state):
        acc = state.model(state.datasets["test"].tensors[0]).argmax(1) == state.datasets["test"].tensors[1]
        return {"test": state.test_losses, "test_accuracy": float(acc.float().mean())}

    def write(state):
        seen["written"] = True

    return RunSpec(
        kind="tiny",
        train_config=TrainConfig(max_epochs=6, batch_size=8, lr=0.5, seed=3, device="cpu"),
        model_config={"n_in": 4},
        build_model=lambda: Tiny(fail_in_epoch),
        build_data=_data,
        ids={"classes": CLASSES},
        data_fingerprint=data_fp,
        before_fit=before,
        after_fit=after,
        write_outputs=write,
        export_extra=lambda state: {"best_epoch": state.fit.best_epoch},
        **kw,
    )


def _outputs(d) -> RunOutputs:
    return RunOutputs(d / "metrics.json", d / "model.pt", d / "tb")


def test_a_run_writes_metrics_and_an_exported_model_with_its_ids(tmp_path):
    seen: dict = {}
    res = run_training(_spec(seen=seen), tmp_path / "state", _outputs(tmp_path / "out"))
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 6 and len(metrics["history"]) == 6
    assert set(metrics["test"]) == {"test/loss"} and 0 <= metrics["test_accuracy"] <= 1
    assert metrics["test_accuracy"] > 0.6  # it learned (chance is 1/3)
    exported = load_exported(tmp_path / "out" / "model.pt", expect_ids={"classes": CLASSES}, kind="tiny")
    assert exported.data_fingerprint == "d1" and exported.extra == {"best_epoch": res.fit.best_epoch}
    back = Tiny()
    back.load_state_dict(exported.weights)
    x = torch.randn(5, 4)
    assert torch.equal(back(x), res.model(x))
    assert seen["written"] and seen["before"]
    with pytest.raises(ExportError, match="other classes"):
        load_exported(tmp_path / "out" / "model.pt", expect_ids={"classes": ["a", "b", "d"]})


def test_same_seed_same_weights_and_data_fingerprint_keys_the_state_folder(tmp_path):
    a = run_training(_spec(), tmp_path / "state", _outputs(tmp_path / "a"))
    b = run_training(_spec(), tmp_path / "state", _outputs(tmp_path / "b"))
    other = run_training(_spec(data_fp="d2"), tmp_path / "state", _outputs(tmp_path / "c"))
    assert a.state_dir == b.state_dir != other.state_dir
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k])
        assert torch.equal(v, other.model.state_dict()[k])  # the same data in fact


def test_only_rank_zero_writes(tmp_path):
    seen: dict = {}
    res = run_training(_spec(seen=seen), tmp_path / "state", _outputs(tmp_path / "out"), is_main=False)
    # The engine's per-epoch file (in the state folder) follows the real rank; the run's
    # final write did not happen.
    assert "test_accuracy" not in json.loads((res.state_dir / "metrics.json").read_text())
    assert not (tmp_path / "out" / "metrics.json").exists()
    assert not (tmp_path / "out" / "model.pt").exists()
    assert "written" not in seen
    assert res.payload["test_accuracy"] > 0  # the metrics were still computed on this rank


def test_the_trainer_is_closed_when_fit_raises(tmp_path):
    seen: dict = {}
    with pytest.raises(RuntimeError, match="boom"):
        run_training(_spec(fail_in_epoch=2, seen=seen), tmp_path / "state", _outputs(tmp_path / "out"))
    trainer = seen["trainer"]
    assert len(trainer.history) == 2  # two epochs logged, so a TensorBoard writer was open
    assert trainer._writer is None
    assert not (tmp_path / "out" / "model.pt").exists()


def test_a_missing_validation_split_is_an_error(tmp_path):
    spec = _spec()
    spec.build_data = lambda device: {"train": _data(device)["train"]}
    with pytest.raises(ValueError, match=r"tiny: build_data returned no \['val'\] split"):
        run_training(spec, tmp_path / "state", _outputs(tmp_path / "out"))


def test_a_killed_run_leaves_no_partial_metrics_among_its_outputs(tmp_path):
    """SIGTERM mid-training: the declared metrics JSON does not exist (a partial one, with the
    history so far and no test metrics, would look finished); the per-epoch copy in the state
    folder does, and the resumed run writes the whole one."""
    import os
    import signal

    from genomelab.train.engine import TrainingInterrupted

    def stop_in_epoch_3(model, dataset, device):
        if len(seen["trainer"].history) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # what SLURM sends; the engine saves and stops
        return {}

    seen: dict = {}
    out = tmp_path / "out"
    with pytest.raises(TrainingInterrupted):
        run_training(_spec(seen=seen, eval_fn=stop_in_epoch_3), tmp_path / "state", _outputs(out))
    assert not (out / "metrics.json").exists() and not (out / "model.pt").exists()
    progress = json.loads((seen["trainer"].state_dir / "metrics.json").read_text())
    assert len(progress["history"]) == 3 and "test" not in progress
    res = run_training(_spec(seen=seen), tmp_path / "state", _outputs(out))
    metrics = json.loads((out / "metrics.json").read_text())
    assert len(metrics["history"]) == 6 and "test_accuracy" in metrics
    assert metrics == json.loads((res.state_dir / "metrics.json").read_text()) | {
        k: metrics[k] for k in ("test", "test_accuracy")
    }


def test_a_failed_tensorboard_copy_leaves_no_partial_folder(tmp_path, killed_writer):
    """The declared TensorBoard folder appears whole or not at all: a copy that fails half-way
    (here a dangling link among the event files, which copytree reports after copying the
    rest) leaves the earlier copy and no staged folder."""
    from genomelab.train.run import copy_events

    src, dest = tmp_path / "state" / "tensorboard", tmp_path / "out" / "tensorboard"
    src.mkdir(parents=True)
    (src / "events.out.tfevents.1").write_bytes(b"new events")
    killed = killed_writer(dest, "folder")  # what a copy killed with -9 leaves
    copy_events(src, dest)
    assert not killed.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["tensorboard"]
    assert [p.name for p in dest.iterdir()] == ["events.out.tfevents.1"]
    (src / "events.out.tfevents.2").write_bytes(b"more")
    (src / "events.out.tfevents.3").symlink_to(tmp_path / "gone")
    with pytest.raises(OSError):
        copy_events(src, dest)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["tensorboard"]
    assert [p.name for p in dest.iterdir()] == ["events.out.tfevents.1"]


def test_a_job_killed_after_training_reuses_it_and_a_forced_rerun_trains_again(tmp_path):
    """Ctrl-C while the outputs are written (training had finished; a SLURM time limit or a
    SIGTERM at that moment alike): the rerun takes the finished state as it is, with no
    training step, and writes the same outputs. A rerun of a job that wrote its outputs
    (snakemake -R after a code change) trains again from scratch."""

    def interrupted_write(state):
        raise KeyboardInterrupt

    seen: dict = {}
    out = tmp_path / "out"
    spec = _spec(seen=seen)
    spec.write_outputs = interrupted_write
    with pytest.raises(KeyboardInterrupt):
        run_training(spec, tmp_path / "state", _outputs(out))
    trained = {k: v.clone() for k, v in seen["trainer"].model.state_dict().items()}
    assert seen["trainer"].model.epoch_calls > 0
    res = run_training(_spec(seen=seen), tmp_path / "state", _outputs(out))
    assert seen["trainer"].model.epoch_calls == 0  # not one training step
    assert all(torch.equal(v, res.model.state_dict()[k]) for k, v in trained.items())
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] == 6 and "test_accuracy" in metrics
    assert not (res.state_dir / "outputs_pending").exists()
    run_training(_spec(seen=seen), tmp_path / "state", _outputs(out))
    assert seen["trainer"].model.epoch_calls > 0  # trained again


def test_pruning_keeps_an_older_state_whose_job_was_killed_before_its_outputs(tmp_path):
    """A job of settings A finished training and was killed while writing its outputs; a job
    of settings B finished after it. Pruning to one state must keep A's: the rerun of A takes
    its finished training as it is (outputs_pending) instead of training again."""
    from genomelab.last_good import prune_states

    def interrupted_write(state):
        raise KeyboardInterrupt

    seen: dict = {}
    state, out = tmp_path / "state", tmp_path / "out"
    spec_a = _spec(seen=seen)
    spec_a.write_outputs = interrupted_write
    with pytest.raises(KeyboardInterrupt):
        run_training(spec_a, state, _outputs(out))
    killed = seen["trainer"].state_dir
    run_training(_spec(data_fp="d2", seen=seen), state, _outputs(out))
    assert prune_states(state, keep=1) == []
    assert (killed / "outputs_pending").exists()
    run_training(_spec(seen=seen), state, _outputs(out))
    assert seen["trainer"].model.epoch_calls == 0  # A's training was reused, not redone


def test_a_killed_run_resumes_after_its_checkpoint_or_log_cadence_changed(tmp_path, caplog):
    """After a preemption a user asks for more frequent checkpoints (or progress lines) and
    reruns: the run resumes from its state to the weights of an uninterrupted run. Those keys
    were part of the state fingerprint, so the rerun started afresh in a new folder (the
    preempted hours lost); a setting of what is learnt still gets its own folder."""
    import dataclasses

    ref = run_training(_spec(), tmp_path / "ref", _outputs(tmp_path / "ref_out"))
    with pytest.raises(RuntimeError, match="boom"):
        run_training(_spec(fail_in_epoch=3), tmp_path / "state", _outputs(tmp_path / "out"))
    spec = _spec()
    spec.train_config = dataclasses.replace(
        spec.train_config, checkpoint_every_steps=2, checkpoint_every_epochs=2, log_every_steps=1
    )
    with caplog.at_level("INFO", logger="genomelab.train.engine"):
        resumed = run_training(spec, tmp_path / "state", _outputs(tmp_path / "out"))
    assert [p.name for p in (tmp_path / "state").iterdir()] == [resumed.state_dir.name]
    assert "resumed from" in caplog.text, "it started afresh"
    for k, v in ref.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k
    other = _spec()
    other.train_config = dataclasses.replace(other.train_config, lr=0.25)
    assert run_training(other, tmp_path / "state", _outputs(tmp_path / "o")).state_dir != resumed.state_dir


def test_a_training_step_takes_the_cadence_keys_from_the_config_not_the_params():
    """The training rules leave the cadence keys out of their params (changing one reruns no
    training); the step takes them from the job's config, and a job without one (a test's)
    keeps the section given."""
    from types import SimpleNamespace

    from genomelab.train.run import train_param

    section = {"lr": 0.1, "max_epochs": 3}
    smk = SimpleNamespace(
        config={"tissue": {"train": {"lr": 9.0, "log_every_steps": 5, "checkpoint_every_steps": 7}}}
    )
    assert train_param(smk, "tissue", section) == {
        **section,
        "log_every_steps": 5,
        "checkpoint_every_steps": 7,
    }
    assert train_param(SimpleNamespace(), "tissue", section) == section


def test_the_cadence_keys_at_their_defaults_leave_a_default_section_as_it_was():
    """What a training rule's params and a state fingerprint see: a section at the default
    cadence is unchanged (params and state folders of runs made before stay the same, so a
    finished run is not retrained after an upgrade: dropping the keys did that), and any
    other cadence gives that same section."""
    from genomelab.config import schema_defaults
    from genomelab.runtime import CADENCE_KEYS, with_default_cadence

    section = schema_defaults("train") | {"lr": 0.005}
    assert with_default_cadence(section) == section
    changed = section | {"log_every_steps": 5, "checkpoint_every_steps": 100, "checkpoint_every_epochs": 3}
    assert with_default_cadence(changed) == section
    assert set(CADENCE_KEYS) <= set(schema_defaults("train"))
