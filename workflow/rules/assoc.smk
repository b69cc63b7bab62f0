# Module assoc: bidirectional association model (links between two vocabularies).
# Chain: data -> features -> diagnostics -> gate -> baselines -> train (grid x scheme)
#        -> select (best run on validation) -> summary; infer ranks candidates for new entities.

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


if ASSOC["enabled"]:
    if ASSOC["infer"]["scheme"] not in ASSOC["schemes"]:
        raise ValueError(
            f"assoc.infer.scheme {ASSOC['infer']['scheme']!r} is not in assoc.schemes {ASSOC['schemes']}"
        )
    DIAGNOSTICS["assoc"].append(f"{ASSOC_R}/diagnostics/checks.json")
    FINAL_TARGETS["assoc"] = [
        f"{ASSOC_R}/summary.json",
        f"{ASSOC_R}/inference/predictions.tsv",
    ]


rule assoc_data:
    """Validate links and entity tables; assign held-out-link and held-out-entity splits."""
    input:
        links=ASSOC["data"]["links"],
        sources=ASSOC["data"]["sources"],
        targets=ASSOC["data"]["targets"],
        splits=ASSOC["data"]["splits"] or [],
        exclude_known=ASSOC["data"]["exclude_known"] or [],
    output:
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
        splits=rules.assoc_data.output.splits,
        features=rules.assoc_features.output.features,
    output:
        f"{ASSOC_R}/{{scheme}}/baselines.json",
    log:
        f"{ASSOC_L}/{{scheme}}/baselines.log",
    benchmark:
        f"{ASSOC_BENCH}/assoc_baselines_{{scheme}}.tsv"
    wildcard_constraints:
        scheme="links|entities",
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
        splits=rules.assoc_data.output.splits,
        features=rules.assoc_features.output.features,
    output:
        report=f"{ASSOC_R}/{{scheme}}/runs/lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}/training_report.json",
        metrics=f"{ASSOC_R}/{{scheme}}/runs/lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}/metrics.json",
        model=f"{ASSOC_R}/{{scheme}}/runs/lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}/model.pt",
        tensorboard=directory(
            f"{ASSOC_R}/{{scheme}}/runs/lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}/tensorboard"
        ),
    log:
        f"{ASSOC_L}/{{scheme}}/train_lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}.log",
    benchmark:
        f"{ASSOC_BENCH}/assoc_train_{{scheme}}_lr{{lr}}_bs{{bs}}_do{{dropout}}_bd{{bd}}.tsv"
    wildcard_constraints:
        scheme="links|entities",
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
        train=config_json(ASSOC["train"]),
        quick_test=ASSOC["quick_test"],
        device=config["device"],
        seed=config["seed"],
        state_dir=lambda wc: state_dir("assoc", f"{wc.scheme}/lr{wc.lr}_bs{wc.bs}_do{wc.dropout}_bd{wc.bd}"),
    script:
        "../scripts/run_step.py"


# Seconds of work on small files: run on the submit host, not as cluster jobs.
localrules:
    assoc_select,
    assoc_summary,


rule assoc_select:
    """Pick the grid point with the best validation metric; copy its model."""
    input:
        reports=lambda wc: [f"{ASSOC_R}/{wc.scheme}/runs/{run}/training_report.json" for run in ASSOC_RUNS],
    output:
        json=f"{ASSOC_R}/{{scheme}}/grid.json",
        model=f"{ASSOC_R}/{{scheme}}/best_model.pt",
    log:
        f"{ASSOC_L}/{{scheme}}/select.log",
    wildcard_constraints:
        scheme="links|entities",
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
    """Network vs baselines on both schemes, diagnostics and a plot: results/assoc/summary.json."""
    input:
        grids=expand(f"{ASSOC_R}/{{scheme}}/grid.json", scheme=ASSOC["schemes"]),
        baselines=expand(f"{ASSOC_R}/{{scheme}}/baselines.json", scheme=ASSOC["schemes"]),
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
        schemes=ASSOC["schemes"],
    script:
        "../scripts/run_step.py"


rule assoc_infer:
    """Rank candidates for new entities with the selected model of infer.scheme."""
    input:
        model=f"{ASSOC_R}/{ASSOC['infer']['scheme']}/best_model.pt",
        featurizer=rules.assoc_features.output.featurizer,
        queries=ASSOC_QUERIES,
        links=rules.assoc_data.output.links,
    output:
        f"{ASSOC_R}/inference/predictions.tsv",
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
    script:
        "../scripts/run_step.py"


# assoc_infer's output for other entities (genomelab predict assoc): only when
# assoc.predict.inputs names an entity table.
if ASSOC["predict"]["inputs"]:

    rule assoc_predict:
        input:
            model=ASSOC["predict"]["model"] or f"{ASSOC_R}/{ASSOC['infer']['scheme']}/best_model.pt",
            featurizer=ASSOC["predict"]["featurizer"] or rules.assoc_features.output.featurizer,
            inputs=ASSOC["predict"]["inputs"],
            links=rules.assoc_data.output.links,
        output:
            f"{ASSOC_R}/predict/predictions.tsv",
        log:
            f"{ASSOC_L}/predict.log",
        conda:
            ENV_TORCH
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            infer=ASSOC["infer"],
        script:
            "../scripts/run_step.py"

    if ASSOC["enabled"]:
        FINAL_TARGETS.setdefault("assoc", []).append(rules.assoc_predict.output[0])
