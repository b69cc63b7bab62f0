# Module deconv: cfDNA tissue deconvolution. Chain: pure samples (simulated or the user's)
# -> sources (split by individual) -> reference + markers -> phase 1-3 mixtures
# -> diagnostics -> gate -> NNLS baseline + plain and two-stage networks per phase
# -> comparison tables and plots -> inference on new samples -> summary.
from genomelab.deconv.mixtures import coverage_of
from genomelab.deconv.tissues import check_own_samples, resolve_background, with_background
from genomelab.io.streams import check_config_files
from genomelab.io.sheets import is_sample_sheet

DECONV = config["deconv"]
DC_OUT = f"{RESULTS}/deconv"
DC_PHASES = ["phase1", "phase2", "phase3"]
DC_VARIANTS = ["plain", "sparse"]
DC_REPS = [f"rep{i}" for i in range(DECONV["repeats"])]
DC_SIMULATE = not (DECONV["input"]["sample_sheet"] or DECONV["input"]["features"])
# Atlas-only training: with no pure samples, individuals are simulated around the atlas.
DC_PROFILES = DECONV["simulate"]["profiles"] or (DECONV["reference"]["atlas"] if DC_SIMULATE else "")
# The phase-3 blood background, named or derived from the run's own tissues; checked now.
DC_BACKGROUND = resolve_background(DECONV) if DECONV["enabled"] else []
# The user's samples against the demo's tissues would fail after training: stop now.
if DECONV["enabled"]:
    check_own_samples(DECONV)
# The user's files named in the config exist (a misspelt one would leave the outputs of the
# earlier file standing): checked now, naming the key.
check_config_files(
    ({f"deconv.infer.{k}": DECONV["infer"][k] for k in ("samples", "truth")} if DECONV["enabled"] else {})
    | {f"deconv.predict.{k}": DECONV["predict"][k] for k in ("inputs", "model", "reference", "truth")},
    RESULTS,
)
DC_SIMULATE_CFG = DECONV["simulate"] | (
    {"profiles": DC_PROFILES, "blood": DC_BACKGROUND} if DC_PROFILES else {}
)
DC_MIXTURES_CFG = with_background(DECONV["mixtures"], DC_BACKGROUND)
# A coverage range the schema cannot fully check (lowest <= highest) fails now, not in a job.
coverage_of(DECONV["mixtures"]["coverage"])
# Inference outputs are keyed by the model that made them, so switching models keeps both.
DC_INFER_KEY = f"{DECONV['infer']['phase']}_{DECONV['infer']['variant']}"
DC_INFER_OUT = f"{DC_OUT}/infer/{DC_INFER_KEY}"
# Independent test sets (another generator), one per coverage, for the phase-3 networks.
DC_INDEPENDENT = (
    [f"{c:g}x" for c in DECONV["independent"]["coverages"]] if DECONV["independent"]["enabled"] else []
)
DC_SOURCES_INPUT = (
    {"features": DECONV["input"]["features"]}
    if DECONV["input"]["features"]
    else {"sheet": DECONV["input"]["sample_sheet"] or f"{DC_OUT}/demo/sample_sheet.tsv"}
)
# Individuals simulated from a subsample of the atlas (simulate.atlas_regions) cover only those
# of its regions: the reference step must not take the rest for a naming mismatch.
DC_ATLAS_SUBSAMPLE = (
    DECONV["simulate"]["atlas_regions"]
    if DC_SIMULATE and DECONV["reference"]["atlas"] and DC_PROFILES == DECONV["reference"]["atlas"]
    else 0
)
DC_REFERENCE_INPUT = {"sources": f"{DC_OUT}/sources.h5"} | (
    {"atlas": DECONV["reference"]["atlas"]} if DECONV["reference"]["atlas"] else {}
)
# Samples to deconvolve: the user's, or the demo's new samples (with their truth).
DC_INFER_SAMPLES = (
    {"samples": DECONV["infer"]["samples"]}
    | ({"truth": DECONV["infer"]["truth"]} if DECONV["infer"]["truth"] else {})
    if DECONV["infer"]["samples"]
    else (
        {"samples": f"{DC_OUT}/demo/new_samples.csv", "truth": f"{DC_OUT}/demo/new_samples_truth.csv"}
        if DC_SIMULATE
        else {}
    )
)
DC_INFER = bool(DC_INFER_SAMPLES)
# The user's sheets, validated now; the NPZ files they list are inputs of the rules reading them.
DC_SOURCES_FILES = get_sheet_files(DECONV["input"]["sample_sheet"]) if DECONV["enabled"] else []
DC_INFER_FILES = (
    get_sheet_files(DECONV["infer"]["samples"], labels=False)
    if DECONV["enabled"] and is_sample_sheet(DECONV["infer"]["samples"])
    else []
)


