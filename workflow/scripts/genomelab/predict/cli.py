"""``genomelab predict <module> --model model.pt --inputs ... --out DIR``: one command per module.

Every module writes into ``--out``, a new folder (an existing non-empty folder is refused,
so a prediction never overwrites a run's outputs); a prediction that fails removes what it
wrote there, and the folder when it made it. Options left out take the schema
default of the matching config key (``<module>.predict.*`` or the run setting named in
the option's help).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


def _default(value: Any, key: str) -> Any:
    from genomelab.config import schema_default

    return schema_default(key) if value is None else value


def _tissue(a: argparse.Namespace, out: Path) -> None:
    from genomelab.io.ids import relaxed_by
    from genomelab.predict.tissue import predict_files

    with relaxed_by("--min-region-match"):
        predict_files(
            # One file exactly as before; several: their probabilities averaged.
            a.model[0] if len(a.model) == 1 else a.model,
            a.inputs,
            out / "predictions.tsv",
            out / "predictions.json",
            float(_default(a.min_region_match, "tissue.predict.min_region_match")),
            float(_default(a.min_covered, "tissue.predict.min_covered")),
            device=a.device,
            threshold=a.threshold,
        )


def _deconv(a: argparse.Namespace, out: Path) -> None:
    from genomelab.io.ids import relaxed_by
    from genomelab.predict.deconv import predict_files

    if not a.reference:
        raise ValueError("genomelab predict deconv needs --reference (the run's reference/reference.tsv)")
    with relaxed_by("--min-match"):
        predict_files(
            a.model,
            a.reference,
            a.inputs,
            out,
            float(_default(a.presence_threshold, "deconv.presence_threshold")),
            float(_default(a.min_match, "deconv.infer.min_match")),
            bool(_default(a.unknown_component, "deconv.reference.unknown_component")),
            float(_default(a.other_threshold, "deconv.infer.other_threshold")),
            a.truth,
            device=a.device,
        )


def _assoc(a: argparse.Namespace, out: Path) -> None:
    from genomelab.predict.assoc import predict_files

    if not a.featurizer:
        raise ValueError("genomelab predict assoc needs --featurizer (the run's features/featurizer.npz)")
    predict_files(
        # One file exactly as before; several: ranked by the mean of their link probabilities.
        a.model[0] if len(a.model) == 1 else a.model,
        a.featurizer,
        a.inputs,
        _default(a.side, "assoc.infer.side"),
        int(_default(a.top_k, "assoc.infer.top_k")),
        out / "predictions.tsv",
        a.known_links,
        device=a.device,
    )


def _regulon(a: argparse.Namespace, out: Path) -> None:
    from genomelab.predict.regulon import predict_files

    predict_files(
        # One file exactly as before; several: their tracks and pair calls averaged.
        a.model[0] if len(a.model) == 1 else a.model,
        a.inputs,
        out,
        region=a.region or None,
        device=a.device,
        annotation=a.annotation,
    )


def run_config(path: str | Path) -> dict[str, Any]:
    """A run's config file, read as the workflow reads it: schema defaults filled in and
    validated (an invalid file is refused with the workflow's message)."""
    import yaml

    from genomelab.config import SCHEMA_DIR
    from genomelab.config_schema import module_sections
    from genomelab.run_config import load_run_config

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    config = yaml.safe_load(path.read_text()) or {}
    if not isinstance(config, dict):
        raise ValueError(f"{path}: a run config is a YAML mapping (run: ..., <module>: ...)")
    schema = SCHEMA_DIR / "config.schema.yaml"
    return load_run_config(config, [path], schema, module_sections(schema))


def binning_settings(a: argparse.Namespace) -> dict[str, Any]:
    """Clustering, bin and length settings and seed of a binning prediction: the flags, then
    the run's config (``--configfile``, so the run's bins can be reproduced; refused where it
    contradicts the model), then what the model records of its run (length filter, seed),
    then the schema."""
    from genomelab.config import schema_defaults
    from genomelab.predict.binning import check_run_config, min_length_of, recorded_settings

    recorded = recorded_settings(a.model)
    run = run_config(a.configfile) if a.configfile else None
    if run:
        check_run_config(a.model, run, f"--configfile {a.configfile}")
    binning = (
        run["binning"]
        if run
        else {k: schema_defaults(f"binning.{k}") for k in ("cluster", "bins", "features")}
    )
    min_length = recorded.get("binning.features.min_length")
    if not run and min_length is None and a.min_length is None:
        min_length = min_length_of(a.model, {}, "give the run's with --min-length or --configfile")
    pick = {"min_bin_bp": (a.min_bin_bp, binning["bins"]["min_bin_bp"])}
    pick["min_length"] = (a.min_length, binning["features"]["min_length"] if run else min_length)
    pick["seed"] = (a.seed, run["seed"] if run else recorded.get("seed", 0))
    return {"cluster": dict(binning["cluster"])} | {
        k: int(v if v is not None else d) for k, (v, d) in pick.items()
    }


def _binning(a: argparse.Namespace, out: Path) -> None:
    from genomelab.predict.binning import predict_files

    s = binning_settings(a)
    predict_files(
        a.model,
        a.inputs,
        out,
        s["cluster"],
        s["min_bin_bp"],
        s["min_length"],
        depth=a.depth,
        device=a.device,
        seed=s["seed"],
    )


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], None]] = {
    "tissue": _tissue,
    "deconv": _deconv,
    "assoc": _assoc,
    "regulon": _regulon,
    "binning": _binning,
}


