"""The read-profile model (``reads``): each class a set of methylation profiles, a sample
scored by the likelihood of its reads (issue 18's one-read classifier, built in).

Sequencing gives a sample k_r methylated of d_r reads at the regions it covers. A class c is
described by profiles j (read probabilities p_j [R], weights w_j), and

    log P(reads | c) = logsumexp_j [ log w_j + sum_r f_r(d_r) (k_r log p_jr + (d_r - k_r) log(1 - p_jr)) ]

over the observed regions only, so any subset of regions at any depth is scored without
imputation. Two families of profiles (``families``), each fitted on the class's training levels:

- ``mixture``: K profiles per class (k-means start, then EM with the levels as expected
  reads), each shrunk towards the class mean by lambda (K = 1 is naive Bayes at one read).
- ``factor``: a factor model of the class's levels, level = mu + s W z + noise with d factors,
  its profiles at ``latent_draws`` scrambled Sobol points z ~ N(0, I); s shrinks the latent
  spread. Correlated regions move together, which naive Bayes ignores.
- ``reference`` (off by default): every training sample its own profile, shrunk towards its
  class mean by lambda.

``f_r(d) = (kappa_r + 1) / (kappa_r + d)``: a profile is a point, but a region's level varies
around it, so d reads of one region share that level. A beta-binomial of concentration kappa
has the binomial's variance times (kappa + d) / (kappa + 1); dividing the counts by that
factor gives a binomial of the same variance. At one read f = 1 and the factor model's noise
integrates out exactly (a read's probability is linear in the level). kappa_r is the pooled
within-class concentration of region r.

Each family's hyperparameters (K x lambda, d x s, lambda) are chosen on the validation
samples degraded to ``choose_depth`` reads per region (``validation_draws`` draws of each),
by accuracy; each family then gets a temperature fitted there, and the model's output is the
mean of the families' temperature-scaled log-probabilities. On TCGA IDH-wt at one read the
mixture and factor families score 0.912 each, naive Bayes 0.898 and logistic regression
0.867 (20 fold seeds, ``benchmarks/bench_tissue_one_read_ceiling.py``, docs/tissue.md).

The products are float32: a family's scores are taken relative to the likelihood under its
mean profile (a constant per sample, which the softmax ignores), so the sums stay small enough
for float32's digits (``ReadProfiles.family_scores``); the forward makes no float64 tensor.

Shapes: means, coverage [B, R] (NaN or coverage 0 = unobserved); output [B, C] scores (a mean
of log-probabilities, not normalised: a softmax of them gives the class probabilities).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.special import log_softmax
from scipy.stats import norm, qmc
from sklearn.cluster import KMeans
from torch import nn

from genomelab.config import ConfigSection, from_schema

logger = logging.getLogger(__name__)

FAMILIES = ("mixture", "factor", "reference")
EPS = 1e-3  # a read probability is kept in [EPS, 1 - EPS]: one read never scores -inf
KAPPA_RANGE = (0.5, 1e4)  # as the naive Bayes baseline clips its concentrations
# Profile rows scored at once: [B, chunk] scores and [chunk, R] probabilities in memory. At
# most PROFILE_CHUNK rows and PROFILE_BYTES per [chunk, R] float32 temporary, in multiples of
# 16 rows (the matrix products' blocks): glibc gives a block over 32 MiB its own mapping, which
# the kernel zero-fills page by page on every use. At 51,089 regions chunks of 256 rows (52 MB)
# scored 62 samples/s on 2 threads, of 112 rows ~130 (benchmarks/bench_tissue_reads_scale.py).
PROFILE_CHUNK = 256
PROFILE_BYTES = 24 * 2**20


def chunk_rows(n_regions: int) -> int:
    """Profile rows per chunk at ``n_regions`` regions (16 to PROFILE_CHUNK)."""
    return max(16, min(PROFILE_CHUNK, PROFILE_BYTES // (4 * max(n_regions, 1)) // 16 * 16))


@dataclass
class ReadsConfig(ConfigSection):
    """The read-profile model's families and the grids its hyperparameters are chosen from."""

    SECTION = "tissue.reads"

    families: list[str] = from_schema("tissue.reads.families")
    mixture_components: list[int] = from_schema("tissue.reads.mixture_components")
    mixture_shrink: list[float] = from_schema("tissue.reads.mixture_shrink")
    em_steps: int = from_schema("tissue.reads.em_steps")
    factor_dims: list[int] = from_schema("tissue.reads.factor_dims")
    factor_scales: list[float] = from_schema("tissue.reads.factor_scales")
    latent_draws: int = from_schema("tissue.reads.latent_draws")
    reference_shrink: list[float] = from_schema("tissue.reads.reference_shrink")
    choose_depth: int = from_schema("tissue.reads.choose_depth")
    choose_observed: list[float] = from_schema("tissue.reads.choose_observed")
    validation_draws: int = from_schema("tissue.reads.validation_draws")

    def __post_init__(self) -> None:
        bad = [f for f in self.families if f not in FAMILIES]
        if not self.families or bad or len(set(self.families)) != len(self.families):
            raise ValueError(
                f"tissue.reads.families must list distinct families of {FAMILIES}, not {self.families}"
            )
        for name in ("mixture_components", "factor_dims"):
            values = getattr(self, name)
            if not values or min(values) < 1:
                raise ValueError(f"tissue.reads.{name} must list integers >= 1, not {values}")
        for name in ("mixture_shrink", "reference_shrink"):
            values = getattr(self, name)
            if not values or not all(0 <= v <= 1 for v in values):
                raise ValueError(f"tissue.reads.{name} must list fractions in [0, 1], not {values}")
        if not self.factor_scales or min(self.factor_scales) <= 0:
            raise ValueError(f"tissue.reads.factor_scales must list numbers > 0, not {self.factor_scales}")
        if not self.choose_observed or not all(0 < f <= 1 for f in self.choose_observed):
            raise ValueError(
                f"tissue.reads.choose_observed must list fractions in (0, 1], not {self.choose_observed}"
            )
        for name in ("em_steps", "latent_draws", "choose_depth", "validation_draws"):
            low = 0 if name == "em_steps" else 1
            if getattr(self, name) < low:
                raise ValueError(f"tissue.reads.{name} must be >= {low}, not {getattr(self, name)}")


