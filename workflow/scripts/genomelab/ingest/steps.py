"""Snakemake-facing steps of the ingest module: each unpacks ``smk`` and calls one typed
function (``cpg_index``, ``convert``, ``summary``; for the UXM path ``cpg_bed`` and
``block_counts``)."""

from __future__ import annotations

from typing import Any

from genomelab.config import param


def cpg_index_step(smk: Any) -> None:
    from genomelab.ingest.cpg_index import write_cpg_index

    write_cpg_index(smk.input.index, smk.input.regions, param(smk, "ingest"), smk.output.npz)


def sample_step(smk: Any) -> None:
    from genomelab.ingest.convert import convert_sample_files

    convert_sample_files(
        smk.input.data,
        smk.params.format,
        smk.wildcards.sample,
        smk.input.regions,
        param(smk, "ingest"),
        smk.output.npz,
        smk.output.qc,
        cpg_index=smk.input.cpg_index if "cpg_index" in smk.input.keys() else None,
        probes=smk.input.probes if "probes" in smk.input.keys() else None,
        column=smk.params.column,
        seed=int(smk.params.seed),
    )


def sheet_step(smk: Any) -> None:
    from genomelab.ingest.summary import collect_sheet

    collect_sheet(
        smk.input.sheet,
        param(smk, "ingest")["genome_build"],
        list(smk.input.npz),
        list(smk.input.qc),
        smk.output.sheet,
        smk.output.summary,
        smk.output.md,
        smk.output.diagnostics,
    )


def cpg_bed_step(smk: Any) -> None:
    from genomelab.ingest.cpg_index import write_cpg_bed

    write_cpg_bed(smk.input.fasta, smk.output.bed, contigs=param(smk, "uxm")["contigs"])


def block_counts_step(smk: Any) -> None:
    from genomelab.ingest.fragments import write_sample_counts

    write_sample_counts(
        smk.input.reads,
        smk.params.format,
        smk.input.blocks,
        param(smk, "uxm"),
        smk.output.counts,
        smk.output.qc,
        cpg_index=smk.input.cpg_index if "cpg_index" in smk.input.keys() else None,
    )
