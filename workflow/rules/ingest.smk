# Ingest: standard methylation formats (Bismark, bedMethyl, wgbstools, arrays) into tissue NPZ inputs.
# One job per sample (SLURM parallelises across samples); results/<run>/ingest/samples.tsv is what
# tissue.input.sheet points at to train on ingested data (docs/ingest.md).
INGEST = config["ingest"]
INGEST_OUT = f"{RESULTS}/ingest"
# Conversion options only: moving the sample sheet or changing job resources reruns nothing.
INGEST_PARAMS = config_json(
    {k: v for k, v in INGEST.items() if k not in ("enabled", "samples", "mem_mb", "runtime", "uxm")}
)


if INGEST["enabled"]:
    from genomelab.ingest.sheet import check_labels, check_tissue_input, sample_inputs, workflow_records

    # Read and validated at parse time: a bad sheet stops Snakemake before any job runs.
    # The main process also reads the regions BED and each sample file's first line
    # (chromosome naming); the jobs, which parse the workflow again, leave that to it.
    INGEST_RECORDS = workflow_records(INGEST, main_process=workflow.is_main_process)
    check_tissue_input(INGEST, config["tissue"]["input"], f"{INGEST_OUT}/samples.tsv")
    # Samples without a tissue (new ones, to predict) only where no module trains on them.
    check_labels(INGEST_RECORDS, config, f"{INGEST_OUT}/samples.tsv")
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


# The UXM path (docs/ingest.md, "Real WGBS, the UXM way"): wgbstools .pat.gz or Bismark BAM
# files -> U/X/M fragment counts per marker block, one job per sample -> proportions against
# a block-level atlas. Targets: rule deconv_uxm (or ingest_block_counts' files). deconv_uxm is
# the deconv module's step (genomelab.deconv.uxm); it lives here beside the counts it reads.
UXM = INGEST["uxm"]
UXM_OUT = f"{INGEST_OUT}/uxm"
UXM_PARAMS = config_json(
    {k: v for k, v in UXM.items() if k not in ("enabled", "samples", "mem_mb", "runtime")}
)

if UXM["enabled"]:
    from genomelab.ingest.fragments import uxm_inputs, uxm_records

    # Read and checked at parse time: a bad sheet or a missing key stops before any job.
    UXM_RECORDS = uxm_records(UXM)
    UXM_INDEX = UXM["cpg_index"] or (f"{UXM_OUT}/CpG.bed.gz" if UXM["genome_fasta"] else "")

if UXM["enabled"] and UXM["genome_fasta"] and not UXM["cpg_index"]:

    rule ingest_cpg_bed:
        """The genome's CpG index (wgbstools CpG.bed.gz layout) from its FASTA, for BAM input."""
        input:
            fasta=UXM["genome_fasta"],
        output:
            bed=f"{UXM_OUT}/CpG.bed.gz",
        log:
            f"{LOGS}/ingest/cpg_bed.log",
        benchmark:
            f"{RESULTS}/benchmarks/ingest/cpg_bed.tsv"
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=UXM["mem_mb"],
            runtime=UXM["runtime"],
        params:
            uxm=UXM_PARAMS,
        script:
            "../scripts/run_step.py"


if UXM["enabled"]:

    rule ingest_block_counts:
        """One sample's reads -> U/X/M fragment counts per marker block (TSV) and its QC JSON."""
        input:
            unpack(lambda wc: uxm_inputs(UXM_RECORDS[wc.sample], UXM, UXM_INDEX)),
        output:
            counts=f"{UXM_OUT}/counts/{{sample}}.tsv",
            qc=f"{UXM_OUT}/qc/{{sample}}.json",
        log:
            f"{LOGS}/ingest/block_counts_{{sample}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/ingest/block_counts_{{sample}}.tsv"
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=UXM["mem_mb"],
            runtime=UXM["runtime"],
        params:
            uxm=UXM_PARAMS,
            format=lambda wc: UXM_RECORDS[wc.sample].format,
        script:
            "../scripts/run_step.py"


if UXM["enabled"] and UXM["atlas"]:
    # The proportions are what a UXM run is for: a plain `snakemake --configfile` makes them.
    FINAL_TARGETS["uxm"] = [f"{RESULTS}/deconv/uxm/proportions.csv"]

    rule deconv_uxm:
        """Tissue proportions of every sample: its block counts fitted to the atlas (weighted NNLS)."""
        input:
            **({"markers": UXM["markers"]} if UXM["markers"] else {}),
            atlas=UXM["atlas"],
            counts=expand(f"{UXM_OUT}/counts/{{sample}}.tsv", sample=list(UXM_RECORDS)),
        output:
            csv=f"{RESULTS}/deconv/uxm/proportions.csv",
            json=f"{RESULTS}/deconv/uxm/proportions.json",
        log:
            f"{LOGS}/deconv/uxm.log",
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            uxm=UXM_PARAMS,
            samples=list(UXM_RECORDS) if UXM["enabled"] else [],
        script:
            "../scripts/run_step.py"
