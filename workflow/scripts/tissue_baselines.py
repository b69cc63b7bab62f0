from genomelab.entry import run_rule
from genomelab.tissue.steps import baselines_step

run_rule(snakemake, baselines_step)  # noqa: F821 - injected by Snakemake
