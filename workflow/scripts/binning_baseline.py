from genomelab.binning.train_steps import baseline_step
from genomelab.entry import run_rule

run_rule(snakemake, baseline_step)  # noqa: F821 - injected by Snakemake