def remove_written(out: Path, existed: bool) -> None:
    """Remove what a failed prediction wrote into ``out`` (new, or empty before it ran)."""
    import shutil

    if not existed:
        shutil.rmtree(out, ignore_errors=True)
        return
    for child in out.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)
    logger.info("removed the partial outputs of the failed prediction from %s", out)


def _run(args: argparse.Namespace) -> int:
    from genomelab.entry import limit_threads
    from genomelab.predict.common import fresh_out_dir
    from genomelab.runtime import signals_as_exit

    limit_threads(args.threads)
    existed = Path(args.out).exists()
    out = fresh_out_dir(args.out)
    try:
        # SIGTERM/SIGHUP (kill, scancel, a closed terminal) reach the except below, as Ctrl-C does.
        with signals_as_exit():
            RUNNERS[args.module](args, out)
    except BaseException:
        # The folder was new or empty: whatever is in it now is this failed prediction's,
        # which would also block the rerun into the same --out.
        remove_written(out, existed)
        raise
    models = args.model if isinstance(args.model, str) else " ".join(args.model)
    logger.info("predictions of %s written to %s", models, out)
    return 0


def in_range_of(key: str):
    """An argparse type for an option that stands for config key ``key``: a number (a whole one
    for an integer key) within the key's schema bounds, so the option is refused as the key
    would be, before anything loads; argparse names the option in its error."""
    from genomelab.config import schema_bounds, schema_node

    bounds = schema_bounds(key)
    name = key.removeprefix("config.")  # a top-level key: the name users write
    whole = schema_node(key).get("type") == "integer"
    low = [(bounds[k], k == "gt") for k in ("ge", "gt") if k in bounds]
    high = [(bounds[k], k == "lt") for k in ("le", "lt") if k in bounds]

    def parse(text: str) -> float | int:
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text} is not a {'whole ' if whole else ''}number") from None
        for bound, strict in low:
            if value < bound or (strict and value == bound):
                raise argparse.ArgumentTypeError(
                    f"{text} is {'not above' if strict else 'below'} {bound:g} ({name})"
                )
        for bound, strict in high:
            if value > bound or (strict and value == bound):
                raise argparse.ArgumentTypeError(
                    f"{text} is {'not below' if strict else 'above'} {bound:g} ({name})"
                )
        return value

    parse.__name__ = f"value of {name}"
    return parse


def _key_option(p: argparse.ArgumentParser, flag: str, key: str, help: str | None = None) -> None:
    """An option standing for config key ``key``: checked against the key's range, its help
    the key (or ``help``)."""
    p.add_argument(flag, type=in_range_of(key), help=help or key)


