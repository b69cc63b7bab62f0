"""Readers of RegulonDB's tab-separated downloads: release 9.x flat files and 10.x-12.x datamarts.

Three layouts exist in the wild, all ``#`` comment lines followed by tab-separated rows:

- **positional** (9.x flat files such as ``OperonSet.txt``, ``GeneProductSet.txt``): no header
  row; the comment block describes the columns as ``# (1) Operon name``. Columns are taken
  by their documented position, and the file kind from the first descriptions.
- **numbered** (11.x+ datamarts such as ``RIdata.txt``, ``OperonSet.tsv``): one header row
  ``1)riId<TAB>2)riType<TAB>3)tfId ...``; columns are taken by name (the number is dropped), so
  releases that insert or reorder columns still read.
- **named**: the same header row without the numbers.

Every reader returns canonical records (:data:`FIELDS`), with RegulonDB 1-based inclusive
coordinates kept as they are (the caller converts), strands as ``+``/``-`` and confidence as
one of :data:`CONFIDENCE_LEVELS` or ``None``. Malformed input raises :class:`FormatError`
naming the file and line. RegulonDB's licence forbids redistribution, so nothing of its
content lives in this repository; tests write small files in these layouts.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, cast

from genomelab.io.errors import FormatError
from genomelab.io.streams import open_binary

# Evidence confidence, weakest first; 11.x+ files abbreviate them to C/S/W.
CONFIDENCE_LEVELS = ("weak", "strong", "confirmed")
_CONFIDENCE_WORDS = {
    "weak": "weak",
    "w": "weak",
    "strong": "strong",
    "s": "strong",
    "confirmed": "confirmed",
    "c": "confirmed",
}
_NO_VALUE = {"", "?", "null", "none", "na", "n/a"}
_STRANDS = {"forward": "+", "reverse": "-", "+": "+", "-": "-", "for": "+", "rev": "-"}

KINDS = ("genes", "operons", "tus", "promoters", "terminators", "interactions", "sites")

# Canonical fields of each kind, in record order. ``left``/``right`` are 1-based inclusive.
FIELDS: dict[str, tuple[str, ...]] = {
    "genes": ("gene_id", "name", "bnumber", "left", "right", "strand", "confidence"),
    "operons": ("operon_id", "name", "left", "right", "strand", "genes", "confidence"),
    "tus": ("tu_id", "name", "operon", "genes", "promoter", "confidence"),
    "promoters": ("promoter_id", "name", "strand", "tss", "sigma", "confidence"),
    "terminators": ("terminator_id", "left", "right", "strand", "confidence"),
    "interactions": ("ri_id", "regulator", "target", "effect", "confidence"),
    "sites": ("site_id", "regulator", "left", "right", "strand", "confidence"),
}
# Fields without which a record is useless; a header without their columns is a FormatError,
# and so is a row without a value, except for the fields in ``MAY_BE_EMPTY``.
REQUIRED: dict[str, tuple[str, ...]] = {
    "genes": ("name", "left", "right", "strand"),
    "operons": ("name", "genes"),
    "tus": ("genes",),
    "promoters": ("name", "strand"),
    "terminators": ("left", "right", "strand"),
    "interactions": ("regulator", "target"),
    "sites": ("regulator", "left", "right"),
}
# RegulonDB lists genes known only from the literature ("phantom" genes) without coordinates
# or strand, and regulatory interactions whose binding site is not mapped without the site's:
# empty cells in 9.x files, ``None`` in 11.x/12.x ones. Such rows are read with empty fields;
# the data step drops and counts such genes (``n_genes_dropped_bad_docs``), as for a dump.
MAY_BE_EMPTY: dict[str, tuple[str, ...]] = {"genes": ("left", "right", "strand"), "sites": ("left", "right")}
_INT_FIELDS = {"left", "right", "tss"}
_LIST_FIELDS = {"genes"}

# Column names of the numbered/named headers (lower case, number prefix removed) per field.
# Synonyms cover the renames between 10.x, 11.x and 12.x (e.g. tfName -> regulatorName).
NAMES: dict[str, dict[str, tuple[str, ...]]] = {
    "genes": {
        "gene_id": ("geneid",),
        "name": ("genename",),
        "bnumber": ("bnumber", "blattnernumber"),
        "left": ("leftendpos", "geneleftendposition", "leftendposition"),
        "right": ("rightendpos", "generightendposition", "rightendposition"),
        "strand": ("strand",),
        "confidence": ("confidencelevel", "geneconfidencelevel"),
        "_xrefs": ("otherdbsgeneids", "otherdbsids"),
    },
    "operons": {
        "operon_id": ("operonid",),
        "name": ("operonname",),
        "left": ("firstgeneleftpos",),
        "right": ("lastgenerightpos",),
        "strand": ("strand",),
        "genes": ("operongenes", "genes"),
        "confidence": ("confidencelevel",),
    },
    "tus": {
        "tu_id": ("tuid",),
        "name": ("tuname",),
        "operon": ("operonname",),
        "genes": ("tugenes", "genes", "tugenesname"),
        "promoter": ("promotername", "pmname"),
        "confidence": ("confidencelevel",),
    },
    "promoters": {
        "promoter_id": ("pmid", "promoterid"),
        "name": ("pmname", "promotername"),
        "strand": ("strand",),
        "tss": ("postss", "tss", "tsspos"),
        "sigma": ("sigmafactor", "sigmaf"),
        "confidence": ("confidencelevel",),
    },
    "terminators": {
        "terminator_id": ("terminatorid", "termid"),
        "left": ("terminatorleftpos", "termleftpos", "leftendpos"),
        "right": ("terminatorrightpos", "termrightpos", "rightendpos"),
        "strand": ("strand",),
        "confidence": ("confidencelevel",),
    },
    "interactions": {
        "ri_id": ("riid",),
        "regulator": ("tfname", "regulatorname"),
        "target": ("firstgene", "targetgene", "regulatedname", "regulatedgene"),
        "effect": ("rifunction", "function", "effect"),
        "confidence": ("confidencelevel", "riconfidencelevel"),
    },
    "sites": {
        "site_id": ("tfrsid", "siteid", "tfbsid"),
        "regulator": ("tfname", "regulatorname"),
        "left": ("tfrsleft", "siteleftpos", "tfbsleft"),
        "right": ("tfrsright", "siterightpos", "tfbsright"),
        "strand": ("strand",),
        "confidence": ("confidencelevel",),
    },
}
# Header columns that identify a kind (checked in this order: RI files also carry sites).
_KIND_MARKERS = (
    ("interactions", ("riid",)),
    ("operons", ("operonid", "firstgeneleftpos", "operongenes")),
    ("tus", ("tuid", "tuname")),
    ("promoters", ("pmid", "promoterid", "postss")),
    ("terminators", ("terminatorid", "termid")),
    ("sites", ("tfrsid", "tfbsid", "siteid")),
    ("genes", ("geneid", "genename")),
)

# 9.x positional layouts: field -> 0-based column, as the files' "# Columns:" blocks document
# them (RegulonDB 9.x downloads; the same descriptions are repeated in 10.x flat files).
POSITIONS: dict[str, dict[str, int]] = {
    # (1) Gene identifier (2) Gene name (3) Blattner number (4) left (5) right (6) strand
    # (7) product name (8) evidence (9) PMIDs (10) evidence confidence level, where present
    "genes": {"gene_id": 0, "name": 1, "bnumber": 2, "left": 3, "right": 4, "strand": 5, "confidence": 9},
    # (1) Operon name (2) first gene left (3) last gene right (4) strand (5) number of genes
    # (6) gene names or b-numbers (7) evidence (8) evidence confidence level
    "operons": {"name": 0, "left": 1, "right": 2, "strand": 3, "genes": 5, "confidence": 7},
    # (1) TU identifier (2) TU name (3) operon name (4) gene names (5) promoter name
    # (6) evidence (7) evidence confidence level
    "tus": {"tu_id": 0, "name": 1, "operon": 2, "genes": 3, "promoter": 4, "confidence": 6},
    # (1) promoter identifier (2) name (3) strand (4) +1 position (5) sigma factor
    # (6) sequence (7) evidence (8) evidence confidence level
    "promoters": {"promoter_id": 0, "name": 1, "strand": 2, "tss": 3, "sigma": 4, "confidence": 7},
    # (1) terminator identifier (2) left (3) right (4) strand (5) class (6) sequence
    # (7) evidence (8) evidence confidence level
    "terminators": {"terminator_id": 0, "left": 1, "right": 2, "strand": 3, "confidence": 7},
    # network_tf_gene.txt: (1) TF name (2) regulated gene (3) effect (4) evidence (5) evidence type
    "interactions": {"regulator": 0, "target": 1, "effect": 2, "confidence": 4},
    # BindingSiteSet.txt: (1) TF id (2) TF name (3) site id (4) left (5) right (6) strand
    # ... (14) evidence confidence level
    "sites": {"regulator": 1, "site_id": 2, "left": 3, "right": 4, "strand": 5, "confidence": 13},
}
# What the first column description of each 9.x layout says (lower case, substrings), then,
# for the two TF files whose first column is the TF, what the second or third says.
_POSITIONAL_FIRST = (
    ("genes", "gene identifier"),
    ("operons", "operon name"),
    ("tus", "transcription unit identifier"),
    ("promoters", "promoter identifier"),
    ("terminators", "terminator identifier"),
)
_POSITIONAL_LATER = (("sites", "binding site"), ("interactions", "gene regulated"))
# What the "# (n) ..." description of the column a positional field is read from must say
# (lower case, any of the substrings). A file whose block describes another column there is
# another release's layout: reading it by the 9.x positions would take, say, the evidence
# column as an operon's genes, so it is refused. Identifiers are not checked (no fixed words).
_POSITIONAL_WORDS: dict[str, tuple[str, ...]] = {
    "name": ("name",),
    "bnumber": ("blattner", "bnumber", "b-number"),
    "left": ("left",),
    "right": ("right",),
    "strand": ("strand",),
    "genes": ("gene",),
    "confidence": ("confidence", "evidence type"),
    "operon": ("operon",),
    "promoter": ("promoter",),
    "tss": ("+1", "tss", "transcription start", "position"),
    "sigma": ("sigma",),
    "regulator": ("tf", "transcription factor", "regulator"),
    "target": ("gene", "regulated"),
    "effect": ("effect", "function"),
}
_DESCRIPTION = re.compile(r"^#+\s*\((\d+)\)\s*(.*)$")
_NUMBERED = re.compile(r"^\s*(\d+)\)\s*(.+?)\s*$")
_BNUMBER = re.compile(r"\b(b\d{4})\b")


@dataclass
class FlatTable:
    """One parsed file: its kind, layout, canonical records and their 1-based line numbers."""

    path: Path
    kind: str
    layout: str  # "positional", "numbered" or "named"
    records: list[dict[str, Any]] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.records)


def parse_confidence(
    value: str | None, path: str | os.PathLike = "<value>", line: int | None = None
) -> str | None:
    """``Confirmed``/``C``, ``Strong``/``S``, ``Weak``/``W`` -> level; empty or ``?`` -> ``None``."""
    if value is None:
        return None
    v = str(value).strip().lower()
    if v in _NO_VALUE:
        return None
    if v in _CONFIDENCE_WORDS:
        return _CONFIDENCE_WORDS[v]
    raise FormatError(
        path, f"evidence confidence level {value!r} is none of Confirmed/Strong/Weak (or C/S/W)", line
    )


def confidence_rank(level: str | None) -> int:
    """0 for no level, then 1 weak, 2 strong, 3 confirmed (for ``>=`` filters)."""
    return 0 if level is None else CONFIDENCE_LEVELS.index(level) + 1


def _normalise_name(name: str) -> str:
    m = _NUMBERED.match(name)
    base = m.group(2) if m else name
    return re.sub(r"[^a-z0-9]", "", base.lower())


def _decode(raw: bytes) -> str:
    """One line as UTF-8, else ISO-8859-1 (older downloads; only product names and comments
    carry non-ASCII letters, and every field read is ASCII either way)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _scan(path: Path) -> tuple[list[tuple[int, str]], dict[int, str], list[tuple[int, list[str]]]]:
    """(comment lines, {column number: description}, data rows) of a file."""
    comments: list[tuple[int, str]] = []
    described: dict[int, str] = {}
    rows: list[tuple[int, list[str]]] = []
    # Lines end at \n, \r\n or a lone \r (a file saved by Excel for Mac as tab-delimited
    # text), as text mode splits them: ISO-8859-1 maps each byte to one character, so every
    # line's bytes come back unchanged for _decode.
    with io.TextIOWrapper(cast(BinaryIO, open_binary(path)), encoding="latin-1", newline="") as fh:
        for i, raw in enumerate(fh, 1):
            raw_bytes = raw.encode("latin-1")
            # A byte-order mark (a file saved again as "UTF-8 with BOM") is not text.
            line = _decode(raw_bytes.removeprefix(b"\xef\xbb\xbf") if i == 1 else raw_bytes).rstrip("\r\n")
            if line.startswith("#"):
                comments.append((i, line))
                m = _DESCRIPTION.match(line)
                if m:
                    described.setdefault(int(m.group(1)), m.group(2).strip().lower())
                continue
            if not line.strip():
                continue
            rows.append((i, line.split("\t")))
    return comments, described, rows


