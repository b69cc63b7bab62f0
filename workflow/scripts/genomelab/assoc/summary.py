"""The assoc module summary: the selected network against the baselines on each scheme."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from genomelab.io.atomic import atomic_output
from genomelab.io.metrics import read_json_file
from genomelab.report import Comparison, ModuleSummary, write_module_summary
from genomelab.report.stats import mean_sd, paired_t, wilcoxon_signed_rank
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


def _comparison(title: str, primary: str, metrics: tuple[str, ...], test, methods: list[dict]) -> Comparison:
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


def _methods(grid: dict, base: dict) -> list[dict]:
    """[{name, kind, test (metrics dict), ranks}] of the selected network (first) and each
    baseline, from one grid selection and one baselines file."""
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
    return methods


def _tables(scheme: str, methods: list[dict]) -> list[tuple[str, str, tuple[str, ...], Any]]:
    """(title, primary metric, metrics, paired test of two ``ranks`` records) of each table
    of one scheme: per-link tables (each direction; on links absent from the known source
    when the records carry them), then the per-query table."""
    where = SCHEME_TITLES.get(scheme, scheme)
    has_link = any("s2t_link_mrr" in m["test"] for m in methods)
    has_novel = any(f"{d}_novel_link_mrr" in m["test"] for m in methods for d in ("s2t", "t2s"))
    tables = []
    for novel in ((False, True) if has_novel else (False,)) if has_link else ():
        for d in ("s2t", "t2s"):
            suffix = ", links absent from the known source (exclude_known)" if novel else ""
            tables.append(
                (
                    f"Per-link ranking {DIRECTION_TITLES[d]}, {where}{suffix}",
                    link_metric_names(d, novel)[0],
                    link_metric_names(d, novel),
                    lambda m, b, d=d, novel=novel: link_ranking_test(m, b, d, novel),
                )
            )
    tables.append((f"Per-query MRR (best positive), {where}", "mrr_mean", QUERY_METRICS, ranking_tests))
    return tables


def scheme_comparisons(scheme: str, grid: dict, base: dict) -> list[Comparison]:
    """Per-link tables (each direction; on links absent from the known source when the
    records carry them) and the per-query table of one scheme."""
    methods = _methods(grid, base)
    return [_comparison(*table, methods) for table in _tables(scheme, methods)]


def fold_scheme_comparisons(scheme: str, grids: list[dict], bases: list[dict]) -> list[Comparison]:
    """The tables of :func:`scheme_comparisons` over K folds of one scheme: each method's
    metrics as mean (``rows``) and SD (``spread``) over folds, and per network x baseline a
    paired test across folds of the table's primary metric.

    ``grids``/``bases`` [K]: each fold's grid selection and baselines file, in fold order.
    The verdict's test is the paired t-test of the K per-fold values; its ``details`` keep
    the Wilcoxon signed-rank test across folds, each fold's own paired test over its test
    links (or queries) and the same test on all folds' test links pooled (every link is in
    one fold's test split, ranked by models that did not train on it).
    """
    if len(grids) != len(bases) or len(grids) < 2:
        raise ValueError(
            f"fold summary needs one grid and one baselines file per fold (>= 2), got {len(grids)} and {len(bases)}"
        )
    per_fold = [_methods(g, b) for g, b in zip(grids, bases, strict=True)]
    runs = sorted({g["best_run"] for g in grids})
    net = f"network ({runs[0]})" if len(runs) == 1 else "network (best grid point per fold)"
    for methods in per_fold:
        methods[0]["name"] = net
    names = [m["name"] for m in per_fold[0]]
    if any([m["name"] for m in methods] != names for methods in per_fold):
        raise ValueError(f"the folds' baselines differ: {[[m['name'] for m in ms] for ms in per_fold]}")
    return [
        _fold_comparison(title, primary, metrics, per_fold, test)
        for title, primary, metrics, test in _tables(scheme, per_fold[0])
    ]


def _fold_comparison(
    title: str, primary: str, metrics: tuple[str, ...], per_fold: list[list[dict]], test
) -> Comparison:
    """One table over K folds: ``per_fold`` [K] lists of methods (network first)."""
    k = len(per_fold)
    rows, spread, kinds = {}, {}, {}
    for i, method in enumerate(per_fold[0]):
        name = method["name"]
        kinds[name] = method["kind"]
        # A fold without links of a kind (no novel test link, say) leaves a NaN; the mean is
        # over the folds that have the metric, the same folds for every method.
        values = {
            m: [x for x in (fold[i]["test"].get(m) for fold in per_fold) if _finite(x)] for m in metrics
        }
        stats = {m: mean_sd(v) for m, v in values.items() if v}
        rows[name] = {m: stats[m][0] if m in stats else float("nan") for m in metrics}
        spread[name] = {m: sd for m, (_, sd) in stats.items()}
    tests = {}
    for i in range(1, len(per_fold[0])):
        found = _across_folds(primary, [(fold[0], fold[i]) for fold in per_fold], test)
        if found is not None:
            tests[pair_key(per_fold[0][0]["name"], per_fold[0][i]["name"])] = found
    return Comparison(title, "test", primary, True, rows, kinds, tests, spread, folds=k)


def _finite(x) -> bool:
    return x is not None and bool(np.isfinite(x))


def _across_folds(primary: str, pairs: list[tuple[dict, dict]], test) -> dict | None:
    """Paired t-test across folds of ``primary`` (network vs one baseline; ``pairs`` [K] of
    (network, baseline) methods of each fold), the Wilcoxon test across folds, each fold's
    own paired test and the pooled one in ``details``; ``None`` when a fold lacks the metric."""
    m = [p[0]["test"].get(primary) for p in pairs]
    b = [p[1]["test"].get(primary) for p in pairs]
    if not all(_finite(x) for x in m + b):
        return None
    t = paired_t(m, b)
    t.test = "paired t-test across folds"
    within = [test(net["ranks"], base["ranks"]) for net, base in pairs]
    t.details.update(
        {
            "metric": f"{primary} per fold",
            "per_fold_model": [float(x) for x in m],
            "per_fold_baseline": [float(x) for x in b],
            "wilcoxon_across_folds": wilcoxon_signed_rank(m, b).to_dict(),
            "within_folds": [
                None if w is None else {k: w[k] for k in ("test", "p_value", "n", "favours")} for w in within
            ],
            "pooled_folds": _pooled(pairs, primary),
        }
    )
    return t.to_dict()


def _pooled(pairs: list[tuple[dict, dict]], primary: str) -> dict | None:
    """The Wilcoxon signed-rank test of reciprocal ranks on all folds' test links (or queries)
    pooled: each link is tested in one fold only."""
    from genomelab.assoc.metrics import paired_link_reciprocal_ranks, paired_reciprocal_ranks

    ms, bs = [], []
    for net, base in pairs:
        if not (net["ranks"] and base["ranks"]):
            return None
        if primary == "mrr_mean":
            m, b = paired_reciprocal_ranks(net["ranks"], base["ranks"])
        else:
            d, novel = primary[:3], "_novel_" in primary
            if not net["ranks"].get(d, {}).get("link_row"):
                return None
            m, b = paired_link_reciprocal_ranks(net["ranks"], base["ranks"], d, novel)
        ms.append(m)
        bs.append(b)
    return _test(
        np.concatenate(ms), np.concatenate(bs), f"reciprocal rank per test item, {len(pairs)} folds pooled"
    )


def _within_fold_notes(comp: Comparison) -> list[str]:
    """One note per paired test of a cross-validated table: the per-fold values, each fold's
    own Wilcoxon test over its test links and the test on the folds' links pooled."""
    notes = []
    for pair, test in comp.tests.items():
        d = test["details"]
        within = ", ".join(
            "-" if w is None else f"{w['p_value']:.2g} ({w['favours']})" for w in d["within_folds"]
        )
        pooled = d.get("pooled_folds")
        notes.append(
            f"{comp.title}, {pair}: {comp.primary} per fold "
            + ", ".join(
                f"{m:.4f} vs {b:.4f}"
                for m, b in zip(d["per_fold_model"], d["per_fold_baseline"], strict=True)
            )
            + f"; Wilcoxon over each fold's test links p = {within}"
            + (
                f"; over all folds' links pooled p = {pooled['p_value']:.2g} ({pooled['favours']})"
                if pooled
                else ""
            )
            + f"; Wilcoxon across folds p = {d['wilcoxon_across_folds']['p_value']:.2g}."
        )
    return notes


