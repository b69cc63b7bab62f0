"""Predicting with a regulon network that reads gene-annotation channels: GFF3 and gene-table
genes in, the channels training built for the same bp, the predictions training made there,
and the server taking genes with the sequence; the operon pair readout saved with the model
and what predict writes with it."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from genomelab.cli import main
from genomelab.io.errors import FormatError
from genomelab.io.gff import read_gff3_loci

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GFF_HEAD = "##gff-version 3\n##sequence-region c1 1 5000\n"


def _write(path, rows: list[str], head: str = GFF_HEAD):
    path.write_text(head + "\n".join(rows) + "\n")
    return path


# ------------------------------------------------------------------------------ GFF3 reader
def test_gff_loci_count_a_gene_and_its_cds_once(tmp_path, caplog):
    gff = _write(
        tmp_path / "a.gff3",
        [
            "c1\tRefSeq\tregion\t1\t5000\t.\t+\t.\tID=c1",
            "c1\tRefSeq\tgene\t101\t400\t.\t+\t.\tID=gene-b1;Name=aaaA;locus_tag=b1",
            "c1\tRefSeq\tCDS\t101\t397\t.\t+\t0\tID=cds-b1;Parent=gene-b1",
            # gene -> mRNA -> CDS, with the CDS listed before its mRNA: one locus.
            "c1\tx\tgene\t501\t900\t.\t-\t.\tID=g2;Name=b%3Bc",
            "c1\tx\tCDS\t510\t890\t.\t-\t0\tID=cds2;Parent=tx2",
            "c1\tx\tmRNA\t501\t900\t.\t-\t.\tID=tx2;Parent=g2",
            "c1\tx\tpseudogene\t1001\t1100\t.\t+\t.\tID=p3;locus_tag=b3",
            # A CDS in two segments (one ID) with no gene: one locus spanning both.
            "c1\tProdigal\tCDS\t2001\t2100\t.\t+\t0\tID=orf4",
            "c1\tProdigal\tCDS\t2150\t2300\t.\t+\t2\tID=orf4",
            "c1\tProdigal\tCDS\t3001\t3300\t.\t-\t0\tID=orf5;Parent=missing",
            "c1\tx\tgene\t3501\t3600\t.\t.\t.\tID=nostrand",
            "c2\tx\tgene\t11\t20\t.\t+\t.\tID=other",
            "##FASTA",
            ">c1",
            "ACGT",
        ],
    )
    with caplog.at_level("WARNING"):
        loci = read_gff3_loci(gff, "c1")
    assert loci[["id", "start", "end", "strand"]].values.tolist() == [
        ["gene-b1", 100, 400, "+"],
        ["g2", 500, 900, "-"],
        ["p3", 1000, 1100, "+"],
        ["orf4", 2000, 2300, "+"],
        ["orf5", 3000, 3300, "-"],
    ]
    assert loci["name"].tolist()[:2] == ["aaaA", "b;c"]  # percent-decoded
    assert "1 loci dropped (no strand" in caplog.text and "nostrand" in caplog.text
    assert read_gff3_loci(gff)["seqid"].tolist()[-1] == "c2"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("c1\tx\tgene\t101\t400\t.\t+", "7 tab-separated columns, not the 9"),
        ("c1\tx\tgene\t1O1\t400\t.\t+\t.\tID=a", "'1O1'/'400' are not integers"),
        ("c1\tx\tgene\t401\t100\t.\t+\t.\tID=a", "401-100 are not 1 <= start <= end"),
        ("c1\tx\tgene\t0\t100\t.\t+\t.\tID=a", "0-100 are not 1 <= start <= end"),
        ("c1\tx\tgene\t1\t100\t.\tforward\t.\tID=a", "strand 'forward' is not one of"),
        ('c1\tx\tgene\t1\t100\t.\t+\t.\tgene_id "a"; transcript_id "t"', "not GFF3 tag=value"),
    ],
)
def test_gff_bad_rows_name_file_and_line(tmp_path, row, message):
    gff = _write(tmp_path / "bad.gff3", ["c1\tx\tgene\t1\t10\t.\t+\t.\tID=ok", row])
    with pytest.raises(FormatError, match=message) as err:
        read_gff3_loci(gff)
    assert err.value.line == 4 and str(err.value).startswith(f"{gff}, line 4: ")


def test_gff_without_loci_of_the_contig_names_what_it_has(tmp_path):
    gff = _write(tmp_path / "a.gff3", ["chrX\tx\tgene\t1\t10\t.\t+\t.\tID=a"])
    with pytest.raises(FormatError, match=r"no gene, pseudogene or CDS feature on seqid 'c1' .*\['chrX'\]"):
        read_gff3_loci(gff, "c1")
    with pytest.raises(FileNotFoundError, match="nope.gff3"):
        read_gff3_loci(tmp_path / "nope.gff3")


def test_gene_table_for_prediction_and_its_errors(tmp_path):
    from genomelab.predict.regulon import read_genes_for_prediction

    table = tmp_path / "genes.tsv"
    table.write_text("bnumber\tstart\tend\tstrand\tcontig\nb1\t100\t400\t+\tc1\nb2\t10\t50\t-\tc2\n")
    genes = read_genes_for_prediction(table, "c1")
    assert genes.values.tolist() == [[100, 400, "+"]]
    with pytest.raises(FormatError, match=r"no gene on contig 'c3' \(the table has \['c1', 'c2'\]\)"):
        read_genes_for_prediction(table, "c3")
    table.write_text("bnumber\tstart\tend\tstrand\nb1\t100\t400\t+\nb2\t60\t50\t-\n")
    with pytest.raises(FormatError, match=r"genes.tsv, line 3: gene start=.*is not 0 <= start < end"):
        read_genes_for_prediction(table)
    table.write_text("bnumber\tleft\tright\n")
    with pytest.raises(FormatError, match=r"no gene-table columns \['start', 'end', 'strand'\]"):
        read_genes_for_prediction(table)
    # A GFF3 without the usual extension is known by its first line.
    gff = _write(tmp_path / "genes.txt", ["c1\tx\tgene\t101\t400\t.\t-\t.\tID=a"])
    assert read_genes_for_prediction(gff, "c1").values.tolist() == [[100, 400, "-"]]


# ----------------------------------------------------------- a synthetic genome, trained on
def _gff_of(genes: pd.DataFrame, contig: str) -> str:
    """NCBI-style GFF3 of a gene table: gene + CDS (Parent) rows; every third gene through
    an mRNA, every seventh a pseudogene without CDS."""
    rows = [f"{contig}\tRefSeq\tregion\t1\t99999999\t.\t+\t.\tID={contig}"]
    for i, g in enumerate(genes.itertuples(index=False)):
        left, right, b = g.start + 1, g.end, g.bnumber
        kind = "pseudogene" if i % 7 == 3 else "gene"
        rows.append(f"{contig}\tRefSeq\t{kind}\t{left}\t{right}\t.\t{g.strand}\t.\tID=gene-{b};locus_tag={b}")
        if kind == "pseudogene":
            continue
        parent = f"gene-{b}"
        if i % 3 == 0:
            rows.append(
                f"{contig}\tRefSeq\tmRNA\t{left}\t{right}\t.\t{g.strand}\t.\tID=rna-{b};Parent={parent}"
            )
            parent = f"rna-{b}"
        rows.append(
            f"{contig}\tRefSeq\tCDS\t{left}\t{right - 3}\t.\t{g.strand}\t0\tID=cds-{b};Parent={parent}"
        )
    return GFF_HEAD + "\n".join(rows) + "\n"


@pytest.fixture(scope="module")
def annotated_run(tmp_path_factory):
    """A synthetic genome whose genes come from a GFF3 (regulon.annotation), targets over it,
    and a sequence+annotation network trained one epoch on them."""
    from genomelab.regulon import data as rdata
    from genomelab.regulon import targets as rtargets
    from genomelab.regulon import training as rtraining
    from genomelab.regulon.bsonio import Source
    from genomelab.regulon.synthetic import make_synthetic
    from genomelab.train.engine import TrainConfig

    root = tmp_path_factory.mktemp("regulon_annotation")
    paths = make_synthetic(root / "in", n_bp=61_440, seed=2)
    first = root / "first"
    files = [first / n for n in ("genes.tsv", "operons.tsv", "norm.json", "report.json")]
    rdata.process(Source(paths["dump"]), paths["genome"], *files)
    gff = root / "genes.gff3"
    gff.write_text(_gff_of(rdata.read_genes(first / "genes.tsv"), "synth1"))
    d = root / "data"
    files = [d / n for n in ("genes.tsv", "operons.tsv", "norm.json", "report.json")]
    rdata.process(Source(paths["dump"]), paths["genome"], *files, annotation=gff)
    targets = {"block_bp": 6144, "window_bp": 2048, "stride_bp": 1024}
    rtargets.make_targets(d / "genes.tsv", d / "operons.tsv", paths["genome"], targets, d / "t.h5", seed=3)
    run = root / "run"
    model = {"channels": 8, "n_layers": 2, "inputs": "sequence+annotation"}
    rtraining.train(
        d / "t.h5", rtraining.model_config(model, targets),
        TrainConfig(max_epochs=1, batch_size=16, seed=5), run / "state", run / "best.pt",
        run / "m.json", run / "tb", run / "p.h5", "cpu", genes_path=d / "genes.tsv",
    )  # fmt: skip
    return {
        "genome": paths["genome"],
        "gff": gff,
        "genes": d / "genes.tsv",
        "targets": d / "t.h5",
        "run": run,
    }


def test_channels_from_gff_and_gene_table_equal_training(annotated_run):
    from genomelab.predict.regulon import RegulonPredictor, read_genes_for_prediction
    from genomelab.regulon.targets import TargetData, read_genome

    data = TargetData(annotated_run["targets"])
    assert data.annotation.any()
    predictor = RegulonPredictor(annotated_run["run"] / "best.pt")
    _, codes = read_genome(annotated_run["genome"])
    test = data.tensors("test")
    for source in ("gff", "genes"):
        genes = read_genes_for_prediction(annotated_run[source], data.contig)
        # The whole targeted region, bit for bit ...
        starts, _, ann = predictor.window_inputs(
            codes[data.region_start : data.region_end], data.region_start, genes
        )
        for s, flags in zip(starts - data.region_start, ann, strict=True):
            np.testing.assert_array_equal(flags, data.annotation[s : s + flags.size])
        assert starts[-1] + ann.shape[1] == data.region_end
        # ... and each test window as training gathered it, predicted alone.
        for s, want, want_codes in zip(test.starts[:3], test.annotation, test.codes, strict=False):
            starts, windows, ann = predictor.window_inputs(codes[s : s + 2048], int(s), genes)
            assert starts.tolist() == [s]
            np.testing.assert_array_equal(ann[0], want)
            np.testing.assert_array_equal(windows[0], want_codes)


def test_saved_annotation_model_predicts_what_training_predicted(annotated_run, tmp_path, capfd):
    from genomelab.predict.regulon import RegulonPredictor
    from genomelab.regulon.targets import TargetData
    from genomelab.regulon.tracks import read_tracks

    data = TargetData(annotated_run["targets"])
    windows = data.split_windows("test")
    block = windows[windows["block"] == windows["block"].iloc[0]]
    start, end = int(block["start"].min()), int(block["start"].max()) + 2048
    region = f"{data.contig}:{start}-{end}"
    model = annotated_run["run"] / "best.pt"
    saved = read_tracks(annotated_run["run"] / "p.h5")["model"]
    predictor = RegulonPredictor(model)
    assert predictor.uses_annotation
    for source in ("gff", "genes"):
        tracks = predictor.predict_fasta(annotated_run["genome"], region, annotated_run[source])
        for head, step in tracks.steps.items():
            a, b = (start - data.region_start) // step, (end - data.region_start) // step
            np.testing.assert_allclose(tracks.tracks[head], saved[head][:, a:b], rtol=1e-5, atol=1e-6)
    # The annotation is read: without it the same windows predict otherwise.
    plain = predictor.predict_codes(
        data.sequence[start - data.region_start : end - data.region_start], data.contig, start,
        genes=pd.DataFrame({"start": [0], "end": [1], "strand": ["+"]}),
    )  # fmt: skip
    assert not np.allclose(plain.tracks["operon"], tracks.tracks["operon"], atol=1e-4)

    args = ["predict", "regulon", "--model", str(model), "--inputs", str(annotated_run["genome"])]
    out = tmp_path / "cli"
    assert main([*args, "--region", region, "--gff", str(annotated_run["gff"]), "--out", str(out)]) == 0
    meta = json.loads((out / "tracks.json").read_text())
    assert meta["annotation"] == str(annotated_run["gff"]) and meta["n_genes_in_region"] > 0
    line = (out / "operon.minus.bedGraph").read_text().splitlines()[1].split("\t")
    assert float(line[3]) == pytest.approx(float(tracks.tracks["operon"][1, 0]), rel=1e-5)
    assert main([*args, "--region", region, "--out", str(tmp_path / "none")]) == 2
    assert re.search(r"sequence\+annotation\): give the genes .*--gff", capfd.readouterr().err)


def _sequence_model(path, extra=None):
    from genomelab.regulon.model import RegulonModelConfig, RegulonNet
    from genomelab.regulon.training import KIND
    from genomelab.train.export import save_exported

    torch.manual_seed(0)
    cfg = RegulonModelConfig.from_dict(
        {"channels": 4, "n_layers": 1, "inputs": "sequence"}, resolution_bp=16, bin_bp=128
    )
    save_exported(
        path, RegulonNet(cfg).eval(), kind=KIND, config=dataclasses.asdict(cfg), ids={"contigs": ["c"]},
        data_fingerprint="0", extra={"targets_config": {"window_bp": 512}, **(extra or {})},
    )  # fmt: skip
    return path


def test_sequence_model_refuses_genes(annotated_run, tmp_path, capfd):
    from genomelab.predict.regulon import RegulonPredictor

    model = _sequence_model(tmp_path / "seq.pt")
    with pytest.raises(ValueError, match="reads the sequence only .* would ignore the genes"):
        RegulonPredictor(model).predict_fasta(annotated_run["genome"], "synth1:0-1024", annotated_run["gff"])
    args = ["predict", "regulon", "--model", str(model), "--inputs", str(annotated_run["genome"])]
    assert main([*args, "--annotation", str(annotated_run["genes"]), "--out", str(tmp_path / "o")]) == 2
    assert "would ignore the genes" in capfd.readouterr().err


# -------------------------------------------------------------------------------- serving
def test_server_takes_genes_relative_to_the_sequence(annotated_run, tmp_path):
    from genomelab.predict.regulon import RegulonPredictor
    from genomelab.regulon.targets import TargetData
    from genomelab.serve.app import create_app
    from test_serve import refused, serving

    data = TargetData(annotated_run["targets"])
    model = annotated_run["run"] / "best.pt"
    start = int(data.split_windows("test")["start"].iloc[0])
    seq = "".join("ACGTN"[c] for c in data.sequence[start - data.region_start :][:3000])
    genes = [{"start": 100, "end": 1300, "strand": "+"}, {"start": -50, "end": 60, "strand": "-"}]
    with serving(create_app(model)) as client:
        reply = client.post(
            "/predict", json={"sequence": seq, "contig": "synth1", "start": start, "genes": genes}
        )
        missing = client.post("/predict", json={"sequence": seq})
        bad = [
            client.post("/predict", json={"sequence": seq, "genes": [genes[0], g]})
            for g in (
                {"start": 10, "end": 20, "strand": "x"},
                {"start": 30, "end": 30, "strand": "+"},
                {"start": start, "end": start + 900, "strand": "+"},  # contig coordinates
                {"start": 1, "end": 5},
            )
        ]
    assert reply.status_code == 200, reply.text
    shifted = pd.DataFrame(genes).assign(start=lambda g: g["start"] + start, end=lambda g: g["end"] + start)
    want = RegulonPredictor(model).predict_codes(
        data.sequence[start - data.region_start :][:3000], "synth1", start, genes=shifted
    )
    body = reply.json()
    assert (body["start"], body["end"]) == (start, want.end)
    np.testing.assert_allclose(body["tracks"]["operon"]["plus"], want.tracks["operon"][0], rtol=1e-6)
    np.testing.assert_allclose(body["tracks"]["expression"]["minus"], want.tracks["expression"][1], rtol=1e-6)
    err = refused(missing)
    assert err["loc"] == ["body", "genes"] and err["msg"].startswith("genes: ")
    assert "sequence+annotation" in err["msg"]
    assert all(r.status_code == 422 for r in bad)
    locs = [r.json()["detail"][0]["loc"] for r in bad]
    assert locs[0] == ["body", "genes", 1, "strand"]
    assert locs[1][:3] == ["body", "genes", 1] and "must be above start" in bad[1].json()["detail"][0]["msg"]
    assert "genes.1: [" in bad[2].json()["detail"][0]["msg"] and "relative to the sequence" in bad[2].text
    assert locs[3] == ["body", "genes", 1, "strand"]  # a required field left out

    with serving(create_app(_sequence_model(tmp_path / "seq.pt"))) as client:
        with_genes = client.post("/predict", json={"sequence": seq[:600], "genes": genes[:1]})
        plain = client.post("/predict", json={"sequence": seq[:600]})
    assert refused(with_genes)["msg"].startswith("genes: ")
    assert plain.status_code == 200


def test_regulon_predict_rule_step_passes_the_annotation(annotated_run, tmp_path):
    from types import SimpleNamespace

    from genomelab.config import schema_defaults
    from genomelab.predict.steps import regulon_step

    section = schema_defaults("regulon.predict")
    assert section["annotation"] == ""  # documented default: none
    section |= {"inputs": str(annotated_run["genome"]), "region": "synth1:2048-6144"}
    out = tmp_path / "predict" / "tracks.json"
    smk = SimpleNamespace(
        input=SimpleNamespace(model=str(annotated_run["run"] / "best.pt"), inputs=section["inputs"]),
        output=SimpleNamespace(json=str(out)),
        params=SimpleNamespace(predict=json.dumps(section), device="cpu"),
    )
    with pytest.raises(ValueError, match="give the genes"):
        regulon_step(smk)
    smk.params.predict = json.dumps(section | {"annotation": str(annotated_run["genes"])})
    regulon_step(smk)
    meta = json.loads(out.read_text())
    assert meta["annotation"] == str(annotated_run["genes"]) and (meta["start"], meta["end"]) == (2048, 6144)


# ------------------------------------------- the operon pair readout saved with the model
# The network above was trained with the module's genes: training fitted its pair readout
# and saved it in the export; evaluation scores with the saved one, and predict with genes
# writes the same pair probabilities and per-bp calls.
def _evaluation(run):
    """The evaluation's operon view with the readout as evaluate() sets it."""
    from genomelab.regulon.data import read_genes
    from genomelab.regulon.evaluate import set_readout
    from genomelab.regulon.operons import OperonEvaluation
    from genomelab.regulon.targets import TargetData
    from genomelab.regulon.tracks import read_tracks

    data = TargetData(run["targets"])
    ev = OperonEvaluation(data, read_genes(run["genes"]))
    set_readout(ev, run["run"] / "p.h5", read_tracks(run["run"] / "p.h5", data))
    return data, ev


