"""Synthetic inputs in every supported format, for the demo (resources/ingest/demo) and tests.

A tiny "genome" of CpGs around a few regions on chr1/chr2 (hg38 naming) with a wgbstools
CpG index; reads of two tissues that differ at marker regions. One simulated sample can
be written in every sequencing format from the same reads, so that the formats can be
checked against each other (same counts per CpG, whatever the format).

Run ``python -m genomelab.ingest.demo OUT_DIR`` to regenerate resources/ingest/demo.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

TISSUES = ("Blood", "Liver")


@dataclass
class Genome:
    """CpGs of the toy genome: ``chrom`` str [n], ``pos`` int64 [n] (0-based C, sorted per
    chromosome, chromosomes in order), and regions (chrom, start, end, name)."""

    chrom: np.ndarray
    pos: np.ndarray
    regions: list[tuple[str, int, int, str]]
    levels: np.ndarray  # [n_tissues, n_cpgs] methylation probability per CpG


@dataclass
class Reads:
    """Reads of one sample: first CpG number (0-based into Genome), calls per CpG (0/1, -1 = no call),
    strand (+1/-1)."""

    first: np.ndarray
    calls: list[np.ndarray]
    strand: np.ndarray


def make_genome(
    rng: np.random.Generator, n_regions: int = 12, region_len: int = 150, cpgs_per_region: int = 12
) -> Genome:
    chroms, pos, regions = [], [], []
    for r in range(n_regions):
        chrom = "chr1" if r < n_regions // 2 else "chr2"
        start = 1_000_000 + (r % max(n_regions // 2, 1)) * 5_000
        regions.append((chrom, start, start + region_len, f"demo_r{r + 1:03d}"))
        # CpGs inside (no two adjacent: a CpG's C cannot be the G of another) and a few outside.
        inside = start + 2 * np.sort(rng.choice(region_len // 2, size=cpgs_per_region, replace=False))
        outside = start + region_len + 2 * np.sort(rng.choice(1000, size=5, replace=False)) + 10
        chroms += [chrom] * (len(inside) + len(outside))
        pos += list(inside) + list(outside)
    chrom_arr, pos_arr = np.asarray(chroms), np.asarray(pos, dtype=np.int64)
    order = np.lexsort((pos_arr, chrom_arr))
    chrom_arr, pos_arr = chrom_arr[order], pos_arr[order]
    n = len(pos_arr)
    region_of = np.full(n, -1)
    for r, (c, s, e, _) in enumerate(regions):
        region_of[(chrom_arr == c) & (pos_arr >= s) & (pos_arr < e)] = r
    # CpGs of one region share a (bimodal) level, as in real CpG islands and blocks.
    region_level = rng.beta(0.4, 0.4, size=n_regions)
    base = np.where(region_of >= 0, region_level[np.maximum(region_of, 0)], rng.beta(0.5, 0.5, size=n))
    base = base + rng.normal(0, 0.05, size=n)
    levels = np.stack([base, base.copy()])
    # Every third region is a marker: tissue 1 sits at the opposite methylation state.
    marker = np.isin(region_of, np.arange(0, n_regions, 3))
    levels[1, marker] = 1 - base[marker]
    return Genome(chrom_arr, pos_arr, regions, np.clip(levels, 0.03, 0.97))


def simulate_reads(
    genome: Genome, tissue: int, rng: np.random.Generator, n_reads: int = 600, max_cpgs: int = 6
) -> Reads:
    """Reads covering 1..max_cpgs consecutive CpGs of one chromosome; about 5% of calls missing."""
    n = len(genome.pos)
    first = np.sort(rng.integers(0, n, size=n_reads))
    calls, strands = [], rng.choice([1, -1], size=n_reads)
    for f in first:
        length = int(rng.integers(1, max_cpgs + 1))
        stop = f + length
        same = genome.chrom[f:stop] == genome.chrom[f]
        stop = f + int(same.sum())
        state = rng.random() < genome.levels[tissue, f:stop].mean()
        p = np.where(
            state,
            np.maximum(genome.levels[tissue, f:stop], 0.9),
            np.minimum(genome.levels[tissue, f:stop], 0.1),
        )
        c = (rng.random(stop - f) < p).astype(np.int8)
        c[rng.random(stop - f) < 0.05] = -1
        calls.append(c)
    return Reads(first, calls, strands)


def per_cpg_counts(genome: Genome, reads: Reads) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Methylated and total calls per CpG and strand: ``(meth_plus, tot_plus, meth_minus, tot_minus)`` [n_cpgs]."""
    n = len(genome.pos)
    out = [np.zeros(n, dtype=np.int64) for _ in range(4)]
    for f, c, s in zip(reads.first, reads.calls, reads.strand, strict=True):
        idx = f + np.arange(len(c))
        ok = c >= 0
        k = 0 if s > 0 else 2
        np.add.at(out[k], idx[ok], c[ok])
        np.add.at(out[k + 1], idx[ok], 1)
    return out[0], out[1], out[2], out[3]