rule deconv_simulate:
    """Simulated pure samples (synthetic or around an atlas) and new cfDNA-like samples."""
    input:
        **({"profiles": DC_PROFILES} if DC_PROFILES else {}),
    output:
        samples=directory(f"{DC_OUT}/demo/samples"),
        sheet=f"{DC_OUT}/demo/sample_sheet.tsv",
        new_samples=f"{DC_OUT}/demo/new_samples.csv",
        new_truth=f"{DC_OUT}/demo/new_samples_truth.csv",
        profiles=f"{DC_OUT}/demo/tissue_profiles.csv",
        record=f"{DC_OUT}/demo/simulation.json",
    log:
        f"{LOGS}/deconv/simulate.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        simulate=config_json(DC_SIMULATE_CFG),
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule deconv_sources:
    """Per-sample methylated/valid counts of the pure samples, split by individual."""
    input:
        **DC_SOURCES_INPUT,
        files=DC_SOURCES_FILES,
    output:
        h5=f"{DC_OUT}/sources.h5",
        json=f"{DC_OUT}/sources.json",
    log:
        f"{LOGS}/deconv/sources.log",
    benchmark:
        f"{RESULTS}/benchmarks/deconv/sources.tsv"
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        fractions=DECONV["splits"],
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule deconv_reference:
    """Reference profiles from pure training samples (or the user's atlas) and marker selection."""
    input:
        **DC_REFERENCE_INPUT,
    output:
        reference=f"{DC_OUT}/reference/reference.tsv",
        markers=f"{DC_OUT}/reference/markers.json",
        all_regions=f"{DC_OUT}/reference/reference_all_regions.tsv",
    log:
        f"{LOGS}/deconv/reference.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        reference=config_json(DECONV["reference"]),
        mixtures=config_json(DC_MIXTURES_CFG),
        seed=config["seed"],
        presence_threshold=DECONV["presence_threshold"],
        atlas_subsample=DC_ATLAS_SUBSAMPLE,
    script:
        "../scripts/run_step.py"


rule deconv_mixtures:
    """Train/val/test mixtures of one phase, mixed read by read from disjoint individuals."""
    input:
        sources=rules.deconv_sources.output.h5,
        reference=rules.deconv_reference.output.reference,
    output:
        f"{DC_OUT}/mixtures/{{phase}}.h5",
    log:
        f"{LOGS}/deconv/mixtures_{{phase}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/deconv/mixtures_{{phase}}.tsv"
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        mixtures=config_json(DC_MIXTURES_CFG),
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule deconv_diagnostics:
    """Leakage, compositions, reference conditioning, pure recovery, network sanity checks."""
    input:
        sources=rules.deconv_sources.output.h5,
        reference=rules.deconv_reference.output.reference,
        mixtures=expand(f"{DC_OUT}/mixtures/{{phase}}.h5", phase=DC_PHASES),
    output:
        f"{DC_OUT}/diagnostics/checks.json",
    log:
        f"{LOGS}/deconv/diagnostics.log",
    conda:
        ENV_TORCH
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        model=config_json(DECONV["model"]),
        presence_threshold=DECONV["presence_threshold"],
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


