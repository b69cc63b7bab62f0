"""Single-copy marker genes per bin (genomelab.binning.markers; issue 21's optional item):
gene calling + hmmsearch on real E. coli sequence, CheckM's contamination, MIMAG tiers,
errors naming the HMM file, the summary's quality view and the workflow rule."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from genomelab.binning.markers import (
    DEFAULT_HMM,
    DEFAULT_SETS,
    TIER_CONTAMINATED,
    TIER_HIGH,
    TIER_LOW,
    TIER_MEDIUM,
    BinMarkers,
    MarkersConfig,
    bin_markers,
    mimag_tier,
    quality_view,
    read_marker_hmms,
    read_marker_sets,
    read_markers_table,
    write_markers,
)
from genomelab.io.errors import FormatError
from genomelab.io.fasta import read_fasta

# Not `from conftest import ROOT`: with tests/slurm collected too, `conftest` names
# whichever conftest module was imported first.
ROOT = Path(__file__).resolve().parents[1]

ECOLI_PREFIX = ROOT / "resources" / "binning" / "genomes" / "Escherichia_coli_K12_MG1655.first400kb.fna.gz"
# In the first 400 kb of MG1655: rpsB (b0169), tsf (b0170) and frr (b0172), about 190 kb in.
PREFIX_MARKERS = {"rpsB", "tsf", "frr"}


@pytest.fixture(scope="module")
def hmms():
    return read_marker_hmms(ROOT / DEFAULT_HMM)


@pytest.fixture(scope="module")
def ecoli_contigs() -> list[tuple[str, bytes]]:
    """The 400 kb E. coli prefix cut into 40 kb contigs (a bin of one genome's contigs)."""
    (_, seq), *_ = list(read_fasta(ECOLI_PREFIX))
    return [(f"ec_{i}", seq[i : i + 40_000]) for i in range(0, len(seq), 40_000)]


def write_bin(path: Path, records: list[tuple[str, bytes]]) -> Path:
    with open(path, "wb") as fh:
        for name, seq in records:
            fh.write(b">" + name.encode() + b"\n" + seq + b"\n")
    return path


def marker_names(hmms) -> list[str]:
    return [h.name.decode() if isinstance(h.name, bytes) else h.name for h in hmms]


def test_shipped_set_is_31_named_bacterial_markers(hmms):
    names = marker_names(hmms)
    assert len(names) == 31 and len(set(names)) == 31
    assert {"rpoB", "rplB", "rpsC", "tsf"} <= set(names)


def test_known_markers_found_in_an_ecoli_bin(tmp_path, hmms, ecoli_contigs):
    cfg = MarkersConfig.from_dict({})
    result = bin_markers(write_bin(tmp_path / "ecoli.fna", ecoli_contigs), hmms, cfg)
    found = {n for n, c in zip(marker_names(hmms), result.copies, strict=True) if c}
    assert PREFIX_MARKERS <= found, found
    assert result.n_genes > 300  # ~0.9 genes per kb in E. coli
    assert result.size_bp == 400_000 and result.n_contigs == 10
    assert result.completeness == pytest.approx(100 * len(found) / 31)
    assert result.contamination == 0


def test_duplicated_contigs_count_as_contamination(tmp_path, hmms, ecoli_contigs):
    twice = ecoli_contigs + [(f"copy_{n}", s) for n, s in ecoli_contigs]
    cfg = MarkersConfig.from_dict({})
    once = bin_markers(write_bin(tmp_path / "once.fna", ecoli_contigs), hmms, cfg)
    result = bin_markers(write_bin(tmp_path / "twice.fna", twice), hmms, cfg)
    # Every marker seen once is now seen twice: contamination equals completeness (100% for
    # a complete genome in two copies, CheckM's definition).
    assert np.array_equal(result.copies, 2 * once.copies)
    assert result.contamination == pytest.approx(result.completeness) and result.contamination > 0


def test_empty_bin_and_bin_without_genes(tmp_path, hmms):
    cfg = MarkersConfig.from_dict({})
    empty = bin_markers(write_bin(tmp_path / "empty.fna", []), hmms, cfg)
    assert (empty.n_genes, empty.completeness, empty.contamination, empty.size_bp) == (0, 0, 0, 0)
    # 60 bp: shorter than any gene pyrodigal calls.
    no_genes = bin_markers(write_bin(tmp_path / "a.fna", [("short", b"ACGT" * 15)]), hmms, cfg)
    assert no_genes.n_genes == 0 and no_genes.completeness == 0
    assert no_genes.row()["tier"] == TIER_LOW


def test_bad_hmm_files_are_named(tmp_path):
    missing = tmp_path / "nope.hmm"
    with pytest.raises(FileNotFoundError, match="nope.hmm"):
        read_marker_hmms(missing)
    junk = tmp_path / "junk.hmm"
    junk.write_text("this is not a profile HMM\n")
    with pytest.raises(FormatError, match="junk.hmm"):
        read_marker_hmms(junk)
    dup = tmp_path / "dup.hmm"
    with gzip.open(ROOT / DEFAULT_HMM, "rb") as fh:
        text = fh.read()
    first = text[: text.index(b"//\n") + 3]
    dup.write_bytes(first + first)
    with pytest.raises(FormatError, match="dup.hmm.*repeats"):
        read_marker_hmms(dup)


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="evalue"):
        MarkersConfig.from_dict({"evalue": 0.0})
    with pytest.raises(ValueError, match="min_coverage"):
        MarkersConfig.from_dict({"min_coverage": 1.5})


