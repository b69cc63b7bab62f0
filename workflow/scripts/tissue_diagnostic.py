from genomelab.entry import run_rule
from genomelab.tissue.steps import diagnostic_step

run_rule(snakemake, diagnostic_step)  # noqa: F821 - injected by Snakemake
