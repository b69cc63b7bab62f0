"""Held-out genome blocks of the regulon module, and paired tests over them.

The region is cut into contiguous blocks of ``block_bp`` (block ``i`` starts at
``region_start + i * block_bp``; the last may be shorter). Each block belongs to one split:

- spaced (the default, ``heldout.scheme: spaced``): a fixed set that depends only on the
  number of blocks and ``split_fractions``, never on a seed (:func:`spaced_split`), so runs
  and studies with the same region and ``block_bp`` hold out the same blocks;
- drawn at random (``heldout.scheme: random``; ``split_fractions`` and the run's seed);
- given by index (``targets.heldout.blocks: {val: [...], test: [...]}``; the others train);
- given by coordinates (``targets.heldout.file``): a BED (chrom, start, end, split; no
  header) or a TSV with a header naming ``chrom``, ``start``, ``end`` and ``split``. A row
  covers one or more whole blocks; blocks no row covers train. The blocks table this module
  writes (:func:`write_blocks_table`) is such a file, so a run's split can be reused.

Paired tests compare the model with each baseline on the same held-out examples
(:func:`paired_tests`): per test block for density and operons (Wilcoxon signed-rank of the
per-block R^2 / AUROC; with K blocks its smallest two-sided p is 2 / 2^K, 1/64 for 7), per
gene for expression (Wilcoxon signed-rank of the squared error of each gene's mean
prediction; many genes, but genes of one block share the block, so the p-value is optimistic).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomelab.io.errors import FormatError
from genomelab.io.streams import existing_file
from genomelab.io.tables import write_table
from genomelab.report.stats import PairedTest, paired_t, wilcoxon_signed_rank
from genomelab.splits import SPLITS, GivenAssignment, group_split

logger = logging.getLogger(__name__)

HELDOUT_KEY = "regulon.targets.heldout"
BLOCK_COLUMNS = ("block", "chrom", "start", "end", "split")
FILE_COLUMNS = ("chrom", "start", "end", "split")
# Blocks neither given by index nor by file: evenly spaced (fixed) or drawn with the seed.
SCHEMES = ("spaced", "random")
# Lines of a BED file that are not intervals.
_BED_META = ("#", "track", "browser")


@dataclass(frozen=True)
class Heldout:
    """Where the held-out blocks come from (``regulon.targets.heldout``).

    val, test: block indices (the others train), or None; file: a BED/TSV of block
    coordinates with a split each, or None. Neither: a random draw.
    """

    val: tuple[int, ...] | None = None
    test: tuple[int, ...] | None = None
    file: str | None = None
    scheme: str = "spaced"

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> Heldout:
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - {"blocks", "file", "scheme"})
        if unknown:
            raise ValueError(f"{HELDOUT_KEY}: unknown key(s) {unknown}; expected blocks, file or scheme")
        blocks, file = cfg.get("blocks"), cfg.get("file")
        scheme = cfg.get("scheme") or "spaced"
        if scheme not in SCHEMES:
            raise ValueError(f"{HELDOUT_KEY}.scheme must be one of {SCHEMES}, not {scheme!r}")
        if blocks is not None and file:
            raise ValueError(f"{HELDOUT_KEY}: give blocks or file, not both")
        if blocks is None:
            return cls(file=str(file) if file else None, scheme=scheme)
        if not isinstance(blocks, Mapping) or set(blocks) - {"val", "test"}:
            raise ValueError(f"{HELDOUT_KEY}.blocks must map val and test to block indices, not {blocks!r}")
        lists = {}
        for split in ("val", "test"):
            values = blocks.get(split) or []
            if not isinstance(values, list | tuple) or not all(
                isinstance(v, int) and not isinstance(v, bool) for v in values
            ):
                raise ValueError(
                    f"{HELDOUT_KEY}.blocks.{split} must be a list of block indices, not {values!r}"
                )
            lists[split] = tuple(values)
        return cls(val=lists["val"], test=lists["test"], scheme=scheme)

    @property
    def given(self) -> bool:
        return self.file is not None or self.val is not None


def block_frame(start: int, end: int, block_bp: int) -> pd.DataFrame:
    """Blocks of the region [start, end): columns block, start, end."""
    starts = np.arange(start, end, block_bp)
    return pd.DataFrame(
        {"block": np.arange(len(starts)), "start": starts, "end": np.minimum(starts + block_bp, end)}
    )


def spaced_split(n_blocks: int, fractions: list[float]) -> np.ndarray:
    """[n_blocks] split names of the fixed default: evenly spaced test and val blocks.

    With ``n_test = max(1, round(f_test * n))`` (fractions normalised to sum 1; likewise
    ``n_val``), test blocks are ``floor((j + 0.5) * n / n_test)`` for j = 0..n_test-1 and val
    blocks ``floor(j * n / n_val)``; a val block that falls on a test block moves to the next
    free block. Every other block trains. No seed: the set depends only on ``n`` and the
    fractions (E. coli's 4.64 Mb in 46 blocks of 102,400 bp at 0.7/0.15/0.15: test 3, 9, 16,
    23, 29, 36, 42; val 0, 6, 13, 19, 26, 32, 39; docs/regulon.md).
    """
    if n_blocks < 3:
        raise ValueError(
            f"{HELDOUT_KEY}: spaced held-out blocks need at least 3 blocks, the region has {n_blocks}"
        )
    f = np.asarray(fractions, dtype=float)
    if f.shape != (3,) or (f < 0).any() or f.sum() <= 0:
        raise ValueError(f"regulon.targets.split_fractions must be 3 non-negative numbers, not {fractions}")
    f = f / f.sum()
    n_test = max(1, round(f[2] * n_blocks))
    n_val = max(1, round(f[1] * n_blocks))
    if n_test + n_val >= n_blocks:
        raise ValueError(
            f"{HELDOUT_KEY}: {n_val} val + {n_test} test blocks leave no training block of {n_blocks}"
        )
    split = np.full(n_blocks, "train", dtype=object)
    for j in range(n_test):
        split[int((j + 0.5) * n_blocks / n_test)] = "test"
    for j in range(n_val):
        i = int(j * n_blocks / n_val)
        while split[i] != "train":
            i = (i + 1) % n_blocks
        split[i] = "val"
    return split.astype(str)


def given_indices(heldout: Heldout, n_blocks: int) -> GivenAssignment:
    """The split of every block from ``heldout.val``/``heldout.test`` indices (others train).

    Raises ``ValueError`` naming the config key for an index outside 0..n_blocks-1 or one
    listed twice (in one list or in both).
    """
    values: dict[str, str] = {str(b): "train" for b in range(n_blocks)}
    where: dict[int, str] = {}
    for split, indices in (("val", heldout.val or ()), ("test", heldout.test or ())):
        for i in indices:
            if not 0 <= i < n_blocks:
                raise ValueError(
                    f"{HELDOUT_KEY}.blocks.{split}: block {i} does not exist (the region has "
                    f"{n_blocks} blocks, 0..{n_blocks - 1})"
                )
            if i in where:
                raise ValueError(f"{HELDOUT_KEY}.blocks: block {i} is listed twice ({where[i]} and {split})")
            where[i] = split
            values[str(i)] = split
    return GivenAssignment("split", values, f"{HELDOUT_KEY}.blocks", "block")


def _file_rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the interval rows of a BED or headed TSV, header first when present."""
    rows = []
    with open(path) as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip() or line.startswith(_BED_META):
                continue
            rows.append((number, line.rstrip("\n\r").split("\t")))
    return rows


