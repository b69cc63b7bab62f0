"""The ``genomelab`` command line: the workflow's steps and checks outside Snakemake.

Examples::

    genomelab init tissue --out my_tissue.yaml
    genomelab validate-config config/demo.yaml
    genomelab gate results/demo/tissue/diagnostics/*.json
    genomelab simulate-tissue --out-dir sim/ --n-regions 5000
    genomelab tissue-features --sheet sim/samples.tsv --out features.h5
    genomelab versions --out versions.json
    genomelab report --configfile my.yaml     (results/<run>/report.html, opening on the summary)
    genomelab restore --configfile my.yaml    (the last good outputs a failed rerun deleted)
    genomelab predict tissue --model results/demo/tissue/train/attention/model.pt --inputs new.h5 --out pred/
    genomelab serve --model results/demo/tissue/train/attention/model.pt --port 8000
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from genomelab import __version__
from genomelab.runtime import log_run_header, setup_logging

logger = logging.getLogger("genomelab.cli")

SCHEMA = Path(__file__).resolve().parents[2] / "schemas" / "config.schema.yaml"
# The report's stylesheet (workflow/report/report.css says why).
REPORT_CSS = Path(__file__).resolve().parents[2] / "report" / "report.css"


def _validate_config(args: argparse.Namespace) -> int:
    import yaml

    from genomelab.config import ConfigError
    from genomelab.config_template import OWN_DATA
    from genomelab.run_config import load_run_config

    config = yaml.safe_load(Path(args.config).read_text()) or {}
    try:
        # The same checks as the workflow's (workflow/rules/common.smk) at parse time.
        load_run_config(config, [args.config], SCHEMA, OWN_DATA)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.print:
        from genomelab.assoc.grid import GRID_TRAIN_KEYS

        # Filled like every key, but each grid point's replaces them and a config that writes
        # them is refused: left out, so that the printed config is one this command accepts.
        for key in GRID_TRAIN_KEYS:
            config["assoc"].get("train", {}).pop(key, None)
        print(yaml.safe_dump(config, sort_keys=False))
    logger.info("%s is valid", args.config)
    return 0


def _init(args: argparse.Namespace) -> int:
    from genomelab.config_template import config_template

    text = config_template(args.module, args.out or "my.yaml")
    if not args.out:
        print(text, end="")
        return 0
    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    logger.info("wrote %s: fill in its <...> placeholders, then %s", out, _plan_command(out))
    return 0


# Where a bare `snakemake` looks for the workflow in the current folder, in its order.
SNAKEFILE_NAMES = ("Snakefile", "snakefile", "workflow/Snakefile", "workflow/snakefile")


def _workflow_args() -> list[str]:
    """What a ``snakemake`` command typed in the current folder needs to find the workflow:
    nothing in the repository, or in a folder with a Snakefile of its own (another checkout,
    a user's wrapper workflow: `-s` would replace theirs); elsewhere (a project folder, as
    the docs run own data) Snakemake finds no Snakefile, so this checkout's, run in ``.``."""
    repo = Path(__file__).resolve().parents[3]
    snakefile = repo / "Snakefile"
    here = Path.cwd().resolve()
    if not snakefile.is_file() or here == repo or any((here / n).is_file() for n in SNAKEFILE_NAMES):
        return []
    return ["-s", str(snakefile), "--directory", "."]


def _snakemake(*args: str, dry_run: bool = False) -> str:
    """``snakemake [-n] <workflow args> <args>`` as a user types it here."""
    return " ".join(["snakemake", *(["-n"] if dry_run else []), *_workflow_args(), *args])


def _plan_command(config: Path) -> str:
    """The dry run of ``config`` as typed in the current folder."""
    return _snakemake("--configfile", str(config), dry_run=True)


def _gate(args: argparse.Namespace) -> int:
    from genomelab.diagnostics import GateError, gate

    try:
        summary = gate(args.files, strict=not args.no_strict)
    except GateError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(json.dumps(summary["counts"]))
    return 0


def _simulate_tissue(args: argparse.Namespace) -> int:
    from genomelab.tissue.simulate import SimulationConfig, simulate_dataset

    cfg = SimulationConfig(
        n_regions=args.n_regions,
        samples_per_subtype=args.samples_per_subtype,
        coverage=args.coverage,
        seed=args.seed,
    )
    print(simulate_dataset(cfg, args.out_dir))
    return 0


