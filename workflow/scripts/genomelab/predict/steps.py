"""The ``<module>_predict`` rules' steps, adapters only: each calls the function that
``genomelab predict <module>`` calls (run_rule has already limited the threads)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from genomelab.config import param
from genomelab.io.ids import relaxed_by


def tissue_step(smk: Any) -> None:
    from genomelab.predict.tissue import predict_files

    p = param(smk, "predict")
    with relaxed_by("tissue.predict.min_region_match in the run's config"):
        predict_files(
            # One file (a str) exactly as before; a list (every fold's model): averaged.
            smk.input.model if isinstance(smk.input.model, str) else list(smk.input.model),
            smk.input.inputs,
            smk.output.tsv,
            smk.output.json,
            float(p["min_region_match"]),
            float(p["min_covered"]),
            device=smk.params.device,
            threshold=None if p.get("threshold") is None else float(p["threshold"]),
        )


def deconv_step(smk: Any) -> None:
    from genomelab.predict.deconv import predict_files

    # The rule reads min_match from deconv.infer (deconv.predict has none).
    with relaxed_by("deconv.infer.min_match in the run's config"):
        predict_files(
            smk.input.model,
            smk.input.reference,
            smk.input.inputs,
            Path(smk.output.join).parent,
            float(smk.params.presence_threshold),
            float(smk.params.min_match),
            bool(smk.params.unknown_component),
            float(smk.params.other_threshold),
            smk.input.get("truth"),
            device=smk.params.device,
        )


def assoc_step(smk: Any) -> None:
    from genomelab.predict.assoc import predict_files

    p = param(smk, "infer")
    predict_files(
        # One file (a str) exactly as before; a list (every fold's model, or assoc.predict.model
        # of several): ranked by the mean of their link probabilities.
        smk.input.model if isinstance(smk.input.model, str) else list(smk.input.model),
        smk.input.featurizer,
        smk.input.inputs,
        p["side"],
        int(p["top_k"]),
        smk.output[0],
        known_links=smk.input.get("links"),
        device=smk.params.device,
    )


def regulon_step(smk: Any) -> None:
    from genomelab.predict.regulon import predict_files

    p = param(smk, "predict")
    predict_files(
        # One file (a str); a list (every fold's network, K > 1 folds): averaged.
        smk.input.model if isinstance(smk.input.model, str) else list(smk.input.model),
        smk.input.inputs,
        Path(smk.output.json).parent,
        region=p["region"] or None,
        device=smk.params.device,
        annotation=p["annotation"] or None,
    )


def binning_step(smk: Any) -> None:
    from genomelab.predict.binning import check_run_config, is_profiles, predict_files, remove_previous

    features = param(smk, "features")
    if not is_profiles(smk.input.inputs):
        # binning.predict.model may be another run's model, trained on profiles of contigs
        # of other lengths than this run's filter would profile the assembly with.
        check_run_config(
            smk.input.model,
            {"binning": {"features": features}},
            "the run's config",
            "set it to the model's, or profile the assembly with the model's run and give its "
            "profiles HDF5 as binning.predict.inputs",
        )
    out = Path(smk.output.clusters).parent
    remove_previous(out)
    predict_files(
        smk.input.model,
        smk.input.inputs,
        out,
        param(smk, "cluster"),
        int(smk.params.min_bin_bp),
        int(features["min_length"]),
        depth=smk.input.get("depth"),
        device=smk.params.device,
        seed=int(smk.params.seed),
        engine=str(features.get("engine", "auto")),
    )