DIAGNOSTICS["deconv"].append(f"{DC_OUT}/diagnostics/checks.json")


rule deconv_nnls:
    """The MethAtlas baseline (batched NNLS, scaled to sum 1) on the test mixtures."""
    input:
        mixtures=f"{DC_OUT}/mixtures/{{phase}}.h5",
        reference=rules.deconv_reference.output.reference,
    output:
        metrics=f"{DC_OUT}/{{phase}}/nnls/metrics.json",
        predictions=f"{DC_OUT}/{{phase}}/nnls/predictions.npz",
    log:
        f"{LOGS}/deconv/nnls_{{phase}}.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        presence_threshold=DECONV["presence_threshold"],
        unknown_component=DECONV["reference"]["unknown_component"],
    script:
        "../scripts/run_step.py"


rule deconv_train:
    """Plain or two-stage sparse network on one phase (shared engine, after the gate)."""
    input:
        # Curriculum: a phase starts from the previous phase's model (same variant and seed).
        unpack(
            lambda wc: (
                {"init": f"{DC_OUT}/phase{int(wc.phase[-1]) - 1}/{wc.variant}/{wc.rep}/model.pt"}
                if DECONV["curriculum"] and wc.phase != "phase1"
                else {}
            )
        ),
        mixtures=f"{DC_OUT}/mixtures/{{phase}}.h5",
        reference=rules.deconv_reference.output.reference,
        gate=gate_input("deconv"),
    output:
        model=f"{DC_OUT}/{{phase}}/{{variant}}/{{rep}}/model.pt",
        metrics=f"{DC_OUT}/{{phase}}/{{variant}}/{{rep}}/metrics.json",
        predictions=f"{DC_OUT}/{{phase}}/{{variant}}/{{rep}}/predictions.npz",
        tensorboard=directory(f"{DC_OUT}/{{phase}}/{{variant}}/{{rep}}/tensorboard"),
    log:
        f"{LOGS}/deconv/train_{{phase}}_{{variant}}_{{rep}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/deconv/train_{{phase}}_{{variant}}_{{rep}}.tsv"
    wildcard_constraints:
        variant="plain|sparse",
        rep=r"rep\d+",
    conda:
        ENV_TORCH
    threads: 1
    resources:
        **train_resources("deconv"),
    params:
        model=config_json(DECONV["model"]),
        train=config_json(with_default_cadence(DECONV["train"])),
        presence_threshold=DECONV["presence_threshold"],
        seed=lambda wc: config["seed"] + int(wc.rep[3:]),
        device=config["device"],
        # The run adds a subfolder keyed by its settings and a fingerprint of its data
        # (genomelab.train.run), so changed data or settings start a fresh run.
        state_dir=lambda wc: state_dir("deconv", f"{wc.phase}_{wc.variant}_{wc.rep}"),
    script:
        "../scripts/run_step.py"


