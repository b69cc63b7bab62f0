from genomelab.entry import run_rule
from genomelab.regulon.steps import diagnostics_step

run_rule(snakemake, diagnostics_step)  # noqa: F821 - injected by Snakemake
