"""Sample sheets: tab-separated tables with a header, one sample per row.

Tissue sample sheet (read by the tissue and deconv modules, written by ingest):
``sample``, ``file``, ``tissue`` and optionally ``subtype`` and ``source_sample``
(augmented or synthetic copies name the sample they were made from, so that splits keep
them together). ``file`` is relative to the sheet's folder unless absolute.

:func:`iter_sheet_rows` is the part every sheet shares (the ingest sheet of
``genomelab.ingest.sheet`` too): header and required columns, empty fields, safe and
unique sample names, with errors naming the sheet and line.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from genomelab.io.atomic import atomic_output
from genomelab.io.errors import FormatError
from genomelab.io.names import NAME_RULE, is_safe_name
from genomelab.io.streams import existing_file, open_text, text_errors

REQUIRED_COLUMNS = ("sample", "file", "tissue")
OPTIONAL_COLUMNS = ("subtype", "source_sample")
SHEET_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
# What a sheet of new samples to classify needs (their tissue is what is predicted).
PREDICT_COLUMNS = ("sample", "file")


@dataclass(frozen=True)
class SampleRecord:
    """One row of the tissue sample sheet (``file`` resolved against the sheet's folder;
    ``source_sample`` is the sample itself when the column is empty)."""

    sample: str
    file: Path
    tissue: str
    subtype: str
    source_sample: str


def resolve(base: Path, value: str) -> Path:
    """``value`` as a path, relative to ``base`` unless absolute."""
    p = Path(value)
    return p if p.is_absolute() else base / p


def iter_sheet_rows(
    path: str | os.PathLike,
    what: str,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    comments: bool = False,
    strict_columns: bool = False,
) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line number, stripped values of required + optional columns)`` per row.

    ``what`` names the sheet in errors ("sample sheet"). ``comments``: skip lines starting
    with ``#`` (line numbers still count them). ``strict_columns``: other columns are an
    error. Raises ``FileNotFoundError`` for a missing sheet and ``FormatError`` for a
    missing column, an empty required field, an unsafe or duplicate ``sample`` (when it is
    a required column) and a sheet without rows.
    """
    path = existing_file(path, what)
    with text_errors(path), open_text(path) as fh:
        numbered = [
            (i, line) for i, line in enumerate(fh, start=1) if not (comments and line.startswith("#"))
        ]
    reader = csv.DictReader((line for _, line in numbered), delimiter="\t")
    columns = reader.fieldnames or []
    missing = [c for c in required if c not in columns]
    if missing:
        raise FormatError(
            path, f"{what} lacks column(s) {missing}; it has {columns} (tab-separated, header required)"
        )
    unknown = [c for c in columns if c not in required + optional]
    if strict_columns and unknown:
        raise FormatError(path, f"{what}: unknown column(s) {unknown}; allowed: {list(required + optional)}")
    seen: set[str] = set()
    n_rows = 0
    for row in reader:
        line = numbered[reader.line_num - 1][0]
        values = {k: (row.get(k) or "").strip() for k in required + optional}
        for col in required:
            if not values[col]:
                raise FormatError(path, f"empty {col!r}", line)
        if "sample" in required:
            sample = values["sample"]
            if not is_safe_name(sample):
                raise FormatError(path, f"sample name {sample!r} {NAME_RULE}", line)
            if sample in seen:
                raise FormatError(path, f"duplicate sample {sample!r}", line)
            seen.add(sample)
        n_rows += 1
        yield line, values
    if not n_rows:
        raise FormatError(path, f"{what} lists no samples")


def read_sample_sheet(
    path: str | os.PathLike, check_files: bool = True, labels: bool = True, files: bool = True
) -> list[SampleRecord]:
    """Read and validate a tissue sample sheet.

    ``labels`` False (new samples to classify): the ``tissue`` column is optional, its
    value "" where absent or empty. ``files`` False (the label sheet of a stacked HDF5, whose
    data are in the HDF5): the ``file`` column is optional and not read, and each record's
    ``file`` is the sheet itself. Raises ``FormatError`` naming the sheet and line for
    missing columns, empty fields, unsafe or duplicate sample names; ``FileNotFoundError``
    for a missing sheet or (with ``check_files``) data file.
    """
    path = Path(path)
    records = []
    required = tuple(c for c in (REQUIRED_COLUMNS if labels else PREDICT_COLUMNS) if files or c != "file")
    optional = tuple(c for c in SHEET_COLUMNS if c not in required)
    check_files = check_files and files
    first_use: dict[Path, tuple[int, SampleRecord]] = {}
    for line, values in iter_sheet_rows(path, "sample sheet", required, optional):
        sample = values["sample"]
        file = resolve(path.parent, values["file"]) if files else path
        if check_files and not file.is_file():
            raise FileNotFoundError(
                f"sample sheet {path}, line {line}: file {file} of sample {sample!r} does not exist"
            )
        rec = SampleRecord(
            sample, file, values["tissue"], values["subtype"], values["source_sample"] or sample
        )
        if check_files and labels:
            # One file under two names of different source samples: identical data could be
            # split into train and test (a copied row whose file was not changed).
            earlier = first_use.setdefault(file.resolve(), (line, rec))
            if earlier[1] is not rec and earlier[1].source_sample != rec.source_sample:
                raise FormatError(
                    path,
                    f"file {values['file']} of sample {sample!r} is also the file of sample "
                    f"{earlier[1].sample!r} (line {earlier[0]}), another source_sample: identical data "
                    "could be split into train and test; fix the path, or give both one source_sample",
                    line,
                )
        records.append(rec)
    return records


def is_sample_sheet(path: str | os.PathLike) -> bool:
    """Whether ``path`` is an existing ``.tsv`` whose header names ``sample`` and ``file`` (a
    sample sheet, as opposed to a regions x samples table); reads the first line only."""
    path = Path(path)
    if not (path.name.lower().endswith(".tsv") and path.is_file()):
        return False
    with text_errors(path), open_text(path) as fh:
        header = fh.readline().rstrip("\r\n").split("\t")
    return "file" in header and "sample" in header


def sheet_files(path: str | os.PathLike, check_files: bool = True, labels: bool = True) -> list[str]:
    """The data files a tissue sample sheet lists (resolved), after reading and validating
    it: the workflow makes them rule inputs at parse time, so that a changed file reruns the
    rule that reads the sheet and a bad sheet stops the run before any job, naming its line.
    ``labels`` False: a sheet of new samples to predict, whose ``tissue`` column is optional."""
    return [str(rec.file) for rec in read_sample_sheet(path, check_files, labels)]


def write_sample_sheet(records: list[SampleRecord], out: str | os.PathLike) -> Path:
    """Write a tissue sample sheet atomically; ``file`` is written relative to the sheet's folder."""
    out = Path(out)
    with atomic_output(out) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(SHEET_COLUMNS), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for rec in records:
            writer.writerow(
                {
                    "sample": rec.sample,
                    "file": os.path.relpath(Path(rec.file).resolve(), out.parent.resolve()),
                    "tissue": rec.tissue,
                    "subtype": rec.subtype,
                    "source_sample": rec.source_sample,
                }
            )
    return out
