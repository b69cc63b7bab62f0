from genomelab.binning.train_steps import encode_step
from genomelab.entry import run_rule

run_rule(snakemake, encode_step)  # noqa: F821 - injected by Snakemake
