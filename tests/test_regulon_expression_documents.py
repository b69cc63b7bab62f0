"""regulon: a BSON dump's expression documents, read a block at a time
(``_ExpressionTally.add_documents``), give to the bit what the data step gave when it read
them one at a time (``regulon_reference.add_document``, its code until round 22).

The dump holds repeated cells (a gene and dataset given two and three times), genes of no
known b-number (with coordinates, without, and without then with), values that are
strings, booleans, integers, ``nan``/``inf``, negative or ``-0.0``, missing values and
fields, a dataset without any value, a document naming its dataset only by ``_id``, and
enough datasets for co-expression; every output (gene table, norm stats, co-expression,
data report with its warnings) must be the same with blocks of every size, whichever order
the documents come in, block boundaries inside a gene's documents included.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from genomelab.io.bson import write_bson_file
from genomelab.regulon import data as rdata
from genomelab.regulon.bsonio import GENE_DATAMART, GENE_EXPRESSION, Source
from genomelab.regulon.data import _ExpressionTally, _read_expression, process, process_data
from regulon_reference import add_document, add_documents_one_at_a_time, tally_state

N_GENES = 14
N_DATASETS = 10  # at least MIN_COEXPRESSION_DATASETS (8): pairs get a co-expression


def _genome(root: Path) -> Path:
    """A 20 kb FASTA."""
    rng = np.random.default_rng(0)
    fasta = root / "genome.fa"
    fasta.write_text(">chr\n" + "".join(rng.choice(list("ACGT"), 20_000)) + "\n")
    return fasta


def _gene_docs() -> list[dict[str, Any]]:
    """geneDatamart: b0000... (800 bp every 1,200, strands in runs of 3)."""
    return [
        {
            "gene": {
                "id": f"G{i}",
                "bnumber": f"b{i:04d}",
                "name": f"gn{i}",
                "leftEndPosition": 1200 * i + 1,
                "rightEndPosition": 1200 * i + 800,
                "strand": "forward" if (i // 3) % 2 == 0 else "reverse",
            }
        }
        for i in range(N_GENES)
    ]


def _expression_docs(field: str, order: str) -> list[dict[str, Any]]:
    """geneExpression with every kind of document the tally meets, dataset by dataset
    (``order="datasets"``), gene by gene (``"genes"``) or shuffled."""
    rng = np.random.default_rng(1)
    values = np.exp(rng.normal(3, 1.5, (N_GENES, N_DATASETS)))
    if field == "count":
        values = np.round(values * 10)

    def doc(i: Any, d: int, value: Any, **gene: Any) -> dict[str, Any]:
        bnumber = i if isinstance(i, str) else f"b{i:04d}"
        return {
            "_id": f"DS{d},{bnumber}",
            "datasetIds": [f"DS{d}"],
            "gene": {"bnumber": bnumber, **gene},
            field: value,
        }

    docs = [doc(i, d, float(values[i, d])) for i in range(N_GENES) for d in range(N_DATASETS)]
    docs += [doc(2, 3, 99.5), doc(2, 3, 0.25), doc(5, 0, 7.0)]  # repeated cells, in order
    docs += [doc(1, d, v) for d, v in enumerate(["12.5", True, 3, "nan", "inf", -2.0, -0.0, 0.0])]
    docs += [doc(1, 9, None), {"gene": {"bnumber": "b0003"}, "_id": "DS9,b0003", field: 4.0}]  # no datasetIds
    docs += [doc(4, 11, None), doc(6, 11, None)]  # DS11: never a value
    docs += [{"datasetIds": ["DS2"], "gene": {}, field: 5.0}, {"datasetIds": ["DS2"], field: 6.0}]  # no gene
    docs += [doc(7, 2, 3.0) | {"fpkm": 1.0}, {"datasetIds": ["DS4"], "gene": {"bnumber": "b0008"}}]
    # b9999: no gene, no coordinates; b7777: coordinates; b7778: coordinates after two of its
    # values.
    docs += [doc("b9999", d, 10.0 + d) for d in range(4)]
    docs += [doc("b7777", d, 2.0 + d, leftEndPosition=17_001, rightEndPosition=17_500) for d in range(3)]
    docs += [doc("b7778", 0, 5.0), doc("b7778", 1, -1.0), doc("b7778", 2, 6.0)]
    docs += [doc("b7778", d, 7.0 + d, leftEndPosition=18_001, rightEndPosition=18_400) for d in range(3, 6)]
    docs += [doc("b7778", 6, 4.5)]
    # b7779: coordinates only with a value dropped (negative): no gene.
    docs += [doc("b7779", 0, -3.0, leftEndPosition=19_001, rightEndPosition=19_400), doc("b7779", 1, 2.0)]
    if order == "datasets":
        docs.sort(key=lambda x: str(x.get("datasetIds", ["~"])[0]))  # stable: genes within
    elif order == "genes":
        docs.sort(key=lambda x: str((x.get("gene") or {}).get("bnumber", "~")))
    else:
        docs = [docs[k] for k in rng.permutation(len(docs))]
    return docs


def _dump(root: Path, field: str, order: str, extra: list[dict[str, Any]] = ()) -> Path:
    db = root / "dump" / "regulondb"
    db.mkdir(parents=True)
    write_bson_file(db / f"{GENE_DATAMART}.bson", _gene_docs())
    write_bson_file(db / f"{GENE_EXPRESSION}.bson", [*_expression_docs(field, order), *extra])
    return root / "dump"


def _bits(frame: Any) -> dict[str, Any]:
    """Each column as exact values: floats as their 64-bit patterns (NaN and -0.0 included)."""
    return {
        c: frame[c].to_numpy(np.float64).view(np.int64).tolist()
        if frame[c].dtype.kind == "f"
        else frame[c].tolist()
        for c in frame.columns
    }


def _outputs(source: Source, fasta: Path, field: str, out: Path) -> tuple[Any, ...]:
    """process()'s files and report, and process_data()'s gene table to the bit."""
    out.mkdir()
    report = process(
        source, fasta, out / "genes.tsv", out / "operons.tsv", out / "stats.json", out / "report.json", field
    )
    genes, _, norm, _ = process_data(source, fasta, field)
    files = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    return json.dumps(report), _bits(genes), repr(norm), files


@pytest.mark.parametrize("block_docs", [rdata.DOCUMENT_BLOCK, 1, 7, 13, 64])
@pytest.mark.parametrize("order", ["datasets", "genes", "shuffled"])
@pytest.mark.parametrize("field", ["tpm", "count"])
def test_a_dump_read_by_blocks_gives_what_a_document_at_a_time_gave(
    tmp_path, monkeypatch, field, order, block_docs
):
    fasta, dump = _genome(tmp_path), _dump(tmp_path, field, order)
    monkeypatch.setattr(rdata, "DOCUMENT_BLOCK", block_docs)
    blocks = _outputs(Source(dump), fasta, field, tmp_path / "blocks")
    tally = _read_expression(Source(dump), field, {d["gene"]["bnumber"]: {} for d in _gene_docs()})
    with monkeypatch.context() as m:
        m.setattr(_ExpressionTally, "add_documents", add_documents_one_at_a_time)
        before = _outputs(Source(dump), fasta, field, tmp_path / "before")
        reference = _read_expression(Source(dump), field, {d["gene"]["bnumber"]: {} for d in _gene_docs()})
    assert blocks == before
    assert tally_state(tally) == tally_state(reference)

    # The dump holds what the docstring says, and it reached the outputs.
    report = json.loads(blocks[0])
    assert report["documents"][GENE_EXPRESSION] == tally.n_docs == len(_expression_docs(field, order))
    assert report["n_values_nonfinite"] == 2 and report["n_values_negative"] == 3
    assert report["n_values_missing"] == 6
    assert report["n_expression_unmatched"] == tally.n_unmatched >= 4 + 1
    assert report["fields_present"]["fpkm"] == 1 and report["n_datasets"] == N_DATASETS
    assert report["coexpression"]["n_with_coexpression"] > 0
    assert any("(e.g. ['DS11'];" in w for w in report["warnings"])
    assert tally.counts["b7777"] == 3 and tally.counts["b0001"] == N_DATASETS + 5
    if order != "shuffled":  # b7778's coordinates come after two of its values
        assert sorted(tally.unmatched) == ["b7778", "b7779", "b9999"] and tally.n_unmatched == 4 + 2 + 1
        assert tally.counts["b7778"] == 4
    rows, matrix = tally.log_matrix()
    if field == "tpm":  # b0002 in DS3 three times: the mean of the logs, summed in the order given
        given = [
            float(d["tpm"])
            for d in _expression_docs(field, order)
            if d.get("gene", {}).get("bnumber") == "b0002" and d.get("datasetIds") == ["DS3"]
        ]
        total = 0.0
        for v in np.log1p(given):
            total += float(v)
        assert len(given) == 3 and matrix[rows["b0002"], tally.dataset_index["DS3"]] == np.float32(total / 3)


@pytest.mark.parametrize("block_docs", [1, 2, 3, 4, 100])
def test_a_block_boundary_inside_a_genes_documents_changes_nothing(block_docs):
    """b1's documents cut by every boundary: its repeated DS0 (a value before the cut, one
    after), its sums and its datasets' order are those of a document at a time."""
    docs = [
        {"datasetIds": [d], "gene": {"bnumber": b}, "tpm": v}
        for b, d, v in [
            ("b0", "DS1", 0.1),
            ("b1", "DS0", 1.0),
            ("b1", "DS2", 2.0),
            ("b1", "DS0", 3.0),
            ("b1", "DS3", 1e16),
            ("b1", "DS1", 1.0),
            ("b1", "DS0", 5.0),
            ("b2", "DS0", 6.0),
        ]
    ]
    genes = {b: {} for b in ("b0", "b1", "b2")}
    batched, reference = _ExpressionTally("tpm"), _ExpressionTally("tpm")
    batched.add_documents(iter(docs), genes, block_docs=block_docs)
    for doc in docs:
        add_document(reference, doc, genes)
    assert tally_state(batched) == tally_state(reference)
    # 1.0 + 1e16 + 1.0 + 1.0 differs by the order of the additions: it is the documents'.
    assert batched.raw_sums["b1"] == ((((1.0 + 2.0) + 3.0) + 1e16) + 1.0) + 5.0
    rows, matrix = batched.log_matrix()
    assert list(batched.dataset_index) == ["DS1", "DS0", "DS2", "DS3"]
    expected = (math.log1p(1.0) + math.log1p(3.0)) + math.log1p(5.0)
    assert matrix[rows["b1"], batched.dataset_index["DS0"]] == np.float32(expected / 3)


