"""UXM path: CpG index from a FASTA, fragment counts from .pat and Bismark BAM, block tables."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from genomelab.ingest.cpg_index import cpg_positions_in_ranges, write_cpg_bed
from genomelab.ingest.fragments import FragmentConfig, classify, count_bam, count_pat, write_sample_counts
from genomelab.io.blocks import read_block_counts, read_blocks
from genomelab.io.errors import FormatError
from genomelab.io.pat import read_pat, write_pat

# ----------------------------------------------------------------------------- CpG index


def test_cpg_index_from_fasta_equals_hand_made(tmp_path: Path) -> None:
    fasta = tmp_path / "genome.fa"
    # chr2 wraps at 3 bases so that its second CG spans a line break; chr1 is soft-masked.
    fasta.write_text(
        ">chr2 second\nACG\nTTC\nGAC\nG\n>chr1\nttcgcg\n>chr10\nCG\n>chrUn_x\nCGCG\n>chrX\nAACGN\n"
    )
    out = tmp_path / "CpG.bed.gz"
    info = write_cpg_bed(fasta, out)
    hand = "chr1\t3\t1\nchr1\t5\t2\nchr2\t2\t3\nchr2\t6\t4\nchr2\t9\t5\nchr10\t1\t6\nchrX\t3\t7\n"
    with gzip.open(out, "rt") as fh:  # BGZF reads as gzip
        assert fh.read() == hand
    assert info["n_cpgs"] == 7 and info["skipped"] == ["chrUn_x"]
    # Every record, in FASTA order; plain text when the name has no .gz.
    write_cpg_bed(fasta, tmp_path / "all.bed", contigs="all", order="fasta")
    assert (tmp_path / "all.bed").read_text() == (
        "chr2\t2\t1\nchr2\t6\t2\nchr2\t9\t3\nchr1\t3\t4\nchr1\t5\t5\nchr10\t1\t6\n"
        "chrUn_x\t1\t7\nchrUn_x\t3\t8\nchrX\t3\t9\n"
    )
    # Read back for BAM input: positions (0-based) of the CpGs numbered in the ranges.
    got = cpg_positions_in_ranges(out, np.array([2, 6]), np.array([4, 7]))
    assert {c: (p.tolist(), i.tolist()) for c, (p, i) in got.items()} == {
        "chr1": ([4], [2]),
        "chr2": ([1], [3]),
        "chr10": ([0], [6]),
    }


def test_cpg_index_errors(tmp_path: Path) -> None:
    fasta = tmp_path / "g.fa"
    fasta.write_text(">scaffold_1\nACGT\n")
    with pytest.raises(FormatError, match=r"g\.fa: no primary chromosome"):
        write_cpg_bed(fasta, tmp_path / "x.bed")
    with pytest.raises(ValueError, match="contigs must be one of"):
        write_cpg_bed(fasta, tmp_path / "x.bed", contigs="some")
    bad = tmp_path / "bad.bed"
    bad.write_text("chr1\t3\t1\nchr1\t5\t3\n")
    with pytest.raises(FormatError, match=r"bad\.bed, line 2: CpG number 3 where 2"):
        cpg_positions_in_ranges(bad, np.array([1]), np.array([3]))


# ----------------------------------------------------------------------------- reads
# Ten CpGs on chr1, the C of CpG k at 0-based position 10 k (numbers 1..10).
GENOME = bytearray(b"A" * 120)
for _k in range(1, 11):
    GENOME[10 * _k : 10 * _k + 2] = b"CG"
GENOME = bytes(GENOME)

BLOCKS = (
    "chr\tstart\tend\tstartCpG\tendCpG\ttarget\tname\tdirection\tLiver\tBlood\n"
    "chr1\t10\t42\t1\t5\tLiver\tB1\tU\t0.9\t0.1\n"
    "chr1\t50\t102\t5\t11\tBlood\tB2\tM\t0.2\t0.8\n"
)
# (first CpG number, pattern, count) and, clipped to the blocks by hand (>= 4 known calls;
# U <= 25% methylated, M >= 75%):
PAT = [
    (1, "TTTT", 3),  # B1: 0/4 -> U x3
    (1, "CCCT", 1),  # B1: 3/4 -> M
    (2, "CTT", 2),  # B1: 3 calls, too short
    (3, "CCCCCC", 1),  # B1: 2 calls, too short; B2: 4/4 -> M
    (4, "TTTTT", 1),  # B1: 1 call; B2: 0/4 -> U
    (5, "CT.TCT", 2),  # B2: 2/5 -> X x2
    (7, "TCTT", 1),  # B2: 1/4 -> U
]
HAND = np.array([[3, 0, 1], [2, 2, 1]])  # blocks x (U, X, M)


def write_blocks(tmp_path: Path) -> Path:
    path = tmp_path / "atlas.tsv"
    path.write_text(BLOCKS)
    return path


def write_index(tmp_path: Path) -> Path:
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + GENOME.decode() + "\n")
    write_cpg_bed(fasta, tmp_path / "CpG.bed.gz")
    return tmp_path / "CpG.bed.gz"


def _segment(pysam, header, name, start, calls, strand="CT", flag=0, mapq=40, mate=None):
    """One aligned read from ``start`` (0-based) with CpG calls {C position: 'Z'/'z'}."""
    last = max(calls) + 2
    seg = pysam.AlignedSegment(header)
    seg.query_name, seg.reference_id, seg.reference_start = name, 0, start
    seg.query_sequence = GENOME[start:last].decode()
    seg.cigarstring = f"{last - start}M"
    seg.flag, seg.mapping_quality = flag, mapq
    xm = ["."] * (last - start)
    for c, z in calls.items():
        xm[c - start + (1 if strand == "GA" else 0)] = z
    seg.set_tag("XM", "".join(xm))
    seg.set_tag("XG", strand)
    if mate is not None:
        seg.next_reference_id, seg.next_reference_start = 0, mate
    return seg


def calls_of(first: int, pattern: str) -> dict[int, str]:
    return {10 * (first + i): ("Z" if ch == "C" else "z") for i, ch in enumerate(pattern) if ch != "."}


def write_bam(tmp_path: Path) -> Path:
    """The reads of PAT as Bismark alignments: single reads on both strands, one pair whose
    mates overlap, and reads the default filters drop."""
    pysam = pytest.importorskip("pysam")
    header = pysam.AlignmentHeader.from_dict({"HD": {"VN": "1.6"}, "SQ": [{"SN": "chr1", "LN": len(GENOME)}]})
    segs = []
    n = 0
    for first, pattern, count in PAT:
        for _ in range(count):
            n += 1
            calls = calls_of(first, pattern)
            start = 10 * first - 3
            if (first, pattern) == (5, "CT.TCT") and n % 2:
                # Paired: mate 1 calls CpGs 5-6, mate 2 CpGs 6-10; they agree on CpG 6.
                m1 = {k: v for k, v in calls.items() if k <= 60}
                m2 = {k: v for k, v in calls.items() if k >= 60}
                segs.append(_segment(pysam, header, f"r{n}", start, m1, flag=1 | 2 | 64 | 32, mate=57))
                segs.append(_segment(pysam, header, f"r{n}", 57, m2, flag=1 | 2 | 128 | 16, mate=start))
            else:
                segs.append(
                    _segment(pysam, header, f"r{n}", start, calls, strand="GA" if n % 3 == 0 else "CT")
                )
    # Dropped by the default filters: low mapping quality, a duplicate, a secondary alignment.
    segs.append(_segment(pysam, header, "lowq", 7, calls_of(1, "CCCC"), mapq=5))
    segs.append(_segment(pysam, header, "dup", 7, calls_of(1, "CCCC"), flag=1024))
    segs.append(_segment(pysam, header, "sec", 7, calls_of(1, "CCCC"), flag=256))
    segs.sort(key=lambda s: s.reference_start)
    path = tmp_path / "s.bam"
    with pysam.AlignmentFile(str(path), "wb", header=header) as bam:
        for s in segs:
            bam.write(s)
    return path


def test_pat_and_bam_give_hand_counted_fragments(tmp_path: Path) -> None:
    blocks = read_blocks(write_blocks(tmp_path), need_values=True)
    cfg = FragmentConfig()
    write_pat(tmp_path / "s.pat.gz", [("chr1", f, p, c) for f, p, c in PAT])
    from_pat, pat_stats = count_pat(tmp_path / "s.pat.gz", blocks, cfg)
    from_bam, bam_stats = count_bam(write_bam(tmp_path), blocks, write_index(tmp_path), cfg)
    np.testing.assert_array_equal(from_pat, HAND)
    np.testing.assert_array_equal(from_bam, HAND)
    assert (
        pat_stats["reads"] == 11 and pat_stats["clips_too_short"] == 4
    )  # (2,CTT)x2, (3,..) and (4,..) in B1
    assert bam_stats["bam_reads_filtered"] == 3 and bam_stats["bam_fragments"] == 11
    # Small chunks split the file anywhere: same counts.
    np.testing.assert_array_equal(count_pat(tmp_path / "s.pat.gz", blocks, cfg, chunk_lines=2)[0], HAND)


def test_thresholds_min_cpgs_and_hydroxy(tmp_path: Path) -> None:
    cfg = FragmentConfig()
    # f = 0.25 is U, 0.75 is M (UXM l4 bins), 0.5 X; 3 calls are too few.
    assert classify([1, 3, 2, 0], [4, 4, 4, 3], cfg).tolist() == [0, 2, 1, -1]
    loose = FragmentConfig(min_cpgs=3, u_max=0.34, m_min=0.66)
    assert classify([1, 2, 0], [3, 3, 3], loose).tolist() == [0, 2, 0]
    with pytest.raises(ValueError, match="u_max < m_min"):
        FragmentConfig(u_max=0.8, m_min=0.7)
    blocks = read_blocks(write_blocks(tmp_path))
    write_pat(tmp_path / "h.pat", [("chr1", 5, "HHHT", 2), ("chr1", 5, "HH..TT", 1)])
    counts, _ = count_pat(tmp_path / "h.pat", blocks, cfg)
    assert counts.tolist() == [[0, 0, 0], [0, 1, 2]]  # H counts as methylated; '.' is unknown


def test_overlapping_blocks_count_independently(tmp_path: Path) -> None:
    path = tmp_path / "b.bed"
    path.write_text("chr1\t10\t42\t1\t5\nchr1\t20\t62\t2\t7\n")
    blocks = read_blocks(path)
    write_pat(tmp_path / "o.pat", [("chr1", 1, "CCCCTT", 1)])
    counts, _ = count_pat(tmp_path / "o.pat", blocks, FragmentConfig())
    assert counts.tolist() == [[0, 0, 1], [0, 1, 0]]  # CCCC -> M; CCCTT -> 3/5 X


def test_sample_counts_file_round_trip(tmp_path: Path) -> None:
    blocks_path = write_blocks(tmp_path)
    write_pat(tmp_path / "s.pat.gz", [("chr1", f, p, c) for f, p, c in PAT])
    write_sample_counts(
        tmp_path / "s.pat.gz", "pat", blocks_path, {}, tmp_path / "s.tsv", tmp_path / "s.json"
    )
    table, counts = read_block_counts(tmp_path / "s.tsv")
    np.testing.assert_array_equal(counts, HAND)
    assert table.name.tolist() == ["B1", "B2"] and table.start_cpg.tolist() == [1, 5]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("chr1\t1\tCCXT\t1\n", r"line 1: pattern must consist of C, T, H, \."),
        ("chr1\t5\tCC\t1\nchr1\t3\tCC\t1\n", r"line 2: CpG number 3 on chr1 comes after 5"),
        ("chr1\t5\tCC\t1\nchr2\t9\tCC\t1\nchr1\t12\tC\t1\n", r"line 3: chromosome chr1 appears again"),
        ("chr1\t5\tCC\n", r"line 1: expected >= 4"),
        ("chr1\t5\tCC\t0\n", r"line 1: CpG number and count must be >= 1"),
    ],
)
def test_pat_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.pat"
    path.write_text(text)
    with pytest.raises(FormatError, match=r"bad\.pat, " + message):
        list(read_pat(path))


def test_pat_on_blocks_of_another_chromosome(tmp_path: Path) -> None:
    blocks = read_blocks(write_blocks(tmp_path))
    write_pat(tmp_path / "w.pat", [("chr2", 1, "CCCC", 1)])
    with pytest.raises(FormatError, match=r"w\.pat, line 1: .*different CpG indexes"):
        count_pat(tmp_path / "w.pat", blocks, FragmentConfig())


def test_bam_without_bismark_tags(tmp_path: Path) -> None:
    pysam = pytest.importorskip("pysam")
    header = pysam.AlignmentHeader.from_dict({"SQ": [{"SN": "chr1", "LN": 120}]})
    seg = pysam.AlignedSegment(header)
    seg.query_name, seg.reference_id, seg.reference_start = "q", 0, 5
    seg.query_sequence, seg.cigarstring, seg.mapping_quality = "ACGTA", "5M", 30
    with pysam.AlignmentFile(str(tmp_path / "x.bam"), "wb", header=header) as bam:
        bam.write(seg)
    with pytest.raises(FormatError, match=r"x\.bam: record 1 \(read q\) lacks the Bismark XM/XG"):
        count_bam(
            tmp_path / "x.bam", read_blocks(write_blocks(tmp_path)), write_index(tmp_path), FragmentConfig()
        )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("chr\tstart\tend\tstartCpG\tendCpG\tA\nchr1\t10\t5\t1\t5\t0.5\n", r"line 2: start 10 and end 5"),
        ("chr\tstart\tend\tstartCpG\tendCpG\tA\nchr1\t1\t5\t4\t4\t0.5\n", r"line 2: startCpG 4 and endCpG 4"),
        (
            "chr\tstart\tend\tstartCpG\tendCpG\tA\nchr1\t1\t5\t1\t4\t55\n",
            r"line 2: value 55.0 of 'A' is outside",
        ),
        (
            "chr\tstart\tend\tstartCpG\tendCpG\tA\nchr1\t1\t5\t1\t4\n",
            r"line 2: expected 6 tab-separated fields",
        ),
        ("chr1\t1\t5\t1\t4\tT\tn\tU\t0.1\t0.2\n", r"line 1: 10 columns but no header line"),
        ("chr1\t1\t5\t1\t4\tT\tn\tQ\n", r"line 1: direction must be U or M"),
        ("chr1\t1\t5\t1\t4\nchr1\tx\t5\t1\t4\n", r"line 2: start must be an integer"),
    ],
)
def test_block_table_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "atlas.tsv"
    path.write_text(text)
    with pytest.raises(FormatError, match=r"atlas\.tsv, " + message):
        read_blocks(path, need_values=text.startswith("chr\t"))


def test_reference_positions_follow_the_cigar() -> None:
    from genomelab.io.bam import reference_positions

    # 2S 3M 1I 2M 2D 1M from 100: clips and insertions have no reference base, D skips two.
    cigar = [(4, 2), (0, 3), (1, 1), (0, 2), (2, 2), (0, 1)]
    assert reference_positions(cigar, 100, 9).tolist() == [-1, -1, 100, 101, 102, -1, 103, 104, 107]


def test_mates_calling_a_cpg_differently_leave_it_unknown() -> None:
    from genomelab.io.bam import merge_calls

    pos, meth = merge_calls(np.array([30, 10, 20, 20, 30]), np.array([True, False, True, True, False]))
    assert pos.tolist() == [10, 20] and meth.tolist() == [False, True]


# PAT counted in inclusive mode (wgbstools homog --inclusive), by hand: the whole read is
# classified (>= 4 known calls) and counted in every block its span overlaps.
#   (1, TTTT) x3: B1 U x3 | (1, CCCT): B1 M | (2, CTT) x2: 3 calls, too short
#   (3, CCCCCC): 6/6 M in B1 and B2 | (4, TTTTT): 0/5 U in B1 and B2
#   (5, CT.TCT) x2: 2/5 X in B2 | (7, TCTT): 1/4 U in B2
HAND_INCLUSIVE = np.array([[4, 0, 2], [2, 2, 1]])


def test_inclusive_mode_counts_whole_reads(tmp_path: Path) -> None:
    blocks = read_blocks(write_blocks(tmp_path), need_values=True)
    cfg = FragmentConfig(overlap="inclusive")
    write_pat(tmp_path / "s.pat.gz", [("chr1", f, p, c) for f, p, c in PAT])
    from_pat, stats = count_pat(tmp_path / "s.pat.gz", blocks, cfg)
    np.testing.assert_array_equal(from_pat, HAND_INCLUSIVE)
    assert stats["clips_too_short"] == 2  # (2, CTT) x2, once each (B1 only)
    from_bam, _ = count_bam(write_bam(tmp_path), blocks, write_index(tmp_path), cfg)
    np.testing.assert_array_equal(from_bam, HAND_INCLUSIVE)
    np.testing.assert_array_equal(
        count_pat(tmp_path / "s.pat.gz", blocks, cfg, chunk_lines=3)[0], HAND_INCLUSIVE
    )
    # The modes differ only on reads partly inside a block: a read of 2 CpGs in B1 and 3 in B2.
    write_pat(tmp_path / "p.pat", [("chr1", 3, "CCTTT", 1)])
    strict, _ = count_pat(tmp_path / "p.pat", blocks, FragmentConfig())
    inclusive, _ = count_pat(tmp_path / "p.pat", blocks, cfg)
    assert strict.tolist() == [[0, 0, 0], [0, 0, 0]]  # 2 and 3 calls: both clips too short
    assert inclusive.tolist() == [[0, 1, 0], [0, 1, 0]]  # 2/5 methylated: X in both
    # A '.' reaching into a block makes the read overlap it (as homog reads the pattern).
    write_pat(tmp_path / "d.pat", [("chr1", 1, "TTTT.", 1)])
    assert count_pat(tmp_path / "d.pat", blocks, cfg)[0].tolist() == [[1, 0, 0], [1, 0, 0]]
    with pytest.raises(ValueError, match="ingest.uxm.overlap"):
        FragmentConfig(overlap="partial")


def test_inclusive_mode_on_blocks_of_another_chromosome(tmp_path: Path) -> None:
    blocks = read_blocks(write_blocks(tmp_path))
    write_pat(tmp_path / "x.pat", [("chr2", 1, "CCCC", 1)])
    with pytest.raises(FormatError, match="different CpG indexes"):
        count_pat(tmp_path / "x.pat", blocks, FragmentConfig(overlap="inclusive"))
