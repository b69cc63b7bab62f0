"""Annotation input channels: where genes lie on each strand, so the network sees gene boundaries.

The genes the module already reads (``genes.tsv``: start, end, strand) become six per-bp
flags, stored packed as the bits of one uint8 per bp (``targets.h5``: ``annotation``):

==== =============== ==========================================================
bit  channel         set at
==== =============== ==========================================================
0    body +          every bp of a plus-strand gene
1    body -          every bp of a minus-strand gene
2    start +         the 5' bp of a plus-strand gene (its ``start``)
3    start -         the 5' bp of a minus-strand gene (``end - 1``)
4    end +           the 3' bp of a plus-strand gene (``end - 1``)
5    end -           the 3' bp of a minus-strand gene (its ``start``)
==== =============== ==========================================================

Channels come in (plus, minus) pairs, so the reverse complement of a window is "reverse
positions, swap each pair" (:func:`rc_annotation`), the rule of every strand-aware track.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import torch

CHANNELS = ("body+", "body-", "start+", "start-", "end+", "end-")
N_ANNOTATION = len(CHANNELS)
# Input sets of ``regulon.model.inputs`` and their channel counts.
INPUTS = {"sequence": 4, "sequence+annotation": 4 + N_ANNOTATION}
# Bit i of a packed value after reverse complement: plus and minus of each pair swap.
_RC_BITS = (1, 0, 3, 2, 5, 4)
_RC_LUT = np.array(
    [sum(((v >> i) & 1) << _RC_BITS[i] for i in range(N_ANNOTATION)) for v in range(256)], dtype=np.uint8
)


def annotation_track(genes: pd.DataFrame, start: int, end: int) -> np.ndarray:
    """Packed annotation flags [end - start] uint8 of the region ``[start, end)``.

    ``genes``: columns start, end (0-based, half-open), strand ('+'/'-'); genes partly
    outside the region are clipped, and their 5'/3' flags set only when that bp is inside.
    """
    n = end - start
    diff = np.zeros((2, n + 1), dtype=np.int32)
    flags = np.zeros(n, dtype=np.uint8)
    for row, strand in enumerate("+-"):
        g = genes[genes["strand"] == strand]
        s = g["start"].to_numpy(np.int64) - start
        e = g["end"].to_numpy(np.int64) - start
        np.add.at(diff[row], np.clip(s, 0, n), 1)
        np.add.at(diff[row], np.clip(e, 0, n), -1)
        five, three = (s, e - 1) if strand == "+" else (e - 1, s)
        for pos, bit in ((five, 2 + row), (three, 4 + row)):
            pos = pos[(pos >= 0) & (pos < n)]
            flags[pos] |= np.uint8(1 << bit)
    body = np.cumsum(diff[:, :-1], axis=1) > 0
    flags |= body[0].astype(np.uint8) | (body[1].astype(np.uint8) << 1)
    return flags


def rc_annotation_np(flags: np.ndarray) -> np.ndarray:
    """[..., L] packed flags -> those of the reverse complement (numpy)."""
    return _RC_LUT[flags[..., ::-1]]


def rc_annotation(flags: torch.Tensor) -> torch.Tensor:
    """[B, L] packed flags -> those of the reverse complement (torch)."""
    import torch  # here, not at the top: the CPU rules import this module without torch

    lut = torch.from_numpy(_RC_LUT).to(flags.device)
    return lut[flags.flip(-1).long()].to(flags.dtype)


def unpack(flags: torch.Tensor) -> torch.Tensor:
    """[B, L] packed flags -> [B, 6, L] float 0/1 channels in :data:`CHANNELS` order."""
    import torch

    bits = torch.arange(N_ANNOTATION, device=flags.device)
    return ((flags.long()[:, None, :] >> bits[None, :, None]) & 1).float()
