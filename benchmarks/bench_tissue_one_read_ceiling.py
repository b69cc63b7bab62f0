"""How far above logistic regression can any classifier get at 1 read per region? (issue 18)

Issue 18 asks the default model to beat logistic regression (trained on complete data, as
usual) by 5 accuracy points at 1 read per region with every region observed. This script
measures what the reads themselves allow on a real cohort, with classifiers built for exactly
that input. Every method is fitted on the fold's training samples only; hyperparameters,
early stopping, temperatures and the stack's members are chosen on 1-read draws of the
fold's validation samples (the same draws for every method); the test samples are only
scored.

- ``logistic regression (C on validation)``: the workflow's baseline (complete training
  betas, standardised; C from the schema's ``lr_c_grid`` by validation accuracy, then NLL,
  with ``choose_c``, as ``run_baselines`` does; the reads enter as 0/1 means). The bar is
  this method + 5 points.
- ``logistic regression (C = 0.1)``: round 14's version of it (C fixed at 0.1).
- ``naive Bayes (read counts)``: the workflow's beta-binomial naive Bayes.
- ``linear, trained on 1-read draws``: a logistic regression fitted on ``--augment`` 1-read
  draws of every training sample (0/1 inputs, as the test samples come), C chosen on the
  validation draws: the best linear rule for this very input, correlations included.
- ``reference-sample likelihood``: each class's likelihood of the reads is the mean over its
  training samples of the Bernoulli likelihood under that sample's betas, shrunk towards the
  class mean by lambda (0, 0.25, 0.5, 0.75).
- ``Bernoulli mixture per class`` (round 16): K profiles per class (k-means on the class's
  betas, then 30 EM steps with the betas as expected reads), each shrunk towards the class
  mean by lambda (0, 0.25, 0.5); the class score is log sum_k w_k P(reads | profile k).
  K in (1, 2, 4, 8, 16) x lambda on validation; K = 1 is naive Bayes at 1 read.
- ``factor model per class`` (round 16): factor analysis of the class's betas with d in
  (1, 2, 4) factors, beta = mu + s W z + noise; the Bernoulli likelihood of the reads is
  integrated over z ~ N(0, I) with ``--latent-draws`` scrambled Sobol points (the noise
  integrates out exactly, since a read's probability is linear in beta); s in (0.25, 0.5,
  0.75, 1) shrinks the latent spread. d x s on validation.
- ``MLP on 1-read draws`` (round 16): one hidden layer (64 or 256 units, ReLU, dropout 0.5,
  L2 0.03 on the weights, Adam lr 1e-3, batch 64), fresh 1-read draws of every training
  sample (8 copies) every epoch, early stopping on the validation draws' NLL (patience 15);
  the hidden size on validation accuracy. ``--mlp-seeds`` N > 1 trains N networks (seeds
  seed + 1000 j) and averages their log-probabilities.
- ``MLP + naive Bayes input`` (round 16): the same with the naive Bayes log-likelihood of the
  draw (class-centred, scaled) as 3 extra inputs and added to the logits through a learned
  3 x 3 map that starts as the identity; training draws are scored by a naive Bayes fitted
  without their sample (5 inner folds), validation and test draws by the fit on the whole
  training split.
- ``stack (chosen on validation)`` (round 16): the mean of the temperature-scaled
  log-probabilities of 2 or 3 of the methods above (not the logistic regressions),
  temperatures and the combination chosen on the validation draws per fold;
  ``stack of all seven``: the same mean over all seven, no choice.

- ``read-profile model (the workflow's reads)`` (round 20): the workflow's default model,
  ``genomelab.tissue.read_profiles.fit_read_profiles`` with the schema defaults (the mixture
  and factor families above, through tempered binomial likelihoods), its settings chosen on
  its own 1-read validation draws. Round 20, seeds 1-19 and 42 (``r20_seeds/``): 0.915 (SD
  0.003 over seeds) against LR's 0.867 and the stack of five's 0.918.

K folds by sample (the workflow's ``group_kfold`` + ``fold_split``), each test sample drawn
``--draws`` times (seeds 1000 + d, as ``bench_tissue_read_draws.py``); the output gives each
method's pooled accuracy per draw, mean and SD over draws, its gap to the bar, and per draw
the exact McNemar test against logistic regression (C on validation) on the pooled samples.

    PYTHONPATH=workflow/scripts OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_tissue_one_read_ceiling.py \\
        ../shared/data/methylation_tcga_glioma/glioma.idhwt.trainingData.csv.gz \\
        --seed 42 --draws 5 --out benchmarks/results/tissue_one_read_ceiling/r16_s42.json

The learning curve (round 17): ``--train-fraction F`` fits every method on a fraction F of
each fold's training samples (per class, without replacement; validation and test samples
unchanged), and ``--no-networks`` leaves out the two MLPs (the stack of all becomes the stack
of the other five), so that one can ask whether the one-read figure is held down by the size
of the cohort: if accuracy still climbs steeply at F = 1, more labelled samples would lift it.
Round 17 (``--no-networks --train-fraction`` 0.25 / 0.35 / 0.5 / 0.75 / 1, seeds 42 / 1 / 7;
``r17_lc_f{F}_s{seed}.json``, 20-36 s per run): the stack of five rises from 0.908 (64
training samples per fold, mean over seeds) to 0.918 (257), naive Bayes from 0.899 to 0.900.

About 2 CPU-minutes per seed on one thread (843 probes, 430 samples; 3.5-6 minutes wall on a
shared 2-core machine at load 4-6), 11 minutes wall with ``--mlp-seeds 3``. Not a test.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.special import log_softmax, logsumexp
from scipy.stats import norm, qmc
from sklearn.cluster import KMeans
from sklearn.decomposition import FactorAnalysis
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_tissue_sparse import load  # noqa: E402
from genomelab.config import schema_default  # noqa: E402
from genomelab.report.stats import exact_mcnemar  # noqa: E402
from genomelab.splits import fold_split, group_kfold  # noqa: E402
from genomelab.tissue.baselines import ReadNaiveBayes, choose_c, fit_logreg, full_proba  # noqa: E402
from genomelab.tissue.metrics import classification_metrics  # noqa: E402
from genomelab.tissue.read_profiles import ReadsConfig, fit_read_profiles  # noqa: E402
from genomelab.tissue.sparse import degrade  # noqa: E402
from genomelab.tissue.task import impute_standardise_params, standardise  # noqa: E402

LAMBDAS = (0.0, 0.25, 0.5, 0.75)
C_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 0.1)
MIX_K = (1, 2, 4, 8, 16)
MIX_LAMBDAS = (0.0, 0.25, 0.5)
FACTOR_D = (1, 2, 4)
FACTOR_SCALES = (0.25, 0.5, 0.75, 1.0)
MLP_HIDDEN = (64, 256)
EPS = 1e-3  # a read probability is kept in [EPS, 1 - EPS]

LR = "logistic regression (C on validation)"
LR01 = "logistic regression (C = 0.1)"
NB = "naive Bayes (read counts)"
LIN = "linear, trained on 1-read draws"
REF = "reference-sample likelihood"
MIX = "Bernoulli mixture per class"
FAC = "factor model per class"
MLP = "MLP on 1-read draws"
MLP_NB = "MLP + naive Bayes input"
STACK = "stack (chosen on validation)"
STACK_ALL = "stack of all seven"
STACK_FIVE = "stack of the five without networks"
READS = "read-profile model (the workflow's reads)"
STACKABLE = (NB, LIN, REF, MIX, FAC, MLP, MLP_NB)


def stackable_methods(args: argparse.Namespace) -> tuple[str, ...]:
    """The read classifiers the stacks draw on: all seven, or without the two networks."""
    return STACKABLE if args.networks else tuple(m for m in STACKABLE if m not in (MLP, MLP_NB))


def subsample(tr: np.ndarray, y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """``fraction`` of the training samples ``tr`` of each class (at least 2 per class, or all it has),
    drawn without replacement: the learning curve's smaller training sets."""
    keep = [
        rng.choice(idx, min(len(idx), max(2, round(fraction * len(idx)))), replace=False)
        for idx in (tr[y[tr] == c] for c in np.unique(y[tr]))
    ]
    return np.sort(np.concatenate(keep))


