"""Held-out genome blocks of the regulon module (drawn, given by index, given by coordinates)
and the paired tests of its summary."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.io.errors import FormatError
from genomelab.regulon.blocks import Heldout, assign_blocks, block_frame, read_heldout_file, spaced_split
from genomelab.regulon.targets import TargetConfig, make_blocks
from genomelab.splits import group_split

SMALL = {"block_bp": 6144, "window_bp": 2048, "stride_bp": 1024}
# 10 blocks of 6144 bp over [0, 61440).
END = 61_440


def cfg(**heldout) -> TargetConfig:
    return TargetConfig(**SMALL, heldout=heldout, seed=3)


def test_default_is_a_fixed_spaced_set_and_random_stays_available():
    blocks = make_blocks(0, END, cfg())
    ids = np.arange(10)
    # The documented rule: test at floor((j + 0.5) n / n_test), val at floor(j n / n_val).
    expected = ["val", "train", "test", "train", "train", "val", "train", "test", "train", "train"]
    assert blocks["split"].tolist() == expected
    assert blocks["start"].tolist() == (ids * 6144).tolist()
    # No seed in it: another seed holds out the same blocks.
    again = make_blocks(0, END, TargetConfig(**SMALL, seed=99))
    assert again["split"].tolist() == expected
    drawn = make_blocks(0, END, cfg(scheme="random"))
    assert drawn["split"].tolist() == group_split(ids, [0.7, 0.15, 0.15], seed=3).tolist()


def test_spaced_split_matches_the_documented_example():
    """E. coli's 4,641,652 bp in 46 blocks of 102,400 bp: the table in docs/regulon.md."""
    split = spaced_split(46, [0.7, 0.15, 0.15])
    assert np.flatnonzero(split == "test").tolist() == [3, 9, 16, 23, 29, 36, 42]
    assert np.flatnonzero(split == "val").tolist() == [0, 6, 13, 19, 26, 32, 39]
    for n in range(3, 200):
        s = spaced_split(n, [0.7, 0.15, 0.15])
        assert (s == "test").any() and (s == "val").any() and (s == "train").sum() >= n // 2
    # Val blocks that would fall on test blocks move to the next free block.
    s = spaced_split(10, [0.2, 0.4, 0.4])
    assert (s == "val").sum() == 4 and (s == "test").sum() == 4
    with pytest.raises(ValueError, match="at least 3 blocks"):
        spaced_split(2, [0.7, 0.15, 0.15])
    with pytest.raises(ValueError, match="leave no training block"):
        spaced_split(4, [0.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="scheme must be one of"):
        Heldout.from_config({"scheme": "sometimes"})


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
