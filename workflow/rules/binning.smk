# Module binning: k-mer profiles -> diagnostics -> gate -> embedding (binning.model.kind: the
# contrastive encoder on fragment views, or the beta-VAE) and TNF baseline -> kNN-graph
# clustering -> bins -> AMBER-style evaluation -> summary (docs/binning.md).
from genomelab.binning.markers import DEFAULT_HMM as DEFAULT_MARKER_HMM
from genomelab.binning.markers import DEFAULT_SETS as DEFAULT_MARKER_SETS
from genomelab.binning.paths import resolve_paths

BIN = config["binning"]
BIN_DIR = f"{RESULTS}/binning"
BIN_LOGS = f"{LOGS}/binning"
BIN_BENCH = f"{RESULTS}/benchmarks/binning"
# Shipped defaults (genomes to shred, marker HMMs) are found beside the Snakefile, so that a
# run in another folder (--directory, relative config paths read from there) finds them too.
BIN_PATHS = resolve_paths(BIN, BIN_DIR, shipped("resources/binning"))
BIN_SHRED = BIN_PATHS.shred
BIN_CONTIGS = BIN_PATHS.contigs
BIN_TRUTH = BIN_PATHS.truth
BIN_KIND = BIN["model"]["kind"]
# kind tnf: no training; the bins are the TNF baseline's (binning_baseline's clusters).
BIN_TRAINED = BIN_KIND != "tnf"
if BIN["enabled"] and not BIN_TRAINED and BIN["predict"]["inputs"] and not BIN["predict"]["model"]:
    raise ValueError(
        "binning.model.kind 'tnf' trains no model, so binning.predict needs binning.predict.model "
        "(an exported encoder) to embed binning.predict.inputs"
    )
if (
    BIN["enabled"]
    and BIN["predict"]["inputs"]
    and not BIN["predict"]["model"]
    and BIN_PATHS.depth
    and not BIN["predict"]["depth"]
):
    # This run's encoder reads abundances: without the new contigs' table binning_predict
    # would fail only after training, naming the CLI's --depth. Named by where they came
    # from: shredded genomes get simulated ones (binning.input.depth is then unset).
    raise ValueError(
        f"binning.predict.inputs ({BIN['predict']['inputs']}) is embedded with this run's encoder, "
        "which is trained with the abundances of "
        + (
            f"binning.shred.depth_samples: {BIN['shred']['depth_samples']} (simulated, {BIN_PATHS.depth})"
            if BIN_PATHS.shred
            else f"binning.input.depth ({BIN_PATHS.depth})"
        )
        + ": set binning.predict.depth to the new contigs' abundance table (same samples, same "
        "order), or train without abundances" + (" (depth_samples: 0)" if BIN_PATHS.shred else "")
    )
if BIN["enabled"] and not BIN_SHRED:
    from genomelab.io.fasta import check_fasta_start

    # An empty file, or another table given as the contigs, stops the run now.
    check_fasta_start(BIN_CONTIGS, "binning.input.contigs")
if BIN["enabled"] and BIN_TRUTH and not BIN_SHRED:
    from genomelab.io.tables import check_truth_header

    # The user's truth table: a missing header stops the run now, not at the gate.
    check_truth_header(BIN_TRUTH)


if BIN_SHRED:

    rule binning_shred:
        input:
            genomes=BIN_PATHS.genomes,
        output:
            **({"depth": f"{BIN_DIR}/data/depth.tsv"} if BIN["shred"]["depth_samples"] > 0 else {}),
            contigs=f"{BIN_DIR}/data/contigs.fna.gz",
            truth=f"{BIN_DIR}/data/truth.tsv",
        log:
            f"{BIN_LOGS}/shred.log",
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            shred=config_json(BIN["shred"]),
            seed=config["seed"],
        script:
            "../scripts/run_step.py"


rule binning_features:
    input:
        contigs=BIN_CONTIGS,
    output:
        h5=f"{BIN_DIR}/features/profiles.h5",
    log:
        f"{BIN_LOGS}/features.log",
    benchmark:
        f"{BIN_BENCH}/binning_features.tsv"
    conda:
        ENV_CPU
    threads: 2
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        features=config_json(BIN["features"]),
    script:
        "../scripts/run_step.py"