def test_readout_saved_in_the_export_and_the_predictions_alike(annotated_run):
    from genomelab.regulon.operons import COMBINED, PAIR_READOUT, OperonReadout
    from genomelab.regulon.tracks import read_readout
    from genomelab.train.export import load_exported

    exported = load_exported(annotated_run["run"] / "best.pt")
    saved = exported.extra["operon_readout"]
    assert saved == read_readout(annotated_run["run"] / "p.h5")
    # Plain numbers (the export loads with weights_only), the layout named.
    assert json.loads(json.dumps(saved)) == saved
    assert saved["features"][COMBINED][-1] == "distance_loglik" and saved["flank_bp"] == 64
    readout = OperonReadout.from_dict(saved)
    # Two datasets of expression give no co-expression: no co-expression readout.
    assert set(readout.readouts) == {PAIR_READOUT, COMBINED} and readout.n_train_positive > 0
    assert readout.coexpression == {} and saved["version"] == 3 and set(readout.fallbacks) == {COMBINED}
    assert len(readout.readouts[COMBINED].coef) == 4
    # A readout of another layout is refused, naming where it came from.
    with pytest.raises(ValueError, match="best.pt: operon readout of another layout"):
        OperonReadout.from_dict({**saved, "flank_bp": 32}, "best.pt")


