"""The run-level summary: all modules in one table, details per module below."""

from __future__ import annotations

import json
import os
from pathlib import Path

from genomelab.io.atomic import atomic_write_json, atomic_write_text
from genomelab.report.summary import read_module_summary


def write_run_summary(
    summary_paths: list[str | os.PathLike],
    versions_path: str | os.PathLike,
    md_path: str | os.PathLike,
    json_path: str | os.PathLike,
) -> None:
    """Combine module ``summary.json`` files into ``summary.md`` and ``summary.json``.

    Plot paths in module summaries are relative to the results folder; they are rewritten
    relative to the run summary so the Markdown renders with its images.
    """
    md_dir = Path(md_path).parent
    versions = json.loads(Path(versions_path).read_text())
    summaries = [read_module_summary(p) for p in summary_paths]
    lines = [
        "# genomelab run summary",
        "",
        f"genomelab {versions['genomelab']}, git commit {versions.get('git_commit') or 'unknown'}, "
        f"torch {versions['packages'].get('torch')}, GPUs: {', '.join(versions.get('gpus') or []) or 'none'}.",
        "",
        "| module | comparison | split | verdict | diagnostics (pass/warn/fail) |",
        "|---|---|---|---|---|",
    ]
    rows = []
    for path, s in zip(summary_paths, summaries, strict=True):
        counts = {k: sum(d["status"] == k for d in s.diagnostics) for k in ("pass", "warn", "fail")}
        diag = f"{counts['pass']}/{counts['warn']}/{counts['fail']}"
        for c in s.comparisons or [None]:
            verdict = c.verdict() if c else "no comparison"
            lines.append(
                f"| [{s.module}](#{s.module}) | {c.title if c else '–'} | {c.split if c else '–'} "
                f"| {verdict} | {diag} |"
            )
            rows.append(
                {
                    "module": s.module,
                    "comparison": c.title if c else None,
                    "verdict": verdict,
                    "diagnostics": counts,
                    "summary": str(path),
                }
            )
    lines.append("")
    for path, s in zip(summary_paths, summaries, strict=True):
        base = Path(path).parent
        s.plots = [os.path.relpath(base / p, md_dir) for p in s.plots]
        lines += [f'<a id="{s.module}"></a>', "", s.to_markdown()]
    atomic_write_text(md_path, "\n".join(lines))
    atomic_write_json(json_path, {"versions": versions, "modules": rows})
