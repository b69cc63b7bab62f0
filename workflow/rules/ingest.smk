# Ingest: standard methylation formats (Bismark, bedMethyl, wgbstools, arrays) into tissue NPZ inputs.
# One job per sample (SLURM parallelises across samples); results/ingest/samples.tsv is what
# tissue.input.sheet points at to train on ingested data (docs/ingest.md).
INGEST = config["ingest"]
INGEST_OUT = f"{RESULTS}/ingest"
INGEST_NEEDS_INDEX = ("wgbs_pat", "wgbs_beta")
# Conversion options only: moving the sample sheet or changing job resources reruns nothing.
INGEST_PARAMS = config_json(
    {k: v for k, v in INGEST.items() if k not in ("enabled", "samples", "mem_mb", "runtime")}
)


def get_ingest_records():
    """The ingest sample sheet, read and validated at parse time (paths, formats, builds)."""
    from genomelab.ingest.sheet import read_ingest_sheet

    for key in ("samples", "regions"):
        if not INGEST[key]:
            raise ValueError(
                f"ingest.enabled is true but ingest.{key} is empty; see config/README.md (ingest)"
            )
    records = read_ingest_sheet(INGEST["samples"], INGEST["genome_build"])
    for rec in records:
        if (rec.format in INGEST_NEEDS_INDEX or INGEST["slots"] == "cpg") and not INGEST["cpg_index"]:
            raise ValueError(
                f"ingest sample {rec.sample} ({rec.format}, slots {INGEST['slots']}) needs "
                "ingest.cpg_index (a wgbstools CpG.bed.gz)"
            )
        if rec.format == "array" and not (rec.probes or INGEST["probes"]):
            raise ValueError(
                f"ingest sample {rec.sample} is an array matrix: set ingest.probes or the "
                "'probes' column of the ingest sample sheet"
            )
    return {rec.sample: rec for rec in records}


def get_ingest_sample_inputs(wildcards):
    rec = INGEST_RECORDS[wildcards.sample]
    inputs = {"data": str(rec.path), "regions": INGEST["regions"]}
    if rec.format in INGEST_NEEDS_INDEX or INGEST["slots"] == "cpg":
        inputs["cpg_index"] = f"{INGEST_OUT}/cpg_index.npz"
    if rec.format == "array":
        inputs["probes"] = str(rec.probes or INGEST["probes"])
    return inputs


if INGEST["enabled"]:
    INGEST_RECORDS = get_ingest_records()
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
            "../scripts/ingest_cpg_index.py"


if INGEST["enabled"]:

    rule ingest_sample:
        """One sample's file -> methylation int8 [n_regions, n_positions] NPZ plus its QC JSON."""
        input:
            unpack(get_ingest_sample_inputs),
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
            "../scripts/ingest_sample.py"

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
            "../scripts/ingest_sheet.py"
