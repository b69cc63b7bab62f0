# Module assoc: bidirectional association model (links between two vocabularies).
# Chain: data -> features -> diagnostics -> gate -> baselines -> train (grid x scheme)
#        -> select (best run on validation) -> summary; infer ranks candidates for new entities.
# With evaluation.folds K > 1 the links scheme is cross-validated: the data rule writes
# link_folds.tsv and one splits file per fold (data/folds/<k>/splits.npz), and baselines,
# training and selection of the links scheme run once per fold under folds/<k>/links/ (one
# job each); the entities scheme keeps its one split. With K = 1 every path is as before.

ASSOC = config["assoc"]
ASSOC_R = f"{RESULTS}/assoc"
ASSOC_L = f"{LOGS}/assoc"
ASSOC_BENCH = f"{RESULTS}/benchmarks/assoc"
ASSOC_GRID = ASSOC["grid"]


# Every grid point as a run folder name, lr{lr}_bs{bs}_do{dropout}_bd{bd}.
ASSOC_RUNS = [
    f"lr{lr:g}_bs{bs}_do{do:g}_bd{bd}"
    for lr in ASSOC_GRID["lr"]
    for bs in ASSOC_GRID["batch_size"]
    for do in ASSOC_GRID["dropout"]
    for bd in ASSOC_GRID["bridge_dim"]
]
ASSOC_QUERIES = ASSOC["infer"]["queries"] or f"{ASSOC_R}/data/heldout_{ASSOC['infer']['side']}s.tsv"

# Folds: the assoc_fold wildcard is the folder prefix of one evaluation of a scheme, "" (the
# one split) or "folds/<k>/" (fold k of the links scheme when K > 1); it prefixes result,
# log, benchmark and state paths, so K = 1 keeps every path as it was.
ASSOC_FOLDS = ASSOC["evaluation"]["folds"]
ASSOC_FOLD_DIRS = {
    s: [f"folds/{k}/" for k in range(ASSOC_FOLDS)] if s == "links" and ASSOC_FOLDS > 1 else [""]
    for s in ("links", "entities")
}
ASSOC_FOLD_OUTPUTS = (
    {}
    if ASSOC_FOLDS == 1
    else {
        "folds": f"{ASSOC_R}/data/link_folds.tsv",
        "fold_splits": [f"{ASSOC_R}/data/{d}splits.npz" for d in ASSOC_FOLD_DIRS["links"]],
    }
)
# The model that infer and predict use: infer.scheme's selected model (one path); for the
# cross-validated links scheme (K > 1) that of every fold (a list), whose link probabilities
# are averaged: fold 0's alone was trained without its test fold's links, and nothing said so.
ASSOC_INFER_MODELS = [
    f"{ASSOC_R}/{d}{ASSOC['infer']['scheme']}/best_model.pt"
    for d in ASSOC_FOLD_DIRS[ASSOC["infer"]["scheme"]]
]
ASSOC_INFER_MODEL = ASSOC_INFER_MODELS[0] if len(ASSOC_INFER_MODELS) == 1 else ASSOC_INFER_MODELS
ASSOC_PREDICT_MODEL = ASSOC["predict"]["model"] or ASSOC_INFER_MODEL
# Several models averaged: predictions.json beside predictions.tsv lists them (one model's
# prediction writes the TSV alone, as before).
ASSOC_INFER_RECORD = {"json": f"{ASSOC_R}/inference/predictions.json"} if len(ASSOC_INFER_MODELS) > 1 else {}
ASSOC_PREDICT_RECORD = (
    {"json": f"{ASSOC_R}/predict/predictions.json"}
    if not isinstance(ASSOC_PREDICT_MODEL, str) and len(ASSOC_PREDICT_MODEL) > 1
    else {}
)


if ASSOC["enabled"]:
    from genomelab.assoc.data import check_input as check_assoc_input

    # A given split or folds that disagrees with evaluation.folds, refused now, not in assoc_data.
    check_assoc_input(ASSOC["data"], ASSOC_FOLDS)
    # (assoc.train.lr / batch_size, which each grid point's would replace, are refused by
    # load_run_config: it sees the config as written, before the schema's defaults.)
    if ASSOC["infer"]["scheme"] not in ASSOC["schemes"]:
        raise ValueError(
            f"assoc.infer.scheme {ASSOC['infer']['scheme']!r} (default: entities) is not in "
            f"assoc.schemes {ASSOC['schemes']}: set assoc.infer.scheme to one of {ASSOC['schemes']} "
            "(the scheme whose best model ranks the inference queries) or add it to assoc.schemes"
        )
    DIAGNOSTICS["assoc"].append(f"{ASSOC_R}/diagnostics/checks.json")
    FINAL_TARGETS["assoc"] = [
        f"{ASSOC_R}/summary.json",
        f"{ASSOC_R}/inference/predictions.tsv",
    ]


