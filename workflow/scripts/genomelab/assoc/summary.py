"""The assoc module summary: the selected network against the baselines on each scheme."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from genomelab.io.atomic import atomic_output
from genomelab.io.metrics import read_json_file
from genomelab.report import Comparison, ModuleSummary, write_module_summary
from genomelab.report.stats import paired_t, wilcoxon_signed_rank
from genomelab.report.summary import pair_key

SUMMARY_METRICS = (
    "s2t_acc@1",
    "s2t_acc@5",
    "s2t_acc@10",
    "s2t_mrr",
    "t2s_acc@1",
    "t2s_acc@5",
    "t2s_acc@10",
    "t2s_mrr",
    "mrr_mean",
    "consistency@10",
)


def ranking_tests(
    model_ranks: dict[str, dict[str, list]] | None, baseline_ranks: dict[str, dict[str, list]] | None
) -> dict | None:
    """Paired test of the network against one baseline on the same test queries.

    The reciprocal rank of each query (both directions pooled; [n] per method) is compared
    by a Wilcoxon signed-rank test, with the paired t-test's p-value in ``details``.
    Queries sharing entities are not independent, so the p-values are optimistic (see
    docs/assoc.md). ``None`` when either method has no per-query ranks (older outputs).
    """
    from genomelab.assoc.metrics import paired_reciprocal_ranks

    if not model_ranks or not baseline_ranks:
        return None
    m, b = paired_reciprocal_ranks(model_ranks, baseline_ranks)
    if len(m) < 2:
        return None
    test = wilcoxon_signed_rank(m, b)
    t = paired_t(m, b)
    test.details.update(
        {
            "metric": "reciprocal rank per test query (both directions)",
            "mean_difference": float((m - b).mean()),
            "paired_t_p": t.p_value,
        }
    )
    return test.to_dict()


SCHEME_TITLES = {"links": "held-out links (entities seen)", "entities": "held-out entities (unseen)"}


def build_summary(
    grids: dict[str, str | os.PathLike],
    baselines: dict[str, str | os.PathLike],
    diagnostics: str | os.PathLike,
    plot: str | os.PathLike | None,
    results_dir: str | os.PathLike,
) -> ModuleSummary:
    comps = []
    for scheme, grid_path in grids.items():
        grid = read_json_file(grid_path, "grid selection")
        base = read_json_file(baselines[scheme], "baselines metrics file")
        net = {m: grid["best"]["test"].get(f"test/{m}") for m in SUMMARY_METRICS}
        net_name = f"network ({grid['best_run']})"
        rows = {net_name: net}
        kinds = {net_name: "model"}
        tests = {}
        for name, res in base.items():
            rows[name] = {m: res["test"].get(m) for m in SUMMARY_METRICS}
            kinds[name] = "baseline"
            test = ranking_tests(grid.get("test_ranks"), res.get("test_ranks"))
            if test is not None:
                tests[pair_key(net_name, name)] = test
        comps.append(
            Comparison(
                f"Ranking, {SCHEME_TITLES.get(scheme, scheme)}", "test", "mrr_mean", True, rows, kinds, tests
            )
        )
    from genomelab.diagnostics import read_results

    diags = [{"name": r.name, "status": r.status, "message": r.message} for r in read_results(diagnostics)]
    notes = [
        "Acc@K = share of queries whose best-ranked held-out positive is in the top K (filtered ranking); "
        "MRR = mean reciprocal rank of that positive; consistency@10 = share of held-out links ranked in the "
        "top 10 from both ends.",
        "The network row is the grid point with the best validation mrr_mean; all numbers are on the test split.",
        "Verdicts: Wilcoxon signed-rank test of the per-query reciprocal ranks of the network and the "
        "best baseline on the same test queries (both directions pooled); queries sharing entities are "
        "not independent, so p-values are optimistic.",
    ]
    for scheme, grid_path in grids.items():
        grid = read_json_file(grid_path, "grid selection")
        runs = ", ".join(f"{r['run']} {r['value']:.4f}" for r in grid["runs"])
        notes.append(f"Grid ({scheme} scheme, {grid['metric']}): {runs}; best {grid['best_run']}.")
    plots = [str(Path(plot).relative_to(results_dir))] if plot else []
    return ModuleSummary("assoc", "assoc: bidirectional association model", comps, diags, plots, notes)


def _summary_plot(comps: list[Comparison], path: str | os.PathLike) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(comps), figsize=(5 * len(comps), 3.2), squeeze=False)
    for ax, comp in zip(axes[0], comps, strict=True):
        names = list(comp.rows)
        x = np.arange(len(names))
        for k, (metric, color) in enumerate((("s2t_mrr", "#4477aa"), ("t2s_mrr", "#ee6677"))):
            vals = [comp.rows[n].get(metric) or 0.0 for n in names]
            ax.bar(x + (k - 0.5) * 0.38, vals, 0.38, label=metric, color=color)
        ax.set_xticks(x, [n.split(" (")[0] for n in names], rotation=20)
        ax.set_title(comp.title, fontsize=9)
        ax.set_ylabel("test MRR")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def write_summary(
    grids: dict[str, str | os.PathLike],
    baselines: dict[str, str | os.PathLike],
    diagnostics: str | os.PathLike,
    out_json: str | os.PathLike,
    out_md: str | os.PathLike,
    plot: str | os.PathLike,
) -> ModuleSummary:
    """:func:`build_summary` with its plot, written as JSON and Markdown next to each other."""
    summary = build_summary(grids, baselines, diagnostics, plot, Path(out_json).parent)
    _summary_plot(summary.comparisons, plot)
    write_module_summary(summary, out_json, out_md)
    return summary
