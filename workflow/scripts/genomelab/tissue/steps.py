"""Snakemake-facing steps of the tissue module: unpack ``smk`` and call typed functions."""

from __future__ import annotations

from typing import Any

from genomelab.tissue.features import extract_features_from_hdf5, extract_features_from_sheet
from genomelab.tissue.simulate import SimulationConfig, simulate_dataset


def simulate_step(smk: Any) -> None:
    cfg = SimulationConfig(**smk.params.simulate, seed=int(smk.params.seed))
    simulate_dataset(cfg, smk.params.out_dir)


def features_step(smk: Any) -> None:
    if smk.params.hdf5:
        extract_features_from_hdf5(smk.params.hdf5, smk.output.h5, sheet=smk.params.sheet or None)
    else:
        extract_features_from_sheet(smk.input.sheet, smk.output.h5, n_positions=int(smk.params.n_positions))
