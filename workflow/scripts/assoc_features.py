from genomelab.assoc.steps import features_step
from genomelab.entry import run_rule

run_rule(snakemake, features_step)  # noqa: F821 - injected by Snakemake