rule deconv_compare:
    """NNLS vs plain vs two-stage on the same test mixtures: table, Miami, scatter, errors."""
    input:
        mixtures=f"{DC_OUT}/mixtures/{{phase}}.h5",
        nnls_metrics=rules.deconv_nnls.output.metrics,
        nnls_predictions=rules.deconv_nnls.output.predictions,
        plain_metrics=lambda wc: [f"{DC_OUT}/{wc.phase}/plain/{r}/metrics.json" for r in DC_REPS],
        plain_predictions=lambda wc: [f"{DC_OUT}/{wc.phase}/plain/{r}/predictions.npz" for r in DC_REPS],
        sparse_metrics=lambda wc: [f"{DC_OUT}/{wc.phase}/sparse/{r}/metrics.json" for r in DC_REPS],
        sparse_predictions=lambda wc: [f"{DC_OUT}/{wc.phase}/sparse/{r}/predictions.npz" for r in DC_REPS],
    output:
        json=f"{DC_OUT}/{{phase}}/comparison.json",
        tsv=report(
            f"{DC_OUT}/{{phase}}/comparison.tsv",
            caption="../report/deconv_phase.rst",
            category="deconv",
            subcategory="{phase}",
        ),
        miami=report(
            f"{DC_OUT}/{{phase}}/miami.png",
            caption="../report/deconv_phase.rst",
            category="deconv",
            subcategory="{phase}",
        ),
        scatter=report(
            f"{DC_OUT}/{{phase}}/scatter.png",
            caption="../report/deconv_phase.rst",
            category="deconv",
            subcategory="{phase}",
        ),
        errors=report(
            f"{DC_OUT}/{{phase}}/tissue_errors.png",
            caption="../report/deconv_phase.rst",
            category="deconv",
            subcategory="{phase}",
        ),
    log:
        f"{LOGS}/deconv/compare_{{phase}}.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        n_miami=DECONV["plots"]["n_miami"],
    script:
        "../scripts/run_step.py"


rule deconv_infer:
    """Deconvolve new samples with the chosen network, NNLS and weighted NNLS side by side."""
    input:
        **DC_INFER_SAMPLES,
        files=DC_INFER_FILES,
        model=f"{DC_OUT}/{DECONV['infer']['phase']}/{DECONV['infer']['variant']}/rep0/model.pt",
        reference=f"{DC_OUT}/reference/reference.tsv",
    output:
        nnls=f"{DC_INFER_OUT}/nnls_proportions.csv",
        weighted=f"{DC_INFER_OUT}/weighted_nnls_proportions.csv",
        model=f"{DC_INFER_OUT}/model_proportions.csv",
        residuals=f"{DC_INFER_OUT}/residuals.csv",
        join=f"{DC_INFER_OUT}/join_report.json",
        stacked=report(
            f"{DC_INFER_OUT}/stacked.png",
            caption="../report/deconv_infer.rst",
            category="deconv",
            subcategory="inference",
        ),
    log:
        f"{LOGS}/deconv/infer_{DC_INFER_KEY}.log",
    conda:
        ENV_TORCH
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        presence_threshold=DECONV["presence_threshold"],
        min_match=DECONV["infer"]["min_match"],
        unknown_component=DECONV["reference"]["unknown_component"],
        other_threshold=DECONV["infer"]["other_threshold"],
    script:
        "../scripts/run_step.py"


rule deconv_independent:
    """Test mixtures from a generator other than the training one, at one coverage."""
    input:
        sources=rules.deconv_sources.output.h5,
        reference=rules.deconv_reference.output.all_regions,
    output:
        f"{DC_OUT}/independent/{{coverage}}.h5",
    log:
        f"{LOGS}/deconv/independent_{{coverage}}.log",
    wildcard_constraints:
        coverage=r"[0-9.]+x",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        independent=config_json(DECONV["independent"]),
        background=DC_BACKGROUND,
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule deconv_evaluate:
    """NNLS and the phase-3 networks on an independent test set, with paired tests."""
    input:
        mixtures=f"{DC_OUT}/independent/{{coverage}}.h5",
        reference=rules.deconv_reference.output.reference,
        all_regions=rules.deconv_reference.output.all_regions,
        plain=f"{DC_OUT}/phase3/plain/rep0/model.pt",
        sparse=f"{DC_OUT}/phase3/sparse/rep0/model.pt",
    output:
        json=f"{DC_OUT}/independent/{{coverage}}/comparison.json",
        tsv=report(
            f"{DC_OUT}/independent/{{coverage}}/comparison.tsv",
            caption="../report/deconv_independent.rst",
            category="deconv",
            subcategory="independent test sets",
        ),
        curve=report(
            f"{DC_OUT}/independent/{{coverage}}/presence_curve.png",
            caption="../report/deconv_independent.rst",
            category="deconv",
            subcategory="independent test sets",
        ),
    log:
        f"{LOGS}/deconv/evaluate_{{coverage}}.log",
    wildcard_constraints:
        coverage=r"[0-9.]+x",
    conda:
        ENV_TORCH
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        presence_threshold=DECONV["presence_threshold"],
    script:
        "../scripts/run_step.py"


