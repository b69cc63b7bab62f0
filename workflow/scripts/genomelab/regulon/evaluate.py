"""Step 5 outputs: metrics JSON side by side, plots, bedGraph export, the module summary."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from genomelab.diagnostics import read_results
from genomelab.io.atomic import atomic_output
from genomelab.io.metrics import Metrics, read_json_file, read_metrics, write_metrics
from genomelab.regulon.baselines import BaselineConfig, fit_upstream, gene_track
from genomelab.regulon.blocks import Heldout, block_test, paired_tests
from genomelab.regulon.data import Normaliser, read_genes
from genomelab.regulon.metrics import axes, evaluate_tracks, gene_means, regression_metrics
from genomelab.regulon.operons import (
    COEXPRESSION_RULE,
    DISTANCE,
    DISTANCE_LL,
    READOUTS,
    OperonEvaluation,
    OperonReadout,
    adjacent_pairs,
    fit_fallbacks,
    split_pairs,
)
from genomelab.regulon.targets import TargetData
from genomelab.regulon.tracks import TRAIN_GROUP, read_readout, read_tracks, split_bin_mask
from genomelab.report.stats import PairedTest
from genomelab.report.summary import Comparison, ModuleSummary, pair_key, write_module_summary

logger = logging.getLogger(__name__)

MODEL = "CNN (3 heads, RC-averaged)"
BASELINE_NAMES = {"kmer": "k-mer ridge/logistic", "gc": "GC content"}
COMPARISONS = (
    (
        "Expression (measured positions)",
        "expression_pearson",
        True,
        (
            "expression_pearson",
            "expression_spearman",
            "expression_r2",
            "expression_gene_pearson",
            "expression_gene_spearman",
            "expression_gene_r2",
        ),
    ),
    ("Gene density (128-bp bins)", "density_r2", True, ("density_r2", "density_pearson")),
    (
        "Operon membership per bp, strands pooled",
        "operon_bp_auroc",
        True,
        ("operon_bp_auroc", "operon_bp_auprc", "operon_bp_prevalence"),
    ),
    (
        "Adjacent same-strand gene pairs in one operon",
        "pair_auroc",
        True,
        ("pair_auroc", "pair_auprc", "pair_prevalence", "pair_n"),
    ),
    ("Operon membership (per strand, 16-bp bins)", "operon_auroc", True, ("operon_auroc", "operon_auprc")),
)


def comparisons(
    metrics: dict[str, dict[str, float]],
    split: str,
    tests: dict[str, dict[str, PairedTest]] | None = None,
    skip: tuple[str, ...] = (),
) -> list[Comparison]:
    """One comparison per head; rows: the model and each baseline on the same positions;
    ``tests``: primary metric -> baseline -> paired test of the model against it; comparisons
    whose primary metric is in ``skip`` are left out (a head without targets)."""
    out = []
    for title, primary, higher, keys in COMPARISONS:
        if primary in skip:
            continue
        # Methods that score only some views (the distance rules: pairs) sit only in those.
        rows = {name: {k: m[k] for k in keys} for name, m in metrics.items() if primary in m}
        kinds = {name: "model" if name == MODEL else "baseline" for name in rows}
        found = (tests or {}).get(primary, {})
        paired = {pair_key(MODEL, name): t.to_dict() for name, t in found.items() if name not in READOUTS}
        for readout in (r for r in READOUTS if r in rows):
            # The pair readouts are models too; each is tested against the rules.
            kinds[readout] = "model"
            mine = (tests or {}).get(readout, {}).get(primary, {})
            paired |= {pair_key(readout, name): t.to_dict() for name, t in mine.items()}
        out.append(Comparison(title, split, primary, higher, rows, kinds, paired))
    return out


def combined_tests(frames: dict[str, pd.DataFrame], readout: str) -> dict[str, dict[str, PairedTest]]:
    """Per-block paired tests of a pair ``readout``, per view: {primary metric: {method:
    test}}; on pairs against each distance rule (and the co-expression rule, where fitted),
    per bp against every baseline (the rules' per-bp tracks, GC, k-mers)."""
    if readout not in frames:
        return {}
    mine = frames[readout]
    blocks = mine["block"].to_numpy()
    out: dict[str, dict[str, PairedTest]] = {}
    baselines = tuple(n for n in frames if n != MODEL and n not in READOUTS)
    pair_rules = (DISTANCE, DISTANCE_LL, COEXPRESSION_RULE)
    for metric, rules in (("pair_auroc", pair_rules), ("operon_bp_auroc", baselines)):
        found = {
            rule: block_test(
                mine[metric].to_numpy(float), frames[rule][metric].to_numpy(float), blocks, metric
            )
            for rule in rules
            if rule in frames and metric in mine and metric in frames[rule]
        }
        out[metric] = {rule: t for rule, t in found.items() if t is not None}
    return out


def method_metrics(
    methods: dict[str, dict[str, np.ndarray]],
    data: TargetData,
    genes: pd.DataFrame,
    split: str,
    value_field: str,
    operons: OperonEvaluation,
    block: int | None = None,
) -> dict[str, dict[str, float]]:
    """Every method's metrics on ``split`` (one ``block`` of it when given): the tracks' own,
    the pooled per-bp and pair operon views, and the distance rules on the same pairs."""
    out = {
        name: evaluate_tracks(t, data, genes, split, value_field, block=block)
        | operons.track_metrics(t["operon"], split, block)
        for name, t in methods.items()
    }
    return out | operons.rule_metrics(split, block)


def upstream_name(cfg: BaselineConfig) -> str:
    return f"{cfg.upstream_k}-mer ridge, {cfg.upstream_bp} bp upstream"


def gene_metrics(
    tracks: dict[str, np.ndarray],
    pred: np.ndarray,
    data: TargetData,
    genes: pd.DataFrame,
    split: str,
    value_field: str,
    block: int | None = None,
) -> dict[str, float]:
    """Expression metrics of a per-gene method (genes: measured, pred [n_genes]): per position
    from its painted ``tracks``, per gene from ``pred`` itself on the genes wholly in ``split``
    windows (of one ``block``), the same genes as the model's gene means."""
    out = {k: v for k, v in evaluate_tracks(tracks, data, genes, split, value_field, block).items()}
    out = {k: v for k, v in out.items() if k.startswith("expression_") and "_gene_" not in k}
    mask = split_bin_mask(data, split, data.config.resolution_bp, block)
    inside = np.isfinite(gene_means(np.zeros(data.expression.shape), genes, data, mask))
    found = regression_metrics(np.where(inside, pred, np.nan), genes["z"].to_numpy(dtype=float))
    return out | {f"expression_gene_{k}": v for k, v in found.items()}


def block_metrics(
    metrics_of: Callable[[int], dict[str, dict[str, float]]], blocks: list[int]
) -> dict[str, pd.DataFrame]:
    """Per method, the metrics (``metrics_of(block)``) of each block: a frame with a ``block`` column."""
    per_block = {b: metrics_of(b) for b in blocks}
    names = per_block[blocks[0]].keys() if blocks else ()
    return {name: pd.DataFrame([{"block": b, **per_block[b][name]} for b in blocks]) for name in names}


def bedgraph_lines(track: np.ndarray, contig: str, region_start: int, step_bp: int) -> pd.DataFrame:
    """Rows (contig, start, end, value) of the finite values of a [n] track."""
    idx = np.nonzero(np.isfinite(track))[0]
    starts = region_start + idx * step_bp
    return pd.DataFrame({"chrom": contig, "start": starts, "end": starts + step_bp, "value": track[idx]})


def write_bedgraphs(
    tracks: dict[str, np.ndarray],
    data: TargetData,
    norm: Normaliser,
    out_dir: str | os.PathLike,
    name: str = "model",
) -> list[Path]:
    """bedGraph files of predicted tracks for genome browsers, one per track and strand.

    Expression is written in log1p(value) units (the saved normalisation inverted), so the
    track reads like the measurement rather than like a z-score.
    """
    out_dir = Path(out_dir)
    paths = []
    cfg = data.config
    for track, step, transform, label in (
        ("expression", cfg.resolution_bp, norm.inverse_log, f"log1p({norm.value_field})"),
        ("operon", cfg.resolution_bp, None, "P(operon)"),
        ("density", cfg.bin_bp, None, "genes per bin"),
    ):
        for row, strand in enumerate(("plus", "minus")):
            values = tracks[track][row].astype(np.float64)
            if transform is not None:
                values = transform(values)
            path = out_dir / f"{name}_{track}_{strand}.bedGraph"
            with atomic_output(path) as tmp:
                with open(tmp, "w") as fh:
                    fh.write(
                        f'track type=bedGraph name="{name} {track} {strand}" description="{label}, '
                        f'{strand} strand, predicted"\n'
                    )
                    bedgraph_lines(values, data.contig, data.region_start, step).to_csv(
                        fh, sep="\t", header=False, index=False, float_format="%.4g"
                    )
            paths.append(path)
    return paths


def plot_tracks(
    path: str | os.PathLike,
    data: TargetData,
    methods: dict[str, dict[str, np.ndarray]],
    split: str,
    length_bp: int,
) -> None:
    """Predicted vs measured tracks over the first ``length_bp`` of the first ``split`` block."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = data.config
    block = data.blocks[data.blocks["split"] == split].iloc[0]
    start = int(block["start"])
    end = min(int(block["end"]), start + length_bp)
    r0, r1 = (start - data.region_start) // cfg.resolution_bp, (end - data.region_start) // cfg.resolution_bp
    b0, b1 = (start - data.region_start) // cfg.bin_bp, (end - data.region_start) // cfg.bin_bp
    xr = start + np.arange(r1 - r0) * cfg.resolution_bp
    xb = start + np.arange(b1 - b0) * cfg.bin_bp
    fig, axes = plt.subplots(6, 1, figsize=(12, 11), sharex=True)
    panels = [
        ("expression", 0, "expression + (z)"),
        ("expression", 1, "expression - (z)"),
        ("density", 0, "density + (genes/bin)"),
        ("density", 1, "density - (genes/bin)"),
        ("operon", 0, "operon + (P)"),
        ("operon", 1, "operon - (P)"),
    ]
    truth = {"expression": data.expression, "density": data.density, "operon": data.operon.astype(float)}
    for ax, (track, row, label) in zip(axes, panels, strict=True):
        x, sl = (xb, slice(b0, b1)) if track == "density" else (xr, slice(r0, r1))
        ax.fill_between(x, np.nan_to_num(truth[track][row, sl]), step="post", color="0.8", label="measured")
        for (name, tracks), color in zip(methods.items(), ("C0", "C1", "C2"), strict=False):
            ax.step(x, tracks[track][row, sl], where="post", color=color, lw=0.9, label=name)
        ax.set_ylabel(label, fontsize=8)
    axes[0].legend(fontsize=7, ncol=4, loc="upper right")
    axes[-1].set_xlabel(f"{data.contig} position (bp), {split} block {int(block['block'])}")
    fig.suptitle(f"Predicted vs measured tracks, {split} block (not seen in training)")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def plot_genes(
    path: str | os.PathLike, per_gene: dict[str, tuple[np.ndarray, np.ndarray]], split: str
) -> None:
    """Per-gene predicted vs measured expression scatter, one panel per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(per_gene), figsize=(4 * len(per_gene), 4), squeeze=False)
    for ax, (name, (pred, true)) in zip(axes[0], per_gene.items(), strict=True):
        ok = np.isfinite(pred) & np.isfinite(true)
        ax.scatter(true[ok], pred[ok], s=4, alpha=0.5)
        r = np.corrcoef(true[ok], pred[ok])[0, 1] if ok.sum() > 2 and np.ptp(pred[ok]) > 0 else float("nan")
        ax.set_title(f"{name}\nPearson {r:.3f} over {int(ok.sum())} {split} genes", fontsize=9)
        ax.set_xlabel("measured z(log1p)")
        ax.set_ylabel("predicted")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


