"""Which ``regulon.model.inputs`` default gives users the better calls: two finished runs of
``bench_regulon_operons.py`` (same data, fixed blocks, seed), compared head to head.

    PYTHONPATH=workflow/scripts nice -n 5 python benchmarks/bench_regulon_default.py \
        --runs /tmp/rg2_ops/demo /tmp/rg2_ops/demo_annot [--name e4]

For each run, with the pair readout it saved (what ``genomelab predict regulon`` writes): the
readout + distance LL per bp and on adjacent pairs, the network's own operon track, the
distance LL rule, and the expression Pearson per gene; then the second run against the first
with paired tests: Wilcoxon over the 7 test blocks for the operon views, Wilcoxon of per-gene
squared errors over the held-out genes for expression. Writes
``benchmarks/results/bench_regulon_default_<name>.json``. Seconds, one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))
import numpy as np  # noqa: E402
from genomelab.regulon.blocks import block_test, gene_test  # noqa: E402
from genomelab.regulon.data import read_genes  # noqa: E402
from genomelab.regulon.evaluate import set_readout  # noqa: E402
from genomelab.regulon.metrics import gene_means, regression_metrics  # noqa: E402
from genomelab.regulon.operons import COMBINED, DISTANCE_LL, OperonEvaluation  # noqa: E402
from genomelab.regulon.targets import TargetData  # noqa: E402
from genomelab.regulon.tracks import read_tracks, split_bin_mask  # noqa: E402

VIEWS = ("pair_auroc", "operon_bp_auroc")


def run_figures(out: Path) -> dict:
    """Per test block, the readout's, the rule's and the network track's operon metrics;
    per held-out gene, the network's mean expression prediction."""
    data = TargetData(out / "data" / "targets.h5")
    genes = read_genes(out / "data" / "genes.tsv")
    tracks = read_tracks(out / "model" / "predictions.h5", data)
    ev = OperonEvaluation(data, genes)
    set_readout(ev, out / "model" / "predictions.h5", tracks)
    network = tracks["model"]
    blocks = sorted(data.blocks.loc[data.blocks["split"] == "test", "block"])
    per_block = {name: {v: [] for v in VIEWS} for name in (COMBINED, DISTANCE_LL, "CNN track")}
    for b in blocks:
        rules = ev.rule_metrics("test", b)
        own = ev.track_metrics(network["operon"], "test", b)
        for name, m in ((COMBINED, rules[COMBINED]), (DISTANCE_LL, rules[DISTANCE_LL]), ("CNN track", own)):
            for v in VIEWS:
                per_block[name][v].append(m[v])
    whole = ev.rule_metrics("test") | {"CNN track": ev.track_metrics(network["operon"], "test")}
    measured = genes[np.isfinite(genes["z"].to_numpy(dtype=float))].reset_index(drop=True)
    mask = split_bin_mask(data, "test", data.config.resolution_bp)
    pred = gene_means(network["expression"], measured, data, mask)
    true = measured["z"].to_numpy(dtype=float)
    return {
        "blocks": blocks,
        "per_block": per_block,
        "overall": {name: {v: whole[name][v] for v in VIEWS} for name in per_block},
        "expression_gene_pearson": regression_metrics(pred, true)["pearson"],
        "gene_pred": pred,
        "gene_true": true,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs=2, required=True, help="first (current default), second (candidate)")
    parser.add_argument("--name", default="e4")
    args = parser.parse_args()
    first, second = (run_figures(Path(p)) for p in args.runs)
    result = {"runs": args.runs, "figures": {}, "second_vs_first": {}}
    for path, f in zip(args.runs, (first, second), strict=True):
        result["figures"][path] = {
            "overall": f["overall"],
            "per_block": f["per_block"],
            "expression_gene_pearson": f["expression_gene_pearson"],
        }
    blocks = np.asarray(first["blocks"])
    for name in (COMBINED, "CNN track"):
        for v in VIEWS:
            t = block_test(
                np.asarray(second["per_block"][name][v]), np.asarray(first["per_block"][name][v]), blocks, v
            )
            result["second_vs_first"][f"{name} {v}"] = {"p": t.p_value, "favours": t.favours}
    t = gene_test(second["gene_pred"], first["gene_pred"], first["gene_true"])
    result["second_vs_first"]["expression per-gene squared error"] = {"p": t.p_value, "favours": t.favours}
    text = json.dumps(result, indent=1)
    print(text)
    (ROOT / "benchmarks" / "results" / f"bench_regulon_default_{args.name}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
