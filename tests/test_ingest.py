"""Ingest: every format into the tissue NPZ, exact against references, and clear errors."""

from __future__ import annotations

import gzip
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from genomelab.ingest import demo
from genomelab.ingest.builds import genome_build, other_style_name
from genomelab.ingest.convert import IngestConfig, convert_sample
from genomelab.ingest.cpg_index import CpgIndex, build_cpg_index
from genomelab.ingest.formats import detect_format, read_probe_table
from genomelab.ingest.regions import read_regions
from genomelab.ingest.sheet import read_ingest_sheet
from genomelab.ingest.summary import collect
from genomelab.io.dropped import dropped_to_json

HG38 = genome_build("hg38")
ROOT = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


def bed(tmp_path: Path, rows: list[tuple[str, int, int, str]], name: str = "regions.bed") -> Path:
    return write(tmp_path / name, "".join(f"{c}\t{s}\t{e}\t{n}\n" for c, s, e, n in rows))


def cov_text(rows: list[tuple[str, int, int, int]]) -> str:
    """Bismark coverage lines from (chrom, 1-based pos, n_meth, n_unmeth)."""
    out = []
    for c, p, m, u in rows:
        pct = 100.0 * m / (m + u) if m + u else 0.0
        out.append(f"{c}\t{p}\t{p}\t{pct}\t{m}\t{u}\n")
    return "".join(out)


