"""A streaming FASTA reader (plain or gzip) that checks what binners silently accept.

Records are yielded one at a time as ``(name, sequence bytes)``; memory is bounded by a
read chunk plus the longest record. The name is the first whitespace-separated word of the
header, the form MetaBAT2's depth table and most assemblers use.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

GZIP_MAGIC = b"\x1f\x8b"
CHUNK_BYTES = 1 << 22


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


def read_fasta(
    path: str | os.PathLike, allow_empty: bool = False, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, sequence)`` for each record of a FASTA file.

    Raises ``ValueError`` naming the file for: text before the first header, a header
    without a name, an empty record (unless ``allow_empty``), a duplicated name, a '>'
    inside a sequence. Sequence bytes are returned as written (case and IUPAC codes kept);
    whitespace and line breaks are removed.

    The file is read into one reused buffer of ``chunk_bytes`` and cut into records at
    ``\\n>``, so the Python work is per record, not per line (a per-line loop costs more
    than counting every k-mer of a 60- or 80-column file), and no large buffer is allocated
    per chunk. Memory is bounded by the buffer plus the longest record.
    """
    if chunk_bytes < 2:
        raise ValueError(f"chunk_bytes must be >= 2, not {chunk_bytes}")
    path = Path(path)
    parser = _RecordParser(path, allow_empty)
    buf = bytearray(chunk_bytes)
    view = memoryview(buf)
    carry: list[bytes] = []  # an unfinished record (or the text before the first header)
    with open_maybe_gzip(path) as fh:
        while n := fh.readinto(buf):
            # The last record start in this chunk; one split across chunks ("\n" | ">")
            # counts as a start at 0.
            cut = buf.rfind(b"\n>", 0, n)
            if cut < 0 and carry and carry[-1].endswith(b"\n") and buf[:1] == b">":
                cut = -1
            elif cut < 0:
                carry.append(view[:n].tobytes())
                continue
            first = buf.find(b"\n>", 0, n)
            first = -1 if cut == -1 else first
            # The carried record ends at the first start of this chunk.
            head = b"".join([*carry, view[: first + 1].tobytes()])
            yield from parser.parse(head, 0, len(head))
            yield from parser.parse(buf, first + 1, cut + 1)
            carry = [view[cut + 1 : n].tobytes()]
    tail = b"".join(carry)
    yield from parser.parse(tail, 0, len(tail))
    if not parser.seen:
        raise ValueError(f"{path}: no FASTA records found")


def _next_header(data: bytes | bytearray, pos: int, stop: int) -> int:
    """Position of the first ``\\n>`` in ``data[pos:stop]``, else ``stop``. Searching for the
    single byte '>' uses memchr and is several times faster than a two-byte search."""
    while True:
        gt = data.find(b">", pos, stop)
        if gt < 0:
            return stop
        if data[gt - 1] == 10:  # a newline
            return gt - 1
        pos = gt + 1


class _RecordParser:
    """Whole records of ``data[start:stop]`` (each starting with '>'; the file's first
    text may start with blank lines), with names checked across the file. Errors name the
    record by its number (counting newlines for line numbers would cost a pass over the
    bases)."""

    def __init__(self, path: Path, allow_empty: bool) -> None:
        self.path = path
        self.allow_empty = allow_empty
        self.seen: set[str] = set()

    def _where(self) -> str:
        return f"record {len(self.seen) + 1}"

    def parse(self, data: bytes | bytearray, start: int, stop: int) -> Iterator[tuple[str, bytes]]:
        path, view, pos = self.path, memoryview(data), start
        if not self.seen:
            while pos < stop and data[pos] in b" \t\r\n":
                pos += 1
            if pos < stop and data[pos] != ord(">"):
                line = data.count(b"\n", start, pos) + 1
                raise ValueError(
                    f"{path}: line {line} has sequence before the first '>' header (is this a FASTA file?)"
                )
        while pos < stop:
            end = _next_header(data, pos + 1, stop)
            header_end = data.find(b"\n", pos, end)
            header_end = end if header_end < 0 else header_end
            parts = view[pos + 1 : header_end].tobytes().split()
            if not parts:
                raise ValueError(f"{path}: {self._where()} is a header without a name")
            name = parts[0].decode("ascii", errors="replace")
            if name in self.seen:
                raise ValueError(f"{path}: duplicate record name {name!r} ({self._where()})")
            seq = view[min(header_end + 1, end) : end].tobytes()
            # Line breaks, carriage returns (Windows files) and spaces or tabs (hand-edited
            # files) are not bases.
            for space in (b"\n", b"\r", b" ", b"\t"):
                if space in seq:
                    seq = seq.replace(space, b"")
            if b">" in seq:
                raise ValueError(f"{path}: record {name!r} ({self._where()}) has a '>' inside its sequence")
            if not seq and not self.allow_empty:
                raise ValueError(f"{path}: record {name!r} ({self._where()}) has an empty sequence")
            self.seen.add(name)
            yield name, seq
            pos = end + 1


def write_fasta_record(fh: BinaryIO, name: str, seq: bytes, width: int = 80) -> None:
    """Write one record with lines of ``width`` bases."""
    fh.write(b">" + name.encode() + b"\n")
    for start in range(0, len(seq), width):
        fh.write(seq[start : start + width] + b"\n")