def _as_folds(paths: str | os.PathLike | list) -> list:
    return list(paths) if isinstance(paths, list | tuple) else [paths]


def build_summary(
    grids: dict[str, str | os.PathLike | list[str | os.PathLike]],
    baselines: dict[str, str | os.PathLike | list[str | os.PathLike]],
    diagnostics: str | os.PathLike,
    plot: str | os.PathLike | None,
    results_dir: str | os.PathLike,
) -> ModuleSummary:
    """The module summary. ``grids``/``baselines``: per scheme, its grid selection and
    baselines file, or a list of K of each (fold order) when the scheme was cross-validated."""
    comps = []
    loaded = {}
    for scheme, grid_paths in grids.items():
        paths = _as_folds(grid_paths)
        base_paths = _as_folds(baselines[scheme])
        loaded[scheme] = [read_json_file(g, "grid selection") for g in paths]
        bases = [read_json_file(b, "baselines metrics file") for b in base_paths]
        if len(paths) == 1 and len(base_paths) == 1:
            comps.extend(scheme_comparisons(scheme, loaded[scheme][0], bases[0]))
        else:
            comps.extend(fold_scheme_comparisons(scheme, loaded[scheme], bases))
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
    if any(len(v) > 1 for v in loaded.values()):
        notes.append(
            "Cross-validated schemes (K folds of links; each pair tested in one fold, validation "
            "pairs drawn from the other folds): every figure is the mean +- SD over folds, and the "
            "verdict's test is the paired t-test across folds of the table's primary metric; its "
            "details hold the Wilcoxon test across folds (with K < 6 it cannot reach p < 0.05), "
            "each fold's own Wilcoxon test over its test links and the one on all folds' links pooled."
        )
    notes += [n for c in comps if c.folds > 1 and "link_mrr" in c.primary for n in _within_fold_notes(c)]
    for scheme, folds in loaded.items():
        for f, grid in enumerate(folds):
            runs = ", ".join(f"{r['run']} {r['value']:.4f}" for r in grid["runs"])
            where = f"{scheme} scheme" if len(folds) == 1 else f"{scheme} scheme, fold {f}"
            notes.append(f"Grid ({where}, {grid['metric']}): {runs}; best {grid['best_run']}.")
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
        # With folds: SD over folds as error bars.
        err = [comp.spread.get(n, {}).get(comp.primary, 0.0) for n in names] if comp.spread else None
        ax.bar(x, vals, 0.6, yerr=err, label=comp.primary, color=["#4477aa"] + ["#bbbbbb"] * (len(names) - 1))
        ax.set_xticks(x, [n.split(" (")[0] for n in names], rotation=20)
        ax.set_title(comp.title.replace(", ", "\n", 1), fontsize=8)
        ax.set_ylabel("test per-link MRR")
        ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100)
    plt.close(fig)


def write_summary(
    grids: dict[str, str | os.PathLike | list[str | os.PathLike]],
    baselines: dict[str, str | os.PathLike | list[str | os.PathLike]],
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
