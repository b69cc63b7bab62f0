# Module regulon: RegulonDB BSON dump + E. coli genome -> a three-head sequence model
# (expression, gene density, operon membership), next to k-mer and GC baselines.
# With evaluation.folds K > 1 the folds rule writes data/folds.tsv and one targets file per
# fold, and baselines, training and evaluation run once per fold under folds/<fold>/ (one
# job each); regulon_summary combines the folds. With K = 1 every path is the single split's.
from genomelab.io.streams import check_config_files

REGULON = config["regulon"]
REGULON_OUT = f"{RESULTS}/regulon"
REGULON_FOLDS = REGULON["evaluation"]["folds"]
REGULON_FOLD_IDS = list(range(REGULON_FOLDS))
# REGULON_FOLD_OUT: the folder of one evaluation (a fold's, with the regulon_fold wildcard,
# when K > 1); REGULON_FOLD_LOG prefixes the fold to log and benchmark names.
REGULON_FOLD_OUT = REGULON_OUT if REGULON_FOLDS == 1 else f"{REGULON_OUT}/folds/{{regulon_fold}}"
REGULON_FOLD_LOG = "" if REGULON_FOLDS == 1 else "fold{regulon_fold}_"
REGULON_FOLD_TARGETS = f"{REGULON_FOLD_OUT}/data/targets.h5"


wildcard_constraints:
    regulon_fold=r"\d+",


# The user's files named in the config exist: a misspelt one is named by its key now, not
# by Snakemake's missing-input message.
if REGULON["enabled"]:
    check_config_files(
        {f"regulon.flat_files.{k}": v or "" for k, v in REGULON["flat_files"].items()}
        | {
            "regulon.annotation": REGULON["annotation"] or "",
            "regulon.expression.table": REGULON["expression"]["table"] or "",
        },
        RESULTS,
    )
    if not (REGULON["mongodb_uri_env"] or any(REGULON["flat_files"].values())):
        from genomelab.regulon.bsonio import check_dump

        # A misspelt dump folder, or one without operons, planned every job before.
        check_dump(REGULON["dump_dir"], genes_elsewhere=bool(REGULON["annotation"]))


# Plain values rather than helper functions (snakemake --lint wants functions in common.smk).
# The dump's collection files are inputs, so that a changed dump reruns processing; none for
# a live MongoDB.
REGULON_FLAT = [p for p in REGULON["flat_files"].values() if p]
REGULON_DUMP = (
    []
    if REGULON["mongodb_uri_env"] or REGULON_FLAT or not REGULON["enabled"]
    else sorted(str(p) for p in Path(REGULON["dump_dir"]).rglob("*.bson*") if ".metadata." not in p.name)
)
REGULON_ANNOTATION = [REGULON["annotation"]] if REGULON["annotation"] else []
REGULON_EXPRESSION = [REGULON["expression"]["table"]] if REGULON["expression"]["table"] else []
# A given file of held-out blocks is an input, so that editing it reruns the split; with
# K > 1 folds it gives each block's fold (a fold column) and is the folds rule's input, and
# the shared targets file keeps the scheme's split (the diagnostics look at it).
REGULON_HELDOUT_FILE = REGULON["targets"].get("heldout", {}).get("file")
REGULON_HELDOUT = [REGULON_HELDOUT_FILE] if REGULON_HELDOUT_FILE and REGULON_FOLDS == 1 else []
REGULON_FOLDS_FILE = [REGULON_HELDOUT_FILE] if REGULON_HELDOUT_FILE and REGULON_FOLDS > 1 else []
REGULON_TARGETS_CFG = (
    REGULON["targets"]
    if REGULON_FOLDS == 1
    else {**REGULON["targets"], "heldout": {**REGULON["targets"]["heldout"], "file": None}}
)
if REGULON_FOLDS > 1:
    from genomelab.regulon.folds import check_fold_config

    check_fold_config(REGULON["targets"]["heldout"], REGULON_FOLDS)
# One state folder for the training job, whatever its settings: the run keys a subfolder by
# model/targets/train config, seed and data (genomelab.train.run), so changed settings start a
# fresh run there, and a finished job keeps the newest state.keep of them (entry._prune_states).
REGULON_STATE = state_dir("regulon", "cnn")
REGULON_FOLD_STATE = (
    REGULON_STATE if REGULON_FOLDS == 1 else lambda wc: f"{REGULON_STATE}/folds/{wc.regulon_fold}"
)


rule regulon_process:
    """Parse the dump, join on b-numbers, log1p + z-score (saved statistics), data report."""
    input:
        dump=REGULON_DUMP,
        flat=REGULON_FLAT,
        expression=REGULON_EXPRESSION,
        genome=REGULON["genome"] or [],  # "" where regulon is off: no empty-path warning
        annotation=REGULON_ANNOTATION,
    output:
        genes=f"{REGULON_OUT}/data/genes.tsv",
        operons=f"{REGULON_OUT}/data/operons.tsv",
        stats=f"{REGULON_OUT}/data/norm_stats.json",
        report=f"{REGULON_OUT}/data/data_report.json",
    log:
        f"{LOGS}/regulon/process.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        # Only the keys this rule reads: changing another key does not rerun it.
        cfg=config_json(
            {
                k: REGULON[k]
                for k in (
                    "dump_dir",
                    "flat_files",
                    "min_confidence",
                    "mongodb_uri_env",
                    "database",
                    "max_docs_per_file",
                    "contig",
                    "annotation",
                    "expression",
                )
            }
        ),
        # The modelled region: the data report's coverage (and its warning) is computed over it.
        region=[REGULON["targets"]["region_start"], REGULON["targets"]["region_end"]],
    script:
        "../scripts/run_step.py"