def _open_w(path: Path):
    return gzip.open(path, "wt", newline="") if path.name.endswith(".gz") else open(path, "w", newline="")


def write_regions(genome: Genome, path: Path) -> None:
    with open(path, "w") as fh:
        for c, s, e, name in genome.regions:
            fh.write(f"{c}\t{s}\t{e}\t{name}\n")


def write_cpg_index(genome: Genome, path: Path) -> None:
    with _open_w(path) as fh:
        for i, (c, p) in enumerate(zip(genome.chrom, genome.pos, strict=True), start=1):
            fh.write(f"{c}\t{p + 1}\t{i}\n")


def write_bismark_cov(genome: Genome, reads: Reads, path: Path) -> None:
    mp, tp, mm, tm = per_cpg_counts(genome, reads)
    rows = []
    for i in range(len(genome.pos)):
        # Unmerged Bismark coverage: the minus-strand C is the base after the CpG's C.
        for offset, m, t in ((0, mp[i], tp[i]), (1, mm[i], tm[i])):
            if t:
                rows.append((genome.chrom[i], genome.pos[i] + 1 + offset, m, t))
    with _open_w(path) as fh:
        for c, p, m, t in rows:
            fh.write(f"{c}\t{p}\t{p}\t{100.0 * m / t}\t{m}\t{t - m}\n")


def write_cpg_report(genome: Genome, reads: Reads, path: Path) -> None:
    mp, tp, mm, tm = per_cpg_counts(genome, reads)
    with _open_w(path) as fh:
        for i in range(len(genome.pos)):
            c, p = genome.chrom[i], genome.pos[i] + 1
            fh.write(f"{c}\t{p}\t+\t{mp[i]}\t{tp[i] - mp[i]}\tCG\tCGA\n")
            fh.write(f"{c}\t{p + 1}\t-\t{mm[i]}\t{tm[i] - mm[i]}\tCG\tCGT\n")


def write_bedmethyl_encode(genome: Genome, reads: Reads, path: Path) -> None:
    mp, tp, mm, tm = per_cpg_counts(genome, reads)
    with _open_w(path) as fh:
        fh.write(
            'track name="demo" description="synthetic ENCODE-style bedMethyl" visibility=2 itemRgb="On"\n'
        )
        for i in range(len(genome.pos)):
            c, p = genome.chrom[i], int(genome.pos[i])
            for start, strand, m, t in ((p, "+", mp[i], tp[i]), (p + 1, "-", mm[i], tm[i])):
                if t:
                    # ENCODE rounds the percentage to an integer; counts are recovered as round(cov * pct / 100).
                    pct = int(round(100.0 * m / t))
                    fh.write(
                        f"{c}\t{start}\t{start + 1}\tdemo\t{min(t, 1000)}\t{strand}\t{start}\t{start + 1}\t"
                        f"0,0,0\t{t}\t{pct}\n"
                    )


def write_bedmethyl_modkit(genome: Genome, reads: Reads, path: Path) -> None:
    mp, tp, mm, tm = per_cpg_counts(genome, reads)
    with _open_w(path) as fh:
        for i in range(len(genome.pos)):
            m, t = mp[i] + mm[i], tp[i] + tm[i]
            if not t:
                continue
            c, p = genome.chrom[i], int(genome.pos[i])
            # modkit pileup --combine-strands; columns 10-18 space-separated as older modkit wrote them.
            fh.write(
                f"{c}\t{p}\t{p + 1}\tm\t{t}\t.\t{p}\t{p + 1}\t255,0,0\t"
                f"{t} {100.0 * m / t:.2f} {m} {t - m} 0 0 0 0 0\n"
            )
            fh.write(f"{c}\t{p}\t{p + 1}\th\t{t}\t.\t{p}\t{p + 1}\t255,0,0\t{t} 0.00 0 {t} 0 0 0 0 0\n")