rule assoc_data:
    """Validate links and entity tables; assign held-out-link and held-out-entity splits."""
    input:
        # "" (the schema default) where assoc is off: [] so that Snakemake does not warn
        # about an empty path in every other module's run.
        links=ASSOC["data"]["links"] or [],
        sources=ASSOC["data"]["sources"] or [],
        targets=ASSOC["data"]["targets"] or [],
        splits=ASSOC["data"]["splits"] or [],
        exclude_known=ASSOC["data"]["exclude_known"] or [],
    output:
        **ASSOC_FOLD_OUTPUTS,
        links=f"{ASSOC_R}/data/links.tsv",
        sources=f"{ASSOC_R}/data/sources.tsv",
        targets=f"{ASSOC_R}/data/targets.tsv",
        splits=f"{ASSOC_R}/data/splits.npz",
        link_splits=f"{ASSOC_R}/data/link_splits.tsv",
        heldout_sources=f"{ASSOC_R}/data/heldout_sources.tsv",
        heldout_targets=f"{ASSOC_R}/data/heldout_targets.tsv",
        summary=f"{ASSOC_R}/data/data.json",
    log:
        f"{ASSOC_L}/data.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        data=ASSOC["data"],
        folds=ASSOC_FOLDS,
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule assoc_features:
    """Text fields (TF-IDF + LSA or a local sentence-transformers model) and sequence k-mers."""
    input:
        links=rules.assoc_data.output.links,
        sources=rules.assoc_data.output.sources,
        targets=rules.assoc_data.output.targets,
    output:
        features=f"{ASSOC_R}/features/entities.npz",
        featurizer=f"{ASSOC_R}/features/featurizer.npz",
    log:
        f"{ASSOC_L}/features.log",
    benchmark:
        f"{ASSOC_BENCH}/assoc_features.tsv"
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        features=ASSOC["features"],
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule assoc_diagnostics:
    """Splits, leakage, class coverage, initial loss vs chance, tiny-subset overfit."""
    input:
        links=rules.assoc_data.output.links,
        splits=rules.assoc_data.output.splits,
        features=rules.assoc_features.output.features,
    output:
        json=f"{ASSOC_R}/diagnostics/checks.json",
        figure=f"{ASSOC_R}/diagnostics/degree.png",
    log:
        f"{ASSOC_L}/diagnostics.log",
    benchmark:
        f"{ASSOC_BENCH}/assoc_diagnostics.tsv"
    conda:
        ENV_TORCH
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        model=config_json(ASSOC["model"]),
        options=ASSOC["diagnostics"],
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule assoc_baselines:
    """Popularity, kNN and ridge on the same splits and features as the network."""
    input:
        gate=gate_input("assoc"),
        links=rules.assoc_data.output.links,
        splits=f"{ASSOC_R}/data/{{assoc_fold}}splits.npz",
        features=rules.assoc_features.output.features,
    output:
        f"{ASSOC_R}/{{assoc_fold}}{{scheme}}/baselines.json",
    log:
        f"{ASSOC_L}/{{assoc_fold}}{{scheme}}/baselines.log",
    benchmark:
        f"{ASSOC_BENCH}/{{assoc_fold}}assoc_baselines_{{scheme}}.tsv"
    wildcard_constraints:
        scheme="links|entities",
        assoc_fold=r"(folds/\d+/)?",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    params:
        baselines=ASSOC["baselines"],
    script:
        "../scripts/run_step.py"


rule assoc_train:
    """One grid point (lr, batch size, dropout, bridge dim) on one scheme, shared engine."""
    input:
        gate=gate_input("assoc"),
        links=rules.assoc_data.output.links,
        splits=f"{ASSOC_R}/data/{{assoc_fold}}splits.npz",
        features=rules.assoc_features.output.features,
    output:
        report=f"{ASSOC_R}/{{assoc_fold}}{{scheme}}/runs/lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}/training_report.json",
        metrics=f"{ASSOC_R}/{{assoc_fold}}{{scheme}}/runs/lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}/metrics.json",
        model=f"{ASSOC_R}/{{assoc_fold}}{{scheme}}/runs/lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}/model.pt",
        tensorboard=directory(
            f"{ASSOC_R}/{{assoc_fold}}{{scheme}}/runs/lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}/tensorboard"
        ),
    log:
        f"{ASSOC_L}/{{assoc_fold}}{{scheme}}/train_lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}.log",
    benchmark:
        f"{ASSOC_BENCH}/{{assoc_fold}}assoc_train_{{scheme}}_lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}.tsv"
    wildcard_constraints:
        scheme="links|entities",
        assoc_fold=r"(folds/\d+/)?",
        lr=r"[0-9.]+(e-?[0-9]+)?",
        bs=r"[0-9]+",
        dropout=r"[0-9.]+(e-?[0-9]+)?",
        bd=r"[0-9]+",
    conda:
        ENV_TORCH
    threads: 1
    resources:
        **train_resources("assoc"),
    params:
        model=config_json(ASSOC["model"]),
        train=config_json(with_default_cadence(ASSOC["train"])),
        quick_test=ASSOC["quick_test"],
        device=config["device"],
        seed=config["seed"],
        state_dir=lambda wc: state_dir(
            "assoc", f"{wc.assoc_fold}{wc.scheme}/lr{wc.lr}_bs{wc.bs}_do{wc.dropout}_bd{wc.bd}"
        ),
    script:
        "../scripts/run_step.py"


