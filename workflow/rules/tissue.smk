# Module tissue: tissue-of-origin classification from per-sample methylation.
# Chain: simulate (or user input) -> features -> splits -> diagnostics -> one gate per model
#        -> baselines + training (file-level models; region-level only as an ablation) -> summary.
# Each model's training waits for its own gate (the module-level checks and that model's
# overfit check), so adding or removing a model in tissue.models trains that model only.
# With evaluation.folds K > 1 the splits rule writes folds.tsv and one splits table per fold,
# and baselines, training and ensembles run once per fold under folds/<fold>/ (one job each);
# with K = 1 every path is the single split's.
from genomelab.io.sheets import is_sample_sheet
from genomelab.io.streams import check_config_files
from genomelab.tissue.kinds import MODEL_KINDS, REGION_LEVEL

TISSUE = config["tissue"]
TISSUE_OUT = f"{RESULTS}/tissue"
TISSUE_MODELS = list(TISSUE["models"])
# Checks with a figure and checks without one: the module-level checks, one job each. The
# model-based overfit check (torch) is one job per model, diagnostics/overfit_<model>.json.
TISSUE_PLOT_CHECKS = ["variance", "subtypes", "learnability"]
TISSUE_TEXT_CHECKS = ["labels", "leakage"]
# Of the module-level checks only learnability reads the models, and only which configured
# ones are region-level: adding or removing a file-level model leaves every one of them alone.
TISSUE_REGION_MODELS = [m for m in TISSUE_MODELS if m in REGION_LEVEL]
TISSUE_TASK = config_json(
    {
        "label": TISSUE["task"]["label"],
        "subset": TISSUE["task"]["subset"],
        "fractions": TISSUE["task"]["fractions"],
        "select_regions": TISSUE["task"]["select_regions"],
    }
)
TISSUE_MODEL_CONFIGS = {m: TISSUE[m] for m in ("mlp", "attention", "masked", "reads", "region")}


# Folds: TISSUE_RUN is the folder of one evaluation (a fold's when K > 1, with the
# tissue_fold wildcard); TISSUE_FOLD_LOG prefixes the fold to log and benchmark names, and
# TISSUE_FOLD_STATE to names under the state folder. expand(..., tissue_fold=TISSUE_FOLD_IDS)
# lists a file of every fold (of the single split when K = 1).
TISSUE_FOLDS = TISSUE["evaluation"]["folds"]
TISSUE_FOLD_IDS = list(range(TISSUE_FOLDS))
TISSUE_RUN = TISSUE_OUT if TISSUE_FOLDS == 1 else f"{TISSUE_OUT}/folds/{{tissue_fold}}"
TISSUE_FOLD_LOG = "" if TISSUE_FOLDS == 1 else "fold{tissue_fold}_"
TISSUE_FOLD_STATE = "" if TISSUE_FOLDS == 1 else "folds/{tissue_fold}/"
# The diagnostics look at one split: the only one, or fold 0's.
TISSUE_DIAG_SPLITS = f"{TISSUE_OUT}/splits.tsv" if TISSUE_FOLDS == 1 else f"{TISSUE_OUT}/folds/0/splits.tsv"
# K > 1: the folds table (each sample's test fold) that the summary pools predictions by.
TISSUE_FOLDS_TABLE = {} if TISSUE_FOLDS == 1 else {"folds": f"{TISSUE_OUT}/folds.tsv"}


# A given split or folds: the splits file, and the user's sheet (its split/fold column).
TISSUE_SPLIT_SOURCES = {}
if TISSUE["input"]["splits"]:
    TISSUE_SPLIT_SOURCES["given"] = TISSUE["input"]["splits"]
if TISSUE["input"]["source"] != "simulate" and TISSUE["input"]["sheet"]:
    TISSUE_SPLIT_SOURCES["sheet"] = TISSUE["input"]["sheet"]


# Ensemble member indices per engine-trained model (the region-level ablation is a single
# run; the read-profile model is fitted by tissue_reads, not trained by members).
TISSUE_MEMBERS = {
    m: [0] if m == "region" else list(range(TISSUE["ensemble"])) for m in TISSUE_MODEL_CONFIGS if m != "reads"
}


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
if TISSUE["enabled"]:
    from genomelab.tissue.task import check_input as check_tissue_input

    # The input keys and files (a misspelt one named by its key), labels, subset and a given
    # split checked now, not after the features of every sample.
    check_tissue_input(TISSUE, os.path.normpath(TISSUE["input"]["sheet"] or ".") not in MADE_SHEETS)
# The files a user sheet lists (read and validated now): inputs of the features, so a
# changed NPZ reruns them. A stacked HDF5's sheet only labels its samples.
TISSUE_SHEET_FILES = (
    get_sheet_files(TISSUE["input"]["sheet"])
    if TISSUE["enabled"] and TISSUE["input"]["source"] == "sheet"
    else []
)
if TISSUE["enabled"] and TISSUE["input"]["source"] == "hdf5":
    get_sheet_files(TISSUE["input"]["sheet"], check_files=False)

