"""regulon: the per-gene upstream k-mer ridge baseline (issue 20's expression bar)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from genomelab.regulon import evaluate as reval
from genomelab.regulon.baselines import BaselineConfig, fit_upstream, upstream_codes, upstream_features
from genomelab.regulon.data import GENE_COLUMNS, OPERON_COLUMNS
from genomelab.regulon.metrics import gene_means
from genomelab.regulon.targets import TargetData, make_targets
from genomelab.regulon.tracks import split_bin_mask, write_tracks
from genomelab.report.summary import pair_key, read_module_summary
from regulon_toy import noisy_tracks, truth_tracks

CODE = {b: i for i, b in enumerate("ACGT")}
MOTIF = "TTGACA"
TARGETS = {"block_bp": 12288, "window_bp": 2048, "stride_bp": 1024}


def _codes(seq: str) -> np.ndarray:
    return np.array([CODE[b] for b in seq], dtype=np.uint8)


def _rc(seq: str) -> str:
    return seq[::-1].translate(str.maketrans("ACGT", "TGCA"))


def test_upstream_extraction_is_strand_correct():
    # Region starts at genome coordinate 100; positions 0..19 of the region below.
    seq = "AACCGGTTACGTTTGACAGG"
    genes = pd.DataFrame(
        {
            "start": [108, 101, 110, 117],
            "end": [112, 104, 115, 119],
            "strand": ["+", "-", "-", "+"],
        }
    )
    got = ["".join("ACGT"[c] for c in s) for s in upstream_codes(_codes(seq), 100, genes, 4)]
    # +: the 4 bp before the start; -: reverse complement of the 4 bp after the end;
    # clipped at the region ends (below: a minus gene 2 bp from the region end).
    assert got[0] == seq[4:8] == "GGTT"
    assert got[1] == _rc(seq[4:8]) == "AACC"
    assert got[2] == _rc(seq[15:19]) == "CTGT"
    assert got[3] == seq[13:17] == "TGAC"
    clipped = upstream_codes(
        _codes(seq), 100, pd.DataFrame({"start": [102], "end": [118], "strand": ["-"]}), 4
    )
    assert "".join("ACGT"[c] for c in clipped[0]) == _rc(seq[18:20]) == "CC"
    feats = upstream_features(_codes(seq), 100, genes, 4, 2)
    assert feats.shape == (4, 16)
    # "GGTT": GG, GT, TT once each of 3 dinucleotides.
    np.testing.assert_allclose(feats[0][[2 * 4 + 2, 2 * 4 + 3, 3 * 4 + 3]], 1 / 3)
    np.testing.assert_allclose(feats.sum(axis=1), 1.0)


def _planted(tmp_path, shuffle: bool = False) -> tuple[TargetData, pd.DataFrame]:
    """A random genome whose genes' expression is the number of MOTIF copies planted in the
    300 bp upstream of their start on their own strand (plus noise)."""
    rng = np.random.default_rng(4)
    n_bp, step, length = 245_760, 1000, 500
    genome = list("ACGT"[i] for i in rng.integers(0, 4, n_bp))
    rows = []
    for i, start in enumerate(range(1000, n_bp - 1500, step)):
        strand = "+" if i % 2 else "-"
        copies = int(rng.integers(0, 5))
        for c in range(copies):
            if strand == "+":
                at = start - 280 + 60 * c
                genome[at : at + 6] = MOTIF
            else:
                at = start + length + 280 - 60 * c - 6
                genome[at : at + 6] = _rc(MOTIF)
        z = copies + 0.3 * rng.standard_normal()
        rows.append((f"b{i:04d}", f"g{i}", f"g{i}", start, start + length, strand, "", 1, z, z, z))
    genes = pd.DataFrame(rows, columns=GENE_COLUMNS)
    genes["z"] = (genes["z"] - genes["z"].mean()) / genes["z"].std()
    if shuffle:
        genes["z"] = rng.permutation(genes["z"].to_numpy())
    (tmp_path / "genome.fa").write_text(">chr\n" + "".join(genome) + "\n")
    genes.to_csv(tmp_path / "genes.tsv", sep="\t", index=False)
    pd.DataFrame(columns=OPERON_COLUMNS).to_csv(tmp_path / "operons.tsv", sep="\t", index=False)
    heldout = {"blocks": {"val": [0, 5, 10, 15], "test": [2, 7, 12, 17]}}
    make_targets(
        tmp_path / "genes.tsv",
        tmp_path / "operons.tsv",
        tmp_path / "genome.fa",
        {**TARGETS, "heldout": heldout},
        tmp_path / "targets.h5",
    )
    return TargetData(tmp_path / "targets.h5"), genes


def _test_pearson(data: TargetData, genes: pd.DataFrame, pred: np.ndarray) -> float:
    mask = split_bin_mask(data, "test", data.config.resolution_bp)
    inside = np.isfinite(gene_means(np.zeros(data.expression.shape), genes, data, mask))
    assert inside.sum() >= 30
    return float(np.corrcoef(pred[inside], genes["z"].to_numpy()[inside])[0, 1])


def test_upstream_ridge_recovers_a_planted_motif_and_beats_chance(tmp_path):
    data, genes = _planted(tmp_path)
    cfg = BaselineConfig.from_dict({})
    assert (cfg.upstream_bp, cfg.upstream_k) == (300, 4)
    pred, info = fit_upstream(data, genes, cfg)
    assert info["n_train_genes"] > 100 and info["n_val_genes"] >= 30
    assert str(info["alpha"]) in {str(a) for a in cfg.upstream_alphas}
    assert _test_pearson(data, genes, pred) > 0.8
    # Chance: the same genome with the expression values shuffled among genes.
    (tmp_path / "shuffled").mkdir()
    data0, genes0 = _planted(tmp_path / "shuffled", shuffle=True)
    pred0, _ = fit_upstream(data0, genes0, cfg)
    assert abs(_test_pearson(data0, genes0, pred0)) < 0.3
    # A window that misses the motifs (10 bp) loses the signal.
    short, _ = fit_upstream(data, genes, BaselineConfig.from_dict({"upstream_bp": 10}))
    assert _test_pearson(data, genes, short) < 0.5


def test_upstream_baseline_is_a_row_of_the_expression_comparison(tmp_path):
    data, genes = _planted(tmp_path)
    rng = np.random.default_rng(1)
    truth = truth_tracks(data)
    # The "model" is the truth plus strong noise: worse than the planted-motif baseline.
    model = noisy_tracks(truth, 8.0, rng)
    write_tracks(tmp_path / "model.h5", {"model": model}, data)
    write_tracks(tmp_path / "baselines.h5", {"kmer": model, "gc": model}, data)
    (tmp_path / "norm.json").write_text('{"value_field": "tpm", "mean": 0.0, "std": 1.0, "n_genes": 240}')
    payload = reval.evaluate(
        tmp_path / "targets.h5",
        tmp_path / "genes.tsv",
        tmp_path / "norm.json",
        tmp_path / "model.h5",
        tmp_path / "baselines.h5",
        tmp_path / "eval",
        plot_bp=5000,
        summary_json=tmp_path / "eval" / "summary.json",
        summary_md=tmp_path / "eval" / "summary.md",
        baseline_cfg={},
    )
    name = "4-mer ridge, 300 bp upstream"
    assert payload["metrics"][name]["expression_gene_pearson"] > 0.8
    assert payload["upstream_baseline"]["k"] == 4
    summary = read_module_summary(tmp_path / "eval" / "summary.json")
    expression = next(c for c in summary.comparisons if c.primary == "expression_pearson")
    assert name in expression.rows and expression.kinds[name] == "baseline"
    test = expression.tests[pair_key(reval.MODEL, name)]
    assert "test genes" in test["test"] and test["favours"] == "baseline" and test["p_value"] < 0.05
    assert f"does NOT beat {name}" in expression.verdict()
    # Only the expression comparison holds it (it predicts no density or operons).
    assert all(name not in c.rows for c in summary.comparisons if c is not expression)
    assert any(n.startswith(name) for n in summary.notes)


def test_upstream_config_errors():
    with pytest.raises(ValueError, match="upstream_k"):
        BaselineConfig.from_dict({"upstream_k": 7})
