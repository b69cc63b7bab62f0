# genomelab: train and audit genomics deep-learning models, each next to a simple baseline.
# Run from this directory, always with a config (none is read by default, so a forgotten
# --configfile stops here instead of running the demo):
#   snakemake --cores 2 --configfile config/demo.yaml     (the embedded demo, CPU; make demo)
#   snakemake --cores 4 --configfile my.yaml              (your data: genomelab init <module>)
#   snakemake --profile profiles/slurm --configfile my.yaml   (cluster; see README)
from pathlib import Path

from snakemake.utils import min_version

min_version("9")


include: "workflow/rules/common.smk"


# The report opens on the run summary once report_summary has written it (the report of a
# finished run); before that, on the plain description.
if Path(f"{RESULTS}/report/landing.rst").exists():

    report: "workflow/report/landing.rst"

else:

    report: "workflow/report/workflow.rst"


# Converts user methylation files into the tissue module's input; its outputs are requested
# by the tissue module when tissue.input points at them.
include: "workflow/rules/ingest.smk"


# Every module lives in its own rule file; each registers its final targets in
# FINAL_TARGETS when enabled in config.
for _module in MODULES:

    include: f"workflow/rules/{_module}.smk"


include: "workflow/rules/gate.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        get_final_targets(),
