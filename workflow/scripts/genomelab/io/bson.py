"""BSON files: concatenated documents, mongodump's format (``.bson``, or gzip from
``mongodump --gzip``, recognised by its magic bytes). Which collections a RegulonDB dump
holds, and a live MongoDB, are the regulon module's business (``regulon.bsonio``)."""

from __future__ import annotations

import gzip
import io
import logging
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from genomelab.io.atomic import atomic_output
from genomelab.io.errors import FormatError
from genomelab.io.streams import existing_file, open_binary

logger = logging.getLogger(__name__)


def iter_bson_file(path: str | os.PathLike, max_docs: int | None = None) -> Iterator[dict[str, Any]]:
    """Yield the documents of one ``.bson`` (or gzip ``.bson.gz``) file.

    ``max_docs`` stops after that many documents (``None`` or 0: all). A truncated or
    corrupt file raises ``FormatError`` naming the file (and the documents read before).
    """
    import bson

    path = existing_file(path, "BSON file")
    if max_docs is not None and max_docs < 0:
        raise ValueError(f"max_docs must be >= 0 or None, not {max_docs}")
    n = 0
    with open_binary(path) as fh:
        try:
            for doc in _decode_stream(cast(BinaryIO, fh)):
                yield doc
                n += 1
                if max_docs and n >= max_docs:
                    logger.info("%s: stopped after max_docs=%d documents", path, max_docs)
                    return
        except (bson.errors.InvalidBSON, OSError, EOFError) as exc:
            raise FormatError(path, f"BSON file is corrupt or truncated after {n} documents: {exc}") from exc


# Bytes read at a time: the documents wholly inside are decoded by one C call.
READ_BYTES = 1 << 18


def _decode_stream(fh: BinaryIO) -> Iterator[dict[str, Any]]:
    """The documents of ``fh`` as ``bson.decode_file_iter`` yields them, decoded READ_BYTES
    at a time by ``bson.decode_all`` (a dump's expression collection is a document per gene
    and sample, millions of them; ``decode_file_iter`` spends a Python loop, two reads and a
    call on each, ``decode_all`` one C call per buffer: about half the reading time).

    Whatever is not a run of whole documents (a size below BSON's 5 bytes, a buffer that does
    not decode, a file cut off in a document) goes to ``decode_file_iter``, so the documents
    before it are yielded and its error is raised as before. One difference: a gzip file cut
    off mid-stream fails on a read of READ_BYTES, so the documents of the buffer it ends in
    are not yielded (the error's count of documents read can be lower).
    """
    import bson

    size_at = struct.Struct("<i").unpack_from
    rest = b""
    while True:
        chunk = fh.read(READ_BYTES)
        buf = rest + chunk if rest else chunk
        end, n_bytes = 0, len(buf)
        while end + 4 <= n_bytes:
            size = size_at(buf, end)[0]
            if size < 5 or end + size > n_bytes:
                break
            end += size
        if end:
            view = memoryview(buf)[:end]
            try:
                docs = bson.decode_all(view)
            except bson.errors.InvalidBSON:
                yield from bson.decode_file_iter(io.BytesIO(view))
                raise  # not reached: decode_file_iter raises on the same bytes
            yield from docs
            del docs
        rest = buf[end:]
        if not chunk or (len(rest) >= 4 and size_at(rest, 0)[0] < 5):
            break  # the end, or an impossible size: decode_file_iter says what is wrong below
    if rest:
        yield from bson.decode_file_iter(io.BytesIO(rest))


def write_bson_file(path: str | os.PathLike, docs: Iterable[dict[str, Any]]) -> int:
    """Write documents as concatenated BSON atomically, gzipped for a ``.gz`` name; returns the count."""
    import bson

    n = 0
    path = Path(path)
    with atomic_output(path, suffix=".bson.gz" if path.name.endswith(".gz") else ".bson") as tmp:
        # mtime=0 keeps the gzip bytes identical across rebuilds.
        fh = gzip.GzipFile(tmp, "wb", mtime=0) if path.name.endswith(".gz") else open(tmp, "wb")
        with fh:
            for doc in docs:
                fh.write(bson.encode(doc))
                n += 1
    return n
