"""Snakemake-facing steps of the ingest module: unpack ``smk`` and call typed functions."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from genomelab.config import param
from genomelab.diagnostics.core import FAIL, PASS, WARN, DiagnosticResult, write_results
from genomelab.ingest.builds import genome_build
from genomelab.ingest.convert import IngestConfig, convert_sample
from genomelab.ingest.cpg_index import CpgIndex, build_cpg_index
from genomelab.ingest.formats import read_probe_table
from genomelab.ingest.regions import Regions, read_regions
from genomelab.ingest.sheet import IngestRecord, read_ingest_sheet, write_tissue_sheet
from genomelab.io.atomic import atomic_write_json
from genomelab.io.dropped import KEY as DROPPED_KEY
from genomelab.io.dropped import Dropped, dropped_to_json, read_dropped
from genomelab.io.metrics import read_json_file
from genomelab.report.summary import ModuleSummary, write_module_summary

logger = logging.getLogger(__name__)


def load_regions(section: dict[str, Any], path: str | os.PathLike) -> Regions:
    build = genome_build(section["genome_build"], section.get("chrom_sizes") or None)
    return read_regions(path, build, int(section["n_positions"]))


def cpg_index_step(smk: Any) -> None:
    section = param(smk, "ingest")
    regions = load_regions(section, smk.input.regions)
    index = build_cpg_index(smk.input.index, regions, int(section["chunk_lines"]))
    index.save(smk.output.npz)
    logger.info(
        "CpG index %s: %d CpGs genome-wide, %d inside %d regions",
        smk.input.index,
        index.n_cpgs,
        len(index.idx),
        regions.n_regions,
    )


def sample_step(smk: Any) -> None:
    section = param(smk, "ingest")
    cfg = IngestConfig.from_dict(section)
    regions = load_regions(section, smk.input.regions)
    index = CpgIndex.load(smk.input.cpg_index) if "cpg_index" in smk.input.keys() else None
    dropped: list[Dropped] = []
    probes = (
        read_probe_table(smk.input.probes, int(section["probe_pos_base"]), dropped)
        if "probes" in smk.input.keys()
        else None
    )
    stats = convert_sample(
        smk.input.data,
        smk.params.format,
        smk.wildcards.sample,
        regions,
        cfg,
        smk.output.npz,
        index=index,
        probes=probes,
        column=smk.params.column,
        seed=int(smk.params.seed),
    )
    atomic_write_json(smk.output.qc, stats | ({DROPPED_KEY: dropped_to_json(dropped)} if dropped else {}))


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
        f"Feed the tissue module with tissue.input.source: sheet and tissue.input.sheet: {out_sheet}",
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


def sheet_step(smk: Any) -> None:
    section = param(smk, "ingest")
    records = read_ingest_sheet(smk.input.sheet, section["genome_build"])
    collect(
        records,
        list(smk.input.npz),
        list(smk.input.qc),
        smk.output.sheet,
        smk.output.summary,
        smk.output.md,
        smk.output.diagnostics,
    )
