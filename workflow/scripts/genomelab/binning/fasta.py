"""A streaming FASTA reader (plain or gzip) that checks what binners silently accept.

Records are yielded one at a time as ``(name, sequence bytes)``; memory is bounded by the
longest record. The name is the first whitespace-separated word of the header, the form
MetaBAT2's depth table and most assemblers use.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"


def open_maybe_gzip(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` for binary reading, decompressing gzip when its magic bytes say so."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"FASTA file {path} does not exist")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    # Sniffing the magic bytes rather than trusting the suffix: ".fa" files that are
    # gzipped (and ".gz" files that are not) both occur in the wild.
    if magic == GZIP_MAGIC:
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_fasta(path: str | os.PathLike, allow_empty: bool = False) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, sequence)`` for each record of a FASTA file.

    Raises ``ValueError`` naming the file for: text before the first header, a header
    without a name, an empty record (unless ``allow_empty``), a duplicated name.
    Sequence bytes are returned as written (case and IUPAC codes kept); whitespace and
    line breaks are removed.
    """
    path = Path(path)
    seen: set[str] = set()
    name: str | None = None
    chunks: list[bytes] = []
    line_no = 0

    def finish() -> tuple[str, bytes]:
        seq = b"".join(chunks)
        if not seq and not allow_empty:
            raise ValueError(f"{path}: record {name!r} (ending at line {line_no}) has an empty sequence")
        return name, seq  # type: ignore[return-value]

    with open_maybe_gzip(path) as fh:
        for line_no, raw in enumerate(fh, start=1):  # noqa: B007 - line_no is used in finish()
            line = raw.strip()
            if not line:
                continue
            if line[:1] == b">":
                if name is not None:
                    yield finish()
                parts = line[1:].split()
                if not parts:
                    raise ValueError(f"{path}: line {line_no} is a header without a name")
                name = parts[0].decode("ascii", errors="replace")
                if name in seen:
                    raise ValueError(f"{path}: duplicate record name {name!r} at line {line_no}")
                seen.add(name)
                chunks = []
            else:
                if name is None:
                    raise ValueError(
                        f"{path}: line {line_no} has sequence before the first '>' header "
                        "(is this a FASTA file?)"
                    )
                # Internal spaces or tabs occur in hand-edited files; they are not bases.
                chunks.append(
                    line.replace(b" ", b"").replace(b"\t", b"") if b" " in line or b"\t" in line else line
                )
        if name is not None:
            yield finish()
    if not seen:
        raise ValueError(f"{path}: no FASTA records found")


def write_fasta_record(fh: BinaryIO, name: str, seq: bytes, width: int = 80) -> None:
    """Write one record with lines of ``width`` bases."""
    fh.write(b">" + name.encode() + b"\n")
    for start in range(0, len(seq), width):
        fh.write(seq[start : start + width] + b"\n")
