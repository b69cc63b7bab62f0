"""Tab-separated tables keyed by name: the tissue module's splits table, contig tables of
the binning module (MetaBAT depth, truth, clusters, bins) and the link and entity tables
of the assoc module.

Readers check the columns and rows a table must have and name the file, and the line
where a row is at fault (``line`` counts the header as line 1 and assumes no blank lines,
which pandas skips). Joins between tables go through :func:`check_names`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from genomelab.io.atomic import atomic_output, atomic_write_text
from genomelab.io.errors import FormatError
from genomelab.io.streams import compressed_errors, existing_file, open_text, text_errors
from genomelab.splits import SPLIT_KINDS, SPLITS, GivenAssignment

logger = logging.getLogger(__name__)

CLUSTER_COLUMNS = ("contig", "cluster")
TRUTH_COLUMNS = ("contig", "genome")
CONTIG_BINS_COLUMNS = ("contig", "bin", "length", "bin_written", "status")
LINK_COLUMNS = ("source", "target", "direction", "confidence")
LINK_SPLIT_COLUMNS = ("source", "target", "split")
SPLIT_COLUMNS = ("sample", "source_sample", "tissue", "label", "split")


def write_table(frame: pd.DataFrame, path: str | os.PathLike, float_format: str = "%.6g") -> None:
    """Write ``frame`` as TSV atomically (no index column)."""
    with atomic_output(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, float_format=float_format)


def _read_tsv(path: Path, **kwargs) -> pd.DataFrame:
    with compressed_errors(path):
        try:
            return pd.read_csv(path, sep="\t", **kwargs)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            raise FormatError(path, f"not a readable tab-separated table ({exc})") from exc


def row_lines(path: Path, n_rows: int, header: bool = True) -> np.ndarray:
    """[n_rows] int64: the 1-based file line of each of the ``n_rows`` rows ``_read_tsv``
    read from ``path`` (``header``: whether its first non-blank line is a header).

    ``read_csv`` skips blank lines (empty or spaces only) before and after the header, so
    after one the row index + 2 is not the row's line. Where the count disagrees (a quoted
    field over several lines) rows are counted from the first line after the header."""
    with compressed_errors(path), open_text(path) as fh:
        lines = [i for i, line in enumerate(fh, start=1) if line.rstrip("\r\n").strip(" ")][int(header) :]
    if len(lines) != n_rows:
        return np.arange(n_rows, dtype=np.int64) + 1 + int(header)
    return np.asarray(lines, dtype=np.int64)


def check_names(
    reference: np.ndarray | list[str],
    other: np.ndarray | list[str],
    ref_label: str,
    other_label: str,
    require_all: bool = True,
    show: int = 5,
) -> None:
    """Raise ``ValueError`` unless every name of ``reference`` occurs in ``other``.

    The message shows the counts and the first mismatches on both sides, which is what a
    user needs to spot a renamed assembly or a header-trimming difference.
    """
    ref = pd.Index(np.asarray(reference, dtype=object))
    oth = pd.Index(np.asarray(other, dtype=object))
    missing = ref.difference(oth, sort=False)
    extra = oth.difference(ref, sort=False)
    if len(missing) and require_all:
        # A table made from header lines (grep '>') holds 'k141_1 flag=1 len=5000' for k141_1.
        first_words = {str(n).split()[0] for n in extra if str(n).split()}
        whole_headers = (
            f"; the names of {other_label} hold whole header lines where contigs are named by "
            f"their FASTA header's first word (e.g. {str(extra[0])!r})"
            if set(missing) <= first_words
            else ""
        )
        raise ValueError(
            f"contig names differ between {ref_label} ({len(ref)} contigs) and {other_label} "
            f"({len(oth)} contigs): {len(missing)} of {ref_label} are missing from {other_label} "
            f"(first: {list(missing[:show])}); {len(extra)} of {other_label} are not in {ref_label} "
            f"(first: {list(extra[:show])}){whole_headers}"
        )
    if len(extra):
        logger.info(
            "%d contigs of %s are not in %s (e.g. %s); ignored",
            len(extra),
            other_label,
            ref_label,
            list(extra[:show]),
        )


def _line_of_first(mask: np.ndarray | pd.Series, path: Path, header: bool = True) -> int:
    """File line of the first true row of ``mask`` over the rows ``_read_tsv`` read from
    ``path`` (blank lines counted; read only when an error needs it)."""
    rows = np.flatnonzero(np.asarray(mask))
    return int(row_lines(path, len(np.asarray(mask)), header)[rows[0]])


def _unique_names(table: pd.DataFrame, column: str, path: Path, what: str, header: bool = True) -> None:
    dup = table[column].duplicated()
    if dup.any():
        first = table.loc[dup, column].tolist()[:5]
        raise FormatError(
            path, f"{what} lists contigs more than once (first: {first})", _line_of_first(dup, path, header)
        )


# ------------------------------------------------------------------- splits
def write_split_table(rows: list[dict[str, str]], path: str | os.PathLike, kind: str = "split") -> None:
    """Write a splits TSV (``SPLIT_COLUMNS``, one row per sample) atomically; with ``kind``
    "fold" a folds TSV (the last column is ``fold``, each sample's test fold)."""
    if kind not in SPLIT_KINDS:
        raise ValueError(f"a splits table holds one of {SPLIT_KINDS}, not {kind!r}")
    columns = [*SPLIT_COLUMNS[:-1], kind]
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    values = SPLITS if kind == "split" else sorted({int(r[kind]) for r in rows})
    counts = {s: sum(str(r[kind]) == str(s) for r in rows) for s in values}
    logger.info("wrote %ss of %d samples to %s: %s", kind, len(rows), path, counts)


def read_split_table(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a splits TSV; errors name the file (missing columns) and line (unknown split)."""
    path = existing_file(path, "splits file")
    with text_errors(path), open_text(path) as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        missing = [c for c in SPLIT_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise FormatError(path, f"splits file lacks column(s) {missing}")
        rows = []
        for row in reader:
            if row["split"] not in SPLITS:
                raise FormatError(
                    path, f"unknown split name {row['split']!r}; expected one of {SPLITS}", reader.line_num
                )
            rows.append(row)
    return rows


def read_given_assignment(
    path: str | os.PathLike,
    keys: Sequence[str] = ("sample",),
    what: str = "splits file",
    required: bool = True,
) -> GivenAssignment | None:
    """A user's split or fold per key from a TSV: a ``split`` column (train/val/test) or a
    ``fold`` column (integers from 0), keyed by the first of ``keys`` the table has.

    Returns the assignment (its ``key`` is the key column used); ``None`` when the table has neither column
    and ``required`` is false (a sample sheet that gives no split). Errors name the file
    and line: no key column, both columns, an empty or unknown value, a key given twice.
    """
    path = existing_file(path, what)
    with text_errors(path), open_text(path) as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        columns = reader.fieldnames or []
        kinds = [k for k in SPLIT_KINDS if k in columns]
        if not kinds:
            if required:
                raise FormatError(path, f"{what} has no 'split' or 'fold' column (columns: {columns})")
            return None
        if len(kinds) > 1:
            raise FormatError(
                path, f"{what} has both a 'split' and a 'fold' column; keep one (a split or K folds)"
            )
        key = next((k for k in keys if k in columns), None)
        if key is None:
            raise FormatError(path, f"{what} has a {kinds[0]!r} column but no {' or '.join(keys)} column")
        kind = kinds[0]
        values: dict[str, str | int] = {}
        lines: dict[str, int] = {}
        for row in reader:
            name, raw = (row.get(key) or "").strip(), (row.get(kind) or "").strip()
            if not name:
                raise FormatError(path, f"empty {key!r}", reader.line_num)
            if name in values:
                raise FormatError(
                    path, f"{key} {name!r} given twice (first on line {lines[name]})", reader.line_num
                )
            if kind == "split":
                if raw not in SPLITS:
                    raise FormatError(
                        path, f"{key} {name!r}: split {raw!r} is not one of {SPLITS}", reader.line_num
                    )
                values[name] = raw
            else:
                if not raw.isdigit():
                    raise FormatError(
                        path, f"{key} {name!r}: fold {raw!r} is not an integer >= 0", reader.line_num
                    )
                values[name] = int(raw)
            lines[name] = reader.line_num
    if not values:
        raise FormatError(path, f"{what} has no rows")
    return GivenAssignment(kind, values, str(path), key, lines)


# ------------------------------------------------------------------ binning
JGI_DEPTH_COLUMNS = ("contigName", "contigLen", "totalAvgDepth")


def _checked_depths(
    table: pd.DataFrame, name_col: str, samples: list[str], path: Path, what: str, header: bool = True
) -> np.ndarray:
    """[n, n_samples] float32 depths of ``samples``: unique names, numbers, finite, >= 0.
    Errors name the file line (``header``: whether the file has a header line)."""
    _unique_names(table, name_col, path, what, header)
    numbers = table[samples].apply(pd.to_numeric, errors="coerce")
    text = numbers.isna() & table[samples].notna()
    if text.to_numpy().any():
        rows = text.to_numpy().any(axis=1)
        row = int(np.flatnonzero(rows)[0])
        col = samples[int(np.flatnonzero(text.iloc[row].to_numpy())[0])]
        raise FormatError(
            path,
            f"{what}: contig {table[name_col].iloc[row]!r}, sample {col!r}: depth "
            f"{table[col].iloc[row]!r} is not a number",
            _line_of_first(rows, path, header),
        )
    depth = numbers.to_numpy(dtype=np.float64)
    bad = ~np.isfinite(depth).all(axis=1) | (depth < 0).any(axis=1)
    if bad.any():
        raise FormatError(
            path, f"{what} holds negative or non-finite depths", _line_of_first(bad, path, header)
        )
    return depth.astype(np.float32)


def read_depth_table(path: str | os.PathLike) -> tuple[pd.Index, np.ndarray, list[str]]:
    """Read a ``jgi_summarize_bam_contig_depths`` table (MetaBAT): ``contigName``,
    ``contigLen``, ``totalAvgDepth``, then per sample its mean depth and ``<sample>-var``.

    Returns ``(contig names, [n, n_samples] float32 mean depths, sample names)``; the
    ``-var`` columns, ``contigLen`` and ``totalAvgDepth`` are not model inputs.
    """
    path = existing_file(path, "depth table")
    table = _read_tsv(path, dtype={"contigName": str})
    need = set(JGI_DEPTH_COLUMNS)
    if not need <= set(table.columns):
        raise FormatError(
            path,
            f"depth table lacks columns {sorted(need - set(table.columns))}; "
            "expected the jgi_summarize_bam_contig_depths format",
        )
    samples = [c for c in table.columns[3:] if not c.endswith("-var")]
    if not samples:
        raise FormatError(path, "depth table has no per-sample depth columns")
    depth = _checked_depths(table, "contigName", samples, path, "depth table")
    return pd.Index(table["contigName"]), depth, samples


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_coverage_table(path: str | os.PathLike) -> tuple[pd.Index, np.ndarray, list[str]]:
    """Read a per-sample coverage table: the contig name, then one mean-coverage column per
    sample (``strobealign --aemb`` output, one sample's columns pasted beside the next,
    or ``coverm contig -m mean``).

    A header line is optional: when the first line's columns after the name are all
    numbers it is data, and the samples are named ``sample_1``, ``sample_2``...
    Returns ``(contig names, [n, n_samples] float32 depths, sample names)``.
    """
    path = existing_file(path, "coverage table")
    first = _read_tsv(path, dtype=str, header=None, nrows=1)
    if first.shape[1] < 2:
        raise FormatError(path, "coverage table needs a contig column and at least one sample column", 1)
    has_header = not all(_is_number(str(v)) for v in first.iloc[0, 1:])
    if has_header:
        table = _read_tsv(path, dtype={first.iloc[0, 0]: str})
        table = table.rename(columns={table.columns[0]: "contig"})
    else:
        table = _read_tsv(path, header=None, dtype={0: str})
        table.columns = ["contig"] + [f"sample_{i}" for i in range(1, table.shape[1])]
    samples = [str(c) for c in table.columns[1:]]
    depth = _checked_depths(table, "contig", samples, path, "coverage table", header=has_header)
    if not has_header:
        logger.info("%s: no header line; %d samples named sample_1...", path, len(samples))
    return pd.Index(table["contig"]), depth, samples


def read_abundance_table(path: str | os.PathLike) -> tuple[pd.Index, np.ndarray, list[str]]:
    """Contig abundances from either format: a ``jgi_summarize_bam_contig_depths`` table
    (recognised by its ``contigName``/``contigLen``/``totalAvgDepth`` header, see
    :func:`read_depth_table`) or a per-sample coverage table (:func:`read_coverage_table`)."""
    path = existing_file(path, "depth table")
    header = [str(c) for c in _read_tsv(path, dtype=str, header=None, nrows=1).iloc[0]]
    if tuple(header[:3]) == JGI_DEPTH_COLUMNS:
        return read_depth_table(path)
    return read_coverage_table(path)


def check_truth_header(path: str | os.PathLike) -> Path:
    """The truth table ``path`` if its first line is a header naming ``contig`` and
    ``genome``; reads that line only, so the workflow checks a user's table at parse time."""
    path = existing_file(path, "truth table")
    columns = [str(c) for c in _read_tsv(path, dtype=str, nrows=0).columns]
    if not set(TRUTH_COLUMNS) <= set(columns):
        raise FormatError(
            path,
            "truth table needs a tab-separated header line naming the columns 'contig' and 'genome' "
            f"(more columns allowed); its first line holds {columns}: a table without a header?",
            1,
        )
    return path


def read_truth(path: str | os.PathLike) -> pd.Series:
    """contig -> genome from a truth TSV (columns ``contig`` and ``genome``; more allowed)."""
    path = check_truth_header(path)
    table = _read_tsv(path, dtype=str)
    _unique_names(table, "contig", path, "truth table")
    return pd.Series(table["genome"].to_numpy(), index=pd.Index(table["contig"]), name="genome")


def write_clusters(names: np.ndarray | list[str], labels: np.ndarray, path: str | os.PathLike) -> None:
    """Write a clusters TSV (``contig``, ``cluster``), one row per contig in ``names`` order."""
    write_table(pd.DataFrame({"contig": names, "cluster": labels}), path)


def read_clusters(
    path: str | os.PathLike, names: np.ndarray | list[str], names_label: str = "the k-mer profiles"
) -> np.ndarray:
    """Cluster labels [n] of the contigs ``names`` (in that order) from a clusters TSV.

    Every name must be in the table (the error lists the first mismatches, see
    :func:`check_names`); a contig listed twice is an error naming the line.
    """
    path = existing_file(path, "clusters table")
    table = _read_tsv(path, dtype={"contig": str})
    missing = [c for c in CLUSTER_COLUMNS if c not in table.columns]
    if missing:
        raise FormatError(path, f"clusters table lacks column(s) {missing}; it has {list(table.columns)}")
    _unique_names(table, "contig", path, "clusters table")
    check_names(names, table["contig"], names_label, f"clusters {path}")
    return table.set_index("contig").loc[names, "cluster"].to_numpy()


def read_contig_bins(path: str | os.PathLike) -> pd.DataFrame:
    """The binning module's contig -> bin table (``contig``, ``bin``, ``length``,
    ``bin_written``, ``status``; every contig of the assembly, unbinned ones included)."""
    path = existing_file(path, "contig bins table")
    table = _read_tsv(path, dtype={"contig": str, "bin": str, "status": str})
    missing = [c for c in CONTIG_BINS_COLUMNS if c not in table.columns]
    if missing:
        raise FormatError(path, f"contig bins table lacks column(s) {missing}; it has {list(table.columns)}")
    return table


# -------------------------------------------------------------------- assoc
def read_entity_table(path: str | os.PathLike, side: str) -> pd.DataFrame:
    """An entity TSV as strings (``id`` stripped; missing values kept as ""); checks that
    there is an ``id`` column, rows, and no empty or duplicate ids."""
    what = f"{side} entity table"
    path = existing_file(path, what)
    df = _read_tsv(path, dtype=str, keep_default_na=False)
    if "id" not in df.columns:
        raise FormatError(path, f"{what} has no 'id' column (columns: {list(df.columns)})")
    if len(df) == 0:
        raise FormatError(path, f"{what} has no rows")
    ids = df["id"].str.strip()
    empty = ids == ""
    dup = ids.duplicated()
    if empty.any() or dup.any():
        lines = row_lines(path, len(df))
    if empty.any():
        raise FormatError(path, f"{what} has {int(empty.sum())} empty ids", int(lines[empty.to_numpy()][0]))
    if dup.any():
        raise FormatError(
            path, f"{what} has duplicate ids: {ids[dup].unique().tolist()[:5]}", int(lines[dup.to_numpy()][0])
        )
    df["id"] = ids
    return df


def _write_plain_tsv(
    rows: Iterable[Sequence[str]], path: str | os.PathLike, columns: Sequence[str], what: str
) -> int:
    """Write ``columns`` and one row of strings per record, atomically; returns the row
    count. A field holding a tab or line break would shift columns, so it is an error."""
    lines = ["\t".join(columns)]
    for row in rows:
        if len(row) != len(columns) or any(c in f for f in row for c in "\t\r\n"):
            raise ValueError(
                f"{path}: {what} row {list(row)} does not fit columns {list(columns)} (tabs or line breaks?)"
            )
        lines.append("\t".join(row))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return len(lines) - 1


def write_entity_table(rows: Iterable[Sequence[str]], path: str | os.PathLike, columns: Sequence[str]) -> int:
    """Write an entity TSV (first column ``id``, the layout ``read_entity_table`` reads)."""
    if not columns or columns[0] != "id":
        raise ValueError(f"an entity table starts with an 'id' column, not {tuple(columns)}")
    return _write_plain_tsv(rows, path, columns, "entity")


def write_link_table(rows: Iterable[Sequence[str]], path: str | os.PathLike, columns: Sequence[str]) -> int:
    """Write a links TSV atomically: ``columns`` (starting with ``LINK_COLUMNS``) and one
    row of strings per link; returns the row count."""
    if tuple(columns[: len(LINK_COLUMNS)]) != LINK_COLUMNS:
        raise ValueError(f"a links table starts with columns {LINK_COLUMNS}, not {tuple(columns)}")
    return _write_plain_tsv(rows, path, columns, "link")


def read_link_table(
    path: str | os.PathLike,
    directions: tuple[str, ...],
    confidence_words: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """A links TSV: ``source``, ``target`` (stripped), ``direction`` (stripped; one of
    ``directions``), ``confidence`` and any other columns as strings.

    A confidence is a number in [0, 1] or, with ``confidence_words`` (word -> number in
    [0, 1], matched case-insensitively), one of those words, e.g. RegulonDB's ``Strong``.
    Errors name the file and the first bad line (the file's own line: blank lines count); an
    unknown word lists the mapping. Column ``_line`` holds each row's line."""
    path = existing_file(path, "links table")
    df = _read_tsv(path, dtype=str, keep_default_na=False)
    missing = [c for c in LINK_COLUMNS if c not in df.columns]
    if missing:
        raise FormatError(path, f"links table lacks column(s) {missing} (has {list(df.columns)})")
    if len(df) == 0:
        raise FormatError(path, "links table has no rows")
    df["_line"] = row_lines(path, len(df))
    for col in ("source", "target", "direction"):
        df[col] = df[col].str.strip()
    bad_dir = ~df["direction"].isin(directions)
    if bad_dir.any():
        raise FormatError(
            path,
            f"links table: unknown direction(s) {sorted(set(df['direction'][bad_dir]))}; use {sorted(directions)}",
            int(df["_line"][bad_dir].iloc[0]),
        )
    conf = _confidences(df, path, confidence_words or {})
    bad = ~np.isfinite(conf) | (conf < 0) | (conf > 1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5]
        examples = [f"{df['source'][i]}->{df['target'][i]}: {df['confidence'][i]!r}" for i in rows]
        raise FormatError(
            path,
            f"links table: {int(bad.sum())} confidence(s) outside [0, 1] or not numbers, e.g. {examples}",
            int(df["_line"][bad].iloc[0]),
        )
    df["confidence"] = conf
    return df


def _confidences(df: pd.DataFrame, path: Path, words: Mapping[str, float]) -> np.ndarray:
    """[n] float confidences: numbers as written, words through ``words`` (case-insensitive)."""
    conf = pd.to_numeric(df["confidence"], errors="coerce").to_numpy(dtype=float, na_value=np.nan).copy()
    text = df["confidence"].str.strip()
    is_word = np.isnan(conf) & text.str.contains(r"[A-Za-z]", regex=True).to_numpy()
    if not is_word.any() or not words:
        return conf
    lower = {str(k).strip().lower(): float(v) for k, v in words.items()}
    mapped = text[is_word].str.lower().map(lower)
    unknown = mapped.isna().to_numpy()
    if unknown.any():
        i = int(np.flatnonzero(is_word)[np.flatnonzero(unknown)[0]])
        mapping = ", ".join(f"{k} {v:g}" for k, v in lower.items()) or "none configured"
        raise FormatError(
            path,
            f"links table: confidence word {text[i]!r} of link {df['source'][i]} -> {df['target'][i]} "
            f"is not in the confidence mapping ({mapping}); add it to assoc.data.confidence_words "
            "or write a number in [0, 1]",
            int(df["_line"][i]),
        )
    conf[is_word] = mapped.to_numpy(dtype=float)
    return conf


def link_pair_key(source: str, target: str) -> str:
    """Key of a (source, target) pair in a given link split (a tab cannot occur in either)."""
    return f"{source}\t{target}"


def read_known_links(path: str | os.PathLike) -> set[tuple[str, str]]:
    """(source, target) pairs of a links source the user names (``source``, ``target``
    columns; other columns, e.g. a links table's, are ignored). Errors name the file and
    line: a missing column, an empty id."""
    path = existing_file(path, "known links file")
    df = _read_tsv(path, dtype=str, keep_default_na=False)
    missing = [c for c in ("source", "target") if c not in df.columns]
    if missing:
        raise FormatError(path, f"known links file lacks column(s) {missing} (has {list(df.columns)})")
    src, tgt = df["source"].str.strip(), df["target"].str.strip()
    empty = (src == "") | (tgt == "")
    if empty.any():
        line = int(row_lines(path, len(df))[empty.to_numpy()][0])
        raise FormatError(path, "known links file: empty source or target", line)
    return set(zip(src.tolist(), tgt.tolist(), strict=True))


def read_link_split_file(path: str | os.PathLike) -> GivenAssignment:
    """A given split or folds of assoc links: a TSV of ``source``, ``target`` and ``split``
    (train/val/test) or ``fold`` (an integer >= 0: the pair's test fold) rows, one per
    (source, target) pair (both directions of a pair share its split or fold).

    Returns a :class:`GivenAssignment` keyed by :func:`link_pair_key`. Errors name the file
    and line: a missing column, an empty id, an unknown split, a fold that is not an integer
    >= 0, a pair given twice.
    """
    path = existing_file(path, "link splits file")
    with text_errors(path), open_text(path) as fh:
        reader = csv.DictReader(fh, delimiter="\t")
        columns = reader.fieldnames or []
        kinds = [k for k in SPLIT_KINDS if k in columns]
        missing = [c for c in LINK_SPLIT_COLUMNS[:2] if c not in columns]
        if missing or len(kinds) != 1:
            raise FormatError(
                path,
                f"link splits file needs columns source, target and one of split or fold (has {columns})",
            )
        kind = kinds[0]
        values: dict[str, str | int] = {}
        lines: dict[str, int] = {}
        for row in reader:
            source, target = (row["source"] or "").strip(), (row["target"] or "").strip()
            value = (row[kind] or "").strip()
            if not source or not target:
                raise FormatError(path, "empty source or target", reader.line_num)
            if (kind == "split" and value not in SPLITS) or (kind == "fold" and not value.isdigit()):
                allowed = f"one of {SPLITS}" if kind == "split" else "an integer >= 0"
                raise FormatError(
                    path,
                    f"link {source} -> {target}: {kind} {value!r} is not {allowed}",
                    reader.line_num,
                )
            key = link_pair_key(source, target)
            if key in values:
                raise FormatError(
                    path,
                    f"link {source} -> {target} given twice (first on line {lines[key]})",
                    reader.line_num,
                )
            values[key], lines[key] = (value if kind == "split" else int(value)), reader.line_num
    if not values:
        raise FormatError(path, "link splits file has no rows")
    return GivenAssignment(kind, values, str(path), "source/target", lines)


def write_link_split_file(
    pairs: Iterable[tuple[str, str, str]], path: str | os.PathLike, kind: str = "split"
) -> int:
    """Write (source, target, split) rows, or (source, target, fold) rows with ``kind``
    "fold", as the TSV :func:`read_link_split_file` reads."""
    if kind not in SPLIT_KINDS:
        raise ValueError(f"a link splits file holds one of {SPLIT_KINDS}, not {kind!r}")
    return _write_plain_tsv(pairs, path, (*LINK_SPLIT_COLUMNS[:2], kind), "link split")
