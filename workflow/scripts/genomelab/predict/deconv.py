"""Deconvolve new samples with a trained deconv network.

Files: :func:`genomelab.deconv.infer.infer` (the ``deconv_infer`` rule's function, unchanged:
network and NNLS side by side against the reference). Arrays (the server): the network
alone, with input regions joined to the model's by ID as the file path joins them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genomelab.predict.common import IdMatch, match_ids

# Output files of a deconv prediction, in its folder (the names deconv_infer writes).
FILES = {
    "nnls": "nnls_proportions.csv",
    "model": "model_proportions.csv",
    "residuals": "residuals.csv",
    "join": "join_report.json",
    "stacked": "stacked.png",
}


class DeconvPredictor:
    """An exported deconv network: sample betas -> tissue proportions."""

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu") -> None:
        from genomelab.deconv.model import load_model

        self.path = str(path)
        self.model, self.exported = load_model(path)
        self.device = torch.device(device)
        self.model.to(self.device)
        self.regions = np.asarray(self.exported.ids["regions"])
        self.tissues = list(self.exported.ids["tissues"])

    def predict_arrays(self, betas: np.ndarray) -> np.ndarray:
        """Proportions float64 [S, T] of betas [S, R] in the model's region order (NaN missing)."""
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(betas, dtype=np.float32), device=self.device)
            return self.model.predict(x).float().cpu().numpy().astype(np.float64)

    def predict(
        self, betas: np.ndarray, regions: np.ndarray, min_match: float, source: str
    ) -> tuple[np.ndarray, IdMatch]:
        """Join betas [S, R_in] to the model's regions, then :meth:`predict_arrays`."""
        match = match_ids(self.regions, regions, "regions", source, min_match)
        aligned = np.full((betas.shape[0], len(self.regions)), np.nan, np.float64)
        found = match.index >= 0
        aligned[:, found] = betas[:, match.index[found]]
        return self.predict_arrays(aligned), match


def predict_files(
    model: str | os.PathLike,
    reference: str | os.PathLike,
    inputs: str | os.PathLike,
    out_dir: str | os.PathLike,
    presence_threshold: float,
    min_match: float,
    unknown_component: bool,
    other_threshold: float,
    truth: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """The ``deconv_infer`` outputs (:data:`FILES`) for ``inputs``, written into ``out_dir``."""
    from genomelab.deconv.infer import infer

    files = {k: str(Path(out_dir) / name) for k, name in FILES.items()}
    return infer(
        model,
        reference,
        inputs,
        files,
        presence_threshold,
        min_match,
        unknown_component,
        other_threshold,
        truth,
    )