def load(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


@pytest.fixture
def demo_set(tmp_path: Path):
    """One simulated sample written in every sequencing format, plus regions and CpG index."""
    rng = np.random.default_rng(3)
    genome = demo.make_genome(rng, n_regions=8)
    reads = demo.simulate_reads(genome, 0, rng, n_reads=800)
    demo.write_regions(genome, tmp_path / "regions.bed")
    demo.write_cpg_index(genome, tmp_path / "CpG.bed.gz")
    files = {
        "bismark_cov": tmp_path / "s.cov.gz",
        "bismark_cpg_report": tmp_path / "s.CpG_report.txt.gz",
        "bedmethyl_encode": tmp_path / "s.bed.gz",
        "bedmethyl_modkit": tmp_path / "s.bedmethyl",
        "wgbs_pat": tmp_path / "s.pat.gz",
        "wgbs_beta": tmp_path / "s.beta",
    }
    demo.write_bismark_cov(genome, reads, files["bismark_cov"])
    demo.write_cpg_report(genome, reads, files["bismark_cpg_report"])
    demo.write_bedmethyl_encode(genome, reads, files["bedmethyl_encode"])
    demo.write_bedmethyl_modkit(genome, reads, files["bedmethyl_modkit"])
    demo.write_pat(genome, reads, files["wgbs_pat"])
    demo.write_beta(genome, reads, files["wgbs_beta"])
    regions = read_regions(tmp_path / "regions.bed", HG38)
    index = build_cpg_index(tmp_path / "CpG.bed.gz", regions)
    return genome, reads, regions, index, files


def test_a_regions_bed_saved_by_excel_names_its_first_chromosome_as_written(tmp_path):
    """A BED with a byte-order mark (and CRLF) gave its first region the chromosome
    '\\ufeffchr1', on which no call ever falls: region 1 was uncovered in every sample, with
    no error."""
    path = tmp_path / "probes.bed"
    path.write_bytes("\ufeffchr1\t925\t1075\tcg1\r\nchr1\t1925\t2075\tcg2\r\n".encode())
    regions = read_regions(path, HG38)
    assert regions.chrom.tolist() == ["chr1", "chr1"] and regions.ids.tolist() == ["cg1", "cg2"]


# ----------------------------------------------------------------------------- behaviour
def test_detect_format_by_extension():
    cases = {
        "a.cov.gz": "bismark_cov",
        "a.bismark.cov": "bismark_cov",
        "a.CpG_report.txt.gz": "bismark_cpg_report",
        "a.CX_report.txt": "bismark_cpg_report",
        "a.bed.gz": "bedmethyl",
        "a.bedmethyl": "bedmethyl",
        "a.pat.gz": "wgbs_pat",
        "a.beta": "wgbs_beta",
        "a.lbeta": "wgbs_beta",
        "betas.csv.gz": "array",
        "betas.tsv": "array",
    }
    for name, fmt in cases.items():
        assert detect_format(name) == fmt, name
    assert detect_format("x.txt", "array") == "array"
    with pytest.raises(ValueError, match="x.txt: cannot tell the format"):
        detect_format("x.txt")
    with pytest.raises(ValueError, match="unknown format 'bam'"):
        detect_format("x.cov", "bam")


def test_every_format_gives_the_same_arrays_in_cpg_mode(demo_set, tmp_path):
    """The same reads written as cov, CpG report, ENCODE/modkit bedMethyl, pat and beta agree."""
    genome, reads, regions, index, files = demo_set
    cfg = IngestConfig(slots="cpg", call="threshold", read_level=False)
    out = {}
    for name, path in files.items():
        convert_sample(path, "", name, regions, cfg, tmp_path / f"{name}.npz", index=index)
        out[name] = load(tmp_path / f"{name}.npz")
    # Reference: per-CpG counts of the simulated reads (both strands), slot = rank in the region.
    mp, tp, mm, tm = demo.per_cpg_counts(genome, reads)
    meth, tot = mp + mm, tp + tm
    ref = np.full((regions.n_regions, 150), 2, dtype=np.int8)
    ref_cov = np.zeros(regions.n_regions, dtype=np.int64)
    for r, (c, s, e, _) in enumerate(genome.regions):
        at = np.flatnonzero((genome.chrom == c) & (genome.pos >= s) & (genome.pos < e))
        for k, i in enumerate(at):
            if tot[i]:
                ref[r, k] = int(meth[i] / tot[i] >= 0.5)
        ref_cov[r] = tot[at].sum()
    for name, arrays in out.items():
        np.testing.assert_array_equal(arrays["methylation"], ref, err_msg=name)
        np.testing.assert_array_equal(arrays["coverage"], ref_cov, err_msg=name)
        np.testing.assert_array_equal(arrays["region_ids"], [r[3] for r in genome.regions])
        assert arrays["methylation"].dtype == np.int8


def test_position_slots_exact_against_a_loop_reference(tmp_path, rng):
    """Bismark coverage in position mode (regions longer than n_positions pool CpGs per bin)."""
    regions_rows = [("chr1", 1000, 1150, "a"), ("chr1", 5000, 5600, "b"), ("chr2", 200, 275, "c")]
    rows, truth = [], []
    for chrom, s, e, _ in regions_rows:
        for p0 in sorted(rng.choice(np.arange(s - 50, e + 50), size=40, replace=False)):
            m, u = int(rng.integers(0, 6)), int(rng.integers(0, 6))
            rows.append((chrom, int(p0) + 1, m, u))
            truth.append((chrom, int(p0), m, u))
    path = write(tmp_path / "x.cov", cov_text(rows))
    regions = read_regions(bed(tmp_path, regions_rows), HG38, n_positions=150)
    convert_sample(path, "", "x", regions, IngestConfig(call="threshold"), tmp_path / "x.npz")
    got = load(tmp_path / "x.npz")
    meth = np.zeros((3, 150))
    tot = np.zeros((3, 150))
    for chrom, p0, m, u in truth:
        for r, (c, s, e, _) in enumerate(regions_rows):
            if c == chrom and s <= p0 < e:
                slot = (p0 - s) * 150 // (e - s)
                meth[r, slot] += m
                tot[r, slot] += m + u
    ref = np.where(tot > 0, (meth / np.maximum(tot, 1) >= 0.5).astype(np.int8), 2)
    np.testing.assert_array_equal(got["methylation"], ref)
    np.testing.assert_array_equal(got["coverage"], tot.sum(axis=1))
    np.testing.assert_array_equal(got["n_valid"], (tot > 0).sum(axis=1))


def test_sampled_calls_keep_the_methylation_level_and_are_seeded(tmp_path):
    n = 3000
    rows = [("chr1", 2 * i + 1, 3, 7) for i in range(n)]  # 30% methylated everywhere
    path = write(tmp_path / "s.cov.gz", cov_text(rows))
    regions = read_regions(bed(tmp_path, [("chr1", 0, 2 * n, "all")]), HG38, n_positions=n)
    cfg = IngestConfig(n_positions=n, call="sample")
    convert_sample(path, "", "s1", regions, cfg, tmp_path / "a.npz", seed=1)
    convert_sample(path, "", "s1", regions, cfg, tmp_path / "b.npz", seed=1)
    convert_sample(path, "", "s2", regions, cfg, tmp_path / "c.npz", seed=1)
    a, b, c = (load(tmp_path / f"{k}.npz")["methylation"] for k in "abc")
    assert abs(a.mean() - 0.3) < 0.03
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    thr = IngestConfig(n_positions=n, call="threshold")
    convert_sample(path, "", "s1", regions, thr, tmp_path / "t.npz")
    assert load(tmp_path / "t.npz")["methylation"].max() == 0


def test_pat_read_level_keeps_within_read_comethylation(tmp_path):
    """Fully methylated and fully unmethylated reads over the same CpGs: read-level slots stay
    concordant along a read; per-CpG sampling mixes them."""
    n_cpg = 10
    write(tmp_path / "CpG.bed.gz", "".join(f"chr1\t{100 + 10 * i + 1}\t{i + 1}\n" for i in range(n_cpg)))
    lines = [f"chr1\t1\t{'C' * n_cpg}\t1\n", f"chr1\t1\t{'T' * n_cpg}\t1\n"] * 1
    write(tmp_path / "s.pat.gz", "".join(lines))
    rows = [("chr1", 100, 200, "r")]
    regions = read_regions(bed(tmp_path, rows), HG38, n_positions=n_cpg)
    index = build_cpg_index(tmp_path / "CpG.bed.gz", regions)
    concord = {True: [], False: []}
    for read_level in (True, False):
        cfg = IngestConfig(n_positions=n_cpg, slots="cpg", read_level=read_level)
        for k in range(40):
            convert_sample(tmp_path / "s.pat.gz", "", f"s{k}", regions, cfg, tmp_path / "p.npz", index=index)
            m = load(tmp_path / "p.npz")["methylation"][0]
            concord[read_level].append(float((m[1:] == m[:-1]).mean()))
    assert np.mean(concord[True]) == 1.0  # one read wins every slot it covers
    assert np.mean(concord[False]) < 0.7


def test_array_matrix_and_probe_table(tmp_path):
    write(
        tmp_path / "probes.tsv",
        "IlmnID\tCHR\tMAPINFO\ncg1\tchr1\t101\ncg2\tchr1\t111\ncg3\tchr2\t51\nctl\t\t\n",
    )
    write(tmp_path / "betas.csv", "CpGs,S1,S2\ncg1,0.9,0.1\ncg2,NA,0.4\ncg3,0.2,0.8\ncgX,0.5,0.5\n")
    regions = read_regions(bed(tmp_path, [("chr1", 100, 250, "r1"), ("chr2", 0, 150, "r2")]), HG38)
    probes = read_probe_table(tmp_path / "probes.tsv")
    cfg = IngestConfig(call="threshold")
    stats = convert_sample(tmp_path / "betas.csv", "", "S2", regions, cfg, tmp_path / "s2.npz", probes=probes)
    m = load(tmp_path / "s2.npz")
    assert m["methylation"][0, 0] == 0 and m["methylation"][0, 10] == 0 and m["methylation"][1, 50] == 1
    assert (m["methylation"] != 2).sum() == 3
    np.testing.assert_array_equal(m["coverage"], [2, 1])
    assert stats["probes_without_coordinates"] == 1
    convert_sample(
        tmp_path / "betas.csv", "array", "one", regions, cfg, tmp_path / "s1.npz", probes=probes, column="S1"
    )
    m1 = load(tmp_path / "s1.npz")
    np.testing.assert_array_equal(m1["coverage"], [1, 1])  # cg2 is NA in S1
    assert m1["methylation"][0, 0] == 1


def test_demo_sheet_to_tissue_inputs(tmp_path):
    """The shipped-style demo through collect(): readable by the tissue module's readers."""
    from genomelab.io.features import read_features
    from genomelab.io.methylation import load_npz_sample
    from genomelab.io.sheets import read_sample_sheet
    from genomelab.tissue.features import extract_features_from_sheet

    sheet = demo.write_demo(tmp_path / "in")
    records = read_ingest_sheet(sheet, "hg38")
    regions = read_regions(tmp_path / "in" / "regions.bed", HG38)
    index = build_cpg_index(tmp_path / "in" / "CpG.bed.gz", regions)
    index.save(tmp_path / "idx.npz")
    index = CpgIndex.load(tmp_path / "idx.npz")
    dropped = []  # the probe table's control probes, as sample_step records them in the QC
    probes = read_probe_table(tmp_path / "in" / "probes.tsv", dropped=dropped)
    cfg = IngestConfig(slots="cpg")
    npz, qc = [], []
    for rec in records:
        out = tmp_path / "out" / "npz" / f"{rec.sample}.npz"
        stats = convert_sample(
            rec.path, rec.format, rec.sample, regions, cfg, out, index=index, probes=probes, column=rec.column
        )
        from genomelab.io.atomic import atomic_write_json

        if rec.format == "array":
            stats["dropped"] = dropped_to_json(dropped)
        atomic_write_json(tmp_path / "out" / "qc" / f"{rec.sample}.json", stats)
        npz.append(str(out))
        qc.append(str(tmp_path / "out" / "qc" / f"{rec.sample}.json"))
    out_dir = tmp_path / "out"
    collect(
        records,
        npz,
        qc,
        out_dir / "samples.tsv",
        out_dir / "summary.json",
        out_dir / "summary.md",
        out_dir / "diagnostics" / "ingest.json",
    )
    tissue_records = read_sample_sheet(out_dir / "samples.tsv")
    assert [r.sample for r in tissue_records] == [r.sample for r in records]
    assert {r.tissue for r in tissue_records} == {"Blood", "Liver"}
    for r in tissue_records:
        meth, ids = load_npz_sample(r.file, 150)
        assert meth.shape == (12, 150) and list(ids) == list(regions.ids)
    extract_features_from_sheet(out_dir / "samples.tsv", tmp_path / "f.h5", 150)
    feats = read_features(tmp_path / "f.h5")
    # Every third region is a marker: Blood and Liver differ there more than elsewhere.
    blood = feats["means"][feats["tissue"] == "Blood"].mean(axis=0)
    liver = feats["means"][feats["tissue"] == "Liver"].mean(axis=0)
    diff = np.abs(blood - liver)
    assert diff[::3].mean() > diff[np.arange(12) % 3 != 0].mean() + 0.2
    assert (out_dir / "summary.json").is_file() and "ingest" in (out_dir / "summary.md").read_text().lower()
    # The summary names the sheet to feed the tissue module: this run's (was results/ingest/...).
    assert f"tissue.input.sheet: {out_dir / 'samples.tsv'}" in (out_dir / "summary.md").read_text()
    # The two array samples share the probe table: its dropped control probes are listed once.
    summary = json.loads((out_dir / "summary.json").read_text())
    assert [(d["what"], d["count"], d["examples"][0]) for d in summary["dropped"]] == [
        ("probes", 1, "ch_control_1")
    ]


def test_bounded_chunks_give_the_same_result(demo_set, tmp_path):
    """Streaming in tiny chunks (chunk_lines) changes nothing: the stream state carries over."""
    _, _, regions, index, files = demo_set
    for name in ("bismark_cov", "bismark_cpg_report", "wgbs_pat", "bedmethyl_modkit"):
        outs = []
        for chunk in (1_000_000, 7):
            cfg = IngestConfig(slots="cpg", call="threshold", chunk_lines=chunk)
            convert_sample(files[name], "", "s", regions, cfg, tmp_path / f"{chunk}.npz", index=index)
            outs.append(load(tmp_path / f"{chunk}.npz"))
        np.testing.assert_array_equal(outs[0]["methylation"], outs[1]["methylation"], err_msg=name)
        np.testing.assert_array_equal(outs[0]["coverage"], outs[1]["coverage"], err_msg=name)


# ----------------------------------------------------------------------------- errors
@pytest.fixture
def small_regions(tmp_path):
    return read_regions(bed(tmp_path, [("chr1", 0, 150, "r1"), ("chr22", 1000, 1150, "r2")]), HG38)


def run_cov(tmp_path: Path, text: str, regions, name: str = "bad.cov") -> None:
    path = write(tmp_path / name, text)
    convert_sample(path, "", "s", regions, IngestConfig(), tmp_path / "o.npz")


def test_malformed_lines_are_named(tmp_path, small_regions):
    good = cov_text([("chr1", 10, 1, 1), ("chr1", 20, 2, 0)])
    with pytest.raises(ValueError, match=r"bad.cov, line 3: malformed bismark_cov line .*integers"):
        run_cov(tmp_path, good + "chr1\t30\t30\t50.0\tx\t1\n", small_regions)
    with pytest.raises(ValueError, match=r"bad.cov, line 2: malformed bismark_cov line .*6 tab-separated"):
        run_cov(tmp_path, good[: good.index("\n") + 1] + "chr1\t20\t20\t50.0\t1\n", small_regions)
    with pytest.raises(ValueError, match=r"line 2: percent methylation disagrees"):
        run_cov(tmp_path, "chr1\t10\t10\t50.0\t1\t1\nchr1\t20\t20\t1\t3\t1\n", small_regions)
    with pytest.raises(ValueError, match=r"bad.cov.gz, line 1: negative read count"):
        run_cov(tmp_path, "chr1\t10\t10\t0\t-1\t2\n", small_regions, "bad.cov.gz")
    assert not (tmp_path / "o.npz").exists()  # nothing half-written


@pytest.mark.parametrize("name", ["cut.cov.gz", "cut.bed.gz"])
def test_truncated_gzip_input_names_the_file(tmp_path, small_regions, name):
    """A cut-off .cov.gz (or bedMethyl) used to end in a bare EOFError naming no file."""
    rows = [("chr1", p, 1, 1) for p in range(1, 40001)]
    text = cov_text(rows)
    if name.endswith(".bed.gz"):
        text = "".join(f"chr1\t{p - 1}\t{p}\tm\t2\t+\t{p - 1}\t{p}\t0\t2\t50.0\n" for _, p, _, _ in rows)
    packed = gzip.compress(text.encode())
    path = tmp_path / name
    path.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt compressed file") as info:
        convert_sample(path, "", "s", small_regions, IngestConfig(chunk_lines=5000), tmp_path / "o.npz")
    assert str(path) in str(info.value)
    assert not (tmp_path / "o.npz").exists()


def test_unsorted_and_concatenated_input(tmp_path, small_regions):
    with pytest.raises(ValueError, match=r"line 2: position 5 on chr1 comes after 20; .*sorted"):
        run_cov(tmp_path, cov_text([("chr1", 20, 1, 1), ("chr1", 5, 1, 1)]), small_regions)
    text = cov_text([("chr1", 20, 1, 1), ("chr22", 1005, 1, 1), ("chr1", 30, 1, 1)])
    with pytest.raises(ValueError, match=r"line 3: chromosome chr1 appears again after chr22"):
        run_cov(tmp_path, text, small_regions)
    # Across chunk boundaries too.
    path = write(tmp_path / "u.cov", cov_text([("chr1", 20, 1, 1), ("chr1", 30, 1, 1), ("chr1", 25, 1, 1)]))
    with pytest.raises(ValueError, match=r"line 3: position 25 on chr1 comes after 30"):
        convert_sample(path, "", "s", small_regions, IngestConfig(chunk_lines=1), tmp_path / "o.npz")


def test_chromosome_naming_mismatch(tmp_path, small_regions):
    with pytest.raises(
        ValueError, match=r"chromosome '1' does not follow the naming of genome build hg38.*'chr1'"
    ):
        run_cov(tmp_path, cov_text([("1", 20, 1, 1)]), small_regions)
    with pytest.raises(ValueError, match=r"regions.bed, line 1: chromosome 'chr1' .* GRCh38 .*expected '1'"):
        read_regions(bed(tmp_path, [("chr1", 0, 150, "r")]), genome_build("GRCh38"))
    with pytest.raises(ValueError, match=r"none of its chromosomes \['lambda'\] occurs in the regions"):
        run_cov(tmp_path, cov_text([("lambda", 20, 1, 1)]), small_regions)
    assert other_style_name("chrM") == "MT" and other_style_name("X") == "chrX"


def test_mixed_builds(tmp_path, small_regions):
    # hg19 chr22 is 51,304,566 bp, hg38 chr22 50,818,468 bp: a position in between is hg19.
    with pytest.raises(ValueError, match=r"51,000,000 on chr22 lies beyond its length 50,818,468 in hg38"):
        run_cov(tmp_path, cov_text([("chr22", 51_000_000, 1, 1)]), small_regions)
    with pytest.raises(ValueError, match=r"declares genome build 'hg19' but ingest.genome_build is 'hg38'"):
        read_regions(write(tmp_path / "t.bed", "track name=x db=hg19\nchr1\t0\t150\n"), HG38)
    write(tmp_path / "x.cov", "")
    sheet = write(tmp_path / "s.tsv", "sample\tpath\ttissue\tbuild\nA\tx.cov\tBlood\thg19\n")
    with pytest.raises(ValueError, match=r"s.tsv, line 2: sample 'A' was made on genome build 'hg19'"):
        read_ingest_sheet(sheet, "hg38")


def test_wgbstools_index_mismatch(demo_set, tmp_path):
    genome, reads, regions, index, files = demo_set
    short = tmp_path / "short.beta"
    np.fromfile(files["wgbs_beta"], dtype=np.uint8)[:-10].tofile(short)
    with pytest.raises(
        ValueError, match=r"short.beta: .* CpGs, but the CpG index .* different genome builds"
    ):
        convert_sample(short, "", "s", regions, IngestConfig(), tmp_path / "o.npz", index=index)
    n = len(genome.pos)
    write(tmp_path / "far.pat.gz", f"chr1\t{n - 2}\tCCC\t1\n")  # CpGs n-2..n are on chr2 in the index
    with pytest.raises(ValueError, match=r"far.pat.gz, line 1: CpGs .* on chr1, but the CpG index"):
        convert_sample(
            tmp_path / "far.pat.gz", "", "s", regions, IngestConfig(), tmp_path / "o.npz", index=index
        )
    write(tmp_path / "bad.pat", "chr1\t1\tCCX\t1\n")
    with pytest.raises(ValueError, match=r"bad.pat, line 1: pattern must consist of C"):
        convert_sample(
            tmp_path / "bad.pat", "", "s", regions, IngestConfig(), tmp_path / "o.npz", index=index
        )
    with pytest.raises(ValueError, match="needs a CpG index"):
        convert_sample(files["wgbs_pat"], "", "s", regions, IngestConfig(), tmp_path / "o.npz")


def test_shifted_coordinates_do_not_fall_on_index_cpgs(demo_set, tmp_path):
    """cpg mode: calls that miss the index's CpGs mean another build (or a coordinate shift)."""
    genome, reads, regions, index, files = demo_set
    mp, tp, mm, tm = demo.per_cpg_counts(genome, reads)
    rows = [
        (str(c), int(p) + 1 + 5, int(m), int(t - m))
        for c, p, m, t in zip(genome.chrom, genome.pos, mp + mm, tp + tm, strict=True)
        if t
    ]
    path = write(tmp_path / "shifted.cov", cov_text(rows))
    with pytest.raises(ValueError, match=r"shifted.cov: only .*% of its .* fall on CpGs of the index"):
        convert_sample(path, "", "s", regions, IngestConfig(slots="cpg"), tmp_path / "o.npz", index=index)


def test_bedmethyl_and_array_value_errors(tmp_path, small_regions):
    line = "chr1\t10\t11\tm\t5\t+\t10\t11\t0,0,0\t5\t{pct}\n"
    with pytest.raises(ValueError, match=r"b.bed, line 2: percent methylated outside \[0, 100\]"):
        run_cov(tmp_path, line.format(pct=20) + line.format(pct=120), small_regions, "b.bed")
    with pytest.raises(ValueError, match=r"b2.bed, line 1: malformed bedmethyl line \(expected 11"):
        run_cov(tmp_path, "chr1\t10\t11\tm\t5\n", small_regions, "b2.bed")
    write(tmp_path / "p.tsv", "probe\tchrom\tpos\ncg1\tchr1\t11\n")
    write(tmp_path / "m.tsv", "probe\tA\ncg1\t57.3\n")
    probes = read_probe_table(tmp_path / "p.tsv")
    with pytest.raises(ValueError, match=r"m.tsv, line 2: beta value 57.3 of sample 'A' is outside \[0, 1\]"):
        convert_sample(
            tmp_path / "m.tsv", "", "A", small_regions, IngestConfig(), tmp_path / "o.npz", probes=probes
        )
    with pytest.raises(ValueError, match=r"m.tsv: no sample column 'B'"):
        convert_sample(
            tmp_path / "m.tsv", "", "B", small_regions, IngestConfig(), tmp_path / "o.npz", probes=probes
        )
    with pytest.raises(ValueError, match="needs a probe table"):
        convert_sample(tmp_path / "m.tsv", "", "A", small_regions, IngestConfig(), tmp_path / "o.npz")


def test_region_and_sheet_errors(tmp_path):
    with pytest.raises(ValueError, match=r"regions r1 .* and r2 .* overlap"):
        read_regions(bed(tmp_path, [("chr1", 0, 150, "r1"), ("chr1", 100, 250, "r2")]), HG38)
    with pytest.raises(ValueError, match=r"regions.bed, line 1: region chr1:150-150 is empty"):
        read_regions(bed(tmp_path, [("chr1", 150, 150, "r1")]), HG38)
    with pytest.raises(FileNotFoundError, match="region file .*nope.bed does not exist"):
        read_regions(tmp_path / "nope.bed", HG38)
    with pytest.raises(ValueError, match="unknown genome build 'hg37'"):
        genome_build("hg37")
    sheet = write(tmp_path / "s.tsv", "sample\tpath\ttissue\nA\tmissing.cov\tBlood\n")
    with pytest.raises(
        FileNotFoundError, match=r"s.tsv, line 2: file .*missing.cov of sample 'A' does not exist"
    ):
        read_ingest_sheet(sheet)
    write(tmp_path / "a.cov", "")
    sheet = write(tmp_path / "s2.tsv", "sample\tpath\ttissue\nA\ta.cov\tBlood\nA\ta.cov\tLiver\n")
    with pytest.raises(ValueError, match=r"s2.tsv, line 3: duplicate sample 'A'"):
        read_ingest_sheet(sheet)
    with pytest.raises(ValueError, match="ingest.call must be one of"):
        IngestConfig(call="majority")
    with pytest.raises(ValueError, match="ingest.slots must be one of"):
        IngestConfig(slots="bins")


def demo_ingest_section(folder: Path, probes: bool = True) -> dict:
    """An ingest config section for the demo's files written to ``folder`` (hg38)."""
    return {
        "samples": str(demo.write_demo(folder)),
        "regions": str(folder / "regions.bed"),
        "genome_build": "hg38",
        "slots": "position",
        "cpg_index": str(folder / "CpG.bed.gz"),
        "probes": str(folder / "probes.tsv") if probes else "",
        "n_positions": 150,
    }


def test_workflow_records_and_job_inputs(tmp_path):
    from genomelab.ingest.sheet import sample_inputs, workflow_records

    section = demo_ingest_section(tmp_path / "d", probes=False)
    with pytest.raises(ValueError, match="array_blood is an array matrix: set ingest.probes"):
        workflow_records(section)
    section["probes"] = str(tmp_path / "d" / "probes.tsv")
    records = workflow_records(section)
    assert set(sample_inputs(records["blood_cov"], section, "idx.npz")) == {"data", "regions"}
    assert sample_inputs(records["blood_pat"], section, "idx.npz")["cpg_index"] == "idx.npz"
    assert sample_inputs(records["array_liver"], section, "idx.npz")["probes"].endswith("probes.tsv")
    with pytest.raises(ValueError, match=r"blood_pat \(wgbs_pat, slots position\) needs ingest.cpg_index"):
        workflow_records({**section, "cpg_index": ""})
    with pytest.raises(ValueError, match="ingest.regions is empty"):
        workflow_records({**section, "regions": ""})
    # A bad regions BED stops the workflow at parse time (before: in every sample's job).
    regions = (tmp_path / "d" / "regions.bed").read_text().splitlines()
    for k, (i, edit, message) in enumerate(
        [
            (
                0,
                lambda f: [f[0].removeprefix("chr"), *f[1:]],
                r"line 1: chromosome '1' does not follow the naming of genome build hg38",
            ),
            (1, lambda f: [f[0], f[1], "abc", *f[3:]], r"line 2: start/end must be integers"),
            (
                1,
                lambda f: [f[0], "1000100", "1000250", *f[3:]],
                r"regions demo_r001 .* and demo_r002 .* overlap",
            ),
        ]
    ):
        fields = regions[i].split("\t")
        lines = regions[:i] + ["\t".join(edit(fields))] + regions[i + 1 :]
        bad = write(tmp_path / f"bad{k}.bed", "\n".join(lines) + "\n")
        with pytest.raises(ValueError, match=f"bad{k}.bed[:,] " + message):
            workflow_records({**section, "regions": str(bad)})


def test_jobs_leave_the_regions_bed_to_the_main_process(tmp_path):
    """A cluster job parses the workflow again: it gets the same records and job inputs
    without reading the regions BED (the main process has refused a bad one already, naming
    it; the job's own step reads it again)."""
    from genomelab.ingest.sheet import sample_inputs, workflow_records

    section = demo_ingest_section(tmp_path / "d")
    records = workflow_records(section)
    in_job = workflow_records(section, main_process=False)
    assert in_job == records
    assert [sample_inputs(r, section, "i.npz") for r in in_job.values()] == [
        sample_inputs(r, section, "i.npz") for r in records.values()
    ]
    bed = Path(section["regions"])
    lines = bed.read_text().splitlines()
    bed.write_text("\n".join([lines[0].removeprefix("chr"), *lines[1:]]) + "\n")
    with pytest.raises(
        ValueError, match=rf"{re.escape(str(bed))}[:,] line 1: chromosome '1' does not follow"
    ):
        workflow_records(section)
    assert workflow_records(section, main_process=False) == records
    # The sheet itself is still read and checked in every job (its records are the inputs).
    section["cpg_index"] = ""
    with pytest.raises(ValueError, match=r"blood_pat \(wgbs_pat, slots position\) needs ingest.cpg_index"):
        workflow_records(section, main_process=False)


def test_a_cluster_jobs_parse_skips_the_regions_bed_and_the_main_dry_run_refuses_a_bad_one(tmp_path):
    """The rule file passes ``workflow.is_main_process``: a job started the way the SLURM
    executor starts one (``--target-jobs ... --mode remote``) plans its sample without reading
    the regions BED, while the dry run that plans the whole run still stops on a bad BED,
    naming it, before any job."""
    import subprocess

    from test_workflow import tool

    section = demo_ingest_section(tmp_path / "d")
    config = tmp_path / "my_ingest.yaml"
    config.write_text(json.dumps({"run": "dagjobs", "ingest": {"enabled": True, **section}}))
    bed = Path(section["regions"])
    lines = bed.read_text().splitlines()
    bed.write_text("\n".join([lines[0].removeprefix("chr"), *lines[1:]]) + "\n")
    base = [tool("snakemake"), "-s", str(ROOT / "Snakefile"), "--directory", str(tmp_path), "-n"]
    base += ["--cores", "1", "--configfile", str(config)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")

    def plan(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*base, *args], capture_output=True, text=True, timeout=300, env=env)

    main = plan()
    assert main.returncode != 0
    assert re.search(
        rf"{re.escape(str(bed))}[:,] line 1: chromosome '1' does not follow", main.stdout + main.stderr
    )
    target = ("--target-jobs", "ingest_sample:sample=blood_cov", "--allowed-rules", "ingest_sample")
    # The same target planned by a main process still reads the BED...
    assert plan(*target).returncode != 0
    # ...a cluster job's parse does not (the main process refused it before submitting any).
    job = plan(*target, "--mode", "remote")
    assert job.returncode == 0, (job.stdout + job.stderr)[-3000:]
    assert re.search(r"^ingest_sample\s+1$", job.stdout, flags=re.M), job.stdout[-3000:]


def test_a_sample_file_in_the_other_chromosome_naming_stops_the_run_at_parse_time(tmp_path):
    """A bedMethyl or coverage file with `1` against hg38's `chr1` regions stopped only in
    that sample's ingest job, after reading the file; now the parse does, naming the sample,
    file and line, from the file's first data line. Jobs (main_process=False) skip it."""
    from genomelab.ingest.sheet import workflow_records

    section = demo_ingest_section(tmp_path / "d")
    records = workflow_records(section)
    cov = records["blood_cov"].path
    opener = gzip.open if cov.suffix == ".gz" else open
    with opener(cov, "rt") as fh:
        lines = fh.read().splitlines()
    with opener(cov, "wt") as fh:
        fh.write("".join(f"{line.removeprefix('chr')}\n" for line in lines))
    with pytest.raises(
        ValueError,
        match=rf"ingest sample blood_cov \({re.escape(str(cov))}, line 1\): chromosome '1' does not "
        "follow the naming of genome build hg38",
    ):
        workflow_records(section)
    assert set(workflow_records(section, main_process=False)) == set(records)
    # A file the peek cannot read (corrupt gzip) is left to its own job: the others still run.
    cov.write_bytes(b"\x1f\x8b\x08\x00 not really gzip")
    assert set(workflow_records(section)) == set(records)


def test_regions_with_more_cpgs_than_slots_and_empty_files(tmp_path):
    n_cpg = 12
    write(tmp_path / "CpG.bed.gz", "".join(f"chr1\t{10 + 4 * i + 1}\t{i + 1}\n" for i in range(n_cpg)))
    regions = read_regions(bed(tmp_path, [("chr1", 0, 100, "r")]), HG38, n_positions=8)
    index = build_cpg_index(tmp_path / "CpG.bed.gz", regions)
    path = write(tmp_path / "s.cov", cov_text([("chr1", 10 + 4 * i + 1, 1, 0) for i in range(n_cpg)]))
    stats = convert_sample(
        path, "", "s", regions, IngestConfig(n_positions=8, slots="cpg"), tmp_path / "o.npz", index=index
    )
    assert stats["calls_past_last_slot"] == n_cpg - 8
    assert load(tmp_path / "o.npz")["n_valid"][0] == 8
    write(tmp_path / "empty.cov", "")
    with pytest.raises(ValueError, match="empty.cov: cannot be read as bismark_cov"):
        convert_sample(
            tmp_path / "empty.cov", "", "s", regions, IngestConfig(n_positions=8), tmp_path / "o.npz"
        )


def test_tissue_link_checks_n_positions():
    from genomelab.ingest.sheet import check_tissue_input

    out = "results/ingest/samples.tsv"
    check_tissue_input({"n_positions": 150}, {"sheet": out, "n_positions": 150}, out)
    check_tissue_input({"n_positions": 150}, {"sheet": "other.tsv", "n_positions": 100}, out)
    with pytest.raises(ValueError, match=r"tissue.input.n_positions \(100\) differs from ingest.n_positions"):
        check_tissue_input({"n_positions": 150}, {"sheet": out, "n_positions": 100}, out)


def test_cx_report_keeps_cg_and_merges_strands(tmp_path):
    text = (
        "chr1\t11\t+\t3\t1\tCG\tCGA\n"
        "chr1\t12\t-\t1\t3\tCG\tCGT\n"
        "chr1\t14\t+\t5\t0\tCHH\tCAT\n"
        "chr1\t21\t+\t0\t0\tCG\tCGA\n"
    )
    path = write(tmp_path / "s.CX_report.txt", text)
    regions = read_regions(bed(tmp_path, [("chr1", 0, 150, "r")]), HG38)
    convert_sample(path, "", "s", regions, IngestConfig(call="threshold"), tmp_path / "m.npz")
    merged = load(tmp_path / "m.npz")
    assert merged["coverage"][0] == 8  # CHH and zero-coverage lines dropped
    assert merged["methylation"][0, 10] == 1 and (merged["methylation"] != 2).sum() == 1  # 4/8 >= 0.5
    cfg = IngestConfig(call="threshold", merge_strands=False)
    convert_sample(path, "", "s", regions, cfg, tmp_path / "u.npz")
    unmerged = load(tmp_path / "u.npz")["methylation"][0]
    assert unmerged[10] == 1 and unmerged[11] == 0


def test_probes_without_coordinates_are_counted_not_silent(tmp_path, caplog):
    write(tmp_path / "p.tsv", "probe\tchrom\tpos\ncg1\tchr1\t11\nctl1\t\t\nctl2\tchr1\t\ncg2\tchr2\t5\n")
    with caplog.at_level("WARNING"):
        probes = read_probe_table(tmp_path / "p.tsv")
    assert probes["probe"].tolist() == ["cg1", "cg2"]
    assert "ingest_sample: 2 probes dropped (no chromosome or position in" in caplog.text
    assert "first: ctl1, ctl2" in caplog.text


def test_new_samples_to_predict_need_no_tissue_label(tmp_path):
    """An ingest sheet of new samples (to classify) may leave out tissue: the tissue sheet it
    writes is read as a prediction input. Where a module trains on the ingest output, the
    unlabelled samples are refused at parse time, naming the ingest sheet and the samples."""
    from genomelab.ingest.sheet import check_labels, write_tissue_sheet
    from genomelab.io.sheets import read_sample_sheet

    write(tmp_path / "a.cov", "")
    write(tmp_path / "b.cov", "")
    sheet = write(tmp_path / "new.tsv", "sample\tpath\nA\ta.cov\nB\tb.cov\n")
    records = read_ingest_sheet(sheet)
    assert [r.tissue for r in records] == ["", ""]
    for r in records:
        np.savez(tmp_path / f"{r.sample}.npz", methylation=np.zeros((2, 150), np.int8))
    out = write_tissue_sheet(records, [tmp_path / "A.npz", tmp_path / "B.npz"], tmp_path / "samples.tsv")
    assert [r.sample for r in read_sample_sheet(out, labels=False)] == ["A", "B"]
    by_sample = {r.sample: r for r in records}
    made = "results/x/ingest/samples.tsv"
    config = {
        "ingest": {"samples": str(sheet)},
        "tissue": {"enabled": True, "input": {"sheet": "", "source": "hdf5"}, "predict": {"inputs": made}},
        "deconv": {"enabled": False, "input": {"sample_sheet": made}},
    }
    check_labels(by_sample, config, made)  # predicted only (a disabled deconv does not train on it)
    config["tissue"]["input"]["sheet"] = made
    with pytest.raises(
        ValueError,
        match=r"new.tsv: 2 sample\(s\) have no tissue label, first \['A', 'B'\], but tissue.input.sheet",
    ):
        check_labels(by_sample, config, made)


def test_per_cpg_counts_become_bismark_coverage_as_the_doc_shows(tmp_path):
    """A per-CpG counts table (bsseq's export: chrom, pos, M, Cov) named .tsv.gz was taken for
    an array matrix and stopped asking for ingest.probes, nothing more; the error now says the
    format came from the name and where counts go, and the doc's awk line converts it."""
    import shutil
    import subprocess

    from genomelab.ingest.sheet import workflow_records

    rows = [("chr22", 1001, 3, 4), ("chr22", 1010, 0, 0), ("chr22", 1020, 5, 5), ("chr22", 5003, 1, 3)]
    write(
        tmp_path / "counts.tsv.gz",
        "chr\tpos\tM\tCov\n" + "".join(f"{c}\t{p}\t{m}\t{n}\n" for c, p, m, n in rows),
    )
    regions_bed = bed(tmp_path, [("chr22", 950, 1100, "a"), ("chr22", 4950, 5100, "b")])
    sheet = write(tmp_path / "samples.tsv", "sample\tpath\ttissue\nimr90\tcounts.tsv.gz\tLung\n")
    section = {
        "samples": str(sheet),
        "regions": str(regions_bed),
        "genome_build": "hg18",
        "slots": "position",
    }
    section |= {"cpg_index": "", "probes": "", "n_positions": 150}
    with pytest.raises(
        ValueError,
        match=r"imr90 is an array matrix: .*counts\.tsv\.gz: format array, guessed from its name.*Bismark coverage",
    ):
        workflow_records(section)
    if shutil.which("awk") is None:
        pytest.skip("awk is not installed")
    text = (Path(__file__).resolve().parents[1] / "docs" / "ingest.md").read_text()
    (command,) = re.findall(r"^zcat counts\.tsv\.gz \| awk .*$", text, flags=re.M)
    subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=tmp_path, check=True)
    regions = read_regions(regions_bed, genome_build("hg18"))
    convert_sample(tmp_path / "sample1.cov.gz", "", "imr90", regions, IngestConfig(), tmp_path / "s.npz")
    got = load(tmp_path / "s.npz")
    np.testing.assert_array_equal(got["coverage"], [9, 3])  # the CpG without reads is left out
    np.testing.assert_array_equal(got["methylated"], [8, 1])


