"""Snakemake-facing step of the UXM deconvolution: rule ``deconv_uxm`` (defined in ingest.smk,
beside the block counts it reads) unpacks ``smk`` and calls
:func:`genomelab.deconv.uxm.deconvolve_samples`."""

from __future__ import annotations

from typing import Any

from genomelab.config import param


def uxm_step(smk: Any) -> None:
    from genomelab.deconv.uxm import UxmDeconvConfig, deconvolve_samples, write_proportions

    samples = list(smk.params.samples)
    result, ref, record = deconvolve_samples(
        smk.input.atlas,
        smk.input.markers if "markers" in smk.input.keys() else None,
        list(smk.input.counts),
        samples,
        UxmDeconvConfig.from_dict(param(smk, "uxm")),
    )
    write_proportions(smk.output.csv, smk.output.json, result, ref, samples, record)
