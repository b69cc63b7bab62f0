"""Tests of the FASTA reader and writer (``genomelab.io.fasta``); the compiled engine behind
it is tested against this reader in ``test_binning_features.py``."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from genomelab.io.errors import FormatError
from genomelab.io.fasta import read_fasta, read_record_chunks, write_fasta_record
from test_binning import random_seq, write_fasta


# ------------------------------------------------------------------- FASTA
@pytest.mark.parametrize("gz", [False, True])
def test_read_fasta_plain_and_gzip(tmp_path, gz):
    recs = [("a", b"ACGTNacgt" * 20), ("b", b"GGGCCC")]
    path = write_fasta(tmp_path / "x.fa", recs, gz)
    assert list(read_fasta(path)) == recs


@pytest.mark.parametrize(
    "text, problem",
    [
        (b">a\nACGT\n>a\nACGT\n", "duplicate record name 'a'"),
        (b">a\n>b\nACGT\n", "record 'a'"),
        (b"ACGT\n>a\nACGT\n", "line 1: sequence before the first"),
        (b"\xef\xbb\xbf>a\nACGT\n", "line 1: starts with a byte-order mark"),
        (b">\nACGT\n", "header without a name"),
        (b"", "no FASTA records"),
    ],
)
def test_read_fasta_rejects_bad_input_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "bad.fa"
    path.write_bytes(text)
    with pytest.raises(ValueError, match=problem) as info:
        list(read_fasta(path))
    assert str(path) in str(info.value)


def test_read_fasta_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fa"):
        list(read_fasta(tmp_path / "nope.fa"))


def reference_parse(text: bytes) -> list[tuple[str, bytes]]:
    """A line-by-line FASTA parser to compare the chunked one against."""
    out: list[tuple[str, bytes]] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(b">"):
            out.append((line[1:].split()[0].decode(), b""))
        elif line:
            out[-1] = (out[-1][0], out[-1][1] + line.replace(b" ", b"").replace(b"\t", b""))
    return out


@pytest.mark.parametrize("chunk_bytes", [2, 3, 7, 64, 1 << 22])
def test_read_fasta_chunk_boundaries_line_endings_and_wrapping(tmp_path, chunk_bytes):
    rng = np.random.default_rng(8)
    parts = [b"\n\n"]  # blank lines before the first header are fine
    for i in range(12):
        seq = random_seq(rng, int(rng.integers(1, 300)), junk=0.05)
        width = int(rng.choice([0, 1, 60, 80]))
        lines = [seq] if width == 0 else [seq[j : j + width] for j in range(0, len(seq), width)]
        # A '>' in the description, CRLF line ends, blank lines and a space inside a line.
        header = b">r%d desc a>b" % i
        eol = b"\r\n" if i % 3 == 0 else b"\n"
        body = eol.join(lines)
        if i % 4 == 1:
            body = body[:2] + b" " + body[2:]
        parts.append(header + eol + body + eol + (b"\n" if i % 5 == 0 else b""))
    text = b"".join(parts)
    path = tmp_path / "x.fa"
    path.write_bytes(text)
    got = list(read_fasta(path, chunk_bytes=chunk_bytes))
    assert got == reference_parse(text)
    assert [n for n, _ in got] == [f"r{i}" for i in range(12)]


def test_read_fasta_rejects_a_header_marker_inside_a_sequence(tmp_path):
    path = tmp_path / "x.fa"
    path.write_bytes(b">a\nAC>GT\n")
    with pytest.raises(ValueError, match="'>' inside its sequence"):
        list(read_fasta(path))


def test_write_fasta_record_round_trips_through_the_reader(tmp_path):
    buf = io.BytesIO()
    write_fasta_record(buf, "c1", b"ACGT" * 50, width=60)
    write_fasta_record(buf, "c2", b"GG")
    path = tmp_path / "w.fa"
    path.write_bytes(buf.getvalue())
    assert buf.getvalue().splitlines()[1] == b"ACGT" * 15
    assert list(read_fasta(path)) == [("c1", b"ACGT" * 50), ("c2", b"GG")]


@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_gzip_is_an_error_naming_the_file(tmp_path, keep):
    """A cut-off download used to surface as a bare EOFError naming no file."""
    rng = np.random.default_rng(0)
    text = b"".join(b">c%d\n%s\n" % (i, random_seq(rng, 2000)) for i in range(20))
    packed = gzip.compress(text)
    path = tmp_path / "cut.fa.gz"
    path.write_bytes(packed[: int(len(packed) * keep)])
    with pytest.raises(FormatError, match="truncated or corrupt compressed file") as info:
        list(read_fasta(path))
    assert info.value.path == path and str(path) in str(info.value)
    with pytest.raises(FormatError, match="truncated or corrupt") as chunks:
        list(read_record_chunks(path, chunk_bytes=1024))
    assert str(path) in str(chunks.value)


def test_corrupt_gzip_is_an_error_naming_the_file(tmp_path):
    packed = bytearray(gzip.compress(b">a\nACGT\n" * 1000))
    packed[20:40] = b"\xff" * 20  # damage the deflate stream
    path = tmp_path / "bad.fa.gz"
    path.write_bytes(bytes(packed))
    with pytest.raises(FormatError, match="truncated or corrupt compressed file") as info:
        list(read_fasta(path))
    assert str(path) in str(info.value)
