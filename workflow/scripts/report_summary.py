"""Run-level summary: every enabled module's comparisons and diagnostics in one page."""

from genomelab.entry import run_rule
from genomelab.report.run import write_run_summary


def step(smk):
    write_run_summary(
        list(smk.input.summaries), smk.input.versions, smk.output.md, smk.output.json, smk.output.html
    )


run_rule(snakemake, step)  # noqa: F821 - injected by Snakemake
