"""The contract between modules and the report: one ``summary.json`` per module.

A module summary says what ran, how each model compares with its baselines on the same
split, and what the diagnostics found. The run-level report only reads these files, so it
needs no knowledge of any module.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from genomelab.io.atomic import atomic_write_json, atomic_write_text
from genomelab.io.dropped import Dropped, read_dropped
from genomelab.io.errors import FormatError
from genomelab.io.metrics import read_json_file
from genomelab.report.stats import ALPHA, PairedTest

# Fewest folds whose paired t-test may decide a verdict (K - 1 degrees of freedom).
MIN_T_FOLDS = 3


def pair_key(model: str, baseline: str) -> str:
    """Key of a model-vs-baseline paired test in ``Comparison.tests``."""
    return f"{model} vs {baseline}"


@dataclass
class Comparison:
    """Models and baselines evaluated on one split, or on the test splits of K folds.

    ``rows`` maps a method name ("logistic regression", "file-level MLP") to its metrics
    (with folds: their means over folds, and ``spread`` their standard deviations); ``kind``
    of each method is "model" or "baseline" (in ``kinds``); ``primary`` is the metric the
    verdict is based on. ``tests`` holds paired tests (:class:`genomelab.report.stats.PairedTest`
    as dicts) keyed by :func:`pair_key`; without one for the pair the verdict compares, it
    cannot say "beats".
    """

    title: str
    split: str
    primary: str
    higher_is_better: bool
    rows: dict[str, dict[str, float]]
    kinds: dict[str, str] = field(default_factory=dict)
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    spread: dict[str, dict[str, float]] = field(default_factory=dict)
    folds: int = 1

    def outcome(self) -> dict[str, Any] | None:
        """The verdict as data: ``word`` ("beats", "ties with" or "does NOT beat"), the best
        model and baseline on ``primary`` with their values, ``why`` (the test or its absence)
        and ``p`` (None without a paired test); None without a model/baseline pair.

        "beats" needs the paired test of the two to favour the model with p < ``ALPHA`` (and
        the model to be ahead on ``primary``); a test favouring the baseline so gives "does
        NOT beat"; anything else is a tie, the reason in ``why``. A paired t-test across
        fewer than ``MIN_T_FOLDS`` folds decides nothing (a tie, said why). Without a paired test a
        model ahead "ties" and one behind "does NOT beat".
        """
        models = {k: v for k, v in self.rows.items() if self.kinds.get(k, "model") == "model"}
        baselines = {k: v for k, v in self.rows.items() if self.kinds.get(k) == "baseline"}
        if not models or not baselines:
            return None
        sign = 1 if self.higher_is_better else -1
        best_m = max(models, key=lambda k: sign * models[k].get(self.primary, float("nan")))
        best_b = max(baselines, key=lambda k: sign * baselines[k].get(self.primary, float("nan")))
        m, b = models[best_m][self.primary], baselines[best_b][self.primary]
        ahead = sign * (m - b)
        found = self.tests.get(pair_key(best_m, best_b))
        p = None
        if found is None:
            word = "does NOT beat" if ahead < 0 else "ties with"
            why = "no paired test" + (f"; ahead by {abs(m - b):.2g}" if ahead > 0 else "")
        else:
            test = PairedTest.from_dict(found)
            why, p = test.describe(), test.p_value
            if test.test == "paired t-test" and test.n < MIN_T_FOLDS:
                # One degree of freedom: the spread of the difference is guessed from two
                # values, and a tiny lead held in both folds comes out "significant" (a
                # first-time user's 2-fold run called a 0.0005 AUROC lead "beats", p = 0.043).
                word = "ties with"
                why += f"; {test.n} folds are too few to call (a paired t-test needs {MIN_T_FOLDS} or more)"
            elif test.significant() and test.favours == "model" and ahead > 0:
                word = "beats"
            elif test.significant() and test.favours == "baseline" and ahead < 0:
                word, why = "does NOT beat", f"the baseline is better, {why}"
            else:
                word = "ties with"
                why += (
                    f"; not significant at {ALPHA}"
                    if not test.significant()
                    else "; test and metric disagree"
                )
        return {
            "word": word,
            "model": best_m,
            "model_value": m,
            "baseline": best_b,
            "baseline_value": b,
            "why": why,
            "p": p,
        }

    def verdict(self) -> str:
        """One sentence: does the best model beat the best baseline on ``primary``?
        (:meth:`outcome` says how it is decided.)"""
        o = self.outcome()
        if o is None:
            return "no model/baseline pair to compare"
        where = (
            f"the {self.split} split"
            if self.folds <= 1
            else f"{self.folds} folds' {self.split} splits (mean)"
        )
        return (
            f"{o['model']} ({self.primary} {o['model_value']:.4g}) {o['word']} {o['baseline']} "
            f"({o['baseline_value']:.4g}) on {where} ({o['why']})"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form; ``tests``, ``spread`` and ``folds`` only where set (single-split
        summaries without tests keep their keys)."""
        data = asdict(self)
        for key, empty in (("tests", {}), ("spread", {}), ("folds", 1)):
            if data[key] == empty:
                del data[key]
        return data


