"""regulon: RegulonDB flat files and datamarts, expression tables, confidence filter, absent expression.

Every RegulonDB-shaped file here is written by the test in the documented layouts from
synthetic content (RegulonDB's licence forbids redistributing its content).
"""

from __future__ import annotations

import gzip
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from genomelab.io.bson import write_bson_file
from genomelab.io.errors import FormatError
from genomelab.io.regulondb_flat import confidence_rank, parse_confidence, read_flat
from genomelab.regulon import targets as rtargets
from genomelab.regulon.bsonio import GENE_DATAMART, GENE_EXPRESSION, OPERON_DATAMART, Source, iter_dump
from genomelab.regulon.data import NO_EXPRESSION, process_data, source_from_config
from genomelab.regulon.flat import FlatSource, read_expression_table, to_linear
from genomelab.regulon.synthetic import make_synthetic
from genomelab.regulon.targets import TargetData

SMALL_TARGETS = {"block_bp": 6144, "window_bp": 2048, "stride_bp": 1024}
LEVELS = ("Confirmed", "Strong", "Weak")
_POS_GENES = [
    "# RegulonDB 9.3 style (written by the test)",
    "# Columns:",
    "# (1) Gene identifier assigned by RegulonDB",
    "# (2) Gene name",
    "# (3) Blattner number (bnumber) of the gene",
    "# (4) Gene left end position in the genome",
    "# (5) Gene right end position in the genome",
    "# (6) DNA strand where the gene is coded",
    "# (7) Product name of the gene",
    "# (8) Evidence that supports the existence of the gene",
    "# (9) PMIDs list",
    "#",
]
_POS_OPERONS = [
    "# Columns:",
    "# (1) Operon name",
    "# (2) First gene-position left",
    "# (3) Last gene-position right",
    "# (4) DNA strand where the operon is coded",
    "# (5) Number of genes contained in the operon",
    "# (6) Name or Blattner number of the gene(s) contained in the operon",
    "# (7) Evidence that support the existence of the operon's TUs",
    "# (8) Evidence confidence level (Confirmed, Strong, Weak)",
]
_NUM_GENES = (
    "1)geneId\t2)geneName\t3)bnumber\t4)leftEndPos\t5)rightEndPos\t6)strand\t7)productName\t"
    "8)geneEvidences\t9)genePMIDS\t10)confidenceLevel\t11)relatedBnumbers\t12)otherDbsIds"
)
_NUM_OPERONS = (
    "1)operonId\t2)operonName\t3)firstGeneLeftPos\t4)lastGeneRightPos\t5)strand\t6)numberOfGenes\t"
    "7)operonGenes\t8)operonEvidence\t9)confidenceLevel"
)


@pytest.fixture(scope="module")
def content(tmp_path_factory):
    """One synthetic content as BSON dump docs, plus a confidence level per operon."""
    root = tmp_path_factory.mktemp("regulon_flat")
    paths = make_synthetic(root / "in", n_bp=30_720, seed=4)
    docs = {c: list(iter_dump(paths["dump"], c)) for c in (GENE_DATAMART, OPERON_DATAMART, GENE_EXPRESSION)}
    for i, d in enumerate(docs[OPERON_DATAMART]):
        d["operon"]["confidenceLevel"] = LEVELS[i % 3]
    # The dump carries the confidence levels too, so all four inputs hold the same content.
    dump = root / "dump" / "regulondb"
    dump.mkdir(parents=True)
    for c, ds in docs.items():
        write_bson_file(dump / f"{c}.bson", ds)
    return {"root": root, "genome": paths["genome"], "dump": root / "dump", "docs": docs}


def _genes(content) -> list[dict]:
    return [d["gene"] for d in content["docs"][GENE_DATAMART]]


def _operons(content) -> list[tuple[dict, list[str]]]:
    by_id = {g["id"]: g for g in _genes(content)}
    return [
        (d["operon"], [by_id[g["id"]]["name"] for g in d["transcriptionUnits"][0]["genes"]])
        for d in content["docs"][OPERON_DATAMART]
    ]


def _span(content, names: list[str]) -> tuple[int, int]:
    by_name = {g["name"]: g for g in _genes(content)}
    return min(by_name[n]["leftEndPosition"] for n in names), max(
        by_name[n]["rightEndPosition"] for n in names
    )


def _gene_rows(content, tail: str) -> list[str]:
    """The six leading gene columns both layouts share, then ``tail``."""
    return [
        f"{g['id']}\t{g['name']}\t{g['bnumber']}\t{g['leftEndPosition']}\t{g['rightEndPosition']}\t"
        f"{g['strand']}\t{tail.format(**g)}"
        for g in _genes(content)
    ]


def _operon_rows(content, members_of, tail) -> list[str]:
    """Operon rows: id/name columns, span, strand, members, then ``tail(operon)``."""
    rows = []
    for op, members in _operons(content):
        left, right = _span(content, members)
        rows.append(f"{left}\t{right}\t{op['strand']}\t{len(members)}\t{members_of(members)}\t{tail(op)}")
    return rows


