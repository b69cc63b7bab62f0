from genomelab.entry import run_rule
from genomelab.regulon.steps import process_step

run_rule(snakemake, process_step)  # noqa: F821 - injected by Snakemake
