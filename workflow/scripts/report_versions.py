"""Software-versions record: packages, torch/CUDA, GPU, git commit, config hash."""

from genomelab.entry import run_rule
from genomelab.report.versions import write_software_versions


def step(smk):
    write_software_versions(smk.output[0], smk.params.config)


run_rule(snakemake, step)  # noqa: F821 - injected by Snakemake
