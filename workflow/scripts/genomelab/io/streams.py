"""Opening plain or gzip-compressed files, with compressed-stream errors that name the file.

gzip is recognised by its magic bytes, not the suffix: ".fa" files that are gzipped (and
".gz" files that are not) both occur in the wild. A truncated or corrupt gzip stream
raises a bare ``EOFError`` ("Compressed file ended before the end-of-stream marker was
reached"), ``zlib.error`` or ``gzip.BadGzipFile`` deep inside a reader, naming no file.
Handles from :func:`open_binary` and :func:`open_text` raise a :class:`FormatError` naming
the file instead; :func:`compressed_errors` does the same around code that decompresses
by itself (pandas' ``compression="gzip"``).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

from genomelab.io.errors import FormatError

GZIP_MAGIC = b"\x1f\x8b"
COMPRESSED_STREAM_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)


def is_gzip(path: str | os.PathLike) -> bool:
    """True when ``path`` starts with the gzip magic bytes."""
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


@contextlib.contextmanager
def compressed_errors(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a truncated or corrupt compressed stream's error as a ``FormatError`` naming ``path``."""
    try:
        yield
    except COMPRESSED_STREAM_ERRORS as exc:
        raise FormatError(
            path, f"truncated or corrupt compressed file ({type(exc).__name__}: {exc})"
        ) from exc


class _NamedGzipFile(gzip.GzipFile):
    """A gzip reader whose stream errors name the file (every read path of ``GzipFile``:
    ``readinto`` and iteration go through ``read`` and ``readline``)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(path, "rb")
        self.source = path

    def read(self, size: int | None = -1) -> bytes:
        with compressed_errors(self.source):
            return super().read(size)

    def read1(self, size: int = -1) -> bytes:
        with compressed_errors(self.source):
            return super().read1(size)

    def readline(self, size: int | None = -1) -> bytes:
        with compressed_errors(self.source):
            return super().readline(size)

    def peek(self, n: int) -> bytes:
        with compressed_errors(self.source):
            return super().peek(n)


def open_binary(path: str | os.PathLike) -> io.BufferedIOBase:
    """Open ``path`` for binary reading, decompressing gzip when its magic bytes say so."""
    return _NamedGzipFile(path) if is_gzip(path) else open(path, "rb")


# Text files users write: a leading byte-order mark (Excel's "CSV UTF-8", Notepad) is dropped,
# not read into the first column's name ('\ufeffsample'), where a "missing column" would
# name a column the user can see is there.
TEXT_ENCODING = "utf-8-sig"


def open_text(path: str | os.PathLike) -> IO[str]:
    """Open ``path`` as text (newlines untranslated, as ``csv`` wants; a leading byte-order
    mark dropped), gzip by magic bytes."""
    if is_gzip(path):
        return io.TextIOWrapper(_NamedGzipFile(path), encoding=TEXT_ENCODING, newline="")
    return open(path, newline="", encoding=TEXT_ENCODING)


@contextlib.contextmanager
def text_errors(path: str | os.PathLike) -> Iterator[None]:
    """Re-raise a ``UnicodeDecodeError`` from reading ``path`` as text (a file saved in another
    encoding than UTF-8: Excel's "Text (Tab delimited)" writes Windows' ANSI code page, so one
    accented letter or typographic dash is a byte UTF-8 refuses) as a ``FormatError`` naming
    the file, the first line that is not UTF-8 and its byte. For files users write (sheets,
    splits, BEDs), around the reading of an :func:`open_text` handle."""
    try:
        yield
    except UnicodeDecodeError as exc:
        line = None
        with open_binary(path) as fh:
            for i, raw in enumerate(fh, start=1):
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError:
                    line = i
                    break
        byte = bytes(exc.object[exc.start : exc.start + 1]).hex()
        raise FormatError(
            path,
            f"byte 0x{byte} is not UTF-8 text (the file is in another encoding, such as the "
            "Windows ANSI of Excel's 'Text (Tab delimited)'); save it as UTF-8",
            line,
        ) from None


def existing_file(path: str | os.PathLike, what: str) -> Path:
    """``Path(path)``; ``FileNotFoundError`` naming ``what`` when it is not a file (and, for a
    relative path, the folder it was looked for in: a config's paths are read from the
    working directory, not from the config file's folder)."""
    path = Path(path)
    if not path.is_file():
        where = "" if path.is_absolute() else f" (looked for in the working directory {Path.cwd()})"
        raise FileNotFoundError(f"{what} {path} does not exist{where}")
    return path


def check_config_files(files: Mapping[str, str], results: str | os.PathLike) -> None:
    """Each config key's file (``{"deconv.infer.samples": "plasma.csv"}``; empty = unset) must
    exist, unless this run makes it (a path under ``results``, the run's folder).

    Checked when Snakemake starts: a misspelt path on a run whose outputs exist went
    unnoticed, since Snakemake reran only the report and kept the outputs made from the
    earlier file. ``FileNotFoundError`` naming the key (and, for a relative path, the
    folder it was looked for in)."""
    made_here = Path(results).resolve()
    for key, value in files.items():
        if value and not Path(value).exists() and made_here not in Path(value).resolve().parents:
            existing_file(value, key)
