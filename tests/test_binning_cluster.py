"""Tests of binning clustering, outliers, abundance inputs and the figures (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.binning import evaluate as ev
from genomelab.binning.bins import n50
from genomelab.binning.diagnostics import contig_length_check
from sklearn.metrics import adjusted_rand_score


# ---------------------------------------------------------------- figures
def test_bp_weighted_ari_on_a_hand_computed_example():
    # bp contingency: A-x 2, A-y 2, B-y 3 -> sum C(n_ij, 2) = 1 + 1 + 3 = 5; rows C(4,2) +
    # C(3,2) = 9; columns C(2,2) + C(5,2) = 11; C(7,2) = 21; expected 9 * 11 / 21;
    # ARI = (5 - 99/21) / (10 - 99/21) = 6 / 111.
    truth, pred, bp = np.array(["A", "A", "B"]), np.array(["x", "y", "y"]), np.array([2, 2, 3])
    assert ev.weighted_ari(truth, pred, bp) == pytest.approx(6 / 111)
    # Unit weights give the ordinary (contig-count) ARI.
    rng = np.random.default_rng(0)
    t, p = rng.integers(0, 4, 200), rng.integers(0, 5, 200)
    assert ev.weighted_ari(t, p, np.ones(200)) == pytest.approx(adjusted_rand_score(t, p))
    with pytest.raises(ValueError, match="differ"):
        ev.weighted_ari(truth, pred, bp[:2])


def test_evaluation_reports_both_aris_labelled():
    # One long contig of genome B misplaced into A's bin: few contigs wrong, many bp wrong.
    bins = np.array([0, 0, 0, 0, 1, 1])
    genomes = np.array(["A", "A", "A", "B", "B", "B"])
    lengths = np.array([100, 100, 100, 5000, 100, 100])
    metrics, _ = ev.evaluate_binning(bins, genomes, lengths)
    assert metrics["ari_contigs"] == pytest.approx(adjusted_rand_score(genomes, bins))
    assert metrics["ari_bp"] == pytest.approx(ev.weighted_ari(genomes, bins, lengths))
    assert metrics["ari_bp"] < metrics["ari_contigs"]
    assert "ari" not in metrics and "ari_binned" not in metrics
    assert {"ari_bp_binned", "ari_contigs_binned"} <= set(metrics)


def test_diagnostics_n50_is_the_n50_not_the_median():
    # Sorted 6, 5, 4, 3, 2 (20 bp): 6 + 5 = 11 >= 10 -> N50 5; the median is 4.
    assert n50(np.array([2, 3, 4, 5, 6])) == 5
    result = contig_length_check(np.array([2, 3, 4, 5, 6]))
    assert result.details == {"median": 4.0, "n50": 5}
    # One 10 kb contig holds 10 of 13 kb: N50 10,000 while the median is 1,000.
    result = contig_length_check(np.array([1000, 10000, 1000, 1000]))
    assert result.details["n50"] == 10000 and result.details["median"] == 1000.0
    assert result.status == "warn" and "N50 10000 bp" in result.message
