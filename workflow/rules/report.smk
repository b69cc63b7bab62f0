# Run-level summary over every enabled module.


rule report_summary:
    input:
        summaries=lambda wc: [f"{RESULTS}/{m}/summary.json" for m in ENABLED],
        versions=f"{RESULTS}/report/software_versions.json",
    output:
        md=f"{RESULTS}/report/summary.md",
        json=f"{RESULTS}/report/summary.json",
    log:
        f"{LOGS}/report/summary.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../scripts/report_summary.py"


rule report_software_versions:
    output:
        f"{RESULTS}/report/software_versions.json",
    log:
        f"{LOGS}/report/software_versions.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        config=config_json(config),
    script:
        "../scripts/report_versions.py"