def _kind_from_header(names: list[str]) -> str | None:
    present = set(names)
    for kind, markers in _KIND_MARKERS:
        if present & set(markers):
            return kind
    return None


def _kind_from_descriptions(described: dict[int, str]) -> str | None:
    first = described.get(1, "")
    for kind, marker in _POSITIONAL_FIRST:
        if marker in first:
            return kind
    later = " | ".join(described.get(i, "") for i in (2, 3))
    for kind, marker in _POSITIONAL_LATER:
        if marker in later:
            return kind
    return None


def _check_positions(path: Path, kind: str, described: dict[int, str], line: int) -> None:
    """FormatError when the file's own column descriptions put a field elsewhere than the
    9.x position it is read from (columns without a description are not checked)."""
    for fld, col in POSITIONS[kind].items():
        words = _POSITIONAL_WORDS.get(fld)
        text = described.get(col + 1)
        if words is None or text is None or any(w in text for w in words):
            continue
        expected = ", ".join(f"({c + 1}) {f}" for f, c in POSITIONS[kind].items())
        raise FormatError(
            path,
            f"its column block describes column ({col + 1}) as {text!r}, but the RegulonDB 9.x "
            f"{kind} layout read by position has {fld} there; this is another release's layout "
            f"(expected {expected}); give a release whose columns match or a datamart with a "
            "named header row (docs/regulon.md)",
            line,
        )