def write_pat(genome: Genome, reads: Reads, path: Path) -> None:
    lines: dict[tuple[str, int, str], int] = {}
    for f, c in zip(reads.first, reads.calls, strict=True):
        pattern = "".join("." if x < 0 else ("C" if x else "T") for x in c)
        if set(pattern) == {"."}:
            continue
        key = (str(genome.chrom[f]), int(f) + 1, pattern)
        lines[key] = lines.get(key, 0) + 1
    with _open_w(path) as fh:
        for (c, s, pattern), n in sorted(lines.items(), key=lambda kv: (kv[0][1], kv[0][2])):
            fh.write(f"{c}\t{s}\t{pattern}\t{n}\n")


def write_beta(genome: Genome, reads: Reads, path: Path) -> None:
    mp, tp, mm, tm = per_cpg_counts(genome, reads)
    arr = np.stack([np.minimum(mp + mm, 255), np.minimum(tp + tm, 255)], axis=1).astype(np.uint8)
    arr.tofile(path)


def write_array(
    genome: Genome, rng: np.random.Generator, samples: list[tuple[str, int]], matrix: Path, probe_table: Path
) -> None:
    """A probes x samples beta matrix (MethAtlas style, CSV) and its probe table (1-based pos)."""
    n = len(genome.pos)
    probe_at = np.sort(rng.choice(n, size=n // 2, replace=False))
    names = [f"cg{i:08d}" for i in probe_at]
    with open(probe_table, "w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t", lineterminator="\n")
        w.writerow(["probe", "chrom", "pos"])
        for name, i in zip(names, probe_at, strict=True):
            w.writerow([name, genome.chrom[i], genome.pos[i] + 1])
        w.writerow(["ch_control_1", "", ""])
    with open(matrix, "w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["CpGs"] + [s for s, _ in samples])
        for name, i in zip(names, probe_at, strict=True):
            row = [name]
            for _, t in samples:
                beta = float(np.clip(genome.levels[t, i] + rng.normal(0, 0.05), 0, 1))
                row.append("NA" if rng.random() < 0.03 else f"{beta:.4f}")
            w.writerow(row)


def write_demo(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write the demo inputs (one sample per sequencing format, two array samples) and the
    ingest sample sheet ``samples.tsv``; return the sheet path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    genome = make_genome(rng)
    write_regions(genome, out / "regions.bed")
    write_cpg_index(genome, out / "CpG.bed.gz")
    writers = [
        ("blood_cov", 0, "blood_cov.cov.gz", write_bismark_cov),
        ("liver_report", 1, "liver_report.CpG_report.txt.gz", write_cpg_report),
        ("blood_encode", 0, "blood_encode.bed.gz", write_bedmethyl_encode),
        ("liver_modkit", 1, "liver_modkit.bedmethyl.gz", write_bedmethyl_modkit),
        ("blood_pat", 0, "blood_pat.pat.gz", write_pat),
        ("liver_beta", 1, "liver_beta.beta", write_beta),
    ]
    rows = []
    for sample, t, name, writer in writers:
        writer(genome, simulate_reads(genome, t, rng), out / name)
        rows.append({"sample": sample, "path": name, "format": "", "tissue": TISSUES[t], "column": ""})
    array_samples = [("array_blood", 0), ("array_liver", 1)]
    write_array(genome, rng, array_samples, out / "arrays.csv", out / "probes.tsv")
    for s, t in array_samples:
        rows.append({"sample": s, "path": "arrays.csv", "format": "array", "tissue": TISSUES[t], "column": s})
    sheet = out / "samples.tsv"
    with open(sheet, "w", newline="") as fh:
        w = csv.DictWriter(
            fh,
            fieldnames=["sample", "path", "format", "tissue", "column"],
            delimiter="\t",
            lineterminator="\n",
        )
        w.writeheader()
        w.writerows(rows)
    return sheet


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_demo(args.out_dir, args.seed)


if __name__ == "__main__":
    main()
