"""Paired tests of a model against a baseline evaluated on the same examples or folds.

A verdict may say that a model *beats* its baseline only when a paired test supports it
(``p < ALPHA``); :class:`genomelab.report.summary.Comparison` reads the results of these
tests. Which test fits depends on what is paired:

- :func:`exact_mcnemar` / :func:`mcnemar_predictions`: the same test examples, each right or
  wrong under both methods (one split, or the out-of-fold predictions of K folds pooled, so
  that each example has one prediction from a model that did not train on it). Only the
  discordant examples count; exact binomial, so valid for a handful of them.
- :func:`paired_t` and :func:`wilcoxon_signed_rank`: one metric per fold for each method.
  With K folds there are only K pairs: the signed-rank test cannot reach p < 0.05 below six
  folds (its smallest two-sided p is 2 / 2^K) and the t-test leans on normality and on fold
  metrics being independent, which they are not (training parts overlap). They are reported
  beside the pooled McNemar test, which the fold-level verdicts use.

No test here corrects for the several model x baseline pairs a summary shows. Where one
claim rests on a family of tests (the tissue sparsity grid's "below a fair baseline at any
point"), :func:`holm` adjusts that family's p-values, and both are reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

# Significance level of the verdicts: "beats" needs a paired test with p below it.
ALPHA = 0.05
FAVOURS = ("model", "baseline", "neither")


@dataclass
class PairedTest:
    """The result of one paired test of a model against a baseline.

    test: what was tested ("exact McNemar", "paired t-test", ...); p_value: two-sided;
    n: paired observations (examples or folds); favours: which method the observed
    difference favours ("model", "baseline" or "neither"), whatever the p-value;
    statistic: the test statistic where there is one; details: counts and differences.
    """

    test: str
    p_value: float
    n: int
    favours: str
    statistic: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.favours not in FAVOURS:
            raise ValueError(f"favours must be one of {FAVOURS}, not {self.favours!r}")

    def significant(self, alpha: float = ALPHA) -> bool:
        return self.p_value < alpha

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PairedTest:
        keys = ("test", "p_value", "n", "favours", "statistic", "details")
        return cls(**{k: data[k] for k in keys if k in data})

    def describe(self) -> str:
        """Short text for a verdict: "exact McNemar p = 0.021, n = 40"."""
        return f"{self.test} p = {self.p_value:.2g}, n = {self.n}"


def _favours(difference: float) -> str:
    return "model" if difference > 0 else "baseline" if difference < 0 else "neither"


def exact_mcnemar(model_right: Sequence[bool], baseline_right: Sequence[bool]) -> PairedTest:
    """Exact McNemar test of two classifiers on the same examples.

    model_right, baseline_right: [n] whether each method got each example right. Only the
    discordant examples count: ``only_model`` right by the model alone, ``only_baseline``
    by the baseline alone; the two-sided p-value is that of a fair coin giving so uneven a
    split (scipy's exact binomial test). On a few dozen examples a difference of one or two
    is noise, which this makes visible.
    """
    from scipy.stats import binomtest

    m = np.asarray(model_right, dtype=bool)
    b = np.asarray(baseline_right, dtype=bool)
    if m.shape != b.shape or m.ndim != 1:
        raise ValueError(f"paired test needs two [n] vectors of the same length, not {m.shape} and {b.shape}")
    only_model = int((m & ~b).sum())
    only_baseline = int((b & ~m).sum())
    n_disc = only_model + only_baseline
    p = 1.0 if n_disc == 0 else float(binomtest(only_model, n_disc, 0.5).pvalue)
    return PairedTest(
        "exact McNemar",
        p,
        len(m),
        _favours(only_model - only_baseline),
        float(only_model),
        {"only_model": only_model, "only_baseline": only_baseline},
    )


def mcnemar_predictions(model: dict[str, list], baseline: dict[str, list]) -> PairedTest:
    """:func:`exact_mcnemar` of two sets of per-example predictions, matched by example name.

    ``model``/``baseline``: ``{"sample": [...], "true": [...], "pred": [...]}`` (the
    ``predictions`` record of a metrics JSON). Both must name the same examples, once each,
    with the same true labels.
    """
    if sorted(model["sample"]) != sorted(baseline["sample"]):
        raise ValueError("paired test needs predictions on the same test samples")
    if len(set(model["sample"])) != len(model["sample"]):
        raise ValueError("paired test needs unique sample names")
    truth = dict(zip(baseline["sample"], baseline["true"], strict=True))
    if any(truth[s] != t for s, t in zip(model["sample"], model["true"], strict=True)):
        raise ValueError("paired test: the model's and the baseline's true labels differ for some samples")
    right_b = {
        s: t == p for s, t, p in zip(baseline["sample"], baseline["true"], baseline["pred"], strict=True)
    }
    right_m = {s: t == p for s, t, p in zip(model["sample"], model["true"], model["pred"], strict=True)}
    names = list(right_m)
    return exact_mcnemar([right_m[s] for s in names], [right_b[s] for s in names])


def _differences(model: Sequence[float], baseline: Sequence[float], higher_is_better: bool) -> np.ndarray:
    m = np.asarray(model, dtype=float)
    b = np.asarray(baseline, dtype=float)
    if m.shape != b.shape or m.ndim != 1:
        raise ValueError(f"paired test needs two [K] vectors of the same length, not {m.shape} and {b.shape}")
    if len(m) < 2:
        raise ValueError(f"a paired test across folds needs at least 2 folds, not {len(m)}")
    if not (np.isfinite(m).all() and np.isfinite(b).all()):
        raise ValueError("paired test across folds: a metric is not finite")
    return (m - b) if higher_is_better else (b - m)


def paired_t(model: Sequence[float], baseline: Sequence[float], higher_is_better: bool = True) -> PairedTest:
    """Paired t-test of per-fold metrics ([K] each); K - 1 degrees of freedom.

    The difference is oriented so that a positive one favours the model. Identical values
    give p = 1; a constant non-zero difference gives t = inf and p = 0 (scipy's limit).
    """
    from scipy.stats import ttest_rel

    d = _differences(model, baseline, higher_is_better)
    if not d.any():
        return PairedTest("paired t-test", 1.0, len(d), "neither", 0.0, {"mean_difference": 0.0})
    res = ttest_rel(d, np.zeros_like(d))
    return PairedTest(
        "paired t-test",
        float(res.pvalue),
        len(d),
        _favours(float(d.mean())),
        float(res.statistic),
        {"mean_difference": float(d.mean()), "df": len(d) - 1},
    )


def wilcoxon_signed_rank(
    model: Sequence[float], baseline: Sequence[float], higher_is_better: bool = True
) -> PairedTest:
    """Wilcoxon signed-rank test of per-fold metrics ([K] each), exact for small K.

    Zero differences are dropped (Wilcoxon's convention); all zero gives p = 1. ``favours``
    is the side with the larger signed-rank sum.
    """
    from scipy.stats import wilcoxon

    d = _differences(model, baseline, higher_is_better)
    nonzero = d[d != 0]
    if len(nonzero) == 0:
        return PairedTest("Wilcoxon signed-rank", 1.0, len(d), "neither", 0.0, {"n_nonzero": 0})
    from scipy.stats import rankdata

    res = wilcoxon(nonzero)
    # The side is the larger signed-rank sum, the quantity the test compares: the median
    # difference is 0 whenever most pairs tie (per-link ranks, call counts), even when the
    # test finds a clear difference among the rest.
    ranks = rankdata(np.abs(nonzero))
    w_plus, w_minus = float(ranks[nonzero > 0].sum()), float(ranks[nonzero < 0].sum())
    return PairedTest(
        "Wilcoxon signed-rank",
        float(res.pvalue),
        len(d),
        _favours(w_plus - w_minus),
        float(res.statistic),
        {
            "n_nonzero": len(nonzero),
            "median_difference": float(np.median(d)),
            "rank_sum_model": w_plus,
            "rank_sum_baseline": w_minus,
        },
    )


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values [m] of a family of m tests, in the input order.

    The i-th smallest p (1-based) is multiplied by m - i + 1, made non-decreasing along the
    sorted order and capped at 1; rejecting where the adjusted p < alpha keeps the chance of
    any false rejection in the family at most alpha, without assuming independence (the
    grid's tests share their test samples).
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1 or np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ValueError(f"holm needs a flat list of p-values in [0, 1], not {p_values!r}")
    order = np.argsort(p, kind="stable")
    m = len(p)
    stepped = np.maximum.accumulate(p[order] * (m - np.arange(m)))
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted.tolist()


def mean_sd(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; 0 for a single value)."""
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
