"""regulon: BSON reading, processing, targets, baselines, metrics, diagnostics, model, chain."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from genomelab.io.bson import write_bson_file as write_bson
from genomelab.io.errors import FormatError
from genomelab.io.tables import read_given_assignment
from genomelab.regulon import baselines as rbase
from genomelab.regulon import data as rdata
from genomelab.regulon import diagnostics as rdiag
from genomelab.regulon import evaluate as reval
from genomelab.regulon import targets as rtargets
from genomelab.regulon import training as rtraining
from genomelab.regulon.baselines import (
    BaselineConfig,
    context_frequencies,
    kmer_bin_counts,
    kmer_rc_permutation,
)
from genomelab.regulon.bsonio import GENE_EXPRESSION, Source, check_dump, iter_dump
from genomelab.regulon.data import Normaliser, process_data, read_annotation
from genomelab.regulon.diagnostics import (
    DiagnosticsConfig,
    loss_checks,
    overfit_check,
    run_diagnostics,
    split_checks,
    target_checks,
)
from genomelab.regulon.metrics import gene_means, regression_metrics
from genomelab.regulon.model import RegulonModelConfig, RegulonNet, rc_codes, rc_track
from genomelab.regulon.synthetic import make_synthetic
from genomelab.regulon.targets import (
    TargetConfig,
    TargetData,
    bp_tracks,
    density_track,
    pool_expression,
    read_genome,
    reverse_complement_codes,
)
from genomelab.regulon.tracks import write_tracks
from genomelab.report.summary import pair_key, read_module_summary
from genomelab.train.engine import TrainConfig
from regulon_toy import noisy_tracks, truth_tracks
from scipy import stats

DATA = Path(__file__).parent / "data" / "regulon"
ROOT = Path(__file__).resolve().parents[1]
SMALL_TARGETS = {"block_bp": 6144, "window_bp": 2048, "stride_bp": 1024}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A synthetic dump, processed and turned into targets (shared by several tests)."""
    root = tmp_path_factory.mktemp("regulon_synth")
    paths = make_synthetic(root / "in", n_bp=61_440, seed=1)
    d = root / "data"
    rdata.process(
        Source(paths["dump"]),
        paths["genome"],
        d / "genes.tsv",
        d / "operons.tsv",
        d / "norm_stats.json",
        d / "data_report.json",
    )
    rtargets.make_targets(
        d / "genes.tsv", d / "operons.tsv", paths["genome"], SMALL_TARGETS, d / "targets.h5", seed=3
    )
    return {"root": root, **paths, "data": d}


# ------------------------------------------------------------------------------ BSON
def test_dump_layout_and_missing_collection(tmp_path):
    (tmp_path / "regulondb").mkdir()
    write_bson(tmp_path / "regulondb" / "geneExpression.bson", [{"_id": 1}])
    assert len(list(iter_dump(tmp_path, GENE_EXPRESSION))) == 1
    with pytest.raises(FileNotFoundError, match="no operonDatamart.bson"):
        list(iter_dump(tmp_path, "operonDatamart"))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(iter_dump(tmp_path / "nope", GENE_EXPRESSION))


def test_check_dump_names_the_key_and_collections_in_another_format(tmp_path):
    """A dump checked when Snakemake starts: operons are required, genes unless the annotation
    gives them, and a collection saved as JSON is named as not read (mongodump's own
    <c>.metadata.json is not)."""
    db = tmp_path / "regulondb"
    db.mkdir()
    # The schema's empty default (no dump, flat files nor MongoDB given): not the working
    # directory searched as a dump ("dump folder . has no operonDatamart").
    with pytest.raises(FileNotFoundError, match=r"^regulon.dump_dir is empty: .*regulon.flat_files"):
        check_dump("")
    with pytest.raises(FileNotFoundError, match="regulon.dump_dir .*nope is not a folder"):
        check_dump(tmp_path / "nope")
    write_bson(db / "geneDatamart.bson", [{"_id": 1}])
    (db / "operonDatamart.metadata.json").write_text("{}")
    with pytest.raises(
        FileNotFoundError, match=r"no operonDatamart.bson\[.gz\] .*\)?; the regulon module needs its operons$"
    ):
        check_dump(tmp_path)
    (db / "operonDatamart.json").write_text("{}")
    with pytest.raises(
        FileNotFoundError, match=r"operonDatamart.json'\] is not read: only mongodump's BSON is"
    ):
        check_dump(tmp_path)
    write_bson(db / "operonDatamart.bson.gz", [{"_id": 2}])
    check_dump(tmp_path)
    (db / "geneDatamart.bson").unlink()
    with pytest.raises(FileNotFoundError, match="needs its genes"):
        check_dump(tmp_path)
    check_dump(tmp_path, genes_elsewhere=True)


def test_mongo_uri_comes_from_environment_only(monkeypatch):
    monkeypatch.delenv("REGULON_TEST_URI", raising=False)
    with pytest.raises(ValueError, match="REGULON_TEST_URI"):
        list(Source(uri_env="REGULON_TEST_URI").iter(GENE_EXPRESSION))
    with pytest.raises(ValueError, match="exactly one"):
        Source(dump_dir="x", uri_env="Y")


