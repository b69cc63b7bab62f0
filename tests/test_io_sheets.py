"""Sample sheets (``genomelab.io.sheets``): one reader for the tissue and deconv modules,
the shared row checks of the ingest sheet, and errors that name the sheet and line."""

from __future__ import annotations

import numpy as np
import pytest
from genomelab.ingest.builds import genome_build
from genomelab.ingest.regions import read_regions
from genomelab.io.errors import FormatError
from genomelab.io.sheets import (
    SampleRecord,
    is_sample_sheet,
    iter_sheet_rows,
    read_sample_sheet,
    sheet_files,
    write_sample_sheet,
)
from genomelab.io.tables import read_given_assignment, read_split_table

HEADER = "sample\tfile\ttissue\tsubtype\tsource_sample"


def _write_sheet(path, rows, header=HEADER):
    path.write_text(header + "\n" + "".join("\t".join(r) + "\n" for r in rows))
    return path


def _npz(path):
    np.savez(path, methylation=np.zeros((2, 4), np.int8))
    return path


def test_missing_column_names_the_sheet(tmp_path):
    sheet = _write_sheet(tmp_path / "s.tsv", [["a", "a.npz"]], header="sample\tfile")
    with pytest.raises(FormatError, match=r"s\.tsv: sample sheet lacks column\(s\) \['tissue'\]") as info:
        read_sample_sheet(sheet)
    assert info.value.path == sheet and info.value.line is None


def test_a_comma_separated_header_is_a_missing_column_error(tmp_path):
    sheet = tmp_path / "c.tsv"
    sheet.write_text("sample,file,tissue\na,a.npz,Blood\n")
    with pytest.raises(FormatError, match=r"c\.tsv: .*lacks column.*tab-separated"):
        read_sample_sheet(sheet)


@pytest.mark.parametrize(
    "rows, line, problem",
    [
        ([["a", "a.npz", "Blood", "", ""], ["a", "a.npz", "Liver", "", ""]], 3, "duplicate sample 'a'"),
        ([["a", "a.npz", "Blood", "", ""], ["b", "a.npz", "", "", ""]], 3, "empty 'tissue'"),
        ([["a/b", "a.npz", "Blood", "", ""]], 2, "sample name 'a/b' may only contain"),
        ([["", "a.npz", "Blood", "", ""]], 2, "empty 'sample'"),
    ],
)
def test_bad_rows_name_the_sheet_and_line(tmp_path, rows, line, problem):
    _npz(tmp_path / "a.npz")
    sheet = _write_sheet(tmp_path / "d.tsv", rows)
    with pytest.raises(FormatError, match=problem) as info:
        read_sample_sheet(sheet)
    assert info.value.line == line and f"d.tsv, line {line}: " in str(info.value)


def test_line_numbers_count_blank_and_comment_lines(tmp_path):
    sheet = tmp_path / "g.tsv"
    sheet.write_text("# made by hand\nsample\tfile\n\na\tx\n# note\nb\t\n")
    rows = iter_sheet_rows(sheet, "sheet", ("sample", "file"), comments=True)
    assert next(rows) == (4, {"sample": "a", "file": "x"})
    with pytest.raises(FormatError, match=r"g\.tsv, line 6: empty 'file'"):
        next(rows)


def test_unknown_columns_only_when_strict(tmp_path):
    sheet = tmp_path / "u.tsv"
    sheet.write_text("sample\tfile\textra\na\tx\ty\n")
    assert [v for _, v in iter_sheet_rows(sheet, "sheet", ("sample", "file"))] == [
        {"sample": "a", "file": "x"}
    ]
    with pytest.raises(FormatError, match=r"u\.tsv: sheet: unknown column\(s\) \['extra'\]"):
        list(iter_sheet_rows(sheet, "sheet", ("sample", "file"), strict_columns=True))


def test_missing_sheet_empty_sheet_and_missing_data_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"sample sheet .*nope\.tsv does not exist"):
        read_sample_sheet(tmp_path / "nope.tsv")
    with pytest.raises(FormatError, match=r"e\.tsv: sample sheet lists no samples"):
        read_sample_sheet(_write_sheet(tmp_path / "e.tsv", []))
    sheet = _write_sheet(tmp_path / "m.tsv", [["b", "missing.npz", "Blood", "", ""]])
    with pytest.raises(FileNotFoundError, match=r"m\.tsv, line 2: file .*missing\.npz"):
        read_sample_sheet(sheet)
    assert read_sample_sheet(sheet, check_files=False)[0].file == tmp_path / "missing.npz"


def test_write_then_read_gives_the_records_back(tmp_path):
    data = tmp_path / "npz"
    data.mkdir()
    records = [
        SampleRecord("s1", _npz(data / "s1.npz"), "Blood", "B_cell", "s1"),
        SampleRecord("s1.aug", _npz(data / "s1.aug.npz"), "Blood", "", "s1"),
    ]
    out = write_sample_sheet(records, tmp_path / "sheets" / "samples.tsv")
    assert out.read_text().splitlines()[:2] == [HEADER, "s1\t../npz/s1.npz\tBlood\tB_cell\ts1"]
    back = read_sample_sheet(out)
    assert [(r.sample, r.file.resolve(), r.tissue, r.subtype, r.source_sample) for r in back] == [
        (r.sample, r.file.resolve(), r.tissue, r.subtype, r.source_sample) for r in records
    ]