def write_positional(content, out: Path) -> tuple[Path, Path]:
    """9.x layout: no header row, columns by position; operon members by name, comma-separated."""
    genes = out / "GeneProductSet.txt"
    genes.write_text("\n".join(_POS_GENES + _gene_rows(content, "protein {name}\t[EXP]\t123")) + "\n")
    operons = out / "OperonSet.txt"
    rows = [
        f"{op['name']}\t{row}"
        for (op, _), row in zip(
            _operons(content),
            _operon_rows(content, ",".join, lambda op: f"[BPP|Boundaries]\t{op['confidenceLevel']}"),
            strict=True,
        )
    ]
    operons.write_text("\n".join(_POS_OPERONS + rows) + "\n")
    return genes, operons


def write_numbered(content, out: Path) -> tuple[Path, Path]:
    """12.x datamart layout: numbered header; confidence as C/S/W; gzip; b-numbers as members."""
    genes = out / "GeneProductSet.tsv.gz"
    rows = _gene_rows(content, "protein\t[EXP]\t1;2\tC\t\t[REFSEQ:{bnumber}]")
    with gzip.open(genes, "wt") as fh:
        fh.write("# RegulonDB: 12.x style (written by the test)\n# Columns:\n" + _NUM_GENES + "\n")
        fh.write("\n".join(rows) + "\n")
    by_name = {g["name"]: g["bnumber"] for g in _genes(content)}
    operons = out / "OperonSet.tsv"
    rows = [
        f"{op['id']}\t{op['name']}\t{row}"
        for (op, _), row in zip(
            _operons(content),
            _operon_rows(
                content,
                lambda ms: ";".join(by_name[m] for m in ms),
                lambda op: f"[EXP]\t{op['confidenceLevel'][0]}",
            ),
            strict=True,
        )
    ]
    operons.write_text("# comment\n" + _NUM_OPERONS + "\n" + "\n".join(rows) + "\n")
    return genes, operons


def write_expression_table(content, path: Path) -> Path:
    """The dump's expression documents as a gene x sample matrix (17 digits: an exact round trip)."""
    frame = pd.DataFrame(
        [(d["datasetIds"][0], d["gene"]["bnumber"], d["tpm"]) for d in content["docs"][GENE_EXPRESSION]],
        columns=["sample", "bnumber", "tpm"],
    ).pivot(index="bnumber", columns="sample", values="tpm")
    frame.to_csv(path, sep="\t" if path.suffix == ".tsv" else ",", float_format="%.17g")
    return path


def _fake_mongo(monkeypatch, dump: Path) -> None:
    import pymongo

    class FakeCursor(list):
        def limit(self, n):
            return FakeCursor(self[:n])

    class FakeCollection:
        def __init__(self, name):
            self.name = name

        def find(self, query, batch_size):
            return FakeCursor(iter_dump(dump, self.name))

    class FakeClient:
        def __init__(self, uri):
            self.uri = uri

        def __getitem__(self, database):
            return {c: FakeCollection(c) for c in (GENE_DATAMART, OPERON_DATAMART, GENE_EXPRESSION)}

        def close(self):
            pass

    monkeypatch.setattr(pymongo, "MongoClient", FakeClient)
    monkeypatch.setenv("REGULON_FLAT_TEST_URI", "mongodb://host/db")


def _targets(source, content, out: Path, min_confidence=None) -> tuple[TargetData, pd.DataFrame, dict]:
    genes, operons, norm, report = process_data(source, content["genome"], min_confidence=min_confidence)
    out.mkdir(parents=True)
    genes.to_csv(out / "genes.tsv", sep="\t", index=False, float_format="%.6g")
    operons.to_csv(out / "operons.tsv", sep="\t", index=False)
    rtargets.make_targets(
        out / "genes.tsv", out / "operons.tsv", content["genome"], SMALL_TARGETS, out / "targets.h5", seed=2
    )
    return TargetData(out / "targets.h5"), operons, report


def _assert_same_targets(a: TargetData, b: TargetData) -> None:
    np.testing.assert_array_equal(a.operon, b.operon)
    np.testing.assert_array_equal(a.density, b.density)
    np.testing.assert_array_equal(a.expression, b.expression)
    pd.testing.assert_frame_equal(a.blocks, b.blocks)


