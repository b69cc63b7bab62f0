from genomelab.entry import run_rule
from genomelab.regulon.steps import evaluate_step

run_rule(snakemake, evaluate_step)  # noqa: F821 - injected by Snakemake
