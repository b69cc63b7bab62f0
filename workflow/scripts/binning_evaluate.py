from genomelab.binning.steps import evaluate_step
from genomelab.entry import run_rule

run_rule(snakemake, evaluate_step)  # noqa: F821 - injected by Snakemake