def set_readout(
    operons: OperonEvaluation,
    model_tracks_path: str | os.PathLike,
    model_tracks: dict[str, dict[str, np.ndarray]],
) -> None:
    """Give ``operons`` the network's pair readout: the one training saved (in the
    predictions file, as in the exported model), or for older runs one fitted here on the
    network's output on the training blocks. A readout saved before its annotation fallbacks
    (format 2 and older) gets them fitted here on the training pairs, so that old runs are
    scored as new ones (prediction with such a model leaves those pairs NA)."""
    saved = read_readout(model_tracks_path)
    if saved is not None:
        readout = OperonReadout.from_dict(saved, str(model_tracks_path))
        if not readout.fallbacks:
            train = split_pairs(adjacent_pairs(operons.region_genes, operons.data), operons.data, "train")
            fit_fallbacks(readout, train)
            logger.info(
                "%s: pair readout saved without annotation fallbacks (format %s): fitted here on %d "
                "training pairs",
                model_tracks_path,
                saved.get("version"),
                len(train),
            )
        operons.use_readout(readout, model_tracks["model"]["operon"])
    elif TRAIN_GROUP in model_tracks:
        operons.fit_readouts(model_tracks["model"]["operon"], model_tracks[TRAIN_GROUP]["operon"])


def flatten_for_json(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in metrics.items()}