def _columns(
    path: Path, rows: list[tuple[int, list[str]]], column: str = "split"
) -> tuple[list[int], list[tuple[int, list[str]]]]:
    """Column positions of chrom, start, end and ``column`` (split or fold; BED order, or a
    header naming them) and the data rows."""
    first_row = rows[0][1]
    if len(first_row) >= 2 and first_row[1].strip().lstrip("-").isdigit():
        return list(range(4)), rows
    header = [c.strip().lower() for c in first_row]
    wanted = [*FILE_COLUMNS[:3], column]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise FormatError(path, f"header lacks column(s) {missing} (a header needs {wanted})", rows[0][0])
    return [header.index(c) for c in wanted], rows[1:]


def _parse_row(
    path: Path, number: int, fields: list[str], columns: list[int], column: str = "split"
) -> tuple[str, int, int, str | int]:
    if len(fields) <= max(columns):
        raise FormatError(
            path, f"expected chrom, start, end and {column}, got {len(fields)} field(s)", number
        )
    chrom, raw_start, raw_end, value = (fields[c].strip() for c in columns)
    if column == "split" and value not in SPLITS:
        raise FormatError(path, f"split {value!r} is not one of {SPLITS}", number)
    if column == "fold" and not value.isdigit():
        raise FormatError(path, f"fold {value!r} is not a fold number (0, 1, ...)", number)
    try:
        return chrom, int(raw_start), int(raw_end), int(value) if column == "fold" else value
    except ValueError:
        raise FormatError(path, f"start {raw_start!r} and end {raw_end!r} must be integers", number) from None


