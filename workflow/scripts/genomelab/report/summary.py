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


@dataclass
class Comparison:
    """Models and baselines evaluated on one split.

    ``rows`` maps a method name ("logistic regression", "file-level MLP") to its metrics;
    ``kind`` of each method is "model" or "baseline" (in ``kinds``); ``primary`` is the metric
    the verdict is based on.
    """

    title: str
    split: str
    primary: str
    higher_is_better: bool
    rows: dict[str, dict[str, float]]
    kinds: dict[str, str] = field(default_factory=dict)

    def verdict(self) -> str:
        """One sentence: does the best model beat the best baseline on ``primary``?"""
        models = {k: v for k, v in self.rows.items() if self.kinds.get(k, "model") == "model"}
        baselines = {k: v for k, v in self.rows.items() if self.kinds.get(k) == "baseline"}
        if not models or not baselines:
            return "no model/baseline pair to compare"
        sign = 1 if self.higher_is_better else -1
        best_m = max(models, key=lambda k: sign * models[k].get(self.primary, float("nan")))
        best_b = max(baselines, key=lambda k: sign * baselines[k].get(self.primary, float("nan")))
        m, b = models[best_m][self.primary], baselines[best_b][self.primary]
        if sign * (m - b) > 0:
            word = "beats"
        elif m == b:
            word = "ties with"
        else:
            word = "does NOT beat"
        return f"{best_m} ({self.primary} {m:.4g}) {word} {best_b} ({b:.4g}) on the {self.split} split"


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
        for comp, obj in zip(data["comparisons"], self.comparisons, strict=True):
            comp["verdict"] = obj.verdict()
        return data

    def to_markdown(self) -> str:
        lines = [f"## {self.title}", ""]
        for comp in self.comparisons:
            metrics = sorted({m for row in comp.rows.values() for m in row})
            lines += [
                f"### {comp.title} ({comp.split} split)",
                "",
                "| method | kind | " + " | ".join(metrics) + " |",
                "|---|---|" + "---|" * len(metrics),
            ]
            for name, row in comp.rows.items():
                cells = [_fmt(row.get(m)) for m in metrics]
                lines.append(f"| {name} | {comp.kinds.get(name, 'model')} | " + " | ".join(cells) + " |")
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
    comps = [
        Comparison(**{k: c[k] for k in ("title", "split", "primary", "higher_is_better", "rows", "kinds")})
        for c in data.get("comparisons", [])
    ]
    return ModuleSummary(
        data["module"],
        data["title"],
        comps,
        data.get("diagnostics", []),
        data.get("plots", []),
        data.get("notes", []),
        read_dropped(data.get("dropped", []), path),
    )
