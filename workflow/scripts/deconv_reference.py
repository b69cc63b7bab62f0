from genomelab.deconv.steps import reference_step
from genomelab.entry import run_rule

run_rule(snakemake, reference_step)  # noqa: F821 - injected by Snakemake
