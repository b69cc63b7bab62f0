from genomelab.entry import run_rule
from genomelab.ingest.steps import cpg_index_step

run_rule(snakemake, cpg_index_step)  # noqa: F821 - injected by Snakemake
