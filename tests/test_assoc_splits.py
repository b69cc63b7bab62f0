"""Given splits of the assoc module and the paired test behind its verdicts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from genomelab.assoc import data as D
from genomelab.assoc import metrics as M
from genomelab.assoc import summary as Su
from genomelab.diagnostics import DiagnosticResult, write_results
from genomelab.io.errors import FormatError


def tables(tmp_path: Path, n_sources: int = 4, n_targets: int = 6) -> tuple[Path, Path, pd.DataFrame]:
    """Entity tables, and every (source, target) pair as two direction rows (line = index + 2)."""
    src = pd.DataFrame({"id": [f"S{i}" for i in range(n_sources)], "w": np.arange(n_sources, dtype=float)})
    tgt = pd.DataFrame({"id": [f"T{j}" for j in range(n_targets)], "w": np.arange(n_targets, dtype=float)})
    src.to_csv(tmp_path / "sources.tsv", sep="\t", index=False)
    tgt.to_csv(tmp_path / "targets.tsv", sep="\t", index=False)
    rows = [
        {"source": s, "target": t, "direction": d, "confidence": 1.0}
        for s in src["id"]
        for t in tgt["id"]
        for d in ("source->target", "target->source")
    ]
    return tmp_path / "sources.tsv", tmp_path / "targets.tsv", pd.DataFrame(rows)


def given_split(links: pd.DataFrame) -> pd.DataFrame:
    """A split by pair that no seeded draw would make: by the target's number modulo 3."""
    split = links["target"].str[1:].astype(int).map({0: "train", 1: "val", 2: "test"}.get).fillna("train")
    return links.assign(split=np.where(links["target"].isin(["T3", "T4"]), "train", split))


def test_given_split_column_is_honoured_exactly(tmp_path):
    sources, targets, links = tables(tmp_path)
    links = given_split(links)
    links.to_csv(tmp_path / "links.tsv", sep="\t", index=False)
    D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "a", seed=0)
    out = pd.read_csv(tmp_path / "a" / "links.tsv", sep="\t")
    merged = out.merge(links, on=["source", "target", "direction"])
    assert len(merged) == len(links)
    assert (merged["split_links"] == merged["split"]).all()
    # Another seed changes nothing of a given split.
    D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "b", seed=5)
    with np.load(tmp_path / "a" / "splits.npz") as a, np.load(tmp_path / "b" / "splits.npz") as b:
        assert (a["links_links"] == b["links_links"]).all()
        assert not (a["sources"] == b["sources"]).all() or not (a["targets"] == b["targets"]).all()


def test_directions_that_disagree_raise_naming_pair_and_lines(tmp_path):
    sources, targets, links = tables(tmp_path)
    links = given_split(links)
    # Row 9 (line 11) is the target->source row of S0 -> T4; its partner is line 10.
    assert tuple(links.loc[9, ["source", "target", "direction"]]) == ("S0", "T4", "target->source")
    links.loc[9, "split"] = "test"
    links.to_csv(tmp_path / "links.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"links.tsv: group 'S0 -> T4' straddles splits") as err:
        D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "a", seed=0)
    assert "line 10" in str(err.value) and "line 11" in str(err.value)


def test_unknown_split_value_names_file_and_line(tmp_path):
    sources, targets, links = tables(tmp_path)
    links = given_split(links)
    links.loc[3, "split"] = "holdout"
    links.to_csv(tmp_path / "links.tsv", sep="\t", index=False)
    with pytest.raises(FormatError, match=r"links.tsv, line 5: link S0 -> T1: split 'holdout'"):
        D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "a", seed=0)