def _tissue_features(args: argparse.Namespace) -> int:
    from genomelab.tissue.features import extract_features_from_hdf5, extract_features_from_sheet

    if args.hdf5:
        extract_features_from_hdf5(args.hdf5, args.out, sheet=args.sheet)
    else:
        extract_features_from_sheet(args.sheet, args.out, n_positions=args.n_positions)
    return 0


def _versions(args: argparse.Namespace) -> int:
    from genomelab.report.versions import software_versions, write_software_versions

    if args.out:
        write_software_versions(args.out)
    else:
        print(json.dumps(software_versions(), indent=2))
    return 0


def _snapshot(args: argparse.Namespace) -> int:
    from genomelab.report.snapshot import compare, snapshot

    snap = snapshot(args.results)
    if args.check:
        problems = compare(json.loads(Path(args.check).read_text()), snap)
        for problem in problems:
            print(problem)
        logger.info("%s: %d difference(s) from %s", args.results, len(problems), args.check)
        return 1 if problems else 0
    text = json.dumps(snap, indent=1, sort_keys=True) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        print(text, end="")
    return 0


def _run_name(configfile: str) -> str:
    """The ``run:`` name of a config file; ValueError naming the file when it has none."""
    import yaml

    with open(configfile) as fh:
        config = yaml.safe_load(fh) or {}
    run = config.get("run") if isinstance(config, dict) else None
    if not run:
        raise ValueError(f"{configfile}: no `run:` name; a run's outputs are results/<run>/")
    return str(run)


def report_command(configfile: str, out: str | None = None) -> list[str]:
    """The ``snakemake --report`` command of the run that ``configfile`` names.

    The report goes to ``results/<run>/report.html`` unless ``out`` says otherwise; with the
    run's ``landing.yaml`` (written by the report_summary rule) as ``--report-metadata`` the
    report opens on the run summary rather than on the rule graph.
    Raises ValueError naming ``configfile`` when it has no ``run:`` name.
    """
    run = _run_name(configfile)
    landing = Path("results") / str(run) / "report" / "landing.yaml"
    cmd = [sys.executable, "-m", "snakemake", *_workflow_args(), "--configfile", configfile, "--report"]
    cmd.append(out or str(Path("results") / str(run) / "report.html"))
    cmd += ["--report-stylesheet", str(REPORT_CSS)]
    if landing.exists():
        cmd += ["--report-metadata", str(landing)]
    else:
        logger.warning(
            "%s does not exist (has the run finished?): the report opens on the rule graph", landing
        )
    return cmd


def _restore(args: argparse.Namespace) -> int:
    from genomelab.last_good import restore

    restored = restore(Path("results") / _run_name(args.configfile), args.paths, overwrite=args.overwrite)
    for path in restored:
        print(path)
    if restored:
        # Snakemake's record of the failed attempt names the new settings: it would take the
        # restored files as their product. Say how to make them again once the cause is fixed.
        files = " ".join(sorted({os.path.relpath(p) for p in restored})[:20])
        logger.warning(
            "restored %d file(s): Snakemake takes them as up to date; to remake them with the current "
            "settings run: %s --forcerun %s%s (or --profile instead of --cores)",
            len(restored),
            _snakemake("--cores", "1", "--configfile", args.configfile),
            files,
            " ..." if len(restored) > 20 else "",
        )
    return 0


def _report(args: argparse.Namespace) -> int:
    summary = Path("results") / _run_name(args.configfile) / "report" / "summary.md"
    if not summary.exists():
        # Snakemake's report of an unfinished run stops on the first missing report file
        # with a WorkflowError; say what is missing and what to run instead.
        logger.error(
            "%s does not exist: the run of %s has not finished (or runs in another folder); "
            "finish it with `%s` (or --profile for a cluster), then make the report",
            summary,
            args.configfile,
            _snakemake("--cores", "1", "--configfile", args.configfile),
        )
        return 2
    target = Path(args.out or Path("results") / _run_name(args.configfile) / "report.html")
    return run_staged(lambda staged: report_command(args.configfile, str(staged)), target)


