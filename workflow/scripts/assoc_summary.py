from genomelab.assoc.steps import summary_step
from genomelab.entry import run_rule

run_rule(snakemake, summary_step)  # noqa: F821 - injected by Snakemake