rule binning_diagnostics:
    input:
        unpack(lambda wc: BIN_PATHS.optional_inputs(truth=True)),
        h5=rules.binning_features.output.h5,
        contigs=BIN_CONTIGS,
    output:
        f"{BIN_DIR}/diagnostics/profiles.json",
    log:
        f"{BIN_LOGS}/diagnostics.log",
    conda:
        ENV_TORCH
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        min_contigs=BIN["min_contigs"],
        model=config_json(BIN["model"]),
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


DIAGNOSTICS["binning"].append(f"{BIN_DIR}/diagnostics/profiles.json")


rule binning_baseline:
    input:
        unpack(lambda wc: BIN_PATHS.optional_inputs()),
        h5=rules.binning_features.output.h5,
    output:
        clusters=f"{BIN_DIR}/baseline/clusters.tsv",
        embedding=f"{BIN_DIR}/baseline/embedding.h5",
    log:
        f"{BIN_LOGS}/baseline.log",
    benchmark:
        f"{BIN_BENCH}/binning_baseline.tsv"
    conda:
        ENV_TORCH
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    params:
        min_bin_bp=BIN["bins"]["min_bin_bp"],
        baseline=config_json(BIN["baseline"]),
        cluster=config_json(BIN["cluster"]),
        seed=config["seed"],
    script:
        "../scripts/run_step.py"


if BIN_KIND == "contrastive":

    rule binning_views:
        input:
            contigs=BIN_CONTIGS,
            h5=rules.binning_features.output.h5,
        output:
            h5=f"{BIN_DIR}/features/views.h5",
        log:
            f"{BIN_LOGS}/views.log",
        benchmark:
            f"{BIN_BENCH}/binning_views.tsv"
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            contrastive=config_json(BIN["model"]["contrastive"]),
            engine=BIN["features"]["engine"],
            seed=config["seed"],
        script:
            "../scripts/run_step.py"


if BIN_TRAINED:

    rule binning_train:
        input:
            unpack(lambda wc: BIN_PATHS.optional_inputs()),
            # The contrastive encoder's fragment views; the VAE reads only the profiles.
            unpack(lambda wc: {"views": rules.binning_views.output.h5} if BIN_KIND == "contrastive" else {}),
            h5=rules.binning_features.output.h5,
            gate=gate_input("binning"),
        output:
            model=f"{BIN_DIR}/model/{BIN_KIND}.pt",
            metrics=f"{BIN_DIR}/model/metrics.json",
            tensorboard=directory(f"{BIN_DIR}/model/tensorboard"),
        log:
            f"{BIN_LOGS}/train.log",
        benchmark:
            f"{BIN_BENCH}/binning_train.tsv"
        conda:
            ENV_TORCH
        threads: 2
        resources:
            **train_resources("binning"),
        params:
            model=config_json(BIN["model"]),
            train=config_json(with_default_cadence(BIN["train"])),
            split=config_json(BIN["split"]),
            preload=BIN["preload"],
            seed=config["seed"],
            device=config["device"],
            state_dir=state_dir("binning", BIN_KIND),
        script:
            "../scripts/run_step.py"

    rule binning_encode:
        input:
            unpack(lambda wc: BIN_PATHS.optional_inputs()),
            h5=rules.binning_features.output.h5,
            model=rules.binning_train.output.model,
        output:
            clusters=f"{BIN_DIR}/model/clusters.tsv",
            latent=f"{BIN_DIR}/model/latent.h5",
        log:
            f"{BIN_LOGS}/encode.log",
        benchmark:
            f"{BIN_BENCH}/binning_encode.tsv"
        conda:
            ENV_TORCH
        threads: 2
        resources:
            **train_resources("binning_encode"),
        params:
            min_bin_bp=BIN["bins"]["min_bin_bp"],
            cluster=config_json(BIN["cluster"]),
            seed=config["seed"],
            device=config["device"],
        script:
            "../scripts/run_step.py"