@pytest.mark.parametrize("min_confidence", [None, "strong"])
def test_flat_datamart_bson_and_mongodb_give_identical_targets(
    content, tmp_path, monkeypatch, min_confidence
):
    root = tmp_path / "files"
    root.mkdir()
    table = write_expression_table(content, root / "expression.csv")
    pos = FlatSource(*write_positional(content, root), expression=table)
    num_dir = root / "num"
    num_dir.mkdir()
    num = FlatSource(*write_numbered(content, num_dir), expression=table)
    _fake_mongo(monkeypatch, content["dump"])
    results = {
        name: _targets(src, content, tmp_path / name, min_confidence)
        for name, src in {
            "bson": Source(content["dump"]),
            "mongodb": Source(uri_env="REGULON_FLAT_TEST_URI"),
            "flat_9x": pos,
            "datamart_12x": num,
        }.items()
    }
    ref, ref_operons, ref_report = results["bson"]
    assert ref.operon.any() and np.isfinite(ref.expression).any()
    for name, (data, operons, report) in results.items():
        _assert_same_targets(ref, data)
        # Operon ids differ by layout (9.x files have names only); membership does not.
        assert operons["bnumbers"].tolist() == ref_operons["bnumbers"].tolist(), name
        assert report["operons_by_confidence"] == ref_report["operons_by_confidence"], name
    n_ops = len(content["docs"][OPERON_DATAMART])
    if min_confidence == "strong":
        # Every third operon is Weak and is left out by all four readers.
        assert ref_report["n_operons_below_confidence"] == len(range(2, n_ops, 3)) > 0
        assert len(ref_operons) == n_ops - ref_report["n_operons_below_confidence"]
    else:
        assert len(ref_operons) == n_ops


def test_kinds_layouts_and_confidence_are_detected(content, tmp_path):
    genes, operons = write_positional(content, tmp_path)
    t = read_flat(operons)
    assert (t.kind, t.layout) == ("operons", "positional")
    assert {r["confidence"] for r in t.records} == {"confirmed", "strong", "weak"}
    assert t.records[0]["strand"] in "+-" and len(t.records[0]["genes"]) >= 1
    assert read_flat(genes).records[0]["confidence"] is None  # the 9.3 gene file has no level column
    (tmp_path / "n").mkdir()
    ng, no = write_numbered(content, tmp_path / "n")
    assert (read_flat(ng).kind, read_flat(ng).layout, read_flat(no).layout) == (
        "genes",
        "numbered",
        "numbered",
    )
    # Columns by name: a release that reorders columns reads the same.
    cols = _NUM_OPERONS.split("\t")
    order = [1, 0, 8, 2, 3, 4, 5, 6, 7]
    lines = no.read_text().splitlines()[1:]
    shuffled = ["\t".join(cols[i] for i in order)]
    shuffled += ["\t".join(line.split("\t")[i] for i in order) for line in lines[1:]]
    (tmp_path / "shuffled.tsv").write_text("\n".join(shuffled) + "\n")
    assert read_flat(tmp_path / "shuffled.tsv").records == read_flat(no).records
    # 12.x gene files without a b-number column: taken from the cross-references.
    ids = tmp_path / "GeneProductAllIdentifiersSet.tsv"
    ids.write_text(
        "1)geneId\t2)geneName\t3)leftEndPos\t4)rightEndPos\t5)strand\t6)geneSynonyms\t7)otherDbsGeneIds\n"
        "G1\tthrL\t190\t255\tforward\t\t[ASAP:ABE-0000006][REFSEQ:b0001]\n"
    )
    assert read_flat(ids).records[0]["bnumber"] == "b0001"
    assert [parse_confidence(v) for v in ("C", "strong", "Weak", "", "?")] == [
        "confirmed",
        "strong",
        "weak",
        None,
        None,
    ]
    assert (
        confidence_rank("confirmed")
        > confidence_rank("strong")
        > confidence_rank("weak")
        > confidence_rank(None)
    )