def test_saved_readout_scores_like_a_fresh_fit(annotated_run):
    """The plain-parameter readout equals sklearn's pipeline it was taken from."""
    from genomelab.regulon.operons import COMBINED, PairReadout

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    y = x[:, 0] + rng.normal(size=200) > 0
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ref = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x, y)
    mine = PairReadout.from_dict(PairReadout.fit(x, y).to_dict())
    np.testing.assert_allclose(mine.score(x), ref.decision_function(x), rtol=1e-10, atol=1e-10)
    x[3, 1] = np.nan
    assert np.isnan(mine.score(x)[3]) and COMBINED


def test_predict_gives_the_evaluations_pair_probabilities(annotated_run, tmp_path):
    """On each test block as training tiled it, predict's pair probabilities and per-bp
    readout track equal the evaluation's (the same readout over the same network output)."""
    from genomelab.predict.regulon import RegulonPredictor
    from genomelab.regulon.metrics import binary_metrics
    from genomelab.regulon.operons import COMBINED

    data, ev = _evaluation(annotated_run)
    want = ev.pair_probabilities("test")
    assert len(want) >= 5 and want["same_operon"].nunique() == 2
    predictor = RegulonPredictor(annotated_run["run"] / "best.pt")
    got, scores, truth = [], [], []
    _, operon_bp = data.bp_tracks()
    for _, w in data.split_windows("test").groupby("block"):
        start, end = int(w["start"].min()), int(w["start"].max()) + data.config.window_bp
        tracks = predictor.predict_fasta(
            annotated_run["genome"], f"{data.contig}:{start}-{end}", annotated_run["genes"]
        )
        got.append(tracks.pairs)
        r = tracks.steps["operon"]
        scores.append(np.repeat(np.fmax(*tracks.readout), r))
        truth.append(operon_bp[:, start - data.region_start : end - data.region_start].any(axis=0))
    pairs = pd.concat(got).dropna(subset=["p_operon"])
    merged = want.merge(
        pairs, left_on=["upstream", "downstream"], right_on=["upstream_id", "downstream_id"], how="left"
    )
    assert merged["p_operon"].notna().all()  # every pair the evaluation scores, predict scores
    np.testing.assert_allclose(merged["p_operon"], merged["probability"], rtol=1e-4, atol=1e-6)
    assert (merged["distance_x"] == merged["distance_y"]).all()
    # The per-bp view: predict's readout track scores the test bp as the evaluation does.
    per_bp = binary_metrics(np.concatenate(scores), np.concatenate(truth))
    evaluated = ev.rule_metrics("test")[COMBINED]
    assert per_bp["n"] == evaluated["operon_bp_n"]
    assert per_bp["auroc"] == pytest.approx(evaluated["operon_bp_auroc"], abs=1e-4)