# The clusters and embedding that become the bins: the trained model's, or with kind tnf the
# TNF baseline's (then the evaluation's "model" is the baseline itself).
BIN_CLUSTERS = rules.binning_encode.output.clusters if BIN_TRAINED else rules.binning_baseline.output.clusters
BIN_EMBEDDING = rules.binning_encode.output.latent if BIN_TRAINED else rules.binning_baseline.output.embedding


rule binning_bins:
    input:
        contigs=BIN_CONTIGS,
        h5=rules.binning_features.output.h5,
        clusters=BIN_CLUSTERS,
    output:
        fasta_dir=directory(f"{BIN_DIR}/bins/fasta"),
        contig_bins=f"{BIN_DIR}/bins/contig_bins.tsv",
        bin_summary=report(
            f"{BIN_DIR}/bins/bin_summary.tsv",
            caption="../report/binning_bins.rst",
            category="binning",
            labels={"table": "bins"},
        ),
    log:
        f"{BIN_LOGS}/bins.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        min_bin_bp=BIN["bins"]["min_bin_bp"],
    script:
        "../scripts/run_step.py"


# Single-copy marker genes of the written bins (binning.markers; docs/binning.md, "Bin quality").
BIN_MARKERS = BIN["markers"]["enabled"]
BIN_MARKER_HMM = BIN["markers"]["hmm"] or shipped(DEFAULT_MARKER_HMM)
BIN_MARKER_SETS = BIN["markers"]["sets"] or ("" if BIN["markers"]["hmm"] else shipped(DEFAULT_MARKER_SETS))
# Without a truth table the marker genes are the only score of bins: the TNF baseline's bins
# are scored too, so that the trained model is still reported beside its baseline.
BIN_MARKER_BASELINE = BIN_MARKERS and BIN_TRAINED and not BIN_TRUTH
if BIN_MARKERS:

    rule binning_markers:
        input:
            **({"sets": BIN_MARKER_SETS} if BIN_MARKER_SETS else {}),
            **(
                {
                    "baseline_clusters": rules.binning_baseline.output.clusters,
                    "h5": rules.binning_features.output.h5,
                    "contigs": BIN_CONTIGS,
                }
                if BIN_MARKER_BASELINE
                else {}
            ),
            fasta_dir=rules.binning_bins.output.fasta_dir,
            hmm=BIN_MARKER_HMM,
        output:
            **(
                {
                    "baseline_tsv": f"{BIN_DIR}/baseline/markers.tsv",
                    "baseline_counts": f"{BIN_DIR}/baseline/marker_counts.tsv",
                }
                if BIN_MARKER_BASELINE
                else {}
            ),
            tsv=f"{BIN_DIR}/bins/markers.tsv",
            counts=f"{BIN_DIR}/bins/marker_counts.tsv",
        log:
            f"{BIN_LOGS}/markers.log",
        benchmark:
            f"{BIN_BENCH}/binning_markers.tsv"
        conda:
            ENV_CPU
        threads: 2
        resources:
            mem_mb=2000,
            runtime=60,
        params:
            **({"min_bin_bp": BIN["bins"]["min_bin_bp"]} if BIN_MARKER_BASELINE else {}),
            markers=config_json(BIN["markers"]),
        script:
            "../scripts/run_step.py"


if BIN_TRUTH:

    rule binning_evaluate:
        input:
            h5=rules.binning_features.output.h5,
            truth=BIN_TRUTH,
            model_clusters=BIN_CLUSTERS,
            baseline_clusters=rules.binning_baseline.output.clusters,
            model_latent=BIN_EMBEDDING,
            baseline_embedding=rules.binning_baseline.output.embedding,
        output:
            json=f"{BIN_DIR}/evaluation/evaluation.json",
            per_bin=f"{BIN_DIR}/evaluation/per_bin.tsv",
            plot_model=report(
                f"{BIN_DIR}/evaluation/latent_model.png",
                caption="../report/binning_latent.rst",
                category="binning",
                labels={"plot": f"{BIN['model']['kind']} embedding"},
            ),
            plot_baseline=report(
                f"{BIN_DIR}/evaluation/latent_tnf.png",
                caption="../report/binning_latent.rst",
                category="binning",
                labels={"plot": "TNF PCA"},
            ),
        log:
            f"{BIN_LOGS}/evaluate.log",
        conda:
            ENV_CPU
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        params:
            min_bin_bp=BIN["bins"]["min_bin_bp"],
            model_kind=BIN["model"]["kind"],
        script:
            "../scripts/run_step.py"