def run_staged(command: Callable[[Path], list[str]], target: Path) -> int:
    """Run ``command(staged)``, a child process writing one file, then rename it onto ``target``.

    ``staged`` has ``target``'s name (Snakemake names a zip report's folder after it) in a
    hidden folder beside it. A child that fails or is interrupted (Ctrl-C, SIGTERM, SIGHUP: the
    child is stopped too) leaves neither a partial ``target`` nor the folder; an earlier
    ``target`` stays until the new one is complete. Returns the child's exit code (1 when it
    exits 0 without writing the file).
    """
    import shutil

    from genomelab.io.atomic import staging_dir
    from genomelab.runtime import signals_as_exit

    stage = staging_dir(target)
    staged = stage / target.name
    try:
        with signals_as_exit():
            cmd = command(staged)
            logger.info("%s", " ".join(cmd))
            child = subprocess.Popen(cmd)
            try:
                rc = child.wait()
            except BaseException:
                _stop(child)
                raise
        if rc == 0 and not staged.exists():
            # Success without the file would leave an earlier target in place, unnoticed.
            logger.error("%s exited 0 but wrote no %s; %s is unchanged", cmd[0], target.name, target)
            return 1
        if rc == 0:
            os.replace(staged, target)
            logger.info("wrote %s", target)
        return rc
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _stop(child: subprocess.Popen) -> None:
    """Stop the process ``child`` and wait until it has ended. A second signal while it ends
    (Ctrl-C pressed again, SIGHUP then SIGTERM) kills it rather than leaving it running alone,
    still writing into the staged folder after it was removed."""
    child.terminate()
    while True:
        try:
            child.wait()
            return
        except BaseException:  # noqa: BLE001 - the first signal is the one re-raised
            child.kill()


def build_parser() -> argparse.ArgumentParser:
    from genomelab.config_template import OWN_DATA

    parser = argparse.ArgumentParser(prog="genomelab", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"genomelab {__version__}")
    parser.add_argument("--log", help="also write the log to this file")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "init", help="write a commented starting config that enables one module (from the schemas)"
    )
    p.add_argument("module", choices=list(OWN_DATA))
    p.add_argument("--out", help="write it here (default: print it)")
    p.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    p.set_defaults(func=_init)

    p = sub.add_parser("validate-config", help="fill defaults and validate a config file against the schema")
    p.add_argument("config")
    p.add_argument("--print", action="store_true", help="print the config with defaults filled in")
    p.set_defaults(func=_validate_config)

    p = sub.add_parser("gate", help="read diagnostics JSON files; exit 1 if a blocking check failed")
    p.add_argument("files", nargs="+")
    p.add_argument("--no-strict", action="store_true")
    p.set_defaults(func=_gate)

    p = sub.add_parser("simulate-tissue", help="simulate per-sample methylation NPZ files")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--n-regions", type=int, default=2000)
    p.add_argument("--samples-per-subtype", type=int, default=6)
    p.add_argument("--coverage", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_simulate_tissue)

    p = sub.add_parser("tissue-features", help="region-mean features from a sample sheet or stacked HDF5")
    p.add_argument("--sheet")
    p.add_argument("--hdf5")
    p.add_argument("--out", required=True)
    p.add_argument("--n-positions", type=int, default=150)
    p.set_defaults(func=_tissue_features)

    p = sub.add_parser(
        "snapshot", help="snapshot of a run's outputs that holds across machines (snapshot tests)"
    )
    p.add_argument("results", help="a run's results folder, e.g. results/test for config/test.yaml")
    p.add_argument("--out", help="write the snapshot here (default: print it)")
    p.add_argument("--check", metavar="SNAPSHOT", help="compare with this snapshot; exit 1 on differences")
    p.set_defaults(func=_snapshot)

    p = sub.add_parser(
        "report", help="the Snakemake HTML report of a finished run, opening on its run summary"
    )
    p.add_argument("--configfile", required=True, help="the config the run was made with")
    p.add_argument("--out", help="the report file (default: results/<run>/report.html)")
    p.set_defaults(func=_report)

    p = sub.add_parser("restore", help="put back a run's last good outputs that a failed rerun deleted")
    p.add_argument("--configfile", required=True, help="the config the run was made with")
    p.add_argument("paths", nargs="*", help="only these outputs or folders (default: every missing one)")
    p.add_argument("--overwrite", action="store_true", help="also replace outputs that exist")
    p.set_defaults(func=_restore)

    p = sub.add_parser("versions", help="print or write the software-versions record")
    p.add_argument("--out")
    p.set_defaults(func=_versions)

    from genomelab.predict.cli import add_parser as add_predict
    from genomelab.serve.cli import add_parser as add_serve

    add_predict(sub)
    add_serve(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log)
    log_run_header(logger)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError) as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
