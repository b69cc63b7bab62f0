"""The NNLS baseline (MethAtlas): non-negative least squares, then scale to sum 1.

``nnls_batched`` runs the Lawson-Hanson active-set algorithm for many samples at once on
the normal equations: with the Gram matrix ``G = A^T A`` [K, K] and ``h = A^T b`` [N, K]
every step is a masked batched K x K solve, so the per-sample cost no longer depends on
the number of regions once ``h`` is formed (one [N, R] x [R, K] product). Samples with
missing regions get their own Gram matrix over their valid regions. The answers equal
``scipy.optimize.nnls`` sample by sample (tests check 1e-6; the reference must have full
column rank, as NNLS needs for a unique answer).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)


def _solve_passive(G: np.ndarray, h: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Least squares on the passive set: s_P = G_PP^-1 h_P, s elsewhere 0. Shapes [n, K]."""
    k = G.shape[-1]
    # Rows and columns outside P become identity rows, so one batched solve gives G_PP^-1 h_P.
    f = P.astype(G.dtype)
    Gm = G * (f[:, :, None] * f[:, None, :])
    idx = np.arange(k)
    Gm[:, idx, idx] += 1.0 - f
    rhs = h * f
    try:
        s = np.linalg.solve(Gm, rhs[..., None])[..., 0]
    except np.linalg.LinAlgError as exc:
        raise ValueError(
            "NNLS: the reference has linearly dependent tissue columns on the valid regions "
            "(duplicate or collinear profiles); drop one with reference.exclude"
        ) from exc
    return np.where(P, s, 0.0)


def nnls_gram(G: np.ndarray, h: np.ndarray, tol: float, max_iter: int | None = None) -> np.ndarray:
    """Batched Lawson-Hanson on normal equations.

    Parameters
    ----------
    G: [K, K] or [N, K, K] Gram matrices A^T A.
    h: [N, K] right-hand sides A^T b.
    tol: a gradient entry must exceed it to enter the passive set.

    Returns
    -------
    x: [N, K] non-negative minimisers of ||A x - b||.
    """
    n, k = h.shape
    Gb = np.broadcast_to(G, (n, k, k)) if G.ndim == 2 else G
    max_iter = max_iter or 3 * k
    x = np.zeros((n, k))
    P = np.zeros((n, k), bool)
    w = h.copy()
    todo = ((~P) & (w > tol)).any(1)
    it = 0
    while todo.any():
        it += 1
        if it > max_iter:
            logger.warning("NNLS reached %d outer iterations for %d sample(s)", max_iter, int(todo.sum()))
            break
        rows = np.flatnonzero(todo)
        wr = np.where(P[rows], -np.inf, w[rows])
        P[rows, wr.argmax(1)] = True
        xr, Pr, Gr, hr = x[rows], P[rows], Gb[rows], h[rows]
        s = _solve_passive(Gr, hr, Pr)
        # Inner loop: step back to the feasible region while the passive solution has
        # non-positive entries, dropping the variables that hit zero.
        for _ in range(k + 1):
            bad = Pr & (s <= 0)
            inner = bad.any(1)
            if not inner.any():
                break
            d = xr - s
            # d > 0 on every bad entry except x = s = 0, where the step length is 0.
            ratio = np.where(bad, xr / np.where(d > 0, d, 1.0), np.inf)
            alpha = np.where(inner, ratio.min(1), 1.0)[:, None]
            xi = xr + alpha * (s - xr)
            xr = np.where(inner[:, None], xi, xr)
            Pr = Pr & ~(inner[:, None] & (xr <= tol))
            xr = np.where(Pr, xr, 0.0)
            s_new = _solve_passive(Gr[inner], hr[inner], Pr[inner])
            s[inner] = s_new
        x[rows], P[rows] = s, Pr
        w[rows] = hr - np.einsum("nk,nkl->nl", s, Gr)
        todo = ((~P) & (w > tol)).any(1)
    return x


