from genomelab.binning.train_steps import train_step
from genomelab.entry import run_rule

run_rule(snakemake, train_step)  # noqa: F821 - injected by Snakemake
