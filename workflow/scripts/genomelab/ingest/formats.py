"""Input formats: detection by extension, streamed parsing and validation.

Coordinates are converted on reading to the 0-based position of the CpG's C on the plus
strand (when the strand is known and ``merge_strands`` is on, a minus-strand C at 0-based
``p`` belongs to the CpG whose plus-strand C is at ``p - 1``).

| format | files | columns used |
|---|---|---|
| ``bismark_cov`` | ``*.cov``, ``*.cov.gz`` | chrom, start (1-based), end, percent, n methylated, n unmethylated |
| ``bismark_cpg_report`` | ``*CpG_report.txt[.gz]``, ``*CX_report.txt[.gz]`` | chrom, pos (1-based), strand, n meth, n unmeth, context (CG kept) |
| ``bedmethyl`` | ``*.bed[.gz]``, ``*.bedmethyl[.gz]`` | ENCODE (11 columns: coverage, percent) or modkit (18: Nvalid_cov, Nmod) |
| ``wgbs_pat`` | ``*.pat.gz``, ``*.pat`` | chrom, first CpG number, pattern (C/T/H/.), read count |
| ``wgbs_beta`` | ``*.beta`` (uint8), ``*.lbeta`` (uint16) | binary [n_cpgs, 2]: methylated, total |
| ``array`` | ``*.csv[.gz]``, ``*.tsv[.gz]`` | probe IDs then one beta column per sample (probes x samples) |

Every text reader streams ``chunk_lines`` lines at a time through pandas' C parser. Bad
lines are reported with their line number: when pandas fails, the file is rescanned line
by line up to the first line that does not fit the format.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genomelab.io.dropped import Dropped, count_dropped
from genomelab.io.streams import compressed_errors, is_gzip, open_text

BISMARK_COV, CPG_REPORT, BEDMETHYL, PAT, BETA, ARRAY = (
    "bismark_cov",
    "bismark_cpg_report",
    "bedmethyl",
    "wgbs_pat",
    "wgbs_beta",
    "array",
)
FORMATS = (BISMARK_COV, CPG_REPORT, BEDMETHYL, PAT, BETA, ARRAY)

_EXTENSIONS = [
    (re.compile(r"(cpg|cx)_report\.txt(\.gz)?$", re.I), CPG_REPORT),
    (re.compile(r"\.cov(\.gz)?$", re.I), BISMARK_COV),
    (re.compile(r"\.(bed|bedmethyl)(\.gz)?$", re.I), BEDMETHYL),
    (re.compile(r"\.pat(\.gz)?$", re.I), PAT),
    (re.compile(r"\.l?beta$", re.I), BETA),
    (re.compile(r"\.(csv|tsv)(\.gz)?$", re.I), ARRAY),
]


def detect_format(path: str | os.PathLike, declared: str = "") -> str:
    """The format of ``path``: ``declared`` if given (and known), else from its extension."""
    name = Path(path).name
    if declared and declared != "auto":
        if declared not in FORMATS:
            raise ValueError(f"{path}: unknown format {declared!r}; known: {', '.join(FORMATS)}")
        return declared
    for pattern, fmt in _EXTENSIONS:
        if pattern.search(name):
            return fmt
    raise ValueError(
        f"{path}: cannot tell the format from the extension; expected one of .cov[.gz], "
        "CpG_report.txt[.gz], .bed[.gz]/.bedmethyl[.gz], .pat.gz, .beta/.lbeta, .csv/.tsv[.gz] "
        "(or set the 'format' column of the ingest sample sheet)"
    )


def count_header_lines(path: Path) -> int:
    """Leading ``#``/``track``/``browser`` lines (bedMethyl and BED-like files may carry them)."""
    n = 0
    with open_text(path) as fh:
        for line in fh:
            if line.startswith(("#", "track", "browser")):
                n += 1
            else:
                break
    return n


@dataclass
class CountChunk:
    """CpG calls of one chromosome from consecutive lines: ``pos`` int64 [n] (0-based plus-
    strand C, see module docstring), ``n_meth`` float64 [n], ``n_total`` int64 [n].
    ``line`` [n] holds the 1-based line number of each call, for error messages."""

    chrom: str
    pos: np.ndarray
    n_meth: np.ndarray
    n_total: np.ndarray
    line: np.ndarray
    strand_known: bool


