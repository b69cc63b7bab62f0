"""benchmarks/run_all.py: which scripts it runs and which it lists as needing arguments."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

RUNNER = Path(__file__).resolve().parents[1] / "benchmarks" / "run_all.py"


@pytest.fixture(scope="module")
def run_all():
    spec = importlib.util.spec_from_file_location("run_all", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("arguments", "needs"),
    [
        ('ap.add_argument("--repeats", type=int, default=200)', False),
        ('ap.add_argument("--flag", action="store_true")\nap.add_argument("--x", required=False)', False),
        ('ap.add_argument("csv", type=Path)', True),
        ('ap.add_argument("--out", type=Path, required=True)', True),
        ('parser.add_argument("pats", nargs="+")', True),
        # An earlier run as the default: the study would rewrite its committed result.
        ('ap.add_argument("--run", type=Path, default=ROOT / "results" / "regfolds" / "regulon")', True),
        ('ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "x.json")', False),
        # Run folders as arguments, none by default: without them it would write [].
        ("import sys\nfor arg in sys.argv[1:]:\n    print(arg)", True),
        ("import sys\nfor arg in [Path(p) for p in sys.argv[1:]] or [RAW]:\n    print(arg)", False),
    ],
)
def test_a_script_needs_arguments_when_its_parser_has_a_positional_or_a_required_option(
    run_all, tmp_path, arguments, needs
):
    script = tmp_path / "bench_x.py"
    script.write_text(f"import argparse\nap = parser = argparse.ArgumentParser()\n{arguments}\n")
    assert run_all.needs_arguments(script) is needs


def test_the_shipped_studies_are_skipped_and_the_hot_path_benchmarks_run(run_all):
    scripts = {p.name: run_all.needs_arguments(p) for p in RUNNER.parent.glob("bench_*.py")}
    # Studies on a dataset or on earlier runs: their commands are in their docstrings.
    assert scripts["bench_tissue_sparse.py"] and scripts["bench_tissue_pairs.py"]
    # Hot paths with defaults for every option: run by run_all.py as they are.
    assert not scripts["bench_engine.py"] and not scripts["bench_serve.py"]


def test_the_studies_on_earlier_runs_are_skipped(run_all):
    """bench_regulon_gene_level.py (default --run results/regfolds_ecoli/regulon) rewrote the
    committed round-14 result without --expression; bench_regulon_upstream.py (run folders as
    arguments) wrote [] over its result and run_all.py then failed on the list."""
    bench = RUNNER.parent
    assert run_all.needs_arguments(bench / "bench_regulon_gene_level.py")
    assert run_all.needs_arguments(bench / "bench_regulon_upstream.py")
    # Studies on the demo's run (results/demo/assoc) behind docs/assoc.md's tables.
    assert run_all.needs_arguments(bench / "bench_assoc_coldstart.py")
    assert run_all.needs_arguments(bench / "bench_assoc_probe.py")
    # Its default is the shipped dataset: it runs.
    assert not run_all.needs_arguments(bench / "bench_deconv_presence.py")