def test_other_kinds_read_by_name_and_position(tmp_path):
    ri = tmp_path / "RIdata.txt"
    ri.write_text(
        "# RegulonDB 11.x style\n"
        "1)riId\t2)riType\t3)tfId\t4)tfName\t5)cnfName\t6)tfrsID\t7)tfrsLeft\t8)tfrsRight\t9)strand\t"
        "10)tfrsSeq\t11)riFunction\t12)promoterID\t13)promoterName\t14)tss\t15)tfrsDistToPm\t16)firstGene\t"
        "17)tfrsDistTo1Gene\t18)targetTuOrGene\t19)confidenceLevel\n"
        "RI1\ttf-promoter\tTF1\tAbcR\tAbcR\tS1\t100\t110\tforward\tacgt\t-\tP1\tabcp\t150\t-45\tabcA\t-60\tTU1\tS\n"
    )
    rec = read_flat(ri).records[0]
    assert (rec["regulator"], rec["target"], rec["effect"], rec["confidence"]) == (
        "AbcR",
        "abcA",
        "-",
        "strong",
    )
    net = tmp_path / "network_tf_gene.txt"
    net.write_text(
        "# Columns:\n#  (1) Transcription Factor (TF) name\n#  (2) Gene regulated by the TF (regulated gene)\n"
        "#  (3) Regulatory effect\n#  (4) Evidence\n#  (5) Evidence Type [Weak, Strong, Confirmed]\n"
        "AbcR\tabcA\t+\t[GEA]\tWeak\n"
    )
    assert read_flat(net).kind == "interactions" and read_flat(net).records[0]["confidence"] == "weak"
    prom = tmp_path / "PromoterSet.tsv"
    prom.write_text(
        "1)pmId\t2)pmName\t3)strand\t4)posTSS\t5)sigmaFactor\t6)pmSequence\t7)firstGeneName\t8)pmEvidence\t"
        "9)confidenceLevel\nPM1\tabcp\treverse\t150\tsigma70\tacgt\tabcA\t[EXP]\tC\n"
    )
    rec = read_flat(prom).records[0]
    assert (rec["strand"], rec["tss"], rec["confidence"]) == ("-", 150, "confirmed")
    tu = tmp_path / "TUSet.txt"
    tu.write_text(
        "# (1) Transcription Unit identifier assigned by RegulonDB\n# (2) Transcription unit name\n"
        "# (3) Operon name\n# (4) Name of the gene(s)\n# (5) Promoter Name\n# (6) Evidence\n"
        "# (7) Evidence confidence level (Confirmed, Strong, Weak)\n"
        "TU1\tabcAB\tabcAB\tabcA,abcB\tabcp\t[EXP]\tConfirmed\n"
    )
    assert read_flat(tu).records[0]["genes"] == ["abcA", "abcB"]
    sites = tmp_path / "BindingSiteSet.txt"
    sites.write_text(
        "# (1) Transcription Factor (TF) identifier assigned by RegulonDB\n# (2) TF name\n"
        "# (3) TF binding site (TF-bs) identifier assigned by RegulonDB\n"
        "TF1\tAbcR\tS1\t100\t110\tforward\tRI1\tabcAB\t-\tabcp\t-45.5\tacgt\t[EXP]\tStrong\n"
    )
    table = read_flat(sites)
    assert (table.kind, table.records[0]["left"], table.records[0]["confidence"]) == ("sites", 100, "strong")
    # An interaction whose site has no mapped position (empty coordinates, or None in 11.x+
    # exports) reads with empty ones; it stopped the file ("sites row has no left").
    sites.write_text(sites.read_text() + "TF1\tAbcR\t\t\t\t\tRI2\tabcAB\t-\tabcp\t\t\t[GEA]\tWeak\n")
    assert [(r["left"], r["right"], r["strand"]) for r in read_flat(sites).records[1:]] == [
        (None, None, None)
    ]
    term = tmp_path / "TerminatorSet.txt"
    term.write_text(
        "# (1) Terminator identifier assigned by RegulonDB\n# (2) Terminator left end position\n"
        "T1\t300\t340\treverse\trho-independent\tacgt\t[EXP]\tWeak\n"
    )
    assert read_flat(term).records[0]["strand"] == "-"


def test_a_positional_file_of_another_layout_is_refused_not_misread(tmp_path):
    """A block documenting other columns (here no "number of genes" column) is another
    release's layout: read by the 9.x positions its evidence would be the operon's genes."""
    other = [d for d in _POS_OPERONS if "(5)" not in d]
    other = [re.sub(r"\((\d)\)", lambda m: f"({int(m.group(1)) - (int(m.group(1)) > 5)})", d) for d in other]
    bad = tmp_path / "OperonSet.txt"
    bad.write_text("\n".join([*other, "abcAB\t10\t20\tforward\tabcA,abcB\t[EXP]\tStrong"]) + "\n")
    with pytest.raises(
        FormatError, match=r"OperonSet.txt, line 9: its column block describes column \(6\) as"
    ):
        read_flat(bad)
    # The same operon in the 9.x layout reads.
    bad.write_text("\n".join([*_POS_OPERONS, "abcAB\t10\t20\tforward\t2\tabcA,abcB\t[EXP]\tStrong"]) + "\n")
    assert read_flat(bad).records[0]["genes"] == ["abcA", "abcB"]