def test_bad_documents_raise_the_same_errors(tmp_path, monkeypatch):
    """A value ``float`` cannot read, bad coordinates of an unknown gene, no value in the
    field read: the same error, from the same document, as a document at a time."""
    fasta = _genome(tmp_path)
    cases = [
        ([{"datasetIds": ["DS0"], "gene": {"bnumber": "b0001"}, "tpm": "12,5"}], "tpm"),
        (
            [
                {
                    "datasetIds": ["DS0"],
                    "gene": {"bnumber": "bX", "leftEndPosition": "x", "rightEndPosition": 9},
                    "tpm": 1.0,
                }
            ],
            "tpm",
        ),
        ([], "count"),
    ]
    for k, (extra, field) in enumerate(cases):
        dump = _dump(tmp_path / str(k), "tpm", "datasets", extra)
        messages = []
        for how in ("blocks", "before"):
            with monkeypatch.context() as m:
                if how == "before":
                    m.setattr(_ExpressionTally, "add_documents", add_documents_one_at_a_time)
                with pytest.raises(ValueError) as err:
                    process_data(Source(dump), fasta, field)
            messages.append(str(err.value))
        assert messages[0] == messages[1]
        assert [
            "gene b0001 in dataset 'DS0': tpm '12,5' is not a number",
            "invalid literal for int()",
            "usable 'count'",
        ][k] in messages[0]
        if k == 0:  # the unreadable value names the dump it is in
            assert messages[0].startswith(f"{Source(dump).describe()}, geneExpression: ")
    tally = _ExpressionTally("tpm")
    with pytest.raises(ValueError, match="block_docs must be >= 1, not 0"):
        tally.add_documents([], {}, block_docs=0)
    tally.log_matrix()
    with pytest.raises(RuntimeError, match="after log_matrix"):
        tally.add_documents([], {})


