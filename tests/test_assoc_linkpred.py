"""Assoc as link-prediction users measure it: confidence words, per-link filtered MRR and
Hits@K in both directions, paired per-link tests, and the row on links absent from a
known source (``exclude_known``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from genomelab.assoc import baselines as bl
from genomelab.assoc import data as D
from genomelab.assoc import metrics as M
from genomelab.assoc import summary as Su
from genomelab.diagnostics import DiagnosticResult, write_results
from genomelab.io.errors import FormatError

SCHEMA = Path(__file__).parents[1] / "workflow" / "schemas" / "assoc.schema.yaml"


def write_tsv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def _entities(tmp_path: Path) -> tuple[D.EntityTable, D.EntityTable]:
    s = write_tsv(tmp_path / "s.tsv", [{"id": "a", "description": "x"}, {"id": "b", "description": "y"}])
    t = write_tsv(tmp_path / "t.tsv", [{"id": f"t{i}", "description": f"gene {i}"} for i in range(4)])
    return D.read_entities(s, "source"), D.read_entities(t, "target")


def _links_file(tmp_path: Path, confidences: list[str]) -> Path:
    targets = ["t0", "t1", "t2", "t3"]
    rows = [
        {"source": "a" if i < 2 else "b", "target": targets[i], "direction": "both", "confidence": c}
        for i, c in enumerate(confidences)
    ]
    return write_tsv(tmp_path / "links.tsv", rows)


# ------------------------------------------------------------ confidence words
def default_words() -> dict[str, float]:
    schema = yaml.safe_load(SCHEMA.read_text())
    return schema["properties"]["data"]["properties"]["confidence_words"]["default"]


def test_schema_maps_regulondb_words_and_reader_applies_them_case_insensitively(tmp_path):
    words = default_words()
    assert words == {"confirmed": 1.0, "strong": 0.7, "weak": 0.4}
    src, tgt = _entities(tmp_path)
    path = _links_file(tmp_path, ["Strong", "WEAK", " confirmed ", "0.25"])
    links = D.read_links(path, src, tgt, confidence_words=words)
    s2t = links.direction == D.S2T
    np.testing.assert_allclose(links.confidence[s2t][np.argsort(links.target[s2t])], [0.7, 0.4, 1.0, 0.25])
    # A mapping of the user's own replaces the default.
    links = D.read_links(path, src, tgt, confidence_words={"strong": 0.9, "weak": 0.1, "CONFIRMED": 1})
    assert sorted(set(np.round(links.confidence, 3))) == [0.1, 0.25, 0.9, 1.0]


def test_unknown_confidence_word_names_file_line_word_and_mapping(tmp_path):
    src, tgt = _entities(tmp_path)
    path = _links_file(tmp_path, ["Strong", "1", "Medium", "0.5"])
    with pytest.raises(FormatError) as err:
        D.read_links(path, src, tgt, confidence_words=default_words())
    message = str(err.value)
    assert str(path) in message and "line 4" in message and "'Medium'" in message
    assert "confirmed 1, strong 0.7, weak 0.4" in message and "b -> t2" in message
    # Without a mapping, words are refused as before, and numbers outside [0, 1] still are.
    with pytest.raises(FormatError, match="not numbers"):
        D.read_links(path, src, tgt)
    with pytest.raises(FormatError, match=r"outside \[0, 1\]"):
        D.read_links(
            _links_file(tmp_path, ["Strong", "1.5", "1", "1"]), src, tgt, confidence_words=default_words()
        )


# ------------------------------------------------------------ per-link metrics
# Hand-made example: sources a, b; targets t0..t3; links (both directions) a-t0 train,
# a-t1 test, a-t2 test, b-t3 test, b-t0 val.
PAIRS = [(0, 0, "train"), (0, 1, "test"), (0, 2, "test"), (1, 3, "test"), (1, 0, "val")]
S2T_SCORES = np.array([[0.9, 0.5, 0.1, 0.3], [0.9, 0.8, 0.2, 0.5]])
T2S_SCORES = np.array([[0.0, 0.0], [0.2, 0.7], [0.6, 0.1], [0.5, 0.5]])


def hand_example() -> tuple[D.Links, np.ndarray, D.SplitLabels]:
    src = np.array([p[0] for p in PAIRS] * 2)
    tgt = np.array([p[1] for p in PAIRS] * 2)
    direction = np.array([D.S2T] * len(PAIRS) + [D.T2S] * len(PAIRS))
    split = np.array([p[2] for p in PAIRS] * 2)
    links = D.Links(src, tgt, direction, np.ones(len(src), np.float32), np.full(len(src), ""))
    assignment = D.SplitAssignment(
        {"links": split, "entities": split}, np.array(["train"] * 2), np.array(["train"] * 4)
    )
    return links, split, D.split_labels(links, assignment, "links", "test", 2, 4)


def fixed_scores(scale: float = 1.0):
    def score(direction: str, queries: np.ndarray) -> np.ndarray:
        return scale * (S2T_SCORES if direction == D.S2T else T2S_SCORES)[queries]

    return score


def test_per_link_ranks_by_hand():
    links, split, labels = hand_example()
    # s2t: a-t1 beats the only negative t3 (0.5 > 0.3): rank 1; a-t2 (0.1 < 0.3): rank 2,
    # the train link t0 scored highest is filtered out; b-t3 (0.5) is behind t1 (0.8): rank 2.
    rows, ranks = M.link_ranks(fixed_scores(), labels, links, split, D.S2T)
    assert [(links.source[r], links.target[r]) for r in rows] == [(0, 1), (0, 2), (1, 3)]
    np.testing.assert_array_equal(ranks, [1, 2, 2])
    # t2s: t1 ranks a behind b (rank 2); t2 ranks a first; t3 ties a with b (rank 1.5).
    _, ranks = M.link_ranks(fixed_scores(), labels, links, split, D.T2S)
    np.testing.assert_array_equal(ranks, [2, 1, 1.5])

    known = np.array([(s, t) == (0, 2) for s, t in zip(links.source, links.target, strict=True)])
    m = M.evaluate(fixed_scores(), labels, links, split, known=known)
    assert m["s2t_link_mrr"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["s2t_link_hits@1"] == pytest.approx(1 / 3) and m["s2t_link_hits@10"] == 1.0
    assert m["t2s_link_mrr"] == pytest.approx((0.5 + 1 + 1 / 1.5) / 3)
    assert m["link_mrr_mean"] == pytest.approx((m["s2t_link_mrr"] + m["t2s_link_mrr"]) / 2)
    # Per query (best positive) a counts once with its easy link: higher than per link.
    assert m["s2t_mrr"] == pytest.approx((1 + 0.5) / 2)
    assert m["s2t_mrr"] > m["s2t_link_mrr"]
    # Links absent from the known source: a-t2 drops out of both directions.
    assert m["n_s2t_novel_links"] == 2 and m["s2t_novel_link_mrr"] == pytest.approx(0.75)
    assert m["t2s_novel_link_mrr"] == pytest.approx((0.5 + 1 / 1.5) / 2)


def test_paired_link_ranks_match_by_link_and_refuse_other_splits():
    links, split, labels = hand_example()
    known = np.zeros(len(links), bool)
    known[2] = known[2 + len(PAIRS)] = True  # a-t2
    net, base = {}, {}
    M.evaluate(fixed_scores(), labels, links, split, ranks_out=net, known=known)
    M.evaluate(fixed_scores(-1.0), labels, links, split, ranks_out=base, known=known)
    m, b = M.paired_link_reciprocal_ranks(net, base, D.S2T)
    np.testing.assert_allclose(m, [1, 0.5, 0.5])
    # Reversed scores: a-t1 behind t3 (rank 2), a-t2 ahead (1), b-t3 ahead of t1 but
    # behind t2 (2).
    np.testing.assert_allclose(b, [0.5, 1, 0.5])
    m, b = M.paired_link_reciprocal_ranks(net, base, D.S2T, novel_only=True)
    assert len(m) == 2
    base[D.S2T]["link_row"] = base[D.S2T]["link_row"][:-1]
    base[D.S2T]["link_rank"] = base[D.S2T]["link_rank"][:-1]
    base[D.S2T]["link_known"] = base[D.S2T]["link_known"][:-1]
    with pytest.raises(ValueError, match="same split"):
        M.paired_link_reciprocal_ranks(net, base, D.S2T)


def _records(score, links, split, labels, known) -> tuple[dict, dict]:
    ranks: dict = {}
    metrics = M.evaluate(score, labels, links, split, ranks_out=ranks, known=known)
    return metrics, ranks


def test_summary_headlines_per_link_tables_with_paired_tests(tmp_path):
    links, split, labels = hand_example()
    known = np.zeros(len(links), bool)
    known[2] = known[2 + len(PAIRS)] = True
    net, net_ranks = _records(fixed_scores(), links, split, labels, known)
    pop, pop_ranks = _records(fixed_scores(-1.0), links, split, labels, known)
    grid = {
        "metric": "val/link_mrr_mean",
        "best_run": "run1",
        "best": {"test": {f"test/{k}": v for k, v in net.items()}},
        "runs": [{"run": "run1", "value": 0.5}],
        "test_ranks": net_ranks,
    }
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    (tmp_path / "base.json").write_text(json.dumps({"popularity": {"test": pop, "test_ranks": pop_ranks}}))
    write_results(tmp_path / "diag.json", "assoc", [DiagnosticResult("x", "pass", "ok")])
    paths = {k: {"links": tmp_path / f"{k}.json"} for k in ("grid", "base")}
    summary = Su.build_summary(paths["grid"], paths["base"], tmp_path / "diag.json", None, tmp_path)
    titles = [c.title for c in summary.comparisons]
    assert titles[0].startswith("Per-link ranking source->target")
    assert titles[1].startswith("Per-link ranking target->source")
    assert "absent from the known source" in titles[2] and "absent from the known source" in titles[3]
    assert titles[-1].startswith("Per-query MRR (best positive)")
    first = summary.comparisons[0]
    assert first.primary == "s2t_link_mrr"
    assert first.rows["network (run1)"]["s2t_link_mrr"] == pytest.approx(2 / 3)
    test = first.tests["network (run1) vs popularity"]
    assert test["test"] == "Wilcoxon signed-rank" and test["n"] == 3
    assert summary.comparisons[2].tests["network (run1) vs popularity"]["n"] == 2
    assert summary.comparisons[-1].primary == "mrr_mean"
    # Written out: the plot shows the per-link tables, the Markdown names both kinds of table.
    Su.write_summary(
        paths["grid"],
        paths["base"],
        tmp_path / "diag.json",
        tmp_path / "s.json",
        tmp_path / "s.md",
        tmp_path / "p.png",
    )
    assert (tmp_path / "p.png").stat().st_size > 0
    text = (tmp_path / "s.md").read_text()
    assert "Per-link ranking source->target" in text and "Per-query MRR (best positive)" in text


# ------------------------------------------------------------ exclude_known through the steps
def synthetic(tmp_path: Path) -> tuple[Path, Path, Path]:
    """Four families; source g links every target of family g (descriptions say which)."""
    words = ["alpha", "bravo", "charlie", "delta"]
    sources = [
        {"id": f"S{g}{k}", "description": f"regulator {k} | family {words[g]}"}
        for g in range(4)
        for k in range(2)
    ]
    targets, links = [], []
    for g in range(4):
        for j in range(8):
            targets.append({"id": f"T{g}_{j}", "description": f"gene {j} | family {words[g]}"})
            links += [
                {"source": f"S{g}{k}", "target": f"T{g}_{j}", "direction": "both", "confidence": "Strong"}
                for k in range(2)
            ]
    return (
        write_tsv(tmp_path / "links.tsv", links),
        write_tsv(tmp_path / "sources.tsv", sources),
        write_tsv(tmp_path / "targets.tsv", targets),
    )


def test_exclude_known_marks_links_and_baselines_report_the_rest(tmp_path):
    from genomelab.assoc import features as Fe

    links, sources, targets = synthetic(tmp_path)
    known_rows = [
        {"source": f"S0{k}", "target": f"T0_{j}", "evidence": "x"} for k in range(2) for j in range(8)
    ]
    known_rows.append({"source": "elsewhere", "target": "T9", "evidence": "x"})  # outside the vocabularies
    known = write_tsv(tmp_path / "known.tsv", known_rows)
    data_dir = tmp_path / "data"
    counts = D.prepare_data(
        links, sources, targets, data_dir, seed=1, confidence_words=default_words(), exclude_known=known
    )
    _, _, read, assignment = D.load_data(data_dir)
    assert np.allclose(read.confidence, 0.7)
    assert assignment.known.sum() == 32  # 16 pairs x 2 directions
    assert sum(counts["links_known_per_split"].values()) == 32
    cfg = Fe.FeatureConfig(analyzer="word", ngram_min=1, ngram_max=1, text_dim=8, max_fields=2)
    Fe.build_features(data_dir, tmp_path / "feat.npz", tmp_path / "featurizer.npz", cfg, seed=0)
    out = bl.run_baselines(data_dir, tmp_path / "feat.npz", "links")
    test_split = assignment.links["links"] == "test"
    for d in (D.S2T, D.T2S):
        res = out["kNN"]["test"]
        n_novel = int((test_split & ~assignment.known & (read.direction == d)).sum())
        assert res[f"n_{d}_links"] == int((test_split & (read.direction == d)).sum())
        assert res[f"n_{d}_novel_links"] == n_novel > 0
        # Features name the family: kNN finds held-out links far better than popularity.
        assert res[f"{d}_link_mrr"] > out["popularity"]["test"][f"{d}_link_mrr"]


def test_bad_known_files_raise_naming_the_file(tmp_path):
    links, sources, targets = synthetic(tmp_path)
    words = default_words()
    bad = write_tsv(tmp_path / "known_cols.tsv", [{"regulator": "S00", "gene": "T0_0"}])
    with pytest.raises(FormatError, match="known_cols.tsv.*lacks column"):
        D.prepare_data(
            links, sources, targets, tmp_path / "d1", seed=1, confidence_words=words, exclude_known=bad
        )
    other = write_tsv(tmp_path / "known_ids.tsv", [{"source": "lexA", "target": "b4043"}])
    with pytest.raises(ValueError, match="known_ids.tsv.*shares no"):
        D.prepare_data(
            links, sources, targets, tmp_path / "d2", seed=1, confidence_words=words, exclude_known=other
        )


def test_paired_test_sides_with_the_larger_signed_rank_sum_when_the_median_is_zero():
    # Most links far down for both methods (difference 0), a few much better with the model.
    m = np.array([0.0] * 20 + [1.0] * 10 + [0.0, 0.0])
    b = np.array([0.0] * 20 + [0.1] * 10 + [0.2, 0.2])
    test = Su._test(m, b, "rr")
    assert np.median(m - b) == 0
    assert test["favours"] == "model" and test["p_value"] < 0.05
    assert test["details"]["rank_sum_model"] > test["details"]["rank_sum_baseline"]
    assert Su._test(b, m, "rr")["favours"] == "baseline"
