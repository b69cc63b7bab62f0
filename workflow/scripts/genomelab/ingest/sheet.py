"""The ingest sample sheet (the user's files) and the tissue sample sheet it produces.

Ingest sheet (TSV, header required): ``sample``, ``path``, ``tissue`` and optionally
``format`` (empty or ``auto``: from the extension), ``subtype``, ``source_sample``,
``column`` (array matrices: the sample's column, default the sample name), ``probes``
(array matrices: a probe table overriding ``ingest.probes``) and ``build`` (the genome build
the file was made with; it must equal ``ingest.genome_build``). Relative paths are relative
to the sheet's folder.

Tissue sheet (written): ``sample``, ``file``, ``tissue``, ``subtype``, ``source_sample``, the
format ``genomelab.io.methylation.read_sample_sheet`` reads.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

from genomelab.ingest.formats import detect_format
from genomelab.io.atomic import atomic_output

REQUIRED = ("sample", "path", "tissue")
OPTIONAL = ("format", "subtype", "source_sample", "column", "probes", "build")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
TISSUE_COLUMNS = ("sample", "file", "tissue", "subtype", "source_sample")


@dataclass(frozen=True)
class IngestRecord:
    """One row of the ingest sheet (paths resolved against the sheet's folder)."""

    sample: str
    path: Path
    format: str
    tissue: str
    subtype: str = ""
    source_sample: str = ""
    column: str = ""
    probes: Path | None = None
    build: str = ""


def _resolve(base: Path, value: str) -> Path:
    p = Path(value)
    return p if p.is_absolute() else base / p


def read_ingest_sheet(
    path: str | os.PathLike, genome_build: str | None = None, check_files: bool = True
) -> list[IngestRecord]:
    """Read and validate the ingest sheet; errors name the sheet and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ingest sample sheet {path} does not exist")
    with open(path, newline="") as fh:
        reader = csv.DictReader((line for line in fh if not line.startswith("#")), delimiter="\t")
        columns = reader.fieldnames or []
        missing = [c for c in REQUIRED if c not in columns]
        if missing:
            raise ValueError(
                f"ingest sample sheet {path} lacks column(s) {missing}; it has {columns} "
                "(tab-separated, header required)"
            )
        unknown = [c for c in columns if c not in REQUIRED + OPTIONAL]
        if unknown:
            raise ValueError(
                f"ingest sample sheet {path}: unknown column(s) {unknown}; allowed: "
                f"{list(REQUIRED + OPTIONAL)}"
            )
        records: list[IngestRecord] = []
        seen: set[str] = set()
        for line_no, row in enumerate(reader, start=2):
            v = {k: (row.get(k) or "").strip() for k in REQUIRED + OPTIONAL}
            where = f"ingest sample sheet {path}, line {line_no}"
            for col in REQUIRED:
                if not v[col]:
                    raise ValueError(f"{where}: empty {col!r}")
            if not NAME_RE.match(v["sample"]):
                raise ValueError(
                    f"{where}: sample name {v['sample']!r} may only contain letters, digits and "
                    "_ . + - (it becomes a file name)"
                )
            if v["sample"] in seen:
                raise ValueError(f"{where}: duplicate sample {v['sample']!r}")
            seen.add(v["sample"])
            file = _resolve(path.parent, v["path"])
            if check_files and not file.is_file():
                raise FileNotFoundError(f"{where}: file {file} of sample {v['sample']!r} does not exist")
            try:
                fmt = detect_format(file, v["format"])
            except ValueError as exc:
                raise ValueError(f"{where}: {exc}") from None
            if v["build"] and genome_build and v["build"] != genome_build:
                raise ValueError(
                    f"{where}: sample {v['sample']!r} was made on genome build {v['build']!r} but "
                    f"ingest.genome_build is {genome_build!r}; mixed builds cannot share one region "
                    "set (lift the file over first)"
                )
            probes = _resolve(path.parent, v["probes"]) if v["probes"] else None
            records.append(
                IngestRecord(
                    v["sample"],
                    file,
                    fmt,
                    v["tissue"],
                    v["subtype"],
                    v["source_sample"] or v["sample"],
                    v["column"],
                    probes,
                    v["build"],
                )
            )
    if not records:
        raise ValueError(f"ingest sample sheet {path} lists no samples")
    return records


def write_tissue_sheet(
    records: list[IngestRecord], npz_paths: list[str | os.PathLike], out: str | os.PathLike
) -> Path:
    """Write the tissue module's sample sheet; ``file`` is relative to the sheet's folder."""
    out = Path(out)
    if len(records) != len(npz_paths):
        raise ValueError(f"{len(records)} samples but {len(npz_paths)} NPZ files")
    with atomic_output(out) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(TISSUE_COLUMNS), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        for rec, npz in zip(records, npz_paths, strict=True):
            rel = os.path.relpath(Path(npz).resolve(), out.parent.resolve())
            writer.writerow(
                {
                    "sample": rec.sample,
                    "file": rel,
                    "tissue": rec.tissue,
                    "subtype": rec.subtype,
                    "source_sample": rec.source_sample,
                }
            )
    return out


NEEDS_INDEX = ("wgbs_pat", "wgbs_beta")


def workflow_records(section: dict) -> dict[str, IngestRecord]:
    """The ingest sheet of an ``ingest`` config section, checked at parse time: sheet and
    regions given, a CpG index where a format or ``slots: cpg`` needs one, probes for arrays."""
    for key in ("samples", "regions"):
        if not section[key]:
            raise ValueError(
                f"ingest.enabled is true but ingest.{key} is empty; see config/README.md (ingest)"
            )
    records = read_ingest_sheet(section["samples"], section["genome_build"])
    for rec in records:
        if (rec.format in NEEDS_INDEX or section["slots"] == "cpg") and not section["cpg_index"]:
            raise ValueError(
                f"ingest sample {rec.sample} ({rec.format}, slots {section['slots']}) needs ingest.cpg_index "
                "(a wgbstools CpG.bed.gz)"
            )
        if rec.format == "array" and not (rec.probes or section["probes"]):
            raise ValueError(
                f"ingest sample {rec.sample} is an array matrix: set ingest.probes or the 'probes' column of "
                "the ingest sample sheet"
            )
    return {rec.sample: rec for rec in records}


def sample_inputs(rec: IngestRecord, section: dict, index_npz: str) -> dict[str, str]:
    """Input files of one sample's ingest job (Snakemake ``unpack``)."""
    inputs = {"data": str(rec.path), "regions": section["regions"]}
    if rec.format in NEEDS_INDEX or section["slots"] == "cpg":
        inputs["cpg_index"] = index_npz
    if rec.format == "array":
        inputs["probes"] = str(rec.probes or section["probes"])
    return inputs


def check_tissue_input(section: dict, tissue_input: dict, ingest_sheet: str) -> None:
    """When the tissue module reads the ingest output, its slot count must match ingest's."""
    if os.path.normpath(tissue_input.get("sheet") or "") != os.path.normpath(ingest_sheet):
        return
    if int(tissue_input.get("n_positions", section["n_positions"])) != int(section["n_positions"]):
        raise ValueError(
            f"tissue.input.sheet reads {ingest_sheet} but tissue.input.n_positions "
            f"({tissue_input['n_positions']}) differs from ingest.n_positions ({section['n_positions']})"
        )