@pytest.mark.parametrize("max_docs", [1, 37, 150])
def test_max_docs_per_file_reads_as_many_documents_as_before(tmp_path, monkeypatch, max_docs):
    fasta, dump = _genome(tmp_path), _dump(tmp_path, "tpm", "datasets")
    monkeypatch.setattr(rdata, "DOCUMENT_BLOCK", 16)
    got = []
    for how in ("blocks", "before"):
        with monkeypatch.context() as m:
            if how == "before":
                m.setattr(_ExpressionTally, "add_documents", add_documents_one_at_a_time)
            source = Source(dump, max_docs_per_file=max_docs)
            try:
                got.append(_outputs(source, fasta, "tpm", tmp_path / how))
            except ValueError as err:  # one document: a single measured gene cannot be normalised
                got.append(str(err))
    assert got[0] == got[1]
    if max_docs > 1:
        assert json.loads(got[0][0])["documents"][GENE_EXPRESSION] == max_docs


def test_only_an_unreadable_value_gets_the_dump_prefixed_and_an_empty_block_is_nothing(tmp_path):
    """The reader's own errors name the dump already: they reach the user unprefixed; an
    empty set of values leaves the grid as it was."""
    dump = _dump(tmp_path, "tpm", "datasets")
    # A second geneExpression file deeper in the dump: the reader refuses the ambiguity.
    (dump / "other").mkdir()
    write_bson_file(dump / "other" / f"{GENE_EXPRESSION}.bson", [])
    with pytest.raises(ValueError) as err:
        _read_expression(Source(dump), "tpm", {})
    assert str(err.value).startswith("RegulonDB dump folder ") and "several" in str(err.value)
    assert f"{GENE_EXPRESSION}: RegulonDB" not in str(err.value)  # no second prefix
    grid = rdata._ValueGrid()
    empty = np.zeros(0, np.int64)
    grid.put_many(empty, empty, np.zeros(0))
    assert grid.rows == [] and grid.repeats == {} and grid.n_columns == 0