@dataclass
class ReadChunk:
    """Reads of one chromosome (wgbstools pat): ``start`` int64 [n] (first CpG number),
    ``patterns`` object (str) [n], ``lengths`` int64 [n] (CpGs per pattern), ``counts`` int64 [n],
    ``line`` [n]."""

    chrom: str
    start: np.ndarray
    patterns: np.ndarray
    lengths: np.ndarray
    counts: np.ndarray
    line: np.ndarray


# ----------------------------------------------------------------------------- line checks
def _is_int(s: str) -> bool:
    return s.strip().lstrip("-").isdigit()


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _check_cov(f: list[str]) -> str | None:
    if len(f) != 6:
        return f"expected 6 tab-separated fields (chrom, start, end, percent, n_meth, n_unmeth), got {len(f)}"
    if not (_is_int(f[1]) and _is_int(f[2]) and _is_int(f[4]) and _is_int(f[5])):
        return "start, end and counts must be integers"
    if not _is_float(f[3]):
        return "percent must be a number"
    return None


def _check_report(f: list[str]) -> str | None:
    if len(f) < 6:
        return f"expected 7 tab-separated fields (chrom, pos, strand, n_meth, n_unmeth, context, trinuc), got {len(f)}"
    if not (_is_int(f[1]) and _is_int(f[3]) and _is_int(f[4])):
        return "position and counts must be integers"
    if f[2] not in ("+", "-"):
        return f"strand must be + or -, got {f[2]!r}"
    return None


def _check_bedmethyl(f: list[str]) -> str | None:
    if len(f) not in (11, 18):
        return f"expected 11 (ENCODE) or 18 (modkit) whitespace-separated fields, got {len(f)}"
    if not (_is_int(f[1]) and _is_int(f[2]) and _is_int(f[9])):
        return "start, end and coverage must be integers"
    if not _is_float(f[10]):
        return "percent methylated must be a number"
    if len(f) == 18 and not all(_is_int(x) for x in f[11:18]):
        return "modkit count columns 12-18 must be integers"
    return None


def first_bad_line(
    path: Path, check: Callable[[list[str]], str | None], sep: str | None, n_header: int
) -> tuple[int, str, str] | None:
    """Rescan ``path``; return ``(line number, reason, line)`` of the first bad line."""
    with open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if line_no <= n_header:
                continue
            text = line.rstrip("\r\n")
            fields = text.split(sep) if sep else text.split()
            reason = check(fields)
            if reason:
                return line_no, reason, text
    return None


def _parse_failure(
    path: Path,
    fmt: str,
    check: Callable[[list[str]], str | None],
    sep: str | None,
    n_header: int,
    exc: Exception,
) -> ValueError:
    found = first_bad_line(path, check, sep, n_header)
    if found:
        line_no, reason, text = found
        return ValueError(f"{path}, line {line_no}: malformed {fmt} line ({reason}): {text[:200]!r}")
    return ValueError(f"{path}: cannot be read as {fmt}: {exc}")


def _bad_row(path: Path, lines: np.ndarray, mask: np.ndarray, what: str) -> ValueError:
    i = int(np.flatnonzero(mask)[0])
    return ValueError(f"{path}, line {int(lines[i])}: {what} ({int(mask.sum())} such line(s) in this block)")


