# The gate before GPU training: one per module, reading that module's diagnostics JSON files.


# Seconds of work on small files: run on the submit host, not as cluster jobs.
localrules:
    gate,


rule gate:
    """Stop before GPU training when a blocking diagnostic failed (diagnostics.strict)."""
    input:
        lambda wc: DIAGNOSTICS[wc.module],
    output:
        f"{RESULTS}/{{module}}/diagnostics/gate.json",
    log:
        f"{LOGS}/{{module}}/gate.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=500,
        runtime=5,
    params:
        strict=config["diagnostics"]["strict"],
    script:
        "../scripts/run_step.py"
