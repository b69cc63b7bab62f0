"""regulon: operon evaluation per bp with strands pooled and over adjacent gene pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from genomelab.regulon import targets as rtargets
from genomelab.regulon.data import GENE_COLUMNS, OPERON_COLUMNS
from genomelab.regulon.operons import (
    COMBINED,
    DISTANCE,
    DISTANCE_LL,
    OperonEvaluation,
    adjacent_pairs,
    pair_scores,
    pair_track,
)
from genomelab.regulon.targets import TargetData
from sklearn.metrics import roc_auc_score

N_BP = 12_288
# (bnumber, start, end, strand, operon): 0-based half-open; block 0 = [0, 4096) is val.
GENES = [
    ("b1", 100, 400, "+", "opA"),
    ("b2", 420, 800, "+", "opA"),  # gap 20, same operon
    ("b3", 1000, 1300, "-", ""),
    ("b4", 1350, 1600, "-", ""),  # gap 50, no operon
    ("b5", 1590, 2000, "-", "opB"),  # overlaps b4 by 10, other operon
    ("b6", 2100, 2400, "+", "opC"),
    ("b7", 2400, 2700, "+", "opC"),  # gap 0, same operon
    ("b8", 4000, 4090, "+", ""),  # gap 1300 after b7
    ("b9", 4100, 4200, "+", ""),  # junction 4090..4100 straddles the block border 4096
    ("b10", 5000, 5600, "-", "opD"),
    ("b11", 5650, 6000, "-", "opD"),  # test block 1: gap 50, same operon
    ("b12", 6100, 6500, "-", ""),  # gap 100
]


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("operons")
    rng = np.random.default_rng(0)
    (root / "g.fa").write_text(">c1\n" + "".join(rng.choice(list("ACGT"), N_BP)) + "\n")
    genes = pd.DataFrame(
        [
            {"bnumber": b, "gene_id": b, "name": b, "start": s, "end": e, "strand": st, "operon_id": op,
             "n_datasets": 0, "raw_mean": np.nan, "log1p_mean": np.nan, "z": np.nan}
            for b, s, e, st, op in GENES
        ],
        columns=GENE_COLUMNS,
    )  # fmt: skip
    ops = genes[genes["operon_id"] != ""].groupby("operon_id")
    operons = pd.DataFrame(
        [
            (o, o, g["strand"].iloc[0], g["start"].min(), g["end"].max(), len(g), ",".join(g["bnumber"]))
            for o, g in ops
        ],
        columns=OPERON_COLUMNS,
    )
    genes.to_csv(root / "genes.tsv", sep="\t", index=False)
    operons.to_csv(root / "operons.tsv", sep="\t", index=False)
    cfg = {"block_bp": 4096, "window_bp": 2048, "stride_bp": 1024}
    rtargets.make_targets(root / "genes.tsv", root / "operons.tsv", root / "g.fa", cfg, root / "t.h5", seed=0)
    data = TargetData(root / "t.h5")
    assert data.blocks["split"].tolist() == ["val", "test", "train"]
    return data, genes


def test_adjacent_same_strand_pairs(case):
    data, genes = case
    pairs = adjacent_pairs(genes, data)
    got = {(r.upstream, r.downstream): (r.distance, r.same_operon, r.split) for r in pairs.itertuples()}
    assert got == {
        ("b1", "b2"): (20, True, "val"),
        ("b3", "b4"): (50, False, "val"),
        ("b4", "b5"): (-10, False, "val"),
        ("b6", "b7"): (0, True, "val"),
        ("b7", "b8"): (1300, False, "val"),
        ("b10", "b11"): (50, True, "test"),
        ("b11", "b12"): (100, False, "test"),
    }  # b8-b9 straddles two blocks; b2-b3 and b5-b6 are on opposite strands


def test_pair_scores_match_a_naive_loop(case):
    data, genes = case
    pairs = adjacent_pairs(genes, data)
    rng = np.random.default_rng(1)
    track = rng.random(data.operon.shape).astype(np.float32)
    r = data.config.resolution_bp
    naive = []
    for p in pairs.itertuples():
        row = 0 if p.strand == "+" else 1
        lo, hi = p.lo // r, max(-(-p.hi // r), p.lo // r + 1)
        naive.append(track[row, lo:hi].mean())
    np.testing.assert_allclose(pair_scores(track, pairs, data), naive, rtol=1e-6)
    track[0, :] = np.nan  # no prediction on the plus strand: plus-strand pairs get no score
    scores = pair_scores(track, pairs, data)
    assert np.isnan(scores[(pairs["strand"] == "+").to_numpy()]).all()
    assert np.isfinite(scores[(pairs["strand"] == "-").to_numpy()]).all()


def test_pooled_bp_and_pair_metrics_against_naive(case):
    data, genes = case
    ev = OperonEvaluation(data, genes)
    rng = np.random.default_rng(2)
    track = rng.random(data.operon.shape).astype(np.float32)
    m = ev.track_metrics(track, "val")
    _, operon_bp = data.bp_tracks()
    y = operon_bp[:, :4096].any(axis=0)
    score = np.repeat(np.maximum(track[0], track[1]), data.config.resolution_bp)[:4096]
    assert m["operon_bp_auroc"] == pytest.approx(roc_auc_score(y, score))
    assert m["operon_bp_n"] == 4096 and m["operon_bp_prevalence"] == pytest.approx(y.mean())
    # The truth as a track: perfect on pairs, and per bp but for operon ends inside a 16-bp bin.
    perfect = ev.track_metrics(data.operon.astype(np.float32), "val")
    assert perfect["operon_bp_auroc"] > 0.99 and perfect["pair_auroc"] == 1.0
    # Distance rule on the val pairs: positives at gaps 20, 0; negatives at 50, -10, 1300.
    rules = ev.rule_metrics("val")
    assert rules[DISTANCE]["pair_auroc"] == pytest.approx(4 / 6)
    assert rules[DISTANCE]["pair_n"] == 5 and set(rules) == {DISTANCE, DISTANCE_LL}
    assert "operon_bp_auroc" in rules[DISTANCE_LL]  # the LL rule's per-bp track
    one_block = ev.track_metrics(track, "test", block=1)
    assert one_block["pair_n"] == 2


def test_pair_readouts_need_training_pairs_of_both_classes(case):
    data, genes = case
    ev = OperonEvaluation(data, genes)
    assert COMBINED not in ev.rule_metrics("test")  # nothing fitted yet
    truth = data.operon.astype(np.float32)
    # The training block of this genome holds no gene pair: nothing to fit, no readout rows.
    assert not ev.fit_readouts(truth, truth) and COMBINED not in ev.rule_metrics("val")


def test_pair_track_combines_a_genes_two_junctions():
    """combine="any": a gene lies in a multi-gene operon if either junction joins it, so its
    bins carry 1 - (1 - p_left)(1 - p_right); "max" keeps the best score; junction bins
    carry their pair's value; scores outside [0, 1] are refused for "any"."""
    genes = pd.DataFrame(
        {"bnumber": ["a", "b", "c"], "start": [0, 200, 400], "end": [160, 360, 560], "strand": ["+"] * 3}
    )
    pairs = pd.DataFrame(
        {
            "upstream": ["a", "b"],
            "downstream": ["b", "c"],
            "lo": [160, 360],
            "hi": [200, 400],
            "strand": ["+"] * 2,
        }
    )
    p = np.array([0.5, 0.6])
    any_ = pair_track(p, pairs, genes, (0, 560), 8, floor=0.0, combine="any")
    best = pair_track(p, pairs, genes, (0, 560), 8, floor=0.0, combine="max")
    assert any_[0, 280 // 8] == pytest.approx(1 - 0.5 * 0.4) and best[0, 280 // 8] == pytest.approx(0.6)
    assert any_[0, 40 // 8] == pytest.approx(0.5) and any_[0, 480 // 8] == pytest.approx(0.6)
    assert any_[0, 180 // 8] == pytest.approx(0.5) and any_[0, 380 // 8] == pytest.approx(0.6)
    assert (any_[1] == 0).all()
    # Unscored pairs (NaN) are "not joined" by default.
    gap = pair_track(np.array([np.nan, 0.6]), pairs, genes, (0, 560), 8, combine="any")
    assert gap[0, 40 // 8] == 0.0 and gap[0, 280 // 8] == pytest.approx(0.6)
    with pytest.raises(ValueError, match="needs probabilities"):
        pair_track(np.array([-1.0, 2.0]), pairs, genes, (0, 560), 8, combine="any")
    with pytest.raises(ValueError, match="combine must be"):
        pair_track(p, pairs, genes, (0, 560), 8, combine="mean")


# ------------------------------------------------------------ co-expression of adjacent pairs
def _expression_tally(values: dict[str, list[float]], value_field: str = "tpm"):
    """A tally of one document per (gene, dataset) value, as the data step reads them."""
    from genomelab.regulon.data import _ExpressionTally

    tally = _ExpressionTally(value_field)
    tally.add_documents(
        (
            {"datasetIds": [f"DS{d}"], "gene": {"bnumber": b}, value_field: v}
            for b, vs in values.items()
            for d, v in enumerate(vs)
            if v is not None
        ),
        {b: {} for b in values},
    )
    return tally


def _gene_rows(*rows):
    return pd.DataFrame(rows, columns=["bnumber", "start", "end", "strand"])


def test_coexpression_is_given_to_adjacent_same_strand_pairs_over_the_datasets_measuring_both():
    from genomelab.regulon.data import MIN_COEXPRESSION_DATASETS, add_coexpression

    rng = np.random.default_rng(0)
    level = np.exp(rng.normal(3, 1, 12))
    noise = np.exp(rng.normal(3, 1, 12))
    values = {
        "b1": list(level),
        "b2": list(3 * level),  # b1's partner: the same profile, scaled
        "b3": list(noise),  # after b2 on the same strand, but b4 lies between (other strand)
        "b4": [5.0] * 12,  # constant: no correlation to give
        "b5": list(noise[: MIN_COEXPRESSION_DATASETS - 1]),  # too few datasets with b6
        "b6": list(level[: MIN_COEXPRESSION_DATASETS - 1]),
        "b7": list(level),
    }
    genes = _gene_rows(
        ("b1", 0, 100, "+"), ("b2", 150, 300, "+"), ("b4", 400, 500, "-"), ("b3", 600, 700, "+"),
        ("b5", 800, 900, "-"), ("b6", 950, 1000, "-"), ("b7", 1100, 1200, "-"),
    )  # fmt: skip
    out = add_coexpression(genes, _expression_tally(values)).set_index("bnumber")
    assert out.loc["b1", "next_bnumber"] == "b2" and out.loc["b1", "next_coexpression_n"] == 12
    # log1p(3 x) against log1p(x): almost a straight line.
    assert np.tanh(out.loc["b1", "next_coexpression"]) > 0.99
    # The next gene in genome order is on the other strand: no pair.
    assert out.loc["b2", "next_bnumber"] == "" and np.isnan(out.loc["b2", "next_coexpression"])
    assert out.loc["b4", "next_bnumber"] == "" and out.loc["b3", "next_bnumber"] == ""
    # Below the minimum number of datasets measuring both, the pair has no co-expression.
    assert out.loc["b5", "next_bnumber"] == "b6"
    assert out.loc["b5", "next_coexpression_n"] == MIN_COEXPRESSION_DATASETS - 1
    assert np.isnan(out.loc["b5", "next_coexpression"])
    assert out.loc["b6", "next_coexpression_n"] == MIN_COEXPRESSION_DATASETS - 1


def test_counts_are_scaled_to_their_library_before_correlating():
    """Two independent genes in datasets of very different depth: raw counts correlate
    through the depth, counts per million do not."""
    from genomelab.regulon.data import add_coexpression

    rng = np.random.default_rng(1)
    depth = np.exp(rng.uniform(0, 5, 40))
    p1, p2 = rng.uniform(0.01, 0.02, 40), rng.uniform(0.01, 0.02, 40)
    values = {"a": list(depth * p1), "b": list(depth * p2), "bulk": list(depth * (1 - p1 - p2))}
    genes = _gene_rows(("a", 0, 100, "+"), ("b", 120, 200, "+"), ("bulk", 300, 400, "-"))
    raw = np.corrcoef(np.log1p(depth * p1), np.log1p(depth * p2))[0, 1]
    assert raw > 0.9  # what a correlation of raw counts would say
    out = add_coexpression(genes, _expression_tally(values, "count")).set_index("bnumber")
    assert abs(np.tanh(out.loc["a", "next_coexpression"])) < 0.5


def test_a_value_given_twice_for_a_gene_and_dataset_is_averaged_in_either_order():
    """Repeated (gene, dataset) documents: the co-expression matrix holds their mean on the
    log scale, the same whichever comes first."""
    values = {"b1": [1.0, 10.0, 5.0], "b2": [2.0, 4.0, None]}
    again = {"b1": [99.0], "b2": [None]}  # b1 in DS0 once more
    got = []
    for first, second in ((values, again), (again, values)):
        tally = _expression_tally(first)
        for b, vs in second.items():
            docs = [{"datasetIds": [f"DS{d}"], "gene": {"bnumber": b}, "tpm": v} for d, v in enumerate(vs)]
            tally.add_documents([d for d in docs if d["tpm"] is not None], {b: {}})
        rows, matrix = tally.log_matrix()
        got.append({g: matrix[i] for g, i in rows.items()})
    for g in got:
        assert g["b1"][tally.dataset_index["DS0"]] == pytest.approx((np.log1p(1.0) + np.log1p(99.0)) / 2)
        assert np.isnan(g["b2"][tally.dataset_index["DS2"]])
    np.testing.assert_array_equal(got[0]["b1"][[0]], got[1]["b1"][[0]])


def _reference_log_matrix(docs: list[tuple[str, str, float]], value_field: str):
    """The co-expression matrix computed plainly from (gene, dataset, value) in the order given:
    each cell's values as counts per million of their dataset's total (counts) or as they
    are, log1p, averaged; rows and columns in the order first seen."""
    genes = list(dict.fromkeys(g for g, _, _ in docs))
    datasets = list(dict.fromkeys(d for _, d, _ in docs))
    totals = {d: sum(v for _, e, v in docs if e == d) for d in datasets}
    cells: dict[tuple[int, int], list[float]] = {}
    for g, d, v in docs:
        x = 1e6 * v / max(totals[d], 1e-12) if value_field == "count" else v
        cells.setdefault((genes.index(g), datasets.index(d)), []).append(np.log1p(x))
    matrix = np.full((len(genes), len(datasets)), np.nan)
    for (i, j), logs in cells.items():
        matrix[i, j] = sum(logs) / len(logs)
    return genes, datasets, matrix.astype(np.float32)


@pytest.mark.parametrize("value_field", ["tpm", "count"])
def test_the_coexpression_matrix_and_pairs_equal_a_plain_reference_with_repeats_and_gaps(value_field):
    """The tally's matrix and the pairs' co-expression against a plain computation, on values
    that come dataset by dataset, then gene by gene, with repeated cells (given two and three
    times), missing and non-finite values, and a gene first measured in the last dataset."""
    from genomelab.regulon.data import MIN_COEXPRESSION_DATASETS, _ExpressionTally, add_coexpression

    rng = np.random.default_rng(7)
    n_genes, n_ds = 9, MIN_COEXPRESSION_DATASETS + 6
    level = rng.normal(3, 1, n_ds)
    value = np.exp(level + rng.normal(0, 0.3, (n_genes, n_ds)) * np.arange(1, n_genes + 1)[:, None])
    if value_field == "count":
        value = np.round(value * rng.uniform(1, 50, n_ds))
    docs = [(f"b{i}", f"DS{j}", float(value[i, j])) for j in range(n_ds // 2) for i in range(n_genes - 1)]
    docs += [
        (f"b{i}", f"DS{j}", float(value[i, j])) for i in range(n_genes - 1) for j in range(n_ds // 2, n_ds)
    ]
    docs += [(f"b{n_genes - 1}", f"DS{n_ds - 1}", 4.0)]
    docs += [("b2", "DS3", 99.0), ("b2", "DS3", 0.5), ("b5", "DS0", 7.0), ("b0", f"DS{n_ds - 1}", 3.0)]
    gaps = {("b3", "DS4"), ("b4", "DS4"), ("b6", "DS9"), ("b1", "DS2")}
    docs = [d for d in docs if (d[0], d[1]) not in gaps]
    tally = _ExpressionTally(value_field)
    genes = {f"b{i}": {} for i in range(n_genes)}
    tally.add_documents(
        ({"datasetIds": [d], "gene": {"bnumber": g}, value_field: v} for g, d, v in docs), genes
    )
    not_kept = (("b3", "DS4", None), ("b4", "DS4", float("nan")), ("b6", "DS9", -1.0))
    tally.add_documents(
        ({"datasetIds": [d], "gene": {"bnumber": g}, value_field: v} for g, d, v in not_kept), genes
    )

    order, datasets, expected = _reference_log_matrix(docs, value_field)
    rows, matrix = tally.log_matrix()
    assert list(rows) == order and list(tally.dataset_index) == datasets
    assert matrix.dtype == np.float32 and matrix.shape == (n_genes, n_ds)
    np.testing.assert_array_equal(np.isnan(matrix), np.isnan(expected))
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-6)
    assert np.isnan(matrix[rows["b8"], :-1]).all()

    table = _gene_rows(*[(f"b{i}", 100 * i, 100 * i + 80, "+" if i < 6 else "-") for i in range(n_genes)])
    out = add_coexpression(table, tally).set_index("bnumber")
    for i in range(n_genes - 1):
        a, b = expected[order.index(f"b{i}")], expected[order.index(f"b{i + 1}")]
        both = np.isfinite(a) & np.isfinite(b)
        if i == 5:  # b5 (+) and b6 (-): no pair
            assert out.loc["b5", "next_bnumber"] == "" and np.isnan(out.loc["b5", "next_coexpression"])
            continue
        assert out.loc[f"b{i}", "next_coexpression_n"] == both.sum()
        if both.sum() < MIN_COEXPRESSION_DATASETS:
            assert np.isnan(out.loc[f"b{i}", "next_coexpression"])
            continue
        r = np.corrcoef(a[both].astype(float), b[both].astype(float))[0, 1]
        assert out.loc[f"b{i}", "next_coexpression"] == pytest.approx(np.arctanh(r), abs=1e-6)


def test_the_expression_tally_keeps_its_values_in_twice_the_matrix_at_most_thrice_at_the_peak():
    """Values are kept in a grid of 8 bytes per cell (not 16 per value in lists, and 40 more
    per value in numpy copies while the matrix is made, as before: 14 times the matrix),
    and the matrix replaces the grid row by row. Documents are read 1,000 at a time here,
    so that the grid, not a block's arrays, is what is measured."""
    import tracemalloc

    from genomelab.regulon.data import _ExpressionTally

    n_genes, n_ds = 300, 300
    rng = np.random.default_rng(3)
    values = np.exp(rng.normal(3, 2, (n_genes, n_ds)))
    genes = {f"b{i}": {} for i in range(n_genes)}
    tracemalloc.start()
    try:
        tally = _ExpressionTally("tpm")
        tally.add_documents(
            (
                {"datasetIds": [f"S{j}"], "gene": {"bnumber": f"b{i}"}, "tpm": values[i, j]}
                for i in range(n_genes)
                for j in range(n_ds)
            ),
            genes,
            block_docs=1000,
        )
        kept, _ = tracemalloc.get_traced_memory()
        _, matrix = tally.log_matrix()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert matrix.shape == (n_genes, n_ds)
    assert kept < 2.75 * matrix.nbytes and peak < 3 * matrix.nbytes, (kept, peak, matrix.nbytes)
    # The grid is gone: the matrix is the tally's, and no value can be added to it any more.
    assert tally.log_matrix()[1] is matrix
    with pytest.raises(RuntimeError, match="after log_matrix"):
        tally.add_documents([{"datasetIds": ["S0"], "gene": {"bnumber": "b0"}, "tpm": 1.0}], genes)


def test_gene_pairs_carry_lengths_and_the_upstream_genes_coexpression():
    from genomelab.regulon.operons import gene_pairs

    genes = _gene_rows(("b1", 0, 100, "+"), ("b2", 150, 300, "+"), ("b3", 320, 400, "+")).assign(
        next_bnumber=["b2", "b3", ""], next_coexpression=[1.5, np.nan, np.nan]
    )
    pairs = gene_pairs(genes)
    assert pairs[["upstream", "downstream"]].values.tolist() == [["b1", "b2"], ["b2", "b3"]]
    assert pairs["length_upstream"].tolist() == [100, 150] and pairs["length_downstream"].tolist() == [
        150,
        80,
    ]
    assert pairs["coexpression"].iloc[0] == 1.5 and np.isnan(pairs["coexpression"].iloc[1])
    # A next gene that is not the pair's downstream gene (a table of another gene set) gives none.
    other = genes.assign(next_bnumber=["b9", "b3", ""], next_coexpression=[1.5, 0.2, np.nan])
    assert (
        np.isnan(gene_pairs(other)["coexpression"].iloc[0])
        and gene_pairs(other)["coexpression"].iloc[1] == 0.2
    )
    # Without the columns (a GFF, an older gene table): no co-expression.
    assert gene_pairs(genes[["bnumber", "start", "end", "strand"]])["coexpression"].isna().all()


def test_readout_versions_one_to_three_read_and_others_are_refused():
    from genomelab.regulon.operons import (
        COEXPRESSED,
        COMBINED,
        FALLBACK_FEATURES,
        FEATURES,
        PAIR_READOUT,
        OperonReadout,
        PairReadout,
    )

    def fitted(k):
        return PairReadout(np.zeros(k), np.ones(k), np.arange(k, dtype=float), 0.5, 10)

    readout = OperonReadout(
        {name: fitted(len(FEATURES[name])) for name in (PAIR_READOUT, COMBINED, COEXPRESSED)},
        np.zeros(16),
        40,
        12,
        {("b1", "b2"): 1.25, ("b7", "b8"): -0.5},
        {name: fitted(len(FALLBACK_FEATURES[name])) for name in (COMBINED, COEXPRESSED)},
    )
    saved = readout.to_dict()
    assert saved["version"] == 3 and saved["features"][COEXPRESSED][-2:] == [
        "coexpression_z",
        "coexpression_known",
    ]
    assert saved["fallback_features"][COMBINED] == ["distance_loglik"]
    again = OperonReadout.from_dict(saved)
    assert again.coexpression == readout.coexpression and set(again.readouts) == set(readout.readouts)
    assert set(again.fallbacks) == {COMBINED, COEXPRESSED}
    np.testing.assert_array_equal(again.fallbacks[COEXPRESSED].coef, readout.fallbacks[COEXPRESSED].coef)
    # A version-2 readout (round 14's exports: no fallbacks) still reads.
    v2 = {k: v for k, v in saved.items() if k not in ("fallbacks", "fallback_features")} | {"version": 2}
    assert OperonReadout.from_dict(v2).fallbacks == {}
    # A fallback with another feature layout is refused.
    with pytest.raises(ValueError, match="another layout"):
        OperonReadout.from_dict(saved | {"fallback_features": {COMBINED: ["distance"], COEXPRESSED: []}})
    # A version-1 readout (round 13's exports: two readouts, no co-expression) still reads.
    v1 = {k: v for k, v in saved.items() if k != "coexpression"} | {"version": 1}
    v1["readouts"] = {n: r for n, r in saved["readouts"].items() if n != COEXPRESSED}
    v1["features"] = {n: f for n, f in saved["features"].items() if n != COEXPRESSED}
    old = OperonReadout.from_dict(v1)
    assert set(old.readouts) == {PAIR_READOUT, COMBINED} and old.coexpression == {}
    with pytest.raises(ValueError, match="model.pt: operon readout of another layout"):
        OperonReadout.from_dict(saved | {"version": 4}, "model.pt")


def test_saved_coexpression_marks_the_training_genomes_pairs_without_one():
    """A pair of the training genome without co-expression is saved (null in JSON) and read
    back as the genome's pair, scored with the flag 0 as evaluation scores it; a pair the
    genome lacks (another gene set's adjacency) is not."""
    import json

    from genomelab.regulon.operons import OperonReadout

    readout = OperonReadout({}, np.zeros(16), 40, 12, {("b1", "b2"): 1.25, ("b2", "b3"): np.nan})
    saved = json.loads(json.dumps(readout.to_dict(), allow_nan=False))
    assert saved["coexpression"]["z"] == [1.25, None]
    again = OperonReadout.from_dict(saved)
    pairs = pd.DataFrame({"distance": [10, 20, 30]})
    got = again.with_coexpression(pairs, pd.Series(["b1", "b2", "b1"]), pd.Series(["b2", "b3", "b3"]))
    assert got["coexpression"].iloc[0] == 1.25 and got["coexpression"].iloc[1:].isna().all()
    assert got["training_pair"].tolist() == [True, True, False]


def test_a_pair_the_network_did_not_score_gets_the_readouts_annotation_fallback(case):
    """Where the track misses a pair's junction (a pair reaching into blocks the network was
    not run on), the readouts that know the annotation give their fallback's score (the same
    annotation features without the network's), so that their per-bp tracks score the genes
    beside it as the rules do; the network-only readout and a readout without fallbacks stay
    NaN there."""
    from genomelab.regulon.operons import (
        COEXPRESSED,
        FALLBACK_FEATURES,
        FEATURES,
        PAIR_READOUT,
        OperonReadout,
        PairReadout,
        pair_features,
    )

    data, genes = case
    ev = OperonEvaluation(data, genes)
    pairs = ev.all_pairs.assign(coexpression=np.linspace(-1, 1, len(ev.all_pairs)))

    def fitted(k, intercept):
        return PairReadout(np.zeros(k), np.ones(k), np.linspace(0.5, 1.5, k), intercept, 10)

    ll = np.linspace(-2, 2, 16)
    names = (PAIR_READOUT, COMBINED, COEXPRESSED)
    readout = OperonReadout(
        {n: fitted(len(FEATURES[n]), 0.3) for n in names},
        ll,
        40,
        12,
        fallbacks={n: fitted(len(FALLBACK_FEATURES[n]), -0.7) for n in (COMBINED, COEXPRESSED)},
    )
    track = np.full((2, data.operon.shape[1]), 0.6, np.float32)
    # The track misses the first pair's junction (bins of both strands NaN there).
    r = data.config.resolution_bp
    first = pairs.iloc[0]
    track[:, (first["lo"] - data.region_start) // r : -(-(first["hi"] - data.region_start) // r)] = np.nan
    scored = np.isfinite(pair_features(track, pairs, data)).all(axis=1)
    assert not scored[0] and scored[1:].all()
    for name in (COMBINED, COEXPRESSED):
        got = readout.score(track, pairs, data, name)
        want = readout.fallbacks[name].score(readout.annotation(pairs.iloc[:1], name))
        assert np.isfinite(got).all() and got[0] == pytest.approx(want[0])
        full = readout.readouts[name].score(readout.features(track, pairs, data, name))
        np.testing.assert_array_equal(got[1:], full[1:])  # the network's pairs: the readout's own
    assert np.isnan(readout.score(track, pairs, data, PAIR_READOUT)[0])
    bare = OperonReadout(readout.readouts, ll, 40, 12)
    assert np.isnan(bare.score(track, pairs, data, COMBINED)[0])