def test_bad_files_name_file_and_line(tmp_path):
    bad = tmp_path / "OperonSet.txt"
    bad.write_text("\n".join([*_POS_OPERONS, "abc\t10\t20\tforward\t1\tabcA\t[EXP]\tMaybe"]) + "\n")
    with pytest.raises(FormatError, match=r"OperonSet.txt, line 10: evidence confidence level 'Maybe'"):
        read_flat(bad)
    bad.write_text("\n".join([*_POS_OPERONS, "abc\t10\tx\tforward\t1\tabcA\t[EXP]\tWeak"]) + "\n")
    with pytest.raises(FormatError, match=r"line 10: right 'x' is not a position"):
        read_flat(bad)
    bad.write_text("\n".join([*_POS_OPERONS, "abc\t10\t20\tsideways\t1\tabcA\t[EXP]\tWeak"]) + "\n")
    with pytest.raises(FormatError, match=r"line 10: strand 'sideways'"):
        read_flat(bad)
    unknown = tmp_path / "mystery.txt"
    unknown.write_text("# nothing known\na\tb\n")
    with pytest.raises(FormatError, match=r"mystery.txt, line 2: cannot tell the file kind"):
        read_flat(unknown)
    nocol = tmp_path / "genes.tsv"
    nocol.write_text("1)geneId\t2)geneName\t3)strand\nG1\tabc\tforward\n")
    with pytest.raises(
        FormatError, match=r"genes.tsv, line 1: genes header lacks column\(s\) for \['left', 'right'"
    ):
        read_flat(nocol)
    empty = tmp_path / "empty.txt"
    empty.write_text("# only comments\n")
    with pytest.raises(FormatError, match="no data rows"):
        read_flat(empty)
    genes = tmp_path / "g.txt"
    genes.write_text("\n".join([*_POS_GENES, "G1\tabc\tb0001\t10\t20\tforward\tp\t[EXP]\t1"]) + "\n")
    with pytest.raises(FormatError, match="is a RegulonDB genes file, not the operons file"):
        list(FlatSource(genes=genes, operons=genes).iter(OPERON_DATAMART))
    matrix = tmp_path / "expr.csv"
    matrix.write_text(",s1,s2\nb0001,1.0,2.0\nb0002,3.0,oops\n")
    with pytest.raises(FormatError, match=r"expr.csv, line 3: sample 's2': value 'oops'"):
        read_expression_table(matrix)


def test_expression_table_transforms(content, tmp_path):
    table = write_expression_table(content, tmp_path / "e.tsv")
    lin = read_expression_table(table)
    log2 = tmp_path / "log2.csv.gz"
    np.log2(lin + 1).to_csv(log2)
    np.testing.assert_allclose(
        to_linear(read_expression_table(log2).to_numpy(), "log2p1"), lin.to_numpy(), rtol=1e-9
    )
    a = process_data(FlatSource(*write_positional(content, tmp_path), expression=table), content["genome"])
    b = process_data(
        FlatSource(*write_positional(content, tmp_path), expression=log2, transform="log2p1"),
        content["genome"],
    )
    np.testing.assert_allclose(a[0]["z"], b[0]["z"], rtol=1e-9)
    # A table also replaces a dump's expression collection.
    cfg = {
        "flat_files": {"genes": None, "operons": None},
        "mongodb_uri_env": None,
        "database": "regulondb",
        "max_docs_per_file": 0,
        "expression": {"value": "tpm", "table": str(log2), "table_transform": "log2p1"},
    }
    c = process_data(source_from_config(cfg, str(content["dump"])), content["genome"])
    np.testing.assert_allclose(a[0]["z"], c[0]["z"], rtol=1e-9)
    # A log2 table read as linear (table_transform left at its default) is warned about,
    # naming the key that fixes it.
    d = process_data(FlatSource(*write_positional(content, tmp_path), expression=log2), content["genome"])
    said = [w for w in d[3]["warnings"] if "log-transformed" in w]
    assert len(said) == 1 and "regulon.expression.table_transform" in said[0], d[3]["warnings"]


def test_an_expression_table_of_other_ids_says_so(content, tmp_path):
    """A transposed table (samples as rows) holds values, none of a known gene: the error
    says the first column must be b-numbers, not that the value field is missing."""
    table = read_expression_table(write_expression_table(content, tmp_path / "e.tsv"))
    transposed = tmp_path / "t.csv"
    table.T.to_csv(transposed)
    source = FlatSource(*write_positional(content, tmp_path), expression=transposed)
    with pytest.raises(ValueError, match=r"none of the \d+ gene IDs .* b-numbers in its first column"):
        process_data(source, content["genome"])


def test_genes_beyond_the_genome_are_dropped_and_named(content, tmp_path):
    genes, operons = write_positional(content, tmp_path)
    lines = genes.read_text().splitlines()
    row = next(i for i, line in enumerate(lines) if not line.startswith("#"))
    cells = lines[row].split("\t")
    cells[3], cells[4] = "9000000", "9000300"
    lines[row] = "\t".join(cells)
    genes.write_text("\n".join(lines) + "\n")
    report = process_data(FlatSource(genes, operons), content["genome"])[3]
    assert any("1 genes end beyond" in w and cells[2] in w for w in report["warnings"]), report["warnings"]


def test_operons_whose_members_match_no_gene_are_a_warning_naming_them(content, tmp_path):
    """Operon members in another ID scheme than the genes' leave every operon unresolved;
    the data report says so with the members, not only a constant operon target."""
    genes, operons = write_positional(content, tmp_path)
    report = process_data(FlatSource(genes, operons), content["genome"])[3]
    assert report["n_operons_unresolved"] == 0 and not any("name no gene" in w for w in report["warnings"])
    lines = operons.read_text().splitlines()
    renamed = [
        line if line.startswith("#") else "\t".join([*c[:5], f"X{i}", *c[6:]])
        for i, (line, c) in enumerate((line, line.split("\t")) for line in lines)
    ]
    operons.write_text("\n".join(renamed) + "\n")
    report = process_data(FlatSource(genes, operons), content["genome"])[3]
    n = report["n_operons_unresolved"]
    assert n == len(content["docs"][OPERON_DATAMART])
    assert any(f"{n} of {n} operons name no gene" in w and "'X" in w for w in report["warnings"]), report[
        "warnings"
    ]


