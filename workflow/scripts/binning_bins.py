from genomelab.binning.steps import bins_step
from genomelab.entry import run_rule

run_rule(snakemake, bins_step)  # noqa: F821 - injected by Snakemake
