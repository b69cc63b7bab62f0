"""A small synthetic RegulonDB-shaped dump with planted, learnable signal (tests, benchmarks).

Gene bodies are built from codons; a gene's expression rises with its share of
"preferred" codons (as codon bias tracks expression in E. coli), so the signal is in the
sequence. Neighbouring same-strand genes with short gaps form operons.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genomelab.regulon.bsonio import GENE_DATAMART, GENE_EXPRESSION, OPERON_DATAMART

_BASES = np.array(list("ACGT"))
# Rare codons are the preferred ones reversed: the same GC content, so GC alone cannot
# tell highly from lowly expressed genes while codon (k-mer) usage can.
_PREFERRED = ["CTG", "AAT", "GAA", "CGT", "GCC", "ACC", "GGC", "CAG"]
_RARE = [c[::-1] for c in _PREFERRED]
_COMPLEMENT = str.maketrans("ACGT", "TGCA")


def make_synthetic(
    out_dir: str | os.PathLike, n_bp: int = 60_000, seed: int = 0, value_scale: float = 1.0
) -> dict[str, Path]:
    """Write ``genome.fa`` and ``dump/regulondb/*.bson`` into ``out_dir``; return their paths.

    ``value_scale`` multiplies TPM values (tests use it to fake wrong units).
    """
    from genomelab.io.bson import write_bson_file

    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    seq = rng.choice(_BASES, n_bp)
    genes, pos, gid = [], 200, 0
    strand = "+"
    while pos < n_bp - 2000:
        n_in_operon = int(rng.integers(1, 4))
        members = []
        for _ in range(n_in_operon):
            n_codons = int(rng.integers(150, 450))
            bias = float(rng.uniform(0, 1))
            pick = rng.random(n_codons) < bias
            codons = np.where(pick, rng.choice(_PREFERRED, n_codons), rng.choice(_RARE, n_codons))
            body = "ATG" + "".join(codons) + "TAA"
            if pos + len(body) >= n_bp - 500:
                break
            if strand == "-":
                body = body.translate(_COMPLEMENT)[::-1]
            seq[pos : pos + len(body)] = list(body)
            gid += 1
            b = f"b{gid:04d}"
            genes.append(
                {
                    "bnumber": b,
                    "start": pos,
                    "end": pos + len(body),
                    "strand": strand,
                    "tpm": float(np.expm1(1 + 7 * bias + rng.normal(0, 0.3))),
                }
            )
            members.append(b)
            pos += len(body) + int(rng.integers(10, 60))
        if members:
            genes[-len(members)]["operon"] = members
        pos += int(rng.integers(300, 900))
        strand = "+" if rng.random() < 0.5 else "-"
    genome = out / "genome.fa"
    out.mkdir(parents=True, exist_ok=True)
    genome.write_text(">synth1 synthetic\n" + "".join(seq) + "\n")
    dump = out / "dump" / "regulondb"
    dump.mkdir(parents=True, exist_ok=True)
    gene_docs = [
        {
            "_id": f"G_{g['bnumber']}",
            "gene": {
                "id": f"G_{g['bnumber']}",
                "bnumber": g["bnumber"],
                "name": g["bnumber"],
                "leftEndPosition": g["start"] + 1,
                "rightEndPosition": g["end"],
                "strand": "forward" if g["strand"] == "+" else "reverse",
            },
        }
        for g in genes
    ]
    operon_docs = [
        {
            "_id": f"O_{g['bnumber']}",
            "operon": {
                "id": f"O_{g['bnumber']}",
                "name": g["bnumber"],
                "strand": "forward" if g["strand"] == "+" else "reverse",
            },
            "transcriptionUnits": [{"genes": [{"id": f"G_{m}"} for m in g["operon"]]}],
        }
        for g in genes
        if "operon" in g
    ]
    expr_docs = [
        {
            "_id": f"DS{d},{g['bnumber']}",
            "datasetIds": [f"DS{d}"],
            "gene": {
                "bnumber": g["bnumber"],
                "leftEndPosition": g["start"] + 1,
                "rightEndPosition": g["end"],
            },
            "tpm": g["tpm"] * value_scale * (1 + 0.05 * d),
            "fpkm": None,
            "count": None,
        }
        for d in range(2)
        for g in genes
    ]
    write_bson_file(dump / f"{GENE_DATAMART}.bson", gene_docs)
    write_bson_file(dump / f"{OPERON_DATAMART}.bson", operon_docs)
    write_bson_file(dump / f"{GENE_EXPRESSION}.bson", expr_docs)
    return {"genome": genome, "dump": out / "dump"}