# Every model's gate reads the module-level checks and its own overfit check; the module's
# gate.json (shared rule gate) reads them all, for the summary and the reports only.
TISSUE_MODULE_CHECKS = [f"{TISSUE_OUT}/diagnostics/{c}.json" for c in TISSUE_TEXT_CHECKS + TISSUE_PLOT_CHECKS]
DIAGNOSTICS["tissue"] = TISSUE_MODULE_CHECKS + [
    f"{TISSUE_OUT}/diagnostics/overfit_{m}.json" for m in TISSUE_MODELS
]
if TISSUE["enabled"]:
    FINAL_TARGETS["tissue"] = [f"{TISSUE_OUT}/summary.json"]


wildcard_constraints:
    tissue_model="|".join(["mlp", "attention", "masked", "region"]),
    # Any configured kind, the closed-form reads included: per-model checks and gates.
    tissue_kind="|".join(MODEL_KINDS),
    tissue_plot_check="|".join(TISSUE_PLOT_CHECKS),
    tissue_text_check="|".join(TISSUE_TEXT_CHECKS),
    tissue_member=r"\d+",
    tissue_fold=r"\d+",


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
    """Train/val/test (or K folds) by source sample (augmented copies stay together), stratified
    by label; or the split or folds the user gave (splits file or sheet column), checked."""
    input:
        unpack(lambda wc: TISSUE_SPLIT_SOURCES),
        h5=rules.tissue_features.output.h5,
    output:
        **TISSUE_FOLDS_TABLE,
        tsv=(
            expand(f"{TISSUE_RUN}/splits.tsv", tissue_fold=TISSUE_FOLD_IDS)
            if TISSUE_FOLDS > 1
            else f"{TISSUE_OUT}/splits.tsv"
        ),
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
        splits=TISSUE_DIAG_SPLITS,
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
    script:
        "../scripts/run_step.py"


rule tissue_diagnostic_plot:
    """Variance ratio, subtype separability, region- vs file-level learnability (JSON + figure)."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=TISSUE_DIAG_SPLITS,
    output:
        json=f"{TISSUE_OUT}/diagnostics/{{tissue_plot_check}}.json",
        png=report(
            f"{TISSUE_OUT}/diagnostics/{{tissue_plot_check}}.png",
            caption="../report/tissue_diagnostics.rst",
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
        # Learnability: the configured region-level models (its verdict depends on them alone);
        # variance and subtypes read none.
        models=lambda wc: TISSUE_REGION_MODELS if wc.tissue_plot_check == "learnability" else [],
    script:
        "../scripts/run_step.py"


rule tissue_diagnostic_overfit:
    """One configured model memorises 10 training samples (its wiring works): one job per
    model, with that model's settings only, so that another model's settings leave it alone."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=TISSUE_DIAG_SPLITS,
    output:
        json=f"{TISSUE_OUT}/diagnostics/overfit_{{tissue_kind}}.json",
    log:
        f"{LOGS}/tissue/diagnostics_overfit_{{tissue_kind}}.log",
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
        models=lambda wc: [wc.tissue_kind],
        model_configs=lambda wc: config_json({wc.tissue_kind: TISSUE[wc.tissue_kind]}),
    script:
        "../scripts/run_step.py"


# Seconds of work on small files: run on the submit host, not as cluster jobs.
localrules:
    tissue_gate,


rule tissue_gate:
    """One model's gate before its training (the shared gate step): the module-level checks
    and that model's overfit check. The module's gate.json (rule gate) reads every check for
    the summary; no training waits for it, so adding a model reruns no other model's gate."""
    input:
        TISSUE_MODULE_CHECKS,
        rules.tissue_diagnostic_overfit.output.json,
    output:
        f"{TISSUE_OUT}/diagnostics/gate_{{tissue_kind}}.json",
    log:
        f"{LOGS}/tissue/gate_{{tissue_kind}}.log",
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


