"""regulon: an expression table read a block of rows at a time gives, to the bit, what its
documents (one per gene and sample, the path a BSON dump takes) give.

The data step tallies a table's chunks whole (``_ExpressionTally.add_block``); every output
(the gene table, its co-expression, the normaliser, the data report with its counts and
warnings) must equal that of the per-value document path on the same table, with empty
cells, non-finite, negative and signed-zero values, repeated sample names, unknown genes
and chunks that split it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from genomelab.regulon import flat
from genomelab.regulon.bsonio import GENE_EXPRESSION
from genomelab.regulon.data import _ExpressionTally, _read_expression, process, process_data
from genomelab.regulon.flat import FlatSource, block_documents, with_expression_table
from regulon_reference import add_document, tally_state

N_GENES = 14
N_SAMPLES = 12


class _Documents:
    """``source`` without ``expression_blocks``: its expression read a document per value,
    as before blocks (and as a BSON dump or a database always is)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def has(self, collection: str) -> bool:
        return self.source.has(collection)

    def iter(self, collection: str) -> Any:
        return self.source.iter(collection)

    def describe(self) -> str:
        return self.source.describe()


def _genome(root: Path) -> tuple[Path, Path]:
    """A 20 kb FASTA and a GFF3 of N_GENES genes (b0000...; 800 bp every 1,200, strands in runs of 3)."""
    rng = np.random.default_rng(0)
    fasta = root / "genome.fa"
    fasta.write_text(">chr\n" + "".join(rng.choice(list("ACGT"), 20_000)) + "\n")
    gff = root / "genes.gff3"
    lines = ["##gff-version 3"]
    for i in range(N_GENES):
        strand = "+" if (i // 3) % 2 == 0 else "-"
        start = 1200 * i + 1
        lines.append(
            f"chr\ttest\tgene\t{start}\t{start + 799}\t.\t{strand}\t.\tID=g{i};Name=gn{i};locus_tag=b{i:04d}"
        )
    gff.write_text("\n".join(lines) + "\n")
    return fasta, gff


def _table(root: Path, field: str, name: str = "expr.csv") -> Path:
    """A gene x sample table with every kind of cell the reader accepts: empty, 'inf',
    '-inf', negative, '-0', zero, non-integer counts; a sample column given twice (pandas
    names the second 's1.1'), an all-empty sample, a first row whose first cells are empty
    (datasets are numbered in the order of their first value, not the columns'), unknown
    genes (one with values, one all empty) and a gene name in place of a b-number."""
    rng = np.random.default_rng(1)
    samples = ["s0", "s1", "s1", *(f"s{j}" for j in range(2, N_SAMPLES))]
    values = np.exp(rng.normal(3, 1.5, (N_GENES, len(samples))))
    if field == "count":
        values = np.round(values)
    text = np.vectorize(lambda v: f"{v:.17g}")(values).astype(object)
    text[rng.random(text.shape) < 0.1] = ""
    text[0, :3] = ""
    text[2, 7], text[3, 8], text[4, 9] = "inf", "-inf", "-3.5"
    text[5, 10], text[6, 11], text[7, 12] = "-0", "0", "2.5"
    text[8, :] = "0"
    text[:, 5] = ""  # s4: no value in any gene
    rows = [(f"b{i:04d}", list(text[i])) for i in range(N_GENES)]
    rows.insert(4, ("b9999", [f"{v:.17g}" for v in values[0]]))  # a b-number of no gene
    rows.insert(9, ("b9998", [""] * len(samples)))
    rows.append(("gn3x", ["1"] * len(samples)))
    path = root / name
    path.write_text(",".join(["gene", *samples]) + "\n" + "".join(f"{b},{','.join(c)}\n" for b, c in rows))
    return path


def _bits(frame: pd.DataFrame) -> dict[str, Any]:
    """Each column as exact values: floats as their 64-bit patterns (NaN and -0.0 included)."""
    return {
        c: frame[c].to_numpy(np.float64).view(np.int64).tolist()
        if frame[c].dtype.kind == "f"
        else frame[c].tolist()
        for c in frame.columns
    }


def _assert_same_outputs(source: Any, fasta: Path, gff: Path, field: str, tmp: Path) -> dict[str, Any]:
    """process() by blocks and by documents: the same files, byte for byte, and the same
    gene table and report to the bit."""
    outputs = {}
    for how, src in (("blocks", source), ("documents", _Documents(source))):
        out = tmp / how
        out.mkdir()
        report = process(
            src,
            fasta,
            out / "genes.tsv",
            out / "operons.tsv",
            out / "stats.json",
            out / "report.json",
            field,
            gff,
        )
        genes = process_data(src, fasta, field, gff)[0]
        outputs[how] = (report, genes, {p.name: p.read_bytes() for p in sorted(out.iterdir())})
    (report_b, genes_b, files_b), (report_d, genes_d, files_d) = outputs["blocks"], outputs["documents"]
    assert files_b == files_d
    assert json.dumps(report_b) == json.dumps(report_d)  # repr floats: exact, -0.0 kept
    assert _bits(genes_b) == _bits(genes_d)
    return report_b


@pytest.mark.parametrize("chunk_cells", [flat.CHUNK_CELLS, 40])
@pytest.mark.parametrize(("field", "transform"), [("tpm", "linear"), ("count", "linear"), ("tpm", "log2p1")])
def test_a_table_read_by_blocks_gives_what_its_documents_give(
    tmp_path, monkeypatch, field, transform, chunk_cells
):
    monkeypatch.setattr(flat, "CHUNK_CELLS", chunk_cells)  # 40: three rows of 13 samples a chunk
    fasta, gff = _genome(tmp_path)
    table = _table(tmp_path, field)
    source = FlatSource(expression=table, transform=transform, value_field=field)
    report = _assert_same_outputs(source, fasta, gff, field, tmp_path)
    # The table holds what the test says it does: each kind of cell reached the tally.
    assert report["n_values_nonfinite"] >= 1 and report["n_expression_unmatched"] > 0
    assert report["n_values_negative"] >= (1 if transform == "linear" else 0)
    assert report["n_datasets"] == N_SAMPLES  # 13 columns ('s1' twice), s4 empty
    assert any("(e.g. ['s4'];" in w for w in report["warnings"])
    assert report["coexpression"]["n_with_coexpression"] > 0
    tallies = [
        _read_expression(src, field, {f"b{i:04d}": {"name": f"gn{i}"} for i in range(N_GENES)})
        for src in (source, _Documents(source))
    ]
    assert tally_state(tallies[0]) == tally_state(tallies[1])
    # The first row's first cells are empty: datasets are numbered from its later ones.
    assert list(tallies[0].dataset_index)[:2] == ["s2", "s3"]


def test_a_table_over_a_dump_reads_by_blocks_too(tmp_path):
    """``regulon.expression.table`` over another source reads the table by blocks, with the
    same outputs."""
    fasta, gff = _genome(tmp_path)
    table = _table(tmp_path, "tpm")
    source = with_expression_table(FlatSource(), table, "linear", "tpm")
    assert hasattr(source, "expression_blocks")
    _assert_same_outputs(source, fasta, gff, "tpm", tmp_path)


def test_errors_of_a_table_are_the_same_by_blocks(tmp_path):
    """A table of another value field than the one read, or of no known gene: the same
    error by blocks as by documents."""
    fasta, gff = _genome(tmp_path)
    for source, field in (
        (FlatSource(expression=_table(tmp_path, "tpm"), value_field="tpm"), "count"),
        (FlatSource(expression=_table(tmp_path, "tpm"), value_field="tpm"), "tpm"),
    ):
        genes = None if field == "count" else tmp_path / "none.gff3"
        if genes is not None:
            genes.write_text("##gff-version 3\nchr\tt\tgene\t1\t90\t.\t+\t.\tID=x;Name=x;locus_tag=bZZZZ\n")
        messages = []
        for src in (source, _Documents(source)):
            with pytest.raises(ValueError) as err:
                process_data(src, fasta, field, genes or gff)
            messages.append(str(err.value))
        assert messages[0] == messages[1]
        assert ("usable 'count'" if field == "count" else "is a b-number of the genes read") in messages[0]


def test_a_block_of_genes_already_tallied_or_repeated_samples_is_read_a_document_at_a_time():
    """Cells that could repeat a cell of the grid (a gene tallied before, a sample twice in
    one block) keep the order of repeats of a document at a time (the reference, as the data
    step read documents until round 22): the block goes through ``add_documents``."""
    genes: dict[str, dict[str, Any]] = {b: {} for b in ("b1", "b2", "b3")}
    values = np.asarray([[1.0, 2.0, np.nan], [3.0, 4.0, 5.0]])
    blocks = [
        flat.ExpressionBlock(["b1", "b2"], ["S0", "S1", "S2"], values, "tpm"),
        flat.ExpressionBlock(["b2", "b3"], ["S1", "S3", "S1"], values * 7, "tpm"),
        flat.ExpressionBlock(["b3"], ["S4", "S4"], np.asarray([[6.0, 9.0]]), "tpm"),
    ]
    by_blocks, by_docs = _ExpressionTally("tpm"), _ExpressionTally("tpm")
    for block in blocks:
        by_blocks.add_block(block, genes)
        for doc in block_documents(block):
            add_document(by_docs, doc, genes)
    assert tally_state(by_blocks) == tally_state(by_docs)
    # b2 in S1 twice (4.0, then 7.0): the mean of the logs, in the order given.
    rows, matrix = by_blocks.log_matrix()
    assert matrix[rows["b2"], by_blocks.dataset_index["S1"]] == np.float32(
        (np.log1p(4.0) + np.log1p(7.0)) / 2
    )
    with pytest.raises(ValueError, match="2 genes x 3 samples holds"):
        _ExpressionTally("tpm").add_block(
            flat.ExpressionBlock(["b1", "b2"], ["a", "b", "c"], values[:1], "tpm"), genes
        )


def test_flat_source_documents_are_its_blocks_cell_by_cell(tmp_path):
    """``iter(geneExpression)`` (a document per cell) and ``expression_blocks`` read one table."""
    table = _table(tmp_path, "tpm")
    source = FlatSource(expression=table)
    docs = list(source.iter(GENE_EXPRESSION))
    blocks = list(source.expression_blocks())
    assert len(docs) == sum(b.values.size for b in blocks)
    assert docs == [d for b in blocks for d in block_documents(b)]