def nnls_bpp(
    G: np.ndarray, h: np.ndarray, tol: float, max_iter: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Batched block principal pivoting (Portugal, Judice & Vicente 1994; Kim & Park 2011).

    Exchanges every variable that violates the KKT conditions at once, so a sample needs a
    handful of passive-set solves instead of one per non-zero tissue (Lawson-Hanson). The
    passive set starts at the positive entries of the unconstrained solution. With full
    column rank the KKT point is unique, so this finds the same answer as Lawson-Hanson.

    Returns ``(x [N, K], converged [N] bool)``; callers fall back to ``nnls_gram`` for the
    rare samples that did not converge within ``max_iter`` exchanges.
    """
    n, k = h.shape
    Gb = np.broadcast_to(G, (n, k, k)) if G.ndim == 2 else G
    max_iter = max_iter or 5 * k
    try:
        x0 = np.linalg.solve(G, h.T).T if G.ndim == 2 else np.linalg.solve(G, h[..., None])[..., 0]
        F = x0 > 0
    except np.linalg.LinAlgError:
        # Singular on some sample's valid regions: start from the empty passive set.
        F = np.zeros((n, k), bool)
    x = np.zeros((n, k))
    converged = np.zeros(n, bool)
    budget = np.full(n, 3)
    best = np.full(n, k + 1)
    todo = np.arange(n)
    for _ in range(max_iter):
        if len(todo) == 0:
            break
        Ft, Gt, ht = F[todo], Gb[todo], h[todo]
        xt = _solve_passive(Gt, ht, Ft)
        y = np.einsum("nk,nkl->nl", xt, Gt) - ht
        infeas = (Ft & (xt < 0)) | (~Ft & (y < -tol))
        n_inf = infeas.sum(1)
        done = n_inf == 0
        x[todo[done]] = xt[done]
        converged[todo[done]] = True
        keep = ~done
        todo, infeas, n_inf = todo[keep], infeas[keep], n_inf[keep]
        if len(todo) == 0:
            break
        better = n_inf < best[todo]
        full = better | (budget[todo] > 0)
        best[todo[better]] = n_inf[better]
        budget[todo[better]] = 3
        budget[todo[~better & full]] -= 1
        # Backup rule (guarantees termination): flip only the last infeasible variable.
        last = k - 1 - np.argmax(infeas[:, ::-1], axis=1)
        flip = np.where(full[:, None], infeas, np.arange(k)[None] == last[:, None])
        F[todo] = F[todo] ^ flip
    return np.where(converged[:, None], np.maximum(x, 0.0), 0.0), converged


def _nnls_rows(G: np.ndarray, h: np.ndarray, tol: float) -> np.ndarray:
    x, ok = nnls_bpp(G, h, tol)
    if not ok.all():
        logger.info("NNLS: %d sample(s) finished by Lawson-Hanson", int((~ok).sum()))
        x[~ok] = nnls_gram(G if G.ndim == 2 else G[~ok], h[~ok], tol)
    return x


@dataclass
class NNLSResult:
    """``raw`` [N, K] NNLS coefficients, ``proportions`` [N, K] (sum 1, or 1 - unknown),
    ``unknown`` [N] (zeros unless requested), ``residual`` [N] RMS over valid regions,
    ``n_valid`` [N] regions used."""

    raw: np.ndarray
    proportions: np.ndarray
    unknown: np.ndarray
    residual: np.ndarray
    n_valid: np.ndarray


def nnls_batched(A: np.ndarray, B: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Solve min ||A x - b_n|| s.t. x >= 0 for every row ``b_n`` of ``B``.

    A: [R, K] reference; B: [N, R] samples (NaN = region missing, ignored for that sample).
    Returns x [N, K]. Memory is bounded by ``chunk`` samples at a time.
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2 or B.shape[1] != A.shape[0]:
        raise ValueError(
            f"NNLS: samples {B.shape} must be [n, {A.shape[0]}] for a reference of shape {A.shape}"
        )
    if not np.isfinite(A).all():
        raise ValueError("NNLS: the reference contains NaN or inf")
    G = A.T @ A
    # Rank from the small Gram matrix: an SVD of the full [R, K] reference costs more than
    # the whole batched solve.
    if np.linalg.matrix_rank(G, hermitian=True) < A.shape[1]:
        raise ValueError(
            f"NNLS: the reference's {A.shape[1]} tissue columns are linearly dependent "
            "(duplicate or collinear profiles); drop one with reference.exclude"
        )
    r, k = A.shape
    out = np.zeros((B.shape[0], k))
    for start in range(0, B.shape[0], chunk):
        b = B[start : start + chunk]
        # NaN propagates through the product, so one matmul finds the rows with missing
        # values; only those are scanned and recomputed (two fewer passes over B).
        h = b @ A
        full = np.isfinite(h).all(1)
        miss_rows = np.flatnonzero(~full)
        valid_miss = np.isfinite(b[miss_rows])
        if len(miss_rows):
            h[miss_rows] = np.where(valid_miss, b[miss_rows], 0.0) @ A
        # Roundoff scale of the gradient A^T (A x - b), as in Lawson-Hanson implementations.
        tol = 10 * np.finfo(float).eps * max(r, k) * max(1.0, float(np.abs(h).max(initial=0.0)))
        x = np.zeros((len(b), k))
        if full.any():
            x[full] = _nnls_rows(G, h[full], tol)
        if len(miss_rows):
            Gs = np.empty((len(miss_rows), k, k))
            for i in range(len(miss_rows)):
                # Subtract the few missing rows rather than rebuild from the many valid ones.
                miss = ~valid_miss[i]
                if miss.sum() < r // 2:
                    Gs[i] = G - A[miss].T @ A[miss]
                else:
                    Gs[i] = A[~miss].T @ A[~miss]
            x[miss_rows] = _nnls_rows(Gs, h[miss_rows], tol)
        out[start : start + chunk] = x
    return out


def deconvolve_nnls(A: np.ndarray, B: np.ndarray, unknown_component: bool = False) -> NNLSResult:
    """MethAtlas deconvolution of samples ``B`` [N, R] against reference ``A`` [R, K].

    Without ``unknown_component`` the coefficients are scaled to sum 1. With it, a sum
    below 1 is read as DNA from a tissue outside the reference: the deficit is reported as
    ``unknown`` and the coefficients are kept (sums above 1 are scaled down to 1).
    """
    raw = nnls_batched(A, B)
    total = raw.sum(1)
    valid = np.isfinite(B)
    n_valid = valid.sum(1)
    if (n_valid == 0).any():
        raise ValueError(f"NNLS: {int((n_valid == 0).sum())} sample(s) have no valid region")
    if (total <= 0).any():
        logger.warning("NNLS: %d sample(s) got all-zero coefficients", int((total <= 0).sum()))
    safe = np.where(total > 0, total, 1.0)[:, None]
    if unknown_component:
        scale = np.where(total > 1, total, 1.0)[:, None]
        props = raw / scale
        unknown = np.clip(1 - props.sum(1), 0, 1)
    else:
        props = raw / safe
        unknown = np.zeros(len(raw))
    pred = raw @ A.T
    err = np.where(valid, pred - np.where(valid, B, 0.0), 0.0)
    residual = np.sqrt((err**2).sum(1) / n_valid)
    return NNLSResult(raw, props, unknown, residual, n_valid)


# Weight floor of :func:`deconvolve_weighted`: the variance a region keeps however close its
# fitted level is to 0 or 1 (reference and individual noise, not read sampling).
WEIGHT_FLOOR = 0.03
# Tissues carrying less than this share of the fitted level: the offset explained the
# sample alone (flat betas), and scaling the rest to sum 1 would report noise.
OFFSET_ONLY = 1e-3
# The offset column needs this much of itself outside the tissues' span (relative residual
# of the all-ones vector regressed on the reference): below it (e.g. two complementary
# profiles that add up to 1) offset and tissues cannot be told apart. The Moss atlas: 0.55.
OFFSET_MIN_RESIDUAL = 0.1


def offset_residual(A: np.ndarray) -> float:
    """Relative residual of the all-ones vector [R] regressed on the reference A [R, K]."""
    A = np.asarray(A, dtype=np.float64)
    one = np.ones(len(A))
    coef, *_ = np.linalg.lstsq(A, one, rcond=None)
    return float(np.linalg.norm(one - A @ coef) / np.sqrt(len(A)))


def offset_room(A: np.ndarray) -> bool:
    """Whether the reference A [R, K] leaves room for an offset column (its tissues do not
    nearly span a constant profile): where not, the weighted NNLS is plain NNLS."""
    return offset_residual(A) >= OFFSET_MIN_RESIDUAL


def gram_per_sample(A: np.ndarray, W: np.ndarray) -> np.ndarray:
    """A^T diag(w_n) A [N, K, K] for weights W [N, R]: one [N, R] x [R, K*K] product (an
    einsum over "rk,nr,rl" would hold [N, R, K] at once)."""
    r, k = A.shape
    return (W @ (A[:, :, None] * A[:, None, :]).reshape(r, k * k)).reshape(len(W), k, k)


def weighted_nnls_batched(A: np.ndarray, B: np.ndarray, W: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Solve min sum_r W[n, r] (A x - b_n)_r^2 s.t. x >= 0 for every row of ``B``.

    A: [R, K]; B: [N, R] (NaN = missing: weight 0); W: [N, R] non-negative weights.
    Returns x [N, K]. Each sample has its own Gram matrix A^T diag(w) A, formed ``chunk``
    samples at a time ([chunk, K, K] memory, not [chunk, R, K]).
    """
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    W = np.asarray(W, dtype=np.float64)
    if W.shape != B.shape or not (W >= 0).all():
        raise ValueError(
            f"weighted NNLS: weights {W.shape} must be non-negative numbers shaped like samples {B.shape}"
        )
    W = np.where(np.isfinite(B), W, 0.0)
    r, k = A.shape
    out = np.zeros((B.shape[0], k))
    for start in range(0, B.shape[0], chunk):
        w = W[start : start + chunk]
        b = np.where(w > 0, B[start : start + chunk], 0.0)
        G = gram_per_sample(A, w)
        h = (w * b) @ A
        tol = 10 * np.finfo(float).eps * max(r, k) * max(1.0, float(np.abs(h).max(initial=0.0)))
        out[start : start + chunk] = _nnls_rows(G, h, tol)
    return out


def deconvolve_weighted(A: np.ndarray, B: np.ndarray, weight_floor: float = WEIGHT_FLOOR) -> NNLSResult:
    """NNLS with a per-sample offset and mean-variance weights (``weighted NNLS + offset``).

    Two departures from MethAtlas's NNLS, both for samples that are not averages of the
    reference's own profiles (issue 19: other individuals, another platform):

    - **offset**: a constant column (coefficient >= 0) joins the reference, so a sample whose
      betas are pulled toward the middle (``b = e + (1 - 2e) A q``: individual noise clipped
      at 0 and 1, a platform's compressed range) is fitted as ``e`` plus ``A q`` scaled by
      ``1 - 2e`` instead of as ``e`` worth of spurious tissues; scaling to sum 1 removes the
      scale;
    - **weights**: one reweighted solve with ``w_r = 1 / (mu_r (1 - mu_r) + weight_floor)``,
      ``mu`` the first fit's level of region ``r``: read sampling varies as mu (1 - mu), so
      regions near 0 or 1 (where a small tissue's markers show) count more, and
      ``weight_floor`` is the variance no region loses (reference and individual noise).

    ``A`` [R, K], ``B`` [N, R] (NaN = missing). Returns proportions scaled to sum 1 (``raw``
    without the offset, ``residual`` unweighted RMS of the final fit, offset included). A
    sample the offset explains alone (tissues under ``OFFSET_ONLY`` of its fitted level: flat
    betas) gets plain NNLS instead, so every sample has proportions; so does every sample
    when the reference's span nearly holds a constant profile (``offset_residual`` below
    ``OFFSET_MIN_RESIDUAL``, e.g. two complementary profiles), with a warning.
    """
    if weight_floor <= 0:
        raise ValueError(f"weighted NNLS: weight_floor must be > 0, not {weight_floor}")
    A = np.asarray(A, dtype=np.float64)
    B = np.asarray(B, dtype=np.float64)
    spread = offset_residual(A)
    if spread < OFFSET_MIN_RESIDUAL:
        logger.warning(
            "weighted NNLS: the reference's tissues nearly span a constant profile (residual %.3g < %g), "
            "so an offset cannot be told from them; plain NNLS instead (model.prior_weight_floor: 0 says so)",
            spread,
            OFFSET_MIN_RESIDUAL,
        )
        return deconvolve_nnls(A, B)
    Ao = np.column_stack([A, np.ones(len(A))])
    valid = np.isfinite(B)
    n_valid = valid.sum(1)
    if (n_valid == 0).any():
        raise ValueError(f"NNLS: {int((n_valid == 0).sum())} sample(s) have no valid region")
    first = nnls_batched(Ao, B)
    mu = np.clip(first @ Ao.T, 0.0, 1.0)
    x = weighted_nnls_batched(Ao, B, 1.0 / (mu * (1.0 - mu) + weight_floor))
    raw = x[:, :-1]
    zero = raw.sum(1) <= OFFSET_ONLY * x.sum(1)
    if zero.any():
        # The offset explained the whole sample (flat betas, no tissue signal): plain NNLS.
        logger.warning(
            "weighted NNLS: %d sample(s) fitted by the offset alone; plain NNLS for them", int(zero.sum())
        )
        x[zero] = np.column_stack([nnls_batched(A, B[zero]), np.zeros(int(zero.sum()))])
        raw = x[:, :-1]
    total = raw.sum(1)
    props = raw / np.where(total > 0, total, 1.0)[:, None]
    err = np.where(valid, x @ Ao.T - np.where(valid, B, 0.0), 0.0)
    residual = np.sqrt((err**2).sum(1) / n_valid)
    return NNLSResult(raw, props, np.zeros(len(raw)), residual, n_valid)


def nnls_torch(
    A,
    X,
    max_iter: int | None = None,
    support=None,
    weight_floor: float | None = None,
    offset: bool | None = None,
):
    """Batched NNLS in torch (block principal pivoting), for use inside a network.

    A: [M, K] reference; X: [B, M] samples (NaN = missing). Returns x [B, K] (float64, no
    gradient). Runs on A's device, so a GPU model keeps its NNLS on the GPU. Samples that
    do not converge within ``max_iter`` exchanges (rare) keep their clamped last iterate.
    ``support`` [B, K] bool, when given, restricts each sample's fit to its True tissues
    (the others are 0): NNLS against that sample's columns of A only. With
    ``weight_floor`` the fit is :func:`deconvolve_weighted`'s (offset column, one reweighted
    solve; the offset's coefficient is dropped from x); not with ``support``. ``offset``: whether
    the reference leaves room for the offset (``offset_residual`` >= ``OFFSET_MIN_RESIDUAL``;
    False = plain NNLS); None checks it here, so a caller with a fixed reference passes its own
    answer once found instead of a least-squares fit per batch.
    """
    import torch

    with torch.no_grad():
        A = A.to(torch.float64)
        X = X.to(device=A.device, dtype=torch.float64)
        valid = torch.isfinite(X)
        Xz = torch.where(valid, X, torch.zeros((), dtype=X.dtype, device=X.device))
        if weight_floor is not None:
            if support is not None:
                raise ValueError("nnls_torch: weight_floor and support do not combine")
            if offset is None:
                offset = offset_room(A.cpu().numpy())
            if not offset:
                # As deconvolve_weighted: no offset that the tissues could mimic.
                return _bpp_torch(A, Xz, valid.to(A.dtype), None, max_iter)
            Ao = torch.cat([A, torch.ones(len(A), 1, dtype=A.dtype, device=A.device)], dim=1)
            first = _bpp_torch(Ao, Xz, valid.to(A.dtype), None, max_iter)
            mu = (first @ Ao.T).clamp(0.0, 1.0)
            w = torch.where(valid, 1.0 / (mu * (1.0 - mu) + weight_floor), torch.zeros_like(mu))
            full = _bpp_torch(Ao, Xz, w, None, max_iter)
            x = full[:, :-1]
            zero = x.sum(1) <= OFFSET_ONLY * full.sum(1)
            if bool(zero.any()):
                # As deconvolve_weighted: a sample the offset explains alone gets plain NNLS.
                x[zero] = _bpp_torch(A, Xz[zero], valid[zero].to(A.dtype), None, max_iter)
            return x
        return _bpp_torch(A, Xz, valid.to(A.dtype), support, max_iter)


def _bpp_torch(A, Xz, W, support, max_iter: int | None):
    """:func:`nnls_torch`'s solver: min sum_r W[b, r] (A x - Xz_b)_r^2, x >= 0, for
    A [M, K], Xz [B, M] (0 where missing), W [B, M] (0 where missing)."""
    import torch

    with torch.no_grad():
        h = (Xz * W) @ A
        b, k = h.shape
        if bool((W == 1).all()):
            G = (A.T @ A).expand(b, k, k)
        else:
            # A^T diag(w) A per sample from one [B, R] x [R, K*K] product (gram_per_sample).
            G = (W @ (A[:, :, None] * A[:, None, :]).reshape(len(A), k * k)).reshape(b, k, k)
        eye = torch.eye(k, dtype=torch.bool, device=A.device)
        if support is not None:
            # Columns outside the support become decoupled identity rows with a zero right-hand
            # side, so their (unique) NNLS value is 0 and the rest is the restricted fit.
            on = support.to(device=A.device, dtype=torch.bool)
            G = torch.where(on[:, :, None] & on[:, None, :], G, eye.to(G.dtype).expand(b, k, k))
            h = torch.where(on, h, torch.zeros_like(h))
        tol = (
            10
            * torch.finfo(torch.float64).eps
            * max(A.shape)
            * max(1.0, float(h.abs().max()) if h.numel() else 1.0)
        )

        def solve(F):
            both = F[:, :, None] & F[:, None, :]
            Gm = torch.where(both, G, eye.to(G.dtype).expand_as(G))
            s = torch.linalg.solve(Gm, torch.where(F, h, torch.zeros_like(h)))
            return torch.where(F, s, torch.zeros_like(s))

        F = torch.linalg.solve(G + 1e-12 * eye, h) > 0
        x = torch.zeros_like(h)
        done = torch.zeros(b, dtype=torch.bool, device=A.device)
        budget = torch.full((b,), 3, device=A.device)
        best = torch.full((b,), k + 1, device=A.device)
        idx = torch.arange(k, device=A.device)
        for _ in range(max_iter or 5 * k):
            s = solve(F)
            y = (G @ s[..., None])[..., 0] - h
            infeas = (F & (s < 0)) | (~F & (y < -tol))
            n_inf = infeas.sum(1)
            newly = (n_inf == 0) & ~done
            x = torch.where(newly[:, None], s, x)
            done |= newly
            if bool(done.all()):
                break
            better = n_inf < best
            full = better | (budget > 0)
            best = torch.where(better, n_inf, best)
            budget = torch.where(better, torch.full_like(budget, 3), torch.where(full, budget - 1, budget))
            last = k - 1 - torch.argmax(infeas.flip(1).to(torch.int8), dim=1)
            flip = torch.where(full[:, None], infeas, idx[None] == last[:, None])
            F = torch.where(done[:, None], F, F ^ flip)
        x = torch.where(done[:, None], x, s)
        return x.clamp_min(0)
