"""The binning module summary: bins against the truth table (model vs TNF baseline), the
test loss terms beside their reference values, and the training run's speed."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from genomelab.binning.bins import empty_bins_reason, unbinned_dropped
from genomelab.diagnostics import WARN, DiagnosticResult, read_results
from genomelab.io.atomic import atomic_write_json, atomic_write_text
from genomelab.io.metrics import TRAINING_KEYS, read_json_file, read_metrics
from genomelab.io.tables import read_contig_bins
from genomelab.report import Comparison, ModuleSummary, write_module_summary

logger = logging.getLogger(__name__)


# Values from the model's development history (0.5M-sequence test set, ~500 epochs).
REFERENCE_TERMS = {
    "bce6": 0.0040,
    "bce5": 0.0136,
    "mse4": 0.0004,
    "mse3": 0.0002,
    "mse_gc": 0.0001,
    "kl": 493.0,
}


#: How each binning.model.kind is named in the summary.
MODEL_LABELS = {"vae": "beta-VAE", "contrastive": "contrastive encoder", "tnf": "TNF PCA, no training"}


def genome_tests(scores: dict[str, Any], model: str, baseline: str) -> dict[str, dict]:
    """The paired test of the model's bins against the baseline's: Wilcoxon signed-rank over
    genomes of each genome's best-bin F1 (evaluation key ``per_genome_best_f1``); empty when
    the evaluation has no per-genome scores."""
    from genomelab.report.stats import wilcoxon_signed_rank
    from genomelab.report.summary import pair_key

    m, b = scores["model"].get("per_genome_best_f1"), scores["tnf_baseline"].get("per_genome_best_f1")
    if not m or not b:
        return {}
    genomes = sorted(set(m) & set(b))
    test = wilcoxon_signed_rank([m[g] for g in genomes], [b[g] for g in genomes])
    test.test = "Wilcoxon signed-rank over genomes (best-bin F1, bp)"
    return {pair_key(model, baseline): test.to_dict()}


#: Per clustering, from its bins' marker table (bins/markers.tsv, baseline/markers.tsv).
MARKER_KEYS = ("n_medium_or_better", "n_high", "n_written_bins", "mean_completeness", "mean_contamination")


def marker_scores(table: pd.DataFrame) -> dict[str, float]:
    """Counts of written bins per MIMAG tier and their mean completeness and contamination (%)
    from a :func:`genomelab.binning.markers.write_markers` table."""
    from genomelab.binning.markers import TIER_HIGH, TIER_MEDIUM

    tiers = table["tier"].astype(str)
    return {
        "n_medium_or_better": int(tiers.isin([TIER_HIGH, TIER_MEDIUM]).sum()),
        "n_high": int((tiers == TIER_HIGH).sum()),
        "n_written_bins": len(table),
        "mean_completeness": round(float(table["completeness"].mean()), 2) if len(table) else 0.0,
        "mean_contamination": round(float(table["contamination"].mean()), 2) if len(table) else 0.0,
    }


def marker_comparison(
    model_markers: str | os.PathLike, baseline_markers: str | os.PathLike, model: str, baseline: str
) -> Comparison:
    """The model's bins against the TNF baseline's where no truth table scores them: both
    clusterings' written bins scored by the same single-copy marker genes. Bins of two
    clusterings are not paired, so there is no paired test: the verdict can only tie or trail."""
    from genomelab.binning.markers import read_markers_table

    return Comparison(
        title="Bins scored by single-copy marker genes, no truth table (MIMAG tiers from estimated "
        "completeness and contamination: medium or better = >= 50% complete, < 10% contaminated)",
        split="all contigs",
        primary="n_medium_or_better",
        higher_is_better=True,
        rows={
            model: marker_scores(read_markers_table(model_markers)),
            baseline: marker_scores(read_markers_table(baseline_markers)),
        },
        kinds={model: "model", baseline: "baseline"},
    )


def training_notes(metrics: dict[str, Any], model_kind: str) -> list[str]:
    """The test loss beside its reference (VAE) or chance level (contrastive) and the
    training speed, from the training ``metrics``."""
    test = metrics.get("test", {})
    terms = ", ".join(
        f"{t} {test.get(f'test/{t}', float('nan')):.4g} (ref {REFERENCE_TERMS[t]:g})" for t in REFERENCE_TERMS
    )
    # The reference loss terms are the beta-VAE's; the contrastive encoder has its NT-Xent.
    loss_note = (
        f"Test-split loss terms beside the development-history reference (0.5M sequences, ~500 epochs): {terms}."
        if model_kind == "vae"
        else f"Test-split loss {test.get('test/loss', float('nan')):.4g} "
        f"(chance {metrics.get('chance_nt_xent', float('nan')):.4g}, the NT-Xent of an embedding that "
        "tells no view apart)."
    )
    return [
        loss_note,
        f"Training: {metrics.get('epochs_run')} epochs on {metrics.get('device')} "
        f"({metrics.get('mean_epoch_seconds') or 0:.2f} s/epoch, "
        f"{metrics.get('train_contigs_per_second') or 0:.0f} contigs/s); stopped: {metrics.get('stopped_reason')}.",
    ]


def write_summary(
    metrics_path: str | os.PathLike | None,
    bin_summary: str | os.PathLike,
    contig_bins: str | os.PathLike,
    diagnostics: list[str],
    evaluation: str | os.PathLike | None,
    latent_plots: tuple[str, str] | None,
    cluster_method: str,
    min_bp: int,
    out_json: str | os.PathLike,
    out_md: str | os.PathLike,
    model_kind: str = "vae",
    markers: str | os.PathLike | None = None,
    baseline_markers: str | os.PathLike | None = None,
) -> ModuleSummary:
    """The module summary; ``evaluation`` (with the model's and baseline's ``latent_plots``) is
    None when no truth table was given; unbinned contigs of ``contig_bins`` are counted as
    dropped records; ``model_kind`` (binning.model.kind) names the model. With kind ``tnf``
    nothing was trained (``metrics_path`` None): the bins are the TNF baseline's, the one
    row of the comparison. ``markers`` (bins/markers.tsv, when binning.markers is on) adds
    the quality view: bins ranked by estimated completeness/contamination with MIMAG tiers;
    ``baseline_markers`` (baseline/markers.tsv: a trained model and no truth table) the
    comparison of the model's bins with the TNF baseline's by those marker genes."""
    model = MODEL_LABELS.get(model_kind, model_kind)
    trained = model_kind != "tnf"
    per_bin = pd.read_csv(bin_summary, sep="\t")
    diags = [dataclasses.asdict(r) for path in diagnostics for r in read_results(path)]
    results_dir = Path(out_json).parent
    comparisons, plots = [], []
    if evaluation is not None:
        scores: dict[str, Any] = read_json_file(evaluation, "binning evaluation")
        clustering = "kNN-graph clustering" if cluster_method == "graph" else f"{cluster_method} clustering"
        keys = (
            "ari_bp",
            "ari_bp_binned",
            "ari_contigs",
            "ari_contigs_binned",
            "n_good_bins",
            "n_bins",
            "binned_bp_fraction",
            "mean_precision",
            "mean_recall",
        )
        ours, tnf = f"{model} + {clustering}", f"TNF PCA + {clustering}"
        rows = {tnf: {k: scores["tnf_baseline"][k] for k in keys}}
        kinds = {tnf: "baseline"}
        if trained:
            rows, kinds = {ours: {k: scores["model"][k] for k in keys}, **rows}, {ours: "model", **kinds}
        comparisons.append(
            Comparison(
                title="Binning against the truth table (AMBER style: ari_bp* weighted by bp, "
                "ari_contigs* counting contigs; precision/recall by bp)",
                split="all contigs",
                primary="ari_bp",
                higher_is_better=True,
                rows=rows,
                kinds=kinds,
                tests=genome_tests(scores, ours, tnf) if trained else {},
            )
        )
        # With kind tnf both plots show the baseline's embedding: keep one.
        plots = [os.path.relpath(p, results_dir) for p in (latent_plots or ())[0 if trained else 1 :]]
    written = per_bin[per_bin["written"]]
    contig_table = read_contig_bins(contig_bins)
    if written.empty:
        # An empty bins/fasta/ is a result to explain, not a silent success.
        reason = empty_bins_reason(per_bin, contig_table, min_bp)
        diags.append(dataclasses.asdict(DiagnosticResult("bins_written", WARN, reason, blocking=False)))
        logger.warning("%s", reason)
    trained_notes = (
        training_notes(read_metrics(metrics_path, require=TRAINING_KEYS), model_kind) if trained else []
    )
    notes = [
        *trained_notes[:1],
        f"{len(per_bin)} bins; {len(written)} of at least {min_bp} bp written as FASTA "
        f"({int(written['size_bp'].sum())} bp)"
        # Good bins are scored against the truth table: said only where one was given.
        + ("; good bins = recall >= 0.9 and precision >= 0.95." if comparisons else "."),
        *trained_notes[1:],
    ]
    if not trained:
        notes.append(
            "binning.model.kind tnf: no model was trained; the bins are the TNF baseline's "
            "(tetranucleotide frequencies, PCA) with the same clustering."
        )
    outliers = contig_table[contig_table["status"] == "outlier"]
    if len(outliers):
        notes.append(
            f"{len(outliers)} contigs ({int(outliers['length'].sum())} bp, "
            f"{outliers['length'].sum() / max(contig_table['length'].sum(), 1):.2%} of the listed bp) left "
            "unbinned: far from every cluster (binning.cluster.outlier_fence); contig_bins.tsv lists them "
            "with status 'outlier'."
        )
    if not comparisons:
        notes.append(
            "No truth table was given, so bins were not evaluated against one (binning.input.truth)"
            + (
                "; the model's bins and the TNF baseline's are compared by single-copy marker genes."
                if markers is not None and baseline_markers is not None
                else "."
            )
        )
        if markers is not None and baseline_markers is not None:
            clustering = (
                "kNN-graph clustering" if cluster_method == "graph" else f"{cluster_method} clustering"
            )
            comparisons.append(
                marker_comparison(
                    markers, baseline_markers, f"{model} + {clustering}", f"TNF PCA + {clustering}"
                )
            )
    quality, quality_md = None, ""
    if markers is not None:
        from genomelab.binning.markers import quality_view, read_markers_table

        quality, quality_note, quality_md = quality_view(read_markers_table(markers))
        notes.append(quality_note)
    summary = ModuleSummary(
        "binning",
        f"Contig binning ({model})",
        comparisons,
        diags,
        plots,
        notes,
        unbinned_dropped(contig_table),
    )
    if quality is None:
        write_module_summary(summary, out_json, out_md)
    else:
        # ModuleSummary has no table field: the quality view is an extra key of summary.json
        # (readers ignore it) and a section appended to summary.md.
        atomic_write_json(out_json, {**summary.to_dict(), "quality": quality})
        atomic_write_text(out_md, summary.to_markdown() + quality_md)
    for comp in comparisons:
        logger.info("%s", comp.verdict())
    return summary
