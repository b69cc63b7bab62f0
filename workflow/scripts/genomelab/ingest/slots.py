"""Per-sample slot accumulation: CpG calls or whole reads into [n_regions, n_positions].

Counts formats add methylated/total counts per slot; read-level formats (wgbstools .pat)
also keep, per slot, the call of one read chosen at random among those covering it. The
choice uses one random key per read (the highest key wins every slot), so neighbouring
slots usually come from the same read and the array keeps within-read co-methylation, as
in the tissue module's read simulator where later reads overwrite earlier ones.

Memory: 17 bytes per slot (float64 methylated, uint32 total, float32 key, int8 call), i.e.
~130 MB for 50,000 regions x 150 slots, independent of the input size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genomelab.config import from_schema

MISSING = 2
CALL_MODES = ("sample", "threshold")


@dataclass(frozen=True)
class CallConfig:
    """How slot counts become 0/1/2 calls.

    ``call``: ``sample`` draws one call per slot with P(methylated) = methylated/total (the
    region mean keeps its expectation, as if one read were sequenced per CpG);
    ``threshold`` calls methylated when methylated/total >= ``threshold`` (deterministic,
    but pulls intermediate regions towards 0 or 1). ``min_coverage``: slots with fewer
    calls are missing (2). For read-level inputs the chosen read's call is used instead.
    """

    call: str = from_schema("ingest.call")
    threshold: float = from_schema("ingest.threshold")
    min_coverage: int = from_schema("ingest.min_coverage")

    def __post_init__(self) -> None:
        if self.call not in CALL_MODES:
            raise ValueError(f"ingest.call must be one of {CALL_MODES}, not {self.call!r}")
        if not 0 < self.threshold <= 1:
            raise ValueError(f"ingest.threshold must be in (0, 1], not {self.threshold}")
        if self.min_coverage < 1:
            raise ValueError(f"ingest.min_coverage must be >= 1, not {self.min_coverage}")


class SlotAccumulator:
    """Counts (and optionally read-level calls) of one sample, flat over [n_regions * n_positions]."""

    def __init__(self, n_regions: int, n_positions: int, read_level: bool = False) -> None:
        self.n_regions, self.n_positions = n_regions, n_positions
        size = n_regions * n_positions
        self.meth = np.zeros(size, dtype=np.float64)
        self.total = np.zeros(size, dtype=np.uint32)
        self.read_level = read_level
        if read_level:
            self.best_key = np.full(size, -1.0, dtype=np.float32)
            self.call = np.full(size, MISSING, dtype=np.int8)

    def add_counts(self, flat: np.ndarray, n_meth: np.ndarray, n_total: np.ndarray) -> None:
        """Add ``n_meth`` [n] methylated of ``n_total`` [n] calls at flat slots ``flat`` [n]."""
        if flat.size == 0:
            return
        # Sorting then reducing touches only the slots of this chunk (np.add.at is ~10x slower
        # and bincount would allocate the whole slot range per chunk).
        order = np.argsort(flat, kind="stable")
        f = flat[order]
        uniq, first = np.unique(f, return_index=True)
        self.meth[uniq] += np.add.reduceat(np.asarray(n_meth, dtype=np.float64)[order], first)
        self.total[uniq] += np.add.reduceat(np.asarray(n_total, dtype=np.int64)[order], first).astype(
            np.uint32
        )

    def add_reads(self, flat: np.ndarray, calls: np.ndarray, keys: np.ndarray) -> None:
        """Offer read-level ``calls`` [n] (0/1) at ``flat`` [n] with their read's ``keys`` [n]."""
        if flat.size == 0:
            return
        order = np.lexsort((keys, flat))
        f, k, c = flat[order], keys[order], calls[order]
        last = np.ones(f.size, dtype=bool)
        last[:-1] = f[1:] != f[:-1]
        f, k, c = f[last], k[last], c[last]
        better = k > self.best_key[f]
        self.best_key[f[better]] = k[better]
        self.call[f[better]] = c[better]

    def finish(self, cfg: CallConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Return ``methylation`` int8 [R, P], ``coverage`` uint32 [R] (calls in the region)
        and ``n_valid`` uint16 [R] (slots with a 0/1 call)."""
        out = np.empty(self.total.size, dtype=np.int8)
        # Blocks bound the float64 temporaries (fraction, random draws) to a few MB.
        block = 1 << 20
        for a in range(0, out.size, block):
            b = min(a + block, out.size)
            covered = self.total[a:b] >= cfg.min_coverage
            if self.read_level:
                calls = self.call[a:b]
            else:
                frac = self.meth[a:b] / np.maximum(self.total[a:b], 1)
                if cfg.call == "threshold":
                    calls = (frac >= cfg.threshold).astype(np.int8)
                else:
                    calls = (rng.random(b - a) < frac).astype(np.int8)
            out[a:b] = np.where(covered, calls, MISSING)
        shape = (self.n_regions, self.n_positions)
        methylation = out.reshape(shape)
        coverage = self.total.reshape(shape).sum(axis=1, dtype=np.uint64)
        coverage = np.minimum(coverage, np.iinfo(np.uint32).max).astype(np.uint32)
        n_valid = (methylation != MISSING).sum(axis=1).astype(np.uint16)
        return methylation, coverage, n_valid

    def region_methylated(self) -> np.ndarray:
        """Methylated calls per region, float64 [n_regions]: the numerator of ``coverage``'s
        fraction over every call (``min_coverage`` does not apply; array betas add their
        value, so for arrays it is the sum of the probes' betas)."""
        return self.meth.reshape(self.n_regions, self.n_positions).sum(axis=1)