def _read_chunks(
    path: Path,
    fmt: str,
    sep: str,
    usecols: list[int],
    dtype: dict[int, object],
    check: Callable[[list[str]], str | None],
    chunk_lines: int,
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Yield ``(line number of the first row, chunk)``; malformed lines raise with their number."""
    n_header = count_header_lines(path)
    line = n_header
    try:
        reader = pd.read_csv(
            path,
            sep=sep,
            header=None,
            skiprows=n_header,
            usecols=usecols,
            dtype=dtype,
            chunksize=chunk_lines,
            compression="gzip" if is_gzip(path) else None,
            engine="c",
            na_filter=True,
        )
        with reader, compressed_errors(path):
            for chunk in reader:
                if chunk.isna().to_numpy().any():
                    raise ValueError("missing fields")
                yield line + 1, chunk
                line += len(chunk)
    except (ValueError, pd.errors.ParserError, TypeError) as exc:
        if str(path) in str(exc):
            raise
        raise _parse_failure(path, fmt, check, None if sep == r"\s+" else sep, n_header, exc) from exc


def _chrom_runs(chrom: pd.Series) -> Iterator[tuple[str, int, int]]:
    """``(name, start, stop)`` of consecutive rows with the same chromosome."""
    cat = chrom.astype("category") if chrom.dtype != "category" else chrom
    codes = cat.cat.codes.to_numpy()
    names = cat.cat.categories
    breaks = np.flatnonzero(codes[1:] != codes[:-1]) + 1
    bounds = np.concatenate([[0], breaks, [len(codes)]])
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b > a:
            yield str(names[codes[a]]), int(a), int(b)


class SortCheck:
    """Input must be sorted by chromosome (each in one block) and position: a chromosome
    that reappears is the sign of concatenated or unsorted files."""

    def __init__(self, path: Path, what: str = "position") -> None:
        self.path, self.what = path, what
        self.seen: list[str] = []
        self.last = -1

    def __call__(self, chrom: str, values: np.ndarray, lines: np.ndarray) -> None:
        if not self.seen or self.seen[-1] != chrom:
            if chrom in self.seen:
                raise ValueError(
                    f"{self.path}, line {int(lines[0])}: chromosome {chrom} appears again after "
                    f"{self.seen[-1]}; the input is not sorted (sort -k1,1 -k2,2n) or several "
                    "files were concatenated"
                )
            self.seen.append(chrom)
            self.last = -1
        if not values.size:
            return
        down = np.empty(values.size, dtype=bool)
        down[0] = values[0] < self.last
        down[1:] = values[1:] < values[:-1]
        if down.any():
            i = int(np.flatnonzero(down)[0])
            prev = self.last if i == 0 else int(values[i - 1])
            raise ValueError(
                f"{self.path}, line {int(lines[i])}: {self.what} {int(values[i])} on {chrom} comes "
                f"after {prev}; the input must be sorted by chromosome and position "
                "(sort -k1,1 -k2,2n)"
            )
        self.last = int(values[-1])


# ----------------------------------------------------------------------------- count formats
def read_bismark_cov(path: Path, chunk_lines: int) -> Iterator[CountChunk]:
    """Bismark ``bismark2bedGraph`` coverage: chrom, start, end (1-based), percent, meth, unmeth."""
    order = SortCheck(path)
    dtype = {0: "category", 1: np.int64, 2: np.int64, 3: np.float64, 4: np.int64, 5: np.int64}
    for first, chunk in _read_chunks(
        path, BISMARK_COV, "\t", [0, 1, 2, 3, 4, 5], dtype, _check_cov, chunk_lines
    ):
        lines = np.arange(first, first + len(chunk))
        start, end = chunk[1].to_numpy(), chunk[2].to_numpy()
        pct, m, u = chunk[3].to_numpy(), chunk[4].to_numpy(), chunk[5].to_numpy()
        if (start < 1).any():
            raise _bad_row(path, lines, start < 1, "start must be >= 1 (Bismark coverage is 1-based)")
        if ((end - start) > 1).any() or (end < start).any():
            raise _bad_row(
                path,
                lines,
                ((end - start) > 1) | (end < start),
                "end must equal start (or start + 1 for merged CpGs); is this a CpG-level file?",
            )
        if ((m < 0) | (u < 0)).any():
            raise _bad_row(path, lines, (m < 0) | (u < 0), "negative read count")
        tot = m + u
        with np.errstate(invalid="ignore", divide="ignore"):
            expect = np.where(tot > 0, 100.0 * m / np.maximum(tot, 1), pct)
        # Bismark prints the percentage with full precision; a mismatch means swapped columns.
        bad = np.abs(pct - expect) > 0.51
        if bad.any():
            raise _bad_row(
                path,
                lines,
                bad,
                "percent methylation disagrees with the counts "
                "(expected columns chrom, start, end, percent, n_meth, n_unmeth)",
            )
        for chrom, a, b in _chrom_runs(chunk[0]):
            order(chrom, start[a:b], lines[a:b])
            keep = tot[a:b] > 0
            yield CountChunk(
                chrom,
                start[a:b][keep] - 1,
                m[a:b][keep].astype(np.float64),
                tot[a:b][keep],
                lines[a:b][keep],
                strand_known=False,
            )


def read_cpg_report(path: Path, chunk_lines: int, merge_strands: bool) -> Iterator[CountChunk]:
    """Bismark ``coverage2cytosine`` report: chrom, pos (1-based), strand, meth, unmeth, context, trinuc."""
    order = SortCheck(path)
    dtype = {0: "category", 1: np.int64, 2: str, 3: np.int64, 4: np.int64, 5: str}
    for first, chunk in _read_chunks(
        path, CPG_REPORT, "\t", [0, 1, 2, 3, 4, 5], dtype, _check_report, chunk_lines
    ):
        lines = np.arange(first, first + len(chunk))
        pos, m, u = chunk[1].to_numpy(), chunk[3].to_numpy(), chunk[4].to_numpy()
        strand = chunk[2].to_numpy()
        bad_strand = (strand != "+") & (strand != "-")
        if bad_strand.any():
            raise _bad_row(path, lines, bad_strand, "strand must be + or -")
        if (pos < 1).any():
            raise _bad_row(path, lines, pos < 1, "position must be >= 1 (CpG reports are 1-based)")
        if ((m < 0) | (u < 0)).any():
            raise _bad_row(path, lines, (m < 0) | (u < 0), "negative read count")
        cg = chunk[5].to_numpy() == "CG"
        for chrom, a, b in _chrom_runs(chunk[0]):
            order(chrom, pos[a:b], lines[a:b])
            tot = m[a:b] + u[a:b]
            keep = cg[a:b] & (tot > 0)
            p = pos[a:b] - 1
            if merge_strands:
                p = np.where(strand[a:b] == "-", p - 1, p)
            yield CountChunk(
                chrom,
                p[keep],
                m[a:b][keep].astype(np.float64),
                tot[keep],
                lines[a:b][keep],
                strand_known=merge_strands,
            )


def _bedmethyl_columns(path: Path) -> int:
    n_header = count_header_lines(path)
    with open_text(path) as fh:
        for i, line in enumerate(fh):
            if i >= n_header and line.strip():
                return len(line.split())
    raise ValueError(f"{path}: empty bedMethyl file")


def read_bedmethyl(path: Path, chunk_lines: int, merge_strands: bool, mod_code: str) -> Iterator[CountChunk]:
    """bedMethyl, ENCODE (11 columns) or modkit (18; columns 10-18 may be space-separated)."""
    n_cols = _bedmethyl_columns(path)
    if n_cols not in (11, 18):
        raise ValueError(
            f"{path}, line {count_header_lines(path) + 1}: malformed bedmethyl line (expected 11 "
            f"(ENCODE) or 18 (modkit) fields, got {n_cols})"
        )
    modkit = n_cols == 18
    usecols = [0, 1, 2, 3, 5, 9, 10] + ([11] if modkit else [])
    dtype: dict[int, object] = {
        0: "category",
        1: np.int64,
        2: np.int64,
        3: str,
        5: str,
        9: np.int64,
        10: np.float64,
    }
    if modkit:
        dtype[11] = np.int64
    order = SortCheck(path)
    for first, chunk in _read_chunks(path, BEDMETHYL, r"\s+", usecols, dtype, _check_bedmethyl, chunk_lines):
        lines = np.arange(first, first + len(chunk))
        start, end = chunk[1].to_numpy(), chunk[2].to_numpy()
        cov, pct = chunk[9].to_numpy(), chunk[10].to_numpy()
        strand = chunk[5].to_numpy()
        if (start < 0).any() or (end <= start).any():
            raise _bad_row(path, lines, (start < 0) | (end <= start), "start must be >= 0 and end > start")
        if ((pct < 0) | (pct > 100)).any():
            raise _bad_row(path, lines, (pct < 0) | (pct > 100), "percent methylated outside [0, 100]")
        if (cov < 0).any():
            raise _bad_row(path, lines, cov < 0, "negative coverage")
        if modkit:
            n_mod = chunk[11].to_numpy()
            if ((n_mod < 0) | (n_mod > cov)).any():
                raise _bad_row(path, lines, (n_mod < 0) | (n_mod > cov), "Nmod outside [0, Nvalid_cov]")
            code = chunk[3].astype(str).str.split(",").str[0].to_numpy()
            keep_code = code == mod_code
            meth = n_mod.astype(np.float64)
        else:
            keep_code = np.ones(len(chunk), dtype=bool)
            meth = np.rint(cov * pct / 100.0)
        for chrom, a, b in _chrom_runs(chunk[0]):
            order(chrom, start[a:b], lines[a:b])
            keep = keep_code[a:b] & (cov[a:b] > 0)
            p = start[a:b]
            if merge_strands:
                p = np.where(strand[a:b] == "-", p - 1, p)
            yield CountChunk(
                chrom, p[keep], meth[a:b][keep], cov[a:b][keep], lines[a:b][keep], strand_known=merge_strands
            )


# ----------------------------------------------------------------------------- wgbstools
def read_pat(path: Path, chunk_lines: int) -> Iterator[ReadChunk]:
    """wgbstools ``.pat.gz``: chrom, first CpG number, pattern, number of reads (read and
    checked by ``genomelab.io.pat``; ``H``, hydroxymethylated, is a methylated call)."""
    from genomelab.io.pat import read_pat as read_pat_chunks

    for ch in read_pat_chunks(path, chunk_lines):
        lengths = np.fromiter((len(p) for p in ch.patterns), dtype=np.int64, count=len(ch.patterns))
        yield ReadChunk(ch.chrom, ch.start, ch.patterns, lengths, ch.counts, ch.line)


def read_beta(path: Path) -> np.ndarray:
    """wgbstools ``.beta`` (uint8) or ``.lbeta`` (uint16): a memory map [n_cpgs, 2] of
    (methylated, total) per CpG number - 1."""
    dtype = np.uint16 if path.name.lower().endswith(".lbeta") else np.uint8
    size = path.stat().st_size
    item = 2 * np.dtype(dtype).itemsize
    if size == 0 or size % item:
        raise ValueError(
            f"{path}: size {size} bytes is not a multiple of {item}; not a wgbstools "
            f"{'l' if dtype == np.uint16 else ''}beta file ([n_cpgs, 2] {np.dtype(dtype).name})"
        )
    return np.memmap(path, dtype=dtype, mode="r", shape=(size // item, 2))


# ----------------------------------------------------------------------------- arrays
PROBE_COLUMNS = ("probe", "probe_id", "ilmnid", "name", "id", "cpg", "cpgs")
CHROM_COLUMNS = ("chrom", "chr", "chromosome", "seqnames", "chr_hg38", "chr_hg19")
POS_COLUMNS = ("pos", "position", "mapinfo", "start", "start_hg38", "start_hg19")


def _sep_of(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    return "," if name.endswith(".csv") else "\t"


def _pick(columns: list[str], candidates: tuple[str, ...], path: Path, what: str) -> str:
    lower = {c.lower(): c for c in columns}
    for cand in candidates:
        if cand in lower:
            return lower[cand]
    raise ValueError(
        f"{path}: no {what} column; expected one of {list(candidates)} (case-insensitive), "
        f"found {columns[:10]}"
    )


def read_probe_table(
    path: str | os.PathLike, pos_base: int = 1, dropped: list[Dropped] | None = None
) -> pd.DataFrame:
    """Probe -> coordinate table (CSV/TSV with a header: probe, chrom, pos; Illumina manifest
    names IlmnID/CHR/MAPINFO accepted). Returns columns probe, chrom, pos (0-based).
    Probes without coordinates are left out; ``dropped``, when given, receives their entry."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"probe table {path} does not exist")
    header = pd.read_csv(path, sep=_sep_of(path), nrows=0, compression="gzip" if is_gzip(path) else None)
    cols = list(header.columns)
    p, c, s = (
        _pick(cols, PROBE_COLUMNS, path, "probe ID"),
        _pick(cols, CHROM_COLUMNS, path, "chromosome"),
        _pick(cols, POS_COLUMNS, path, "position"),
    )
    with compressed_errors(path):
        table = pd.read_csv(
            path,
            sep=_sep_of(path),
            usecols=[p, c, s],
            dtype={p: str, c: str},
            compression="gzip" if is_gzip(path) else None,
        )
    table = table.rename(columns={p: "probe", c: "chrom", s: "pos"})
    # Manifests leave control probes without coordinates; they cannot be placed.
    unplaced = table["chrom"].isna() | table["pos"].isna()
    entry = count_dropped(
        "ingest_sample", "probes", f"no chromosome or position in {path}", table.loc[unplaced, "probe"]
    )
    if entry is not None and dropped is not None:
        dropped.append(entry)
    table = table[~unplaced]
    pos = pd.to_numeric(table["pos"], errors="coerce")
    if pos.isna().any() or (pos < pos_base).any() or (pos != np.floor(pos)).any():
        bad = table.index[(pos.isna() | (pos < pos_base)).to_numpy()]
        raise ValueError(
            f"{path}: position of probe {table.loc[bad[0], 'probe'] if len(bad) else '?'} is not an "
            f"integer >= {pos_base}"
        )
    table["pos"] = pos.astype(np.int64) - pos_base
    dup = table["probe"].duplicated()
    if dup.any():
        raise ValueError(f"{path}: probe {table['probe'][dup].iloc[0]!r} listed more than once")
    return table.reset_index(drop=True)


def array_header(path: Path) -> list[str]:
    try:
        with compressed_errors(path):
            header = pd.read_csv(
                path, sep=_sep_of(path), nrows=0, compression="gzip" if is_gzip(path) else None
            )
    except (ValueError, pd.errors.ParserError) as exc:
        raise ValueError(f"{path}: cannot read the header of the beta matrix: {exc}") from exc
    return [str(c) for c in header.columns]


def read_array_column(
    path: Path, column: str, chunk_lines: int
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Stream one sample of a probes x samples beta matrix: ``(probe IDs, beta float64 (NaN =
    missing), line numbers)`` per chunk; only two columns are converted."""
    cols = array_header(path)
    if len(cols) < 2:
        raise ValueError(f"{path}: a beta matrix needs a probe column and >= 1 sample column, got {cols}")
    if column not in cols[1:]:
        raise ValueError(
            f"{path}: no sample column {column!r}; it has {len(cols) - 1} sample columns, e.g. "
            f"{cols[1:6]} (set the 'column' field of the ingest sample sheet)"
        )
    probe_col = cols[0]
    reader = pd.read_csv(
        path,
        sep=_sep_of(path),
        usecols=[probe_col, column],
        dtype={probe_col: str, column: str},
        chunksize=chunk_lines,
        compression="gzip" if is_gzip(path) else None,
        keep_default_na=False,
    )
    line = 1
    with reader, compressed_errors(path):
        for chunk in reader:
            lines = np.arange(line + 1, line + 1 + len(chunk))
            raw = chunk[column].str.strip()
            missing = raw.isin(["", "NA", "NaN", "nan", "null", "."]).to_numpy()
            values = pd.to_numeric(raw.where(~missing, None), errors="coerce").to_numpy(dtype=np.float64)
            bad = np.isnan(values) & ~missing
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise ValueError(
                    f"{path}, line {lines[i]}: beta value {raw.iloc[i]!r} of sample {column!r} is "
                    "not a number"
                )
            out = ~np.isnan(values) & ((values < 0) | (values > 1))
            if out.any():
                i = int(np.flatnonzero(out)[0])
                raise ValueError(
                    f"{path}, line {lines[i]}: beta value {values[i]} of sample {column!r} is outside "
                    "[0, 1] (percentages? M-values? convert to beta values first)"
                )
            yield chunk[probe_col].to_numpy().astype(str), values, lines
            line += len(chunk)