rule tissue_baselines:
    """Logistic regression and nearest centroid on region means, on the models' splits."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=f"{TISSUE_RUN}/splits.tsv",
    output:
        json=f"{TISSUE_RUN}/baselines/metrics.json",
    log:
        f"{LOGS}/tissue/{TISSUE_FOLD_LOG}baselines.log",
    benchmark:
        f"{RESULTS}/benchmarks/tissue/{TISSUE_FOLD_LOG}baselines.tsv"
    conda:
        ENV_CPU
    threads: 2
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        baselines=config_json(TISSUE["baselines"]),
        calibration=config_json(TISSUE["calibration"]),
        sparsity=config_json(TISSUE["sparsity"]),
        task=TISSUE_TASK,
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule tissue_train:
    """Train one ensemble member with the shared engine (GPU when present) after its model's gate passed."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=f"{TISSUE_RUN}/splits.tsv",
        gate=gate_input("tissue", "{tissue_model}"),
    output:
        metrics=f"{TISSUE_RUN}/train/{{tissue_model}}/members/{{tissue_member}}/metrics.json",
        model=f"{TISSUE_RUN}/train/{{tissue_model}}/members/{{tissue_member}}/model.pt",
        diagnostics=f"{TISSUE_RUN}/train/{{tissue_model}}/members/{{tissue_member}}/diagnostics.json",
        tensorboard=directory(f"{TISSUE_RUN}/train/{{tissue_model}}/members/{{tissue_member}}/tensorboard"),
    log:
        f"{LOGS}/tissue/{TISSUE_FOLD_LOG}train_{{tissue_model}}_{{tissue_member}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tissue/{TISSUE_FOLD_LOG}train_{{tissue_model}}_{{tissue_member}}.tsv"
    conda:
        ENV_TORCH
    # One CPU thread: the models are small and data sits in memory; on a GPU node the SLURM
    # profile's cpus_per_gpu applies.
    threads: 1
    resources:
        **train_resources("tissue"),
    params:
        model_config=lambda wc: config_json(TISSUE[wc.tissue_model]),
        train=config_json(with_default_cadence(TISSUE["train"])),
        task=TISSUE_TASK,
        state_dir=lambda wc: state_dir(
            "tissue", expand(f"{TISSUE_FOLD_STATE}{{tissue_model}}/{{tissue_member}}", **wc)[0]
        ),
        device=config["device"],
        # Member 0 uses the workflow seed itself, so an ensemble of 1 is the plain run.
        seed=lambda wc: config["seed"] + 1000 * int(wc.tissue_member),
    script:
        "../scripts/run_step.py"


rule tissue_ensemble:
    """Average the members' class probabilities; metrics, model and checks of the ensemble."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=f"{TISSUE_RUN}/splits.tsv",
        models=lambda wc: expand(
            f"{TISSUE_RUN}/train/{{tissue_model}}/members/{{i}}/model.pt",
            i=TISSUE_MEMBERS[wc.tissue_model],
            **wc,
        ),
        metrics=lambda wc: expand(
            f"{TISSUE_RUN}/train/{{tissue_model}}/members/{{i}}/metrics.json",
            i=TISSUE_MEMBERS[wc.tissue_model],
            **wc,
        ),
        diagnostics=lambda wc: expand(
            f"{TISSUE_RUN}/train/{{tissue_model}}/members/{{i}}/diagnostics.json",
            i=TISSUE_MEMBERS[wc.tissue_model],
            **wc,
        ),
    output:
        metrics=f"{TISSUE_RUN}/train/{{tissue_model}}/metrics.json",
        model=f"{TISSUE_RUN}/train/{{tissue_model}}/model.pt",
        diagnostics=f"{TISSUE_RUN}/train/{{tissue_model}}/diagnostics.json",
    log:
        f"{LOGS}/tissue/{TISSUE_FOLD_LOG}ensemble_{{tissue_model}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/tissue/{TISSUE_FOLD_LOG}ensemble_{{tissue_model}}.tsv"
    conda:
        ENV_TORCH
    # Prediction with a few small models on the validation and test files: a CPU job of
    # about 1 GB at 765 samples x 51,089 regions (features, 5 attention models, batches
    # sized to 256 MB); more memory and time on a retry.
    threads: 1
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 30 * attempt,
    params:
        task=TISSUE_TASK,
        calibration=config_json(TISSUE["calibration"]),
        sparsity=config_json(TISSUE["sparsity"]),
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule tissue_reads:
    """Fit the read-profile model (closed form, CPU) after its gate passed: its metrics, model
    and checks sit where an ensemble's do, so the summary and tissue_predict take it alike."""
    input:
        h5=rules.tissue_features.output.h5,
        splits=f"{TISSUE_RUN}/splits.tsv",
        gate=gate_input("tissue", "reads"),
    output:
        metrics=f"{TISSUE_RUN}/train/reads/metrics.json",
        model=f"{TISSUE_RUN}/train/reads/model.pt",
        diagnostics=f"{TISSUE_RUN}/train/reads/diagnostics.json",
    log:
        f"{LOGS}/tissue/{TISSUE_FOLD_LOG}fit_reads.log",
    benchmark:
        f"{RESULTS}/benchmarks/tissue/{TISSUE_FOLD_LOG}fit_reads.tsv"
    conda:
        ENV_TORCH
    # Matrix products of the read counts with the profiles (BLAS): 2 threads. Measured at 880
    # samples (528/176/176) x 51,089 regions x 6 classes, schema defaults, 2 threads
    # (benchmarks/bench_tissue_reads_scale.py): 118 s on a quiet machine (fit and choice 77 s,
    # grid 37 s), 11 min on an oversubscribed one; peak RSS 2.2 GB, in the grid, which then
    # held its 16 degraded copies of the test samples at once (now one at a time, not
    # re-measured; the fit's peak is 1.8 GB). Memory and time grow about linearly with the
    # samples: 4 GB and 20 min hold ~1,500 samples.
    threads: 2
    resources:
        mem_mb=lambda wc, attempt: 4000 * attempt,
        runtime=lambda wc, attempt: 20 * attempt,
    params:
        model_config=config_json(TISSUE["reads"]),
        task=TISSUE_TASK,
        calibration=config_json(TISSUE["calibration"]),
        sparsity=config_json(TISSUE["sparsity"]),
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


