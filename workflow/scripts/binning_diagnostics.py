from genomelab.binning.train_steps import diagnostics_step
from genomelab.entry import run_rule

run_rule(snakemake, diagnostics_step)  # noqa: F821 - injected by Snakemake
