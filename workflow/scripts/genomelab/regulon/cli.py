"""Run the regulon chain without Snakemake (handy on a workstation or for debugging)::

    python -m genomelab.regulon.cli --dump resources/regulon/dump \
        --genome resources/regulon/genome.fna.gz --out results/regulon_cli [--test-mode]
    python -m genomelab.regulon.cli --operons OperonSet.txt --genes GeneProductSet.txt \
        --expression-table log_tpm.csv.gz --table-transform log2p1 --genome genome.fna.gz --out ...

``--process-data-only`` stops after processing and targets (data report, normalisation
statistics, targets.h5); ``--test-mode`` models a 300 kb region with a tiny network for
two epochs (about a minute on a laptop CPU). ``--config`` takes a YAML file shaped like the
``regulon:`` block of config/demo.yaml. The live MongoDB path: ``--mongodb-uri-env VAR``.
"""

from __future__ import annotations

import argparse
import copy
import logging
from pathlib import Path
from typing import Any

import yaml

from genomelab.config import SCHEMA_DIR
from genomelab.config_schema import fill_defaults
from genomelab.regulon import baselines as rbase
from genomelab.regulon import data as rdata
from genomelab.regulon import diagnostics as rdiag
from genomelab.regulon import evaluate as reval
from genomelab.regulon import targets as rtargets
from genomelab.regulon import training as rtraining
from genomelab.regulon.diagnostics import DiagnosticsConfig
from genomelab.runtime import log_run_header, setup_logging
from genomelab.train.engine import TrainConfig

logger = logging.getLogger(__name__)

TEST_MODE = {
    "targets": {"region_end": 307200, "block_bp": 20480},
    "model": {"channels": 16, "n_layers": 4},
    "baseline": {"max_train_rows": 20000},
    "diagnostics": {"n_check_windows": 32},
    "train": {"max_epochs": 2, "batch_size": 32, "lr": 0.003},
    "plot_bp": 10000,
}


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def run(
    dump: str | None,
    genome: str,
    out: str | Path,
    cfg: dict[str, Any],
    uri_env: str | None = None,
    process_data_only: bool = False,
    device: str = "auto",
    seed: int = 0,
) -> dict[str, Any]:
    """The whole chain into ``out``; returns the evaluation payload (or the data report).

    ``cfg`` is the ``regulon`` section, complete or not: the schema fills what it leaves out.
    """
    out = Path(out)
    cfg = fill_defaults(copy.deepcopy(cfg), SCHEMA_DIR / "regulon.schema.yaml")
    source = rdata.source_from_config({**cfg, "mongodb_uri_env": uri_env}, dump)
    data = out / "data"
    report = rdata.process(
        source,
        genome,
        data / "genes.tsv",
        data / "operons.tsv",
        data / "norm_stats.json",
        data / "data_report.json",
        cfg["expression"]["value"],
        cfg["annotation"],
        cfg["contig"],
        cfg["min_confidence"],
        (cfg["targets"]["region_start"], cfg["targets"]["region_end"]),
    )
    rtargets.make_targets(
        data / "genes.tsv",
        data / "operons.tsv",
        genome,
        cfg["targets"],
        data / "targets.h5",
        cfg["contig"],
        seed,
        data / "blocks.tsv",
    )
    if process_data_only:
        logger.info("--process-data-only: stopping after %s", data / "targets.h5")
        return report
    model_cfg = rtraining.model_config(cfg["model"], cfg["targets"])
    rdiag.diagnose(
        data / "targets.h5",
        data / "data_report.json",
        model_cfg,
        DiagnosticsConfig.from_dict(cfg["diagnostics"]),
        out / "diagnostics" / "checks.json",
        seed,
        "cpu",
    )
    from genomelab.diagnostics import gate

    gate([out / "diagnostics" / "checks.json"], strict=True)
    rbase.run_baselines(
        data / "targets.h5",
        cfg["baseline"],
        out / "baselines" / "predictions.h5",
        out / "baselines" / "info.json",
        seed,
    )
    train_cfg = TrainConfig.from_dict(cfg["train"], seed=seed)
    rtraining.train(
        data / "targets.h5",
        model_cfg,
        train_cfg,
        out / ".state",
        out / "model" / "best.pt",
        out / "model" / "metrics.json",
        out / "model" / "tensorboard",
        out / "model" / "predictions.h5",
        device,
        data / "genes.tsv",
    )
    return reval.evaluate(
        data / "targets.h5",
        data / "genes.tsv",
        data / "norm_stats.json",
        out / "model" / "predictions.h5",
        out / "baselines" / "predictions.h5",
        out,
        cfg["plot_bp"],
        "test",
        out / "model" / "metrics.json",
        (out / "diagnostics" / "checks.json",),
        data / "data_report.json",
        out / "summary.json",
        out / "summary.md",
        cfg["baseline"],
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="regulon: RegulonDB dump + genome -> three-head sequence model"
    )
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--dump", help="mongodump folder")
    src.add_argument("--mongodb-uri-env", help="environment variable holding a MongoDB URI")
    src.add_argument("--operons", help="RegulonDB operon flat file or datamart (OperonSet)")
    parser.add_argument("--genes", help="RegulonDB gene flat file or datamart (GeneProductSet)")
    parser.add_argument("--expression-table", help="gene x sample expression table (optional)")
    parser.add_argument(
        "--table-transform", default="linear", help="linear, log2p1 (PRECISE), log1p, log10p1"
    )
    parser.add_argument("--genome", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", help="YAML shaped like the regulon: block of config/demo.yaml")
    parser.add_argument("--test-mode", action="store_true", help="tiny region, tiny model, two epochs")
    parser.add_argument(
        "--process-data-only", action="store_true", help="stop after the data report and targets"
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    setup_logging(Path(args.out) / "regulon.log")
    log_run_header(logger, seed=args.seed, device=args.device)
    cfg: dict[str, Any] = {}
    if args.config:
        with open(args.config) as fh:
            cfg = yaml.safe_load(fh) or {}
        cfg = cfg.get("regulon", cfg)
    cfg = {k: v for k, v in cfg.items() if k not in ("enabled", "dump_dir", "genome", "mongodb_uri_env")}
    if args.test_mode:
        cfg = _merge(cfg, TEST_MODE)
    if args.operons:
        cfg["flat_files"] = {"genes": args.genes, "operons": args.operons}
    if args.expression_table:
        cfg = _merge(
            cfg, {"expression": {"table": args.expression_table, "table_transform": args.table_transform}}
        )
    try:
        run(
            args.dump,
            args.genome,
            args.out,
            cfg,
            args.mongodb_uri_env,
            args.process_data_only,
            args.device,
            args.seed,
        )
    finally:
        # setup_logging removes old handlers without closing them; close our log file here so
        # that repeated calls in one process (tests) do not leak file handles.
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            handler.close()
            root.removeHandler(handler)


if __name__ == "__main__":
    main()