def test_predict_cli_writes_pairs_and_the_readout_track(annotated_run, tmp_path):
    model = annotated_run["run"] / "best.pt"
    out = tmp_path / "cli"
    args = ["predict", "regulon", "--model", str(model), "--inputs", str(annotated_run["genome"])]
    assert main([*args, "--gff", str(annotated_run["genes"]), "--out", str(out)]) == 0
    meta = json.loads((out / "tracks.json").read_text())
    assert {"operon_pairs", "operon_readout.plus", "operon_readout.minus"} <= set(meta["files"])
    table = pd.read_csv(out / "operon_pairs.tsv", sep="\t")
    assert meta["operon_pairs_scored"] == table["p_operon"].notna().sum() > 10
    # The synthetic dump's 2 datasets give no co-expression: the count says none was scored.
    assert meta["operon_pairs_coexpression_scored"] == 0 and table["p_operon_coexpression"].isna().all()
    assert table["upstream_id"].str.startswith("b").all()  # the genes' own ids
    assert (table["distance"] == table["downstream_start"] - table["upstream_end"]).all()
    assert table["p_operon"].between(0, 1).all() and table["p_operon_network"].between(0, 1).all()
    # Same-operon pairs of the synthetic genome (short gaps) score higher than the others.
    genes = pd.read_csv(annotated_run["genes"], sep="\t", keep_default_na=False)
    operon = dict(zip(genes["bnumber"], genes["operon_id"], strict=True))
    same = (table["upstream_id"].map(operon) == table["downstream_id"].map(operon)) & (
        table["upstream_id"].map(operon) != ""
    )
    assert table.loc[same, "p_operon"].mean() > table.loc[~same, "p_operon"].mean()
    lines = (out / "operon_readout.minus.bedGraph").read_text().splitlines()
    assert lines[0].startswith("track type=bedGraph") and len(lines) > 100
    values = np.array([float(x.split("\t")[3]) for x in lines[1:]])
    assert values.min() == 0.0 and 0 < values.max() <= 1


