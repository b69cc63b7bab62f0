# Module tissue: tissue-of-origin classification from per-sample methylation.
# Chain: simulate (or user input) -> features -> splits -> diagnostics -> gate -> baselines
#        + training (file-level models; region-level only as an ablation) -> summary.
TISSUE = config["tissue"]
TISSUE_OUT = f"{RESULTS}/tissue"
TISSUE_MODELS = list(TISSUE["models"])
# Checks with a figure, checks without one, and the model-based overfit check (torch).
TISSUE_PLOT_CHECKS = ["variance", "subtypes", "learnability"]
TISSUE_TEXT_CHECKS = ["labels", "leakage"]
TISSUE_CHECKS = TISSUE_TEXT_CHECKS + TISSUE_PLOT_CHECKS + ["overfit"]
TISSUE_TASK = config_json(
    {
        "label": TISSUE["task"]["label"],
        "subset": TISSUE["task"]["subset"],
        "fractions": TISSUE["task"]["fractions"],
    }
)
TISSUE_MODEL_CONFIGS = {m: TISSUE[m] for m in ("mlp", "attention", "region")}


# Ensemble member indices per model (the region-level ablation is a single run).
TISSUE_MEMBERS = {m: [0] if m == "region" else list(range(TISSUE["ensemble"])) for m in TISSUE_MODEL_CONFIGS}


# What the features step reads: the simulated or user sheet, or a stacked HDF5 (with an
# optional sheet of labels). A user sheet is validated now and its files are inputs too.
if TISSUE["input"]["source"] == "simulate":
    TISSUE_INPUT = {"sheet": f"{TISSUE_OUT}/simulated/samples.tsv"}
    MADE_SHEETS.add(os.path.normpath(TISSUE_INPUT["sheet"]))  # deconv may read it
elif TISSUE["input"]["source"] == "sheet":
    TISSUE_INPUT = {"sheet": TISSUE["input"]["sheet"]}
else:
    TISSUE_INPUT = {"hdf5": TISSUE["input"]["hdf5"]} | (
        {"sheet": TISSUE["input"]["sheet"]} if TISSUE["input"]["sheet"] else {}
    )
# The files a user sheet lists (read and validated now): inputs of the features, so a
# changed NPZ reruns them. A stacked HDF5's sheet only labels its samples.
TISSUE_SHEET_FILES = (
    get_sheet_files(TISSUE["input"]["sheet"])
    if TISSUE["enabled"] and TISSUE["input"]["source"] == "sheet"
    else []
)
if TISSUE["enabled"] and TISSUE["input"]["source"] == "hdf5":
    get_sheet_files(TISSUE["input"]["sheet"], check_files=False)

DIAGNOSTICS["tissue"] = [f"{TISSUE_OUT}/diagnostics/{c}.json" for c in TISSUE_CHECKS]
if TISSUE["enabled"]:
    FINAL_TARGETS["tissue"] = [f"{TISSUE_OUT}/summary.json"]


wildcard_constraints:
    tissue_model="|".join(["mlp", "attention", "region"]),
    tissue_plot_check="|".join(TISSUE_PLOT_CHECKS),
    tissue_text_check="|".join(TISSUE_TEXT_CHECKS),
    tissue_member=r"\d+",


rule tissue_simulate:
    """Simulate per-sample methylation arrays (the demo's input)."""
    output:
        sheet=f"{TISSUE_OUT}/simulated/samples.tsv",
    log:
        f"{LOGS}/tissue/simulate.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        simulate=TISSUE["simulate"],
        seed=config["seed"],
        out_dir=lambda wc, output: str(Path(output.sheet).parent),
    script:
        "../scripts/run_step.py"