rule regulon_targets:
    """Strand-aware targets over the genome, genome blocks with splits (drawn or given), windows (HDF5)."""
    input:
        genes=rules.regulon_process.output.genes,
        operons=rules.regulon_process.output.operons,
        genome=REGULON["genome"] or [],  # "" where regulon is off: no empty-path warning
        heldout=REGULON_HELDOUT,
    output:
        targets=f"{REGULON_OUT}/data/targets.h5",
        # The split of every block, whether drawn or given: reusable as targets.heldout.file.
        blocks=f"{REGULON_OUT}/data/blocks.tsv",
    log:
        f"{LOGS}/regulon/targets.log",
    benchmark:
        f"{RESULTS}/benchmarks/regulon/targets.tsv"
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cfg=config_json({"targets": REGULON_TARGETS_CFG, "contig": REGULON["contig"]}),
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule regulon_diagnostics:
    """Target vs head types, ranges, splits, initial loss vs chance, dummy vs real."""
    input:
        targets=rules.regulon_targets.output[0],
        report=rules.regulon_process.output.report,
    output:
        f"{REGULON_OUT}/diagnostics/checks.json",
    log:
        f"{LOGS}/regulon/diagnostics.log",
    conda:
        ENV_TORCH
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        # folds (not read by the step): a changed evaluation.folds reruns the diagnostics and
        # so the gate and everything after it. Without it, switching between one split and
        # folds kept the other mode's summary.json (made by another rule, which Snakemake's
        # params trigger does not compare) and reported it as this run's. Absent for one
        # split, so that runs made before it was added do not rerun.
        **({"folds": REGULON_FOLDS} if REGULON_FOLDS > 1 else {}),
        cfg=config_json({k: REGULON[k] for k in ("model", "targets", "diagnostics")}),
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


DIAGNOSTICS["regulon"].append(rules.regulon_diagnostics.output[0])


rule regulon_baselines:
    """k-mer ridge/logistic regression and GC-content baselines on the model's positions."""
    input:
        targets=REGULON_FOLD_TARGETS,
    output:
        tracks=f"{REGULON_FOLD_OUT}/baselines/predictions.h5",
        info=f"{REGULON_FOLD_OUT}/baselines/info.json",
    log:
        f"{LOGS}/regulon/{REGULON_FOLD_LOG}baselines.log",
    benchmark:
        f"{RESULTS}/benchmarks/regulon/{REGULON_FOLD_LOG}baselines.tsv"
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        cfg=config_json({k: REGULON[k] for k in ("baseline",)}),
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


rule regulon_train:
    """Train the three-head CNN with the shared engine (after the gate); predict held-out blocks."""
    input:
        targets=REGULON_FOLD_TARGETS,
        # The pair readout saved with the model is fitted on the genes' adjacent pairs.
        genes=rules.regulon_process.output.genes,
        gate=gate_input("regulon"),
    output:
        checkpoint=f"{REGULON_FOLD_OUT}/model/best.pt",
        metrics=f"{REGULON_FOLD_OUT}/model/metrics.json",
        predictions=f"{REGULON_FOLD_OUT}/model/predictions.h5",
        tensorboard=directory(f"{REGULON_FOLD_OUT}/model/tensorboard"),
    log:
        f"{LOGS}/regulon/{REGULON_FOLD_LOG}train.log",
    benchmark:
        f"{RESULTS}/benchmarks/regulon/{REGULON_FOLD_LOG}train.tsv"
    conda:
        ENV_TORCH
    threads: 1
    resources:
        **train_resources("regulon"),
    params:
        cfg=config_json(
            {
                "model": REGULON["model"],
                "targets": REGULON["targets"],
                "train": with_default_cadence(REGULON["train"]),
            }
        ),
        seed=config["seed"],
        device=config["device"],
        state_dir=REGULON_FOLD_STATE,
    script:
        "../scripts/run_step.py"


