from genomelab.deconv.steps import simulate_step
from genomelab.entry import run_rule

run_rule(snakemake, simulate_step)  # noqa: F821 - injected by Snakemake
