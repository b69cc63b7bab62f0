"""The tissue model kinds and their names, without torch.

The CPU rules (diagnostics, baselines, the summary) need to know which kinds read whole files
and what to call them; importing them from :mod:`genomelab.tissue.models` would import torch,
which the CPU conda environment (envs/cpu.yaml) does not have.
"""

from __future__ import annotations

FILE_LEVEL = ("mlp", "attention", "masked", "reads")
REGION_LEVEL = ("region",)
MODEL_KINDS = FILE_LEVEL + REGION_LEVEL
# Fitted in closed form on the CPU (rule tissue_reads), not trained by the engine: one model
# per split, no ensemble members, no training curve.
CLOSED_FORM = ("reads",)
MODEL_TITLES = {
    "mlp": "file-level MLP",
    "attention": "region-attention model",
    "masked": "masked single-layer model",
    "reads": "read-profile model",
    "region": "region-level (ablation)",
}
