from genomelab.assoc.steps import train_step
from genomelab.entry import run_rule

run_rule(snakemake, train_step)  # noqa: F821 - injected by Snakemake