# ------------------------------------------------------------------------ processing
def test_process_joins_on_bnumbers_and_normalises(synth):
    genes = pd.read_csv(synth["data"] / "genes.tsv", sep="\t")
    norm = Normaliser.load(synth["data"] / "norm_stats.json")
    # Reference: mean of log1p over the two datasets, then z with the saved statistics.
    docs = list(iter_dump(synth["dump"], GENE_EXPRESSION))
    ref = pd.DataFrame([(d["gene"]["bnumber"], np.log1p(d["tpm"])) for d in docs], columns=["b", "v"])
    ref = ref.groupby("b")["v"].mean()
    assert norm.mean == pytest.approx(ref.mean()) and norm.std == pytest.approx(ref.std(ddof=0))
    z = genes.set_index("bnumber")["z"]
    np.testing.assert_allclose(z.loc[ref.index], (ref - ref.mean()) / ref.std(ddof=0), rtol=1e-5)
    assert (genes["n_datasets"] == 2).all()
    report = json.loads((synth["data"] / "data_report.json").read_text())
    assert report["n_genes_measured"] == len(genes) and 0.5 < report["coverage"]["measured_fraction"] < 0.9
    operons = pd.read_csv(synth["data"] / "operons.tsv", sep="\t")
    assert (operons["n_genes"] >= 1).all() and set(genes["operon_id"].dropna()) <= set(operons["operon_id"])


def test_normaliser_roundtrip(tmp_path):
    norm = Normaliser.fit(np.log1p([0.0, 10.0, 100.0, 1000.0]), "tpm")
    norm.save(tmp_path / "n.json")
    again = Normaliser.load(tmp_path / "n.json")
    raw = np.array([5.0, 50.0])
    np.testing.assert_allclose(again.inverse_log(again.transform(raw)), np.log1p(raw))
    with pytest.raises(ValueError, match="std > 0"):
        Normaliser("tpm", 1.0, 0.0, 3)


def test_suspicious_units_are_reported(tmp_path):
    paths = make_synthetic(tmp_path, n_bp=20_000, seed=2)
    flags = tmp_path / "flags"
    (flags / "regulondb").mkdir(parents=True)
    for f in ("geneDatamart", "operonDatamart"):
        (flags / "regulondb" / f"{f}.bson").write_bytes(
            (paths["dump"] / "regulondb" / f"{f}.bson").read_bytes()
        )
    docs = [
        dict(d, tpm=float(int(d["gene"]["bnumber"][1:]) % 2))
        for d in iter_dump(paths["dump"], GENE_EXPRESSION)
    ]
    write_bson(flags / "regulondb" / "geneExpression.bson", docs)
    *_, report = process_data(Source(flags), paths["genome"])
    assert any("presence flags" in w for w in report["warnings"])
    with pytest.raises(ValueError, match="must be one of"):
        process_data(Source(flags), paths["genome"], value_field="rpkm")
    with pytest.raises(ValueError, match="no geneExpression document has a usable 'fpkm'"):
        process_data(Source(flags), paths["genome"], value_field="fpkm")


def test_operons_given_but_none_kept_stop_the_data_step_saying_why(tmp_path):
    """A dump's operons name genes by geneDatamart id; with the genes from regulon.annotation
    alone (the gene documents saved as JSON, not read) none resolved: the data step warned and
    went on with every operon target 0, until the gate failed on a constant target (or, with
    diagnostics.strict false, trained the operon head on it). Now it stops, saying why; so
    does a min_confidence that leaves no operon."""
    paths = make_synthetic(tmp_path, n_bp=20_000, seed=2)
    ops = tmp_path / "ops" / "regulondb"
    ops.mkdir(parents=True)
    docs = list(iter_dump(paths["dump"], "operonDatamart"))
    write_bson(ops / "operonDatamart.bson", docs)
    genes = pd.DataFrame(
        [
            parse
            for d in iter_dump(paths["dump"], "geneDatamart")
            if (parse := rdata.parse_gene_doc(d)) is not None
        ]
    )
    gff = tmp_path / "genes.gff3"
    gff.write_text(
        "##gff-version 3\n"
        + "".join(
            f"{rtargets.read_genome(paths['genome'])[0]}\tx\tgene\t{r.start + 1}\t{r.end}\t.\t{r.strand}\t.\t"
            f"ID={r.bnumber};locus_tag={r.bnumber}\n"
            for r in genes.itertuples()
        )
    )
    with pytest.raises(
        ValueError,
        match=r"no operon kept: none of the \d+ operons names a gene of the genes read .*geneDatamart ids",
    ):
        process_data(Source(tmp_path / "ops"), paths["genome"], annotation=gff)
    (ops / "geneDatamart.bson").write_bytes((paths["dump"] / "regulondb" / "geneDatamart.bson").read_bytes())
    _, operons, _, _ = process_data(Source(tmp_path / "ops"), paths["genome"], annotation=gff)
    assert len(operons) > 0
    with pytest.raises(
        ValueError, match=r"no operon kept: all \d+ operons are below regulon.min_confidence 'confirmed'"
    ):
        process_data(Source(tmp_path / "ops"), paths["genome"], min_confidence="confirmed")


def test_read_annotation_gff():
    ann = read_annotation(DATA / "tiny.gff3")
    assert ann["bnumber"].tolist() == ["b0001", "b0002", "b0003"]
    assert ann.iloc[0][["start", "end", "strand"]].tolist() == [100, 400, "+"]
    assert ann.iloc[2]["strand"] == "-"


def test_read_annotation_counts_the_genes_it_leaves_out(tmp_path, caplog):
    gff = tmp_path / "a.gff3"
    lines = (DATA / "tiny.gff3").read_text().splitlines()
    lines += [
        "chrT\ttest\tgene\t1001\t1200\t.\t+\t.\tID=gene-x1;Name=xxxA",
        "chrT\ttest\tgene\t1301\t1400\t.\t+\t.\tID=gene-b0001b;locus_tag=b0001",
    ]
    gff.write_text("\n".join(lines) + "\n")
    with caplog.at_level("WARNING"):
        ann = read_annotation(gff)
    assert ann["bnumber"].tolist() == ["b0001", "b0002", "b0003"] and ann.iloc[0]["start"] == 100
    assert (
        "2 genes dropped (no locus_tag (b-number) in" in caplog.text
        and "first: gene-x, gene-x1" in caplog.text
    )
    assert "1 genes dropped (b-number repeated in" in caplog.text and "first: b0001" in caplog.text


