"""Per-query inference of a region-attention ensemble: the members' forward, rearranged.

:class:`AttentionEnsemble` computes what :meth:`RegionAttention.forward` computes in eval
mode, for each member of an ensemble, with the same values up to float rounding (tested against
the members' own forward in tests/test_predict_tissue.py). What a query does not change is
computed once when the model is loaded:

- a kept region's token is h_r = A_r + z_r B_r + l_r C (A, B per region, C shared: the
  region embedding, value weights and value projection with the observed flag at 1), so the
  LayerNorm of h_r needs only z_r, l_r and six per-region dot products of A, B, C, and the
  gate's two projections of the normalised token are rstd_r (PA_r + z_r PB_r + l_r PC) + bias
  with PA, PB, PC the projections of the centred A, B, C (precomputed [R, 2 gate_hidden]);
- tanh(v) = 2 sigmoid(2 v) - 1, so one sigmoid covers both halves of the gate (the v
  projection is stored doubled);
- a query observing at most 40% of the regions attends over those regions only (unobserved
  regions get weight exp(-1e4) = 0 in the members' softmax and z = 0 in the region-mean
  pathway): their A, B rows are gathered and their tokens projected (fewer bytes than
  gathering PA, PB rows), and under 1/8 of the regions also only their rows of the
  region-mean projection; a denser query attends over every region with the unobserved
  ones masked, as the members do;
- members share the read likelihood's beta fits (the training split's, the same for every
  member): its log-likelihood is computed once per distinct fit, and at one read per region
  (a request without coverage) from per-class tables made with the same float32 operations
  as the members' own lgamma terms.

What a full-coverage query costs on one CPU thread (docs/predict.md, Latency): reading each
member's region-mean projection [hidden0, R] (5 x 51,089 x 256 float32 = 261 MB at the
schema's sizes) and PA, PB (another 261 MB), and 5 x 51,089 x 128 sigmoids. Memory beside
the members' own weights, per member: PA, PB, the transposed region-mean projection and
A, B, about 119 MB at 51,089 regions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from genomelab.tissue.models import (
    MaskedLinear,
    RegionAttention,
    _ReadLikelihood,
    beta_binomial_terms,
)


class _ReadTables:
    """One distinct read-likelihood fit: a, b, log B(a, b) [C, R] and the terms at one read
    (k = 0 or 1 of d = 1), made exactly as :func:`genomelab.tissue.models._beta_binomial_sum`
    makes them."""

    def __init__(self, reads: _ReadLikelihood) -> None:
        self.a, self.b, self.norm = reads.a.float(), reads.b.float(), reads.norm.float()
        one, zero = torch.ones_like(self.a), torch.zeros_like(self.a)
        self.at_one = [beta_binomial_terms(k, one, self.a, self.b, self.norm) for k in (zero, one)]

    def matches(self, reads: _ReadLikelihood) -> bool:
        return all(
            torch.equal(x, y) for x, y in ((self.a, reads.a), (self.b, reads.b), (self.norm, reads.norm))
        )

    def log_likelihood(self, observed: torch.Tensor, k: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Summed log B(k + a, d - k + b) - log B(a, b) [C] over the ``observed`` regions,
        with k, d [R] (0 where unobserved). Every term has its region's place in a [C, R]
        row (0 where unobserved, as there in the members' terms), so the float32 sum adds
        what the members' sum adds, in the same order."""
        one = observed & (d == 1) & ((k == 0) | (k == 1))
        if bool(one.all()):
            return torch.where(k > 0, self.at_one[1], self.at_one[0]).sum(-1)
        terms = torch.where(one & (k > 0), self.at_one[1], torch.where(one, self.at_one[0], 0.0))
        rest = (observed & ~one).nonzero().squeeze(1)
        if rest.numel():
            terms[:, rest] = self._terms(rest, k[rest], d[rest])
        return terms.sum(-1)

    def log_likelihood_of(self, idx: torch.Tensor, k: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """:meth:`log_likelihood` of a few observed regions ``idx`` with k, d [n]: their
        terms go into a [C, R] row of zeros, the same sum."""
        terms = torch.zeros_like(self.a)
        one = (d == 1) & ((k == 0) | (k == 1))
        i1 = idx[one]
        terms[:, i1] = torch.where(
            k[one] > 0, self.at_one[1].index_select(1, i1), self.at_one[0].index_select(1, i1)
        )
        if not bool(one.all()):
            rest = ~one
            terms[:, idx[rest]] = self._terms(idx[rest], k[rest], d[rest])
        return terms.sum(-1)

    def _terms(self, idx: torch.Tensor, k: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        a, b, norm = (t.index_select(1, idx) for t in (self.a, self.b, self.norm))
        return beta_binomial_terms(k, d, a, b, norm)


class AttentionEnsemble:
    """Eval-mode forward of region-attention members (see the module docstring).

    :meth:`build` returns None where the members differ in a way this does not cover (then
    the members' own forward is used). :meth:`proba` gives probabilities [M, S, C] float32.
    """

    # Regions per step of the gate: its [CHUNK, 2 gate_hidden] work buffer stays in cache.
    CHUNK = 2048
    # Queries observing at most 1 / DENSE of the regions attend over those regions only
    # (gathered); others over every region, the unobserved ones masked. Gathered queries
    # observing fewer than 1 / GATHER of the regions also gather the region-mean
    # projection's weights of those regions; others read all of them.
    DENSE = 2.5
    GATHER = 8

    def __init__(self, members: list[RegionAttention]) -> None:
        self.members = members
        m0 = members[0]
        self.z_clip = float(m0.standardise.z_clip)
        self.cov_scale = float(m0.standardise.cov_scale)
        self.dim, self.heads, self.gate = m0.cfg.dim, m0.cfg.heads, m0.cfg.gate_hidden
        self.ln_eps = 1e-5  # F.layer_norm's default, as in RegionAttention.attention
        # Per member; precomputed in float64, kept in float32.
        self.a_tok, self.b_tok, self.c_tok, self.pa, self.pb, self.pcb, self.quad, self.cc = (
            [] for _ in range(8)
        )
        self.score_w: list[torch.Tensor] = []
        self.gate_w: list[torch.Tensor] = []
        self.gate_b: list[torch.Tensor] = []
        self.in_wt: list[torch.Tensor] = []  # [R, hidden0]
        with torch.no_grad():
            for m in members:
                wp, bp = m.value_proj.weight.double(), m.value_proj.bias.double()  # [D, 3], [D]
                a = m.region_embedding.double() + wp[:, 1] + bp  # observed flag 1
                b = m.value_weights.double() + wp[:, 0]
                c = wp[:, 2]
                ac, bc, cc = a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True), c - c.mean()
                # Gate projections, v rows doubled: tanh(v) = 2 sigmoid(2 v) - 1.
                w = torch.cat([2 * m.attn_v.weight.double(), m.attn_u.weight.double()])  # [2G, D]
                bias = torch.cat([2 * m.attn_v.bias.double(), m.attn_u.bias.double()])
                d = ac.shape[-1]
                # LayerNorm's (biased) variance: q0 + q1 z^2 + q2 z + q3 l + q4 z l + cc l^2.
                quad = torch.stack(
                    [
                        (ac * ac).sum(-1) / d,
                        (bc * bc).sum(-1) / d,
                        2 * (ac * bc).sum(-1) / d,
                        2 * (ac @ cc) / d,
                        2 * (bc @ cc) / d,
                    ]
                )
                # Scores = tanh(v) s(u) @ W^T + b = (s(2v) - 1/2) s(u) @ (2 W)^T + b.
                sw = m.attn_w.weight.double()
                for lst, t in (
                    (self.a_tok, a),
                    (self.b_tok, b),
                    (self.c_tok, c),
                    (self.pa, ac @ w.T),  # [R, 2G]
                    (self.pb, bc @ w.T),
                    (self.pcb, torch.stack([cc @ w.T, bias])),  # [2, 2G]: l's row, bias
                    (self.quad, quad),  # [5, R]
                    (self.cc, (cc * cc).mean()),
                    (self.score_w, 2 * sw),  # [H, G]
                    (self.gate_w, w),  # [2G, D]
                    (self.gate_b, bias),
                ):
                    lst.append(t.float().contiguous())
                # For sparse queries: rows of observed regions are contiguous (1 KB at 256).
                self.in_wt.append(m.input_proj.weight.detach().T.contiguous())
        self.reads: list[_ReadTables] = []
        self.read_group: list[int] = []
        for m in members:
            if m.reads is None:
                continue
            found = next((i for i, t in enumerate(self.reads) if t.matches(m.reads)), None)
            if found is None:
                self.reads.append(_ReadTables(m.reads))
                found = len(self.reads) - 1
            self.read_group.append(found)

    @classmethod
    def build(cls, members: list[torch.nn.Module]) -> AttentionEnsemble | None:
        if not members or not all(isinstance(m, RegionAttention) and not m.training for m in members):
            return None
        m0 = members[0]
        same = all(
            m.cfg.dim == m0.cfg.dim
            and m.cfg.heads == m0.cfg.heads
            and m.cfg.gate_hidden == m0.cfg.gate_hidden
            and m.standardise.z_clip == m0.standardise.z_clip
            and m.standardise.cov_scale == m0.standardise.cov_scale
            and (m.reads is None) == (m0.reads is None)
            for m in members
        )
        return cls(members) if same else None

    def _scores(
        self, i: int, z: torch.Tensor, ell: torch.Tensor, tokens: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """Member ``i``'s attention scores [H, n] with clipped z-scores z [n] and log-coverage
        ell [n]: of every region (``tokens`` None: from the precomputed projections, read
        once), or of gathered regions whose (A, B) rows ``tokens`` are given (their tokens
        normalised and projected here: a few rows cost less to project than to gather)."""
        n, g = len(z), self.gate
        if tokens is None:
            q = self.quad[i]
            var = q[0] + z * (q[1] * z + q[2] + q[4] * ell) + ell * (q[3] + self.cc[i] * ell)
            rstd = torch.rsqrt(var + self.ln_eps)
            coef = torch.stack([rstd * ell, torch.ones_like(ell)], 1)  # [n, 2]
        scores = torch.empty(self.heads, n)
        buf = torch.empty(min(n, self.CHUNK), 2 * g)
        for lo in range(0, n, self.CHUNK):
            hi = min(n, lo + self.CHUNK)
            b = buf[: hi - lo]
            if tokens is None:
                # One pass over the precomputed projections; the rest stays in cache.
                torch.addcmul(self.pa[i][lo:hi], self.pb[i][lo:hi], z[lo:hi, None], out=b)
                b.mul_(rstd[lo:hi, None]).addmm_(coef[lo:hi], self.pcb[i])
            else:
                h = tokens[0][lo:hi] + z[lo:hi, None] * tokens[1][lo:hi] + ell[lo:hi, None] * self.c_tok[i]
                torch.addmm(self.gate_b[i], F.layer_norm(h, (self.dim,)), self.gate_w[i].T, out=b)
            b.sigmoid_()
            gated = b[:, :g].sub_(0.5).mul_(b[:, g:])  # tanh(v) sigmoid(u) / 2
            torch.mm(self.score_w[i], gated.T, out=scores[:, lo:hi])
        return scores + self.members[i].attn_w.bias[:, None]

    def _attend(self, x: torch.Tensor, cov: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
        """One sample's means, coverage [R] -> region-mean projection [M, hidden0] and pooled
        tokens [M, H * D]; None when no region is observed (the members' forward then)."""
        n_regions = x.shape[0]
        observed = torch.isfinite(x)
        n = int(observed.sum())
        if n == 0:
            return None
        # Few observed regions: gather them. Many: every region, the unobserved ones masked
        # from attention as in the members' forward (gathering most rows costs more).
        gather = self.DENSE * n <= n_regions
        idx = observed.nonzero().squeeze(1) if gather else None
        masked = None if gather or n == n_regions else ~observed
        xo, co = (x[idx], cov[idx]) if gather else (x, cov)
        ell = torch.log1p(co) * self.cov_scale  # [n]
        hidden, pooled = [], []
        for i, m in enumerate(self.members):
            std = m.standardise
            mu, sd = (
                (std.mu.index_select(0, idx), std.sd.index_select(0, idx)) if gather else (std.mu, std.sd)
            )
            z = (xo - mu) / sd
            if masked is not None:
                z = torch.where(masked, 0.0, z)  # as the members' z of an unobserved region
            if self.z_clip > 0:
                z = self.z_clip * torch.tanh(z / self.z_clip)
            a, b = self.a_tok[i], self.b_tok[i]
            if gather:
                a, b = a.index_select(0, idx), b.index_select(0, idx)
            scores = self._scores(i, z, ell, (a, b) if gather else None)
            if masked is not None:
                scores.masked_fill_(masked, -1e4)  # weight exp(-1e4) = 0, as in the members
            wt = torch.softmax(scores, dim=1)  # [H, n]
            p = wt @ a + (wt * z) @ b + (wt @ ell)[:, None] * self.c_tok[i]
            pooled.append(p.flatten())
            if not gather:
                h = torch.mv(m.input_proj.weight, z)  # [hidden0, R]: reads every weight
            elif self.GATHER * n > n_regions:
                zin = z.new_zeros(n_regions)
                zin[idx] = z
                h = torch.mv(m.input_proj.weight, zin)
            else:  # the observed regions' rows of the transposed weights
                h = torch.mv(self.in_wt[i].index_select(0, idx).T, z)
            hidden.append(h + m.input_proj.bias)
        return torch.stack(hidden), torch.stack(pooled)

    def _read_logits(self, means: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        """The read-likelihood pathway of each member [M, S, C]."""
        n_samples = means.shape[0]
        lls = torch.empty(len(self.reads), n_samples, self.reads[0].a.shape[0])
        feats = torch.empty(n_samples, 2)
        for s in range(n_samples):
            x, cov = means[s], coverage[s]
            # As the members count reads: k and d are 0 where unobserved.
            observed = torch.isfinite(x) & (cov > 0)
            d = torch.where(observed, cov, 0.0)
            n_obs = observed.sum().float()
            if self.DENSE * int(n_obs) <= len(x):  # few observed regions: their terms only
                idx = observed.nonzero().squeeze(1)
                ki, di = torch.round(x[idx] * d[idx]), d[idx]
                for g, table in enumerate(self.reads):
                    lls[g, s] = table.log_likelihood_of(idx, ki, di)
            else:
                k = torch.where(observed, torch.round(torch.nan_to_num(x) * d), 0.0)
                for g, table in enumerate(self.reads):
                    lls[g, s] = table.log_likelihood(observed, k, d)
            feats[s, 0] = torch.log1p(n_obs)
            feats[s, 1] = torch.log1p(d.sum() / n_obs.clamp(min=1))
        lls = lls - lls.mean(-1, keepdim=True)
        out = []
        for m, g in zip(self.members, self.read_group, strict=True):
            gate = 10 * m.reads.gate
            weight = torch.exp(torch.clamp(gate[0] + feats @ gate[1:], -12.0, 4.0))
            out.append(weight[:, None] * lls[g])
        return torch.stack(out)

    @torch.inference_mode()
    def proba(self, means: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        """means (NaN = unobserved), coverage float32 [S, R] -> probabilities [M, S, C]."""
        means, coverage = means.float(), coverage.float()
        n_samples = means.shape[0]
        parts = [self._attend(means[s], coverage[s]) for s in range(n_samples)]
        seen = [s for s, p in enumerate(parts) if p is not None]
        out = torch.empty(len(self.members), n_samples, self.members[0].body[-1].out_features)
        if seen:
            hidden = torch.stack([parts[s][0] for s in seen], 1)
            pooled = torch.stack([parts[s][1] for s in seen], 1)
            logits = torch.stack(
                [
                    m.body(hidden[i] + m.pooled_proj(m.pooled_norm(pooled[i])))
                    for i, m in enumerate(self.members)
                ]
            )
            if self.reads:
                logits += self._read_logits(means[seen], coverage[seen])
            out[:, seen] = logits.float()
        for s in range(n_samples):
            if parts[s] is None:  # no observed region: the members' own forward
                out[:, s] = torch.stack([m(means[s : s + 1], coverage[s : s + 1])[0] for m in self.members])
        return torch.softmax(out, dim=-1)


class MaskedEnsemble:
    """Eval-mode forward of masked single-layer members (:class:`MaskedLinear`) that share
    their features (the same encoding and training split's region means, SDs and
    concentrations, as an ensemble's members do): the features of a query are computed once, not once per member, and every
    member's logits come from one matrix product with the members' weights stacked
    [M * C, 3R] (the same bytes read, one pass). At 51,089 regions and 5 members this is
    what a full-coverage query costs instead of five forwards (docs/predict.md, Latency).

    :meth:`build` returns None where the members are not all masked models in eval mode or
    standardise differently (then the members' own forward is used). :meth:`proba` gives
    probabilities [M, S, C] float32, the members' own up to float rounding (tested in
    tests/test_predict_tissue.py).
    """

    def __init__(self, members: list[MaskedLinear]) -> None:
        self.members = members
        self.n_classes = members[0].linear.out_features
        with torch.no_grad():
            self.weight = torch.cat([m.linear.weight.detach().float() for m in members]).contiguous()
            self.bias = torch.cat([m.linear.bias.detach().float() for m in members])

    @classmethod
    def build(cls, members: list[torch.nn.Module]) -> MaskedEnsemble | None:
        if not members or not all(isinstance(m, MaskedLinear) and not m.training for m in members):
            return None
        m0 = members[0]
        s0 = m0.standardise
        same = all(
            m.encoding == m0.encoding
            and torch.equal(m.standardise.mu, s0.mu)
            and torch.equal(m.standardise.sd, s0.sd)
            and m.standardise.z_clip == s0.z_clip
            and m.standardise.cov_scale == s0.cov_scale
            and (m.encoding != "counts" or torch.equal(m.kappa, m0.kappa))
            for m in members
        )
        return cls(members) if same else None  # type: ignore[arg-type]

    # Samples per step: the features of a step are [CHUNK, 3R] float32 (39 MB at 51,089
    # regions), so a file of hundreds of samples does not hold them all at once.
    CHUNK = 64

    def proba(self, means: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
        """means (NaN = unobserved), coverage float32 [S, R] -> probabilities [M, S, C]."""
        out = torch.empty(len(self.members), len(means), self.n_classes)
        with torch.no_grad():
            for start in range(0, len(means), self.CHUNK):
                part = slice(start, start + self.CHUNK)
                x = self.members[0].features(means[part].float(), coverage[part].float())
                logits = F.linear(x, self.weight, self.bias)  # [s, M * C]
                out[:, part] = logits.view(len(x), len(self.members), self.n_classes).transpose(0, 1)
        return torch.softmax(out, dim=-1)
