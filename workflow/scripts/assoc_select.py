from genomelab.assoc.steps import select_step
from genomelab.entry import run_rule

run_rule(snakemake, select_step)  # noqa: F821 - injected by Snakemake
