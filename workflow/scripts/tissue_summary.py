from genomelab.entry import run_rule
from genomelab.tissue.steps import summary_step

run_rule(snakemake, summary_step)  # noqa: F821 - injected by Snakemake