def _resizable(module: nn.Module, state_dict: dict, prefix: str) -> None:
    """Give every buffer the shape it has in ``state_dict``: how many profiles a family has
    depends on the data it was fitted on, so a model built to be loaded cannot know it."""
    for name, buf in list(module._buffers.items()):
        key = prefix + name
        if key in state_dict and buf is not None and buf.shape != state_dict[key].shape:
            module._buffers[name] = torch.empty_like(state_dict[key], device=buf.device)


class ReadProfiles(nn.Module):
    """The fitted model: profiles of every family as buffers, no trainable parameters.

    Buffers (P profiles of a family, R regions, C classes, S latent points, D factors):
    ``log_prior`` [C]; ``kappa`` [R]; ``temperature`` [F] (one per family, in
    ``families`` order); ``mixture_p`` [P, R], ``mixture_class`` [P], ``mixture_logw`` [P];
    ``factor_mean`` [C, R], ``factor_load`` [C, D, R] (loadings times the chosen scale),
    ``factor_z`` [S, D]; ``reference_p`` [P, R], ``reference_class`` [P], ``reference_logw`` [P].
    A family not in ``families`` keeps empty buffers.
    """

    def __init__(self, n_regions: int, n_classes: int, families: list[str]) -> None:
        super().__init__()
        self.families = list(families)
        self.n_classes = n_classes
        empty = torch.zeros(0)
        self.register_buffer("log_prior", torch.full((n_classes,), -float(np.log(n_classes))))
        self.register_buffer("kappa", torch.ones(n_regions))
        self.register_buffer("temperature", torch.ones(len(families)))
        for name in ("mixture", "reference"):
            self.register_buffer(f"{name}_p", torch.full((0, n_regions), 0.5))
            self.register_buffer(f"{name}_class", torch.zeros(0, dtype=torch.int64))
            self.register_buffer(f"{name}_logw", empty.clone())
        self.register_buffer("factor_mean", torch.full((0, n_regions), 0.5))
        self.register_buffer("factor_load", torch.zeros(0, 0, n_regions))
        self.register_buffer("factor_z", torch.zeros(0, 0))
        self._register_load_state_dict_pre_hook(self._resize_hook)

    def _resize_hook(self, state_dict, prefix, *args) -> None:
        _resizable(self, state_dict, prefix)

    def _profiles(self, family: str) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Chunks (p [P', R], class [P'], log weight within class [P']) of one family, P' <=
        :func:`chunk_rows` (a chunk never mixes classes of the factor family)."""
        rows = chunk_rows(self.kappa.shape[0])
        if family == "factor":
            n_z = len(self.factor_z)
            for c in range(len(self.factor_mean)):
                for start in range(0, n_z, rows):
                    z = self.factor_z[start : start + rows]
                    p = torch.addmm(self.factor_mean[c], z, self.factor_load[c]).clamp_(EPS, 1 - EPS)
                    cls = torch.full((len(z),), c, dtype=torch.int64, device=p.device)
                    yield p, cls, torch.full((len(z),), -float(np.log(n_z)), device=p.device)
            return
        p_all = getattr(self, f"{family}_p")
        cls_all, lw_all = getattr(self, f"{family}_class"), getattr(self, f"{family}_logw")
        for start in range(0, len(p_all), rows):
            sl = slice(start, start + rows)
            yield p_all[sl], cls_all[sl], lw_all[sl]

    def centre(self, family: str) -> torch.Tensor:
        """The mean of ``family``'s profiles, q [R] (each factor class at its mean level): the
        reference its scores are taken relative to."""
        p = self.factor_mean if family == "factor" else getattr(self, f"{family}_p")
        return p.float().mean(0).clamp(EPS, 1 - EPS)

    def family_scores(
        self, family: str, k: torch.Tensor, n: torch.Tensor, absolute: bool = False
    ) -> torch.Tensor:
        """Tempered methylated / unmethylated counts k, n [B, R] -> [B, C] log prior + class
        log-likelihood under ``family``'s profiles, relative to the read likelihood under
        :meth:`centre` q (float32); ``absolute``: without that shift (float64).

        The shift, k log q + n log(1 - q) summed over regions, is the same for every class: a
        constant per sample, which the softmax, the argmax and a temperature ignore. Leaving
        it out is what lets the products be float32: the absolute sums over 51,089 regions
        are ~-35,000 nats, where float32's spacing (~0.004) and the rounding of a long sum
        would blur the class differences; the log-ratios log(p / q) sum to a few hundred."""
        k, n = k.float(), n.float()
        q = self.centre(family).to(k.device)
        log_q, log_1q = torch.log(q), torch.log1p(-q)
        out = torch.full((len(k), self.n_classes), -float("inf"), device=k.device)
        for p, cls, lw in self._profiles(family):
            # In place where possible: at 51,089 regions a chunk's [P', R] temporaries, not the
            # products, were most of the time (each a fresh allocation the kernel zero-fills).
            p = p.float()
            log_p = torch.log(p).sub_(log_q)
            log_1p = torch.neg(p).log1p_().sub_(log_1q)
            ll = torch.addmm(lw.float(), k, log_p.T).addmm_(n, log_1p.T)  # [B, P']
            for c in torch.unique(cls).tolist():
                out[:, c] = torch.logaddexp(out[:, c], torch.logsumexp(ll[:, cls == c], dim=1))
        out = out + self.log_prior.float()
        if not absolute:
            return out
        shift = torch.cat(
            [
                k[i : i + PROFILE_CHUNK].double() @ log_q.double()
                + n[i : i + PROFILE_CHUNK].double() @ log_1q.double()
                for i in range(0, len(k), PROFILE_CHUNK)
            ]
        )
        return out.double() + shift[:, None]

    def counts(self, means: torch.Tensor, coverage: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """means, coverage [B, R] -> tempered methylated and unmethylated counts float32 [B, R]
        (0 where unobserved)."""
        cov = coverage.float()
        observed = torch.isfinite(means) & (cov > 0)
        d = torch.where(observed, cov, torch.zeros_like(cov))
        k = torch.where(
            observed, torch.round(torch.nan_to_num(means.float()).clamp(0, 1) * d), torch.zeros_like(d)
        )
        kappa = self.kappa.float()
        f = torch.where(observed, (kappa + 1) / (kappa + d), torch.zeros_like(d))
        return f * k, f * (d - k)

    @torch.no_grad()
    def forward(self, means: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        """means, coverage [B, R] -> [B, C] mean over families of log_softmax(scores / T)
        (float32 throughout: no float64 on a GPU)."""
        k, n = self.counts(means, coverage)
        return torch.stack(
            [
                torch.log_softmax(self.family_scores(f, k, n) / self.temperature[i].float(), dim=1)
                for i, f in enumerate(self.families)
            ]
        ).mean(0)


def _filled(levels: np.ndarray, y: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Training levels [n, R] with NaN (uncovered) -> (levels with each NaN at its class's
    mean of the region, class means [C, R]); a region no sample of a class covers takes the
    mean over classes, one nobody covers 0.5."""
    # The mean over every sample that covers a region (no nanmean: it warns on a region nobody covers).
    seen = np.isfinite(levels)
    n_seen = seen.sum(0)
    pooled = np.where(n_seen > 0, np.where(seen, levels, 0).sum(0) / np.maximum(n_seen, 1), 0.5)
    means = np.empty((n_classes, levels.shape[1]))
    for c in range(n_classes):
        rows = levels[y == c]
        covered = np.isfinite(rows).sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            m = np.nansum(rows, 0) / covered
        means[c] = np.where(covered > 0, m, pooled)
    filled = np.where(np.isfinite(levels), levels, means[y])
    return np.clip(filled, 0, 1), means


def pooled_concentration(
    levels: np.ndarray, y: np.ndarray, class_means: np.ndarray, observed: np.ndarray | None = None
) -> np.ndarray:
    """Per region the concentration kappa = m (1 - m) / v - 1 of the level around its class
    mean (v the pooled within-class variance, m the mean), clipped to KAPPA_RANGE [R].

    ``observed`` [n, R] (default: all): only the covered levels count. Levels filled in at
    their class mean have no residual, and counting them in the divisor made a sparsely
    covered region's variance small and its kappa large (50 instead of 5 at 10% coverage), so
    deep reads there weighed several times too much."""
    if observed is None:
        observed = np.ones(levels.shape, bool)
    resid = np.where(observed, levels - class_means[y], 0.0)
    n_obs = observed.sum(0)
    classes_seen = np.stack([observed[y == c].any(0) for c in np.unique(y)]).sum(0)
    dof = np.maximum(n_obs - classes_seen, 1)
    v = (resid**2).sum(0) / dof
    m = np.where(observed, levels, 0.0).sum(0) / np.maximum(n_obs, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = m * (1 - m) / v - 1
    return np.clip(np.nan_to_num(kappa, nan=KAPPA_RANGE[1], posinf=KAPPA_RANGE[1]), *KAPPA_RANGE)


def region_concentration(train_means: np.ndarray, y_train: np.ndarray, n_classes: int) -> np.ndarray:
    """Training region means [n, R] (NaN = uncovered), labels [n] -> kappa [R] float32: the
    :func:`pooled_concentration` of the covered levels around their class means (what the
    read-profile model and the masked model's count channels weigh reads by)."""
    means = np.asarray(train_means, np.float64)
    levels, class_means = _filled(means, y_train, n_classes)
    return pooled_concentration(levels, y_train, class_means, np.isfinite(means)).astype(np.float32)


def _bernoulli_ll(levels: np.ndarray, p: np.ndarray) -> np.ndarray:
    """[n, K] expected log-likelihood of levels [n, R] (as expected reads) under p [K, R]."""
    return levels @ np.log(p).T + (1 - levels) @ np.log1p(-p).T


def fit_mixture(levels: np.ndarray, k: int, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """K Bernoulli profiles of one class's levels [n, R]: (unshrunk p [K, R], log weights
    [K]). k-means start, then EM with the levels as expected reads."""
    from scipy.special import logsumexp

    k = min(k, len(levels))
    if k <= 1:
        return levels.mean(0, keepdims=True), np.zeros(1)
    labels = KMeans(k, n_init=4, random_state=seed).fit(levels).labels_
    resp = np.eye(k)[labels]
    for _ in range(steps):
        w = resp.sum(0) + 1e-9
        p = np.clip(resp.T @ levels / w[:, None], EPS, 1 - EPS)
        ll = _bernoulli_ll(levels, p) + np.log(w / w.sum())
        resp = np.exp(ll - logsumexp(ll, 1, keepdims=True))
    w = resp.sum(0) + 1e-9
    return resp.T @ levels / w[:, None], np.log(w / w.sum())


def fit_factor(levels: np.ndarray, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A d-factor model of one class's levels [n, R]: (mean [R], loadings [d', R]); d' =
    min(d, n - 1, R) (0 loadings for a class of one sample). ``seed`` is unused (the fit is
    deterministic); it stays for the callers' symmetry with :func:`fit_mixture`."""
    # At most n - 1 factors (n samples) and at most R (regions): more have nothing to fit.
    d = min(d, len(levels) - 1, levels.shape[1])
    if d < 1:
        return levels.mean(0), np.zeros((0, levels.shape[1]))
    return factor_analysis(levels, d)


def factor_analysis(
    x: np.ndarray, d: int, tol: float = 1e-2, max_iter: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-likelihood factor analysis of x [n, R] with d factors: (mean [R], loadings
    [d, R]), each factor's sign fixed so that its largest loading is positive.

    The EM of scikit-learn's ``FactorAnalysis`` (Barber 2012, 21.2.33: the same start,
    updates and stopping rule), but each step's SVD of the noise-whitened data [n, R] is
    taken from the eigenvectors of its Gram matrix on the smaller side (n x n for a class of
    tens of samples): O(min(n, R)^2 max(n, R)), exact (no random state). At 51,089 regions
    and ~90 samples scikit-learn's randomized SVD took ~1 min per fit (LAPACK's SVD ~5 s per
    step), 36 fits in all and most of the model's cost; this takes 1-3 s per fit."""
    n, r = x.shape
    mean = x.mean(0)
    xc = x - mean
    var = xc.var(0)
    psi = np.ones(r)
    llconst = r * np.log(2.0 * np.pi) + d
    old_ll = -np.inf
    small = 1e-12
    w = np.zeros((d, r))
    for _ in range(max_iter):
        sqrt_psi = np.sqrt(psi) + small
        a = xc / (sqrt_psi * np.sqrt(n))
        if n <= r:
            gram = a @ a.T
            lam, u = np.linalg.eigh(gram)  # ascending
            s2 = np.maximum(lam[::-1][:d], small)  # squared singular values, largest first
            vt = (u[:, ::-1][:, :d].T @ a) / np.sqrt(s2)[:, None]
        else:
            gram = a.T @ a
            lam, v = np.linalg.eigh(gram)
            s2 = np.maximum(lam[::-1][:d], small)
            vt = v[:, ::-1][:, :d].T
        unexplained = max(float(np.trace(gram) - s2.sum()), 0.0)
        w = np.sqrt(np.maximum(s2 - 1.0, 0.0))[:, None] * vt * sqrt_psi
        ll = -n / 2.0 * (llconst + np.log(s2).sum() + unexplained + np.log(psi).sum())
        if ll - old_ll < tol:
            break
        old_ll = ll
        psi = np.maximum(var - (w**2).sum(0), small)
    sign = np.sign(w[np.arange(d), np.abs(w).argmax(1)])
    return mean, w * np.where(sign == 0, 1.0, sign)[:, None]


def sobol_normal(d: int, n: int, seed: int) -> np.ndarray:
    """n scrambled Sobol points of N(0, I_d) [n, d] (n rounded to a power of 2 by Sobol's
    balance, then cut to n)."""
    if d == 0:
        return np.zeros((1, 0))
    m = int(np.ceil(np.log2(max(n, 1))))
    u = qmc.Sobol(d, scramble=True, seed=seed).random_base2(m)[:n]
    return norm.ppf(np.clip(u, 1e-12, 1 - 1e-12))


def temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """T in [0.01, 1000] (log grid of 121) minimising the cross-entropy of log_softmax(scores /
    T) against the labels smoothed by the rule of succession (``calibration.succession_nll``:
    validation draws the family gets all right do not drive T to the grid's end)."""
    from genomelab.tissue.calibration import succession_nll

    grid = np.geomspace(0.01, 1000, 121)
    nll = [succession_nll(log_softmax(scores / t, axis=1), y) for t in grid]
    return float(grid[int(np.argmin(nll))])


def _accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float((scores.argmax(1) == y).mean())


def degrade_draws(
    means: np.ndarray, depth: int, observed: list[float], draws: int, seed: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``draws`` copies of means [m, R] at ``depth`` reads per covered region for each
    fraction of regions in ``observed``, one copy (means, coverage [m, R]) at a time, from
    their own random stream (the order: every draw of the first fraction, then the next)."""
    from genomelab.tissue.sparse import degrade

    rng = np.random.default_rng([seed, 77])
    for f in observed:
        for _ in range(draws):
            yield degrade(means, depth, f, rng)


def validation_counts(
    model: ReadProfiles, val_means: np.ndarray, cfg: ReadsConfig, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The tempered counts k, n float32 [len(choose_observed) * validation_draws * m, R] of
    :func:`degrade_draws` of the validation means [m, R], filled one draw at a time: the
    draws' means and coverage never all exist at once (at 176 samples x 51,089 regions x 5
    draws they and their float64 counts took ~1.5 GB; the counts alone take 360 MB)."""
    m, r = val_means.shape
    n_rows = len(cfg.choose_observed) * cfg.validation_draws * m
    k, n = torch.empty(n_rows, r), torch.empty(n_rows, r)
    draws = degrade_draws(
        np.asarray(val_means, np.float32), cfg.choose_depth, cfg.choose_observed, cfg.validation_draws, seed
    )
    for i, (dm, dc) in enumerate(draws):
        k[i * m : (i + 1) * m], n[i * m : (i + 1) * m] = model.counts(
            torch.as_tensor(dm), torch.as_tensor(dc)
        )
    return k, n


def fit_read_profiles(
    train_means: np.ndarray,
    y_train: np.ndarray,
    val_means: np.ndarray,
    y_val: np.ndarray,
    n_classes: int,
    cfg: ReadsConfig,
    seed: int = 0,
) -> tuple[ReadProfiles, dict[str, Any]]:
    """Fit the read-profile model on the training levels [n, R] (NaN = uncovered) and
    choose each family's hyperparameters and temperature on ``cfg.validation_draws`` draws
    of the validation samples [m, R] at ``cfg.choose_depth`` reads per region.

    Returns the model (eval mode) and the choices (per family: the chosen setting, the
    validation accuracy of every setting tried, the temperature)."""
    if len(val_means) == 0:
        raise ValueError(
            "the read-profile model chooses its settings on validation samples; the split has none"
        )
    if len(train_means) == 0:
        raise ValueError("the read-profile model needs training samples; the split has none")
    counts = np.bincount(y_train, minlength=n_classes)
    if (counts == 0).any():
        raise ValueError(
            "the read-profile model needs training samples of every class; class index(es) "
            f"{np.flatnonzero(counts == 0).tolist()} have none"
        )
    n_regions = train_means.shape[1]
    levels, class_means = _filled(np.asarray(train_means, np.float64), y_train, n_classes)
    log_prior = np.log((counts + 1) / (counts.sum() + n_classes))  # Laplace, as naive Bayes
    model = ReadProfiles(n_regions, n_classes, cfg.families)
    model.log_prior.copy_(torch.as_tensor(log_prior))
    # The filled levels are at hand: region_concentration would fill them again (360 MB of
    # float64 at 880 x 51,089).
    kappa = pooled_concentration(levels, y_train, class_means, np.isfinite(train_means))
    model.kappa.copy_(torch.as_tensor(kappa))
    yv = np.tile(y_val, cfg.validation_draws * len(cfg.choose_observed))
    k, n = validation_counts(model, val_means, cfg, seed)

    def val_scores(family: str) -> np.ndarray:
        # Relative scores (a constant per sample off the log-likelihood): the accuracy and
        # the temperature do not see the difference.
        return model.family_scores(family, k, n).double().numpy()

    choices: dict[str, Any] = {}
    scores: dict[str, np.ndarray] = {}
    for family in cfg.families:
        tried = {}
        best = None
        for setting, install in _settings(family, levels, y_train, class_means, n_classes, cfg, seed):
            install(model)
            s = val_scores(family)
            acc = _accuracy(s, yv)
            tried[str(setting)] = round(acc, 4)
            if best is None or acc > best[0]:
                best = (acc, setting, install, s)
        acc, setting, install, s = best
        install(model)
        scores[family] = s
        t = temperature(s, yv)
        choices[family] = {"chosen": setting, "val_accuracy": tried, "temperature": round(t, 4)}
        logger.info(
            "read profiles, %s: chose %s (validation accuracy %.3f at %d read(s) per region), T = %.3g",
            family,
            setting,
            acc,
            cfg.choose_depth,
            t,
        )
    temps = [choices[f]["temperature"] for f in cfg.families]
    model.temperature.copy_(torch.as_tensor(temps, dtype=torch.float32))
    stacked = np.mean(
        [log_softmax(scores[f] / t, axis=1) for f, t in zip(cfg.families, temps, strict=True)], 0
    )
    choices["val_accuracy"] = round(_accuracy(stacked, yv), 4)
    choices["choose_depth"] = cfg.choose_depth
    return model.eval(), choices


def _settings(
    family: str,
    levels: np.ndarray,
    y: np.ndarray,
    class_means: np.ndarray,
    n_classes: int,
    cfg: ReadsConfig,
    seed: int,
) -> Iterator[tuple[Any, Any]]:
    """Yield (setting, install(model)) for every setting of ``family``'s grid, simplest first
    (ties on validation accuracy keep the simpler one). Fits are made once per setting that
    needs its own fit (K; d), the shrinkages and scales reuse them."""
    by_class = [levels[y == c] for c in range(n_classes)]
    if family == "mixture":
        for kk in sorted(set(cfg.mixture_components)):
            fits = [fit_mixture(b, kk, cfg.em_steps, seed) for b in by_class]
            for lam in sorted(cfg.mixture_shrink, reverse=True):
                p = np.concatenate([(1 - lam) * pk + lam * class_means[c] for c, (pk, _) in enumerate(fits)])
                cls = np.concatenate([np.full(len(pk), c) for c, (pk, _) in enumerate(fits)])
                lw = np.concatenate([w for _, w in fits])
                yield [kk, lam], _installer("mixture", p, cls, lw)
    elif family == "reference":
        cls = np.asarray(y, np.int64)
        lw = -np.log(np.bincount(cls, minlength=n_classes)[cls])
        for lam in sorted(cfg.reference_shrink, reverse=True):
            yield lam, _installer("reference", (1 - lam) * levels + lam * class_means[cls], cls, lw)
    else:
        for d in sorted(set(cfg.factor_dims)):
            fits = [fit_factor(b, d, seed) for b in by_class]
            d_eff = max(w.shape[0] for _, w in fits)
            z = sobol_normal(d_eff, cfg.latent_draws, seed)
            for s in sorted(cfg.factor_scales):
                mean = np.stack([m for m, _ in fits])
                load = np.zeros((n_classes, d_eff, levels.shape[1]))
                for c, (_, w) in enumerate(fits):
                    load[c, : w.shape[0]] = s * w
                yield [d, s], _factor_installer(mean, load, z)


def _installer(family: str, p: np.ndarray, cls: np.ndarray, lw: np.ndarray):
    def install(model: ReadProfiles) -> None:
        model._buffers[f"{family}_p"] = torch.as_tensor(np.clip(p, EPS, 1 - EPS), dtype=torch.float32)
        model._buffers[f"{family}_class"] = torch.as_tensor(cls, dtype=torch.int64)
        model._buffers[f"{family}_logw"] = torch.as_tensor(lw, dtype=torch.float32)

    return install


def _factor_installer(mean: np.ndarray, load: np.ndarray, z: np.ndarray):
    def install(model: ReadProfiles) -> None:
        model._buffers["factor_mean"] = torch.as_tensor(mean, dtype=torch.float32)
        model._buffers["factor_load"] = torch.as_tensor(load, dtype=torch.float32)
        model._buffers["factor_z"] = torch.as_tensor(z, dtype=torch.float32)

    return install