# Seconds of work on small files: run on the submit host, not as cluster jobs.
localrules:
    assoc_select,
    assoc_summary,


rule assoc_select:
    """Pick the grid point with the best validation metric; copy its model."""
    input:
        reports=lambda wc: [
            f"{ASSOC_R}/{wc.assoc_fold}{wc.scheme}/runs/{run}/training_report.json" for run in ASSOC_RUNS
        ],
    output:
        json=f"{ASSOC_R}/{{assoc_fold}}{{scheme}}/grid.json",
        model=f"{ASSOC_R}/{{assoc_fold}}{{scheme}}/best_model.pt",
    log:
        f"{ASSOC_L}/{{assoc_fold}}{{scheme}}/select.log",
    wildcard_constraints:
        scheme="links|entities",
        assoc_fold=r"(folds/\d+/)?",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        selection=ASSOC["selection"],
    script:
        "../scripts/run_step.py"


rule assoc_summary:
    """Network vs baselines on both schemes (mean +- SD over folds and paired tests across
    them for a cross-validated scheme), diagnostics and a plot: results/assoc/summary.json."""
    input:
        # Scheme-major: each scheme's folds in order (its one split without folds).
        grids=[f"{ASSOC_R}/{d}{s}/grid.json" for s in ASSOC["schemes"] for d in ASSOC_FOLD_DIRS[s]],
        baselines=[f"{ASSOC_R}/{d}{s}/baselines.json" for s in ASSOC["schemes"] for d in ASSOC_FOLD_DIRS[s]],
        diagnostics=rules.assoc_diagnostics.output.json,
    output:
        json=f"{ASSOC_R}/summary.json",
        md=f"{ASSOC_R}/summary.md",
        plot=report(
            f"{ASSOC_R}/plots/mrr.png",
            caption="../report/assoc_plot.rst",
            category="assoc",
            labels={"figure": "test MRR, network vs baselines"},
        ),
    log:
        f"{ASSOC_L}/summary.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    params:
        scheme_folds=config_json([[s, len(ASSOC_FOLD_DIRS[s])] for s in ASSOC["schemes"]]),
    script:
        "../scripts/run_step.py"


rule assoc_infer:
    """Rank candidates for new entities with the selected model of infer.scheme (the mean of
    every fold's for the cross-validated links scheme)."""
    input:
        model=ASSOC_INFER_MODEL,
        featurizer=rules.assoc_features.output.featurizer,
        queries=ASSOC_QUERIES,
        links=rules.assoc_data.output.links,
    output:
        f"{ASSOC_R}/inference/predictions.tsv",
        **ASSOC_INFER_RECORD,
    log:
        f"{ASSOC_L}/infer.log",
    conda:
        ENV_TORCH
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        infer=ASSOC["infer"],
        device=config["device"],
    script:
        "../scripts/run_step.py"


# assoc_infer's output for other entities (genomelab predict assoc): only when
# assoc.predict.inputs names an entity table.
if ASSOC["predict"]["inputs"]:

    rule assoc_predict:
        input:
            model=ASSOC_PREDICT_MODEL,
            featurizer=ASSOC["predict"]["featurizer"] or rules.assoc_features.output.featurizer,
            inputs=ASSOC["predict"]["inputs"],
            links=rules.assoc_data.output.links,
        output:
            f"{ASSOC_R}/predict/predictions.tsv",
            **ASSOC_PREDICT_RECORD,
        log:
            f"{ASSOC_L}/predict.log",
        conda:
            ENV_TORCH
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            infer=ASSOC["infer"],
            device=config["device"],
        script:
            "../scripts/run_step.py"

    if ASSOC["enabled"]:
        FINAL_TARGETS.setdefault("assoc", []).append(rules.assoc_predict.output[0])
