"""The ingest sample sheet (the user's files) and the tissue sample sheet it produces.

Ingest sheet (TSV, header required): ``sample``, ``path`` and optionally ``tissue`` (the
label a module trains on; new samples to predict have none: :func:`check_labels` refuses
unlabelled rows only where a module trains on the sheet), ``format`` (empty or ``auto``: from the extension), ``subtype``, ``source_sample``,
``column`` (array matrices: the sample's column, default the sample name), ``probes``
(array matrices: a probe table overriding ``ingest.probes``) and ``build`` (the genome build
the file was made with; it must equal ``ingest.genome_build``). Relative paths are relative
to the sheet's folder.

Tissue sheet (written): ``sample``, ``file``, ``tissue``, ``subtype``, ``source_sample``, the
format of ``genomelab.io.sheets`` (``read_sample_sheet``, ``write_sample_sheet``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from genomelab.ingest.formats import BEDMETHYL, BISMARK_COV, CPG_REPORT, PAT, detect_format
from genomelab.ingest.regions import Regions
from genomelab.io.errors import FormatError
from genomelab.io.sheets import SampleRecord, iter_sheet_rows, resolve, write_sample_sheet
from genomelab.io.streams import open_text, text_errors

REQUIRED = ("sample", "path")
OPTIONAL = ("tissue", "format", "subtype", "source_sample", "column", "probes", "build")


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
    #: The format came from the file's name (the sheet's ``format`` empty or ``auto``).
    format_guessed: bool = False


def read_ingest_sheet(
    path: str | os.PathLike, genome_build: str | None = None, check_files: bool = True
) -> list[IngestRecord]:
    """Read and validate the ingest sheet; errors name the sheet and line (``#`` lines are comments)."""
    path = Path(path)
    records: list[IngestRecord] = []
    rows = iter_sheet_rows(
        path, "ingest sample sheet", REQUIRED, OPTIONAL, comments=True, strict_columns=True
    )
    for line_no, v in rows:
        where = f"ingest sample sheet {path}, line {line_no}"
        file = resolve(path.parent, v["path"])
        if check_files and not file.is_file():
            raise FileNotFoundError(f"{where}: file {file} of sample {v['sample']!r} does not exist")
        try:
            fmt = detect_format(file, v["format"])
        except ValueError as exc:
            raise FormatError(path, str(exc), line_no) from None
        if v["build"] and genome_build and v["build"] != genome_build:
            raise FormatError(
                path,
                f"sample {v['sample']!r} was made on genome build {v['build']!r} but "
                f"ingest.genome_build is {genome_build!r}; mixed builds cannot share one region "
                "set (lift the file over first)",
                line_no,
            )
        probes = resolve(path.parent, v["probes"]) if v["probes"] else None
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
                v["format"] in ("", "auto"),
            )
        )
    return records


def write_tissue_sheet(
    records: list[IngestRecord], npz_paths: list[str | os.PathLike], out: str | os.PathLike
) -> Path:
    """Write the tissue module's sample sheet; ``file`` is relative to the sheet's folder."""
    if len(records) != len(npz_paths):
        raise ValueError(f"{len(records)} samples but {len(npz_paths)} NPZ files")
    rows = [
        SampleRecord(rec.sample, Path(npz), rec.tissue, rec.subtype, rec.source_sample)
        for rec, npz in zip(records, npz_paths, strict=True)
    ]
    return write_sample_sheet(rows, out)


NEEDS_INDEX = ("wgbs_pat", "wgbs_beta")


def workflow_records(section: dict, main_process: bool = True) -> dict[str, IngestRecord]:
    """The ingest sheet of an ``ingest`` config section, checked at parse time: sheet and
    regions given, a CpG index where a format or ``slots: cpg`` needs one, probes for arrays.

    ``main_process`` (the Snakemake process that plans the run, ``workflow.is_main_process``)
    also reads the regions BED (lines, overlaps, chromosome naming and lengths of the build)
    and each sample file's first chromosome (:func:`check_first_chromosomes`), so that a bad
    one stops the run once, before any job, not in every sample's job. A cluster job parses
    the workflow again (twice per job under SLURM) and leaves both to the main process, which
    has checked them already (reading a 51,089-region BED was about a tenth of an ingest job's
    parse, benchmarks/bench_dag_scale.py); the job's own step reads the BED again, with the
    same checks, to convert its sample."""
    from genomelab.ingest.regions import load_regions

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
            # A table of per-CpG counts saved as .tsv (R's bsseq/methylKit exports) is read
            # as an array by its name: say so, and where such counts go instead.
            how = "guessed from its name: .csv/.tsv are" if rec.format_guessed else "from the sheet: a"
            raise ValueError(
                f"ingest sample {rec.sample} is an array matrix: set ingest.probes or the 'probes' column of "
                f"the ingest sample sheet ({rec.path}: format array, {how} beta matrices of probes x samples; "
                "per-CpG counts (chrom, position, methylated, total) are not: write them as a Bismark "
                'coverage file, docs/ingest.md "Per-CpG counts in a table")'
            )
    if main_process:
        check_first_chromosomes(records, load_regions(section, section["regions"]))
    return {rec.sample: rec for rec in records}