def test_export_without_readout_still_predicts_tracks(annotated_run, tmp_path):
    """An older export (no operon_readout in extra) predicts its three heads, no pairs."""
    from genomelab.predict.regulon import RegulonPredictor
    from genomelab.train.export import load_exported, save_exported

    old = load_exported(annotated_run["run"] / "best.pt")
    extra = {k: v for k, v in old.extra.items() if k != "operon_readout"}
    path = tmp_path / "old.pt"
    save_exported(
        path, old.weights, kind=old.kind, config=old.config, ids=old.ids,
        data_fingerprint=old.data_fingerprint, extra=extra,
    )  # fmt: skip
    region = "synth1:12288-16384"
    old_tracks = RegulonPredictor(path).predict_fasta(annotated_run["genome"], region, annotated_run["genes"])
    new_tracks = RegulonPredictor(annotated_run["run"] / "best.pt").predict_fasta(
        annotated_run["genome"], region, annotated_run["genes"]
    )
    assert old_tracks.pairs is None and old_tracks.readout is None
    for head in ("expression", "density", "operon"):
        np.testing.assert_array_equal(old_tracks.tracks[head], new_tracks.tracks[head])
    out = tmp_path / "out"
    args = ["predict", "regulon", "--model", str(path), "--inputs", str(annotated_run["genome"])]
    assert main([*args, "--region", region, "--gff", str(annotated_run["genes"]), "--out", str(out)]) == 0
    meta = json.loads((out / "tracks.json").read_text())
    assert meta["operon_pairs_scored"] is None and not (out / "operon_pairs.tsv").exists()
    assert len(meta["files"]) == 6
    assert torch.is_tensor(next(iter(old.weights.values())))


def test_sequence_model_with_a_readout_takes_genes_for_its_pairs(annotated_run, tmp_path):
    """A sequence-only network that carries a pair readout uses the genes for the pairs only:
    its tracks are those it predicts without genes."""
    from genomelab.predict.regulon import RegulonPredictor, encode
    from genomelab.train.export import load_exported

    readout = load_exported(annotated_run["run"] / "best.pt").extra["operon_readout"]
    predictor = RegulonPredictor(_sequence_model(tmp_path / "seq.pt", {"operon_readout": readout}))
    region = "synth1:0-8192"
    with_genes = predictor.predict_fasta(annotated_run["genome"], region, annotated_run["genes"])
    alone = predictor.predict_fasta(annotated_run["genome"], region)
    for head, track in alone.tracks.items():
        np.testing.assert_array_equal(with_genes.tracks[head], track)
    assert alone.pairs is None and len(with_genes.pairs) > 3
    assert with_genes.pairs["p_operon"].between(0, 1).all()

    # The server gives the same pairs, naming the request's genes by index.
    from genomelab.serve.app import create_app
    from test_serve import serving

    seq = "ACGT" * 700
    genes = [{"start": 100, "end": 900, "strand": "+"}, {"start": 930, "end": 1500, "strand": "+"},
             {"start": 1600, "end": 2000, "strand": "-"}, {"start": 2100, "end": 2600, "strand": "+"}]  # fmt: skip
    with serving(create_app(tmp_path / "seq.pt")) as client:
        body = client.post("/predict", json={"sequence": seq, "genes": genes}).json()
    want = predictor.predict_codes(encode(seq), "seq", 0, genes=pd.DataFrame(genes))
    assert [(p["upstream_gene"], p["downstream_gene"]) for p in body["operon_pairs"]] == [(0, 1)]
    assert body["operon_pairs"][0]["p_operon"] == pytest.approx(want.pairs["p_operon"].iloc[0], rel=1e-6)
    np.testing.assert_allclose(body["operon_readout"]["minus"], want.readout[1], rtol=1e-6)


def test_empty_gene_list_gives_no_pairs(annotated_run):
    """No genes (a server request's ``"genes": []``): the tracks, no pairs and a readout track
    of zeros, as the CLI gives for a region without genes."""
    from genomelab.predict.regulon import RegulonPredictor
    from genomelab.regulon.targets import TargetData
    from genomelab.serve.app import create_app
    from test_serve import serving

    data = TargetData(annotated_run["targets"])
    model = annotated_run["run"] / "best.pt"
    start = int(data.split_windows("test")["start"].iloc[0])
    codes = data.sequence[start - data.region_start :][:3000]
    seq = "".join("ACGTN"[c] for c in codes)
    with serving(create_app(model)) as client:
        reply = client.post(
            "/predict", json={"sequence": seq, "contig": "synth1", "start": start, "genes": []}
        )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["operon_pairs"] == [] and not any(body["operon_readout"]["plus"])
    none = pd.DataFrame({"id": [], "start": [], "end": [], "strand": []})  # object columns, as JSON gives
    want = RegulonPredictor(model).predict_codes(codes, "synth1", start, genes=none)
    assert want.pairs is not None and want.pairs.empty and want.n_genes == 0
    np.testing.assert_allclose(body["tracks"]["operon"]["plus"], want.tracks["operon"][0], rtol=1e-6)


