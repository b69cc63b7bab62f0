from genomelab.entry import run_rule
from genomelab.ingest.steps import sample_step

run_rule(snakemake, sample_step)  # noqa: F821 - injected by Snakemake
