from genomelab.deconv.steps import compare_step
from genomelab.entry import run_rule

run_rule(snakemake, compare_step)  # noqa: F821 - injected by Snakemake