def test_operons_beyond_a_shorter_genome_are_not_said_to_use_another_id_scheme(content, tmp_path):
    """Operons whose genes are known but end beyond the genome (dropped with their own
    warning) are no members in another ID scheme: the ID-scheme warning stays quiet."""
    from genomelab.io.fasta import read_fasta

    genes, operons = write_positional(content, tmp_path)
    name, seq = next(iter(read_fasta(content["genome"])))
    short = tmp_path / "short.fna"
    short.write_text(f">{name}\n{seq[: len(seq) // 4].decode()}\n")
    report = process_data(FlatSource(genes, operons), short)[3]
    assert any("genes end beyond" in w for w in report["warnings"]), report["warnings"]
    assert report["n_operons_unresolved"] > len(content["docs"][OPERON_DATAMART]) // 2
    assert not any("name no gene" in w for w in report["warnings"]), report["warnings"]


def test_no_expression_does_not_stop_the_run(content, tmp_path):
    """A dump without geneExpression, and flat files without a table, both process; the report says so."""
    dump = tmp_path / "dump" / "regulondb"
    dump.mkdir(parents=True)
    for c in (GENE_DATAMART, OPERON_DATAMART):
        write_bson_file(dump / f"{c}.bson", content["docs"][c])
    for source in (Source(tmp_path / "dump"), FlatSource(*write_positional(content, tmp_path))):
        genes, operons, norm, report = process_data(source, content["genome"])
        assert not report["has_expression"] and NO_EXPRESSION in report["warnings"]
        assert genes["z"].isna().all() and len(operons) == len(content["docs"][OPERON_DATAMART])
        assert norm.n_genes == 0


