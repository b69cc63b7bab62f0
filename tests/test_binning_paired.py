"""The binning verdict's paired test: per-genome best-bin F1, Wilcoxon over genomes."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.binning.evaluate import genome_best_f1
from genomelab.binning.summary import genome_tests


def test_best_bin_f1_by_hand():
    # Genome a: 300 bp, 200 in bin 1 (which also holds 100 bp of b), 100 unbinned.
    # Genome b: 100 bp in bin 1, 400 bp in bin 2.  Genome c: nowhere binned.
    bins = np.array(["1", "1", "-1", "1", "2", "-1"])
    genomes = np.array(["a", "a", "a", "b", "b", "c"])
    lengths = np.array([100, 100, 100, 100, 400, 50])
    f1 = genome_best_f1(bins, genomes, lengths)
    # a in bin 1: P = 200/300, R = 200/300 -> F1 = 2/3; b in bin 2: P = 1, R = 400/500 -> 8/9.
    assert f1["a"] == pytest.approx(2 / 3) and f1["b"] == pytest.approx(8 / 9) and f1["c"] == 0.0


def test_the_verdict_test_pairs_genomes_and_sides_with_the_better_bins():
    better = {f"g{i}": 0.9 + 0.01 * i for i in range(8)}
    worse = {g: v - 0.2 for g, v in better.items()}
    scores = {"model": {"per_genome_best_f1": better}, "tnf_baseline": {"per_genome_best_f1": worse}}
    ((key, test),) = genome_tests(scores, "encoder", "TNF").items()
    assert key == "encoder vs TNF" and test["n"] == 8 and test["favours"] == "model"
    assert test["p_value"] < 0.05 and "over genomes" in test["test"]
    assert genome_tests({"model": {}, "tnf_baseline": {}}, "encoder", "TNF") == {}
