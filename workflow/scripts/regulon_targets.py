from genomelab.entry import run_rule
from genomelab.regulon.steps import targets_step

run_rule(snakemake, targets_step)  # noqa: F821 - injected by Snakemake
