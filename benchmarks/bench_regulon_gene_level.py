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

- per bp with the two genes' log lengths added to the pair features (a logistic regression
  fitted on the fold's training pairs): for the readout (network features + distance LL +
  lengths) and for the rule (distance LL + lengths), so the two are compared with the same
  annotation knowledge;
- with ``--expression`` (a gene x sample table of log expression, rows by b-number, e.g.
  PRECISE's ``log_tpm.csv.gz``): the same, plus the co-expression of the pair's two genes
  across the table's samples (Fisher z of their Pearson correlation, and a flag for pairs
  with a gene missing from the table, whose z is 0): per bp and on the test pairs. Operon
  genes are transcribed together, so co-expression is the classic signal beside distance
  (Sabatti et al. 2002, Nucleic Acids Res 30:2886; Bockhorst et al. 2003, Bioinformatics
  19:1227). The table is measured data like the annotation, not the operon labels.

Pairs the network did not score (their junction in a training block) get, in the readout's
fits, the same features without the network's (fitted on the same pairs), as the workflow's
readouts fall back since round 15; before, they counted as 0 per bp, which cost the readout
about 0.002-0.003 of per-bp AUROC against the rules (docs/regulon.md, round 15).

Paired t-tests across folds. Writes ``--out`` (JSON; default
benchmarks/results/bench_regulon_gene_level.json). Not a test; seconds per fold.

    PYTHONPATH=workflow/scripts python benchmarks/bench_regulon_gene_level.py \\
        [--run results/regfolds_ecoli/regulon] [--expression log_tpm.csv.gz] [--out X.json]
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
from genomelab.regulon.operons import (  # noqa: E402
    COMBINED,
    OperonEvaluation,
    PairReadout,
    _sigmoid,
    adjacent_pairs,
    gene_scores,
    split_pairs,
)
from genomelab.regulon.targets import TargetData  # noqa: E402
from genomelab.regulon.tracks import TRAIN_GROUP, read_tracks, split_bin_mask  # noqa: E402


def log_lengths(pairs: pd.DataFrame, length: pd.Series) -> np.ndarray:
    """[n_pairs, 2] log bp of each pair's upstream and downstream gene (``length`` by b-number)."""
    return np.log(np.column_stack([pairs[c].map(length).to_numpy(float) for c in ("upstream", "downstream")]))


def coexpression(pairs: pd.DataFrame, table: pd.DataFrame | None) -> np.ndarray:
    """[n_pairs, 2]: Fisher z of the Pearson correlation across ``table``'s samples of each
    pair's two genes (rows by b-number), and 1 where both genes are in the table (else 0, 0)."""
    out = np.zeros((len(pairs), 2))
    if table is None:
        return out
    x = table.to_numpy(float)
    x = x - x.mean(1, keepdims=True)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    row = {g: i for i, g in enumerate(table.index.astype(str))}
    for j, (up, down) in enumerate(zip(pairs["upstream"], pairs["downstream"], strict=True)):
        if up in row and down in row:
            out[j] = np.arctanh(np.clip(x[row[up]] @ x[row[down]], -0.999, 0.999)), 1.0
    return out