def test_read_annotation_genbank_and_bad_format(tmp_path):
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    rec = SeqRecord(Seq("A" * 600), id="chrT", name="chrT", annotations={"molecule_type": "DNA"})
    rec.features = [
        SeqFeature(
            FeatureLocation(99, 400, strand=-1),
            type="gene",
            qualifiers={"locus_tag": ["b0007"], "gene": ["xyz"]},
        )
    ]
    from Bio import SeqIO

    SeqIO.write(rec, tmp_path / "a.gbk", "genbank")
    ann = read_annotation(tmp_path / "a.gbk")
    assert ann.iloc[0].tolist() == ["b0007", "xyz", 99, 400, "-"]
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="a.txt: unknown format"):
        read_annotation(tmp_path / "a.txt")


def test_annotation_genes_are_those_of_the_modelled_contig(synth, tmp_path):
    """A GFF3 of several records (chromosome + plasmid) adds only the modelled contig's genes;
    one whose seqids name none of them (``chr`` for ``NC_000913.3``) is refused, naming both,
    as ``genomelab predict regulon --gff`` refuses it (before, its genes were laid on the contig)."""
    contig, _ = rdata.genome_length(synth["genome"])
    gff = tmp_path / "two_records.gff3"
    gff.write_text(
        "##gff-version 3\n"
        f"{contig}\tt\tgene\t101\t400\t.\t+\t.\tID=g1;Name=aaaA;locus_tag=b0001\n"
        "plasmid1\tt\tgene\t2001\t2600\t.\t-\t.\tID=g2;Name=parA;locus_tag=b9901\n"
    )
    assert read_annotation(gff, seqid=contig)["bnumber"].tolist() == ["b0001"]
    genes, _, _, _ = process_data(Source(synth["dump"]), synth["genome"], annotation=gff)
    assert "b9901" not in set(genes["bnumber"])
    assert genes.set_index("bnumber").loc["b0001", ["start", "end", "strand"]].tolist() == [100, 400, "+"]
    other = tmp_path / "chr.gff3"
    other.write_text(gff.read_text().replace(f"{contig}\t", "chr\t"))
    with pytest.raises(
        FormatError, match=rf"chr.gff3: no gene .* on seqid '{contig}'.*\['chr', 'plasmid1'\]"
    ):
        process_data(Source(synth["dump"]), synth["genome"], annotation=other)
    # GenBank: records are matched by their id (accession.version) or name (LOCUS).
    from Bio import SeqIO
    from Bio.Seq import Seq
    from Bio.SeqFeature import FeatureLocation, SeqFeature
    from Bio.SeqRecord import SeqRecord

    records = []
    for rid, tag in ((contig, "b0001"), ("plasmid1", "b9901")):
        rec = SeqRecord(Seq("A" * 3000), id=rid, name=rid, annotations={"molecule_type": "DNA"})
        rec.features = [
            SeqFeature(FeatureLocation(99, 400, strand=1), type="gene", qualifiers={"locus_tag": [tag]})
        ]
        records.append(rec)
    SeqIO.write(records, tmp_path / "two.gbk", "genbank")
    assert read_annotation(tmp_path / "two.gbk", seqid=contig)["bnumber"].tolist() == ["b0001"]
    with pytest.raises(FormatError, match=r"two.gbk: no gene .* on record 'chrX'"):
        read_annotation(tmp_path / "two.gbk", seqid="chrX")


def test_read_genome_codes_and_errors(tmp_path):
    fa = tmp_path / "g.fa.gz"
    with gzip.open(fa, "wt") as fh:
        fh.write(">c1 x\nACGTN\nacgt\n>c2\nTT\n")
    assert read_genome(fa)[1].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3]
    assert read_genome(fa, "c2")[1].tolist() == [3, 3]
    with pytest.raises(ValueError, match="no contig 'c3'"):
        read_genome(fa, "c3")


