"""Why the operon readout's pair gain hardly moves the per-bp AUROC (issue 20), from a
finished cross-validated regulon run; no training.

For each fold of ``--run`` (a ``results/<run>/regulon`` folder made with
``evaluation.folds`` K > 1, e.g. by ``benchmarks/folds_regulon_ecoli.yaml``), with the pair
readout training saved and the distance log-likelihood rule of the same fold:

- per bp, strands pooled (the summary's figure) for the readout (CNN pair readout +
  distance LL), the rule, and the rule's construction fed the true pair labels (the
  ceiling of a per-bp track built from pair scores);
- per gene: is a test gene (whole body in test windows) in a multi-gene operon, scored by
  1 - (1 - p_left)(1 - p_right) as the per-bp tracks score its bases, as AUROC over genes
  and weighted by gene length (how per-bp AUROC weighs genes).

Paired t-tests across folds. Writes ``--out`` (JSON; default
benchmarks/results/bench_regulon_gene_level.json). Not a test; seconds per fold.

    PYTHONPATH=workflow/scripts python benchmarks/bench_regulon_gene_level.py \\
        [--run results/regfolds_ecoli/regulon] [--out X.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ttest_rel
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "scripts"))

from genomelab.regulon.data import read_genes  # noqa: E402
from genomelab.regulon.evaluate import set_readout  # noqa: E402
from genomelab.regulon.operons import COMBINED, OperonEvaluation, _sigmoid, gene_scores  # noqa: E402
from genomelab.regulon.targets import TargetData  # noqa: E402
from genomelab.regulon.tracks import read_tracks, split_bin_mask  # noqa: E402


def fold_figures(fold_dir: Path, genes_all: pd.DataFrame) -> dict[str, float]:
    data = TargetData(fold_dir / "data" / "targets.h5")
    predictions = fold_dir / "model" / "predictions.h5"
    op = OperonEvaluation(data, genes_all)
    set_readout(op, predictions, read_tracks(predictions, data))
    if op.readout is None:
        raise ValueError(f"{predictions}: no pair readout saved or fitted")
    pairs, genes = op.all_pairs, op.region_genes.reset_index(drop=True)
    readout = op.readout.probability(op.readout_track, pairs, data, COMBINED)
    rule = _sigmoid(op.distance_ll(pairs["distance"].to_numpy()) + op.prior_logit)
    truth = pairs["same_operon"].to_numpy(float)
    out = {
        "bp_readout": op._bp_metrics(op.readout_bp_tracks[COMBINED], "test", None)["operon_bp_auroc"],
        "bp_rule": op._bp_metrics(op.rule_track, "test", None)["operon_bp_auroc"],
        "bp_true_pairs": op._bp_metrics(op._pair_track(truth), "test", None)["operon_bp_auroc"],
    }
    r = data.config.resolution_bp
    test = split_bin_mask(data, "test", r)
    first = ((genes["start"] - data.region_start) // r).clip(0, len(test) - 1).to_numpy()
    last = ((genes["end"] - data.region_start) // r - 1).clip(0, len(test) - 1).to_numpy()
    held = test[first] & test[last]
    # A gene is positive when most of its bases are in an operon of several genes.
    label = np.array(
        [
            op.operon_any[max(s - data.region_start, 0) : e - data.region_start].mean() > 0.5
            for s, e in zip(genes["start"], genes["end"], strict=True)
        ]
    )
    length = (genes["end"] - genes["start"]).to_numpy()
    for name, p in (("readout", readout), ("rule", rule)):
        # As the per-bp tracks score a gene's bases (pair_track, combine="any"); 0 without a pair.
        by_gene = gene_scores(np.nan_to_num(p), pairs, "any")
        score = genes["bnumber"].map(by_gene).fillna(0.0).to_numpy()
        out[f"gene_{name}"] = roc_auc_score(label[held], score[held])
        out[f"gene_weighted_{name}"] = roc_auc_score(label[held], score[held], sample_weight=length[held])
    out["n_test_genes"] = int(held.sum())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT / "results" / "regfolds_ecoli" / "regulon")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_regulon_gene_level.json"
    )
    args = ap.parse_args()
    genes = read_genes(args.run / "data" / "genes.tsv")
    folds = sorted((args.run / "folds").iterdir(), key=lambda p: int(p.name))
    rows = [fold_figures(f, genes) for f in folds]
    frame = pd.DataFrame(rows)
    tests = {}
    for view in ("bp", "gene", "gene_weighted"):
        a, b = frame[f"{view}_readout"], frame[f"{view}_rule"]
        tests[view] = {
            "readout_mean": float(a.mean()),
            "rule_mean": float(b.mean()),
            "mean_difference": float((a - b).mean()),
            "differences": (a - b).round(5).tolist(),
            "paired_t_p": float(ttest_rel(a, b).pvalue),
        }
    result = {"run": str(args.run), "per_fold": rows, "readout_vs_rule": tests}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(frame.round(4).to_string())
    for view, t in tests.items():
        print(
            f"{view}: readout {t['readout_mean']:.4f} vs rule {t['rule_mean']:.4f}, "
            f"difference {t['mean_difference']:+.4f} (per fold {t['differences']}), paired t p = {t['paired_t_p']:.2g}"
        )


if __name__ == "__main__":
    main()