@dataclass
class ModuleSummary:
    """``dropped``: records the module's steps left out, one entry per step and reason
    (``genomelab.io.dropped``), so that no record disappears without a count in the report."""

    module: str
    title: str
    comparisons: list[Comparison] = field(default_factory=list)
    diagnostics: list[dict[str, Any]] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    dropped: list[Dropped] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["comparisons"] = [c.to_dict() for c in self.comparisons]
        for comp, obj in zip(data["comparisons"], self.comparisons, strict=True):
            comp["verdict"] = obj.verdict()
        return data

    def to_markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        for comp in self.comparisons:
            metrics = sorted({m for row in comp.rows.values() for m in row})
            lines += [
                f"### {comp.title} ({comp.split} split)"
                if comp.folds <= 1
                else f"### {comp.title} ({comp.split} splits of {comp.folds} folds)",
                "",
                "| method | kind | " + " | ".join(metrics) + " |",
                "|---|---|" + "---|" * len(metrics),
            ]
            for name, row in comp.rows.items():
                sd = comp.spread.get(name, {})
                cells = [_fmt(row.get(m)) + (f" ± {_fmt(sd[m])}" if m in sd else "") for m in metrics]
                lines.append(f"| {name} | {comp.kinds.get(name, 'model')} | " + " | ".join(cells) + " |")
            if comp.folds > 1:
                lines += ["", f"Mean ± SD over {comp.folds} folds."]
            if comp.tests:
                lines += ["", "| pair | test | n | p | favours |", "|---|---|---|---|---|"]
                for pair, t in comp.tests.items():
                    lines.append(f"| {pair} | {t['test']} | {t['n']} | {t['p_value']:.3g} | {t['favours']} |")
                # A Wilcoxon test's side is its larger signed-rank sum, which can disagree with
                # the means (many small per-link gains against a few large losses).
                lines += [
                    "",
                    "favours: the side the test's statistic leans to whatever p (McNemar: more samples "
                    "right only by it; Wilcoxon: the larger signed-rank sum, which can differ from the "
                    "side with the higher mean); the verdict also needs the mean ahead.",
                ]
            lines += ["", f"Verdict: {comp.verdict()}", ""]
        if self.diagnostics:
            lines += ["### Diagnostics", "", "| check | status | message |", "|---|---|---|"]
            for d in self.diagnostics:
                lines.append(f"| {d['name']} | {d['status'].upper()} | {d['message']} |")
            lines.append("")
        for plot in self.plots:
            lines.append(f"![{Path(plot).stem}]({plot})")
        if self.plots:
            lines.append("")
        if self.dropped:
            lines += [
                "### Dropped records",
                "",
                "| step | records | reason | count | first IDs |",
                "|---|---|---|---|---|",
            ]
            for e in self.dropped:
                lines.append(f"| {e.step} | {e.what} | {e.reason} | {e.count} | {', '.join(e.examples)} |")
            lines.append("")
        lines += [f"- {n}" for n in self.notes]
        return "\n".join(lines).rstrip() + "\n"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def write_module_summary(
    summary: ModuleSummary, json_path: str | os.PathLike, md_path: str | os.PathLike | None = None
) -> None:
    atomic_write_json(json_path, summary.to_dict())
    if md_path is not None:
        atomic_write_text(md_path, summary.to_markdown())


def read_module_summary(path: str | os.PathLike) -> ModuleSummary:
    data = read_json_file(path, "module summary")
    missing = [k for k in ("module", "title") if k not in data]
    if missing:
        raise FormatError(path, f"module summary lacks key(s) {missing}")
    fields = ("title", "split", "primary", "higher_is_better", "rows", "kinds", "tests", "spread", "folds")
    comps = [Comparison(**{k: c[k] for k in fields if k in c}) for c in data.get("comparisons", [])]
    return ModuleSummary(
        data["module"],
        data["title"],
        comps,
        data.get("diagnostics", []),
        data.get("plots", []),
        data.get("notes", []),
        read_dropped(data.get("dropped", []), path),
    )