# Seconds of work on small files: run on the submit host, not as cluster jobs.
localrules:
    deconv_summary,


rule deconv_summary:
    """The module summary the run report reads."""
    input:
        **({"infer": rules.deconv_infer.output.join} if DC_INFER else {}),
        comparisons=expand(f"{DC_OUT}/{{phase}}/comparison.json", phase=DC_PHASES)
        + expand(f"{DC_OUT}/independent/{{coverage}}/comparison.json", coverage=DC_INDEPENDENT),
        plots=expand(
            f"{DC_OUT}/{{phase}}/{{plot}}.png", phase=DC_PHASES, plot=["miami", "scatter", "tissue_errors"]
        )
        + ([f"{DC_INFER_OUT}/stacked.png"] if DC_INFER else []),
        diagnostics=rules.deconv_diagnostics.output[0],
        markers=rules.deconv_reference.output.markers,
        train_metrics=expand(
            f"{DC_OUT}/{{phase}}/{{variant}}/rep0/metrics.json", phase=DC_PHASES, variant=DC_VARIANTS
        ),
    output:
        json=f"{DC_OUT}/summary.json",
        md=f"{DC_OUT}/summary.md",
        curves=report(
            f"{DC_OUT}/training_curves.png",
            caption="../report/deconv_training.rst",
            category="deconv",
            subcategory="training",
        ),
    log:
        f"{LOGS}/deconv/summary.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        # The phase-3 background, named or derived from the tissue names: the summary says which.
        background=DC_BACKGROUND,
        background_named=bool(DECONV["mixtures"]["phase3"]["background"]),
    script:
        "../scripts/run_step.py"


if DECONV["enabled"]:
    FINAL_TARGETS["deconv"] = [f"{DC_OUT}/summary.json"]


# deconv_infer's outputs for other samples (genomelab predict deconv): only when
# deconv.predict.inputs names them.
if DECONV["predict"]["inputs"]:

    rule deconv_predict:
        input:
            **({"truth": DECONV["predict"]["truth"]} if DECONV["predict"]["truth"] else {}),
            files=(
                get_sheet_files(DECONV["predict"]["inputs"], labels=False)
                if is_sample_sheet(DECONV["predict"]["inputs"])
                else []
            ),
            model=DECONV["predict"]["model"] or rules.deconv_infer.input.model,
            reference=DECONV["predict"]["reference"] or f"{DC_OUT}/reference/reference.tsv",
            inputs=DECONV["predict"]["inputs"],
        output:
            nnls=f"{DC_OUT}/predict/nnls_proportions.csv",
            weighted=f"{DC_OUT}/predict/weighted_nnls_proportions.csv",
            model=f"{DC_OUT}/predict/model_proportions.csv",
            residuals=f"{DC_OUT}/predict/residuals.csv",
            join=f"{DC_OUT}/predict/join_report.json",
            stacked=f"{DC_OUT}/predict/stacked.png",
        log:
            f"{LOGS}/deconv/predict.log",
        conda:
            ENV_TORCH
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            presence_threshold=DECONV["presence_threshold"],
            min_match=DECONV["infer"]["min_match"],
            unknown_component=DECONV["reference"]["unknown_component"],
            other_threshold=DECONV["infer"]["other_threshold"],
            device=config["device"],
        script:
            "../scripts/run_step.py"

    if DECONV["enabled"]:
        FINAL_TARGETS.setdefault("deconv", []).append(rules.deconv_predict.output.join)
    else:
        # A predict-only run (deconv off, predict.model and .reference an earlier run's).
        FINAL_TARGETS.setdefault("predict", []).append(rules.deconv_predict.output.join)
