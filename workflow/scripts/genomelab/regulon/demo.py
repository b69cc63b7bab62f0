"""Build the demo: a RegulonDB-shaped mongodump from data we may redistribute.

RegulonDB's own documents must never be shipped (their terms forbid redistribution), so
the demo dump is rebuilt from MIT/NCBI sources in the RegulonDB document shapes of
``../shared/data/regulondb/SCHEMA_NOTES.md``:

- ``geneDatamart``: one document per NCBI RefSeq gene (GFF3, b-number = locus_tag).
- ``operonDatamart``: one document per PRECISE/BioCyc operon label (gene_table.csv), with
  one transcription unit listing its genes.
- ``geneExpression``: one document per (dataset, gene) with ``tpm`` from PRECISE log_tpm
  (``tpm = 2**log2(TPM+1) - 1``); ``count`` and ``fpkm`` are null because PRECISE does not
  publish them.

Identifiers are our own (``GLGENE_b0001``), not RegulonDB's. Usage (from the repository root)::

    python -m genomelab.regulon.demo --genome-dir ../shared/data/ecoli_genome \
        --expression-dir ../shared/data/ecoli_expression --out resources/regulon

(with ``workflow/scripts`` on ``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomelab.io.atomic import atomic_output
from genomelab.io.bson import write_bson_file
from genomelab.regulon.bsonio import GENE_DATAMART, GENE_EXPRESSION, OPERON_DATAMART
from genomelab.regulon.data import read_annotation

logger = logging.getLogger(__name__)

GENOME_FASTA = "GCF_000005845.2_ASM584v2_genomic.fna.gz"
GENOME_GFF = "GCF_000005845.2_ASM584v2_genomic.gff.gz"
DEFAULT_SAMPLES = ("control__wt_glc__1", "control__wt_glc__2")
ORGANISM = {"id": "ECOLI", "name": "Escherichia coli K-12 MG1655"}


def _gene_id(bnumber: str) -> str:
    return f"GLGENE_{bnumber}"


def gene_documents(genes: pd.DataFrame) -> list[dict[str, Any]]:
    """geneDatamart-shaped documents from an annotation table (0-based starts)."""
    return [
        {
            "_id": _gene_id(g.bnumber),
            "gene": {
                "id": _gene_id(g.bnumber),
                "bnumber": g.bnumber,
                "name": g.name,
                "leftEndPosition": int(g.start) + 1,
                "rightEndPosition": int(g.end),
                "strand": "forward" if g.strand == "+" else "reverse",
                "synonyms": [],
                "type": "gene",
            },
            "organism": ORGANISM,
            "schemaVersion": 1,
        }
        for g in genes.itertuples(index=False)
    ]


def operon_documents(gene_table: pd.DataFrame, genes: pd.DataFrame) -> list[dict[str, Any]]:
    """operonDatamart-shaped documents: one per operon label, genes from the annotation."""
    coords = genes.set_index("bnumber")
    table = gene_table[gene_table.index.isin(coords.index) & gene_table["operon"].notna()]
    docs = []
    for label, members in table.groupby("operon", sort=True):
        bn = sorted(members.index, key=lambda b: int(coords.loc[b, "start"]))
        strands = {coords.loc[b, "strand"] for b in bn}
        if len(strands) != 1:
            continue  # a label spanning both strands is not a transcription unit
        strand = strands.pop()
        left = int(min(coords.loc[b, "start"] for b in bn)) + 1
        right = int(max(coords.loc[b, "end"] for b in bn))
        first = bn[0] if strand == "+" else bn[-1]
        oid = f"GLOPERON_{label}"
        docs.append(
            {
                "_id": oid,
                "operon": {
                    "id": oid,
                    "name": str(label),
                    "strand": "forward" if strand == "+" else "reverse",
                    "regulationPositions": {"leftEndPosition": left, "rightEndPosition": right},
                    "statistics": {"genes": len(bn), "transcriptionUnits": 1, "promoters": None},
                },
                "transcriptionUnits": [
                    {
                        "id": f"GLTU_{label}",
                        "name": str(label),
                        "firstGene": {"gene_id": _gene_id(first), "gene_name": coords.loc[first, "name"]},
                        "genes": [{"id": _gene_id(b), "name": coords.loc[b, "name"]} for b in bn],
                    }
                ],
                "organism": ORGANISM,
                "schemaVersion": 1,
            }
        )
    return docs


def expression_documents(
    log_tpm: pd.DataFrame, genes: pd.DataFrame, samples: Iterable[str]
) -> Iterable[dict]:
    """geneExpression-shaped documents, one per (sample, gene); tpm from log2(TPM+1)."""
    coords = genes.set_index("bnumber")
    for sample in samples:
        if sample not in log_tpm.columns:
            raise ValueError(f"PRECISE log_tpm has no sample {sample!r}")
        tpm = np.exp2(log_tpm[sample].to_numpy(dtype=float)) - 1.0
        for bnumber, value in zip(log_tpm.index, tpm, strict=True):
            if bnumber not in coords.index:
                continue
            g = coords.loc[bnumber]
            yield {
                "_id": f"{sample},{bnumber}",
                "datasetIds": [f"GENE_EXPRESSION_{sample}"],
                "gene": {
                    "_id": _gene_id(bnumber),
                    "name": g["name"],
                    "synonyms": [],
                    "bnumber": bnumber,
                    "leftEndPosition": int(g["start"]) + 1,
                    "rightEndPosition": int(g["end"]),
                },
                "count": None,
                "tpm": round(float(max(value, 0.0)), 4),
                "fpkm": None,
                "temporalId": f"GE_{sample}_{bnumber}",
            }


def build_demo(
    genome_dir: str | os.PathLike,
    expression_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    samples: Iterable[str] = DEFAULT_SAMPLES,
) -> dict[str, int]:
    """Write ``genome.fna.gz`` and ``dump/regulondb/<collection>.bson.gz`` into ``out_dir``."""
    genome_dir, expression_dir, out = Path(genome_dir), Path(expression_dir), Path(out_dir)
    genes = read_annotation(genome_dir / GENOME_GFF)
    gene_table = pd.read_csv(expression_dir / "gene_table.csv", index_col=0)
    log_tpm = pd.read_csv(expression_dir / "log_tpm.csv.gz", index_col=0)
    dump = out / "dump" / "regulondb"
    dump.mkdir(parents=True, exist_ok=True)
    with atomic_output(out / "genome.fna.gz", suffix=".fna.gz") as tmp:
        shutil.copyfile(genome_dir / GENOME_FASTA, tmp)
    counts = {
        GENE_DATAMART: write_bson_file(dump / f"{GENE_DATAMART}.bson.gz", gene_documents(genes)),
        OPERON_DATAMART: write_bson_file(
            dump / f"{OPERON_DATAMART}.bson.gz", operon_documents(gene_table, genes)
        ),
        GENE_EXPRESSION: write_bson_file(
            dump / f"{GENE_EXPRESSION}.bson.gz", expression_documents(log_tpm, genes, samples)
        ),
    }
    for path in [out / "genome.fna.gz", *dump.iterdir()]:
        path.chmod(0o644)  # temporary files are created 0600; shipped files must be readable
    logger.info("demo dump in %s: %s", dump, counts)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genome-dir", required=True)
    parser.add_argument("--expression-dir", required=True)
    parser.add_argument("--out", default="resources/regulon")
    parser.add_argument("--samples", nargs="+", default=list(DEFAULT_SAMPLES))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build_demo(args.genome_dir, args.expression_dir, args.out, args.samples)


if __name__ == "__main__":
    main()
