from genomelab.assoc.steps import baselines_step
from genomelab.entry import run_rule

run_rule(snakemake, baselines_step)  # noqa: F821 - injected by Snakemake
