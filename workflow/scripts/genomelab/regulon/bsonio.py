"""Streaming readers of RegulonDB collections: a ``mongodump`` folder (files read by
``genomelab.io.bson``) or a live MongoDB.

Both paths yield plain ``dict`` documents one at a time, so every parser downstream is
shared and memory stays bounded by one document (plus what the caller keeps).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from genomelab.io.bson import iter_bson_file

logger = logging.getLogger(__name__)

GENE_EXPRESSION = "geneExpression"
GENE_DATAMART = "geneDatamart"
OPERON_DATAMART = "operonDatamart"
COLLECTIONS = (GENE_EXPRESSION, GENE_DATAMART, OPERON_DATAMART)


def collection_file(dump_dir: str | os.PathLike, collection: str) -> Path:
    """The file of ``collection`` in a mongodump folder (``<c>.bson`` or ``<c>.bson.gz``).

    ``mongodump`` writes ``<out>/<database>/<collection>.bson``; both the database folder
    and its parent are accepted.
    """
    root = Path(dump_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"RegulonDB dump folder {root} does not exist")
    candidates = [root / f"{collection}{ext}" for ext in (".bson", ".bson.gz")]
    candidates += [
        d / f"{collection}{ext}"
        for d in sorted(root.iterdir())
        if d.is_dir()
        for ext in (".bson", ".bson.gz")
    ]
    found = [c for c in candidates if c.is_file()]
    if not found:
        raise FileNotFoundError(
            f"RegulonDB dump folder {root} has no {collection}.bson[.gz] "
            f"(expected mongodump layout <dump>/<database>/<collection>.bson){_unread(root, collection)}"
        )
    if len(found) > 1:
        raise ValueError(
            f"RegulonDB dump folder {root} has several {collection} files: {[str(f) for f in found]}"
        )
    return found[0]


def _unread(root: Path, collection: str) -> str:
    """A note naming files of ``collection`` in another format (``geneDatamart.json``, a
    RegulonDB-Datamarts export or ``mongoexport`` output), which the dump reader skips; "" when
    there are none. mongodump's own ``<c>.metadata.json`` is no such file."""
    others = sorted(
        str(p)
        for d in (root, *(d for d in sorted(root.iterdir()) if d.is_dir()))
        for p in d.glob(f"{collection}.*")
        if p.is_file() and not p.name.endswith((".bson", ".bson.gz", ".metadata.json"))
    )
    if not others:
        return ""
    return (
        f"; {others} is not read: only mongodump's BSON is (JSON documents: load them with "
        "mongoimport and give regulon.mongodb_uri_env, or write them as BSON, e.g. "
        "genomelab.io.bson.write_bson_file; docs/regulon.md, 'Your own data')"
    )


def check_dump(dump_dir: str | os.PathLike, genes_elsewhere: bool = False) -> None:
    """A mongodump folder the data step can read, checked when Snakemake starts:
    ``FileNotFoundError`` naming ``regulon.dump_dir`` when it is no folder or lacks
    ``operonDatamart`` (without it every operon target is 0 and the gate stopped the run much
    later, on a constant target), or ``geneDatamart`` unless ``genes_elsewhere``
    (``regulon.annotation`` gives the genes). ``geneExpression`` is optional (an expression
    table, or none). A collection saved in another format (JSON) is named as not read."""
    if not str(dump_dir).strip():
        # Path("") is the working directory, which would be searched as the dump.
        raise FileNotFoundError(
            "regulon.dump_dir is empty: give the RegulonDB mongodump folder, or regulon.flat_files "
            "(genes, operons) or regulon.mongodb_uri_env instead (docs/regulon.md)"
        )
    root = Path(dump_dir)
    if not root.is_dir():
        where = "" if root.is_absolute() else f" (looked for in the working directory {Path.cwd()})"
        raise FileNotFoundError(f"regulon.dump_dir {root} is not a folder{where}")
    needed = [OPERON_DATAMART] + ([] if genes_elsewhere else [GENE_DATAMART])
    for collection in needed:
        try:
            collection_file(root, collection)
        except FileNotFoundError as err:
            why = "its operons" if collection == OPERON_DATAMART else "its genes (or set regulon.annotation)"
            raise FileNotFoundError(f"regulon.dump_dir: {err}; the regulon module needs {why}") from None


def iter_dump(
    dump_dir: str | os.PathLike, collection: str, max_docs: int | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the documents of ``collection`` from a mongodump folder."""
    yield from iter_bson_file(collection_file(dump_dir, collection), max_docs)


def iter_mongo(
    uri_env: str, database: str, collection: str, max_docs: int | None = None
) -> Iterator[dict[str, Any]]:
    """Yield documents from a live MongoDB; the URI is read from the environment.

    The URI may hold credentials, so it never comes from a config file and is never
    logged; only the variable's name is.
    """
    uri = os.environ.get(uri_env)
    if not uri:
        raise ValueError(f"environment variable {uri_env!r} (regulon.mongodb_uri_env) is not set")
    import pymongo

    logger.info("reading %s.%s from the MongoDB in $%s", database, collection, uri_env)
    client = pymongo.MongoClient(uri)
    try:
        cursor = client[database][collection].find({}, batch_size=1000)
        if max_docs:
            cursor = cursor.limit(max_docs)
        yield from cursor
    finally:
        client.close()


class Source:
    """Where collections come from: a dump folder or a live MongoDB (URI in an env var)."""

    def __init__(
        self,
        dump_dir: str | os.PathLike | None = None,
        uri_env: str | None = None,
        database: str = "regulondb",
        max_docs_per_file: int | None = None,
    ) -> None:
        if (dump_dir is None) == (uri_env is None):
            raise ValueError(
                "give exactly one of a dump folder (regulon.dump_dir) or "
                "a MongoDB URI environment variable (regulon.mongodb_uri_env)"
            )
        self.dump_dir = Path(dump_dir) if dump_dir is not None else None
        self.uri_env = uri_env
        self.database = database
        self.max_docs = max_docs_per_file or None

    def iter(self, collection: str) -> Iterator[dict[str, Any]]:
        if self.dump_dir is not None:
            return iter_dump(self.dump_dir, collection, self.max_docs)
        return iter_mongo(self.uri_env, self.database, collection, self.max_docs)

    def has(self, collection: str) -> bool:
        """Whether ``collection`` exists; a live database is asked by reading (empty = absent)."""
        if self.dump_dir is None:
            return True
        try:
            collection_file(self.dump_dir, collection)
        except FileNotFoundError:
            if not self.dump_dir.is_dir():
                raise
            return False
        return True

    def describe(self) -> str:
        return str(self.dump_dir) if self.dump_dir is not None else f"mongodb ${self.uri_env}/{self.database}"
