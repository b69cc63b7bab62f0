"""Snapshots that hold across machines (genomelab.report.snapshot), on small files made here.

A last-bit float difference (another CPU, another BLAS kernel) must pass; a changed ID,
shape, integer or a big numeric change must fail with a message naming the key and the size
of the difference; outputs of trained models are held to behaviour, not values.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from genomelab.report.snapshot import RULES, compare, metric_range, rule_for, snapshot


def write_results(root: Path, scale: float = 1.0, contig: str = "contig_1", n_rows: int = 40) -> Path:
    """A tiny results/ folder: fixed-tier arrays, tables, FASTA, JSON; a trained module."""
    rng = np.random.default_rng(0)
    values = rng.normal(size=(n_rows, 3))
    (root / "tissue" / "simulated").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        root / "tissue" / "simulated" / "a.npz",
        beta=values * scale,
        counts=np.arange(n_rows, dtype=np.int64),
        names=np.array([f"r{i}" for i in range(n_rows)]),
    )
    with h5py.File(root / "tissue" / "features.h5", "w") as f:
        f["x"] = values.astype(np.float32) * np.float32(scale)
        f["ids"] = np.array([b"s1", b"s2"])
    rows = "\n".join(
        f"{contig if i == 0 else f'contig_{i + 1}'}\t{100 + i}\t{v * scale:.9g}"
        for i, v in enumerate(values[:, 0])
    )
    (root / "tissue" / "depth.tsv").write_text("contig\tlength\tdepth\n" + rows + "\n")
    with gzip.open(root / "tissue" / "contigs.fna.gz", "wt") as fh:
        fh.write(f">{contig}\nACGT\nAC\n>contig_2\nGGGG\n")
    (root / "tissue" / "qc.json").write_text(json.dumps({"n": 3, "mean": 0.25 * scale, "note": "mean 0.25"}))
    (root / "tissue" / "train").mkdir(exist_ok=True)
    history = [{"val/accuracy": 0.5 + 0.1 * i * scale, "time/epoch_s": 1.0 + i} for i in range(3)]
    (root / "tissue" / "train" / "metrics.json").write_text(json.dumps({"history": history, "epochs_run": 3}))
    summary = {
        "module": "tissue",
        "comparisons": [
            {
                "title": "t",
                "split": "test",
                "primary": "accuracy",
                "higher_is_better": True,
                "rows": {"mlp": {"accuracy": 0.9 * min(scale, 1.0)}, "logreg": {"accuracy": 0.8}},
                "kinds": {"mlp": "model", "logreg": "baseline"},
            }
        ],
        "diagnostics": [{"name": "overfit", "status": "pass", "message": "loss 0.1"}],
    }
    (root / "tissue" / "summary.json").write_text(json.dumps(summary))
    (root / "tissue" / "plots").mkdir(exist_ok=True)
    (root / "tissue" / "plots" / "p.png").write_bytes(b"png")
    (root / "benchmarks").mkdir(exist_ok=True)
    (root / "benchmarks" / "t.tsv").write_text("s\n1.0\n")
    return root


@pytest.fixture
def expected(tmp_path) -> dict:
    return snapshot(write_results(tmp_path / "expected"))


def test_snapshot_lists_outputs_with_their_tier_and_skips_plots_and_benchmarks(expected):
    files = expected["files"]
    assert set(files) == {
        "tissue/simulated/a.npz",
        "tissue/features.h5",
        "tissue/depth.tsv",
        "tissue/contigs.fna.gz",
        "tissue/qc.json",
        "tissue/train/metrics.json",
        "tissue/summary.json",
    }
    assert files["tissue/simulated/a.npz"]["tier"] == "fixed"
    assert files["tissue/train/metrics.json"]["tier"] == "trained"
    assert compare(expected, expected) == []
    # The snapshot is plain JSON (it is stored in tests/data).
    assert json.loads(json.dumps(expected)) == expected


def test_tiny_float_perturbation_and_write_times_pass(tmp_path, expected):
    time.sleep(1.1)  # other write times inside NPZ / HDF5 containers
    actual = snapshot(write_results(tmp_path / "actual", scale=1 + 1e-7))
    assert compare(expected, actual) == []
    actual = snapshot(write_results(tmp_path / "actual6", scale=1 + 1e-6))
    assert compare(expected, actual) == []


def test_big_numeric_change_fails_naming_the_key_and_the_difference(tmp_path, expected):
    problems = compare(expected, snapshot(write_results(tmp_path / "actual", scale=1.01)))
    text = "\n".join(problems)
    assert "changed: tissue/simulated/a.npz: beta:" in text
    assert "changed: tissue/depth.tsv: column depth:" in text
    assert "changed: tissue/qc.json: /mean: 0.25 -> 0.2525 (|diff| 0.0025" in text
    assert "changed: tissue/features.h5: x:" in text
    # Trained outputs are not compared by value: a 1% better model is not a change.
    assert not any("train/metrics.json" in p or "summary.json" in p for p in problems), problems


def test_changed_id_fails(tmp_path, expected):
    problems = compare(expected, snapshot(write_results(tmp_path / "actual", contig="contig_X")))
    assert "changed: tissue/depth.tsv: column contig:digest: " in "\n".join(problems)
    assert any(p.startswith("changed: tissue/contigs.fna.gz: names: ") for p in problems), problems
    assert len(problems) == 2, problems


def test_changed_shape_and_integers_fail(tmp_path, expected):
    problems = compare(expected, snapshot(write_results(tmp_path / "actual", n_rows=41)))
    assert "changed: tissue/simulated/a.npz: beta:shape: [40, 3] -> [41, 3]" in problems
    assert "changed: tissue/depth.tsv: rows: 40 -> 41" in problems

    root = write_results(tmp_path / "ints")
    with np.load(root / "tissue" / "simulated" / "a.npz") as npz:
        arrays = dict(npz)
    arrays["counts"][5] += 1
    np.savez_compressed(root / "tissue" / "simulated" / "a.npz", **arrays)
    qc = json.loads((root / "tissue" / "qc.json").read_text())
    (root / "tissue" / "qc.json").write_text(json.dumps({**qc, "n": 4}))
    problems = compare(expected, snapshot(root))
    assert any(p.startswith("changed: tissue/simulated/a.npz: counts:digest: ") for p in problems), problems
    assert "changed: tissue/qc.json: /n: 3 -> 4" in problems
    assert len(problems) == 2, problems


def test_missing_and_unexpected_files_and_keys(tmp_path, expected):
    root = write_results(tmp_path / "actual")
    (root / "tissue" / "qc.json").unlink()
    (root / "tissue" / "extra.tsv").write_text("a\n1\n")
    with h5py.File(root / "tissue" / "features.h5", "a") as f:
        f["y"] = np.zeros(2)
    problems = compare(expected, snapshot(root))
    assert "missing: tissue/qc.json" in problems
    assert "unexpected: tissue/extra.tsv" in problems
    assert "changed: tissue/features.h5: y:shape unexpected" in problems


def test_trained_outputs_are_checked_as_behaviour(tmp_path, expected):
    # A model that falls far behind its baseline breaks the summary's model-vs-baseline fact.
    root = write_results(tmp_path / "worse", scale=0.5)
    problems = [p for p in compare(expected, snapshot(root)) if "summary.json" in p]
    assert len(problems) == 1 and "accuracy: model vs baseline" in problems[0], problems
    assert "model 0.45 vs baseline 0.8" in problems[0]
    # A metric outside its range (an accuracy above 1) breaks the metrics file.
    root = write_results(tmp_path / "broken")
    history = [{"val/accuracy": 1.5}, {"val/accuracy": 0.7}, {"val/accuracy": 0.8}]
    (root / "tissue" / "train" / "metrics.json").write_text(json.dumps({"history": history, "epochs_run": 3}))
    problems = compare(expected, snapshot(root))
    assert problems == [
        "changed: tissue/train/metrics.json: /history[]/val/accuracy:range: values [0.7, 1.5] outside the "
        "metric's range [0.0, 1.0] (snapshot [0.5, 0.7])"
    ]
    # Another epoch count (early stopping on another CPU) and slightly other metrics pass.
    history = [{"val/accuracy": 0.55}, {"val/accuracy": 0.6}]
    (root / "tissue" / "train" / "metrics.json").write_text(json.dumps({"history": history, "epochs_run": 2}))
    assert compare(expected, snapshot(root)) == []


def test_an_old_snapshot_format_asks_for_regeneration(expected):
    old = {"tissue/qc.json": "0123456789abcdef"}
    assert compare(old, expected) == ["snapshot format None is not 2: regenerate the snapshot"]


def test_rules_cover_training_outputs_and_state_why():
    assert rule_for("binning/model/latent.h5").tier == "trained"
    assert rule_for("binning/bins/fasta/bin_00001.fna").rows_vary
    assert rule_for("deconv/phase1/nnls/metrics.json").tier == "numeric"
    assert rule_for("tissue/simulated/Blood_A_01.npz").tier == "fixed"
    assert rule_for("regulon/tracks/model_density_plus.bedGraph").ids == ("chrom", "start", "end")
    assert RULES[-1].pattern == "*"
    assert all(r.why and r.tier in ("fixed", "numeric", "trained") for r in RULES)
    assert metric_range("val/accuracy") == (0.0, 1.0) and metric_range("grad_accum_steps") is None
    assert metric_range("n_consistency_pairs") is None and metric_range("expression_r2") == (None, 1.0)
    # A count of correct calls (reliability bins) is no correlation.
    assert metric_range("correct") is None and metric_range("spearman_corr") == (-1.0, 1.0)
    # Marker-gene bin quality is in percent (CheckM's convention); contamination may pass 100.
    assert metric_range("completeness") == (0.0, 100.0) and metric_range("contamination") == (0.0, None)


def test_shipped_snapshot_is_in_this_format():
    """tests/data/snapshot_test_config.json is in the format this module writes."""
    path = Path(__file__).parent / "data" / "snapshot_test_config.json"
    data = json.loads(path.read_text())
    assert data["format"] == 2 and data["files"]
    assert {e["tier"] for e in data["files"].values()} == {"fixed", "numeric", "trained"}


def test_a_trained_number_of_files_is_one_entry(tmp_path, expected):
    """One FASTA per learned bin: another CPU may make another number of bins."""

    def with_bins(name: str, n: int) -> dict:
        root = write_results(tmp_path / name)
        (root / "binning" / "bins" / "fasta").mkdir(parents=True)
        for i in range(n):
            (root / "binning" / "bins" / "fasta" / f"bin_{i:05d}.fna").write_text(f">c{i}\nACGT\n")
        return snapshot(root)

    three = with_bins("three", 3)
    assert "binning/bins/fasta/*" in three["files"]
    assert compare(three, with_bins("two", 2)) == []
    assert compare(three, with_bins("none", 0)) == ["missing: binning/bins/fasta/*"]
