"""The report rules' steps: the run-level summary and the software-versions record."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def summary_step(smk: Any) -> None:
    from genomelab.report.run import write_run_summary

    write_run_summary(
        list(smk.input.summaries),
        smk.input.versions,
        smk.output.md,
        smk.output.json,
        smk.output.html,
        run=smk.params.run,
        landing_dir=Path(smk.output.landing_rst).parent,
    )


def software_versions_step(smk: Any) -> None:
    from genomelab.report.versions import write_software_versions

    write_software_versions(smk.output[0], smk.params.config)