def read_heldout_file(
    path: str | os.PathLike, contig: str, blocks: pd.DataFrame, column: str = "split"
) -> GivenAssignment:
    """The split (or, with ``column`` "fold", the test fold) of every block from a BED/TSV of
    (chrom, start, end, split or fold) rows.

    ``blocks``: the region's blocks (:func:`block_frame`). A row must start and end on block
    boundaries inside the region (it may span several blocks); rows of other contigs are
    skipped (logged). Errors name the file and line: a row cutting a block, a block two rows
    assign, an unknown split or a fold that is no number, a malformed row. Blocks no row
    covers train; with folds every block needs a row (the error names the first without).
    """
    path = existing_file(path, "held-out blocks file")
    rows = _file_rows(path)
    if not rows:
        raise FormatError(path, "held-out blocks file has no rows")
    columns, rows = _columns(path, rows, column)
    starts = blocks["start"].to_numpy()
    ends = blocks["end"].to_numpy()
    values: dict[str, str | int] = {str(b): "train" for b in blocks["block"]}
    lines: dict[str, int] = {}
    skipped = 0
    for number, fields in rows:
        chrom, start, end, split = _parse_row(path, number, fields, columns, column)
        if chrom != contig:
            skipped += 1
            continue
        first = np.flatnonzero(starts == start)
        last = np.flatnonzero(ends == end)
        if end <= start or not len(first) or not len(last) or last[0] < first[0]:
            cut = blocks[(starts < end) & (ends > start)]
            named = ", ".join(f"{b.block} [{b.start}, {b.end})" for b in cut.head(3).itertuples())
            raise FormatError(
                path,
                f"{chrom}:{start}-{end} covers only part of block(s) {named or '(none: outside the region)'}; "
                f"rows must start and end on block boundaries (block_bp from region [{starts[0]}, {ends[-1]}))",
                number,
            )
        for b in range(int(first[0]), int(last[0]) + 1):
            if str(b) in lines:
                raise FormatError(
                    path,
                    f"block {b} is assigned twice (also on line {lines[str(b)]}); rows may not overlap",
                    number,
                )
            values[str(b)] = split
            lines[str(b)] = number
    if skipped:
        logger.warning("%s: skipped %d row(s) of contigs other than %s", path, skipped, contig)
    n_default = len(values) - len(lines)
    if n_default and column == "fold":
        b = next(int(b) for b in blocks["block"] if str(b) not in lines)
        raise FormatError(
            path,
            f"block {b} [{starts[b]}, {ends[b]}) and {n_default - 1} other block(s) have no fold; "
            "with folds every block of the region needs a row (e.g. a run's data/folds.tsv)",
        )
    if n_default:
        logger.info("%s: %d of %d blocks are covered by no row and train", path, n_default, len(values))
    return GivenAssignment(column, values, str(path), "block", lines)


def assign_blocks(
    blocks: pd.DataFrame,
    heldout: Heldout,
    fractions: list[float],
    seed: int,
    contig: str | None = None,
) -> np.ndarray:
    """[n_blocks] split names: the ``heldout`` blocks, else the fixed spaced set of
    ``fractions`` (:func:`spaced_split`), or their random draw (``scheme: random``).

    A given assignment is checked by :meth:`GivenAssignment.assign` (each split has a block).
    """
    ids = blocks["block"].to_numpy()
    if not heldout.given:
        if heldout.scheme == "random":
            return group_split(ids, fractions, seed=seed)
        split = spaced_split(len(ids), fractions)
        logger.info(
            "held-out blocks (fixed, evenly spaced): val %s, test %s",
            ids[split == "val"].tolist(),
            ids[split == "test"].tolist(),
        )
        return split
    if heldout.file is not None:
        if contig is None:
            raise ValueError(f"{HELDOUT_KEY}.file needs the contig name to match its rows")
        given = read_heldout_file(heldout.file, contig, blocks)
    else:
        given = given_indices(heldout, len(blocks))
    split = given.assign(ids, ids)
    logger.info(
        "held-out blocks given by %s: val %s, test %s",
        given.source,
        ids[split == "val"].tolist(),
        ids[split == "test"].tolist(),
    )
    return split