def _header_columns(path: Path, kind: str, names: list[str], line: int) -> dict[str, int]:
    """field -> column index from a header row; a missing required field is a FormatError."""
    columns: dict[str, int] = {}
    for fld, synonyms in NAMES[kind].items():
        for s in synonyms:
            if s in names:
                columns[fld] = names.index(s)
                break
    needs_bnumber = kind == "genes" and "bnumber" not in columns and "_xrefs" not in columns
    missing = [f for f in REQUIRED[kind] if f not in columns] + (["bnumber"] if needs_bnumber else [])
    if missing:
        raise FormatError(path, f"{kind} header lacks column(s) for {missing}", line)
    return columns


def _value(path: Path, line: int, fld: str, raw: str | None) -> Any:
    text = None if raw is None else raw.strip()
    if text is not None and text.lower() in _NO_VALUE:
        text = None
    if text is None:
        return [] if fld in _LIST_FIELDS else None
    if fld in _INT_FIELDS:
        try:
            return int(float(text))
        except ValueError:
            raise FormatError(path, f"{fld} {text!r} is not a position", line) from None
    if fld == "strand":
        strand = _STRANDS.get(text.lower())
        if strand is None:
            raise FormatError(path, f"strand {text!r} is none of forward/reverse/+/-", line)
        return strand
    if fld == "confidence":
        return parse_confidence(text, path, line)
    if fld in _LIST_FIELDS:
        return [g.strip() for g in re.split(r"[,;]", text) if g.strip()]
    return text


