"""BSON files (``genomelab.io.bson``): writer and streaming reader; errors name the file."""

from __future__ import annotations

import gzip

import numpy as np
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


def _reference(path) -> tuple[list, str | None]:
    """What bson.decode_file_iter (the reader before buffers) yields from ``path``, and its error."""
    import bson

    docs: list = []
    with open(path, "rb") as fh:
        try:
            for doc in bson.decode_file_iter(fh):
                docs.append(doc)
        except bson.errors.InvalidBSON as exc:
            return docs, str(exc)
    return docs, None


@pytest.mark.parametrize("read_bytes", [7, 64, 1 << 18])
def test_buffered_reading_yields_what_decode_file_iter_yields(tmp_path, monkeypatch, read_bytes):
    """Documents decoded a buffer at a time: the same documents across buffer boundaries (a
    document larger than a buffer included), and for a corrupt file the same documents
    before the same error, whether a size is impossible, a document does not decode or the
    file ends inside one."""
    from genomelab.io import bson as gbson

    monkeypatch.setattr(gbson, "READ_BYTES", read_bytes)
    docs = [
        {"_id": i, "v": float(i), "gene": {"bnumber": f"b{i:04d}", "pad": "x" * (i % 90)}} for i in range(60)
    ]
    docs[30]["big"] = "y" * 200
    path = tmp_path / "c.bson"
    write_bson_file(path, docs)
    data = path.read_bytes()
    assert list(iter_bson_file(path)) == docs == _reference(path)[0]
    assert len(list(iter_bson_file(path, max_docs=41))) == 41
    starts = np.cumsum([0, *(int.from_bytes(data[i : i + 4], "little") for i in _offsets(data))])
    bad_size = bytearray(data)
    bad_size[starts[20] : starts[20] + 4] = (3).to_bytes(4, "little")
    bad_type = bytearray(data)
    bad_type[starts[45] + 4] = 0x7F  # the first element's type: no such BSON type
    for name, content in (("size", bad_size), ("type", bad_type), ("cut", data[: starts[50] + 9])):
        corrupt = tmp_path / f"{name}.bson"
        corrupt.write_bytes(bytes(content))
        expected, error = _reference(corrupt)
        assert error is not None
        with pytest.raises(FormatError, match=f"truncated after {len(expected)} documents") as info:
            list(iter_bson_file(corrupt))
        assert str(info.value).endswith(error)
    # A corrupt document after max_docs is never reached.
    (tmp_path / "late.bson").write_bytes(bytes(bad_type))
    assert list(iter_bson_file(tmp_path / "late.bson", max_docs=40)) == docs[:40]


def _offsets(data: bytes) -> list[int]:
    out, pos = [], 0
    while pos < len(data):
        out.append(pos)
        pos += int.from_bytes(data[pos : pos + 4], "little")
    return out
