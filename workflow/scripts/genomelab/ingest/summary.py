"""The ingest_sheet step: the tissue sample sheet of every converted sample, the QC
diagnostics over their conversion statistics, and the module summary."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from genomelab.diagnostics.core import FAIL, PASS, WARN, DiagnosticResult, write_results
from genomelab.ingest.sheet import IngestRecord, read_ingest_sheet, write_tissue_sheet
from genomelab.io.dropped import KEY as DROPPED_KEY
from genomelab.io.dropped import Dropped, read_dropped
from genomelab.io.metrics import read_json_file
from genomelab.report.summary import ModuleSummary, write_module_summary


def qc_diagnostics(
    stats: list[dict[str, Any]], min_region_fraction: float = 0.5, max_past_last_slot: float = 0.05
) -> list[DiagnosticResult]:
    """Checks over every sample's conversion statistics (non-blocking: ingest trains nothing)."""
    low = [s["sample"] for s in stats if s["fraction_regions_covered"] < min_region_fraction]
    overflow = [
        s["sample"]
        for s in stats
        if s["calls_in_regions"] and s["calls_past_last_slot"] / s["calls_in_regions"] > max_past_last_slot
    ]
    in_regions = [s["calls_in_regions"] / max(s["calls"], 1) for s in stats]
    return [
        DiagnosticResult(
            "region_coverage",
            WARN if low else PASS,
            f"{len(low)} of {len(stats)} samples cover < {min_region_fraction:.0%} of the regions"
            + (f": {low[:5]}" if low else ""),
            blocking=False,
            details={s["sample"]: s["fraction_regions_covered"] for s in stats},
        ),
        DiagnosticResult(
            "calls_past_last_slot",
            WARN if overflow else PASS,
            f"{len(overflow)} samples lose > {max_past_last_slot:.0%} of their in-region calls because "
            "regions hold more CpGs than n_positions" + (f": {overflow[:5]}" if overflow else ""),
            blocking=False,
        ),
        DiagnosticResult(
            "calls_in_regions",
            FAIL if min(in_regions) == 0 else PASS,
            f"fraction of input calls inside regions: min {min(in_regions):.3g}, max {max(in_regions):.3g}",
            blocking=False,
        ),
    ]


def collect(
    records: list[IngestRecord],
    npz: list[str],
    qc: list[str],
    out_sheet: str | os.PathLike,
    summary_json: str | os.PathLike,
    summary_md: str | os.PathLike,
    diagnostics_json: str | os.PathLike,
) -> None:
    """Write the tissue sample sheet, the diagnostics and the module summary."""
    by_sample = {Path(p).stem: p for p in npz}
    missing = [r.sample for r in records if r.sample not in by_sample]
    if missing:
        raise ValueError(f"no NPZ for sample(s) {missing[:5]} among the inputs")
    write_tissue_sheet(records, [by_sample[r.sample] for r in records], out_sheet)
    stats = [read_json_file(p, "ingest QC file") for p in qc]
    diags = qc_diagnostics(stats)
    write_results(diagnostics_json, "ingest", diags)
    formats = sorted({s["format"] for s in stats})
    out_dir = Path(summary_json).parent
    notes = [
        f"{len(records)} samples ({', '.join(formats)}) converted into {stats[0]['n_regions']} regions x "
        f"{stats[0]['n_positions']} slots; sample sheet {os.path.relpath(out_sheet, out_dir)}",
        "mean fraction of regions covered: "
        f"{sum(s['fraction_regions_covered'] for s in stats) / len(stats):.3f}; "
        f"median per-region coverage across samples: {sorted(s['median_coverage'] for s in stats)[len(stats) // 2]:g}",
        f"Feed the tissue module with tissue.input.source: sheet and tissue.input.sheet: {os.fspath(out_sheet)}",
        "Ingest trains no model, so this summary has no model/baseline comparison.",
    ]
    summary = ModuleSummary(
        "ingest",
        "Ingest: methylation files into region arrays",
        [],
        [{"name": d.name, "status": d.status, "message": d.message} for d in diags],
        [],
        notes,
        merged_dropped(stats, qc),
    )
    write_module_summary(summary, summary_json, summary_md)


def merged_dropped(stats: list[dict[str, Any]], qc: list[str]) -> list[Dropped]:
    """The samples' dropped-record entries, each once (array samples share one probe table)."""
    out: list[Dropped] = []
    for s, path in zip(stats, qc, strict=True):
        out += [d for d in read_dropped(s.get(DROPPED_KEY, []), path) if d not in out]
    return out


def collect_sheet(
    sheet: str | os.PathLike,
    genome_build: str,
    npz: list[str],
    qc: list[str],
    out_sheet: str | os.PathLike,
    summary_json: str | os.PathLike,
    summary_md: str | os.PathLike,
    diagnostics_json: str | os.PathLike,
) -> None:
    """:func:`collect` for the samples of the ingest sheet ``sheet``."""
    records = read_ingest_sheet(sheet, genome_build)
    collect(records, npz, qc, out_sheet, summary_json, summary_md, diagnostics_json)
