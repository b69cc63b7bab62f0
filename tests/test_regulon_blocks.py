"""Held-out genome blocks of the regulon module (drawn, given by index, given by coordinates)
and the paired tests of its summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from genomelab.io.errors import FormatError
from genomelab.io.tables import read_given_assignment
from genomelab.regulon import data as rdata
from genomelab.regulon import targets as rtargets
from genomelab.regulon.blocks import Heldout, assign_blocks, block_frame, read_heldout_file
from genomelab.regulon.bsonio import Source
from genomelab.regulon.evaluate import BASELINE_NAMES, MODEL, evaluate
from genomelab.regulon.synthetic import make_synthetic
from genomelab.regulon.targets import TargetConfig, TargetData, make_blocks
from genomelab.regulon.tracks import write_tracks
from genomelab.report.summary import pair_key, read_module_summary
from genomelab.splits import group_split

SMALL = {"block_bp": 6144, "window_bp": 2048, "stride_bp": 1024}
# 10 blocks of 6144 bp over [0, 61440).
END = 61_440


def cfg(**heldout) -> TargetConfig:
    return TargetConfig(**SMALL, heldout=heldout, seed=3)


def test_default_is_the_random_draw_of_before():
    blocks = make_blocks(0, END, cfg())
    ids = np.arange(10)
    assert blocks["split"].tolist() == group_split(ids, [0.7, 0.15, 0.15], seed=3).tolist()
    assert blocks["start"].tolist() == (ids * 6144).tolist()


def test_given_indices_are_honoured_exactly():
    blocks = make_blocks(0, END, cfg(blocks={"val": [1], "test": [3, 7, 9]}))
    expected = ["train"] * 10
    expected[1] = "val"
    expected[3] = expected[7] = expected[9] = "test"
    assert blocks["split"].tolist() == expected
    # The seed plays no part in a given split.
    again = make_blocks(
        0, END, TargetConfig(**SMALL, heldout={"blocks": {"val": [1], "test": [3, 7, 9]}}, seed=9)
    )
    assert again["split"].tolist() == expected


@pytest.mark.parametrize(
    "blocks, message",
    [
        ({"val": [1], "test": [10]}, "block 10 does not exist"),
        ({"val": [1], "test": [1]}, "block 1 is listed twice"),
        ({"val": [2, 2], "test": [4]}, "block 2 is listed twice"),
        ({"val": [], "test": [4]}, "no val"),
    ],
)
def test_bad_indices_name_the_config_key(blocks, message):
    with pytest.raises(ValueError, match=message) as err:
        make_blocks(0, END, cfg(blocks=blocks))
    assert "regulon.targets.heldout" in str(err.value)


def test_blocks_and_file_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        cfg(blocks={"val": [1], "test": [2]}, file="x.bed")


def test_coordinate_file_maps_to_blocks(tmp_path):
    bed = tmp_path / "heldout.bed"
    # A comment, a row on another contig (skipped), one row spanning blocks 4-5, one block 8.
    bed.write_text(
        "# held-out blocks\nplasmid\t0\t6144\ttest\nchr\t24576\t36864\ttest\nchr\t49152\t55296\tval\n"
    )
    blocks = make_blocks(0, END, cfg(file=str(bed)), contig="chr")
    assert blocks.loc[blocks["split"] == "test", "block"].tolist() == [4, 5]
    assert blocks.loc[blocks["split"] == "val", "block"].tolist() == [8]
    given = read_heldout_file(bed, "chr", block_frame(0, END, 6144))
    assert given.lines == {"4": 3, "5": 3, "8": 4}
    # A headed TSV with the columns in another order maps the same.
    tsv = tmp_path / "heldout.tsv"
    tsv.write_text("split\tchrom\tend\tstart\ntest\tchr\t36864\t24576\nval\tchr\t55296\t49152\n")
    same = make_blocks(0, END, cfg(file=str(tsv)), contig="chr")
    assert same["split"].tolist() == blocks["split"].tolist()


def test_last_short_block_is_a_whole_block(tmp_path):
    """A region that is no multiple of block_bp ends with a shorter block; a row ending at the
    region end covers it."""
    bed = tmp_path / "h.bed"
    bed.write_text("chr\t0\t6144\tval\nchr\t61440\t65536\ttest\n")
    blocks = make_blocks(0, 65_536, cfg(file=str(bed)), contig="chr")
    assert blocks["split"].tolist() == ["val"] + ["train"] * 9 + ["test"]


@pytest.mark.parametrize(
    "rows, line, message",
    [
        ("chr\t0\t6144\tval\nchr\t24576\t30000\ttest\n", 2, "covers only part of block"),
        ("chr\t0\t6144\tval\nchr\t100\t6144\ttest\n", 2, "covers only part of block"),
        ("chr\t0\t6144\tval\nchr\t61440\t67584\ttest\n", 2, "outside the region"),
        ("chr\t0\t12288\tval\nchr\t6144\t12288\ttest\n", 2, "block 1 is assigned twice .also on line 1"),
        ("chr\t0\t6144\tval\nchr\t0\t6144\tval\n", 2, "block 0 is assigned twice"),
        ("chr\t0\t6144\tvalid\n", 1, "split 'valid'"),
        ("chr\tzero\t6144\tval\n", 1, "header lacks"),
        ("chr\t0\tx\tval\n", 1, "must be integers"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, rows, line, message):
    bed = tmp_path / "bad.bed"
    bed.write_text(rows)
    with pytest.raises(FormatError, match=message) as err:
        read_heldout_file(bed, "chr", block_frame(0, END, 6144))
    assert err.value.path == bed and err.value.line == line


def test_a_file_without_a_test_block_is_refused(tmp_path):
    bed = tmp_path / "h.bed"
    bed.write_text("chr\t0\t6144\tval\n")
    with pytest.raises(ValueError, match=r"h.bed: the given split has no test"):
        assign_blocks(block_frame(0, END, 6144), Heldout(file=str(bed)), [0.7, 0.15, 0.15], 0, "chr")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("regulon_blocks")
    paths = make_synthetic(root / "in", n_bp=61_440, seed=1)
    d = root / "data"
    rdata.process(
        Source(paths["dump"]),
        paths["genome"],
        d / "genes.tsv",
        d / "operons.tsv",
        d / "norm_stats.json",
        d / "data_report.json",
    )
    return {"root": root, **paths, "data": d}


def _targets(synth, out: Path, targets: dict, seed: int) -> TargetData:
    d = synth["data"]
    rtargets.make_targets(
        d / "genes.tsv",
        d / "operons.tsv",
        synth["genome"],
        targets,
        out / "targets.h5",
        seed=seed,
        blocks_out=out / "blocks.tsv",
    )
    return TargetData(out / "targets.h5")


def test_blocks_table_round_trips_as_given_blocks(synth, tmp_path):
    drawn = _targets(synth, tmp_path / "a", SMALL, seed=3)
    table = pd.read_csv(tmp_path / "a" / "blocks.tsv", sep="\t")
    assert list(table.columns) == ["block", "chrom", "start", "end", "split"]
    assert table["split"].tolist() == drawn.blocks["split"].tolist()
    assert (table["chrom"] == drawn.contig).all()
    # The table is also a splits file keyed by block for the generic reader.
    given = read_given_assignment(tmp_path / "a" / "blocks.tsv", ("block",), "blocks file")
    assert given.values == {str(b): s for b, s in zip(table["block"], table["split"], strict=True)}
    # Reused as the held-out file under another seed: the same blocks, windows and table.
    reused = _targets(
        synth, tmp_path / "b", {**SMALL, "heldout": {"file": str(tmp_path / "a" / "blocks.tsv")}}, 99
    )
    pd.testing.assert_frame_equal(reused.blocks, drawn.blocks)
    pd.testing.assert_frame_equal(reused.windows, drawn.windows)
    assert (tmp_path / "b" / "blocks.tsv").read_text() == (tmp_path / "a" / "blocks.tsv").read_text()


def test_summary_holds_paired_tests(synth, tmp_path):
    """A model close to the truth against noise baselines: every comparison has a paired
    test with a p-value; with many test genes the expression verdict is a significant win."""
    test_blocks = [2, 5, 8]
    data = _targets(synth, tmp_path, {**SMALL, "heldout": {"blocks": {"val": [0], "test": test_blocks}}}, 3)
    rng = np.random.default_rng(0)
    truth = {
        "expression": np.nan_to_num(data.expression).astype(np.float32),
        "density": data.density.astype(np.float32),
        "operon": data.operon.astype(np.float32),
    }
    model = {k: (v + 0.05 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in truth.items()}
    model["operon"] = np.clip(model["operon"], 0, 1)
    noise = {
        key: {k: rng.random(v.shape).astype(np.float32) for k, v in truth.items()} for key in ("kmer", "gc")
    }
    write_tracks(tmp_path / "model.h5", {"model": model}, data)
    write_tracks(tmp_path / "baselines.h5", noise, data)
    evaluate(
        tmp_path / "targets.h5",
        synth["data"] / "genes.tsv",
        synth["data"] / "norm_stats.json",
        tmp_path / "model.h5",
        tmp_path / "baselines.h5",
        tmp_path / "eval",
        plot_bp=5000,
        summary_json=tmp_path / "eval" / "summary.json",
        summary_md=tmp_path / "eval" / "summary.md",
    )
    summary = read_module_summary(tmp_path / "eval" / "summary.json")
    for comp in summary.comparisons:
        for baseline in BASELINE_NAMES.values():
            test = comp.tests[pair_key(MODEL, baseline)]
            assert 0 <= test["p_value"] <= 1 and test["favours"] == "model", (comp.title, test)
    expression, density, operon = summary.comparisons
    gene_test = expression.tests[pair_key(MODEL, BASELINE_NAMES["gc"])]
    assert "test genes" in gene_test["test"] and gene_test["n"] >= 10 and gene_test["p_value"] < 0.05
    assert gene_test["details"]["per_block"]["details"]["blocks"] == test_blocks
    assert "beats" in expression.verdict() and "Wilcoxon" in expression.verdict()
    block_test = density.tests[pair_key(MODEL, BASELINE_NAMES["kmer"])]
    # Three blocks: the smallest two-sided Wilcoxon p is 2 / 2^3, so never "beats".
    assert block_test["n"] == 3 and block_test["p_value"] == pytest.approx(0.25)
    assert block_test["details"]["smallest_possible_p"] == pytest.approx(0.25)
    assert "ties with" in density.verdict() and "not significant" in density.verdict()
    assert "held-out test blocks [2, 5, 8]" in " ".join(summary.notes).lower()
    assert "p = " in (tmp_path / "eval" / "summary.md").read_text()
    json.loads((tmp_path / "eval" / "summary.json").read_text())