def test_chain_without_expression_runs_and_says_so(content, tmp_path):
    """Flat files without any expression run the whole chain (gate included); the summary
    has no expression comparison and says why."""
    import json

    import torch
    from genomelab.regulon.cli import main

    torch.set_num_threads(1)
    genes, operons = write_positional(content, tmp_path)
    out = tmp_path / "o"
    small = {
        "targets": SMALL_TARGETS,
        "model": {"channels": 8, "n_layers": 2},
        "baseline": {"max_train_rows": 5000},
        "diagnostics": {"n_check_windows": 16},
        "train": {"max_epochs": 2, "batch_size": 16},
        "plot_bp": 5000,
    }
    (tmp_path / "cfg.yaml").write_text(json.dumps({"regulon": small}))
    main(
        [
            *("--operons", str(operons), "--genes", str(genes), "--config", str(tmp_path / "cfg.yaml")),
            *("--genome", str(content["genome"]), "--out", str(out), "--device", "cpu"),
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert [c["primary"] for c in summary["comparisons"]] == [
        "density_r2",
        "operon_bp_auroc",
        "pair_auroc",
        "operon_auroc",
    ]
    assert any("expression head was not trained" in n for n in summary["notes"])
    report = json.loads((out / "data" / "data_report.json").read_text())
    assert report["has_expression"] is False and report["n_genes_measured"] == 0


def _random_expression_table(content, path: Path, n_samples: int) -> Path:
    """Log-normal TPM-like values of every synthetic gene over ``n_samples`` samples."""
    bnumbers = sorted({g["bnumber"] for g in _genes(content)})
    rng = np.random.default_rng(3)
    frame = pd.DataFrame(
        np.exp(rng.normal(3, 1, (len(bnumbers), n_samples))),
        index=pd.Index(bnumbers, name="bnumber"),
        columns=[f"s{j}" for j in range(n_samples)],
    )
    frame.to_csv(path)
    return path


def test_too_few_samples_for_coexpression_are_said_in_the_report_and_log(content, tmp_path, caplog):
    """5 samples (fewer than the 8 a pair's co-expression needs): no pair gets one, and the
    data report's coexpression note and the log say so, naming the table and the number of
    samples, instead of silently leaving the co-expression readout out."""
    from genomelab.regulon.data import MIN_COEXPRESSION_DATASETS

    table = _random_expression_table(content, tmp_path / "five.csv", 5)
    source = FlatSource(*write_positional(content, tmp_path), expression=table)
    with caplog.at_level("WARNING", logger="genomelab.regulon.data"):
        report = process_data(source, content["genome"])[3]
    co = report["coexpression"]
    assert co["n_pairs"] > 0 and co["n_with_coexpression"] == 0
    assert "five.csv" in co["note"] and "has 5 dataset(s)" in co["note"]
    assert f"at least {MIN_COEXPRESSION_DATASETS}" in co["note"]
    assert any(co["note"] in r.getMessage() for r in caplog.records)
    # With enough samples the pairs get theirs and there is nothing to say.
    table = _random_expression_table(content, tmp_path / "twelve.csv", 12)
    report = process_data(
        FlatSource(*write_positional(content, tmp_path), expression=table), content["genome"]
    )[3]
    assert report["coexpression"]["n_with_coexpression"] > 0 and report["coexpression"]["note"] is None


def test_an_all_na_sample_column_is_named_in_the_report(content, tmp_path):
    """A sample column with no value at all is left out of the datasets; the report says which,
    from which table, instead of the dataset count silently dropping by one."""
    path = _random_expression_table(content, tmp_path / "na.csv", 10)
    frame = pd.read_csv(path, index_col=0)
    frame["s4"] = np.nan
    frame.to_csv(path)
    report = process_data(
        FlatSource(*write_positional(content, tmp_path), expression=path), content["genome"]
    )[3]
    assert report["n_datasets"] == 9
    said = [w for w in report["warnings"] if "no tpm value for any gene" in w]
    assert len(said) == 1 and "na.csv" in said[0] and "'s4'" in said[0] and "9 datasets are used" in said[0]


def test_a_gene_twice_in_the_expression_table_is_refused_naming_both_lines(tmp_path):
    matrix = tmp_path / "dup.csv"
    matrix.write_text(",s1,s2\nb0001,1.0,2.0\nb0002,3.0,4.0\nb0001,5.0,6.0\n")
    with pytest.raises(FormatError, match=r"dup.csv, line 4: gene 'b0001' appears twice \(first on line 2\)"):
        read_expression_table(matrix)


def test_an_expression_table_is_read_in_chunks_that_name_lines_across_them(tmp_path, monkeypatch):
    """A table is read a few rows at a time (a compendium of thousands of samples is never
    held whole beside the values it becomes); its checks still name the table's line."""
    from genomelab.regulon import flat

    monkeypatch.setattr(flat, "CHUNK_CELLS", 4)  # two rows of two samples a chunk
    lines = [",s1,s2", *(f"b{i:04d},{i}.5,{2 * i}" for i in range(7))]
    matrix = tmp_path / "expr.csv"
    matrix.write_text("\n".join(lines) + "\n")
    chunks = list(flat.iter_expression_table(matrix))
    assert [len(c) for c in chunks] == [2, 2, 2, 1]
    whole = pd.read_csv(matrix, index_col=0).astype(float)
    pd.testing.assert_frame_equal(read_expression_table(matrix), whole)
    docs = list(FlatSource(expression=matrix).iter(GENE_EXPRESSION))
    assert len(docs) == 14 and docs[-1]["_id"] == "s2,b0006" and docs[-1]["tpm"] == 12.0
    dup = tmp_path / "dup.csv"
    dup.write_text("\n".join([*lines, "b0001,1,1"]) + "\n")
    with pytest.raises(FormatError, match=r"dup.csv, line 9: gene 'b0001' appears twice \(first on line 3\)"):
        list(FlatSource(expression=dup).iter(GENE_EXPRESSION))
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines[:6], "b0005,1,oops", *lines[7:]]) + "\n")
    with pytest.raises(FormatError, match=r"bad.csv, line 7: sample 's2': value 'oops' is not a number"):
        read_expression_table(bad)
    header = tmp_path / "header.csv"
    header.write_text(",s1,s2\n")
    with pytest.raises(
        FormatError, match="header.csv: expression table has no sample columns or no gene rows"
    ):
        read_expression_table(header)


def _dump_with_gene_names(content, tmp_path):
    """A dump under tmp_path/dump whose genes have names other than their b-numbers (the
    synthetic genes are named by them), and its expression table: (name of each b-number,
    the table keyed by b-numbers)."""
    import copy

    docs = copy.deepcopy(content["docs"])
    for i, d in enumerate(docs[GENE_DATAMART]):
        d["gene"]["name"] = f"gen{i:03d}"
    dump = tmp_path / "dump" / "regulondb"
    dump.mkdir(parents=True)
    for c, ds in docs.items():
        write_bson_file(dump / f"{c}.bson", ds)
    name_of = {d["gene"]["bnumber"]: d["gene"]["name"] for d in docs[GENE_DATAMART]}
    return name_of, read_expression_table(write_expression_table(content, tmp_path / "e.tsv"))


def test_an_expression_table_of_gene_names_says_to_use_b_numbers(content, tmp_path):
    """Gene names where b-numbers belong: the error says they are the genes' names and gives
    one name's b-number, not only that no ID is a b-number."""

    from genomelab.regulon.flat import with_expression_table

    name_of, table = _dump_with_gene_names(content, tmp_path)
    named = tmp_path / "named.csv"
    table.rename(index=name_of).to_csv(named)
    first = sorted(set(table.rename(index=name_of).index))[0]
    bnumber = next(b for b, n in name_of.items() if n == first)
    source = with_expression_table(Source(tmp_path / "dump"), named, "linear", "tpm")
    with pytest.raises(ValueError, match=rf"are gene names \(e.g. '{first}' is {bnumber}\): replace them"):
        process_data(source, content["genome"])