def _doc_command(pattern: str) -> str:
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "ingest.md").read_text()
    (command,) = re.findall(pattern, text, flags=re.M)
    return command


def _run_doc_command(command: str, cwd: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("awk") is None:
        pytest.skip("awk is not installed")
    subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=cwd, check=True)


def test_a_second_sample_s_counts_and_methylkit_files_as_the_doc_shows(tmp_path):
    """Counts tables hold several samples (bsseq's BS.chr22: M_r1 Cov_r1 M_r2 Cov_r2) and
    methylKit writes percentages, not counts; the doc's one awk line fitted only the first
    sample of a bsseq export, though its heading names methylKit. Its lines now take the
    sample's columns, and methylKit's percentages back to exact counts."""
    rows = [("chr22", 1001, 3, 4, 1, 7), ("chr22", 1020, 5, 5, 0, 3), ("chr22", 5003, 1, 3, 0, 0)]
    write(
        tmp_path / "counts.tsv.gz",
        "chr\tpos\tM_r1\tCov_r1\tM_r2\tCov_r2\n" + "".join("\t".join(map(str, r)) + "\n" for r in rows),
    )
    regions = read_regions(
        bed(tmp_path, [("chr22", 950, 1100, "a"), ("chr22", 4950, 5100, "b")]), genome_build("hg18")
    )
    command = _doc_command(r"^zcat counts\.tsv\.gz \| awk .*$")
    _run_doc_command(command.replace("-v M=3 -v C=4", "-v M=5 -v C=6"), tmp_path)
    convert_sample(tmp_path / "sample1.cov.gz", "", "r2", regions, IngestConfig(), tmp_path / "r2.npz")
    got = load(tmp_path / "r2.npz")
    np.testing.assert_array_equal(got["coverage"], [10, 0])  # r2 has no read at 5003
    np.testing.assert_array_equal(got["methylated"], [1, 0])
    # methylKit: 1 of 3 reads is 33.33%, 7 of 12 is 58.33%; a minus-strand row on the G.
    write(
        tmp_path / "sample1.methylKit.txt.gz",
        "chrBase\tchr\tbase\tstrand\tcoverage\tfreqC\tfreqT\n"
        "chr22.1001\tchr22\t1001\tF\t3\t33.33\t66.67\n"
        "chr22.1002\tchr22\t1002\tR\t12\t58.33\t41.67\n"
        "chr22.5003\tchr22\t5003\tF\t9999\t99.99\t0.01\n",
    )
    (tmp_path / "sample1.cov.gz").unlink()
    _run_doc_command(_doc_command(r"^zcat sample1\.methylKit\.txt\.gz \| awk .*$"), tmp_path)
    convert_sample(tmp_path / "sample1.cov.gz", "", "mk", regions, IngestConfig(), tmp_path / "mk.npz")
    got = load(tmp_path / "mk.npz")
    np.testing.assert_array_equal(got["coverage"], [15, 9999])
    np.testing.assert_array_equal(got["methylated"], [8, 9998])