rule tissue_features:
    """Per-region mean methylation and coverage of every sample, streamed into one HDF5."""
    input:
        **TISSUE_INPUT,
        files=TISSUE_SHEET_FILES,
    output:
        h5=f"{TISSUE_OUT}/features/region_means.h5",
    log:
        f"{LOGS}/tissue/features.log",
    benchmark:
        f"{RESULTS}/benchmarks/tissue/features.tsv"
    conda:
        ENV_CPU
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        source=TISSUE["input"]["source"],
        sheet=TISSUE["input"]["sheet"],
        n_positions=TISSUE["input"]["n_positions"],
    script:
        "../scripts/run_step.py"


rule tissue_splits:
    """Train/val/test by source sample (augmented copies stay together), stratified by label."""
    input:
        h5=rules.tissue_features.output.h5,
    output:
        tsv=f"{TISSUE_OUT}/splits.tsv",
    log:
        f"{LOGS}/tissue/splits.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        task=TISSUE_TASK,
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule tissue_diagnostic:
    """Label consistency and augmentation leakage (JSON only)."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=rules.tissue_splits.output.tsv,
    output:
        json=f"{TISSUE_OUT}/diagnostics/{{tissue_text_check}}.json",
    log:
        f"{LOGS}/tissue/diagnostics_{{tissue_text_check}}.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        check=lambda wc: wc.tissue_text_check,
        diagnostics=config_json(TISSUE["diagnostics"]),
        task=TISSUE_TASK,
        seed=config["seed"],
        models=TISSUE_MODELS,
    script:
        "../scripts/run_step.py"


rule tissue_diagnostic_plot:
    """Variance ratio, subtype separability, region- vs file-level learnability (JSON + figure)."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=rules.tissue_splits.output.tsv,
    output:
        json=f"{TISSUE_OUT}/diagnostics/{{tissue_plot_check}}.json",
        png=report(
            f"{TISSUE_OUT}/diagnostics/{{tissue_plot_check}}.png",
            category="tissue",
            subcategory="diagnostics",
        ),
    log:
        f"{LOGS}/tissue/diagnostics_{{tissue_plot_check}}.log",
    conda:
        ENV_CPU
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        check=lambda wc: wc.tissue_plot_check,
        diagnostics=config_json(TISSUE["diagnostics"]),
        task=TISSUE_TASK,
        seed=config["seed"],
        models=TISSUE_MODELS,
    script:
        "../scripts/run_step.py"


