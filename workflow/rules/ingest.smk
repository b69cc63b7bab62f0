# Ingest: standard methylation formats (Bismark, bedMethyl, wgbstools, arrays) into tissue NPZ inputs.
# One job per sample (SLURM parallelises across samples); results/<run>/ingest/samples.tsv is what
# tissue.input.sheet points at to train on ingested data (docs/ingest.md).
INGEST = config["ingest"]
INGEST_OUT = f"{RESULTS}/ingest"
# Conversion options only: moving the sample sheet or changing job resources reruns nothing.
INGEST_PARAMS = config_json(
    {k: v for k, v in INGEST.items() if k not in ("enabled", "samples", "mem_mb", "runtime")}
)


if INGEST["enabled"]:
    from genomelab.ingest.sheet import check_tissue_input, sample_inputs, workflow_records

    # Read and validated at parse time: a bad sheet stops Snakemake before any job runs.
    INGEST_RECORDS = workflow_records(INGEST)
    check_tissue_input(INGEST, config["tissue"]["input"], f"{INGEST_OUT}/samples.tsv")
    # The tissue sheet it writes lists the NPZ files of ingest_sample: tracked through them.
    MADE_SHEETS.add(os.path.normpath(f"{INGEST_OUT}/samples.tsv"))
    FINAL_TARGETS["ingest"] = [f"{INGEST_OUT}/samples.tsv", f"{INGEST_OUT}/summary.json"]

if INGEST["enabled"] and INGEST["cpg_index"]:

    rule ingest_cpg_index:
        """Stream the wgbstools CpG index once and keep the CpGs inside the regions."""
        input:
            index=INGEST["cpg_index"],
            regions=INGEST["regions"],
        output:
            npz=f"{INGEST_OUT}/cpg_index.npz",
        log:
            f"{LOGS}/ingest/cpg_index.log",
        benchmark:
            f"{RESULTS}/benchmarks/ingest/cpg_index.tsv"
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=INGEST["mem_mb"],
            runtime=INGEST["runtime"],
        params:
            ingest=INGEST_PARAMS,
        script:
            "../scripts/run_step.py"


if INGEST["enabled"]:

    rule ingest_sample:
        """One sample's file -> methylation int8 [n_regions, n_positions] NPZ plus its QC JSON."""
        input:
            unpack(lambda wc: sample_inputs(INGEST_RECORDS[wc.sample], INGEST, f"{INGEST_OUT}/cpg_index.npz")),
        output:
            npz=f"{INGEST_OUT}/npz/{{sample}}.npz",
            qc=f"{INGEST_OUT}/qc/{{sample}}.json",
        log:
            f"{LOGS}/ingest/sample_{{sample}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/ingest/sample_{{sample}}.tsv"
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=INGEST["mem_mb"],
            runtime=INGEST["runtime"],
        params:
            ingest=INGEST_PARAMS,
            format=lambda wc: INGEST_RECORDS[wc.sample].format,
            column=lambda wc: INGEST_RECORDS[wc.sample].column,
            seed=config["seed"],
        script:
            "../scripts/run_step.py"

    # A table over the per-sample QC files: run on the submit host, not as a cluster job.
    localrules:
        ingest_sheet,

    rule ingest_sheet:
        """The tissue sample sheet over every ingested sample, the QC diagnostics and the summary."""
        input:
            sheet=INGEST["samples"],
            npz=expand(f"{INGEST_OUT}/npz/{{sample}}.npz", sample=list(INGEST_RECORDS)),
            qc=expand(f"{INGEST_OUT}/qc/{{sample}}.json", sample=list(INGEST_RECORDS)),
        output:
            sheet=f"{INGEST_OUT}/samples.tsv",
            summary=f"{INGEST_OUT}/summary.json",
            md=f"{INGEST_OUT}/summary.md",
            diagnostics=f"{INGEST_OUT}/diagnostics/ingest.json",
        log:
            f"{LOGS}/ingest/sheet.log",
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            ingest=INGEST_PARAMS,
        script:
            "../scripts/run_step.py"