def test_written_split_round_trips_as_given_and_bad_files_raise(tmp_path):
    sources, targets, links = tables(tmp_path)
    links.to_csv(tmp_path / "links.tsv", sep="\t", index=False)
    D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "drawn", seed=1)
    written = tmp_path / "drawn" / "link_splits.tsv"
    pairs = pd.read_csv(written, sep="\t")
    assert len(pairs) == len(links) // 2 and set(pairs["split"]) == {"train", "val", "test"}
    D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "given", seed=9, splits_path=written)
    with np.load(tmp_path / "drawn" / "splits.npz") as a, np.load(tmp_path / "given" / "splits.npz") as b:
        assert (a["links_links"] == b["links_links"]).all()
    assert (tmp_path / "given" / "link_splits.tsv").read_text() == written.read_text()

    # A pair the links table does not have: the splits file and its line are named.
    extra = pd.concat([pairs, pd.DataFrame([{"source": "S0", "target": "T99", "split": "test"}])])
    extra.to_csv(tmp_path / "extra.tsv", sep="\t", index=False)
    line = len(extra) + 1
    with pytest.raises(FormatError, match=rf"extra.tsv, line {line}: link S0 -> T99 is not in the links"):
        D.prepare_data(
            tmp_path / "links.tsv",
            sources,
            targets,
            tmp_path / "x",
            splits_path=tmp_path / "extra.tsv",
            seed=0,
        )
    # A link without a split.
    pairs.iloc[1:].to_csv(tmp_path / "short.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match=r"short.tsv: no split given for 2 of"):
        D.prepare_data(
            tmp_path / "links.tsv",
            sources,
            targets,
            tmp_path / "x",
            splits_path=tmp_path / "short.tsv",
            seed=0,
        )
    # Both a split column and a splits file.
    given_split(links).to_csv(tmp_path / "with_split.tsv", sep="\t", index=False)
    with pytest.raises(ValueError, match="keep one"):
        D.prepare_data(
            tmp_path / "with_split.tsv", sources, targets, tmp_path / "x", splits_path=written, seed=0
        )


def test_given_entity_split_column_is_honoured(tmp_path):
    sources, targets, links = tables(tmp_path)
    links.to_csv(tmp_path / "links.tsv", sep="\t", index=False)
    src = pd.read_csv(sources, sep="\t").assign(split=["train", "train", "val", "test"])
    src.to_csv(sources, sep="\t", index=False)
    D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "a", seed=0)
    with np.load(tmp_path / "a" / "splits.npz") as z:
        assert z["sources"].tolist() == ["train", "train", "val", "test"]
    src.assign(split=["train", "train", "val", "later"]).to_csv(sources, sep="\t", index=False)
    with pytest.raises(FormatError, match=r"sources.tsv, line 5: source entity 'S3': split 'later'"):
        D.prepare_data(tmp_path / "links.tsv", sources, targets, tmp_path / "b", seed=0)


# ------------------------------------------------------------------ paired test
def ranks_record(ranks: list[float]) -> dict:
    half = len(ranks) // 2
    return {
        "s2t": {"query": list(range(half)), "rank": ranks[:half]},
        "t2s": {"query": list(range(len(ranks) - half)), "rank": ranks[half:]},
    }


def summary_of(tmp_path: Path, net_ranks: list[float], base_ranks: list[float]):
    mrr = lambda r: float(np.mean(1 / np.asarray(r)))  # noqa: E731
    metrics = dict.fromkeys(Su.SUMMARY_METRICS, 0.1)
    grid = {
        "metric": "val/mrr_mean",
        "best_run": "run1",
        "best": {"test": {f"test/{m}": v for m, v in {**metrics, "mrr_mean": mrr(net_ranks)}.items()}},
        "runs": [{"run": "run1", "value": 0.3}],
        "test_ranks": ranks_record(net_ranks),
    }
    base = {
        "ridge": {"test": {**metrics, "mrr_mean": mrr(base_ranks)}, "test_ranks": ranks_record(base_ranks)}
    }
    (tmp_path / "grid.json").write_text(json.dumps(grid))
    (tmp_path / "base.json").write_text(json.dumps(base))
    write_results(tmp_path / "diag.json", "assoc", [DiagnosticResult("x", "pass", "ok")])
    return Su.build_summary(
        {"links": tmp_path / "grid.json"},
        {"links": tmp_path / "base.json"},
        tmp_path / "diag.json",
        None,
        tmp_path,
    ).comparisons[-1]


def test_paired_test_gives_p_values_and_ties_when_not_significant(tmp_path):
    # The network ahead on a few queries only: mean reciprocal rank higher, not significant.
    base = [2.0] * 20
    comp = summary_of(tmp_path, [1.0, 1.0] + [2.0] * 18, base)
    test = comp.tests["network (run1) vs ridge"]
    assert test["test"] == "Wilcoxon signed-rank" and test["n"] == 20
    assert 0.05 < test["p_value"] < 1 and 0.05 < test["details"]["paired_t_p"] < 1
    assert "ties with ridge" in comp.verdict() and "not significant" in comp.verdict()
    # Ahead on most queries: significant, and the verdict says so.
    comp = summary_of(tmp_path, [1.0] * 16 + [2.0] * 4, base)
    assert comp.tests["network (run1) vs ridge"]["p_value"] < 0.01
    assert "beats ridge" in comp.verdict()


def test_paired_ranks_need_the_same_queries():
    a = ranks_record([1.0, 2.0, 3.0, 4.0])
    b = ranks_record([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="not the same ones"):
        M.paired_reciprocal_ranks(a, b)
    m, bb = M.paired_reciprocal_ranks(a, ranks_record([2.0, 2.0, 2.0, 2.0]))
    assert sorted(m.tolist()) == [0.25, 1 / 3, 0.5, 1.0] and (bb == 0.5).all()
