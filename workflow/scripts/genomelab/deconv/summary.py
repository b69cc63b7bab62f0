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
) -> None:
    from genomelab.deconv import plots as P
    from genomelab.diagnostics import read_results
    from genomelab.report import Comparison, ModuleSummary, write_module_summary

    curves = training_curves(train_metrics)
    comps, notes = [], []
    # Records the module's steps left out (reference regions, unmatched input regions).
    dropped = reference_dropped(markers_json) if markers_json else []
    for path in comparisons:
        data = read_json_file(path, "deconv comparison")
        phase = data["phase"]
        comps.append(
            Comparison(
                f"{phase}: NNLS vs plain vs two-stage sparse (MAE)",
                f"{phase} test",
                "mae",
                False,
                data["rows"],
                data["kinds"],
            )
        )
        comps.append(
            Comparison(
                f"{phase}: spurious calls per sample (absent tissue >= 1%)",
                f"{phase} test",
                "spurious_per_sample",
                False,
                data["rows"],
                data["kinds"],
            )
        )
        rows = data["rows"]
        sp, pl, nn = rows[VARIANTS["sparse"]], rows[VARIANTS["plain"]], rows[VARIANTS["nnls"]]
        bars = [
            f"fewer spurious calls than NNLS and plain: {'yes' if sp['spurious_per_sample'] < min(pl['spurious_per_sample'], nn['spurious_per_sample']) else 'NO'} "
            f"({sp['spurious_per_sample']:.3g} vs {nn['spurious_per_sample']:.3g} and {pl['spurious_per_sample']:.3g})",
            f"MAE no worse than NNLS: {'yes' if sp['mae'] <= nn['mae'] else 'NO'} ({sp['mae']:.4g} vs {nn['mae']:.4g})",
            f"presence accuracy > 90%: {'yes' if sp['presence_accuracy'] > 0.9 else 'NO'} ({sp['presence_accuracy']:.1%})",
        ]
        notes.append(f"{phase}, two-stage sparse model: " + "; ".join(bars))
        for variant, s in data.get("repeats", {}).items():
            notes.append(
                f"{phase}, {VARIANTS[variant]} over {s['mae']['n']} seeds: MAE {s['mae']['mean']:.4g} "
                f"+- {s['mae']['sd']:.2g}, spurious/sample {s['spurious_per_sample']['mean']:.3g} "
                f"+- {s['spurious_per_sample']['sd']:.2g}"
            )
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
            notes.append(
                f"new samples vs truth: NNLS MAE {v['nnls']['mae']:.4g}, spurious {v['nnls']['spurious_per_sample']:.3g}; "
                f"network MAE {v['model']['mae']:.4g}, spurious {v['model']['spurious_per_sample']:.3g}"
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
