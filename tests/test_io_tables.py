"""Name-keyed tables (``genomelab.io.tables``): depth, truth, clusters, links, entities;
errors name the file and the line of the first bad row."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
from genomelab.io.errors import FormatError
from genomelab.io.tables import (
    check_names,
    check_truth_header,
    read_clusters,
    read_coverage_table,
    read_depth_table,
    read_entity_table,
    read_given_assignment,
    read_link_table,
    read_split_table,
    read_truth,
    write_clusters,
    write_entity_table,
    write_link_table,
    write_split_table,
    write_table,
)

DIRECTIONS = ("source->target", "target->source", "both")


def test_name_check_shows_counts_and_first_mismatches():
    with pytest.raises(ValueError, match=r"1 of fasta are missing from depth.*\['c3'\].*\['x9'\]"):
        check_names(["c1", "c2", "c3"], ["c1", "c2", "x9"], "fasta", "depth")
    check_names(["c1"], ["c1", "c2"], "fasta", "depth")  # extras are fine


def test_name_check_says_when_a_table_holds_whole_header_lines():
    """A truth table made with `grep '>'` holds 'k141_1 flag=1 len=5000', not the contig
    name 'k141_1' (the header's first word): the error says so."""
    with pytest.raises(
        ValueError,
        match=r"2 of fasta are missing from truth .*the names of truth hold whole header lines .*first word \(e.g. 'k141_1 flag=1",
    ):
        check_names(
            ["k141_1", "k141_2"], ["k141_1 flag=1 len=5000", "k141_2 flag=0 len=3000"], "fasta", "truth"
        )


def test_truth_table_duplicates_rejected(tmp_path):
    path = tmp_path / "truth.tsv"
    path.write_text("contig\tgenome\nc1\tA\nc1\tB\n")
    with pytest.raises(ValueError, match=r"truth\.tsv, line 3: truth table lists contigs more than once"):
        read_truth(path)
    path.write_text("contig\tgenome\tlength\nc1\tA\t5\nc2\tB\t7\n")
    assert read_truth(path).to_dict() == {"c1": "A", "c2": "B"}
    path.write_text("contig\tlength\nc1\t5\n")
    with pytest.raises(FormatError, match=r"truth\.tsv, line 1: truth table needs a tab-separated header"):
        read_truth(path)
    # Without a header line: the first row reads as one; the error says what is expected.
    path.write_text("c1\tA\nc2\tB\n")
    with pytest.raises(
        FormatError, match=r"naming the columns 'contig' and 'genome'.*\['c1', 'A'\]: a table without"
    ):
        check_truth_header(path)


def test_depth_table_errors_name_file_and_line(tmp_path):
    head = "contigName\tcontigLen\ttotalAvgDepth\ts1.bam\ts1.bam-var\n"
    path = tmp_path / "depth.tsv"
    path.write_text(head + "c1\t100\t2\t2\t0.1\nc2\t100\t-1\t-1\t0.1\n")
    with pytest.raises(FormatError, match=r"depth\.tsv, line 3: depth table holds negative") as info:
        read_depth_table(path)
    assert info.value.line == 3
    path.write_text(head + "c1\t100\t2\t2\t0.1\nc1\t100\t2\t2\t0.1\n")
    with pytest.raises(FormatError, match=r"depth\.tsv, line 3: depth table lists contigs more than once"):
        read_depth_table(path)
    path.write_text("contigName\tcontigLen\ttotalAvgDepth\nc1\t100\t2\n")
    with pytest.raises(FormatError, match=r"depth\.tsv: depth table has no per-sample depth columns"):
        read_depth_table(path)
    with pytest.raises(FileNotFoundError, match="depth table .*nope.tsv does not exist"):
        read_depth_table(tmp_path / "nope.tsv")


def test_depth_truth_and_coverage_errors_give_the_file_s_own_line_after_blank_lines(tmp_path):
    # Blank lines (skipped by the reader) shifted these errors up: the row count + 2 was
    # reported, as the links and entity tables did before.
    head = "contigName\tcontigLen\ttotalAvgDepth\ts1.bam\ts1.bam-var\n"
    ok = "c1\t100\t2\t2\t0.1\n"
    path = tmp_path / "depth.tsv"
    cases = [
        (ok + "\n\n" + "c2\t100\t-1\t-1\t0.1\n", 5, "holds negative"),
        (ok + "\n" + ok, 4, "lists contigs more than once"),
        (ok + "\n\n\n" + "c2\t100\t2\tmany\t0.1\n", 6, "is not a number"),
    ]
    for rows, line, problem in cases:
        path.write_text(head + rows)
        with pytest.raises(FormatError, match=problem) as info:
            read_depth_table(path)
        assert info.value.line == line
    truth = tmp_path / "truth.tsv"
    truth.write_text("contig\tgenome\nc1\tg1\n\n\nc1\tg2\n")
    with pytest.raises(FormatError, match="more than once") as info:
        read_truth(truth)
    assert info.value.line == 5
    # A coverage table without a header: its first line is a row.
    cov = tmp_path / "cov.tsv"
    cov.write_text("c1\t2.0\n\nc2\t-3\n")
    with pytest.raises(FormatError, match="negative") as info:
        read_coverage_table(cov)
    assert info.value.line == 3
    cov.write_text("c1\t2.0\nc2\t-3\n")
    with pytest.raises(FormatError, match="negative") as info:
        read_coverage_table(cov)
    assert info.value.line == 2


def test_truncated_gzip_table_names_the_file(tmp_path):
    rows = "".join(f"c{i}\t{i % 7}\n" for i in range(50000))
    packed = gzip.compress(("contig\tcluster\n" + rows).encode())
    path = tmp_path / "clusters.tsv.gz"
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(FormatError, match=r"clusters\.tsv\.gz: truncated or corrupt compressed file"):
        read_clusters(path, ["c1"])


def test_clusters_round_trip_in_the_order_asked(tmp_path):
    path = tmp_path / "clusters.tsv"
    write_clusters(np.array(["c1", "c2", "c3"]), np.array([0, 1, 0]), path)
    assert path.read_text() == "contig\tcluster\nc1\t0\nc2\t1\nc3\t0\n"
    assert read_clusters(path, np.array(["c3", "c2"], dtype=object)).tolist() == [0, 1]


def test_cluster_table_errors(tmp_path):
    path = tmp_path / "clusters.tsv"
    path.write_text("contig\tbin\nc1\t0\n")
    with pytest.raises(FormatError, match=r"clusters\.tsv: clusters table lacks column\(s\) \['cluster'\]"):
        read_clusters(path, ["c1"])
    path.write_text("contig\tcluster\nc1\t0\nc2\t1\nc1\t2\n")
    with pytest.raises(
        FormatError, match=r"clusters\.tsv, line 4: clusters table lists contigs more than once"
    ):
        read_clusters(path, ["c1"])
    path.write_text("contig\tcluster\nc1\t0\n")
    with pytest.raises(
        ValueError, match=r"1 of the k-mer profiles are missing from clusters .*clusters\.tsv"
    ):
        read_clusters(path, ["c1", "c9"])


def _links(path, rows, header="source\ttarget\tdirection\tconfidence"):
    path.write_text(header + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    "rows, line, problem",
    [
        ([("a", "u", "both", "1"), ("b", "v", "sideways", "1")], 3, r"unknown direction\(s\) \['sideways'\]"),
        ([("a", "u", "both", "1.5")], 2, r"1 confidence\(s\) outside \[0, 1\]"),
        ([("a", "u", "both", "1"), ("b", "v", "both", "high")], 3, "not numbers"),
    ],
)
def test_link_table_bad_rows_name_the_line(tmp_path, rows, line, problem):
    with pytest.raises(FormatError, match=problem) as info:
        read_link_table(_links(tmp_path / "links.tsv", rows), DIRECTIONS)
    assert info.value.line == line and f"links.tsv, line {line}: " in str(info.value)


def test_link_table_columns_and_values(tmp_path):
    with pytest.raises(FormatError, match=r"links\.tsv: links table lacks column\(s\) \['confidence'\]"):
        read_link_table(
            _links(tmp_path / "links.tsv", [("a", "u", "both")], "source\ttarget\tdirection"), DIRECTIONS
        )
    with pytest.raises(FormatError, match="links table has no rows"):
        read_link_table(_links(tmp_path / "links.tsv", []), DIRECTIONS)
    df = read_link_table(_links(tmp_path / "links.tsv", [(" a ", "u", " both", "0.5")]), DIRECTIONS)
    assert df[["source", "direction"]].values.tolist() == [["a", "both"]] and df["confidence"].tolist() == [
        0.5
    ]


def test_entity_table_errors_name_the_line(tmp_path):
    path = tmp_path / "ents.tsv"
    path.write_text("id\tdescription\na\tx\n \ty\n")
    with pytest.raises(FormatError, match=r"ents\.tsv, line 3: source entity table has 1 empty ids"):
        read_entity_table(path, "source")
    path.write_text("id\tdescription\na\tx\nb\ty\na\tz\n")
    with pytest.raises(
        FormatError, match=r"ents\.tsv, line 4: target entity table has duplicate ids: \['a'\]"
    ):
        read_entity_table(path, "target")
    path.write_text("name\na\n")
    with pytest.raises(FormatError, match="has no 'id' column"):
        read_entity_table(path, "source")


def test_write_table_is_tab_separated_with_six_significant_digits(tmp_path):
    path = tmp_path / "t.tsv"
    write_table(pd.DataFrame({"bin": ["b1"], "gc": [0.123456789]}), path)
    assert path.read_text() == "bin\tgc\nb1\t0.123457\n"


def test_split_table_round_trip_and_errors(tmp_path):
    rows = [
        {"sample": "a", "source_sample": "a", "tissue": "Blood", "label": "Blood", "split": "train"},
        {"sample": "b", "source_sample": "a", "tissue": "Blood", "label": "Blood", "split": "test"},
    ]
    path = tmp_path / "splits.tsv"
    write_split_table(rows, path)
    assert path.read_text().splitlines()[0] == "sample\tsource_sample\ttissue\tlabel\tsplit"
    assert read_split_table(path) == rows
    path.write_text(path.read_text().replace("\ttest\n", "\ttesting\n"))
    with pytest.raises(FormatError, match=r"splits\.tsv, line 3: unknown split name 'testing'"):
        read_split_table(path)
    path.write_text("sample\tsplit\na\ttrain\n")
    with pytest.raises(FormatError, match=r"splits\.tsv: splits file lacks column\(s\) \['source_sample'"):
        read_split_table(path)


def test_split_table_with_a_byte_order_mark_and_crlf_reads_as_written(tmp_path):
    path = tmp_path / "splits.tsv"
    path.write_bytes("\ufeffsample\tsplit\r\na\ttrain\r\nb\ttest\r\n".encode())
    given = read_given_assignment(path)
    assert (given.key, given.kind, given.values, given.lines) == (
        "sample",
        "split",
        {"a": "train", "b": "test"},
        {"a": 2, "b": 3},
    )


def test_link_table_writer_round_trips_and_refuses_shifting_fields(tmp_path):
    path = tmp_path / "links.tsv"
    columns = ("source", "target", "direction", "confidence", "category")
    assert write_link_table([["a", "u", "source->target", "0.5", "+"]], path, columns) == 1
    assert (
        path.read_text() == "source\ttarget\tdirection\tconfidence\tcategory\na\tu\tsource->target\t0.5\t+\n"
    )
    df = read_link_table(path, DIRECTIONS)
    assert df["category"].tolist() == ["+"] and df["confidence"].tolist() == [0.5]
    with pytest.raises(ValueError, match="tabs or line breaks"):
        write_link_table([["a", "u\tv", "both", "1", ""]], tmp_path / "bad.tsv", columns)
    with pytest.raises(ValueError, match="starts with columns"):
        write_link_table([], tmp_path / "bad.tsv", ("target", "source", "direction", "confidence"))
    assert not (tmp_path / "bad.tsv").exists()


def test_entity_table_writer_round_trips_and_refuses_shifting_fields(tmp_path):
    path = tmp_path / "targets.tsv"
    rows = [["b0001", "thrL | thr leader peptide", "ACGT"], ["b0002", "", "GG"]]
    assert write_entity_table(rows, path, ("id", "description", "sequence")) == 2
    df = read_entity_table(path, "target")
    assert df["id"].tolist() == ["b0001", "b0002"] and df["description"].tolist()[1] == ""
    with pytest.raises(ValueError, match="entity row .*tabs or line breaks"):
        write_entity_table([["b1", "two\nlines"]], tmp_path / "bad.tsv", ("id", "description"))
    with pytest.raises(ValueError, match="starts with an 'id' column"):
        write_entity_table([], tmp_path / "bad.tsv", ("name", "description"))
    assert not (tmp_path / "bad.tsv").exists()