# --------------------------------------------------------------------------- targets
def _naive_tracks(genes, operons, n, min_genes, bin_bp):
    expr = np.full((2, n), np.nan)
    sums, counts = np.zeros((2, n)), np.zeros((2, n))
    oper = np.zeros((2, n), dtype=np.uint8)
    dens = np.zeros((2, n // bin_bp))
    for g in genes.itertuples():
        row = 0 if g.strand == "+" else 1
        if np.isfinite(g.z):
            sums[row, g.start : g.end] += g.z
            counts[row, g.start : g.end] += 1
        for b in range(n // bin_bp):
            if g.start < (b + 1) * bin_bp and g.end > b * bin_bp:
                dens[row, b] += 1
    hit = counts > 0
    expr[hit] = sums[hit] / counts[hit]
    for o in operons.itertuples():
        if o.n_genes >= min_genes:
            oper[0 if o.strand == "+" else 1, o.start : o.end] = 1
    return expr, oper, dens


def test_tracks_match_naive_reference():
    genes = pd.DataFrame(
        {
            "start": [10, 50, 60, 300, 200],
            "end": [100, 90, 200, 380, 260],
            "strand": ["+", "+", "+", "-", "-"],
            "z": [1.0, 3.0, -1.0, np.nan, 0.5],
        }
    )
    operons = pd.DataFrame({"start": [10, 300], "end": [200, 380], "strand": ["+", "-"], "n_genes": [3, 1]})
    expr, oper = bp_tracks(genes, operons, 0, 512, operon_min_genes=2)
    dens = density_track(genes, 0, 512, 128)
    ref_e, ref_o, ref_d = _naive_tracks(genes, operons, 512, 2, 128)
    np.testing.assert_allclose(expr, ref_e, rtol=1e-6)
    np.testing.assert_array_equal(oper, ref_o)
    np.testing.assert_array_equal(dens, ref_d)
    pooled = pool_expression(expr, 16, 0.5)
    assert np.isnan(pooled[0, 0])  # bp 10..15 measured: 6 of 16 < half
    assert pooled[0, 1] == pytest.approx(1.0)  # bp 16..31: gene 1 only
    # bp 48..63: gene 1 alone (48-49), with gene 2 (50-59, mean 2), with genes 2 and 3 (60-63, mean 1)
    assert pooled[0, 3] == pytest.approx((2 * 1.0 + 10 * 2.0 + 4 * 1.0) / 16)


def test_windows_never_overlap_across_splits(synth):
    data = TargetData(synth["data"] / "targets.h5")
    assert all(r.status == "pass" for r in split_checks(data))
    for split in ("train", "val", "test"):
        w = data.split_windows(split)
        blocks = data.blocks.set_index("block").loc[w["block"]]
        assert (w["start"].to_numpy() >= blocks["start"].to_numpy()).all()
        assert (w["start"].to_numpy() + 2048 <= blocks["end"].to_numpy()).all()
        assert (blocks["split"] == split).all()
    t = data.tensors("train")
    assert t.codes.shape[1] == 2048 and t.expression.shape[1:] == (2, 128) and t.density.shape[1:] == (2, 16)


def test_target_config_errors():
    with pytest.raises(ValueError, match="multiple of bin_bp"):
        TargetConfig(window_bp=1000)
    with pytest.raises(ValueError, match=r"unknown option regulon\.targets\.windw_bp"):
        TargetConfig.from_dict({"windw_bp": 1})
    with pytest.raises(ValueError, match="block_bp"):
        TargetConfig(block_bp=1024, window_bp=2048)


# ------------------------------------------------------------------ reverse complement
def test_reverse_complement_numpy_and_torch_agree():
    codes = np.array([[0, 1, 2, 3, 4, 0]], dtype=np.uint8)
    assert reverse_complement_codes(codes).tolist() == [[3, 4, 0, 1, 2, 3]]
    assert rc_codes(torch.from_numpy(codes)).tolist() == [[3, 4, 0, 1, 2, 3]]
    track = torch.arange(6.0).reshape(1, 2, 3)
    assert rc_track(track).tolist() == [[[5.0, 4.0, 3.0], [2.0, 1.0, 0.0]]]


def test_rc_averaged_prediction_is_strand_equivariant():
    torch.manual_seed(0)
    model = RegulonNet(RegulonModelConfig(channels=8, n_layers=2, inputs="sequence")).eval()
    codes = torch.randint(0, 4, (3, 256), dtype=torch.uint8)
    a, b = model.predict(codes), model.predict(rc_codes(codes))
    for k in a:
        torch.testing.assert_close(rc_track(b[k]), a[k], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------- baselines
def test_kmer_counts_and_rc_permutation_match_naive():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 5, 200).astype(np.uint8)
    counts = kmer_bin_counts(codes, 2, 16)
    ref = np.zeros_like(counts)
    for p in range(len(codes) - 1):
        if codes[p] < 4 and codes[p + 1] < 4 and p < (len(codes) // 16) * 16:
            ref[p // 16, codes[p] * 4 + codes[p + 1]] += 1
    np.testing.assert_array_equal(counts, ref)
    perm = kmer_rc_permutation(2)
    assert perm[0 * 4 + 1] == 2 * 4 + 3  # AC -> GT
    assert perm[0 * 4 + 3] == 0 * 4 + 3  # AT is its own reverse complement
    freq = context_frequencies(counts, 3)
    window = counts[0:3].sum(axis=0)
    np.testing.assert_allclose(freq[1], window / window.sum(), rtol=1e-6)


def test_baseline_config_errors():
    with pytest.raises(ValueError, match="k must be in 1..6"):
        BaselineConfig(k=9)
    with pytest.raises(ValueError, match=r"unknown option regulon\.baseline\.kk"):
        BaselineConfig.from_dict({"kk": 3})


# --------------------------------------------------------------------------- metrics
def test_regression_metrics_match_scipy():
    rng = np.random.default_rng(1)
    t = rng.normal(size=200)
    p = t + rng.normal(size=200)
    m = regression_metrics(p, t)
    assert m["pearson"] == pytest.approx(stats.pearsonr(p, t)[0])
    assert m["spearman"] == pytest.approx(stats.spearmanr(p, t)[0])
    assert m["r2"] == pytest.approx(1 - ((t - p) ** 2).sum() / ((t - t.mean()) ** 2).sum())


def test_gene_means_match_naive(synth):
    data = TargetData(synth["data"] / "targets.h5")
    genes = pd.read_csv(synth["data"] / "genes.tsv", sep="\t")
    rng = np.random.default_rng(0)
    track = rng.normal(size=data.expression.shape)
    covered = np.ones(track.shape[1], dtype=bool)
    covered[:50] = False
    got = gene_means(track, genes, data, covered)
    for g, v in zip(genes.itertuples(), got, strict=True):
        first, last = g.start // 16, (g.end - 1) // 16 + 1
        if first < 50:
            assert np.isnan(v)
        else:
            assert v == pytest.approx(track[0 if g.strand == "+" else 1, first:last].mean())


# ------------------------------------------------------------------------ diagnostics
def test_diagnostics_catch_the_history(synth):
    """Binary expression targets, raw TPM targets: exactly the failure of the history."""
    data = TargetData(synth["data"] / "targets.h5")
    assert all(r.status == "pass" for r in target_checks(data))
    measured = np.isfinite(data.expression)
    data.expression = np.where(measured, (data.expression > 0).astype(np.float32), np.nan)
    failed = {r.name: r for r in target_checks(data) if r.status == "fail"}
    assert "presence flags" in failed["target_range[expression]"].message
    raw = TargetData(synth["data"] / "targets.h5")
    norm = Normaliser.load(synth["data"] / "norm_stats.json")
    raw.expression = np.expm1(norm.inverse_log(raw.expression)).astype(np.float32)  # back to TPM
    assert any("not normalised" in r.message for r in target_checks(raw) if r.status == "fail")
    cfg = RegulonModelConfig(channels=8, n_layers=2)
    checks = {
        r.name: r
        for r in loss_checks(raw, cfg, DiagnosticsConfig(n_check_windows=16), 0, torch.device("cpu"))
    }
    assert checks["dummy_vs_real"].status == "fail" and checks["initial_loss_range"].status == "fail"
    ok = {
        r.name: r
        for r in loss_checks(
            data.__class__(synth["data"] / "targets.h5"),
            cfg,
            DiagnosticsConfig(n_check_windows=16),
            0,
            torch.device("cpu"),
        )
    }
    assert all(r.status == "pass" for r in ok.values()), ok


def test_diagnostics_end_with_a_passing_memorisation_check(synth):
    cpu, small = torch.device("cpu"), RegulonModelConfig(channels=16, n_layers=4)  # config/test.yaml
    data = TargetData(synth["data"] / "targets.h5")
    results = run_diagnostics(data, small, DiagnosticsConfig(n_check_windows=16), {}, 0, cpu)
    assert all(r.status == "pass" for r in results), [(r.name, r.message) for r in results]
    assert results[-1].name == "overfit 8 windows"
    assert results[-1].details["loss"] < 0.5 * results[-1].details["initial_loss"]
    poisson = RegulonModelConfig(channels=16, n_layers=4, density_loss="poisson")
    assert overfit_check(data, poisson, 0, cpu).status == "pass"
    short = overfit_check(data, small, 0, cpu, steps=2)
    assert short.status == "fail" and "cannot memorise" in short.message
    assert overfit_check(data, small, 0, cpu, steps=2).details == short.details


# ----------------------------------------------------------------------------- model
def test_model_config_errors():
    with pytest.raises(ValueError, match="density_loss"):
        RegulonModelConfig(density_loss="l1")
    with pytest.raises(ValueError, match="unknown head"):
        RegulonModelConfig(loss_weights={"expresion": 1.0})
    with pytest.raises(ValueError, match=r"unknown option regulon\.model\.chanels"):
        RegulonModelConfig.from_dict({"chanels": 4})


@pytest.mark.parametrize("density_loss", ["mse", "poisson"])
def test_loss_terms_logged_and_masked(density_loss):
    torch.manual_seed(0)
    model = RegulonNet(
        RegulonModelConfig(channels=8, n_layers=2, density_loss=density_loss, inputs="sequence")
    )
    codes = torch.randint(0, 4, (2, 256), dtype=torch.uint8)
    expr = torch.randn(2, 2, 16)
    mask = torch.zeros(2, 2, 16, dtype=torch.bool)
    dens = torch.poisson(torch.full((2, 2, 2), 0.5))
    oper = (torch.rand(2, 2, 16) < 0.3).float()
    out = model.loss((codes, expr, mask, dens, oper))
    assert set(out.terms) == {"loss_expression", "loss_density", "loss_operon"}
    assert out.terms["loss_expression"].item() == 0.0  # nothing measured, nothing learned
    assert 0 < out.loss.item() < 10
    # Measured positions only count, and the total weighs each head as configured.
    weights = {"expression": 2.0, "density": 0.5, "operon": 3.0}
    model = RegulonNet(
        RegulonModelConfig(
            channels=8, n_layers=2, density_loss=density_loss, inputs="sequence", loss_weights=weights
        )
    ).eval()
    mask[:, 0, :5] = True
    out = model.loss((codes, expr, mask, dens, oper))
    with torch.no_grad():
        pred = model(codes)["expression"]
    want = ((pred - expr)[mask] ** 2).mean()
    torch.testing.assert_close(out.terms["loss_expression"], want)
    total = sum(w * out.terms[f"loss_{head}"] for head, w in weights.items())
    torch.testing.assert_close(out.loss, total)


def test_rc_augmentation_flips_every_target_with_its_sequence():
    torch.manual_seed(0)
    model = RegulonNet(RegulonModelConfig(channels=8, n_layers=2, inputs="sequence"))
    codes = torch.randint(0, 4, (16, 64), dtype=torch.uint8)
    tracks = [torch.randn(16, 2, 8), torch.rand(16, 2, 8) < 0.5, torch.rand(16, 2, 2), torch.rand(16, 2, 8)]
    out = model._augment((codes, *tracks))
    flipped = (out[0] != codes).any(dim=1)
    assert 0 < int(flipped.sum()) < 16  # about half the windows
    assert torch.equal(out[0][flipped], rc_codes(codes[flipped]))
    for before, after in zip(tracks, out[1:], strict=True):
        assert torch.equal(after[flipped], rc_track(before[flipped]))
        assert torch.equal(after[~flipped], before[~flipped])


@pytest.mark.slow
def test_chain_trains_and_beats_gc_baseline(synth, tmp_path):
    """Loss starts sane and falls; every head beats the GC baseline on held-out blocks."""
    targets = {**SMALL_TARGETS, "stride_bp": 512}
    d = tmp_path / "data"
    shutil.copytree(synth["data"], d)
    rtargets.make_targets(
        d / "genes.tsv", d / "operons.tsv", synth["genome"], targets, d / "targets.h5", seed=3
    )
    model_cfg = rtraining.model_config({"channels": 16, "n_layers": 4, "dropout": 0.0}, targets)
    train_cfg = TrainConfig(max_epochs=6, batch_size=8, lr=3e-3, seed=0)
    out = tmp_path / "run"
    rdiag.diagnose(
        d / "targets.h5",
        d / "data_report.json",
        model_cfg,
        DiagnosticsConfig(n_check_windows=16),
        out / "checks.json",
    )
    rbase.run_baselines(d / "targets.h5", {"max_train_rows": 5000}, out / "bl.h5", out / "bl.json")
    payload = rtraining.train(
        d / "targets.h5",
        model_cfg,
        train_cfg,
        out / "state",
        out / "best.pt",
        out / "metrics.json",
        out / "tb",
        out / "pred.h5",
        "cpu",
    )
    losses = [h["train/loss"] for h in payload["history"]]
    # Heads start at their label priors: the untrained loss is the chance level, not far above.
    assert 0.5 < payload["initial"]["initial/loss"] < 10
    assert losses[-1] < 0.8 * losses[0]
    ev = reval.evaluate(
        d / "targets.h5",
        d / "genes.tsv",
        d / "norm_stats.json",
        out / "pred.h5",
        out / "bl.h5",
        out,
        5000,
        "test",
        out / "metrics.json",
        (out / "checks.json",),
        d / "data_report.json",
        out / "summary.json",
        out / "summary.md",
    )
    m = ev["metrics"]
    model, gc = m["CNN (3 heads, RC-averaged)"], m["GC content"]
    assert model["expression_pearson"] > gc["expression_pearson"]
    assert model["density_r2"] > gc["density_r2"]
    assert model["operon_auroc"] > gc["operon_auroc"]
    assert "held-out" not in ev["axes"]["operon"] and "test blocks" in ev["axes"]["operon"]
    summary = json.loads((out / "summary.json").read_text())
    assert {c["primary"] for c in summary["comparisons"]} == {
        "expression_pearson",
        "density_r2",
        "operon_bp_auroc",
        "pair_auroc",
        "operon_auroc",
    }
    lines = (out / "tracks" / "model_expression_plus.bedGraph").read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph") and lines[1].split("\t")[0] == "synth1"
    assert (out / "plots" / "tracks.png").stat().st_size > 0


def test_cli_process_data_only(tmp_path, synth):
    from genomelab.regulon.cli import main

    main(
        [
            "--dump",
            str(synth["dump"]),
            "--genome",
            str(synth["genome"]),
            "--out",
            str(tmp_path / "o"),
            "--process-data-only",
            "--test-mode",
        ]
    )
    assert (tmp_path / "o" / "data" / "targets.h5").is_file()
    assert not (tmp_path / "o" / "model").exists()


# ----------------------------------------------------------------- shipped / shared data
def test_shipped_demo_dump_parses():
    dump = ROOT / "resources" / "regulon" / "dump"
    genes, operons, norm, report = process_data(
        Source(dump, max_docs_per_file=400), ROOT / "resources" / "regulon" / "genome.fna.gz"
    )
    assert report["documents"][GENE_EXPRESSION] == 400 and norm.value_field == "tpm"
    assert genes["bnumber"].str.match(r"^b\d{4}$").all()


def test_coverage_warning_is_computed_over_the_modelled_region(caplog):
    """A run limited to a region (regulon.targets region_start/region_end) got the data
    report's coverage and its warning over the whole genome: a region whose genes are all
    measured was warned about, one without any measured gene was not named."""
    dump, genome = ROOT / "resources" / "regulon" / "dump", ROOT / "resources" / "regulon" / "genome.fna.gz"
    source = Source(dump, max_docs_per_file=400)
    with caplog.at_level("WARNING", logger="genomelab.regulon.data"):
        genes, *_, whole = process_data(source, genome)
    assert whole["coverage"]["measured_fraction"] < 0.2 and "measured gene bodies cover only" in caplog.text
    measured = genes[genes["n_datasets"] > 0].sort_values("start")
    gene = measured.iloc[0]
    caplog.clear()
    with caplog.at_level("WARNING", logger="genomelab.regulon.data"):
        *_, inside = process_data(source, genome, region=(int(gene["start"]), int(gene["end"])))
    cov = inside["coverage"]
    assert cov["measured_fraction"] == 1.0 and cov["region"] == [int(gene["start"]), int(gene["end"])]
    assert "measured gene bodies cover only" not in caplog.text
    # A stretch between genes without expression: warned about, naming the region.
    bodies = genes.sort_values("start")
    gaps = bodies["start"].to_numpy()[1:] - np.maximum.accumulate(bodies["end"].to_numpy())[:-1]
    i = int(np.argmax(gaps))
    start = int(np.maximum.accumulate(bodies["end"].to_numpy())[i])
    end = start + int(gaps[i])
    caplog.clear()
    with caplog.at_level("WARNING", logger="genomelab.regulon.data"):
        *_, outside = process_data(source, genome, region=(start, end))
    assert outside["coverage"]["measured_fraction"] == 0.0
    assert f"cover only 0.0% of {whole['contig']}:{start}-{end} (the regulon.targets region)" in caplog.text


def test_gene_body_coverage_equals_a_per_base_count_without_a_per_base_array():
    """The report's covered bases (union of gene bodies, clipped to the region) are merged
    from the intervals: the same count as marking each base, where the per-base arrays
    took 89 MB at the peak for E. coli's 4.6 Mb genome (more than the expression)."""
    import tracemalloc

    from genomelab.regulon.data import _union_length

    rng = np.random.default_rng(5)
    for _ in range(50):
        n, length = int(rng.integers(1, 30)), int(rng.integers(1, 400))
        starts = rng.integers(-50, length + 50, n)
        intervals = list(zip(starts, starts + rng.integers(0, 120, n), strict=True))
        covered = np.zeros(length, dtype=bool)
        for a, b in intervals:
            covered[max(a, 0) : max(min(b, length), 0)] = True
        assert _union_length(intervals, length) == covered.sum(), intervals
    assert _union_length([], 10) == 0 and _union_length([(0, 5), (5, 8), (2, 3)], 10) == 8
    tracemalloc.start()
    try:
        assert _union_length([(1000 * i, 1000 * i + 800) for i in range(4600)], 4_641_652) == 4600 * 800
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000, peak


def test_demo_builder_from_shared_data(shared_data, tmp_path):
    from genomelab.regulon.demo import build_demo

    counts = build_demo(
        shared_data / "ecoli_genome",
        shared_data / "ecoli_expression",
        tmp_path,
        samples=["control__wt_glc__1"],
    )
    assert counts["geneExpression"] > 3800 and counts["geneDatamart"] > 4400
    doc = next(iter_dump(tmp_path / "dump", GENE_EXPRESSION))
    assert set(doc) >= {"_id", "datasetIds", "gene", "tpm", "fpkm", "count"}
    assert set(doc["gene"]) >= {"bnumber", "leftEndPosition", "rightEndPosition"}


@pytest.mark.slow
def test_cli_test_mode_runs_the_whole_chain(tmp_path, synth):
    from genomelab.regulon.cli import main

    out = tmp_path / "o"
    main(
        [
            "--dump",
            str(synth["dump"]),
            "--genome",
            str(synth["genome"]),
            "--out",
            str(out),
            "--test-mode",
            "--device",
            "cpu",
        ]
    )
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["comparisons"]) == 5 and (out / "model" / "best.pt").is_file()
    metrics = json.loads((out / "model" / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and "val/loss_operon" in metrics["history"][0]


def test_live_mongodb_path_shares_the_parsers(monkeypatch, synth):
    """A fake MongoClient serving the synthetic dump gives the same tables as the dump path."""
    import pymongo

    class FakeCursor(list):
        def limit(self, n):
            return FakeCursor(self[:n])

    class FakeClient:
        def __init__(self, uri):
            assert uri == "mongodb://user:secret@host/db"

        def __getitem__(self, database):
            assert database == "regulondb"
            return {
                c: type(
                    "C",
                    (),
                    {"find": lambda self, q, batch_size, c=c: FakeCursor(iter_dump(synth["dump"], c))},
                )()
                for c in ("geneExpression", "geneDatamart", "operonDatamart")
            }

        def close(self):
            pass

    monkeypatch.setattr(pymongo, "MongoClient", FakeClient)
    monkeypatch.setenv("REGULON_TEST_URI", "mongodb://user:secret@host/db")
    live = process_data(Source(uri_env="REGULON_TEST_URI"), synth["genome"])
    dump = process_data(Source(synth["dump"]), synth["genome"])
    pd.testing.assert_frame_equal(live[0], dump[0])
    assert "secret" not in live[3]["source"]


@pytest.mark.slow
def test_same_seed_same_weights_and_reload(synth, tmp_path):
    """Two runs with one seed give identical weights; the saved checkpoint reloads to the same output."""
    d = synth["data"]
    model_cfg = rtraining.model_config({"channels": 8, "n_layers": 2, "inputs": "sequence"}, SMALL_TARGETS)
    weights = []
    for run in ("a", "b"):
        out = tmp_path / run
        rtraining.train(
            d / "targets.h5",
            model_cfg,
            TrainConfig(max_epochs=1, batch_size=16, seed=5),
            out / "state",
            out / "best.pt",
            out / "m.json",
            out / "tb",
            out / "p.h5",
            "cpu",
        )
        weights.append(rtraining.load_model(out / "best.pt")[1].weights)
    for k in weights[0]:
        torch.testing.assert_close(weights[0][k], weights[1][k], rtol=0, atol=0)
    model, _ = rtraining.load_model(tmp_path / "a" / "best.pt", TargetData(d / "targets.h5").contig)
    codes = torch.from_numpy(TargetData(d / "targets.h5").tensors("test").codes[:2])
    pred = model.predict(codes)
    from genomelab.regulon.tracks import read_tracks

    saved = read_tracks(tmp_path / "a" / "p.h5")["model"]["operon"]
    data = TargetData(d / "targets.h5")
    start = (data.split_windows("test")["start"].iloc[0] - data.region_start) // 16
    np.testing.assert_allclose(pred["operon"][0].numpy(), saved[:, start : start + 128], rtol=1e-5, atol=1e-6)


def test_training_resumed_after_sigterm_or_a_kill_equals_an_uninterrupted_run(synth, tmp_path, monkeypatch):
    """train_from_sections (the regulon_train rule's step) stopped mid-epoch by SIGTERM or a
    kill and rerun: the same weights and history. Reverse-complement augmentation and dropout
    draw random numbers every batch; the model reads sequence and annotation (the default)."""
    from resume_check import assert_resume_is_exact

    d = synth["data"]
    model = {"channels": 8, "n_layers": 2, "dropout": 0.2}
    assert RegulonModelConfig().rc_augment

    def train(root):
        rtraining.train_from_sections(
            d / "targets.h5",
            model,
            SMALL_TARGETS,
            {"max_epochs": 4, "batch_size": 8, "lr": 3e-3, "patience": 50},
            5,
            root / "state",
            root / "best.pt",
            root / "m.json",
            root / "tb",
            root / "p.h5",
            "cpu",
            d / "genes.tsv",
        )

    assert_resume_is_exact(train, tmp_path, monkeypatch)


# ------------------------------------------------------------ held-out blocks, paired tests
def _targets(synth, out: Path, targets: dict, seed: int) -> TargetData:
    d = synth["data"]
    rtargets.make_targets(
        d / "genes.tsv",
        d / "operons.tsv",
        synth["genome"],
        targets,
        out / "targets.h5",
        seed=seed,
        blocks_out=out / "blocks.tsv",
    )
    return TargetData(out / "targets.h5")


def test_blocks_table_round_trips_as_given_blocks(synth, tmp_path):
    drawn = _targets(synth, tmp_path / "a", SMALL_TARGETS, seed=3)
    table = pd.read_csv(tmp_path / "a" / "blocks.tsv", sep="\t")
    assert list(table.columns) == ["block", "chrom", "start", "end", "split"]
    assert table["split"].tolist() == drawn.blocks["split"].tolist()
    assert (table["chrom"] == drawn.contig).all()
    # The table is also a splits file keyed by block for the generic reader.
    given = read_given_assignment(tmp_path / "a" / "blocks.tsv", ("block",), "blocks file")
    assert given.values == {str(b): s for b, s in zip(table["block"], table["split"], strict=True)}
    # Reused as the held-out file under another seed: the same blocks, windows and table.
    reused = _targets(
        synth, tmp_path / "b", {**SMALL_TARGETS, "heldout": {"file": str(tmp_path / "a" / "blocks.tsv")}}, 99
    )
    pd.testing.assert_frame_equal(reused.blocks, drawn.blocks)
    pd.testing.assert_frame_equal(reused.windows, drawn.windows)
    assert (tmp_path / "b" / "blocks.tsv").read_text() == (tmp_path / "a" / "blocks.tsv").read_text()


def test_summary_holds_paired_tests(synth, tmp_path):
    """A model close to the truth against noise baselines: every comparison has a paired
    test with a p-value; with many test genes the expression verdict is a significant win."""
    test_blocks = [2, 5, 8]
    data = _targets(
        synth, tmp_path, {**SMALL_TARGETS, "heldout": {"blocks": {"val": [0], "test": test_blocks}}}, 3
    )
    rng = np.random.default_rng(0)
    truth = truth_tracks(data)
    model = noisy_tracks(truth, 0.05, rng)
    noise = {
        key: {k: rng.random(v.shape).astype(np.float32) for k, v in truth.items()} for key in ("kmer", "gc")
    }
    write_tracks(tmp_path / "model.h5", {"model": model}, data)
    write_tracks(tmp_path / "baselines.h5", noise, data)
    reval.evaluate(
        tmp_path / "targets.h5",
        synth["data"] / "genes.tsv",
        synth["data"] / "norm_stats.json",
        tmp_path / "model.h5",
        tmp_path / "baselines.h5",
        tmp_path / "eval",
        plot_bp=5000,
        summary_json=tmp_path / "eval" / "summary.json",
        summary_md=tmp_path / "eval" / "summary.md",
        report_path=synth["data"] / "data_report.json",
    )
    summary = read_module_summary(tmp_path / "eval" / "summary.json")
    # The synthetic dump has too few datasets for co-expression: the summary says why its
    # readout and rule are absent (the data report's note), not only the data report.
    n_datasets = json.loads((synth["data"] / "data_report.json").read_text())["n_datasets"]
    said = [n for n in summary.notes if n.startswith("Data report, co-expression: no adjacent gene pair")]
    assert len(said) == 1 and f"has {n_datasets} dataset(s)" in said[0], summary.notes
    for comp in summary.comparisons:
        for baseline in reval.BASELINE_NAMES.values():
            test = comp.tests[pair_key(reval.MODEL, baseline)]
            assert 0 <= test["p_value"] <= 1 and test["favours"] == "model", (comp.title, test)
    expression, density, *_ = summary.comparisons
    gene_test = expression.tests[pair_key(reval.MODEL, reval.BASELINE_NAMES["gc"])]
    assert "test genes" in gene_test["test"] and gene_test["n"] >= 10 and gene_test["p_value"] < 0.05
    assert gene_test["details"]["per_block"]["details"]["blocks"] == test_blocks
    assert "beats" in expression.verdict() and "Wilcoxon" in expression.verdict()
    block_test = density.tests[pair_key(reval.MODEL, reval.BASELINE_NAMES["kmer"])]
    # Three blocks: the smallest two-sided Wilcoxon p is 2 / 2^3, so never "beats".
    assert block_test["n"] == 3 and block_test["p_value"] == pytest.approx(0.25)
    assert block_test["details"]["smallest_possible_p"] == pytest.approx(0.25)
    assert "ties with" in density.verdict() and "not significant" in density.verdict()
    assert "held-out test blocks [2, 5, 8]" in " ".join(summary.notes).lower()
    assert "p = " in (tmp_path / "eval" / "summary.md").read_text()
    json.loads((tmp_path / "eval" / "summary.json").read_text())


def test_the_summary_says_what_the_data_step_left_out():
    """Operons below regulon.min_confidence and gene records without a position were counted
    only in data_report.json; the summary, which users read, now says so too."""
    report = {
        "warnings": ["w1"],
        "min_confidence": "strong",
        "n_operons": 1634,
        "n_operons_below_confidence": 817,
        "n_genes_dropped_bad_docs": 3,
    }
    notes = reval.data_report_notes(report)
    assert notes[0] == "Data report warning: w1"
    assert (
        "1634 kept at regulon.min_confidence 'strong', 817 below it (or without a level) left out" in notes[1]
    )
    assert notes[2].startswith("Data report, genes: 3 gene record(s) without a usable position")
    assert reval.data_report_notes({"min_confidence": None, "n_genes_dropped_bad_docs": 0}) == []
