# Module tissue: tissue-of-origin classification from per-sample methylation.
TISSUE = config["tissue"]
TISSUE_OUT = f"{RESULTS}/tissue"


def get_tissue_sheet():
    """The sample sheet the features step reads: simulated (demo) or the user's."""
    if TISSUE["input"]["source"] == "simulate":
        return f"{TISSUE_OUT}/simulated/samples.tsv"
    if TISSUE["input"]["source"] == "sheet":
        return TISSUE["input"]["sheet"]
    return []


rule tissue_simulate:
    """Simulate per-sample methylation arrays (the demo's input)."""
    output:
        sheet=f"{TISSUE_OUT}/simulated/samples.tsv",
    params:
        simulate=TISSUE["simulate"],
        seed=config["seed"],
        out_dir=f"{TISSUE_OUT}/simulated",
    log:
        f"{LOGS}/tissue/simulate.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../scripts/tissue_simulate.py"


rule tissue_features:
    """Per-region mean methylation and coverage of every sample, streamed into one HDF5."""
    input:
        sheet=get_tissue_sheet(),
    output:
        h5=f"{TISSUE_OUT}/features/region_means.h5",
    params:
        hdf5=TISSUE["input"]["hdf5"],
        sheet=TISSUE["input"]["sheet"],
        n_positions=TISSUE["input"]["n_positions"],
    log:
        f"{LOGS}/tissue/features.log",
    benchmark:
        f"{RESULTS}/benchmarks/tissue/features.tsv"
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
    script:
        "../scripts/tissue_features.py"
