from genomelab.entry import run_rule
from genomelab.tissue.steps import features_step

run_rule(snakemake, features_step)  # noqa: F821 - injected by Snakemake
