"""Last good outputs survive a failed rerun (genomelab/last_good.py, `genomelab restore`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from genomelab.cli import main
from genomelab.entry import run_rule
from genomelab.last_good import keep, restore


def outputs(root: Path, text: str) -> list[Path]:
    model = root / "tissue" / "models" / "mlp.pt"
    plots = root / "tissue" / "plots"
    for path, body in ((model, text), (plots / "a.png", text + "a"), (plots / "sub" / "b.png", text + "b")):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    return [model, plots]


def test_a_failed_rerun_loses_nothing_restore_puts_the_last_good_outputs_back(tmp_path):
    root = tmp_path / "results" / "cohort1"
    model, plots = outputs(root, "good")
    assert keep([model, plots], root) == 3
    # Kept as hard links: no second copy on disk while the outputs exist.
    kept = root / ".state" / "last_good" / "tissue" / "models" / "mlp.pt"
    assert os.stat(kept).st_ino == os.stat(model).st_ino
    # A rerun: Snakemake deletes the outputs, the job fails half-way through writing.
    model.unlink()
    for png in plots.rglob("*.png"):
        png.unlink()
    (plots / "a.png").write_text("half-written")
    restored = restore(root)
    assert model.read_text() == "good" and (plots / "sub" / "b.png").read_text() == "goodb"
    assert (plots / "a.png").read_text() == "half-written", "an existing file is left alone by default"
    assert sorted(p.name for p in restored) == ["b.png", "mlp.pt"]
    restore(root, ["tissue/plots"], overwrite=True)
    assert (plots / "a.png").read_text() == "gooda"


def test_a_new_success_replaces_the_kept_version_and_its_stale_files(tmp_path):
    root = tmp_path / "results" / "r"
    model, plots = outputs(root, "v1")
    keep([model, plots], root)
    for p in [model, *plots.rglob("*.png")]:
        p.unlink()
    (plots / "sub" / "b.png").parent.rmdir()
    model.write_text("v2")
    (plots / "a.png").write_text("v2a")
    keep([model, plots], root)
    store = root / ".state" / "last_good" / "tissue"
    assert (store / "models" / "mlp.pt").read_text() == "v2"
    assert sorted(p.name for p in (store / "plots").rglob("*") if p.is_file()) == ["a.png"]


def test_outputs_outside_the_run_folder_and_missing_store_are_refused(tmp_path):
    root = tmp_path / "results" / "r"
    other = tmp_path / "elsewhere.txt"
    other.write_text("x")
    root.mkdir(parents=True)
    assert keep([other], root) == 0
    with pytest.raises(FileNotFoundError, match=r"last_good: no last good outputs kept"):
        restore(root)


def _job(tmp_path: Path, rule: str, out: Path, config: dict, **params) -> SimpleNamespace:
    """A Snakemake job object as run_rule sees it: one output, its log at tmp_path/job.log."""
    return SimpleNamespace(
        rule=rule,
        config=config,
        log=[str(tmp_path / "job.log")],
        output=[str(out)],
        input=[],
        wildcards={},
        threads=1,
        resources=SimpleNamespace(gpu=0),
        params=SimpleNamespace(**params),
    )


def test_every_successful_rule_keeps_its_outputs_and_the_cli_restores_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = Path("results/cohort2/assoc/metrics.json")
    smk = _job(tmp_path, "assoc_summary", out, {"run": "cohort2", "seed": 1})

    def step(s):
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text('{"mrr": 0.5}')

    run_rule(smk, step)
    assert "kept 1 output file(s) in results/cohort2/.state/last_good" in (tmp_path / "job.log").read_text()
    out.unlink()  # what a failed rerun leaves
    (tmp_path / "my.yaml").write_text("run: cohort2\n")
    assert main(["restore", "--configfile", "my.yaml"]) == 0
    assert out.read_text() == '{"mrr": 0.5}'


def test_restore_prints_a_rerun_command_that_runs_where_it_was_typed(tmp_path, monkeypatch, capfd):
    """The command `genomelab restore` prints to remake the restored files had no --cores
    (Snakemake refuses a local run without it) and, in a project folder outside the
    repository (the docs' way for own data), no Snakefile ("No Snakefile found")."""
    monkeypatch.chdir(tmp_path)
    out = Path("results/cohort3/assoc/metrics.json")
    run_rule(_job(tmp_path, "assoc_summary", out, {"run": "cohort3", "seed": 1}), lambda s: _write(out))
    out.unlink()
    (tmp_path / "my.yaml").write_text("run: cohort3\n")
    assert main(["restore", "--configfile", "my.yaml"]) == 0
    snakefile = Path(__file__).resolve().parents[1] / "Snakefile"
    err = capfd.readouterr().err
    command = err[err.index("run: snakemake ") :]
    assert f"-s {snakefile} --directory . " in command and "--cores" in command, command
    assert f"--forcerun {out}" in command, command


def _write(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text('{"mrr": 0.5}')


def test_a_finished_training_job_keeps_its_newest_states(tmp_path):
    from genomelab.last_good import prune_states

    state = tmp_path / ".state" / "tissue" / "mlp" / "0"
    for i, name in enumerate(["aaa111", "bbb222", "ccc333"]):
        folder = state / name
        (folder / "tensorboard").mkdir(parents=True)
        (folder / "last.pt").write_text(name)
        os.utime(folder / "last.pt", (1000 + i, 1000 + i))
    (state / "attempts").mkdir()
    (state / "attempts" / "attempt1.log").write_text("kept")
    deleted = prune_states(state, keep=2)
    assert [p.name for p in deleted] == ["aaa111"]
    assert sorted(p.name for p in state.iterdir()) == ["attempts", "bbb222", "ccc333"]
    assert prune_states(state, keep=2) == [] and prune_states(tmp_path / "none", keep=1) == []
    with pytest.raises(ValueError, match="keep must be at least 1"):
        prune_states(state, keep=0)


def test_pruning_keeps_an_older_state_whose_training_was_interrupted(tmp_path):
    """keep=1: the finished older state goes; the one killed mid-training (no stop reason in
    its per-epoch metrics) stays, so going back to its settings resumes it."""
    from genomelab.last_good import prune_states

    state = tmp_path / "mlp" / "0"
    reasons = {"killed": "", "finished": "reached max_epochs=5", "current": "reached max_epochs=5"}
    for i, (name, reason) in enumerate(reasons.items()):
        (state / name).mkdir(parents=True)
        (state / name / "last.pt").write_text(name)
        (state / name / "metrics.json").write_text(json.dumps({"stopped_reason": reason, "history": []}))
        os.utime(state / name / "last.pt", (1000 + i, 1000 + i))
    assert [p.name for p in prune_states(state, keep=1)] == ["finished"]
    assert sorted(p.name for p in state.iterdir()) == ["current", "killed"]


def test_a_state_killed_in_its_first_epoch_after_a_step_checkpoint_is_kept(tmp_path):
    """A run that stopped in its first epoch after a mid-epoch checkpoint (checkpoint_every_steps)
    had a last.pt but no metrics JSON yet, which pruning read as a state from before they were
    kept and deleted once a newer run finished; its metrics JSON is now written beside every
    last.pt, so it stays."""
    import dataclasses

    from genomelab.last_good import prune_states
    from genomelab.train.run import RunOutputs, run_training
    from test_train_run import _spec

    root = tmp_path / "state"
    killed = _spec(fail_in_epoch=0.5, data_fp="killed")  # raises at its 3rd training batch
    killed.train_config = dataclasses.replace(killed.train_config, checkpoint_every_steps=1)
    with pytest.raises(RuntimeError, match="boom"):
        run_training(killed, root, RunOutputs(tmp_path / "k.json", tmp_path / "k.pt", None))
    (state,) = [p for p in root.iterdir() if (p / "last.pt").exists()]
    assert json.loads((state / "metrics.json").read_text())["stopped_reason"] == ""
    done = run_training(_spec(data_fp="done"), root, RunOutputs(tmp_path / "d.json", tmp_path / "d.pt", None))
    assert prune_states(root, keep=1) == [] and state.exists() and done.state_dir.exists()


def test_a_state_that_cannot_be_deleted_does_not_fail_the_finished_job(tmp_path, monkeypatch):
    """Pruning runs after the job wrote its outputs: an old state it cannot delete (here one
    moved to another disk and linked back; on NFS, a file of it still open) is left with a
    warning. Failing the job made Snakemake delete the outputs it had just written."""
    monkeypatch.chdir(tmp_path)
    state = Path("results/r/.state/tissue/mlp/0")
    elsewhere = tmp_path / "other_disk" / "old"
    elsewhere.mkdir(parents=True)
    (elsewhere / "last.pt").write_text("old")
    (elsewhere / "metrics.json").write_text(json.dumps({"stopped_reason": "reached max_epochs=5"}))
    os.utime(elsewhere / "last.pt", (1000, 1000))
    state.mkdir(parents=True)
    (state / "old").symlink_to(elsewhere)
    out = Path("results/r/tissue/metrics.json")
    smk = _job(
        tmp_path, "tissue_train", out, {"run": "r", "seed": 1, "state": {"keep": 1}}, state_dir=str(state)
    )

    def step(s):
        (state / "new").mkdir()
        (state / "new" / "last.pt").write_text("new")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")

    run_rule(smk, step)
    log = (tmp_path / "job.log").read_text()
    assert "could not delete the old training state" in log and "rule tissue_train finished" in log
    assert (elsewhere / "last.pt").read_text() == "old" and out.exists()