# Seconds of work on small files: run on the submit host, not as cluster jobs.
localrules:
    binning_summary,


rule binning_summary:
    input:
        unpack(
            lambda wc: (
                {
                    "evaluation": rules.binning_evaluate.output.json,
                    "plot_model": rules.binning_evaluate.output.plot_model,
                    "plot_baseline": rules.binning_evaluate.output.plot_baseline,
                }
                if BIN_TRUTH
                else {}
            )
        ),
        unpack(lambda wc: {"metrics": rules.binning_train.output.metrics} if BIN_TRAINED else {}),
        unpack(lambda wc: {"markers": rules.binning_markers.output.tsv} if BIN_MARKERS else {}),
        unpack(
            lambda wc: (
                {"baseline_markers": rules.binning_markers.output.baseline_tsv}
                if BIN_MARKER_BASELINE
                else {}
            )
        ),
        bin_summary=rules.binning_bins.output.bin_summary,
        contig_bins=rules.binning_bins.output.contig_bins,
        fasta_dir=rules.binning_bins.output.fasta_dir,
        diagnostics=DIAGNOSTICS["binning"],
    output:
        json=f"{BIN_DIR}/summary.json",
        md=f"{BIN_DIR}/summary.md",
    log:
        f"{BIN_LOGS}/summary.log",
    conda:
        ENV_CPU
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        min_bin_bp=BIN["bins"]["min_bin_bp"],
        cluster_method=BIN["cluster"]["method"],
        model_kind=BIN["model"]["kind"],
    script:
        "../scripts/run_step.py"


if BIN["enabled"]:
    FINAL_TARGETS["binning"] = [
        f"{BIN_DIR}/summary.json",
        f"{BIN_DIR}/bins/contig_bins.tsv",
    ]


# Embed and bin a new assembly with the trained encoder (genomelab predict binning), into
# its own folder: the run's bins are never touched. Only when binning.predict.inputs is set.
# A profiles HDF5 given as inputs holds no sequences: latent and clusters only, no bins.
if BIN["predict"]["inputs"]:
    from genomelab.predict.binning import is_profiles

    BIN_PREDICT_BINS = (
        {}
        if is_profiles(BIN["predict"]["inputs"])
        else {
            "profiles": f"{BIN_DIR}/predict/profiles.h5",
            "contig_bins": f"{BIN_DIR}/predict/contig_bins.tsv",
            "bin_summary": f"{BIN_DIR}/predict/bin_summary.tsv",
            "fasta_dir": directory(f"{BIN_DIR}/predict/bins"),
        }
    )

    rule binning_predict:
        input:
            **({"depth": BIN["predict"]["depth"]} if BIN["predict"]["depth"] else {}),
            model=BIN["predict"]["model"] or rules.binning_train.output.model,
            inputs=BIN["predict"]["inputs"],
        output:
            **BIN_PREDICT_BINS,
            latent=f"{BIN_DIR}/predict/latent.h5",
            clusters=f"{BIN_DIR}/predict/clusters.tsv",
        log:
            f"{BIN_LOGS}/predict.log",
        conda:
            ENV_TORCH
        threads: 2
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            features=config_json(BIN["features"]),
            cluster=config_json(BIN["cluster"]),
            min_bin_bp=BIN["bins"]["min_bin_bp"],
            seed=config["seed"],
            device=config["device"],
        script:
            "../scripts/run_step.py"

    if BIN["enabled"]:
        FINAL_TARGETS.setdefault("binning", []).append(rules.binning_predict.output.clusters)
