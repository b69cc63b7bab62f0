"""Command line for the assoc module outside Snakemake.

``train`` runs the whole chain for one scheme and one grid point (data -> features ->
diagnostics -> gate -> baselines -> training) and prints network vs baselines;
``--quick-test`` caps training at 5 epochs with patience 5. ``infer`` ranks candidates for
new entities (see ``genomelab.assoc.infer``). Options default to the ``assoc`` section of
``--config`` (a genomelab config YAML) filled with the schema's defaults::

    PYTHONPATH=workflow/scripts python -m genomelab.assoc.cli train --config config/test.yaml \\
        --out /tmp/assoc_run --scheme entities --quick-test
    PYTHONPATH=workflow/scripts python -m genomelab.assoc.cli infer --model ... --featurizer ... \\
        --queries new.tsv --out predictions.tsv
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import yaml

from genomelab.assoc.grid import check_train_keys
from genomelab.config import SCHEMA_DIR, schema_default
from genomelab.config_schema import fill_defaults

SCHEMA = SCHEMA_DIR / "assoc.schema.yaml"
logger = logging.getLogger(__name__)


def load_section(config_path: Path | None) -> tuple[dict[str, Any], int, str]:
    """The ``assoc`` section (defaults filled), the seed and the device of a config file;
    ``ValueError`` for an ``assoc.train.lr`` / ``batch_size`` there, as the workflow refuses
    them (each grid point's replaces them; here ``--lr`` / ``--batch-size`` do)."""
    config: dict[str, Any] = {}
    if config_path is not None:
        if not config_path.is_file():
            raise FileNotFoundError(f"config file {config_path} does not exist")
        config = yaml.safe_load(config_path.read_text()) or {}
    section = dict(config.get("assoc") or {})
    given_train = dict(section.get("train") or {})  # as written: the defaults would hide a key
    fill_defaults(section, SCHEMA)
    try:
        check_train_keys(given_train, section["grid"])
    except ValueError as exc:
        raise ValueError(f"--config {config_path}: {exc}") from None
    seed = config.get("seed", schema_default("config.seed"))
    return section, int(seed), str(config.get("device", schema_default("config.device")))


def train_main(args: argparse.Namespace) -> dict[str, Any]:
    from genomelab.assoc.baselines import run_baselines
    from genomelab.assoc.data import prepare_data
    from genomelab.assoc.diagnostics import run_diagnostics
    from genomelab.assoc.features import FeatureConfig, build_features
    from genomelab.assoc.training import train_run
    from genomelab.diagnostics import gate, write_results

    section, seed, device = load_section(args.config)
    out = Path(args.out)
    data = section["data"]
    tables = {name: getattr(args, name) or data[name] for name in ("links", "sources", "targets")}
    missing = [name for name, path in tables.items() if not path]
    if missing:
        # The schema has no default data (the demo's are resources/assoc/*.tsv).
        raise ValueError(
            f"no {', '.join(missing)} table: pass --{missing[0]} or set assoc.data.{missing[0]} in --config"
        )
    prepare_data(
        tables["links"],
        tables["sources"],
        tables["targets"],
        out / "data",
        seed,
        tuple(data["split_fractions"]),
        data["min_quality"],
        data["allow_unlinked"],
        data.get("splits") or None,
        data["confidence_words"],
        data["exclude_known"] or None,
    )
    build_features(
        out / "data",
        out / "features.npz",
        out / "featurizer.npz",
        FeatureConfig.from_dict(section["features"]),
        seed,
    )
    results = run_diagnostics(
        out / "data", out / "features.npz", section["model"], section["diagnostics"], seed
    )
    write_results(out / "diagnostics.json", "assoc", results)
    gate([out / "diagnostics.json"], strict=not args.no_gate)
    b = section["baselines"]
    base = run_baselines(out / "data", out / "features.npz", args.scheme, b["knn_k"], b["ridge_alpha"])
    grid = section["grid"]
    point = {
        "lr": args.lr or grid["lr"][0],
        "batch_size": args.batch_size or grid["batch_size"][0],
        "dropout": grid["dropout"][0] if args.dropout is None else args.dropout,
        "bridge_dim": args.bridge_dim or grid["bridge_dim"][0],
    }
    report = train_run(
        out / "data",
        out / "features.npz",
        args.scheme,
        section["model"],
        section["train"],
        point,
        out / "run",
        out / "state",
        args.device or device,
        args.quick_test or section["quick_test"],
    )
    rows = {"network": {k[len("test/") :]: v for k, v in report["test"].items()}}
    rows.update({name: res["test"] for name, res in base.items()})
    for name, metrics in rows.items():
        logger.info(
            "%-10s test mrr_mean %.4f  s2t_acc@5 %.3f  t2s_acc@5 %.3f",
            name,
            metrics["mrr_mean"],
            metrics["s2t_acc@5"],
            metrics["t2s_acc@5"],
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="assoc module: train and rank outside Snakemake")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser("train", help="data -> features -> diagnostics -> baselines -> training")
    tr.add_argument("--config", type=Path, default=None, help="genomelab config YAML (its assoc section)")
    tr.add_argument("--links", type=Path)
    tr.add_argument("--sources", type=Path)
    tr.add_argument("--targets", type=Path)
    tr.add_argument("--scheme", choices=("links", "entities"), default="links")
    tr.add_argument("--out", type=Path, required=True)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--dropout", type=float)
    tr.add_argument("--bridge-dim", type=int)
    tr.add_argument("--device", default=None)
    tr.add_argument("--quick-test", action="store_true", help="at most 5 epochs, patience 5")
    tr.add_argument("--no-gate", action="store_true", help="report failed diagnostics but train anyway")
    sub.add_parser(
        "infer", help="rank candidates for new entities (see --help of that command)", add_help=False
    )
    args, rest = parser.parse_known_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "infer":
        from genomelab.assoc.infer import main as infer_main

        infer_main(rest)
        return
    if rest:
        parser.error(f"unrecognised arguments: {rest}")
    train_main(args)


if __name__ == "__main__":
    main()