# Seconds of work on small files: run on the submit host, not as cluster jobs.
localrules:
    tissue_summary,


rule tissue_summary:
    """Comparison table (models vs baselines on the test split, or mean +- SD over K folds
    with paired tests), plots and summary.json."""
    input:
        **TISSUE_FOLDS_TABLE,
        splits=TISSUE_DIAG_SPLITS,
        baselines=expand(f"{TISSUE_RUN}/baselines/metrics.json", tissue_fold=TISSUE_FOLD_IDS),
        # Model-major (expand varies its last keyword fastest): each model's folds in order.
        metrics=expand(f"{TISSUE_RUN}/train/{{m}}/metrics.json", m=TISSUE_MODELS, tissue_fold=TISSUE_FOLD_IDS),
        model_diagnostics=expand(
            f"{TISSUE_RUN}/train/{{m}}/diagnostics.json", m=TISSUE_MODELS, tissue_fold=TISSUE_FOLD_IDS
        ),
        diagnostics=DIAGNOSTICS["tissue"],
        # The module's gate over every check: the record a user looks at, made with the summary
        # (no training rule takes it).
        gate=gate_input("tissue"),
    output:
        json=f"{TISSUE_OUT}/summary.json",
        md=f"{TISSUE_OUT}/summary.md",
        table=report(
            f"{TISSUE_OUT}/comparison.tsv",
            caption="../report/tissue_comparison.rst",
            category="tissue",
        ),
        plots=report(
            directory(f"{TISSUE_OUT}/plots"),
            patterns=["{name}.png"],
            caption="../report/tissue_plots.rst",
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


# Classify new samples with a trained model (genomelab predict tissue): only when
# tissue.predict.inputs names them. The model: tissue.predict.model (one file, or a list whose
# calibrated probabilities are averaged), else the first of tissue.models, with K > 1 folds
# every fold's (a cross-validation ensemble: fold 0's model alone trained on part of the
# labelled samples, and nothing said so).
TISSUE_PREDICT_MODEL = TISSUE["predict"]["model"] or (
    f"{TISSUE_OUT}/train/{TISSUE_MODELS[0]}/model.pt"
    if TISSUE_FOLDS == 1
    else [f"{TISSUE_OUT}/folds/{k}/train/{TISSUE_MODELS[0]}/model.pt" for k in TISSUE_FOLD_IDS]
)
check_config_files(
    {"tissue.predict.inputs": TISSUE["predict"]["inputs"]}
    | (
        {"tissue.predict.model": TISSUE["predict"]["model"]}
        if isinstance(TISSUE["predict"]["model"], str)
        else {f"tissue.predict.model[{i}]": m for i, m in enumerate(TISSUE["predict"]["model"])}
    ),
    RESULTS,
)
if TISSUE["predict"]["inputs"]:

    rule tissue_predict:
        input:
            model=TISSUE_PREDICT_MODEL,
            inputs=TISSUE["predict"]["inputs"],
            # A sheet's NPZ files, validated now (no tissue column needed): a changed file reruns it.
            files=(
                get_sheet_files(TISSUE["predict"]["inputs"], labels=False)
                if is_sample_sheet(TISSUE["predict"]["inputs"])
                else []
            ),
        output:
            tsv=f"{TISSUE_OUT}/predict/predictions.tsv",
            json=f"{TISSUE_OUT}/predict/predictions.json",
        log:
            f"{LOGS}/tissue/predict.log",
        conda:
            ENV_TORCH
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            predict=config_json(TISSUE["predict"]),
            device=config["device"],
        script:
            "../scripts/run_step.py"

    if TISSUE["enabled"]:
        FINAL_TARGETS.setdefault("tissue", []).append(rules.tissue_predict.output.json)
    else:
        # A predict-only run (tissue off, predict.model an earlier run's; run_config checks it).
        FINAL_TARGETS.setdefault("predict", []).append(rules.tissue_predict.output.json)
