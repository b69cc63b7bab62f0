"""Gate rule: read a module's diagnostics and stop before training if a blocking one failed."""

from genomelab.diagnostics import gate
from genomelab.entry import run_rule
from genomelab.io.atomic import atomic_write_json


def step(smk):
    summary = gate(list(smk.input), strict=bool(smk.params.strict))
    atomic_write_json(smk.output[0], summary)


run_rule(snakemake, step)  # noqa: F821 - injected by Snakemake
