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

# Per-query figures (best positive of each query), kept under their own heading.
QUERY_METRICS = (
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
DIRECTION_TITLES = {"s2t": "source->target", "t2s": "target->source"}
SCHEME_TITLES = {"links": "held-out links (entities seen)", "entities": "held-out entities (unseen)"}
# Older name of the per-query metrics.
SUMMARY_METRICS = QUERY_METRICS


def link_metric_names(direction: str, novel: bool = False) -> tuple[str, ...]:
    """Per-link metric keys of one direction (on links absent from the known source)."""
    p = f"{direction}_{'novel_' if novel else ''}link"
    # The number of links is the paired test's n.
    return (f"{p}_mrr", f"{p}_hits@1", f"{p}_hits@3", f"{p}_hits@10")


def _test(m: np.ndarray, b: np.ndarray, metric: str) -> dict | None:
    """Wilcoxon signed-rank test of paired reciprocal ranks [n] each, paired t in details.

    Most held-out links rank far down for both methods, so the median difference is often 0;
    the test's side is its larger signed-rank sum (report/stats.py), not the median."""
    if len(m) < 2:
        return None
    test = wilcoxon_signed_rank(m, b)
    test.details.update(
        {"metric": metric, "mean_difference": float((m - b).mean()), "paired_t_p": paired_t(m, b).p_value}
    )
    return test.to_dict()


def ranking_tests(
    model_ranks: dict[str, dict[str, list]] | None, baseline_ranks: dict[str, dict[str, list]] | None
) -> dict | None:
    """Paired test of the network against one baseline on the same test queries.

    The reciprocal rank of each query's best positive (both directions pooled; [n] per
    method) is compared by a Wilcoxon signed-rank test, with the paired t-test's p-value in
    ``details``. Queries sharing entities are not independent, so the p-values are
    optimistic (see docs/assoc.md). ``None`` when either method has no per-query ranks.
    """
    from genomelab.assoc.metrics import paired_reciprocal_ranks

    if not model_ranks or not baseline_ranks:
        return None
    m, b = paired_reciprocal_ranks(model_ranks, baseline_ranks)
    return _test(m, b, "reciprocal rank of the best positive per test query (both directions)")


def link_ranking_test(
    model_ranks: dict[str, dict[str, list]] | None,
    baseline_ranks: dict[str, dict[str, list]] | None,
    direction: str,
    novel_only: bool = False,
) -> dict | None:
    """Wilcoxon signed-rank test of per-link reciprocal ranks of one direction (network vs
    one baseline, the same held-out links); ``None`` without per-link ranks."""
    from genomelab.assoc.metrics import paired_link_reciprocal_ranks

    if not any((r or {}).get(direction, {}).get("link_row") for r in (model_ranks, baseline_ranks)):
        return None
    if not (model_ranks and baseline_ranks):
        return None
    m, b = paired_link_reciprocal_ranks(model_ranks, baseline_ranks, direction, novel_only)
    what = "absent from the known source" if novel_only else "held-out"
    return _test(m, b, f"reciprocal rank per {what} {DIRECTION_TITLES[direction]} test link")


def _comparison(title: str, primary: str, metrics: tuple[str, ...], methods: list[dict], test) -> Comparison:
    """One table: ``methods`` = [{name, kind, test (metrics dict), ranks}], network first."""
    rows = {m["name"]: {k: m["test"].get(k) for k in metrics} for m in methods}
    kinds = {m["name"]: m["kind"] for m in methods}
    net = methods[0]
    tests = {}
    for other in methods[1:]:
        found = test(net["ranks"], other["ranks"])
        if found is not None:
            tests[pair_key(net["name"], other["name"])] = found
    return Comparison(title, "test", primary, True, rows, kinds, tests)


def scheme_comparisons(scheme: str, grid: dict, base: dict) -> list[Comparison]:
    """Per-link tables (each direction; on links absent from the known source when the
    records carry them) and the per-query table of one scheme."""
    methods = [
        {
            "name": f"network ({grid['best_run']})",
            "kind": "model",
            "test": grid["best"]["test"],
            "ranks": grid.get("test_ranks"),
        }
    ]
    for name, res in base.items():
        methods.append(
            {"name": name, "kind": "baseline", "test": res["test"], "ranks": res.get("test_ranks")}
        )
    # The network's metrics carry the "test/" prefix of the engine.
    methods[0]["test"] = {k.removeprefix("test/"): v for k, v in methods[0]["test"].items()}
    where = SCHEME_TITLES.get(scheme, scheme)
    has_link = any("s2t_link_mrr" in m["test"] for m in methods)
    has_novel = any(f"{d}_novel_link_mrr" in m["test"] for m in methods for d in ("s2t", "t2s"))
    comps = []
    for novel in ((False, True) if has_novel else (False,)) if has_link else ():
        for d in ("s2t", "t2s"):
            suffix = ", links absent from the known source (exclude_known)" if novel else ""
            comps.append(
                _comparison(
                    f"Per-link ranking {DIRECTION_TITLES[d]}, {where}{suffix}",
                    link_metric_names(d, novel)[0],
                    link_metric_names(d, novel),
                    methods,
                    lambda m, b, d=d, novel=novel: link_ranking_test(m, b, d, novel),
                )
            )
    comps.append(
        _comparison(
            f"Per-query MRR (best positive), {where}", "mrr_mean", QUERY_METRICS, methods, ranking_tests
        )
    )
    return comps


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
        comps.extend(scheme_comparisons(scheme, grid, base))
    from genomelab.diagnostics import read_results

    diags = [{"name": r.name, "status": r.status, "message": r.message} for r in read_results(diagnostics)]
    notes = [
        "Per-link (the headline): every held-out link is ranked among its query's candidates, the "
        "query's other known links removed (filtered setting); link_mrr = mean reciprocal rank over "
        "links, link_hits@K = share of links in the top K.",
        "Per-query MRR (best positive): acc@K = share of queries whose best-ranked held-out positive "
        "is in the top K; mrr = mean reciprocal rank of that positive (reads higher than per-link); "
        "consistency@10 = share of held-out links ranked in the top 10 from both ends.",
        "The network row is the grid point with the best validation metric; all numbers are on the test split.",
        "Verdicts: Wilcoxon signed-rank test of the per-link (or per-query) reciprocal ranks of the "
        "network and the best baseline on the same test links; links sharing entities are not "
        "independent, so p-values are optimistic.",
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

    # One panel per table of per-link MRR: the headline figure of each direction and scheme.
    comps = [c for c in comps if c.primary.endswith("link_mrr")] or comps
    fig, axes = plt.subplots(1, len(comps), figsize=(4 * len(comps), 3.4), squeeze=False)
    for ax, comp in zip(axes[0], comps, strict=True):
        names = list(comp.rows)
        x = np.arange(len(names))
        vals = [comp.rows[n].get(comp.primary) or 0.0 for n in names]
        ax.bar(x, vals, 0.6, label=comp.primary, color=["#4477aa"] + ["#bbbbbb"] * (len(names) - 1))
        ax.set_xticks(x, [n.split(" (")[0] for n in names], rotation=20)
        ax.set_title(comp.title.replace(", ", "\n", 1), fontsize=8)
        ax.set_ylabel("test per-link MRR")
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