def test_a_table_of_mostly_gene_names_is_read_with_a_warning_naming_them(content, tmp_path):
    """Most rows keyed by gene names, a few by b-numbers: the b-number rows are used, and the
    data report's warnings say how many IDs are names (with one name's b-number) rather than
    only that some IDs match no gene."""

    from genomelab.regulon.flat import with_expression_table

    name_of, table = _dump_with_gene_names(content, tmp_path)
    keep = list(table.index[:3])  # these rows keep their b-numbers
    renamed = table.rename(index={b: n for b, n in name_of.items() if b not in keep})
    path = tmp_path / "mostly_named.csv"
    renamed.to_csv(path)
    source = with_expression_table(Source(tmp_path / "dump"), path, "linear", "tpm")
    genes, _, _, report = process_data(source, content["genome"])
    n_named = len(table) - len(keep)
    said = [w for w in report["warnings"] if "gene names" in w]
    assert len(said) == 1 and f"{n_named} of them gene names" in said[0] and "replace them" in said[0]
    assert genes.loc[genes["bnumber"].isin(keep), "n_datasets"].gt(0).all()
    assert genes.loc[~genes["bnumber"].isin(keep), "n_datasets"].eq(0).all()


def test_genes_without_a_position_are_read_and_counted_not_refused(content, tmp_path):
    """RegulonDB lists genes known only from the literature ('phantom' genes) without
    coordinates or strand: empty cells in 9.x files, the word ``None`` in 11.x/12.x files
    (their export writes Python's None). The file reads; the data step drops and counts them."""
    genes, operons = write_positional(content, tmp_path)
    genes.write_text(genes.read_text() + "ECK120099999\tphnX\t\t\t\t\tphantom protein\t\t\n")
    (tmp_path / "n").mkdir()
    num_genes, _ = write_numbered(content, tmp_path / "n")
    dm = tmp_path / "n" / "GeneProductSet_none.tsv"
    with gzip.open(num_genes, "rt") as fh:
        text = fh.read()
    dm.write_text(
        text + "RDBECOLIGNC01145\tphnY\tNone\tNone\tNone\tNone\tNone\tNone\tNone\tNone\tNone\tNone\n"
    )
    for path, name in ((genes, "phnX"), (dm, "phnY")):
        rec = read_flat(path).records[-1]
        assert (rec["name"], rec["left"], rec["right"], rec["strand"]) == (name, None, None, None)
        _, _, _, report = process_data(FlatSource(path, operons), content["genome"])
        assert report["n_genes_dropped_bad_docs"] == 1, path
        assert report["n_genes"] == len(_genes(content))
    # A position that is there but not a number is still an error naming file and line.
    genes.write_text(genes.read_text().replace("phantom protein", "x").replace("phnX\t\t\t", "phnX\t\tx\t"))
    with pytest.raises(FormatError, match=r"GeneProductSet.txt, line \d+: left 'x' is not a position"):
        read_flat(genes)


def test_a_file_in_latin_1_reads(content, tmp_path):
    """Product names with accents or Greek letters in an ISO-8859-1 file (not UTF-8) read as
    the same records; before, a bare UnicodeDecodeError named neither file nor line."""
    genes, _ = write_positional(content, tmp_path)
    ref = read_flat(genes).records
    lines = genes.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if not line.startswith("#"))
    lines[i] = lines[i].replace("protein", "prote\u00edna \u00b5-subunit")
    (tmp_path / "latin1.txt").write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    assert read_flat(tmp_path / "latin1.txt").records == ref
    # Saved again by a spreadsheet as "UTF-8 with BOM": the mark before the first '#' made
    # that line a data row ("line 1: genes row has no left").
    (tmp_path / "bom.txt").write_bytes(b"\xef\xbb\xbf" + genes.read_bytes())
    assert read_flat(tmp_path / "bom.txt").records == ref


def test_a_file_with_lone_carriage_return_line_ends_reads(content, tmp_path):
    """A download saved by Excel for Mac as tab-delimited text ends its lines with a lone CR.
    Before this round the text reader split such lines; the byte reader of the latin-1 fix
    read the file as one comment line: "no data rows after the '#' comment lines". Lines
    end at LF, CRLF or CR again, with the latin-1 fallback and the BOM kept."""
    genes, _ = write_positional(content, tmp_path)
    ref = read_flat(genes).records
    lines = genes.read_text().splitlines()
    i = next(k for k, line in enumerate(lines) if not line.startswith("#"))
    lines[i] = lines[i].replace("protein", "prote\u00edna")
    mac = tmp_path / "mac.txt"
    mac.write_bytes(b"\xef\xbb\xbf" + ("\r".join(lines) + "\r").encode("latin-1"))
    assert read_flat(mac).records == ref