@pytest.mark.parametrize(
    ("completeness", "contamination", "tier"),
    [
        (95.0, 2.0, TIER_HIGH),
        (90.0, 2.0, TIER_MEDIUM),  # MIMAG's high tier is > 90%
        (95.0, 5.0, TIER_MEDIUM),
        (50.0, 9.9, TIER_MEDIUM),
        (49.9, 0.0, TIER_LOW),
        (100.0, 10.0, TIER_CONTAMINATED),
    ],
)
def test_mimag_tiers(completeness, contamination, tier):
    assert mimag_tier(completeness, contamination) == tier


def test_contamination_is_checkm_definition():
    result = BinMarkers("b", 1, 1, 1, np.array([0, 1, 2, 3]))
    assert result.completeness == 75.0  # 3 of 4 markers seen
    assert result.contamination == 75.0  # (1 + 2) extra copies / 4 markers
    # Collocated sets weigh the same: set 0 = markers 0, 1; set 1 = markers 2, 3.
    sets = BinMarkers("b", 1, 1, 1, np.array([1, 0, 2, 1]), np.array([0, 0, 1, 1]))
    assert sets.completeness == pytest.approx(100 * (1 / 2 + 2 / 2) / 2)
    assert sets.contamination == pytest.approx(100 * (0 / 2 + 1 / 2) / 2)
    assert sets.row()["n_sets"] == 2


def test_shipped_sets_and_bad_set_files(tmp_path, hmms):
    names = marker_names(hmms)
    sets = read_marker_sets(ROOT / DEFAULT_SETS, names)
    assert len(np.unique(sets)) == 12
    # The S10-spc-alpha ribosomal cluster of E. coli is one set of 13 markers.
    assert np.bincount(sets).max() == 13 and sets[names.index("rplB")] == sets[names.index("rpsJ")]
    bad = tmp_path / "sets.tsv"
    bad.write_text("marker\tset\nrplB\ts1\n")
    with pytest.raises(FormatError, match="sets.tsv.*not listed"):
        read_marker_sets(bad, names)
    with pytest.raises(FileNotFoundError, match="nope.tsv"):
        read_marker_sets(tmp_path / "nope.tsv", names)