def _record(path: Path, kind: str, line: int, cells: list[str], columns: dict[str, int]) -> dict[str, Any]:
    rec: dict[str, Any] = {}
    for fld in FIELDS[kind]:
        col = columns.get(fld)
        rec[fld] = _value(path, line, fld, cells[col] if col is not None and col < len(cells) else None)
    if kind == "genes" and not rec["bnumber"] and "_xrefs" in columns and columns["_xrefs"] < len(cells):
        # 12.x gene files carry the b-number only inside cross-references ("[REFSEQ:b0001]").
        m = _BNUMBER.search(cells[columns["_xrefs"]])
        rec["bnumber"] = m.group(1) if m else None
    for fld in REQUIRED[kind]:
        if rec[fld] in (None, []) and fld not in MAY_BE_EMPTY.get(kind, ()):
            raise FormatError(path, f"{kind} row has no {fld}", line)
    if rec.get("left") is not None and rec.get("right") is not None and not 1 <= rec["left"] <= rec["right"]:
        raise FormatError(path, f"coordinates {rec['left']}..{rec['right']} are not 1 <= left <= right", line)
    return rec


def read_flat(path: str | os.PathLike, kind: str | None = None) -> FlatTable:
    """Parse one RegulonDB flat file or datamart; ``kind`` is detected from the header when ``None``.

    Raises :class:`FormatError` (file and line) when the kind cannot be told, a named column
    is missing, or a row holds a bad position, strand or confidence level.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RegulonDB file {path} does not exist")
    if kind is not None and kind not in KINDS:
        raise ValueError(f"RegulonDB file kind must be one of {KINDS}, not {kind!r}")
    comments, described, rows = _scan(path)
    if not rows:
        raise FormatError(path, "no data rows after the '#' comment lines")
    first_line, first = rows[0]
    names = [_normalise_name(c) for c in first]
    numbered = all(_NUMBERED.match(c) for c in first if c.strip())
    header_kind = _kind_from_header(names)
    if numbered or header_kind is not None:
        found = header_kind
        layout = "numbered" if numbered else "named"
        body = rows[1:]
    else:
        found = _kind_from_descriptions(described)
        layout = "positional"
        body = rows
    kind = kind or found
    if kind is None:
        raise FormatError(
            path,
            "cannot tell the file kind: no numbered/named header row with known columns and no "
            "'# (1) ...' column descriptions of a known RegulonDB file",
            first_line,
        )
    if layout == "positional":
        _check_positions(path, kind, described, first_line)
        columns = POSITIONS[kind]
    else:
        columns = _header_columns(path, kind, names, first_line)
    table = FlatTable(path, kind, layout)
    for line, cells in body:
        table.records.append(_record(path, kind, line, cells, columns))
        table.lines.append(line)
    return table


def iter_records(path: str | os.PathLike, kind: str | None = None) -> Iterator[dict[str, Any]]:
    """The canonical records of one file (see :func:`read_flat`)."""
    yield from read_flat(path, kind).records
