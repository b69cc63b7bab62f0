from genomelab.deconv.steps import nnls_step
from genomelab.entry import run_rule

run_rule(snakemake, nnls_step)  # noqa: F821 - injected by Snakemake
