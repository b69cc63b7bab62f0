"""Benchmark: the UXM path's speed on synthetic data (one core).

1. CpG index from a FASTA (``write_cpg_bed``): a random genome of ``--genome-mb`` Mb on
   three chromosomes with CpGs at ~1% of positions (human density), BGZF output.
2. Fragment counts from a ``.pat.gz`` (``count_pat``): ``--pat-lines`` lines of reads of
   1-12 CpGs (count 1-3) over that genome's CpGs, against ``--n-blocks`` blocks of 4-20
   CpGs. Reported as lines/s and extrapolated to a 30x whole-genome pat file (~120M
   lines; the time is linear in lines).
3. Fragment counts from a Bismark BAM (``count_bam``): ``--bam-reads`` single-end reads
   of 100 bp with XM tags, all inside the blocks (the worst case: every read is parsed
   and kept).

Times are CPU seconds of this process (``time.process_time``): the machine is shared, so
wall-clock times would measure the other users. Writes benchmarks/results/bench_uxm.json.

    PYTHONPATH=workflow/scripts python benchmarks/bench_uxm.py
"""

from __future__ import annotations

import argparse
import gzip
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from genomelab.ingest.cpg_index import cpg_positions, write_cpg_bed
from genomelab.ingest.fragments import FragmentConfig, count_bam, count_pat
from genomelab.io.blocks import read_blocks


def make_genome(path: Path, mb: float, rng: np.random.Generator) -> dict[str, bytes]:
    seqs = {}
    with open(path, "w") as fh:
        for c in ("chr1", "chr2", "chr3"):
            n = int(mb * 1e6 / 3)
            seq = rng.choice(np.frombuffer(b"ACGT", np.uint8), size=n, p=[0.3, 0.2, 0.2, 0.3])
            # Human CpG density (~1%): place CGs at random positions.
            at = rng.choice(n - 1, size=n // 100, replace=False)
            seq[at], seq[at + 1] = ord("C"), ord("G")
            seqs[c] = seq.tobytes()
            fh.write(f">{c}\n")
            for i in range(0, n, 60):
                fh.write(seqs[c][i : i + 60].decode() + "\n")
    return seqs


def make_blocks(path: Path, seqs: dict[str, bytes], n_blocks: int, rng: np.random.Generator) -> None:
    lines = ["chr\tstart\tend\tstartCpG\tendCpG"]
    first = 1
    per_chrom = n_blocks // len(seqs)
    for c, seq in seqs.items():
        pos = cpg_positions(seq) - 1
        starts = np.sort(rng.choice(len(pos) - 25, size=per_chrom, replace=False))
        last_end = 0
        for s in starts:
            s = max(s, last_end)
            e = s + int(rng.integers(4, 21))
            if e >= len(pos):
                break
            lines.append(f"{c}\t{pos[s]}\t{pos[e - 1] + 2}\t{first + s}\t{first + e}")
            last_end = e
        first += len(pos)
    path.write_text("\n".join(lines) + "\n")


def make_pat(path: Path, n_cpgs: dict[str, int], n_lines: int, rng: np.random.Generator) -> None:
    first, total = 1, sum(n_cpgs.values())
    with gzip.open(path, "wt", compresslevel=1) as fh:
        for c, n in n_cpgs.items():
            k = int(n_lines * n / total)
            starts = np.sort(rng.integers(first, first + n - 12, size=k))
            lens = rng.integers(1, 13, size=k)
            chars = np.frombuffer(b"CT.", np.uint8)
            for s, ln, cnt in zip(starts, lens, rng.integers(1, 4, size=k), strict=True):
                fh.write(
                    f"{c}\t{s}\t{rng.choice(chars, size=ln, p=[0.6, 0.38, 0.02]).tobytes().decode()}\t{cnt}\n"
                )
            first += n


def make_bam(
    path: Path, seqs: dict[str, bytes], blocks_path: Path, n_reads: int, rng: np.random.Generator
) -> None:
    import pysam

    blocks = read_blocks(blocks_path)
    header = pysam.AlignmentHeader.from_dict({"SQ": [{"SN": c, "LN": len(s)} for c, s in seqs.items()]})
    names = list(seqs)
    pick = np.sort(rng.integers(0, len(blocks), size=n_reads))
    with pysam.AlignmentFile(str(path), "wb", header=header) as bam:
        for i, b in enumerate(pick):
            c = blocks.chrom[b]
            start = max(int(blocks.start[b]) - 20, 0)
            seq = seqs[c][start : start + 100]
            arr = np.frombuffer(seq, np.uint8)
            xm = np.full(len(seq), ord("."), np.uint8)
            cg = np.flatnonzero((arr[:-1] == ord("C")) & (arr[1:] == ord("G")))
            xm[cg] = np.where(rng.random(len(cg)) < 0.6, ord("Z"), ord("z"))
            seg = pysam.AlignedSegment(header)
            seg.query_name, seg.reference_id, seg.reference_start = f"r{i}", names.index(c), start
            seg.query_sequence, seg.cigarstring, seg.mapping_quality = seq.decode(), f"{len(seq)}M", 40
            seg.set_tag("XM", xm.tobytes().decode())
            seg.set_tag("XG", "CT")
            bam.write(seg)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--genome-mb", type=float, default=30)
    ap.add_argument("--pat-lines", type=int, default=1_000_000)
    ap.add_argument("--n-blocks", type=int, default=3000)
    ap.add_argument("--bam-reads", type=int, default=50_000)
    ap.add_argument("--out", default="benchmarks/results/bench_uxm.json")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    res: dict = {"parameters": vars(args)}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        seqs = make_genome(tmp / "g.fa", args.genome_mb, rng)
        t = time.process_time()
        info = write_cpg_bed(tmp / "g.fa", tmp / "CpG.bed.gz")
        res["cpg_index"] = {
            "seconds": time.process_time() - t,
            "n_cpgs": info["n_cpgs"],
            "mb": args.genome_mb,
        }
        res["cpg_index"]["extrapolated_hg38_seconds"] = res["cpg_index"]["seconds"] * 3100 / args.genome_mb
        make_blocks(tmp / "blocks.bed", seqs, args.n_blocks, rng)
        blocks = read_blocks(tmp / "blocks.bed")
        make_pat(tmp / "s.pat.gz", info["chromosomes"], args.pat_lines, rng)
        t = time.process_time()
        counts, stats = count_pat(tmp / "s.pat.gz", blocks, FragmentConfig())
        sec = time.process_time() - t
        res["pat"] = {
            "lines": args.pat_lines,
            "n_blocks": len(blocks),
            "seconds": sec,
            "lines_per_second": args.pat_lines / sec,
            "fragments_counted": int(counts.sum()),
            "extrapolated_120M_lines_minutes": 120e6 / (args.pat_lines / sec) / 60,
            **stats,
        }
        make_bam(tmp / "s.bam", seqs, tmp / "blocks.bed", args.bam_reads, rng)
        t = time.process_time()
        counts, stats = count_bam(tmp / "s.bam", blocks, tmp / "CpG.bed.gz", FragmentConfig())
        sec = time.process_time() - t
        res["bam"] = {
            "reads": args.bam_reads,
            "seconds": sec,
            "reads_per_second": args.bam_reads / sec,
            **stats,
        }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