def test_rule_folder_keeps_no_pair_files_of_an_earlier_prediction(annotated_run, tmp_path):
    """The regulon_predict rule's folder after a prediction with genes, then one without (a
    sequence model with a readout, annotation cleared): the earlier operon_pairs.tsv and
    readout tracks (not rule outputs, so never removed by Snakemake) were left beside the
    new tracks, as if they were its calls, and alone after a failed prediction."""
    from genomelab.predict.regulon import predict_files
    from genomelab.train.export import load_exported

    pair_files = ("operon_pairs.tsv", "operon_readout.plus.bedGraph", "operon_readout.minus.bedGraph")
    readout = load_exported(annotated_run["run"] / "best.pt").extra["operon_readout"]
    model = _sequence_model(tmp_path / "seq.pt", {"operon_readout": readout})
    out = tmp_path / "predict"
    first = predict_files(
        model, annotated_run["genome"], out, "synth1:0-8192", annotation=annotated_run["genes"]
    )
    assert all((out / name).is_file() for name in pair_files) and "operon_pairs" in first
    (out / "notes.txt").write_text("mine\n")
    second = predict_files(model, annotated_run["genome"], out, "synth1:8192-16384")
    assert "operon_pairs" not in second
    assert not any((out / name).exists() for name in pair_files)
    assert (out / "notes.txt").is_file() and (out / "operon.plus.bedGraph").is_file()
    # A prediction that fails (region out of range) leaves no pair files of the earlier one.
    predict_files(model, annotated_run["genome"], out, "synth1:0-8192", annotation=annotated_run["genes"])
    with pytest.raises(ValueError, match="outside the record"):
        predict_files(
            model, annotated_run["genome"], out, "synth1:0-99999999", annotation=annotated_run["genes"]
        )
    assert not any((out / name).exists() for name in pair_files)


def test_genes_of_another_sequence_are_refused(annotated_run, tmp_path, capfd):
    """A whole genome's gene table given with a FASTA of one part of it (the part cut out
    into its own record): the genes' coordinates are the genome's, the channels were built
    at the wrong places without a word."""
    from genomelab.cli import main
    from genomelab.regulon.targets import read_genome

    contig, codes = read_genome(annotated_run["genome"])
    part = tmp_path / "part.fna"
    part.write_text(f">{contig}\n" + "".join("ACGTN"[c] for c in codes[20480:28672]) + "\n")
    args = ["predict", "regulon", "--model", str(annotated_run["run"] / "best.pt"), "--inputs", str(part)]
    out = tmp_path / "out"
    assert main([*args, "--gff", str(annotated_run["genes"]), "--out", str(out)]) == 2
    err = capfd.readouterr().err
    assert f"genes start past the end of {part}'s record {contig!r} (8192 bp)" in err and not out.exists()
    # The genome itself with the same table predicts.
    whole = ["--inputs", str(annotated_run["genome"]), "--region", f"{contig}:20480-28672"]
    assert main([*args[:4], *whole, "--gff", str(annotated_run["genes"]), "--out", str(tmp_path / "ok")]) == 0


# ----------------------------------------- co-expression: the third readout and its rule
def _with_coexpression(run, tmp_path, unmeasured=()):
    """The run's genes with a co-expression that tells operon pairs apart (as many datasets
    would), written as the data step writes it (next_* columns); none for the pairs whose
    upstream gene is in ``unmeasured`` (as where a gene is missing from the compendium: 812 of
    E. coli's 3,230 pairs with PRECISE)."""
    from genomelab.regulon.data import read_genes

    genes = read_genes(run["genes"])
    rng = np.random.default_rng(7)
    nxt = dict(zip(genes["bnumber"], genes["next_bnumber"], strict=True))
    operon = dict(zip(genes["bnumber"], genes["operon_id"], strict=True))
    same = np.array([n != "" and operon[b] != "" and operon[b] == operon.get(n) for b, n in nxt.items()])
    z = np.where(same, 1.2, 0.1) + rng.normal(0, 0.4, len(genes))
    measured = (genes["next_bnumber"] != "") & ~genes["bnumber"].isin(list(unmeasured))
    genes["next_coexpression"] = np.where(measured, z, np.nan)
    genes["next_coexpression_n"] = np.where(genes["next_bnumber"] != "", 50, 0)
    path = tmp_path / "genes_coexpression.tsv"
    genes.to_csv(path, sep="\t", index=False)
    return read_genes(path), path


