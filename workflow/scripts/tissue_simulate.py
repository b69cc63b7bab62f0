from genomelab.entry import run_rule
from genomelab.tissue.steps import simulate_step

run_rule(snakemake, simulate_step)  # noqa: F821 - injected by Snakemake
