"""FASTA: a streaming reader (plain or gzip) that checks what binners silently accept, and a writer.

Records are yielded one at a time as ``(name, sequence bytes)``; memory is bounded by a
read chunk plus the longest record. The name is the first whitespace-separated word of the
header, the form MetaBAT2's depth table and most assemblers use. ``read_record_chunks``
hands out the raw text of whole records instead, for the compiled reader of the feature
step (``genomelab.binning.kmer_kernel.iter_fasta_profiles``, the fast engine); ``RecordNames`` gives both the same checks.
"""

from __future__ import annotations

import mmap
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from genomelab.io.errors import FormatError
from genomelab.io.streams import existing_file, is_gzip, open_binary

CHUNK_BYTES = 1 << 22


def _is_gzip(path: Path) -> bool:
    return is_gzip(existing_file(path, "FASTA file"))


def read_fasta(
    path: str | os.PathLike, allow_empty: bool = False, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(name, sequence)`` for each record of a FASTA file.

    Raises ``FormatError`` naming the file for: text before the first header, a header
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
    existing_file(path, "FASTA file")
    with open_binary(path) as fh:
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
        raise FormatError(path, "no FASTA records found")


def check_fasta_start(path: str | os.PathLike, what: str = "FASTA file") -> None:
    """A check cheap enough for Snakemake's start: ``FormatError`` naming ``what`` and the file
    when it holds no record at all, or text other than a '>' header before the first one
    (another table given in its place). Reads at most the first 64 KiB; the records are
    checked when the file is read. A file that does not exist is left to Snakemake."""
    path = Path(path)
    if not path.is_file():
        return
    with open_binary(path) as fh:
        head = fh.read(1 << 16)
    text = head.lstrip(b" \t\r\n")
    if not text and len(head) < 1 << 16:
        raise FormatError(path, f"{what} is empty: no FASTA record")
    if text and text[:1] != b">":
        raise _before_header(path, head[: len(head) - len(text)].count(b"\n") + 1)


def read_record_chunks(
    path: str | os.PathLike, chunk_bytes: int = CHUNK_BYTES
) -> Iterator[tuple[bytearray | mmap.mmap, int, int]]:
    """Yield ``(data, start, stop)``: ``data[start:stop]`` holds whole FASTA records as
    written (headers, line breaks), the first starting with its '>' at ``start``, each
    ending where the next begins (a '>' at a line start) or at the end of the file.
    ``data[stop]`` is always a '>' (the next record's, or one written after the last
    byte), so a compiled scanner can run up to it without testing bounds.

    A plain file is memory-mapped and handed out in pieces of about ``chunk_bytes`` (no
    copy: reading it into a buffer cost ~15% of the feature step; pieces are unmapped once
    passed), its last record as a copy with the sentinel. A gzip file is inflated into
    one reused buffer of ``chunk_bytes`` (grown while a single record does not fit),
    valid until the next chunk is asked for. Either way memory is bounded by about a chunk
    plus the longest record. Raises ``FormatError`` naming the file and line for text
    before the first header; yields nothing for a file without any (the caller says so).
    """
    if chunk_bytes < 2:
        raise ValueError(f"chunk_bytes must be >= 2, not {chunk_bytes}")
    path = Path(path)
    if not _is_gzip(path):
        yield from _mapped_record_chunks(path, chunk_bytes)
        return
    buf = bytearray(chunk_bytes + 1)  # + 1: room for the '>' after the last record
    filled = 0  # bytes in buf: the unfinished record carried over, then the new read
    started = False
    n_newlines = 0  # in the blank lines before the first header
    with open_binary(path) as fh:
        while True:
            if filled == len(buf) - 1:  # full, and no record ends in it: grow
                grown = bytearray(2 * len(buf) - 1)
                grown[:filled] = memoryview(buf)[:filled]
                buf = grown
            with memoryview(buf) as view:
                n = fh.readinto(view[filled : len(buf) - 1])
            searched = max(filled - 1, 0)  # earlier bytes hold no record start
            filled += n
            if not started:
                first = _NOT_SPACE.search(buf, 0, filled)
                if first is None:
                    n_newlines += buf.count(b"\n", 0, filled)
                    filled = 0
                    if n:
                        continue
                    return
                start = first.start()
                if buf[start] != ord(">"):
                    raise _before_header(path, n_newlines + buf.count(b"\n", 0, start) + 1)
                buf[: filled - start] = buf[start:filled]  # a copy: memcpy must not overlap
                filled -= start
                searched, started = 0, True
            if n:
                cut = buf.rfind(b"\n>", searched, filled)
                if cut < 0:
                    continue
                stop = cut + 1
            else:
                stop = filled
                buf[stop] = ord(">")
            yield buf, 0, stop
            if not n:
                return
            buf[: filled - stop] = buf[stop:filled]
            filled -= stop


def _mapped_record_chunks(path: Path, chunk_bytes: int) -> Iterator[tuple[bytearray | mmap.mmap, int, int]]:
    """``read_record_chunks`` for a plain file: pieces of one memory map, cut before the
    record start nearest below each ``chunk_bytes`` (or after a longer record)."""
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return
        # Private and writable (never written), so numpy views of it have the type of the
        # streamed buffer's and the kernel is compiled once. Closed when no view is left.
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)
    first = _NOT_SPACE.search(data)
    if first is None:
        return
    start = first.start()
    if data[start] != ord(">"):
        raise _before_header(path, data[:start].count(b"\n") + 1)
    last = max(data.rfind(b"\n>", start) + 1, start)  # the last record's '>'
    released = 0
    while start < last:
        if start + chunk_bytes >= last:
            stop = last
        else:
            cut = data.rfind(b"\n>", start, start + chunk_bytes + 1)
            stop = (cut if cut >= start else data.find(b"\n>", start + chunk_bytes)) + 1
        yield data, start, stop
        start = stop
        # The caller is done with data[:stop]: unmap those pages (they stay in the page
        # cache), so resident memory stays about one chunk however large the file.
        upto = stop - stop % mmap.PAGESIZE
        if upto > released:
            data.madvise(mmap.MADV_DONTNEED, released, upto - released)
            released = upto
    tail = bytearray(size - last + 1)
    tail[:-1] = data[last:size]
    tail[-1] = ord(">")
    yield tail, 0, size - last