def test_coexpression_readout_and_rule_are_fitted_scored_and_predicted_alike(annotated_run, tmp_path):
    """With co-expression in the genes, training's fit adds the co-expression readout (and
    saves the genome's pair co-expression), the evaluation scores it and the co-expression
    rule beside the distance rules, both gain on pairs from an informative co-expression, and
    predict writes the readout's probabilities the evaluation gives (by the genes' IDs)."""
    from genomelab.predict.regulon import RegulonPredictor
    from genomelab.regulon.data import read_genes
    from genomelab.regulon.operons import (
        COEXPRESSED,
        COEXPRESSION_RULE,
        COMBINED,
        DISTANCE_LL,
        OperonEvaluation,
        OperonReadout,
        fit_readout,
        gene_pairs,
        pair_features,
    )
    from genomelab.regulon.targets import TargetData
    from genomelab.regulon.tracks import TRAIN_GROUP, read_tracks
    from genomelab.train.export import load_exported, save_exported

    data = TargetData(annotated_run["targets"])
    # Two test pairs without co-expression (the training pairs keep theirs, enough to fit).
    plain = OperonEvaluation(data, read_genes(annotated_run["genes"])).pairs
    unmeasured = plain.loc[plain["split"] == "test", "upstream"].iloc[:2]
    genes, genes_path = _with_coexpression(annotated_run, tmp_path, unmeasured)
    tracks = read_tracks(annotated_run["run"] / "p.h5", data)
    found = fit_readout(data, genes, tracks[TRAIN_GROUP]["operon"])
    assert COEXPRESSED in found.readouts and len(found.readouts[COEXPRESSED].coef) == 8
    # Every adjacent same-strand pair of the genome, by its genes' IDs (NaN: none measured).
    every = gene_pairs(genes)
    assert len(found.coexpression) == len(every)
    assert sum(np.isnan(z) for z in found.coexpression.values()) == every["coexpression"].isna().sum() > 0
    again = OperonReadout.from_dict(found.to_dict())
    assert list(again.coexpression) == list(found.coexpression) and set(again.readouts) == set(found.readouts)
    np.testing.assert_array_equal(list(again.coexpression.values()), list(found.coexpression.values()))

    # The annotation fallbacks: the readouts without the network, fitted on the same pairs
    # (the co-expression one is the co-expression rule the evaluation fits on its training pairs).
    assert set(again.fallbacks) == {COMBINED, COEXPRESSED}
    ev = OperonEvaluation(data, genes)
    ev.use_readout(again, tracks["model"]["operon"])
    np.testing.assert_allclose(again.fallbacks[COEXPRESSED].coef, ev.coexpression_rule.coef, rtol=0.05)
    # Pairs of the training blocks have no held-out track: their per-bp track values come from
    # the fallback, so the genes beside them are scored as the rules score them.
    unscored = ~np.isfinite(pair_features(tracks["model"]["operon"], ev.all_pairs, data)).all(axis=1)
    assert unscored.sum() > 5
    p = again.probability(tracks["model"]["operon"], ev.all_pairs, data, COEXPRESSED)
    want = again.fallbacks[COEXPRESSED].score(again.annotation(ev.all_pairs[unscored], COEXPRESSED))
    np.testing.assert_allclose(p[unscored], 1 / (1 + np.exp(-want)))
    metrics = ev.rule_metrics("test")
    # The synthetic genome's gaps already separate its operons (the distance rule scores 1 on
    # its test pairs), so the fits must show what they learned: more co-expression, more
    # likely one operon (feature "coexpression_z": the rule's 4th, the readout's 7th).
    assert ev.coexpression_rule.coef[3] > 0 and found.readouts[COEXPRESSED].coef[6] > 0
    assert metrics[COEXPRESSION_RULE]["pair_auroc"] >= metrics[DISTANCE_LL]["pair_auroc"] > 0.9
    assert metrics[COEXPRESSED]["pair_auroc"] >= metrics[COMBINED]["pair_auroc"] > 0.9
    assert metrics[COEXPRESSION_RULE]["operon_bp_n"] == metrics[DISTANCE_LL]["operon_bp_n"]

    old = load_exported(annotated_run["run"] / "best.pt")
    path = tmp_path / "coexpression.pt"
    save_exported(
        path, old.weights, kind=old.kind, config=old.config, ids=old.ids,
        data_fingerprint=old.data_fingerprint, extra={**old.extra, "operon_readout": found.to_dict()},
    )  # fmt: skip
    predictor = RegulonPredictor(path)
    want = ev.pair_probabilities("test", COEXPRESSED)
    got, r = [], data.config.resolution_bp
    for _, w in data.split_windows("test").groupby("block"):
        start, end = int(w["start"].min()), int(w["start"].max()) + data.config.window_bp
        tracks_here = predictor.predict_fasta(
            annotated_run["genome"], f"{data.contig}:{start}-{end}", genes_path
        )
        got.append(tracks_here.pairs)
        # The per-bp readout track carries the co-expression readout's call at a junction
        # (the bin inside a gap wider than two bins touches no gene).
        wide = tracks_here.pairs[tracks_here.pairs["distance"] > 3 * r]
        mid = ((wide["upstream_end"] + wide["downstream_start"]) // 2 - start) // r
        row = (wide["strand"] == "-").astype(int)
        assert len(wide) > 0
        np.testing.assert_allclose(tracks_here.readout[row, mid], wide["p_operon_coexpression"], rtol=1e-6)
    pairs = pd.concat(got).dropna(subset=["p_operon"])
    merged = want.merge(
        pairs, left_on=["upstream", "downstream"], right_on=["upstream_id", "downstream_id"], how="left"
    )
    known = merged["coexpression_x"].notna()
    assert known.sum() >= 5 and (~known).sum() == 2
    np.testing.assert_allclose(merged.loc[known, "coexpression_y"], merged.loc[known, "coexpression_x"])
    assert merged.loc[~known, "coexpression_y"].isna().all()
    # Every test pair alike, those without co-expression too (the readout's flag 0): what the
    # evaluation scores is what predict writes.
    assert merged["p_operon_coexpression"].notna().all()
    np.testing.assert_allclose(merged["p_operon_coexpression"], merged["probability"], rtol=1e-4, atol=1e-6)


def test_predict_says_why_p_operon_coexpression_is_empty(annotated_run, tmp_path, caplog):
    """A model trained without co-expression (the synthetic dump's 2 datasets): every pair's
    p_operon_coexpression is NA, tracks.json counts 0 and the log says why and what to use."""
    from genomelab.predict.regulon import predict_files

    with caplog.at_level("INFO", logger="genomelab.predict.regulon"):
        predict_files(
            annotated_run["run"] / "best.pt",
            annotated_run["genome"],
            tmp_path / "p",
            annotation=annotated_run["genes"],
        )
    meta = json.loads((tmp_path / "p" / "tracks.json").read_text())
    assert meta["operon_pairs_scored"] > 10 and meta["operon_pairs_coexpression_scored"] == 0
    said = [r.getMessage() for r in caplog.records if "p_operon_coexpression is NA" in r.getMessage()]
    assert len(said) == 1 and "carries no co-expression readout" in said[0] and "use p_operon" in said[0]


def test_evaluation_fits_the_fallbacks_of_a_readout_saved_without_them(annotated_run, tmp_path, caplog):
    """A run trained before the annotation fallbacks (readout format 2) is evaluated as a new
    one: the evaluation fits the fallbacks on the training pairs (logged), so the per-bp track
    scores the pairs the held-out track misses, as training's own fit does."""
    import shutil

    import h5py
    from genomelab.regulon.data import read_genes
    from genomelab.regulon.evaluate import set_readout
    from genomelab.regulon.operons import COMBINED, OperonEvaluation, pair_features
    from genomelab.regulon.targets import TargetData
    from genomelab.regulon.tracks import READOUT_ATTR, read_readout, read_tracks

    data = TargetData(annotated_run["targets"])
    genes = read_genes(annotated_run["genes"])
    new = read_readout(annotated_run["run"] / "p.h5")
    old = {k: v for k, v in new.items() if k not in ("fallbacks", "fallback_features")} | {"version": 2}
    path = tmp_path / "old.h5"
    shutil.copy(annotated_run["run"] / "p.h5", path)
    with h5py.File(path, "a") as h5:
        h5.attrs[READOUT_ATTR] = json.dumps(old)
    tracks = read_tracks(path, data)
    got = {}
    for name, p in (("new", annotated_run["run"] / "p.h5"), ("old", path)):
        ev = OperonEvaluation(data, genes)
        with caplog.at_level("INFO", logger="genomelab.regulon.evaluate"):
            set_readout(ev, p, tracks)
        got[name] = ev
    said = [r.getMessage() for r in caplog.records if "without annotation fallbacks" in r.getMessage()]
    assert len(said) == 1 and "old.h5" in said[0] and "format 2" in said[0]
    assert set(got["old"].readout.fallbacks) == {COMBINED}
    np.testing.assert_allclose(
        got["old"].readout.fallbacks[COMBINED].coef, got["new"].readout.fallbacks[COMBINED].coef, rtol=0.05
    )
    unscored = ~np.isfinite(pair_features(tracks["model"]["operon"], got["new"].all_pairs, data)).all(axis=1)
    assert unscored.any()
    for ev in got.values():
        p = ev.readout.probability(tracks["model"]["operon"], ev.all_pairs, data, COMBINED)
        assert np.isfinite(p[unscored]).all()


def test_a_held_out_block_predicted_alone_gives_the_evaluations_per_bp_readout_track(annotated_run):
    """Each test block predicted as a region of its own: the readout's per-bp track is the one
    the evaluation scores over those bins, the genes at the block's edges included (their pair
    beyond the region, in a training block, scored by the readout's annotation fallback in
    both; before, prediction left that pair out and such a gene took its inside pair alone),
    and operon_pairs.tsv still lists only the pairs whose junction lies in the region."""
    from genomelab.predict.regulon import RegulonPredictor
    from genomelab.regulon.data import read_genes
    from genomelab.regulon.evaluate import set_readout
    from genomelab.regulon.operons import COMBINED, OperonEvaluation
    from genomelab.regulon.targets import TargetData
    from genomelab.regulon.tracks import read_tracks

    data = TargetData(annotated_run["targets"])
    genes = read_genes(annotated_run["genes"])
    ev = OperonEvaluation(data, genes)
    set_readout(ev, annotated_run["run"] / "p.h5", read_tracks(annotated_run["run"] / "p.h5", data))
    predictor = RegulonPredictor(annotated_run["run"] / "best.pt")
    r, blocks = data.config.resolution_bp, data.blocks
    n_edge_genes = 0
    for _, b in blocks[blocks["split"] == "test"].iterrows():
        start, end = int(b["start"]), int(b["end"])
        # The fixture's test blocks lie between training blocks: evaluation's held-out track
        # misses the pairs beyond them, as the prediction of the block alone does.
        assert set(blocks.loc[blocks["block"].isin([b["block"] - 1, b["block"] + 1]), "split"]) == {"train"}
        got = predictor.predict_fasta(
            annotated_run["genome"], f"{data.contig}:{start}-{end}", annotated_run["genes"]
        )
        first = (start - data.region_start) // r
        want = ev.readout_bp_tracks[COMBINED][:, first : first + got.readout.shape[1]]
        np.testing.assert_allclose(got.readout, want, rtol=1e-5, atol=1e-6)
        n_edge_genes += int(((genes["start"] < start) & (genes["end"] > start)).sum())
        n_edge_genes += int(((genes["start"] < end) & (genes["end"] > end)).sum())
        assert (got.pairs["upstream_end"].clip(upper=got.pairs["downstream_start"]) >= start).all()
        assert (got.pairs[["upstream_end", "downstream_start"]].max(axis=1) <= end).all()
    assert n_edge_genes > 0  # a block edge cuts a gene: the case this checks


def test_a_region_inside_one_intergenic_gap_carries_that_pairs_call():
    """A region that lies inside the junction of two genes beyond it: the per-bp readout track
    carries the pair's call there (from the readout's annotation fallback: the region's track
    cannot cover the junction), as evaluation's track over the genome paints the junction's
    bins; the pair table stays empty (no junction lies in the region)."""
    from genomelab.predict.regulon import operon_calls
    from genomelab.regulon.operons import (
        COMBINED,
        FEATURES,
        PAIR_READOUT,
        OperonReadout,
        PairReadout,
        _sigmoid,
    )

    def fitted(k, intercept):
        return PairReadout(np.zeros(k), np.ones(k), np.ones(k), intercept, 10)

    readout = OperonReadout(
        {n: fitted(len(FEATURES[n]), 0.3) for n in (PAIR_READOUT, COMBINED)},
        np.linspace(-2, 2, 16),
        40,
        12,
        fallbacks={COMBINED: fitted(1, -0.7)},
    )
    genes = pd.DataFrame({"id": ["a", "b"], "start": [0, 5000], "end": [1000, 6000], "strand": ["+", "+"]})
    table, track = operon_calls(readout, np.full((2, 100), 0.6, np.float32), genes, "c", 2000, 3600, 16)
    want = _sigmoid(readout.distance_ll(np.array([4000]))[0] - 0.7)
    assert len(table) == 0
    np.testing.assert_allclose(track[0], want, rtol=1e-6)
    assert (track[1] == 0).all()


def test_networks_with_and_without_a_pair_readout_average_their_tracks_and_the_calls_given(
    annotated_run, tmp_path, caplog
):
    """A fold whose training split gave no pairs of both classes saves no pair readout
    (fit_readout): averaged with folds that carry one (regulon_predict with folds), the
    tracks are every network's mean and the pair calls those of the networks that give them;
    averaging was refused ('an operon pair readout False and True'), stopping the rule."""
    from genomelab.predict.regulon import predict_files
    from genomelab.train.export import load_exported, save_exported

    model = annotated_run["run"] / "best.pt"
    old = load_exported(model)
    bare = tmp_path / "bare.pt"
    save_exported(
        bare, old.weights, kind=old.kind, config=old.config, ids=old.ids,
        data_fingerprint=old.data_fingerprint, extra={k: v for k, v in old.extra.items() if k != "operon_readout"},
    )  # fmt: skip
    region, genes = "synth1:12288-16384", annotated_run["genes"]
    predict_files(model, annotated_run["genome"], tmp_path / "one", region=region, annotation=genes)
    with caplog.at_level("WARNING"):
        predict_files(
            [bare, model], annotated_run["genome"], tmp_path / "both", region=region, annotation=genes
        )
    assert f"{bare} carry no operon pair readout" in caplog.text
    for name in ("operon_pairs.tsv", "operon.plus.bedGraph", "operon_readout.minus.bedGraph"):
        one, both = ((tmp_path / d / name).read_text() for d in ("one", "both"))
        assert len(one) > 100 and one == both, name