rule tissue_diagnostic_overfit:
    """Each configured model memorises 10 training samples (its wiring works)."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=rules.tissue_splits.output.tsv,
    output:
        json=f"{TISSUE_OUT}/diagnostics/overfit.json",
    log:
        f"{LOGS}/tissue/diagnostics_overfit.log",
    conda:
        ENV_TORCH
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        check="overfit",
        diagnostics=config_json(TISSUE["diagnostics"]),
        task=TISSUE_TASK,
        seed=config["seed"],
        models=TISSUE_MODELS,
        model_configs=config_json(TISSUE_MODEL_CONFIGS),
    script:
        "../scripts/run_step.py"


rule tissue_baselines:
    """Logistic regression and nearest centroid on region means, on the models' splits."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=rules.tissue_splits.output.tsv,
    output:
        json=f"{TISSUE_OUT}/baselines/metrics.json",
    log:
        f"{LOGS}/tissue/baselines.log",
    benchmark:
        f"{RESULTS}/benchmarks/tissue/baselines.tsv"
    conda:
        ENV_CPU
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        baselines=config_json(TISSUE["baselines"]),
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule tissue_train:
    """Train one ensemble member with the shared engine (GPU when present) after the gate passed."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=rules.tissue_splits.output.tsv,
        gate=gate_input("tissue"),
    output:
        metrics=f"{TISSUE_OUT}/train/{{tissue_model}}/members/{{tissue_member}}/metrics.json",
        model=f"{TISSUE_OUT}/train/{{tissue_model}}/members/{{tissue_member}}/model.pt",
        diagnostics=f"{TISSUE_OUT}/train/{{tissue_model}}/members/{{tissue_member}}/diagnostics.json",
        tensorboard=directory(f"{TISSUE_OUT}/train/{{tissue_model}}/members/{{tissue_member}}/tensorboard"),
    log:
        f"{LOGS}/tissue/train_{{tissue_model}}_{{tissue_member}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tissue/train_{{tissue_model}}_{{tissue_member}}.tsv"
    conda:
        ENV_TORCH
    # One CPU thread: the models are small and data sits in memory; on a GPU node the SLURM
    # profile's cpus_per_gpu applies.
    threads: 1
    resources:
        **train_resources("tissue"),
    params:
        model_config=lambda wc: config_json(TISSUE[wc.tissue_model]),
        train=config_json(TISSUE["train"]),
        state_dir=lambda wc: state_dir("tissue", f"{wc.tissue_model}/{wc.tissue_member}"),
        device=config["device"],
        # Member 0 uses the workflow seed itself, so an ensemble of 1 is the plain run.
        seed=lambda wc: config["seed"] + 1000 * int(wc.tissue_member),
    script:
        "../scripts/run_step.py"


rule tissue_ensemble:
    """Average the members' class probabilities; metrics, model and checks of the ensemble."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=rules.tissue_splits.output.tsv,
        models=lambda wc: expand(
            f"{TISSUE_OUT}/train/{wc.tissue_model}/members/{{i}}/model.pt",
            i=TISSUE_MEMBERS[wc.tissue_model],
        ),
        metrics=lambda wc: expand(
            f"{TISSUE_OUT}/train/{wc.tissue_model}/members/{{i}}/metrics.json",
            i=TISSUE_MEMBERS[wc.tissue_model],
        ),
        diagnostics=lambda wc: expand(
            f"{TISSUE_OUT}/train/{wc.tissue_model}/members/{{i}}/diagnostics.json",
            i=TISSUE_MEMBERS[wc.tissue_model],
        ),
    output:
        metrics=f"{TISSUE_OUT}/train/{{tissue_model}}/metrics.json",
        model=f"{TISSUE_OUT}/train/{{tissue_model}}/model.pt",
        diagnostics=f"{TISSUE_OUT}/train/{{tissue_model}}/diagnostics.json",
    log:
        f"{LOGS}/tissue/ensemble_{{tissue_model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tissue/ensemble_{{tissue_model}}.tsv"
    conda:
        ENV_TORCH
    # Prediction with a few small models on the validation and test files: a CPU job of
    # about 1 GB at 765 samples x 51,089 regions (features, 5 attention models, batches
    # sized to 256 MB); more memory and time on a retry.
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    script:
        "../scripts/run_step.py"


# Seconds of work on small files: run on the submit host, not as cluster jobs.
localrules:
    tissue_summary,


rule tissue_summary:
    """Comparison table (models vs baselines on the test split), plots and summary.json."""
    input:
        splits=rules.tissue_splits.output.tsv,
        baselines=rules.tissue_baselines.output.json,
        metrics=expand(f"{TISSUE_OUT}/train/{{m}}/metrics.json", m=TISSUE_MODELS),
        model_diagnostics=expand(f"{TISSUE_OUT}/train/{{m}}/diagnostics.json", m=TISSUE_MODELS),
        diagnostics=DIAGNOSTICS["tissue"],
    output:
        json=f"{TISSUE_OUT}/summary.json",
        md=f"{TISSUE_OUT}/summary.md",
        table=report(
            f"{TISSUE_OUT}/comparison.tsv",
            category="tissue",
        ),
        plots=report(
            directory(f"{TISSUE_OUT}/plots"),
            patterns=["{name}.png"],
            category="tissue",
            subcategory="plots",
        ),
    log:
        f"{LOGS}/tissue/summary.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        models=TISSUE_MODELS,
        task=TISSUE_TASK,
    script:
        "../scripts/run_step.py"