def test_write_markers_ranks_bins_and_quality_view(tmp_path, ecoli_contigs):
    fasta_dir = tmp_path / "fasta"
    fasta_dir.mkdir()
    write_bin(fasta_dir / "bin_1.fna", ecoli_contigs + [(f"copy_{n}", s) for n, s in ecoli_contigs])
    write_bin(fasta_dir / "bin_2.fna", ecoli_contigs)
    write_bin(fasta_dir / "bin_3.fna", [])
    table = write_markers(
        fasta_dir,
        MarkersConfig.from_dict({}),
        tmp_path / "markers.tsv",
        tmp_path / "counts.tsv",
        1,
        ROOT / DEFAULT_HMM,
        "",  # flat: every marker its own set
    )
    back = read_markers_table(tmp_path / "markers.tsv")
    # All three are low tier; the duplicated bin ranks last (completeness - 5 x contamination).
    assert list(back["bin"]) == ["bin_2", "bin_3", "bin_1"]
    assert list(table["bin"]) == list(back["bin"])
    assert set(back["tier"]) == {TIER_LOW}
    assert back.loc[2, "contamination"] == back.loc[2, "completeness"] > 0
    counts = (tmp_path / "counts.tsv").read_text().splitlines()
    assert counts[0].split("\t")[:2] == ["bin", "dnaG"] and len(counts) == 4
    rows, note, md = quality_view(back)
    assert rows[0]["bin"] == "bin_2" and "bacteria only" in note
    assert "| bin_1 |" in md and "MIMAG" in md


def test_markers_table_missing_column_is_named(tmp_path):
    bad = tmp_path / "m.tsv"
    bad.write_text("bin\tcompleteness\nb1\t50\n")
    with pytest.raises(FormatError, match="m.tsv.*contamination"):
        read_markers_table(bad)


def _two_bin_tables(tmp_path: Path) -> None:
    """cb.tsv and bs.tsv (contig_bins, bin_summary) of 20 contigs in two 300-kb bins."""
    from genomelab.binning.bins import bin_summary
    from genomelab.io.tables import write_table

    names = np.array([f"c{i}" for i in range(20)])
    table, per_bin = bin_summary(names, np.repeat([0, 1], 10), np.full(20, 30_000), np.full(20, 0.5), 100_000)
    write_table(table, tmp_path / "cb.tsv")
    write_table(per_bin, tmp_path / "bs.tsv")


def _summary_without_truth(tmp_path: Path, metrics, kind: str, markers, baseline_markers=None) -> dict:
    """summary.json of write_summary over tmp_path's bs.tsv / cb.tsv, no truth table."""
    from genomelab.binning.summary import write_summary

    write_summary(
        metrics,
        tmp_path / "bs.tsv",
        tmp_path / "cb.tsv",
        [],
        None,
        None,
        "graph",
        100_000,
        tmp_path / "summary.json",
        tmp_path / "summary.md",
        kind,
        markers,
        baseline_markers,
    )
    return json.loads((tmp_path / "summary.json").read_text())


def test_summary_has_the_quality_view(tmp_path):
    _two_bin_tables(tmp_path)
    markers = tmp_path / "markers.tsv"
    markers.write_text(
        "bin\tsize_bp\tn_contigs\tn_genes\tn_markers\tn_sets\tmarkers_found\tmarkers_multi\textra_copies\t"
        "completeness\tcontamination\ttier\tmarker_set\n"
        f"bin_1\t300000\t10\t280\t31\t12\t30\t0\t0\t96.77\t0\t{TIER_HIGH}\tbacteria_universal31.hmm.gz\n"
    )
    summary = _summary_without_truth(tmp_path, None, "tnf", markers)
    assert summary["quality"][0]["bin"] == "bin_1"
    assert any("MIMAG tiers 1 high" in n for n in summary["notes"])
    assert "Bin quality from single-copy marker genes" in (tmp_path / "summary.md").read_text()