_NOT_SPACE = re.compile(rb"[^ \t\r\n]")


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


class RecordNames:
    """Record names seen so far in one file, and the checks every record gets, in this
    order: a header without a name, a duplicated name, a '>' inside the sequence, an empty
    sequence. Errors name the file and the record by its number (counting newlines for
    line numbers would cost a pass over the bases). Shared by ``read_fasta`` and the
    compiled FASTA reader of ``kmer_kernel``, so both raise the same errors."""

    def __init__(self, path: Path, allow_empty: bool = False) -> None:
        self.path = path
        self.allow_empty = allow_empty
        self.seen: set[str] = set()

    def _where(self) -> str:
        return f"record {len(self.seen) + 1}"

    def _first_of(self, name: str) -> str:
        """ ", the name of record k": the first record named ``name``, found by reading the
        headers again (only when a duplicate is found: the names seen keep no numbers)."""
        with open_binary(self.path) as fh:
            n = 0
            for line in fh:
                if line.startswith(b">"):
                    n += 1
                    words = line[1:].split()
                    if words and words[0].decode("ascii", errors="replace") == name:
                        return f", the name of record {n}"
        return ""

    def check(self, name: str, n_bases: int, gt_inside: bool = False) -> str:
        """Check one record (``name``: the first header word, decoded, or "" when the
        header has none) and add its name to the names seen."""
        if not name:
            raise FormatError(self.path, f"{self._where()} is a header without a name")
        if name in self.seen:
            raise FormatError(
                self.path, f"duplicate record name {name!r} ({self._where()}{self._first_of(name)})"
            )
        if gt_inside:
            raise FormatError(self.path, f"record {name!r} ({self._where()}) has a '>' inside its sequence")
        if not n_bases and not self.allow_empty:
            raise FormatError(self.path, f"record {name!r} ({self._where()}) has an empty sequence")
        self.seen.add(name)
        return name

    def check_many(self, names: list[str], n_bases: np.ndarray, gt_inside_last: bool = False) -> None:
        """``check`` for consecutive records: set operations in C for the common case
        (every record fine), the record-by-record checks (which raise at the first
        problem, in file order) otherwise."""
        unique = set(names)
        if (
            not gt_inside_last
            and len(unique) == len(names)
            and "" not in unique
            and (self.allow_empty or bool(n_bases.all()))
            and unique.isdisjoint(self.seen)
        ):
            self.seen |= unique
            return
        for i, name in enumerate(names):
            self.check(name, int(n_bases[i]), gt_inside_last and i == len(names) - 1)


class _RecordParser:
    """Whole records of ``data[start:stop]`` (each starting with '>'; the file's first
    text may start with blank lines), with names checked across the file."""

    def __init__(self, path: Path, allow_empty: bool) -> None:
        self.path = path
        self.names = RecordNames(path, allow_empty)

    @property
    def seen(self) -> set[str]:
        return self.names.seen

    def parse(self, data: bytes | bytearray, start: int, stop: int) -> Iterator[tuple[str, bytes]]:
        path, view, pos = self.path, memoryview(data), start
        if not self.seen:
            while pos < stop and data[pos] in b" \t\r\n":
                pos += 1
            if pos < stop and data[pos] != ord(">"):
                raise _before_header(path, data.count(b"\n", start, pos) + 1)
        while pos < stop:
            end = _next_header(data, pos + 1, stop)
            header_end = data.find(b"\n", pos, end)
            header_end = end if header_end < 0 else header_end
            parts = view[pos + 1 : header_end].tobytes().split()
            seq = view[min(header_end + 1, end) : end].tobytes()
            # Line breaks, carriage returns (Windows files) and spaces or tabs (hand-edited
            # files) are not bases.
            for space in (b"\n", b"\r", b" ", b"\t"):
                if space in seq:
                    seq = seq.replace(space, b"")
            name = parts[0].decode("ascii", errors="replace") if parts else ""
            self.names.check(name, len(seq), b">" in seq)
            yield name, seq
            pos = end + 1


def _before_header(path: Path, line: int) -> FormatError:
    if line == 1:
        # A FASTA saved by a Windows editor may start with a byte-order mark: the user sees '>'
        # on line 1, so say what is before it (read only on this error path).
        with open_binary(path) as fh:
            if fh.read(3) == b"\xef\xbb\xbf":
                return FormatError(
                    path, "starts with a byte-order mark before its first '>' header: save it without one", 1
                )
    return FormatError(path, "sequence before the first '>' header (is this a FASTA file?)", line)


def write_fasta_record(fh: BinaryIO, name: str, seq: bytes, width: int = 80) -> None:
    """Write one record with lines of ``width`` bases."""
    fh.write(b">" + name.encode() + b"\n")
    for start in range(0, len(seq), width):
        fh.write(seq[start : start + width] + b"\n")