def write_blocks_table(blocks: pd.DataFrame, contig: str, path: str | os.PathLike) -> None:
    """The blocks and their splits as TSV (``BLOCK_COLUMNS``), readable as a held-out file."""
    table = blocks.assign(chrom=contig)[list(BLOCK_COLUMNS)]
    write_table(table, path)
    logger.info("wrote %d blocks to %s", len(table), path)


# ------------------------------------------------------------------ paired tests
# Primary metrics tested per held-out block (expression is tested per gene).
BLOCK_METRICS = ("density_r2", "operon_auroc", "operon_bp_auroc", "pair_auroc")


def block_test(model: np.ndarray, baseline: np.ndarray, blocks: np.ndarray, metric: str) -> PairedTest | None:
    """Wilcoxon signed-rank over blocks where both metrics are finite; None below 2 such blocks."""
    ok = np.isfinite(model) & np.isfinite(baseline)
    if ok.sum() < 2:
        return None
    test = wilcoxon_signed_rank(model[ok], baseline[ok])
    t = paired_t(model[ok], baseline[ok])
    test.test = f"Wilcoxon signed-rank over test blocks ({metric})"
    test.details.update(
        {
            "paired_t_p_value": t.p_value,
            "blocks": blocks[ok].tolist(),
            "model": model[ok].tolist(),
            "baseline": baseline[ok].tolist(),
            "blocks_without_metric": blocks[~ok].tolist(),
            "smallest_possible_p": 2.0 / 2 ** int(ok.sum()),
        }
    )
    return test


def gene_test(model_pred: np.ndarray, baseline_pred: np.ndarray, true: np.ndarray) -> PairedTest | None:
    """Wilcoxon signed-rank of per-gene squared errors ([n_genes] each; NaN = gene not held
    out); lower error favours a method. None below 2 genes."""
    ok = np.isfinite(model_pred) & np.isfinite(baseline_pred) & np.isfinite(true)
    if ok.sum() < 2:
        return None
    m = (model_pred[ok] - true[ok]) ** 2
    b = (baseline_pred[ok] - true[ok]) ** 2
    test = wilcoxon_signed_rank(m, b, higher_is_better=False)
    test.test = "Wilcoxon signed-rank over test genes (squared error of the gene mean)"
    test.details.update(
        {
            "model_mse": float(m.mean()),
            "baseline_mse": float(b.mean()),
            "caveat": "genes of one block are not independent (shared block, neighbours); p is optimistic",
        }
    )
    return test


def paired_tests(
    per_block: dict[str, pd.DataFrame],
    per_gene: dict[str, np.ndarray],
    true_gene: np.ndarray,
    model: str,
) -> dict[str, dict[str, PairedTest]]:
    """Paired tests of ``model`` against every other method, per comparison primary metric.

    per_block: method -> frame (block, expression_pearson and BLOCK_METRICS, those the method
    has) of the test blocks; per_gene: method -> [n_genes] mean prediction (NaN outside the test blocks);
    true_gene: [n_genes]. Returns {primary metric: {baseline: test}}; the expression test is
    per gene, with the per-block test of Pearson in its details.
    """
    out: dict[str, dict[str, PairedTest]] = {"expression_pearson": {}} | {m: {} for m in BLOCK_METRICS}
    mine = per_block[model]
    for name, frame in per_block.items():
        if name == model:
            continue
        blocks = mine["block"].to_numpy()
        for metric in BLOCK_METRICS:
            if metric not in frame:
                continue  # a method without this view (the distance rules score pairs only)
            test = block_test(mine[metric].to_numpy(float), frame[metric].to_numpy(float), blocks, metric)
            if test is not None:
                out[metric][name] = test
        if "expression_pearson" not in frame:
            continue
        test = gene_test(per_gene[model], per_gene[name], true_gene) if name in per_gene else None
        by_block = block_test(
            mine["expression_pearson"].to_numpy(float),
            frame["expression_pearson"].to_numpy(float),
            blocks,
            "Pearson",
        )
        if test is None:
            test = by_block
        elif by_block is not None:
            test.details["per_block"] = by_block.to_dict()
        if test is not None:
            out["expression_pearson"][name] = test
    return out
