# genomelab: train and audit genomics deep-learning models, each next to a simple baseline.
# Run from this directory:   snakemake --cores 2            (embedded demo, CPU)
#                            snakemake --profile profiles/slurm   (cluster; see README)
from pathlib import Path

from snakemake.utils import min_version

min_version("9")


configfile: "config/config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
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
