"""The deconv_summary step: comparisons, notes and training curves of every phase."""

from __future__ import annotations

import os
from pathlib import Path

from genomelab.deconv.compare import VARIANTS
from genomelab.deconv.io import join_dropped
from genomelab.deconv.mixtures import PHASES
from genomelab.deconv.reference import reference_dropped
from genomelab.io.metrics import read_json_file, read_metrics


def training_curves(train_metrics: list[str]) -> dict[str, list[str]]:
    """Training metrics files by ``<phase>/<variant>`` (found by their folder names)."""
    return {
        f"{phase}/{v}": [p for p in train_metrics if f"/{phase}/{v}/" in p]
        for phase in PHASES
        for v in ("plain", "sparse")
    }


def set_label(data: dict) -> str:
    """``phase3`` for a phase's own test split, ``independent 10x`` for an independent set."""
    if data["phase"] == "independent":
        return f"independent {data.get('coverage', float('nan')):g}x"
    return data["phase"]


def set_comparisons(data: dict) -> list:
    """MAE, spurious and missed calls per sample of one test set, each with its paired tests."""
    from genomelab.report import Comparison

    label = set_label(data)
    tests = data.get("tests", {})
    return [
        Comparison(
            f"{label}: {title}",
            f"{label} test",
            metric,
            False,
            data["rows"],
            data["kinds"],
            tests=tests.get(metric, {}),
        )
        for metric, title in (
            ("mae", "NNLS vs plain vs two-stage sparse (MAE)"),
            ("spurious_per_sample", "spurious calls per sample (absent tissue >= 1%)"),
            ("missed_per_sample", "missed calls per sample (present >= 1%, predicted < 0.5%)"),
        )
    ]


def bar_notes(data: dict) -> list[str]:
    """The issue's bars for the two-stage model on one test set, and the repeats' spread."""
    label = set_label(data)
    rows = data["rows"]
    sp, pl, nn = rows[VARIANTS["sparse"]], rows[VARIANTS["plain"]], rows[VARIANTS["nnls"]]
    tests = data.get("tests", {})
    key = f"{VARIANTS['sparse']} vs {VARIANTS['nnls']}"

    def p(metric: str) -> str:
        t = tests.get(metric, {}).get(key)
        return f", Wilcoxon p = {t['p_value']:.2g}" if t else ""

    bars = [
        f"spurious calls <= 0.5x NNLS's: {'yes' if sp['spurious_per_sample'] <= 0.5 * nn['spurious_per_sample'] else 'NO'} "
        f"({sp['spurious_per_sample']:.3g} vs {nn['spurious_per_sample']:.3g}, plain {pl['spurious_per_sample']:.3g}{p('spurious_per_sample')})",
        f"missed calls no more than NNLS: {'yes' if sp['missed_per_sample'] <= nn['missed_per_sample'] else 'NO'} "
        f"({sp['missed_per_sample']:.3g} vs {nn['missed_per_sample']:.3g}{p('missed_per_sample')})",
        f"MAE no worse than NNLS: {'yes' if sp['mae'] <= nn['mae'] else 'NO'} ({sp['mae']:.4g} vs {nn['mae']:.4g}{p('mae')})",
    ]
    notes = [f"{label} ({data.get('set', 'test split')}), two-stage sparse model: " + "; ".join(bars)]
    for variant, s in data.get("repeats", {}).items():
        notes.append(
            f"{label}, {VARIANTS[variant]} over {s['mae']['n']} seeds: MAE {s['mae']['mean']:.4g} "
            f"+- {s['mae']['sd']:.2g}, spurious/sample {s['spurious_per_sample']['mean']:.3g} "
            f"+- {s['spurious_per_sample']['sd']:.2g}"
        )
    return notes


def summarise(
    comparisons: list[str],
    diagnostics: str,
    infer_json: str | None,
    train_metrics: list[str],
    out_json: str | os.PathLike,
    out_md: str | os.PathLike,
    plot_paths: list[str],
    curves_png: str | os.PathLike | None = None,
    markers_json: str | None = None,
    background: list[str] | None = None,
    background_named: bool = False,
) -> None:
    """The module summary. ``background``: the phase-3 blood background the mixtures were
    drawn on, ``background_named`` whether the config named it (else it was derived from the
    tissue names, which the user is asked to check: the summary names it either way)."""
    from genomelab.deconv import plots as P
    from genomelab.diagnostics import read_results
    from genomelab.report import ModuleSummary, write_module_summary

    curves = training_curves(train_metrics)
    comps, notes = [], []
    # Records the module's steps left out (reference regions, unmatched input regions).
    dropped = reference_dropped(markers_json) if markers_json else []
    if markers_json:
        rec = read_json_file(markers_json, "deconv markers record")
        notes.append(
            f"reference from {rec['origin']}: {rec['n_regions_input']} regions in, "
            f"{rec['n_regions_usable']} usable, {rec['n_markers']} used ({len(rec['tissues'])} tissues)"
        )
    if background:
        notes.append(
            f"phase-3 blood background: {', '.join(background)} "
            + (
                "(named in deconv.mixtures.phase3.background)"
                if background_named
                else "(derived from the tissue names that read as blood cell types; name it in "
                "deconv.mixtures.phase3.background to change it)"
            )
        )
    for path in comparisons:
        data = read_json_file(path, "deconv comparison")
        comps += set_comparisons(data)
        notes += bar_notes(data)
    if infer_json:
        inf = read_json_file(infer_json, "deconv inference summary")
        j = inf["join"]
        dropped += [d for d in (join_dropped(j),) if d is not None]
        notes.append(
            f"inference on {len(inf['samples'])} new samples: {j['n_matched']} of {j['n_reference_regions']} "
            f"reference regions matched, {j['n_dropped']} input regions dropped"
        )
        if "vs_truth" in inf:
            v = inf["vs_truth"]
            names = {"nnls": "NNLS", "weighted_nnls": "weighted NNLS + offset", "model": "network"}
            # Reports written before the weighted NNLS joined inference lack its entry.
            notes.append(
                "new samples vs truth: "
                + "; ".join(
                    f"{label} MAE {v[key]['mae']:.4g}, spurious {v[key]['spurious_per_sample']:.3g}, "
                    f"missed {v[key].get('missed_per_sample', float('nan')):.3g}"
                    for key, label in names.items()
                    if key in v
                )
            )
    plots = list(plot_paths)
    if curves_png and curves:
        hists = {name: read_metrics(p[0]).history for name, p in curves.items() if p}
        P.curves_plot(hists, curves_png)
        plots.append(str(curves_png))
    base = Path(out_json).parent
    diags = [
        {"name": r.name, "status": r.status, "message": r.message, "blocking": r.blocking}
        for r in read_results(diagnostics)
    ]
    summary = ModuleSummary(
        "deconv",
        "cfDNA tissue deconvolution (NNLS vs plain vs two-stage sparse)",
        comps,
        diags,
        [os.path.relpath(p, base) for p in plots],
        notes,
        dropped,
    )
    write_module_summary(summary, out_json, out_md)