@pytest.mark.slow
def test_all_markers_in_the_full_genome_marker_regions(tmp_path, hmms, shared_data):
    """Each of the 31 E. coli marker genes (GFF CDS +- 50 bp; wider flanks take in whole neighbours of the ribosomal operons) as a contig: completeness 100,
    contamination 0; two copies: contamination 100."""
    from genomelab.io.gff import iter_gff3

    folder = shared_data / "ecoli_genome"
    names = set(marker_names(hmms))
    spans = [
        (f.attributes["gene"], f.start, f.end)
        for f in iter_gff3(folder / "GCF_000005845.2_ASM584v2_genomic.gff.gz")
        if f.type == "CDS" and f.attributes.get("gene") in names
    ]
    (_, genome), *_ = list(read_fasta(folder / "GCF_000005845.2_ASM584v2_genomic.fna.gz"))
    contigs = [(g, genome[max(0, s - 50) : e + 50]) for g, s, e in spans]
    cfg = MarkersConfig.from_dict({})
    sets = read_marker_sets(ROOT / DEFAULT_SETS, marker_names(hmms))
    result = bin_markers(write_bin(tmp_path / "m.fna", contigs), hmms, cfg, sets=sets)
    assert result.completeness == pytest.approx(100) and result.contamination == 0
    doubled = contigs + [(f"{g}_copy", s) for g, s in contigs]
    result = bin_markers(write_bin(tmp_path / "m2.fna", doubled), hmms, cfg, sets=sets)
    assert result.completeness == pytest.approx(100) and result.contamination == pytest.approx(100)


def test_dry_run_plans_markers_only_when_enabled(tmp_path):
    import yaml
    from test_binning_tnf_kind import binning_only_config
    from test_workflow import copy_repo, job_counts, snakemake

    workdir = copy_repo(tmp_path)
    for kind in ("tnf", "vae", "contrastive"):
        on = binning_only_config(workdir, f"{kind}.yaml", kind)
        res = snakemake(workdir, "-n", "--cores", "2", "--configfile", on)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        assert job_counts(res.stdout).get("binning_markers") == 1, kind
        assert f"results/kind_{kind}/binning/bins/markers.tsv" in res.stdout
    config = yaml.safe_load((workdir / on).read_text())
    config["binning"]["markers"] = {"enabled": False}
    (workdir / "off.yaml").write_text(yaml.safe_dump(config))
    res = snakemake(workdir, "-n", "--cores", "2", "--configfile", "off.yaml")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "binning_markers" not in job_counts(res.stdout) and "markers.tsv" not in res.stdout


def test_baseline_bins_are_scored_like_the_model_bins(tmp_path, ecoli_contigs):
    """Without a truth table binning_markers also scores the TNF baseline's bins: the
    clusters are cut into bins as binning_bins cuts the model's (small ones not written), and
    only the marker tables stay (no bin FASTA of the baseline is left behind)."""
    from genomelab.binning.kmers import write_profiles_h5
    from genomelab.binning.markers import write_baseline_markers
    from genomelab.io.tables import write_clusters

    contigs = write_bin(tmp_path / "contigs.fna", ecoli_contigs)
    write_profiles_h5(contigs, tmp_path / "profiles.h5", 2000)
    names = [n for n, _ in ecoli_contigs]
    # Eight 40-kb contigs in one cluster (320 kb, written), two in another (80 kb, not).
    write_clusters(names, np.array([0] * 8 + [1] * 2), tmp_path / "clusters.tsv")
    out = tmp_path / "baseline"
    table = write_baseline_markers(
        tmp_path / "profiles.h5",
        tmp_path / "clusters.tsv",
        contigs,
        200_000,
        MarkersConfig.from_dict({}),
        out / "markers.tsv",
        out / "marker_counts.tsv",
        1,
        ROOT / DEFAULT_HMM,
        ROOT / DEFAULT_SETS,
    )
    assert list(table["bin"]) == ["bin_00001"] and table.loc[0, "n_contigs"] == 8
    assert table.loc[0, "size_bp"] == 320_000 and table.loc[0, "markers_found"] >= 1
    assert sorted(p.name for p in out.iterdir()) == ["marker_counts.tsv", "markers.tsv"]


def _markers_table(path: Path, tiers: list[str]) -> Path:
    rows = [
        f"bin_{i}\t300000\t10\t280\t31\t12\t30\t0\t0\t{c}\t0\t{t}\tbacteria_universal31.hmm.gz"
        for i, (t, c) in enumerate(zip(tiers, [96.77, 60.0, 20.0], strict=False), 1)
    ]
    path.write_text(
        "bin\tsize_bp\tn_contigs\tn_genes\tn_markers\tn_sets\tmarkers_found\tmarkers_multi\textra_copies\t"
        "completeness\tcontamination\ttier\tmarker_set\n" + "\n".join(rows) + "\n"
    )
    return path