def _module_options(p: argparse.ArgumentParser, module: str) -> None:
    if module == "tissue":
        _key_option(p, "--min-region-match", "tissue.predict.min_region_match")
        _key_option(p, "--min-covered", "tissue.predict.min_covered")
        _key_option(
            p,
            "--threshold",
            "tissue.calibration.threshold",
            "calibrated confidence below which a sample is not classifiable "
            "(default: the model's, its run's tissue.calibration.threshold)",
        )
    elif module == "deconv":
        p.add_argument("--reference", help="reference table (results/<run>/deconv/reference/reference.tsv)")
        p.add_argument("--truth", help="tissues x samples table of true proportions")
        _key_option(
            p,
            "--presence-threshold",
            "deconv.presence_threshold",
            "proportion at which a tissue counts as present when the calls are scored against "
            "--truth (deconv.presence_threshold); the network's own presence mask uses the "
            "thresholds saved in the model",
        )
        _key_option(p, "--min-match", "deconv.infer.min_match")
        p.add_argument("--unknown-component", action=argparse.BooleanOptionalAction, default=None)
        _key_option(p, "--other-threshold", "deconv.infer.other_threshold")
    elif module == "assoc":
        p.add_argument("--featurizer", help="featuriser NPZ (results/<run>/assoc/features/featurizer.npz)")
        p.add_argument("--side", choices=("source", "target"), help="assoc.infer.side")
        _key_option(p, "--top-k", "assoc.infer.top_k")
        p.add_argument("--known-links", help="links TSV, to mark known pairs")
    elif module == "regulon":
        p.add_argument("--region", help="contig or contig:start-end (default: the first record, whole)")
        p.add_argument(
            "--gff",
            "--annotation",
            dest="annotation",
            help="genes of the FASTA (GFF3, or a gene table like the run's data/genes.tsv): "
            "required by models trained with regulon.model.inputs: sequence+annotation, refused by others",
        )
    elif module == "binning":
        p.add_argument("--depth", help="MetaBAT depth table of the assembly")
        _key_option(
            p,
            "--min-length",
            "binning.features.min_length",
            "binning.features.min_length (default: the model's run's)",
        )
        _key_option(p, "--min-bin-bp", "binning.bins.min_bin_bp")
        _key_option(
            p,
            "--seed",
            "config.seed",
            "clustering seed (default: the run config's seed, else the model's run's, else 0)",
        )
        p.add_argument(
            "--configfile",
            help="the run's config: its binning.cluster, bins.min_bin_bp, features.min_length and seed "
            "are used (the flags above still win), so the run's bins can be reproduced; "
            "default: the schema's",
        )


INPUT_HELP = {
    "tissue": "samples: features HDF5, stacked methylation HDF5, sample sheet of NPZ files (ingest's samples.tsv), or one NPZ",
    "deconv": "samples: regions x samples CSV/TSV, region-means HDF5 or NPZ sample sheet",
    "assoc": "entity TSV of new entities",
    "regulon": "FASTA (plain or gzip)",
    "binning": "assembly FASTA (or its k-mer profiles HDF5)",
}


# Modules whose --model takes several files, averaged (a cross-validated run's folds).
AVERAGED = {
    "tissue": "exported model.pt of a run; several (e.g. a cross-validated run's "
    "folds/<k>/train/<model>/model.pt) are averaged: the mean of their calibrated probabilities",
    "regulon": "exported network of a run (model/best.pt); several (a cross-validated run's "
    "folds/<k>/model/best.pt) are averaged: the mean of their tracks and pair calls",
    "assoc": "exported model of a run (<scheme>/best_model.pt); several (a cross-validated run's "
    "folds/<k>/links/best_model.pt) are averaged: candidates ranked by the mean of their link probabilities",
}


def add_parser(sub: Any) -> None:
    """Add ``predict`` with one sub-command per module to the ``genomelab`` parser."""
    p = sub.add_parser("predict", help="apply a trained model (model.pt) to new inputs")
    mods = p.add_subparsers(dest="module", required=True)
    for module in RUNNERS:
        m = mods.add_parser(module, help=f"{module}: {INPUT_HELP[module]}")
        if module in AVERAGED:
            # extend: --model a.pt --model b.pt averages both (the last alone otherwise).
            m.add_argument("--model", required=True, nargs="+", action="extend", help=AVERAGED[module])
        else:
            m.add_argument("--model", required=True, help="exported model.pt of a run")
        m.add_argument("--inputs", required=True, help=INPUT_HELP[module])
        m.add_argument("--out", required=True, help="new output folder")
        m.add_argument("--device", default="cpu")
        m.add_argument("--threads", type=int, default=1)
        _module_options(m, module)
        m.set_defaults(func=_run)
