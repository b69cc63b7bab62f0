from genomelab.entry import run_rule
from genomelab.tissue.steps import train_step

run_rule(snakemake, train_step)  # noqa: F821 - injected by Snakemake
