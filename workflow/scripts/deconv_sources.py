from genomelab.deconv.steps import sources_step
from genomelab.entry import run_rule

run_rule(snakemake, sources_step)  # noqa: F821 - injected by Snakemake
