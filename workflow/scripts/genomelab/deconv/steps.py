"""The deconv module's rule steps: each ``<name>_step(smk)`` unpacks Snakemake's object and
calls one plain typed function (in the module named for what it does) that tests call directly.

Logic modules are imported inside the steps, so a CPU rule never imports torch.
"""

from __future__ import annotations

from typing import Any

from genomelab.config import param


def simulate_step(smk: Any) -> None:
    from genomelab.deconv.simulate import SimulationConfig, simulate_demo

    simulate_demo(
        SimulationConfig.from_dict(param(smk, "simulate"), seed=int(smk.params.seed)),
        smk.output.samples,
        smk.output.sheet,
        smk.output.new_samples,
        smk.output.new_truth,
        smk.output.profiles,
        smk.output.record,
    )


def sources_step(smk: Any) -> None:
    from genomelab.deconv.sources import build_sources

    build_sources(
        smk.input.get("sheet"),
        smk.input.get("features"),
        list(param(smk, "fractions")),
        int(smk.params.seed),
        smk.output.h5,
        smk.output.json,
    )


def reference_step(smk: Any) -> None:
    from genomelab.deconv.reference import ReferenceConfig, write_reference

    write_reference(
        smk.input.sources,
        smk.input.get("atlas"),
        ReferenceConfig.from_dict(param(smk, "reference")),
        smk.output.reference,
        smk.output.markers,
        smk.output.all_regions,
        param(smk, "mixtures"),
        int(smk.params.seed),
        float(smk.params.presence_threshold),
        int(smk.params.atlas_subsample),
    )


def mixtures_step(smk: Any) -> None:
    from genomelab.deconv.mixtures import write_phase_mixtures

    write_phase_mixtures(
        smk.input.sources,
        smk.input.reference,
        smk.wildcards.phase,
        param(smk, "mixtures"),
        int(smk.params.seed),
        smk.output[0],
    )


def diagnostics_step(smk: Any) -> None:
    from genomelab.deconv.diagnostics import diagnose

    diagnose(
        smk.input.sources,
        smk.input.reference,
        list(smk.input.mixtures),
        param(smk, "model"),
        float(smk.params.presence_threshold),
        int(smk.params.seed),
        smk.output[0],
    )


def nnls_step(smk: Any) -> None:
    from genomelab.deconv.baseline import run_nnls

    run_nnls(
        smk.input.mixtures,
        smk.input.reference,
        smk.wildcards.phase,
        float(smk.params.presence_threshold),
        bool(smk.params.unknown_component),
        smk.output.predictions,
        smk.output.metrics,
    )


def independent_step(smk: Any) -> None:
    from genomelab.deconv.independent import write_independent

    write_independent(
        smk.input.sources,
        smk.input.reference,
        list(smk.params.background),
        param(smk, "independent"),
        float(smk.wildcards.coverage.removesuffix("x")),
        int(smk.params.seed),
        smk.output[0],
    )


def evaluate_step(smk: Any) -> None:
    import torch

    from genomelab.deconv.compare import evaluate_independent

    torch.set_num_threads(max(1, int(smk.threads)))
    evaluate_independent(
        smk.input.mixtures,
        smk.input.reference,
        smk.input.all_regions,
        {"plain": smk.input.plain, "sparse": smk.input.sparse},
        float(smk.params.presence_threshold),
        smk.output.json,
        smk.output.tsv,
        smk.output.curve,
    )


def train_step(smk: Any) -> None:
    import torch

    from genomelab.deconv.training import train_model
    from genomelab.train.run import train_param

    # Rules get a fixed number of cores; more intra-op threads than that only contend.
    torch.set_num_threads(max(1, int(smk.threads)))
    train_model(
        smk.input.mixtures,
        smk.input.reference,
        smk.wildcards.variant,
        param(smk, "model"),
        train_param(smk, "deconv", param(smk, "train")),
        float(smk.params.presence_threshold),
        smk.params.state_dir,
        smk.output.model,
        smk.output.metrics,
        smk.output.predictions,
        smk.output.tensorboard,
        device=smk.params.device,
        seed=int(smk.params.seed),
        init_from=smk.input.get("init"),
    )


def compare_step(smk: Any) -> None:
    from genomelab.deconv.compare import compare

    # One (metrics, predictions) pair per repeat and variant.
    runs = {
        v: list(zip(smk.input[f"{v}_metrics"], smk.input[f"{v}_predictions"], strict=True))
        for v in ("plain", "sparse")
    }
    compare(
        smk.wildcards.phase,
        smk.input.mixtures,
        (smk.input.nnls_metrics, smk.input.nnls_predictions),
        runs,
        smk.output.json,
        smk.output.tsv,
        {"miami": smk.output.miami, "scatter": smk.output.scatter, "errors": smk.output.errors},
        int(smk.params.n_miami),
    )


def infer_step(smk: Any) -> None:
    from genomelab.deconv.infer import infer
    from genomelab.io.ids import relaxed_by

    with relaxed_by("deconv.infer.min_match in the run's config"):
        infer(
            smk.input.model,
            smk.input.reference,
            smk.input.samples,
            {k: smk.output[k] for k in ("nnls", "weighted", "model", "residuals", "join", "stacked")},
            float(smk.params.presence_threshold),
            float(smk.params.min_match),
            bool(smk.params.unknown_component),
            float(smk.params.other_threshold),
            smk.input.get("truth"),
        )


def summary_step(smk: Any) -> None:
    from genomelab.deconv.summary import summarise

    summarise(
        list(smk.input.comparisons),
        smk.input.diagnostics,
        smk.input.get("infer"),
        list(smk.input.train_metrics),
        smk.output.json,
        smk.output.md,
        list(smk.input.plots),
        smk.output.curves,
        smk.input.get("markers"),
        background=list(getattr(smk.params, "background", []) or []),
        background_named=bool(getattr(smk.params, "background_named", False)),
    )
