"""Ingest on real files from ../shared/data (skipped where absent).

- methylation_wgbs_bsseq: real IMR90 WGBS CpG counts on chr22 (hg18), converted on the fly
  to Bismark coverage and bedMethyl (ENCODE and modkit layouts).
- methylation_tcga_glioma: real TCGA 450K beta values, transposed to the probes x samples
  (MethAtlas) layout. The 450K manifest is not available offline, so probe coordinates are
  synthetic: the test checks placement and values, not genomic positions.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from genomelab.ingest.builds import genome_build
from genomelab.ingest.convert import IngestConfig, convert_sample
from genomelab.ingest.formats import read_probe_table
from genomelab.ingest.regions import read_regions

N_ROWS = 60_000


@pytest.fixture
def bsseq(shared_data: Path) -> pd.DataFrame:
    path = shared_data / "methylation_wgbs_bsseq" / "BS.chr22.cpg_counts.tsv.gz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    df = pd.read_csv(path, sep="\t", nrows=N_ROWS)
    return df[df["Cov_r1"] > 0].reset_index(drop=True)


def _regions(df: pd.DataFrame, tmp_path: Path, n: int = 300) -> tuple[Path, list[tuple[int, int]]]:
    """150 bp regions starting at real CpGs, at least 1 kb apart (non-overlapping)."""
    starts, last = [], -(10**9)
    for p in df["pos"].to_numpy():
        if p - 1 >= last + 1000:
            starts.append(int(p) - 1)
            last = int(p) - 1
        if len(starts) == n:
            break
    path = tmp_path / "regions.bed"
    path.write_text("".join(f"chr22\t{s}\t{s + 150}\tr{i}\n" for i, s in enumerate(starts)))
    return path, [(s, s + 150) for s in starts]


def _reference(
    df: pd.DataFrame, spans: list[tuple[int, int]], m: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    pos0 = df["pos"].to_numpy() - 1
    t = df["Cov_r1"].to_numpy()
    ref = np.full((len(spans), 150), 2, dtype=np.int8)
    cov = np.zeros(len(spans), dtype=np.int64)
    for r, (s, e) in enumerate(spans):
        sel = (pos0 >= s) & (pos0 < e)
        ref[r, pos0[sel] - s] = (m[sel] / t[sel] >= 0.5).astype(np.int8)
        cov[r] = t[sel].sum()
    return ref, cov


def test_bsseq_chr22_as_bismark_and_bedmethyl(bsseq, tmp_path):
    df = bsseq
    bed, spans = _regions(df, tmp_path)
    regions = read_regions(bed, genome_build("hg18"))
    m, t = df["M_r1"].to_numpy(), df["Cov_r1"].to_numpy()
    ref, ref_cov = _reference(df, spans, m)
    # ENCODE bedMethyl keeps an integer percentage only; counts come back as round(cov * pct / 100).
    m_encode = np.rint(t * np.rint(100 * m / t) / 100).astype(np.int64)
    refs = {
        "imr90.cov.gz": ref,
        "imr90_modkit.bed.gz": ref,
        "imr90_encode.bed.gz": _reference(df, spans, m_encode)[0],
    }
    p = df["pos"].to_numpy()
    with gzip.open(tmp_path / "imr90.cov.gz", "wt") as fh:
        for pi, mi, ti in zip(p, m, t, strict=True):
            fh.write(f"chr22\t{pi}\t{pi}\t{100.0 * mi / ti}\t{mi}\t{ti - mi}\n")
    with gzip.open(tmp_path / "imr90_modkit.bed.gz", "wt") as fh:
        for pi, mi, ti in zip(p, m, t, strict=True):
            fh.write(
                f"chr22\t{pi - 1}\t{pi}\tm\t{ti}\t.\t{pi - 1}\t{pi}\t255,0,0\t{ti}\t{100.0 * mi / ti:.2f}\t"
                f"{mi}\t{ti - mi}\t0\t0\t0\t0\t0\n"
            )
    with gzip.open(tmp_path / "imr90_encode.bed.gz", "wt") as fh:
        for pi, mi, ti in zip(p, m, t, strict=True):
            fh.write(
                f"chr22\t{pi - 1}\t{pi}\tIMR90\t{ti}\t+\t{pi - 1}\t{pi}\t0,0,0\t{ti}\t{round(100 * mi / ti)}\n"
            )
    cfg = IngestConfig(call="threshold", chunk_lines=20_000)
    for name in ("imr90.cov.gz", "imr90_modkit.bed.gz", "imr90_encode.bed.gz"):
        stats = convert_sample(tmp_path / name, "", "imr90", regions, cfg, tmp_path / "o.npz")
        with np.load(tmp_path / "o.npz") as z:
            np.testing.assert_array_equal(z["methylation"], refs[name], err_msg=name)
            np.testing.assert_array_equal(z["coverage"], ref_cov, err_msg=name)
        assert stats["calls"] == len(df)
    # Sampled calls keep the real region-level methylation (unbiased, unlike thresholding).
    convert_sample(tmp_path / "imr90.cov.gz", "", "imr90", regions, IngestConfig(), tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as z:
        sampled = z["methylation"]
    frac = (m / t)[np.isin(p - 1, [s + k for s, _ in spans for k in range(150)])]
    valid = sampled < 2
    assert valid.sum() == (ref < 2).sum()
    assert abs(sampled[valid].mean() - frac.mean()) < 0.02


def test_bsseq_with_ensembl_names_is_a_clear_error(bsseq, tmp_path):
    bed, _ = _regions(bsseq, tmp_path, n=5)
    regions = read_regions(bed, genome_build("hg18"))
    (tmp_path / "x.cov").write_text("".join(f"22\t{p}\t{p}\t0.0\t0\t1\n" for p in bsseq["pos"][:10]))
    with pytest.raises(ValueError, match=r"x.cov: chromosome '22' does not follow .* expected 'chr22'"):
        convert_sample(tmp_path / "x.cov", "", "s", regions, IngestConfig(), tmp_path / "o.npz")


def test_tcga_450k_matrix(shared_data: Path, tmp_path):
    path = shared_data / "methylation_tcga_glioma" / "glioma.gcimp.trainingData.csv.gz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    df = pd.read_csv(path)
    samples = df["sample"].head(4).tolist()
    betas = df.set_index("sample").drop(columns=["label"]).loc[samples].T  # probes x samples
    betas.index.name = "CpGs"
    betas.to_csv(tmp_path / "betas.csv.gz")
    probes = betas.index.to_numpy()
    n_regions = len(probes) // 5
    # Synthetic coordinates (no manifest offline): 5 probes per 150 bp region, 20 bp apart.
    table = pd.DataFrame(
        {
            "probe": probes,
            "chrom": "chr7",
            "pos": [1_000_000 + 1000 * (i // 5) + 20 * (i % 5) + 1 for i in range(len(probes))],
        }
    )
    table.to_csv(tmp_path / "probes.tsv", sep="\t", index=False)
    (tmp_path / "regions.bed").write_text(
        "".join(
            f"chr7\t{1_000_000 + 1000 * k}\t{1_000_000 + 1000 * k + 150}\tblock{k}\n"
            for k in range(n_regions)
        )
    )
    regions = read_regions(tmp_path / "regions.bed", genome_build("hg19"))
    probe_table = read_probe_table(tmp_path / "probes.tsv")
    for sample in samples[:2]:
        convert_sample(
            tmp_path / "betas.csv.gz",
            "",
            sample,
            regions,
            IngestConfig(call="threshold"),
            tmp_path / "o.npz",
            probes=probe_table,
        )
        with np.load(tmp_path / "o.npz") as z:
            meth, cov = z["methylation"], z["coverage"]
        values = betas[sample].to_numpy()[: n_regions * 5].reshape(n_regions, 5)
        np.testing.assert_array_equal(meth[:, 0:100:20], (values >= 0.5).astype(np.int8))
        np.testing.assert_array_equal(cov, 5)
        assert (meth < 2).sum() == n_regions * 5


def test_bsseq_chr22_as_wgbstools_lbeta(bsseq, tmp_path):
    """Real counts as a wgbstools .lbeta (uint16) with a CpG index built from the real CpG positions."""
    from genomelab.ingest.cpg_index import build_cpg_index

    df = bsseq
    bed, spans = _regions(df, tmp_path, n=200)
    regions = read_regions(bed, genome_build("hg18"))
    p, m, t = df["pos"].to_numpy(), df["M_r1"].to_numpy(), df["Cov_r1"].to_numpy()
    with gzip.open(tmp_path / "CpG.bed.gz", "wt") as fh:
        fh.writelines(f"chr22\t{pi}\t{i}\n" for i, pi in enumerate(p, start=1))
    np.stack([m, t], axis=1).astype(np.uint16).tofile(tmp_path / "imr90.lbeta")
    index = build_cpg_index(tmp_path / "CpG.bed.gz", regions, chunk_lines=10_000)
    convert_sample(
        tmp_path / "imr90.lbeta",
        "",
        "imr90",
        regions,
        IngestConfig(slots="cpg", call="threshold"),
        tmp_path / "o.npz",
        index=index,
    )
    with np.load(tmp_path / "o.npz") as z:
        meth, cov = z["methylation"], z["coverage"]
    for r, (s, e) in enumerate(spans):
        sel = (p - 1 >= s) & (p - 1 < e)  # CpGs of the region in position order = slots 0, 1, ...
        k = int(sel.sum())
        np.testing.assert_array_equal(meth[r, :k], (m[sel] / t[sel] >= 0.5).astype(np.int8))
        assert (meth[r, k:] == 2).all() and cov[r] == t[sel].sum()
