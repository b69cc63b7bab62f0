from genomelab.binning.steps import shred_step
from genomelab.entry import run_rule

run_rule(snakemake, shred_step)  # noqa: F821 - injected by Snakemake
