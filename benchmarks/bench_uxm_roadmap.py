"""Real WGBS through the UXM path: UXM's tutorial data, counted and deconvolved by genomelab.

Inputs (not shipped: UXM's research licence; take them from a clone of
github.com/nloyfer/UXM_deconv): ``supplemental/Atlas.U25.l4.hg19.tsv`` (900 marker blocks x
39 cell types, U fractions; Loyfer et al. 2023) and ``tutorial/data/*.pat.gz`` (7 Roadmap
Epigenomics WGBS tissue samples, hg19, sliced by the UXM authors to reads at the atlas's
blocks). Each sample is counted with ``count_pat`` (UXM defaults: >= 4 CpGs, U <= 0.25,
M >= 0.75) and deconvolved by NNLS with each weighting. Reported per sample: fragments
counted, blocks used, the top three cell types, and whether the top cell type belongs to
the tissue the sample was taken from (bulk tissues are mixtures: lung contains blood and
endothelium, colon smooth muscle, so the check is "top call is a cell type of that organ").

    PYTHONPATH=workflow/scripts python benchmarks/bench_uxm_roadmap.py \
        --atlas UXM_deconv/supplemental/Atlas.U25.l4.hg19.tsv UXM_deconv/tutorial/data/*.pat.gz

Writes benchmarks/results/bench_uxm_roadmap.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from genomelab.deconv.uxm import UxmDeconvConfig, deconvolve_samples
from genomelab.ingest.fragments import write_sample_counts

# Cell types of the atlas that make up each sampled organ (the "right" top calls).
ORGAN_CELL_TYPES = {
    "Liver": {"Liver-Hep"},
    "Lung": {"Lung-Ep-Alveo", "Lung-Ep-Bron"},
    "Pancreas": {"Pancreas-Acinar", "Pancreas-Duct", "Pancreas-Alpha", "Pancreas-Beta", "Pancreas-Delta"},
    "Sigmoid_Colon": {"Colon-Ep", "Smooth-Musc"},
}


def organ_of(sample: str) -> str:
    return next(o for o in ORGAN_CELL_TYPES if sample.startswith(o))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--atlas", required=True)
    ap.add_argument("pats", nargs="+")
    ap.add_argument("--out", default="benchmarks/results/bench_uxm_roadmap.json")
    args = ap.parse_args()
    samples = [Path(p).name.removesuffix(".pat.gz") for p in args.pats]
    res: dict = {"atlas": Path(args.atlas).name, "samples": {}, "weightings": {}}
    with tempfile.TemporaryDirectory() as tmp:
        counts = []
        t = time.process_time()
        for sample, pat in zip(samples, args.pats, strict=True):
            out = Path(tmp) / f"{sample}.tsv"
            c = write_sample_counts(pat, "pat", args.atlas, {}, out, Path(tmp) / f"{sample}.json")
            qc = json.loads((Path(tmp) / f"{sample}.json").read_text())
            res["samples"][sample] = {
                "fragments": int(c.sum()),
                "blocks_with_fragments": qc["blocks_with_fragments"],
                "median_fragments_per_block": qc["median_fragments_per_block"],
                "reads_in_blocks": qc["reads_in_blocks"],
                "clips_too_short": qc["clips_too_short"],
            }
            counts.append(out)
        res["count_cpu_seconds"] = time.process_time() - t
        for weighting in ("counts", "sqrt", "none"):
            result, ref, _ = deconvolve_samples(
                args.atlas, None, counts, samples, UxmDeconvConfig(weighting=weighting)
            )
            tissues = ref.tissues.tolist()
            per = {}
            for i, sample in enumerate(samples):
                order = np.argsort(-result.proportions[i])[:3]
                top = [(tissues[j], round(float(result.proportions[i, j]), 3)) for j in order]
                per[sample] = {"top3": top, "top_is_organ": top[0][0] in ORGAN_CELL_TYPES[organ_of(sample)]}
            res["weightings"][weighting] = {
                "per_sample": per,
                "top_correct": sum(v["top_is_organ"] for v in per.values()),
                "n_samples": len(samples),
            }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