rule regulon_evaluate:
    """Model vs baselines on the test blocks, plots, bedGraph export, module summary."""
    input:
        targets=REGULON_FOLD_TARGETS,
        genes=rules.regulon_process.output.genes,
        stats=rules.regulon_process.output.stats,
        report=rules.regulon_process.output.report,
        model_tracks=rules.regulon_train.output.predictions,
        train_metrics=rules.regulon_train.output.metrics,
        baseline_tracks=rules.regulon_baselines.output.tracks,
        diagnostics=DIAGNOSTICS["regulon"],
    output:
        summary=f"{REGULON_FOLD_OUT}/summary.json",
        summary_md=f"{REGULON_FOLD_OUT}/summary.md",
        metrics=f"{REGULON_FOLD_OUT}/metrics.json",
        plots=[
            report(
                f"{REGULON_FOLD_OUT}/plots/{name}.png",
                caption=f"../report/regulon_{name}.rst",
                category="regulon",
                labels={"plot": name},
            )
            for name in ("tracks", "genes")
        ],
        bedgraphs=expand(
            f"{REGULON_FOLD_OUT}/tracks/model_{{track}}_{{strand}}.bedGraph",
            track=["expression", "operon", "density"],
            strand=["plus", "minus"],
            allow_missing=True,
        ),
    log:
        f"{LOGS}/regulon/{REGULON_FOLD_LOG}evaluate.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        cfg=config_json({k: REGULON[k] for k in ("plot_bp", "baseline")}),
    script:
        "../scripts/run_step.py"


if REGULON_FOLDS > 1:

    rule regulon_folds:
        """Blocks to K folds (by heldout.scheme, or a fold column in heldout.file), the folds
        table, and one targets file per fold with that fold's splits and windows."""
        input:
            targets=rules.regulon_targets.output.targets,
            given=REGULON_FOLDS_FILE,
        output:
            folds=f"{REGULON_OUT}/data/folds.tsv",
            targets=expand(REGULON_FOLD_TARGETS, regulon_fold=REGULON_FOLD_IDS),
        log:
            f"{LOGS}/regulon/folds.log",
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            cfg=config_json({"targets": REGULON["targets"], "evaluation": REGULON["evaluation"]}),
            seed=config["seed"],
        script:
            "../scripts/run_step.py"

    # Seconds of work on small files: run on the submit host, not as a cluster job.
    localrules:
        regulon_summary,

    rule regulon_summary:
        """Mean +- SD over folds of every metric per model and baseline, paired tests across
        folds, the folds' table (comparison.tsv)."""
        input:
            summaries=expand(f"{REGULON_FOLD_OUT}/summary.json", regulon_fold=REGULON_FOLD_IDS),
            folds=rules.regulon_folds.output.folds,
        output:
            summary=f"{REGULON_OUT}/summary.json",
            summary_md=f"{REGULON_OUT}/summary.md",
            table=report(
                f"{REGULON_OUT}/comparison.tsv",
                caption="../report/regulon_folds.rst",
                category="regulon",
            ),
        log:
            f"{LOGS}/regulon/summary.log",
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        params:
            scheme="given" if REGULON_FOLDS_FILE else REGULON["targets"]["heldout"]["scheme"],
        script:
            "../scripts/run_step.py"


if REGULON["enabled"]:
    FINAL_TARGETS["regulon"] = [f"{REGULON_OUT}/summary.json"]


# Tracks of the three heads over a new sequence (genomelab predict regulon): only when
# regulon.predict.inputs names a FASTA. A network with annotation inputs needs the genes of
# that FASTA (regulon.predict.annotation); for this run's own network that is known now.
REGULON_PREDICT_ANNOTATION = [REGULON["predict"]["annotation"]] if REGULON["predict"]["annotation"] else []
if (
    REGULON["predict"]["inputs"]
    and not REGULON["predict"]["model"]
    and REGULON["model"]["inputs"] == "sequence+annotation"
    and not REGULON_PREDICT_ANNOTATION
):
    raise ValueError(
        "regulon.predict.annotation is empty, but this run's network reads gene-annotation "
        "channels (regulon.model.inputs: sequence+annotation): name the genes of "
        "regulon.predict.inputs (GFF3, or a gene table such as results/<run>/regulon/data/genes.tsv)"
    )
# With K > 1 folds and predict.model empty, every fold's network predicts and their tracks
# and pair calls are averaged (each fold's readout on its own network's track first), as
# replicate models are: fold 0's alone was trained on part of the genome's blocks.
REGULON_PREDICT_MODEL = REGULON["predict"]["model"] or (
    rules.regulon_train.output.checkpoint
    if REGULON_FOLDS == 1
    else [f"{REGULON_OUT}/folds/{k}/model/best.pt" for k in REGULON_FOLD_IDS]
)
if REGULON["predict"]["inputs"]:

    rule regulon_predict:
        input:
            model=REGULON_PREDICT_MODEL,
            inputs=REGULON["predict"]["inputs"],
            annotation=REGULON_PREDICT_ANNOTATION,
        output:
            tracks=expand(
                f"{REGULON_OUT}/predict/{{head}}.{{strand}}.bedGraph",
                head=["expression", "density", "operon"],
                strand=["plus", "minus"],
            ),
            json=f"{REGULON_OUT}/predict/tracks.json",
        log:
            f"{LOGS}/regulon/predict.log",
        conda:
            ENV_TORCH
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            predict=config_json(REGULON["predict"]),
            device=config["device"],
        script:
            "../scripts/run_step.py"

    if REGULON["enabled"]:
        FINAL_TARGETS.setdefault("regulon", []).append(rules.regulon_predict.output.json)