def with_features(
    op: OperonEvaluation, tracks: dict, data: TargetData, expression: pd.DataFrame | None
) -> dict[str, float]:
    """Per-bp AUROC (and test-pair AUROC) of the readout's and the rule's features plus the
    genes' log lengths (``lengths``), and with ``expression`` also their co-expression
    (``lengths_expr``), each a logistic regression fitted on the training pairs (the
    network's features there from its output on the training blocks, as the readout itself
    is fitted)."""
    train = split_pairs(adjacent_pairs(op.region_genes, data), data, "train")
    length = op.region_genes.set_index("bnumber").eval("end - start")
    y = train["same_operon"].to_numpy()
    ro, every = op.readout, op.all_pairs
    test = split_pairs(every, data, "test")
    at_test = every.index.get_indexer(test.index)
    ll_train = ro.distance_ll(train["distance"].to_numpy())[:, None]
    ll_every = ro.distance_ll(every["distance"].to_numpy())[:, None]
    out = {}
    sets = {"lengths": False} | ({"lengths_expr": True} if expression is not None else {})
    for name, x_train, x_every in (
        (
            "readout",
            ro.features(tracks[TRAIN_GROUP]["operon"], train, data, COMBINED),
            ro.features(op.readout_track, every, data, COMBINED),
        ),
        ("rule", ll_train, ll_every),
    ):
        for view, expr in sets.items():
            xt = np.hstack(
                [x_train, log_lengths(train, length)] + ([coexpression(train, expression)] if expr else [])
            )
            xe = np.hstack(
                [x_every, log_lengths(every, length)] + ([coexpression(every, expression)] if expr else [])
            )
            ok = np.isfinite(xt).all(axis=1)
            p = _sigmoid(PairReadout.fit(xt[ok], y[ok]).score(xe))
            if name == "readout":
                # Pairs the network did not score (junction in a training block): the same
                # features without the network's, fitted on the same pairs, as the workflow's
                # readouts fall back since round 15 (else they count as 0 per bp).
                k = x_train.shape[1] - 1  # the network's columns; the distance LL follows
                fb = PairReadout.fit(xt[ok][:, k:], y[ok])
                missed = np.isnan(p)
                p[missed] = _sigmoid(fb.score(xe[missed][:, k:]))
            out[f"bp_{view}_{name}"] = op._bp_metrics(op._pair_track(np.nan_to_num(p)), "test", None)[
                "operon_bp_auroc"
            ]
            out[f"pairs_{view}_{name}"] = roc_auc_score(
                test["same_operon"].to_numpy(), np.nan_to_num(p[at_test])
            )
    return out


def fold_figures(
    fold_dir: Path, genes_all: pd.DataFrame, expression: pd.DataFrame | None
) -> dict[str, float]:
    data = TargetData(fold_dir / "data" / "targets.h5")
    predictions = fold_dir / "model" / "predictions.h5"
    op = OperonEvaluation(data, genes_all)
    tracks = read_tracks(predictions, data)
    set_readout(op, predictions, tracks)
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
    return out | with_features(op, tracks, data, expression)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run", type=Path, default=ROOT / "results" / "regfolds_ecoli" / "regulon")
    ap.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_regulon_gene_level.json"
    )
    ap.add_argument("--expression", type=Path, help="gene x sample log-expression table, rows by b-number")
    args = ap.parse_args()
    genes = read_genes(args.run / "data" / "genes.tsv")
    expression = pd.read_csv(args.expression, index_col=0) if args.expression else None
    folds = sorted((args.run / "folds").iterdir(), key=lambda p: int(p.name))
    rows = [fold_figures(f, genes, expression) for f in folds]
    frame = pd.DataFrame(rows)
    tests = {}
    # Each view: (first, second) columns, compared per fold.
    extra = ("bp_lengths_expr", "pairs_lengths_expr") if expression is not None else ()
    names = ("bp", "gene", "gene_weighted", "bp_lengths", "pairs_lengths", *extra)
    views = {v: (f"{v}_readout", f"{v}_rule") for v in names}
    views["bp_rule_with_lengths_vs_rule"] = ("bp_lengths_rule", "bp_rule")  # what lengths add
    if expression is not None:  # what co-expression adds to the rule with lengths
        views["bp_rule_with_expr_vs_lengths"] = ("bp_lengths_expr_rule", "bp_lengths_rule")
        views["pairs_rule_with_expr_vs_lengths"] = ("pairs_lengths_expr_rule", "pairs_lengths_rule")
    for view, (x, y) in views.items():
        a, b = frame[x], frame[y]
        tests[view] = {
            "first": x,
            "second": y,
            "first_mean": float(a.mean()),
            "second_mean": float(b.mean()),
            "mean_difference": float((a - b).mean()),
            "differences": (a - b).round(5).tolist(),
            "paired_t_p": float(ttest_rel(a, b).pvalue),
        }
    result = {"run": str(args.run), "expression": str(args.expression), "per_fold": rows, "paired": tests}
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(frame.round(4).to_string())
    for t in tests.values():
        print(
            f"{t['first']} {t['first_mean']:.4f} vs {t['second']} {t['second_mean']:.4f}, "
            f"difference {t['mean_difference']:+.4f} (per fold {t['differences']}), paired t p = {t['paired_t_p']:.2g}"
        )


if __name__ == "__main__":
    main()
