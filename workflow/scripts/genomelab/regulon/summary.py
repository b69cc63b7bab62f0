"""The regulon summary over K folds (``regulon.evaluation.folds`` > 1).

Each fold's ``regulon_evaluate`` job writes that fold's module summary (model and baselines
on the fold's test blocks, one comparison per head). This step reads them, never the
tracks, so it follows whatever comparisons the evaluation makes: for every comparison and
method it reports the mean and the standard deviation over folds of every metric, and for
every model x baseline pair a paired t-test across folds of the comparison's primary metric
(each fold one pair; the Wilcoxon signed-rank test beside it in ``details``). The verdict
says "beats" only when that test favours the model with p < 0.05. With K folds the t-test
has K - 1 degrees of freedom and fold metrics are not independent (training parts overlap),
so it is a weak test; the signed-rank test cannot reach p < 0.05 below six folds.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from genomelab.io.atomic import atomic_output
from genomelab.report.stats import mean_sd, paired_t, wilcoxon_signed_rank
from genomelab.report.summary import (
    Comparison,
    ModuleSummary,
    pair_key,
    read_module_summary,
    write_module_summary,
)

logger = logging.getLogger(__name__)

TABLE_COLUMNS = ("comparison", "method", "kind", "fold", "metric", "value")


def _value(row: dict[str, Any], metric: str) -> float:
    v = row.get(metric)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else math.nan


def fold_values(comps: Sequence[Comparison], method: str, metric: str) -> np.ndarray:
    """[K] ``metric`` of ``method`` in each fold's comparison (NaN where undefined)."""
    return np.asarray([_value(c.rows.get(method, {}), metric) for c in comps], dtype=float)


def fold_test(model: np.ndarray, baseline: np.ndarray, higher_is_better: bool) -> dict[str, Any] | None:
    """Paired t-test across the folds where both [K] values are finite, the Wilcoxon
    signed-rank test and the per-fold values in its details; None below 2 such folds."""
    ok = np.isfinite(model) & np.isfinite(baseline)
    if ok.sum() < 2:
        return None
    test = paired_t(model[ok], baseline[ok], higher_is_better)
    test.test = "paired t-test across folds"
    test.details.update(
        {
            "wilcoxon": wilcoxon_signed_rank(model[ok], baseline[ok], higher_is_better).to_dict(),
            "folds": np.flatnonzero(ok).tolist(),
            "model": model[ok].tolist(),
            "baseline": baseline[ok].tolist(),
        }
    )
    return test.to_dict()


def _block_values(test: dict[str, Any] | None) -> tuple[list, list, list] | None:
    """(blocks, model, baseline) per test block of a fold's paired test (the expression test
    is per gene and keeps its per-block test in ``details.per_block``); None without them."""
    if not test:
        return None
    details = test.get("details", {})
    details = details.get("per_block", {}).get("details", details)
    if not all(isinstance(details.get(k), list) for k in ("blocks", "model", "baseline")):
        return None
    return details["blocks"], details["model"], details["baseline"]


def pooled_block_test(
    comps: Sequence[Comparison], model: str, baseline: str, higher_is_better: bool
) -> dict[str, Any] | None:
    """Wilcoxon signed-rank over the test blocks of all folds pooled (each block once, scored
    by the fold model that did not train on it), from the folds' own per-block tests; None
    when a fold has no such test for the pair."""
    found = [_block_values(c.tests.get(pair_key(model, baseline))) for c in comps]
    if any(f is None for f in found):
        return None
    blocks = [b for f in found for b in f[0]]
    m = np.asarray([v for f in found for v in f[1]], dtype=float)
    b = np.asarray([v for f in found for v in f[2]], dtype=float)
    if len(blocks) < 2 or len(set(blocks)) != len(blocks):
        return None
    test = wilcoxon_signed_rank(m, b, higher_is_better)
    test.test = "Wilcoxon signed-rank over the test blocks of all folds"
    test.details["blocks"] = blocks
    return test.to_dict()


def combine(comps: Sequence[Comparison]) -> tuple[Comparison, dict[str, dict[str, list[float]]]]:
    """One comparison ([K] folds' of the same head) -> mean +- SD and paired tests over folds,
    and per method, per metric, the K fold values (for the table)."""
    first = comps[0]
    k = len(comps)
    methods = [m for m in first.rows if all(m in c.rows for c in comps)]
    metrics = list(dict.fromkeys(key for m in methods for key in first.rows[m]))
    rows, spread, values = {}, {}, {}
    for method in methods:
        values[method] = {key: fold_values(comps, method, key).tolist() for key in metrics}
        rows[method], spread[method] = {}, {}
        for key, v in values[method].items():
            finite = [x for x in v if math.isfinite(x)]
            if finite:
                rows[method][key], spread[method][key] = mean_sd(finite)
    kinds = {m: first.kinds.get(m, "model") for m in methods}
    tests = {}
    for model in (m for m in methods if kinds[m] == "model"):
        for baseline in (m for m in methods if kinds[m] == "baseline"):
            test = fold_test(
                fold_values(comps, model, first.primary),
                fold_values(comps, baseline, first.primary),
                first.higher_is_better,
            )
            if test is not None:
                pooled = pooled_block_test(comps, model, baseline, first.higher_is_better)
                if pooled is not None:
                    test["details"]["pooled_blocks"] = pooled
                tests[pair_key(model, baseline)] = test
    comp = Comparison(
        first.title, first.split, first.primary, first.higher_is_better, rows, kinds, tests, spread, k
    )
    return comp, values


