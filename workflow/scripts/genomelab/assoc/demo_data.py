"""Build the demo tables in ``resources/assoc`` from the shared E. coli data.

Run once from the repository root (the outputs are committed, so the demo needs no
``../shared``)::

    python -m genomelab.assoc.demo_data --shared ../shared/data --out resources/assoc

Inputs: ``ecoli_expression/trn.csv`` (PRECISE transcriptional regulatory network, MIT) and
``ecoli_genome/*.gbff.gz`` (NCBI RefSeq GenBank annotation of K-12 MG1655), read with
Biopython. Outputs (TSV):

- ``links.tsv``: one row per regulator -> gene edge and direction (each edge appears as
  ``source->target`` and ``target->source``), with a confidence derived from the edge's
  effect (see ``EFFECT_CONFIDENCE``) and the effect as ``category``.
- ``sources.tsv``: regulators with a description built from the GenBank gene name and
  product of each regulator gene (complexes such as ``flhD;flhC`` list every subunit;
  small-molecule effectors of riboswitches keep only their name).
- ``targets.tsv``: target genes with ``name | product`` descriptions and the
  ``upstream_bp`` bases upstream of the gene's start on its own strand.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import logging
import re
from pathlib import Path
from typing import Any

from genomelab.io.tables import LINK_COLUMNS, write_entity_table, write_link_table

logger = logging.getLogger(__name__)

# PRECISE gives no evidence level per edge, only the sign of the effect. An edge with a
# known sign is better characterised than a dual or unknown one, so the demo maps signs to
# confidences; this is a convention of the demo, not a value from the source.
EFFECT_CONFIDENCE = {"+": 1.0, "-": 1.0, "+-": 0.8, "?": 0.6}
FIELD_SEP = " | "


def _norm(name: str) -> str:
    # "h-NS" in the network is the gene "hns" in GenBank.
    return re.sub(r"[^a-z0-9]", "", name.lower())


def read_genbank_genes(path: Path) -> tuple[dict[str, dict], str]:
    """Genes of the first GenBank record: locus_tag -> {name, product, start, end, strand}.

    Returns the gene dict and the record's sequence (str). Coordinates are 0-based,
    end-exclusive (Biopython's convention).
    """
    from Bio import SeqIO

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        record = next(SeqIO.parse(fh, "genbank"))
    genes: dict[str, dict] = {}
    for feat in record.features:
        if feat.type not in ("gene", "CDS", "ncRNA", "tRNA", "rRNA"):
            continue
        tag = feat.qualifiers.get("locus_tag", [None])[0]
        if tag is None:
            continue
        entry = genes.setdefault(
            tag,
            {
                "name": feat.qualifiers.get("gene", [tag])[0],
                "product": "",
                "start": int(feat.location.start),
                "end": int(feat.location.end),
                "strand": int(feat.location.strand or 1),
            },
        )
        if "product" in feat.qualifiers and not entry["product"]:
            entry["product"] = feat.qualifiers["product"][0]
    return genes, str(record.seq)


def upstream(seq: str, start: int, end: int, strand: int, n_bp: int) -> str:
    """``n_bp`` bases before the gene on its own strand (reverse complement for minus)."""
    if strand >= 0:
        return seq[max(0, start - n_bp) : start]
    region = seq[end : end + n_bp]
    return region[::-1].translate(str.maketrans("ACGTacgtN", "TGCAtgcaN"))


def _read_edges(trn_path: Path, genes: dict[str, dict[str, Any]]) -> list[tuple[str, str, str]]:
    """(regulator, target b-number, effect) rows of the network whose target is annotated."""
    with open(trn_path, newline="") as fh:
        edges = [(r["regulator"], r["gene_id"], r["effect"]) for r in csv.DictReader(fh)]
    missing = sorted({g for _, g, _ in edges if g not in genes})
    if missing:
        logger.warning(
            "%d target genes are not in the GenBank annotation and are dropped: %s",
            len(missing),
            missing[:10],
        )
    return [e for e in edges if e[1] in genes]


def _source_rows(edges: list[tuple[str, str, str]], genes: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per regulator: its name, then the name and product of each annotated part."""
    by_name = {_norm(g["name"]): tag for tag, g in genes.items()}
    rows = []
    for reg in sorted({r for r, _, _ in edges}):
        fields = [reg]
        for part in reg.split(";"):
            tag = by_name.get(_norm(part))
            if tag is not None and genes[tag]["product"]:
                fields.append(f"{genes[tag]['name']} {genes[tag]['product']}")
        rows.append([reg, FIELD_SEP.join(fields)])
    return rows


def _link_rows(edges: list[tuple[str, str, str]], trn_path: Path) -> list[list[str]]:
    rows = []
    for reg, tag, effect in edges:
        conf = EFFECT_CONFIDENCE.get(effect)
        if conf is None:
            raise ValueError(f"{trn_path}: unknown effect {effect!r} for {reg} -> {tag}")
        for direction in ("source->target", "target->source"):
            rows.append([reg, tag, direction, f"{conf:g}", effect])
    return rows


def build(shared: Path, out: Path, upstream_bp: int = 150) -> dict[str, int]:
    """Write links.tsv, sources.tsv and targets.tsv under ``out``; return row counts."""
    trn_path = shared / "ecoli_expression" / "trn.csv"
    gbk = sorted((shared / "ecoli_genome").glob("*_genomic.gbff.gz"))
    if not trn_path.is_file():
        raise FileNotFoundError(f"network table {trn_path} not found")
    if not gbk:
        raise FileNotFoundError(f"no *_genomic.gbff.gz under {shared / 'ecoli_genome'}")
    genes, genome = read_genbank_genes(gbk[0])
    edges = _read_edges(trn_path, genes)
    target_rows = []
    for tag in sorted({g for _, g, _ in edges}):
        g = genes[tag]
        desc = FIELD_SEP.join(x for x in (g["name"], g["product"]) if x)
        target_rows.append(
            [tag, desc, upstream(genome, g["start"], g["end"], g["strand"], upstream_bp).upper()]
        )

    out.mkdir(parents=True, exist_ok=True)
    write_link_table(_link_rows(edges, trn_path), out / "links.tsv", (*LINK_COLUMNS, "category"))
    n_sources = write_entity_table(_source_rows(edges, genes), out / "sources.tsv", ("id", "description"))
    n_targets = write_entity_table(target_rows, out / "targets.tsv", ("id", "description", "sequence"))
    counts = {"edges": len(edges), "sources": n_sources, "targets": n_targets}
    logger.info("wrote %s to %s", counts, out)
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("resources/assoc"))
    parser.add_argument("--upstream-bp", type=int, default=150)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build(args.shared, args.out, args.upstream_bp)


if __name__ == "__main__":
    main()