# Formats whose data lines start with the chromosome name (a .beta file is indexed by CpG
# number, an array by probe ID).
CHROM_FIRST = (BISMARK_COV, CPG_REPORT, BEDMETHYL, PAT)


def check_first_chromosomes(records: Iterable[IngestRecord], regions: Regions) -> None:
    """Read the first data line of each sample file whose lines start with a chromosome and
    refuse, naming the sample, file and line, a chromosome named in the other style than the
    build (``1`` for hg38, whose regions say ``chr1``): found here, the run stops once, before any job,
    instead of in each sample's ingest job after its file is read. One line per file, so
    hundreds of samples cost a fraction of a second; the full check stays in the job."""
    for rec in records:
        if rec.format not in CHROM_FIRST or not Path(rec.path).is_file():
            continue
        try:
            found = _first_chromosome(Path(rec.path))
        except (OSError, EOFError, ValueError):
            # Unreadable (corrupt gzip, another encoding): that sample's job says so, and
            # --keep-going still runs the others.
            continue
        if found is None:
            continue
        chrom, line_no = found
        # The regions BED was checked against the same build, so this is the check against them.
        regions.build.check_name(chrom, f"ingest sample {rec.sample} ({rec.path}, line {line_no})")


def _first_chromosome(path: Path) -> tuple[str, int] | None:
    """The first field of the first data line (after ``#``/``track``/``browser`` lines) and
    that line's number; None for a file without data lines (the job reports it)."""
    with text_errors(path), open_text(path) as fh:
        for line_no, line in enumerate(fh, start=1):
            if line.startswith(("#", "track", "browser")) or not line.strip():
                continue
            return line.split(maxsplit=1)[0], line_no
    return None


def sample_inputs(rec: IngestRecord, section: dict, index_npz: str) -> dict[str, str]:
    """Input files of one sample's ingest job (Snakemake ``unpack``)."""
    inputs = {"data": str(rec.path), "regions": section["regions"]}
    if rec.format in NEEDS_INDEX or section["slots"] == "cpg":
        inputs["cpg_index"] = index_npz
    if rec.format == "array":
        inputs["probes"] = str(rec.probes or section["probes"])
    return inputs


def check_labels(records: dict[str, IngestRecord], config: dict, ingest_sheet: str) -> None:
    """Samples without a tissue label are new samples to predict: refuse them (naming the
    ingest sheet and samples) when an enabled module trains on the ingest output."""
    unlabelled = [s for s, rec in records.items() if not rec.tissue]
    if not unlabelled:
        return
    readers = [
        f"{module}.{key}"
        for module, key in (("tissue", "input.sheet"), ("deconv", "input.sample_sheet"))
        if config.get(module, {}).get("enabled")
        and os.path.normpath(_dotted(config[module], key) or "") == os.path.normpath(ingest_sheet)
    ]
    if readers:
        raise FormatError(
            Path(config["ingest"]["samples"]),
            f"{len(unlabelled)} sample(s) have no tissue label, first {unlabelled[:5]}, but "
            f"{' and '.join(readers)} train(s) on {ingest_sheet}: give every sample its tissue "
            "(column tissue); only new samples to predict (tissue.predict.inputs, "
            "deconv.predict.inputs) may go without",
        )


def _dotted(section: dict, key: str) -> str:
    """The string at dotted ``key`` of ``section`` ("" when absent or not a string)."""
    value: object = section
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, str) else ""


def check_tissue_input(section: dict, tissue_input: dict, ingest_sheet: str) -> None:
    """When the tissue module reads the ingest output, its slot count must match ingest's."""
    if os.path.normpath(tissue_input.get("sheet") or "") != os.path.normpath(ingest_sheet):
        return
    if int(tissue_input.get("n_positions", section["n_positions"])) != int(section["n_positions"]):
        raise ValueError(
            f"tissue.input.sheet reads {ingest_sheet} but tissue.input.n_positions "
            f"({tissue_input['n_positions']}) differs from ingest.n_positions ({section['n_positions']})"
        )
