"""Metrics JSON (``genomelab.io.metrics``): the typed record, its reader and writer."""

from __future__ import annotations

import json

import pytest
from genomelab.io.errors import FormatError
from genomelab.io.metrics import TRAINING_KEYS, Metrics, read_json_file, read_metrics, write_metrics
from genomelab.report.summary import read_module_summary

HISTORY = [
    {"epoch": 0.0, "train/loss": 1.0, "val/loss": 0.9},
    {"epoch": 1.0, "train/loss": 0.5, "val/loss": 0.7},
]


def _run(**extra):
    return Metrics.training_run(
        genomelab_version="0.1.0",
        device="cpu",
        precision="float32",
        train_config={"max_epochs": 2},
        monitor="val/loss",
        best_epoch=1,
        best_value=0.7,
        stopped_reason="reached max_epochs=2",
        history=HISTORY,
        extra=extra,
    )


def test_training_run_record_has_the_engines_keys_in_order_then_extras():
    m = _run(test={"test/loss": 0.8}, variant="plain")
    assert list(m.to_dict()) == [*TRAINING_KEYS, "test", "variant"]
    assert m.epochs_run == 2 and m["final"] == HISTORY[-1] and m.is_training_run
    assert m.test == {"test/loss": 0.8}


def test_write_then_read_is_byte_identical_and_nan_becomes_null(tmp_path):
    path = tmp_path / "metrics.json"
    write_metrics(path, _run(test={"test/loss": float("nan")}))
    text = path.read_text()
    assert '"test/loss": null' in text
    again = tmp_path / "again.json"
    write_metrics(again, read_metrics(path, require=TRAINING_KEYS))
    assert again.read_text() == text


def test_plain_records_keep_their_own_keys(tmp_path):
    path = tmp_path / "nnls.json"
    write_metrics(path, Metrics({"method": "nnls", "phase": "phase1", "test": {"mae": 0.1}}))
    assert list(json.loads(path.read_text())) == ["method", "phase", "test"]
    m = read_metrics(path)
    assert not m.is_training_run and m.test["mae"] == 0.1 and m.get("history") is None


def test_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "test": {"a": 1},\n  "history": [\n}\n')
    with pytest.raises(FormatError, match=r"bad\.json, line 4: metrics file is not valid JSON"):
        read_metrics(bad)
    typed = tmp_path / "typed.json"
    typed.write_text(json.dumps({"history": {"epoch": 1}, "test": {}}))
    with pytest.raises(FormatError, match=r"typed\.json: metrics key 'history' has the wrong type \(dict\)"):
        read_metrics(typed)
    typed.write_text(json.dumps({"epochs_run": True}))
    with pytest.raises(FormatError, match="'epochs_run' has the wrong type"):
        read_metrics(typed)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"test": {"mae": 1}}))
    with pytest.raises(FormatError, match=r"partial\.json: metrics lack key\(s\) \['genomelab_version'"):
        read_metrics(partial, require=TRAINING_KEYS)
    with pytest.raises(FormatError, match=r"partial\.json: metrics have no 'title'"):
        read_metrics(partial)["title"]
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(FormatError, match=r"list\.json: metrics must be a JSON object, not list"):
        read_metrics(listed)
    with pytest.raises(FileNotFoundError, match=r"metrics file .*nope\.json does not exist"):
        read_metrics(tmp_path / "nope.json")


def test_json_reader_and_module_summary_errors_name_the_file(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"title": "x"}))
    with pytest.raises(FormatError, match=r"summary\.json: module summary lacks key\(s\) \['module'\]"):
        read_module_summary(path)
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(FormatError, match=r"summary\.json: grid is not UTF-8"):
        read_json_file(path, "grid")
