from genomelab.entry import run_rule
from genomelab.tissue.steps import splits_step

run_rule(snakemake, splits_step)  # noqa: F821 - injected by Snakemake