def one_read(betas: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One read per region of each sample: 0/1 float32 [n, R]."""
    return rng.binomial(1, np.clip(betas, 0, 1)).astype(np.float32)


def bernoulli_ll(reads: np.ndarray, p: np.ndarray) -> np.ndarray:
    """[m, K] log-likelihood of 0/1 ``reads`` [m, R] under each read-probability row of ``p`` [K, R]."""
    return reads @ np.log(p).T + (1 - reads) @ np.log1p(-p).T


def reference_scores(
    reads: np.ndarray, ref: np.ndarray, y_ref: np.ndarray, n_classes: int, lam: float
) -> np.ndarray:
    """[m, C] log mean over each class's reference samples of the Bernoulli likelihood of
    ``reads`` [m, R] (0/1), each sample's betas shrunk by ``lam`` towards its class mean."""
    means = np.stack([ref[y_ref == c].mean(0) for c in range(n_classes)])
    p = np.clip((1 - lam) * ref + lam * means[y_ref], EPS, 1 - EPS)
    ll = bernoulli_ll(reads, p)  # [m, n_ref]
    return np.stack(
        [logsumexp(ll[:, y_ref == c], axis=1) - np.log((y_ref == c).sum()) for c in range(n_classes)], 1
    )


def fit_mixture(betas: np.ndarray, k: int, lam: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """K Bernoulli profiles of one class's ``betas`` [n, R]: (p [K, R], log weights [K]).
    k-means start, then EM with the betas as expected reads; profiles shrunk by ``lam``
    towards the class mean."""
    k = min(k, len(betas))
    resp = (
        np.eye(k)[KMeans(k, n_init=4, random_state=seed).fit(betas).labels_]
        if k > 1
        else np.ones((len(betas), 1))
    )
    for _ in range(30 if k > 1 else 0):
        w = resp.sum(0) + 1e-9
        p = np.clip(resp.T @ betas / w[:, None], EPS, 1 - EPS)
        ll = bernoulli_ll(betas, p) + np.log(w / w.sum())
        resp = np.exp(ll - logsumexp(ll, 1, keepdims=True))
    w = resp.sum(0) + 1e-9
    p = (1 - lam) * resp.T @ betas / w[:, None] + lam * betas.mean(0)
    return np.clip(p, EPS, 1 - EPS), np.log(w / w.sum())


def fit_factor(betas: np.ndarray, d: int, scale: float, n_draws: int, seed: int) -> np.ndarray:
    """Read probabilities [S, R] at ``n_draws`` quasi-random latent points of a d-factor
    model of one class's ``betas`` [n, R] (latent spread times ``scale``)."""
    fa = FactorAnalysis(d, random_state=seed).fit(betas)
    z = norm.ppf(qmc.Sobol(d, scramble=True, seed=seed).random(n_draws))
    return np.clip(fa.mean_ + scale * z @ fa.components_, EPS, 1 - EPS)


def class_scores(
    reads: np.ndarray, fits: list[tuple[np.ndarray, np.ndarray]], log_prior: np.ndarray
) -> np.ndarray:
    """[m, C] log prior + log sum_k w_k P(reads | p_k) per class, ``fits`` = [(p [K, R], log w [K])]."""
    return np.stack([logsumexp(bernoulli_ll(reads, p) + lw, 1) for p, lw in fits], 1) + log_prior


class ReadMLP(nn.Module):
    """One hidden layer over 0/1 reads [B, R]; with ``n_extra`` > 0 the extra inputs [B, E]
    (the naive Bayes log-likelihood) also enter the hidden layer and reach the logits through
    ``skip`` (initialised to ``skip_init`` times the identity, so training starts from them)."""

    def __init__(
        self,
        n_regions: int,
        n_classes: int,
        hidden: int,
        dropout: float,
        n_extra: int = 0,
        skip_init: float = 1.0,
    ) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_regions + n_extra, hidden)
        self.out = nn.Linear(hidden, n_classes)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Linear(n_extra, n_classes, bias=False) if n_extra else None
        if self.skip is not None:
            nn.init.zeros_(self.skip.weight)
            with torch.no_grad():
                self.skip.weight += skip_init * torch.eye(n_classes, n_extra)

    def forward(self, reads: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        if self.skip is None or extra is None:
            return self.out(self.drop(torch.relu(self.hidden(reads))))
        h = self.drop(torch.relu(self.hidden(torch.cat([reads, extra], 1))))
        return self.out(h) + self.skip(extra)

    def penalty(self) -> torch.Tensor:
        return (self.hidden.weight**2).sum() + (self.out.weight**2).sum()


class NaiveBayesFeature:
    """The naive Bayes log-likelihood of 1-read inputs as a network input: per fit f, the
    Bernoulli log-odds and offset of ``ReadNaiveBayes``'s class means (at 1 read its
    beta-binomial term is exactly log m or log(1 - m)); ``__call__(reads [B, R], fit [B])``
    gives the class-centred log-likelihood [B, C] divided by ``scale``."""

    def __init__(self, fits: list[ReadNaiveBayes], scale: float = 1.0) -> None:
        m = np.stack([f.a_ / (f.a_ + f.b_) for f in fits])  # [F, C, R]
        self.log_odds = torch.tensor(np.log(m) - np.log1p(-m), dtype=torch.float32)
        self.offset = torch.tensor(
            np.log1p(-m).sum(2) + np.stack([f.log_prior_ for f in fits]), dtype=torch.float32
        )  # [F, C]
        self.scale = scale

    def __call__(self, reads: torch.Tensor, fit: torch.Tensor) -> torch.Tensor:
        ll = torch.einsum("br,bcr->bc", reads, self.log_odds[fit]) + self.offset[fit]
        return (ll - ll.mean(1, keepdim=True)) / self.scale


def train_read_mlp(
    betas: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    hidden: int,
    seed: int,
    nb: tuple[NaiveBayesFeature, np.ndarray, NaiveBayesFeature] | None = None,
    copies: int = 8,
    l2: float = 0.03,
    max_epochs: int = 200,
    patience: int = 15,
) -> tuple[ReadMLP, int]:
    """Train a :class:`ReadMLP` on fresh 1-read draws of ``betas`` [n, R] each epoch; keep the
    epoch of the lowest NLL on the fixed validation draws ``x_val`` [m, R]. ``nb`` = (training
    feature, each training sample's inner fold [n], validation feature) adds the naive Bayes
    input. Returns the model (eval mode) and the number of epochs run."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    n_classes = int(y.max()) + 1
    model = ReadMLP(
        betas.shape[1], n_classes, hidden, 0.5, n_classes if nb else 0, nb[0].scale if nb else 1.0
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    level = torch.tensor(np.clip(betas, 0, 1), dtype=torch.float32).repeat(copies, 1)
    target = torch.tensor(y).repeat(copies)
    xv, yv = torch.tensor(x_val), torch.tensor(y_val)
    if nb:
        train_fit = torch.tensor(nb[1]).repeat(copies)
        extra_val = nb[2](xv, torch.zeros(len(xv), dtype=torch.long))
    best, state, wait, epochs = np.inf, None, 0, 0
    while epochs < max_epochs:
        epochs += 1
        model.train()
        reads = torch.bernoulli(level, generator=gen)
        order = torch.randperm(len(reads), generator=gen)
        for i in range(0, len(reads), 64):
            j = order[i : i + 64]
            extra = nb[0](reads[j], train_fit[j]) if nb else None
            loss = nn.functional.cross_entropy(model(reads[j], extra), target[j]) + l2 * model.penalty()
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            val_nll = nn.functional.cross_entropy(model(xv, extra_val if nb else None), yv).item()
        if val_nll < best - 1e-4:
            best, wait, state = val_nll, 0, {k: v.clone() for k, v in model.state_dict().items()}
        else:
            wait += 1
            if wait >= patience:
                break
    assert state is not None
    model.load_state_dict(state)
    return model.eval(), epochs


def accuracy(scores: np.ndarray, y: np.ndarray) -> float:
    return float((scores.argmax(1) == y).mean())


def temperature(scores: np.ndarray, y: np.ndarray) -> float:
    """The temperature T minimising the NLL of log_softmax(scores / T) on (``scores``, ``y``)."""
    grid = np.geomspace(0.01, 1000, 121)
    nll = [-log_softmax(scores / t, axis=1)[np.arange(len(y)), y].mean() for t in grid]
    return float(grid[int(np.argmin(nll))])


def fit_fold(
    betas: np.ndarray,
    y: np.ndarray,
    tr: np.ndarray,
    va: np.ndarray,
    n_classes: int,
    args: argparse.Namespace,
    k: int,
) -> tuple[dict, dict]:
    """Fit every method on the fold's training samples ``tr``, choose on 1-read draws of the
    validation samples ``va``. Returns ({method: scorer(reads [m, R]) -> [m, C]}, choices)."""
    chosen: dict = {}
    b_tr, y_tr = betas[tr].astype(np.float64), y[tr]
    log_prior = np.log(np.bincount(y_tr, minlength=n_classes) / len(tr))
    # Round 14's methods, with its random stream (same augmentation and validation draws).
    mu, sd = impute_standardise_params(betas[tr])
    z = standardise(betas, mu, sd)
    logreg01 = fit_logreg(z[tr], y_tr, 0.1, 2000, args.seed)
    bayes = ReadNaiveBayes().fit(betas[tr], y_tr, n_classes)
    rng = np.random.default_rng([args.seed, k])
    x_aug = np.concatenate([one_read(betas[tr], rng) for _ in range(args.augment)])
    y_aug = np.tile(y_tr, args.augment)
    x_val = np.concatenate([one_read(betas[va], rng) for _ in range(5)])
    y_val = np.tile(y[va], 5)
    fits = {c: LogisticRegression(C=c, max_iter=3000).fit(x_aug, y_aug) for c in C_GRID}
    chosen["C_draws"] = max(C_GRID, key=lambda c: (fits[c].predict(x_val) == y_val).mean())
    chosen["lambda"] = max(
        LAMBDAS, key=lambda lam: accuracy(reference_scores(x_val, b_tr, y_tr, n_classes, lam), y_val)
    )
    # The workflow's logistic regression: C on the complete validation betas.
    lr_scores = {}
    for c in schema_default("tissue.baselines.lr_c_grid"):
        model = fit_logreg(z[tr], y_tr, c, 2000, args.seed)
        lr_scores[c] = classification_metrics(
            y[va], full_proba(model, z[va], n_classes), np.arange(n_classes)
        )
    chosen["C_lr"] = choose_c(lr_scores)
    logreg = fit_logreg(z[tr], y_tr, chosen["C_lr"], 2000, args.seed)

    def mixture(kk: int, lam: float) -> list:
        return [fit_mixture(b_tr[y_tr == c], kk, lam, args.seed) for c in range(n_classes)]

    mix = {(kk, lam): mixture(kk, lam) for kk in MIX_K for lam in MIX_LAMBDAS}
    chosen["mixture"] = max(mix, key=lambda key: accuracy(class_scores(x_val, mix[key], log_prior), y_val))
    uniform = np.full(args.latent_draws, -np.log(args.latent_draws))
    fac = {
        (d, s): [
            (fit_factor(b_tr[y_tr == c], d, s, args.latent_draws, args.seed), uniform)
            for c in range(n_classes)
        ]
        for d in FACTOR_D
        for s in FACTOR_SCALES
    }
    chosen["factor"] = max(fac, key=lambda key: accuracy(class_scores(x_val, fac[key], log_prior), y_val))

    # Networks: the naive Bayes input of a training draw comes from a fit without its sample.
    inner = np.zeros(len(tr), np.int64)
    inner_fits = []
    for i, (fit_idx, held) in enumerate(
        StratifiedKFold(5, shuffle=True, random_state=args.seed).split(b_tr, y_tr)
    ):
        inner[held] = i
        inner_fits.append(ReadNaiveBayes().fit(betas[tr][fit_idx], y_tr[fit_idx], n_classes))
    val_feature = NaiveBayesFeature([bayes])
    raw = val_feature(torch.tensor(x_val), torch.zeros(len(x_val), dtype=torch.long))
    scale = float(raw.std())  # the feature enters at unit scale; the skip restores it
    val_feature.scale = scale
    nb_input = (NaiveBayesFeature(inner_fits, scale), inner, val_feature)
    nets: dict[str, tuple[ReadMLP, NaiveBayesFeature | None]] = {}

    def net_scores(members: list[ReadMLP], feature: NaiveBayesFeature | None):
        """Scorer of a network ensemble: the mean of its members' log-probabilities."""

        def score(reads: np.ndarray) -> np.ndarray:
            x = torch.tensor(reads, dtype=torch.float32)
            with torch.no_grad():
                e = feature(x, torch.zeros(len(x), dtype=torch.long)) if feature else None
                return torch.stack([torch.log_softmax(m(x, e), 1) for m in members]).mean(0).double().numpy()

        return score

    nets = {}
    for name, extra in ((MLP, None), (MLP_NB, nb_input)) if args.networks else ():
        trained = {}
        for h in MLP_HIDDEN:
            runs = [
                train_read_mlp(b_tr, y_tr, x_val, y_val, h, args.seed + 1000 * j, extra)
                for j in range(args.mlp_seeds)
            ]
            members = [net for net, _ in runs]
            scorer = net_scores(members, val_feature if extra else None)
            trained[h] = (accuracy(scorer(x_val), y_val), scorer, [e for _, e in runs])
        best_h = max(MLP_HIDDEN, key=lambda h: trained[h][0])
        chosen[name] = {"hidden": best_h, "epochs": trained[best_h][2]}
        nets[name] = trained[best_h][1]

    # The workflow's model: its own fit and its own validation draws (from its own stream).
    reads, chosen["reads"] = fit_read_profiles(
        betas[tr], y_tr, betas[va], y[va], n_classes, ReadsConfig(), args.seed
    )

    def reads_scores(r: np.ndarray) -> np.ndarray:
        return reads(torch.as_tensor(r), torch.ones(r.shape)).double().numpy()

    scorers = {
        READS: reads_scores,
        LR: lambda r: np.log(full_proba(logreg, standardise(r, mu, sd), n_classes) + 1e-300),
        LR01: lambda r: np.log(full_proba(logreg01, standardise(r, mu, sd), n_classes) + 1e-300),
        NB: lambda r: bayes.log_likelihood(r, np.ones_like(r)),
        LIN: lambda r: fits[chosen["C_draws"]].predict_log_proba(r),
        REF: lambda r: reference_scores(r, b_tr, y_tr, n_classes, chosen["lambda"]),
        MIX: lambda r: class_scores(r, mix[chosen["mixture"]], log_prior),
        FAC: lambda r: class_scores(r, fac[chosen["factor"]], log_prior),
        **nets,
    }
    stackable = stackable_methods(args)
    # The stack: temperature-scaled log-probabilities of 2-3 methods, averaged.
    val = {m: scorers[m](x_val) for m in stackable}
    temps = {m: temperature(val[m], y_val) for m in stackable}
    calibrated = {m: log_softmax(val[m] / temps[m], axis=1) for m in stackable}
    combos = [c for n in (2, 3) for c in itertools.combinations(stackable, n)]

    def combo_key(combo: tuple[str, ...]) -> tuple[float, float]:
        s = np.mean([calibrated[m] for m in combo], 0)
        return (accuracy(s, y_val), float(log_softmax(s, axis=1)[np.arange(len(y_val)), y_val].mean()))

    best_combo = max(combos, key=combo_key)
    chosen["stack"] = list(best_combo)

    def stack(members: tuple[str, ...]):
        return lambda r: np.mean([log_softmax(scorers[m](r) / temps[m], axis=1) for m in members], 0)

    scorers[STACK] = stack(best_combo)
    scorers[STACK_ALL if args.networks else STACK_FIVE] = stack(stackable)
    chosen["val_accuracy"] = {m: round(accuracy(val[m], y_val), 4) for m in stackable}
    chosen["temperature"] = {m: round(t, 3) for m, t in temps.items()}
    return scorers, chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--augment", type=int, default=20, help="1-read draws per training sample")
    ap.add_argument("--latent-draws", type=int, default=1024, help="Sobol points of the factor model")
    ap.add_argument(
        "--mlp-seeds", type=int, default=1, help="networks per MLP method (seeds seed + 1000 j), averaged"
    )
    ap.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        help="fit on this fraction of each fold's training samples (per class; the learning curve)",
    )
    ap.add_argument(
        "--no-networks",
        dest="networks",
        action="store_false",
        help="leave out the two MLP methods (the stack of all becomes the stack of five)",
    )
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    if not 0 < args.train_fraction <= 1:
        ap.error(f"--train-fraction {args.train_fraction} is not in (0, 1]")
    torch.set_num_threads(1)
    t0 = time.time()
    samples, labels, _, betas = load(args.csv)
    classes, y = np.unique(labels, return_inverse=True)
    n_classes = len(classes)
    folds = group_kfold(samples, args.folds, seed=args.seed, stratify=labels)
    names = (
        (LR, LR01, NB, LIN, REF, MIX, FAC, MLP, MLP_NB, STACK, STACK_ALL, READS)
        if args.networks
        else (LR, LR01, NB, LIN, REF, MIX, FAC, STACK, STACK_FIVE, READS)
    )
    n = len(samples)
    right = {m: np.zeros((args.draws, n), bool) for m in names}
    chosen: list[dict] = []
    for k in range(args.folds):
        split = np.asarray(fold_split(folds, k, samples, 0.25, args.seed, labels))
        tr, va, te = (np.flatnonzero(split == s) for s in ("train", "val", "test"))
        if args.train_fraction < 1:
            tr = subsample(tr, y, args.train_fraction, np.random.default_rng([args.seed, k, 99]))
        scorers, fold_chosen = fit_fold(betas, y, tr, va, n_classes, args, k)
        fold_chosen["n_train"] = len(tr)
        chosen.append(fold_chosen)
        for d in range(args.draws):
            means, _ = degrade(betas[te], 1, 1.0, np.random.default_rng([1000 + d, k]))
            for m in names:
                right[m][d, te] = scorers[m](means).argmax(1) == y[te]
        print(f"fold {k} ({time.time() - t0:.0f} s): {json.dumps(fold_chosen)}", flush=True)
    acc = {m: r.mean(1) for m, r in right.items()}
    target = acc[LR] + 0.05
    out = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "n_samples": n,
        "seconds": round(time.time() - t0, 1),
        "chosen": chosen,
        "target_logreg_plus_5": target.round(4).tolist(),
        "methods": {
            m: {
                "mean": float(a.mean()),
                "sd": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                "gap_to_target": float((a - target).mean()),
                "draws": a.round(4).tolist(),
                "mcnemar_vs_logreg": [
                    exact_mcnemar(right[m][d], right[LR][d]).to_dict() for d in range(args.draws)
                ],
            }
            for m, a in acc.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for m, r in out["methods"].items():
        ps = " ".join(f"{t['p_value']:.2g}" for t in r["mcnemar_vs_logreg"])
        print(f"{m:38s} {r['mean']:.3f} +- {r['sd']:.3f}  gap {r['gap_to_target']:+.3f}  p vs LR {ps}")
    print(f"{'target (logistic regression + 5)':38s} {target.mean():.3f}  ({out['seconds']} s)")


if __name__ == "__main__":
    main()
