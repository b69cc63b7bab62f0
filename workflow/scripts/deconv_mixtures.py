from genomelab.deconv.steps import mixtures_step
from genomelab.entry import run_rule

run_rule(snakemake, mixtures_step)  # noqa: F821 - injected by Snakemake
