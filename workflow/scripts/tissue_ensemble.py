from genomelab.entry import run_rule
from genomelab.tissue.steps import ensemble_step

run_rule(snakemake, ensemble_step)  # noqa: F821 - injected by Snakemake