def test_summary_without_truth_compares_model_and_baseline_bins_by_markers(tmp_path):
    """A trained model without a truth table is still reported beside the TNF baseline: the
    bins of both scored by marker genes (before, the summary had no baseline at all and
    spoke of good bins, which only a truth table defines)."""
    _two_bin_tables(tmp_path)
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "genomelab_version": "0",
                "device": "cpu",
                "precision": "fp32",
                "train_config": {},
                "monitor": "val/loss",
                "best_epoch": 2,
                "best_value": 0.1,
                "stopped_reason": "max_epochs",
                "epochs_run": 3,
                "history": [],
                "final": {},
                "test": {"test/loss": 0.1},
                "chance_nt_xent": 4.0,
            }
        )
    )
    model = _markers_table(tmp_path / "markers.tsv", [TIER_HIGH, TIER_MEDIUM])
    baseline = _markers_table(tmp_path / "baseline_markers.tsv", [TIER_MEDIUM, TIER_LOW, TIER_LOW])

    summary = _summary_without_truth(tmp_path, metrics, "contrastive", model, baseline)
    (comp,) = summary["comparisons"]
    assert comp["primary"] == "n_medium_or_better"
    ours, tnf = "contrastive encoder + kNN-graph clustering", "TNF PCA + kNN-graph clustering"
    assert comp["rows"][ours]["n_medium_or_better"] == 2 and comp["rows"][ours]["n_high"] == 1
    assert comp["rows"][tnf]["n_medium_or_better"] == 1 and comp["rows"][tnf]["n_written_bins"] == 3
    assert comp["kinds"] == {ours: "model", tnf: "baseline"}
    # No paired test between two clusterings' bins: ahead is a tie, never "beats".
    assert "ties with" in comp["verdict"] and "no paired test" in comp["verdict"]
    assert not any("good bins" in n for n in summary["notes"])
    assert any("compared by single-copy marker genes" in n for n in summary["notes"])
    assert "Bins scored by single-copy marker genes" in (tmp_path / "summary.md").read_text()
    # Markers off (or kind tnf): no baseline markers, no comparison, the note says so.
    summary = _summary_without_truth(tmp_path, metrics, "contrastive", model)
    assert summary["comparisons"] == []
    assert any(n.endswith("(binning.input.truth).") for n in summary["notes"])


def test_dry_run_scores_the_baseline_bins_only_without_a_truth_table(tmp_path, ecoli_contigs):
    """An own assembly without a truth table plans binning_baseline and its marker table
    (before, no baseline job was planned at all); with a truth table the baseline is scored
    against the truth instead, and kind tnf has no model to compare."""
    import yaml
    from test_workflow import copy_repo, job_counts, snakemake

    workdir = copy_repo(tmp_path)
    write_bin(workdir / "asm.fna", ecoli_contigs)
    (workdir / "truth.tsv").write_text(
        "contig\tgenome\n" + "".join(f"{n}\tecoli\n" for n, _ in ecoli_contigs)
    )
    planned = {}
    for name, extra in (
        ("no_truth", {}),
        ("truth", {"truth": "truth.tsv"}),
        ("tnf", {"kind": "tnf"}),
    ):
        binning = {"enabled": True, "input": {"contigs": "asm.fna"}}
        if "truth" in extra:
            binning["input"]["truth"] = extra["truth"]
        if "kind" in extra:
            binning["model"] = {"kind": extra["kind"]}
        (workdir / f"{name}.yaml").write_text(yaml.safe_dump({"run": name, "binning": binning}))
        res = snakemake(workdir, "-n", "--cores", "2", "--configfile", f"{name}.yaml")
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        planned[name] = (job_counts(res.stdout), f"results/{name}/binning/baseline/markers.tsv" in res.stdout)
    assert planned["no_truth"][0].get("binning_baseline") == 1 and planned["no_truth"][1]
    assert planned["truth"][0].get("binning_evaluate") == 1 and not planned["truth"][1]
    assert not planned["tnf"][1]
