from genomelab.entry import run_rule
from genomelab.ingest.steps import sheet_step

run_rule(snakemake, sheet_step)  # noqa: F821 - injected by Snakemake