def data_report_notes(report: dict[str, Any]) -> list[str]:
    """What the data step dropped or warned about, for the summary beside the results (users
    read the summary, not data_report.json): warnings, the co-expression note, operons below
    ``min_confidence`` and gene documents without a position."""
    notes = [f"Data report warning: {w}" for w in report.get("warnings", [])]
    if (report.get("coexpression") or {}).get("note"):
        notes.append(f"Data report, co-expression: {report['coexpression']['note']}")
    if report.get("min_confidence"):
        kept, below = report.get("n_operons", 0), report.get("n_operons_below_confidence", 0)
        notes.append(
            f"Data report, operons: {kept} kept at regulon.min_confidence {report['min_confidence']!r}, "
            f"{below} below it (or without a level) left out."
        )
    if report.get("n_genes_dropped_bad_docs"):
        notes.append(
            f"Data report, genes: {report['n_genes_dropped_bad_docs']} gene record(s) without a usable "
            "position or strand (e.g. RegulonDB's phantom genes) were left out."
        )
    return notes


def evaluate(
    targets_path: str | os.PathLike,
    genes_path: str | os.PathLike,
    stats_path: str | os.PathLike,
    model_tracks_path: str | os.PathLike,
    baseline_tracks_path: str | os.PathLike,
    out_dir: str | os.PathLike,
    plot_bp: int = 20000,
    split: str = "test",
    train_metrics_path: str | os.PathLike | None = None,
    diagnostics_paths: tuple = (),
    report_path: str | os.PathLike | None = None,
    summary_json: str | os.PathLike | None = None,
    summary_md: str | os.PathLike | None = None,
    baseline_cfg: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Metrics of model and baselines on the same held-out positions, plots, bedGraph, summary.

    With ``baseline_cfg`` (``regulon.baseline``) and measured genes, the per-gene upstream k-mer
    ridge (baselines.fit_upstream) is fitted here, where the gene table is at hand, and joins
    the expression comparison."""
    out_dir = Path(out_dir)
    data = TargetData(targets_path)
    genes = read_genes(genes_path)
    norm = Normaliser.load(stats_path)
    methods = {MODEL: read_tracks(model_tracks_path, data)["model"]}
    for key, tracks in read_tracks(baseline_tracks_path, data).items():
        methods[BASELINE_NAMES.get(key, key)] = tracks
    operons = OperonEvaluation(data, genes)
    model_tracks = read_tracks(model_tracks_path, data)
    set_readout(operons, model_tracks_path, model_tracks)
    metrics = method_metrics(methods, data, genes, split, norm.value_field, operons)
    measured = genes[np.isfinite(genes["z"].to_numpy(dtype=float))].reset_index(drop=True)
    upstream: dict[str, Any] = {}
    if baseline_cfg is not None and len(measured):
        cfg = BaselineConfig.from_dict(baseline_cfg)
        pred, info = fit_upstream(data, measured, cfg)
        upstream = {"name": upstream_name(cfg), "pred": pred, "tracks": gene_track(pred, measured, data)}
        metrics[upstream["name"]] = gene_metrics(
            upstream["tracks"], pred, data, measured, split, norm.value_field
        )
    payload: dict[str, Any] = {
        "split": split,
        "axes": axes(data, split, norm.value_field),
        "metrics": metrics,
        "normalisation": norm.__dict__,
    }
    if upstream:
        payload["upstream_baseline"] = info
    if train_metrics_path is not None:
        tm = read_metrics(train_metrics_path)
        hist = tm.get("history", [])
        payload["training"] = {
            "initial_train_loss": tm.get("initial", {}).get("initial/loss"),
            "train_loss_per_epoch": [h.get("train/loss") for h in hist],
            "val_loss_per_epoch": [h.get("val/loss") for h in hist],
            "best_epoch": tm.get("best_epoch"),
            "stopped_reason": tm.get("stopped_reason"),
        }
    write_metrics(out_dir / "metrics.json", Metrics(payload, str(out_dir / "metrics.json")))
    plots = [out_dir / "plots" / "tracks.png", out_dir / "plots" / "genes.png"]
    plot_tracks(
        plots[0],
        data,
        {MODEL: methods[MODEL], BASELINE_NAMES["kmer"]: methods[BASELINE_NAMES["kmer"]]},
        split,
        plot_bp,
    )
    res_mask = split_bin_mask(data, split, data.config.resolution_bp)
    true_gene = measured["z"].to_numpy(dtype=float)
    gene_pred = {name: gene_means(t["expression"], measured, data, res_mask) for name, t in methods.items()}
    if upstream:
        # Its own prediction on the genes the model's gene means cover (the same held-out genes).
        gene_pred[upstream["name"]] = np.where(np.isfinite(gene_pred[MODEL]), upstream["pred"], np.nan)
    plot_genes(
        plots[1], {name: (gene_pred[name], true_gene) for name in (MODEL, BASELINE_NAMES["kmer"])}, split
    )
    write_bedgraphs(methods[MODEL], data, norm, out_dir / "tracks")
    if summary_json is not None:
        diags = [r.__dict__ for p in diagnostics_paths for r in read_results(p)]
        report = read_json_file(report_path) if report_path else {}
        notes = [f"Axis of {k}: {v}." for k, v in payload["axes"].items()]
        has_expression = bool(len(measured))
        notes.append(
            f"Expression measured on {report.get('coverage', {}).get('measured_fraction', float('nan')):.1%} "
            f"of {report.get('coverage', {}).get('over', 'the genome')}; normalisation log1p then z (mean {norm.mean:.4g}, std {norm.std:.4g}) "
            "saved in data/norm_stats.json and inverted in the bedGraph export."
            if has_expression
            else "Expression: none in the input (no geneExpression collection or expression table), so the "
            "expression head was not trained and the expression comparison is omitted."
        )
        if "training" in payload:
            t = payload["training"]
            notes.append(
                f"Loss of the untrained model (eval mode, first 512 training windows): "
                f"{t['initial_train_loss']:.4g}; training loss per epoch (train mode, augmented): "
                f"{', '.join(f'{v:.3g}' for v in t['train_loss_per_epoch'])}; validation loss per epoch: "
                f"{', '.join(f'{v:.3g}' for v in t['val_loss_per_epoch'])}."
            )
        notes += data_report_notes(report)
        held = data.blocks.loc[data.blocks["split"] == split, "block"].tolist()

        def metrics_of(b: int) -> dict[str, dict[str, float]]:
            found = method_metrics(methods, data, genes, split, norm.value_field, operons, b)
            if upstream:
                found[upstream["name"]] = gene_metrics(
                    upstream["tracks"], upstream["pred"], data, measured, split, norm.value_field, b
                )
            return found

        frames = block_metrics(metrics_of, held)
        tests = paired_tests(
            frames,
            gene_pred,
            true_gene,
            MODEL,
        )
        tests |= {r: combined_tests(frames, r) for r in READOUTS}
        heldout = Heldout.from_config(data.config.heldout)
        how = (
            "given in regulon.targets.heldout"
            if heldout.given
            else "fixed, evenly spaced (heldout.scheme: spaced)"
            if heldout.scheme == "spaced"
            else "drawn with the seed (heldout.scheme: random)"
        )
        notes.append(
            f"Held-out {split} blocks {held} ({data.config.block_bp} bp each, {how}; "
            "all blocks in data/blocks.tsv). Paired tests: Wilcoxon signed-rank over test genes for "
            f"expression (genes of one block are not independent), over the {len(held)} test blocks for "
            f"density and operons (smallest possible two-sided p {2.0 / 2 ** len(held):.2g})."
        )
        if upstream:
            notes.append(
                f"{upstream['name']}: per gene, the {info['k']}-mer frequencies of the {info['upstream_bp']} bp "
                "before its start on its own strand (reverse complement for minus-strand genes), ridge "
                f"fitted on {info['n_train_genes']} training-block genes, alpha {info['alpha']:g} chosen on "
                f"{info['n_val_genes']} validation-block genes; per-position rows paint each gene's "
                "prediction over its body like the target."
            )
        summary = ModuleSummary(
            "regulon",
            "regulon: E. coli sequence -> expression, gene density, operons",
            comparisons(metrics, split, tests, () if has_expression else ("expression_pearson",)),
            diags,
            [str(p.relative_to(out_dir)) for p in plots],
            notes,
        )
        write_module_summary(summary, summary_json, summary_md)
    return payload