def test_sheet_files_and_sheet_detection(tmp_path):
    (tmp_path / "a.npz").write_bytes(b"")
    sheet = tmp_path / "s.tsv"
    sheet.write_text("sample\tfile\ttissue\nA\ta.npz\tLiver\n")
    assert is_sample_sheet(sheet) and sheet_files(sheet) == [str(tmp_path / "a.npz")]
    table = tmp_path / "t.tsv"
    table.write_text("region\tA\tB\nr1\t0.1\t0.2\n")
    assert not is_sample_sheet(table) and not is_sample_sheet(tmp_path / "absent.tsv")
    sheet.write_text("sample\tfile\ttissue\nA\tb.npz\tLiver\n")
    with pytest.raises(
        FileNotFoundError, match=r"s\.tsv, line 2: file .*b\.npz of sample 'A' does not exist"
    ):
        sheet_files(sheet)


def test_a_sheet_saved_by_excel_reads_as_written(tmp_path):
    """Excel's "UTF-8 CSV" starts with a byte-order mark and Windows ends lines with CRLF:
    the mark once made the header's first column '\\ufeffsample', a "missing" column the
    user could see; the line numbers of errors still count from the header."""
    (tmp_path / "a.npz").write_bytes(b"")
    sheet = tmp_path / "s.tsv"
    sheet.write_bytes("\ufeffsample\tfile\ttissue\r\nA\ta.npz\tLiver\r\n".encode())
    assert is_sample_sheet(sheet)
    assert [(r.sample, r.file, r.tissue) for r in read_sample_sheet(sheet)] == [
        ("A", tmp_path / "a.npz", "Liver")
    ]
    sheet.write_bytes("\ufeffsample\tfile\ttissue\r\nA\ta.npz\tLiver\r\nA\ta.npz\tLiver\r\n".encode())
    with pytest.raises(FormatError, match=r"s\.tsv, line 3: duplicate sample 'A'"):
        read_sample_sheet(sheet)


def test_a_sheet_saved_in_the_windows_ansi_encoding_names_the_file_and_line(tmp_path):
    """Excel's "Text (Tab delimited)" writes Windows' ANSI code page, not UTF-8: one accented
    tissue ('Pâncreas', byte 0xe2) stopped Snakemake's start with a bare "UnicodeDecodeError:
    'utf-8' codec can't decode byte 0xe2 in position 29", naming neither file nor line. The
    sheet, the split column read from it, a splits file and a regions BED now name both."""
    (tmp_path / "a.npz").write_bytes(b"")
    sheet = tmp_path / "s.tsv"
    sheet.write_bytes("sample\tfile\ttissue\tsplit\nA\ta.npz\tP\u00e2ncreas\ttrain\n".encode("cp1252"))
    want = r"s\.tsv, line 2: byte 0xe2 is not UTF-8 text .*save it as UTF-8"
    with pytest.raises(FormatError, match=want):
        read_sample_sheet(sheet)
    with pytest.raises(FormatError, match=want):
        read_given_assignment(sheet, ("sample",), "sample sheet", required=False)
    splits = tmp_path / "s.tsv"
    splits.write_bytes("sample\tsplit\nA\ttrain\nB\tval \u2013 old\n".encode("cp1252"))
    with pytest.raises(FormatError, match=r"s\.tsv, line 3: byte 0x96 is not UTF-8"):
        read_split_table(splits)
    bed = tmp_path / "r.bed"
    bed.write_bytes("chr1\t10\t20\tr\u00e9gion1\n".encode("cp1252"))
    with pytest.raises(FormatError, match=r"r\.bed, line 1: byte 0xe9 is not UTF-8"):
        read_regions(bed, genome_build("hg38"))


def test_one_file_under_two_source_samples_is_refused(tmp_path):
    """A copied row whose file was not changed: the same data under two individuals could be
    split into train and test. Copies that share a source_sample are fine (one split)."""
    for name in ("a.npz", "b.npz"):
        (tmp_path / name).write_bytes(b"")
    sheet = tmp_path / "s.tsv"
    sheet.write_text("sample\tfile\ttissue\nA\ta.npz\tLiver\nB\tb.npz\tLiver\nC\t./a.npz\tBlood\n")
    with pytest.raises(
        FormatError,
        match=r"s\.tsv, line 4: file \./a\.npz of sample 'C' is also the file of sample 'A' \(line 2\), "
        "another source_sample",
    ):
        read_sample_sheet(sheet)
    assert len(read_sample_sheet(sheet, check_files=False)) == 3  # labels only (a stacked HDF5's sheet)
    sheet.write_text(
        "sample\tfile\ttissue\tsource_sample\nA\ta.npz\tLiver\td1\nA2\ta.npz\tLiver\td1\nB\tb.npz\tLiver\td2\n"
    )
    assert [r.sample for r in read_sample_sheet(sheet)] == ["A", "A2", "B"]
