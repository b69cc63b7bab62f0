from genomelab.assoc.steps import data_step
from genomelab.entry import run_rule

run_rule(snakemake, data_step)  # noqa: F821 - injected by Snakemake
