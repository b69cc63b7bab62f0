"""Deconvolve new samples with a trained deconv network.

Files: :func:`genomelab.deconv.infer.infer` (the ``deconv_infer`` rule's function, unchanged:
network, NNLS and the weighted NNLS with an offset side by side against the reference).
Arrays (the server): the network, with input regions joined to the model's by ID as the
file path joins them, and both NNLS against the model's reference
(:meth:`DeconvPredictor.nnls_reference`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from genomelab.io.ids import IdIndex, IdMatch, check_same, match_ids
from genomelab.train.device import resolve_device

# Output files of a deconv prediction, in its folder (the names deconv_infer writes).
FILES = {
    "nnls": "nnls_proportions.csv",
    "weighted": "weighted_nnls_proportions.csv",
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
        self.device = resolve_device(str(device))
        self.model.to(self.device)
        self.regions = np.asarray(self.exported.ids["regions"])
        self.region_index = IdIndex(self.regions)  # built once: requests are matched against it
        self.tissues = list(self.exported.ids["tissues"])

    def predict_arrays(self, betas: np.ndarray) -> np.ndarray:
        """Proportions float64 [S, T] of betas [S, R] in the model's region order (NaN missing)."""
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(betas, dtype=np.float32), device=self.device)
            return self.model.predict(x).float().cpu().numpy().astype(np.float64)

    def align(
        self, betas: np.ndarray, regions: np.ndarray, min_match: float, source: str
    ) -> tuple[np.ndarray, IdMatch]:
        """Betas [S, R_in] joined by ID to the model's regions: float64 [S, R] (NaN absent)."""
        match = match_ids(self.region_index, regions, "regions", source, min_match)
        aligned = np.full((betas.shape[0], len(self.regions)), np.nan, np.float64)
        found = match.index >= 0
        aligned[:, found] = betas[:, match.index[found]]
        return aligned, match

    def predict(
        self, betas: np.ndarray, regions: np.ndarray, min_match: float, source: str
    ) -> tuple[np.ndarray, IdMatch]:
        """:meth:`align`, then :meth:`predict_arrays`."""
        aligned, match = self.align(betas, regions, min_match, source)
        return self.predict_arrays(aligned), match

    def nnls_reference(self, path: str | os.PathLike | None) -> tuple[np.ndarray, dict[str, Any]]:
        """The reference profiles float64 [R, T] for NNLS beside the network, and what they are.

        ``path`` (the run's ``deconv/reference/reference.tsv``) must hold the model's regions
        and tissues in order and, for a model with an NNLS prior, the profiles the prior was
        trained with. Without ``path`` the prior's own profiles are used (stored as float32:
        NNLS then agrees with ``deconv_infer`` on the file to about 1e-6)."""
        from genomelab.deconv.model import check_prior_reference
        from genomelab.deconv.reference import load_reference

        prior = self.model.reference.double().cpu().numpy() if hasattr(self.model, "reference") else None
        if path is None:
            if prior is None:
                raise ValueError(
                    f"{self.path} has no NNLS prior, so it carries no reference: give the run's "
                    "deconv/reference/reference.tsv (--reference) for NNLS beside the network"
                )
            profiles, source = prior, f"{self.path} (the NNLS prior's profiles)"
        else:
            ref = load_reference(path)
            check_same(ref.regions, self.regions, "reference regions", str(path))
            check_same(ref.tissues, self.tissues, "reference tissues", str(path))
            check_prior_reference(self.model, ref.profiles, str(path))
            profiles, source = ref.profiles, str(path)
        digest = hashlib.sha256(np.ascontiguousarray(profiles, "<f4").tobytes()).hexdigest()[:16]
        info = {
            "source": source,
            "n_regions": int(profiles.shape[0]),
            "n_tissues": int(profiles.shape[1]),
            # Of the profiles rounded to float32, so the file and the prior give the same.
            "profiles_sha256_float32": digest,
        }
        return profiles, info


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
    device: str = "cpu",
) -> dict[str, Any]:
    """The ``deconv_infer`` outputs (:data:`FILES`) for ``inputs``, written into ``out_dir``;
    the network runs on ``device``."""
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
        device=device,
    )
