"""GFF3 gene loci: the features of type gene/pseudogene and the CDS that no gene owns.

GFF3 is 1-based and end-inclusive; everything returned here is 0-based half-open
(``start = column 4 - 1``, ``end = column 5``). A gene and its CDS describe one locus, so a
CDS is a locus of its own only when no ``Parent`` chain (CDS -> mRNA -> gene, or CDS ->
gene) reaches a gene feature; the rows of one multi-segment CDS (one ``ID`` on several lines)
are one locus spanning them all. Prokaryote annotations without gene features (Prodigal
output, some RAST files) are read that way too.

Malformed rows raise :class:`~genomelab.io.errors.FormatError` naming the file and line:
not 9 tab-separated columns, coordinates that are not integers or not ``1 <= start <= end``,
a strand outside ``+ - . ?``, attributes that are not ``tag=value`` (a GTF file, say).
Loci without a strand (``.``/``?``) cannot be placed on one strand: they are left out and
counted (:func:`genomelab.io.dropped.count_dropped`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pandas as pd

from genomelab.io.dropped import count_dropped
from genomelab.io.errors import FormatError
from genomelab.io.streams import open_text

logger = logging.getLogger(__name__)

# Feature types that are gene loci themselves (as regulon.data reads GFF for training).
GENE_TYPES = ("gene", "pseudogene")
CDS_TYPE = "CDS"
LOCUS_COLUMNS = ["seqid", "id", "name", "locus_tag", "type", "start", "end", "strand"]
_STRANDS = {"+": "+", "-": "-", ".": None, "?": None}


@dataclass(frozen=True)
class GffFeature:
    """One GFF3 row: 0-based half-open ``[start, end)``; ``strand`` None when unknown."""

    line: int
    seqid: str
    type: str
    start: int
    end: int
    strand: str | None
    attributes: dict[str, str]

    @property
    def parents(self) -> list[str]:
        value = self.attributes.get("Parent", "")
        return [p for p in value.split(",") if p]


def _attributes(text: str, path: Path, line: int) -> dict[str, str]:
    out = {}
    for piece in text.strip().split(";"):
        piece = piece.strip()
        if not piece:
            continue
        if "=" not in piece:
            raise FormatError(
                path, f"attribute {piece[:40]!r} is not GFF3 tag=value (a GTF or GFF2 file?)", line
            )
        key, value = piece.split("=", 1)
        out[key.strip()] = unquote(value.strip())
    return out


def _row(text: str, path: Path, line: int) -> GffFeature:
    cols = text.split("\t")
    if len(cols) != 9:
        raise FormatError(path, f"{len(cols)} tab-separated columns, not the 9 of GFF3", line)
    try:
        start, end = int(cols[3]), int(cols[4])
    except ValueError:
        raise FormatError(path, f"start/end {cols[3]!r}/{cols[4]!r} are not integers", line) from None
    if not 1 <= start <= end:
        raise FormatError(path, f"coordinates {start}-{end} are not 1 <= start <= end (1-based)", line)
    if cols[6] not in _STRANDS:
        raise FormatError(path, f"strand {cols[6]!r} is not one of + - . ?", line)
    if not cols[0] or not cols[2]:
        raise FormatError(path, "empty seqid or type column", line)
    return GffFeature(
        line, cols[0], cols[2], start - 1, end, _STRANDS[cols[6]], _attributes(cols[8], path, line)
    )


def iter_gff3(path: str | os.PathLike) -> Iterator[GffFeature]:
    """Every feature row of a GFF3 file (gzip allowed), checked; stops at ``##FASTA``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"GFF3 file {path} does not exist")
    with open_text(path) as fh:
        for i, raw in enumerate(fh, start=1):
            text = raw.rstrip("\r\n")
            if text.startswith("##FASTA"):
                return
            if not text.strip() or text.startswith("#"):
                continue
            yield _row(text, path, i)


def _owned_by_gene(feature: GffFeature, by_id: dict[str, GffFeature]) -> bool:
    """Whether a chain of ``Parent`` links from ``feature`` reaches a gene feature."""
    todo, seen = list(feature.parents), set()
    while todo:
        pid = todo.pop()
        if pid in seen or pid not in by_id:
            continue
        seen.add(pid)
        parent = by_id[pid]
        if parent.type in GENE_TYPES:
            return True
        todo += parent.parents
    return False


def _locus(f: GffFeature, start: int, end: int) -> dict[str, Any]:
    a = f.attributes
    return {
        "seqid": f.seqid,
        "id": a.get("ID", ""),
        "name": a.get("Name", a.get("gene", "")),
        "locus_tag": a.get("locus_tag", ""),
        "type": f.type,
        "start": start,
        "end": end,
        "strand": f.strand,
    }


def read_gff3_loci(path: str | os.PathLike, seqid: str | None = None) -> pd.DataFrame:
    """Gene loci [LOCUS_COLUMNS] of a GFF3 file in file order, of ``seqid`` only when given.

    A file (or a ``seqid``) without any locus raises FormatError naming the seqids it has.
    """
    path = Path(path)
    features = list(iter_gff3(path))
    by_id = {f.attributes["ID"]: f for f in features if "ID" in f.attributes and f.type != CDS_TYPE}
    rows: list[dict[str, Any]] = []
    cds_rows: dict[str, int] = {}  # CDS ID -> its row, so that segments merge into one locus
    for f in features:
        if f.type in GENE_TYPES:
            rows.append(_locus(f, f.start, f.end))
        elif f.type == CDS_TYPE and not _owned_by_gene(f, by_id):
            cid = f.attributes.get("ID")
            if cid is not None and cid in cds_rows:
                row = rows[cds_rows[cid]]
                row["start"], row["end"] = min(row["start"], f.start), max(row["end"], f.end)
                continue
            if cid is not None:
                cds_rows[cid] = len(rows)
            rows.append(_locus(f, f.start, f.end))
    loci = pd.DataFrame(rows, columns=LOCUS_COLUMNS)
    seqids = sorted({f.seqid for f in features})
    if seqid is not None:
        loci = loci[loci["seqid"] == seqid]
    if loci.empty:
        where = f" on seqid {seqid!r}" if seqid is not None else ""
        raise FormatError(
            path, f"no gene, pseudogene or CDS feature{where} (seqids in the file: {seqids[:5]})"
        )
    unstranded = loci["strand"].isna()
    count_dropped("gff", "loci", f"no strand ('.' or '?') in {path}", loci.loc[unstranded, "id"])
    loci = loci[~unstranded].reset_index(drop=True)
    loci[["start", "end"]] = loci[["start", "end"]].astype("int64")
    logger.info("%s: %d gene loci%s", path, len(loci), f" on {seqid}" if seqid else "")
    return loci
