"""BSON files: concatenated documents, mongodump's format (``.bson``, or gzip from
``mongodump --gzip``, recognised by its magic bytes). Which collections a RegulonDB dump
holds, and a live MongoDB, are the regulon module's business (``regulon.bsonio``)."""

from __future__ import annotations

import gzip
import logging
import os
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
            for doc in bson.decode_file_iter(cast(BinaryIO, fh)):
                yield doc
                n += 1
                if max_docs and n >= max_docs:
                    logger.info("%s: stopped after max_docs=%d documents", path, max_docs)
                    return
        except (bson.errors.InvalidBSON, OSError, EOFError) as exc:
            raise FormatError(path, f"BSON file is corrupt or truncated after {n} documents: {exc}") from exc


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
