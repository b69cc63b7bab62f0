# Run-level summary over every enabled module, and the software-versions record.
from genomelab.report.versions import reported_config


# Seconds of work on small files: run on the submit host, not as cluster jobs.
localrules:
    report_summary,
    report_software_versions,


rule report_summary:
    input:
        summaries=lambda wc: [f"{RESULTS}/{m}/summary.json" for m in REPORTED],
        versions=f"{RESULTS}/report/software_versions.json",
    output:
        md=f"{RESULTS}/report/summary.md",
        json=f"{RESULTS}/report/summary.json",
        html=report(
            f"{RESULTS}/report/summary.html",
            caption="../report/summary.rst",
            category="Summary",
            labels={"what": "run summary"},
        ),
        # The report's landing page (workflow/report/landing.rst includes it; `genomelab
        # report` passes landing.yaml as --report-metadata so the report opens on it).
        landing_rst=f"{RESULTS}/report/landing.rst",
        landing_yaml=f"{RESULTS}/report/landing.yaml",
    log:
        f"{LOGS}/report/summary.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        run=RUN,
    script:
        "../scripts/run_step.py"


rule report_software_versions:
    output:
        report(
            f"{RESULTS}/report/software_versions.json",
            caption="../report/versions.rst",
            category="Reproducibility",
            labels={"what": "software versions"},
        ),
    log:
        f"{LOGS}/report/software_versions.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        # The config the record hashes (and takes the seed from): all but the modules'
        # predict sections, so that pointing a finished run's predict rules at new inputs
        # reruns neither this record nor the summary that reads it.
        config=config_json(reported_config(config, (*MODULES, "ingest"))),
    script:
        "../scripts/run_step.py"