def write_fold_table(path: str | os.PathLike, tables: list[tuple[Comparison, dict]]) -> None:
    """``comparison.tsv``, long format (``TABLE_COLUMNS``): every fold of every method and
    metric, then its mean and SD."""
    with atomic_output(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(TABLE_COLUMNS)
        for comp, values in tables:
            for method, per_metric in values.items():
                kind = comp.kinds[method]
                for metric, folds in per_metric.items():
                    for fold, v in enumerate(folds):
                        writer.writerow([comp.title, method, kind, fold, metric, f"{v:.6g}"])
                    for label, table in (("mean", comp.rows), ("sd", comp.spread)):
                        v = table[method].get(metric, math.nan)
                        writer.writerow([comp.title, method, kind, label, metric, f"{v:.6g}"])


def _fold_blocks(folds_tsv: str | os.PathLike) -> dict[int, list[int]]:
    with open(folds_tsv, newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    out: dict[int, list[int]] = {}
    for r in rows:
        out.setdefault(int(r["fold"]), []).append(int(r["block"]))
    return dict(sorted(out.items()))


def summarise_folds(
    fold_summaries: Sequence[str | os.PathLike],
    folds_tsv: str | os.PathLike,
    summary_json: str | os.PathLike,
    summary_md: str | os.PathLike,
    table_tsv: str | os.PathLike,
    scheme: str = "spaced",
) -> ModuleSummary:
    """The module summary of K folds from the folds' summaries ([K], fold order) and the
    folds table; writes ``summary_json``, ``summary_md`` and ``table_tsv``."""
    k = len(fold_summaries)
    if k < 2:
        raise ValueError(f"a summary over folds needs at least 2 fold summaries, not {k}")
    folds = [read_module_summary(p) for p in fold_summaries]
    titles = [c.title for c in folds[0].comparisons]
    by_title = []
    for title in titles:
        comps = []
        for path, s in zip(fold_summaries, folds, strict=True):
            found = [c for c in s.comparisons if c.title == title]
            if not found:
                raise ValueError(f"{path} lacks the comparison {title!r} that fold 0 has; rerun that fold")
            comps.append(found[0])
        by_title.append(combine(comps))
    write_fold_table(table_tsv, by_title)
    blocks = _fold_blocks(folds_tsv)
    how = (
        "given by heldout.file"
        if scheme == "given"
        else "block i in fold i mod K"
        if scheme == "spaced"
        else "dealt after a shuffle with the seed"
    )
    notes = [
        f"{k}-fold cross-validation over genome blocks ({how}; folds in data/folds.tsv): every block "
        f"is a test block once; test blocks per fold: "
        + "; ".join(f"fold {f}: {b}" for f, b in blocks.items())
        + ". Rows are means over folds (± SD); every fold's own summary is folds/<k>/summary.md.",
        f"Paired tests: a paired t-test across the {k} folds of each comparison's primary metric "
        "(Wilcoxon signed-rank beside it in details; below six folds it cannot reach p < 0.05); fold "
        "metrics are not independent (training blocks overlap), so a tie here is no evidence of no "
        "difference. Where every fold tested the pair per block, details.pooled_blocks holds the "
        "Wilcoxon signed-rank test over all folds' test blocks pooled (each block once, out of fold).",
    ]
    notes += _pooled_notes([comp for comp, _ in by_title])
    # Fold 0's own held-out note names its blocks as "given" (each fold's targets record them
    # so); the first note above says where they came from.
    notes += [f"Fold 0: {n}" for n in folds[0].notes if not n.startswith("Held-out ")]
    summary = ModuleSummary(
        folds[0].module,
        folds[0].title,
        [comp for comp, _ in by_title],
        folds[0].diagnostics,
        [f"folds/0/{p}" for p in folds[0].plots],
        notes,
        folds[0].dropped,
    )
    write_module_summary(summary, summary_json, summary_md)
    for comp, _ in by_title:
        logger.info("%s: %s", comp.title, comp.verdict())
    return summary


def _pooled_notes(comps: Sequence[Comparison]) -> list[str]:
    """One note per comparison whose verdict pair has a pooled per-block test."""
    notes = []
    for comp in comps:
        o = comp.outcome()
        test = comp.tests.get(pair_key(o["model"], o["baseline"])) if o else None
        pooled = (test or {}).get("details", {}).get("pooled_blocks")
        if pooled:
            notes.append(
                f"{comp.title}: {o['model']} vs {o['baseline']} over all {pooled['n']} test blocks pooled "
                f"(out of fold): Wilcoxon p = {pooled['p_value']:.2g}, favours {pooled['favours']}."
            )
    return notes
