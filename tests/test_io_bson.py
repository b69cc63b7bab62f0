"""BSON files (``genomelab.io.bson``): writer and streaming reader; errors name the file."""

from __future__ import annotations

import gzip

import pytest
from genomelab.io.bson import iter_bson_file, write_bson_file
from genomelab.io.errors import FormatError

pytest.importorskip("bson")


def test_bson_stream_and_max_docs(tmp_path):
    path = tmp_path / "c.bson.gz"
    write_bson_file(path, ({"_id": i, "v": i * 2} for i in range(10)))
    assert [d["v"] for d in iter_bson_file(path)] == list(range(0, 20, 2))
    assert len(list(iter_bson_file(path, max_docs=3))) == 3


def test_truncated_bson_names_the_file(tmp_path):
    path = tmp_path / "geneExpression.bson"
    write_bson_file(path, ({"_id": i, "tpm": 1.0} for i in range(5)))
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(FormatError, match="geneExpression.bson.*corrupt or truncated after 4"):
        list(iter_bson_file(path))


def test_plain_and_gzip_files_are_told_apart_by_their_bytes(tmp_path):
    plain, packed = tmp_path / "a.bson", tmp_path / "b.bson.gz"
    write_bson_file(plain, [{"_id": 1}])
    write_bson_file(packed, [{"_id": 1}])
    assert (
        packed.read_bytes()[:2] == b"\x1f\x8b" and gzip.decompress(packed.read_bytes()) == plain.read_bytes()
    )
    hidden = tmp_path / "c.bson"  # gzip without the suffix still reads
    hidden.write_bytes(packed.read_bytes())
    assert list(iter_bson_file(hidden)) == list(iter_bson_file(plain)) == [{"_id": 1}]


def test_truncated_gzip_bson_names_the_file(tmp_path):
    path = tmp_path / "geneExpression.bson.gz"
    write_bson_file(path, ({"_id": i, "name": f"gene{i}" * 20} for i in range(2000)))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(FormatError, match="geneExpression.bson.gz: .*truncated") as info:
        list(iter_bson_file(path))
    assert info.value.path == path


def test_missing_file_and_bad_max_docs(tmp_path):
    with pytest.raises(FileNotFoundError, match="BSON file .*nope.bson does not exist"):
        list(iter_bson_file(tmp_path / "nope.bson"))
    write_bson_file(tmp_path / "a.bson", [{"_id": 1}])
    with pytest.raises(ValueError, match="max_docs must be >= 0"):
        list(iter_bson_file(tmp_path / "a.bson", max_docs=-1))
