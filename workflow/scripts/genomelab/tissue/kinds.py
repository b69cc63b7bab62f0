"""The tissue model kinds and their names, without torch.

The CPU rules (diagnostics, baselines, the summary) need to know which kinds read whole files
and what to call them; importing them from :mod:`genomelab.tissue.models` would import torch,
which the CPU conda environment (envs/cpu.yaml) does not have.
"""

from __future__ import annotations

FILE_LEVEL = ("mlp", "attention", "masked", "reads", "routed")
REGION_LEVEL = ("region",)
MODEL_KINDS = FILE_LEVEL + REGION_LEVEL
# Fitted in closed form on the CPU (rule tissue_reads), not trained by the engine: one model
# per split, no ensemble members, no training curve.
CLOSED_FORM = ("reads",)
# Made from two other configured models' exported files (rule tissue_route), not trained:
# no ensemble members, no training curve, no overfit check of its own (its parts have theirs).
COMBINED = ("routed",)
# The kinds a routed model can send samples to.
ROUTABLE = ("mlp", "attention", "masked", "reads")
MODEL_TITLES = {
    "mlp": "file-level MLP",
    "attention": "region-attention model",
    "masked": "masked single-layer model",
    "reads": "read-profile model",
    "routed": "routed model",
    "region": "region-level (ablation)",
}
