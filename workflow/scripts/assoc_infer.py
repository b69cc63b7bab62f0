from genomelab.assoc.steps import infer_step
from genomelab.entry import run_rule

run_rule(snakemake, infer_step)  # noqa: F821 - injected by Snakemake
