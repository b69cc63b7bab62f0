"""Thin glue between Snakemake ``script:`` rules and the package's step functions.

Every rule's ``script:`` is ``workflow/scripts/run_step.py``, which calls
``dispatch(snakemake)``: the rule's name picks its step in ``steps_registry.STEPS``, and
``run_rule`` runs it. That sets up logging into the rule's log file, writes the run header,
converts failures into a clear log message plus a non-zero exit, and turns a training
interruption (SIGTERM/SIGUSR1 from SLURM) into exit code 128 + signal so that Snakemake
retries the job, which then resumes from ``last.pt``.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

# Idle OpenMP threads (torch's CPU pool) sleep at once instead of spinning, unless the user's
# environment sets the policy. Snakemake keeps a job to its `threads`, but cores are shared
# all the same on nodes without core binding, beside other users' processes, and between a
# job's own thread pools; a spinning thread then takes the core another one needs. Measured
# (benchmarks/bench_omp_wait_policy.py, 51,089 regions, a quiet 2-core machine): two CPU
# training jobs of two threads sharing the cores took 0.79x the default policy's wall time
# and 0.74x its CPU; one job alone 1.01x and 0.95x (docs/slurm.md, "Threads").
# Set before torch loads: libgomp reads it once.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# A folder: with it set, each finished job writes there which packages genomelab's code
# imported in it, for the developers' check of envs/*.yaml (tests/test_envs.py).
IMPORT_RECORD_ENV = "GENOMELAB_IMPORT_RECORD"
# (top-level package, importing file, line, the genomelab frames above it as (file, line)).
_IMPORTED: set[tuple[str, str, int, tuple[tuple[str, int], ...]]] = set()
# (the genomelab modules an import statement brings in, its file, line, via): every such
# statement, by any code, each time it runs. Python runs a module's top-level imports only
# at its first import, so their ``via`` names that first path alone; these tell whether the
# module is also imported where it is required (tests/test_envs.py).
_GENOMELAB_IMPORTED: set[tuple[tuple[str, ...], str, int, tuple[tuple[str, int], ...]]] = set()


def _is_genomelab(module: str) -> bool:
    return module == "genomelab" or module.startswith("genomelab.")


def _brought_in(name: str, fromlist: Sequence[str], result: ModuleType) -> tuple[str, ...]:
    """The modules an import statement of ``name`` loads (or finds loaded), ``result`` being
    what ``__import__`` returned: ``import a.b.c`` brings in ``a``, ``a.b`` and ``a.b.c``;
    ``from a.b import c`` brings in ``a``, ``a.b``, and ``a.b.c`` when ``c`` is that
    submodule rather than a name defined in ``a.b`` (``import *`` adds none)."""
    parts = name.split(".")
    modules = [".".join(parts[: i + 1]) for i in range(len(parts))]
    if fromlist:
        base = result.__name__
        for attr in fromlist:
            sub = sys.modules.get(f"{base}.{attr}")
            if sub is not None and getattr(result, attr, None) is sub:
                modules.append(f"{base}.{attr}")
    return tuple(modules)


def _record_genomelab_imports() -> None:
    """Wrap ``__import__`` so that every ``import x`` / ``from x import y`` executed by
    genomelab's code adds ``x``'s top-level name, with the file and line of the statement,
    to ``_IMPORTED``, whether or not ``x`` was already loaded. Only imports made by genomelab
    count: a library's optional imports (``try: import psutil``) are its own business and its
    conda package's dependencies. Where the statement is tells a required import from an
    optional one (inside ``try: ... except ImportError``); so do the genomelab frames above it
    (``via``): ``import numba`` at the top of ``kmer_kernel`` is optional when ``kmer_kernel``
    is itself imported inside such a ``try``.

    Every import of a genomelab module, by any code (the rule's script, a test), also adds
    the modules it brings in, its file, line and ``via`` to ``_GENOMELAB_IMPORTED``, each time
    it runs: ``kmer_kernel`` imported once under ``try`` and once outside it needs numba,
    though its ``import numba`` ran (and was recorded) only under the ``try``. Imports through
    ``importlib.import_module`` (the step's module) bypass ``__import__``: the ``via`` of the
    imports they run names them."""
    import builtins

    original = builtins.__import__

    def recording_import(
        name: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> ModuleType:
        # Every import of every library passes here: the common case (neither side genomelab)
        # costs two string prefix tests.
        module = str((globals or {}).get("__name__", ""))
        by_genomelab = module.startswith("genomelab") and _is_genomelab(module)
        # (a relative import stays in the importing package)
        of_genomelab = by_genomelab if level else name.startswith("genomelab") and _is_genomelab(name)
        if not (by_genomelab or of_genomelab):
            return original(name, globals, locals, fromlist, level)
        caller = sys._getframe(1)
        via = []
        frame = caller.f_back
        while frame is not None:
            # (this wrapper's own frames, of outer imports, are not the importing code)
            if frame.f_code is not own_code and _is_genomelab(str(frame.f_globals.get("__name__", ""))):
                via.append((frame.f_code.co_filename, frame.f_lineno))
            frame = frame.f_back
        where = (caller.f_code.co_filename, caller.f_lineno, tuple(via))
        if by_genomelab and not level:
            _IMPORTED.add((name.partition(".")[0], *where))
        result = original(name, globals, locals, fromlist, level)
        if of_genomelab:
            # ``from x import y`` (relative too) returns ``x`` itself, ``import x.y`` the top package.
            _GENOMELAB_IMPORTED.add(
                (_brought_in(result.__name__ if fromlist else name, fromlist, result), *where)
            )
        return result

    own_code = recording_import.__code__
    builtins.__import__ = recording_import  # type: ignore[assignment]


if os.environ.get(IMPORT_RECORD_ENV):
    _record_genomelab_imports()

import genomelab  # noqa: E402 - after the import recorder above
from genomelab.runtime import log_run_header, setup_logging  # noqa: E402
from genomelab.steps_registry import STEPS  # noqa: E402

logger = logging.getLogger("genomelab")


def _n_processes(smk: Any) -> int:
    try:
        return int(getattr(smk.resources, "gpu", 0) or 0)
    except (TypeError, ValueError):
        return 0


def relaunch_distributed(n_procs: int, script: str, script_args: list[str] | None = None) -> int:
    """Run ``script`` again under torchrun with ``n_procs`` processes; return its exit code.

    Used when a training rule asks for more than one GPU: each process then finds
    ``WORLD_SIZE`` in its environment and the Trainer trains data-parallel.
    """
    from torch.distributed.run import get_args_parser, run

    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={n_procs}", script, *(script_args or [])]
    )
    try:
        run(args)
    except Exception as exc:  # noqa: BLE001 - torchrun raises ChildFailedError with the details
        logger.error("distributed training failed: %s", exc)
        return 1
    return 0


def limit_threads(threads: int) -> None:
    """Keep BLAS/OpenMP and torch to the rule's ``threads``.

    Libraries default to one thread per core of the node; several jobs on a shared node (or
    a SLURM allocation smaller than the node) then oversubscribe it and run many times slower.
    """
    threads = max(1, threads)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(threads)
    except ImportError:
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


# The attempt log a torchrun launcher claimed, for its worker processes to append to.
ATTEMPT_LOG_ENV = "GENOMELAB_ATTEMPT_LOG"
ATTEMPT_RE = re.compile(r"attempt(\d+)\.log")


def attempt_log(smk: Any) -> Path | None:
    """This attempt's own log, ``<params.state_dir>/attempts/attempt<N>.log``, for a rule
    with a state folder (the training rules); None for other rules.

    Snakemake deletes a job's rule log before it runs the job again (a retry, a rerun after a
    kill, a SLURM requeue), so the log of an interrupted attempt would be lost; the state
    folder, which holds ``last.pt``, it leaves alone. N counts every attempt of the job.
    """
    state_dir = getattr(getattr(smk, "params", None), "state_dir", None)
    if not state_dir:
        return None
    if "WORLD_SIZE" in os.environ and os.environ.get(ATTEMPT_LOG_ENV):
        return Path(os.environ[ATTEMPT_LOG_ENV])
    folder = Path(state_dir) / "attempts"
    folder.mkdir(parents=True, exist_ok=True)
    done = [int(m.group(1)) for p in folder.iterdir() if (m := ATTEMPT_RE.fullmatch(p.name))]
    n = max(done, default=0) + 1
    while True:  # exclusive creation: two processes never share an attempt number
        path = folder / f"attempt{n}.log"
        try:
            path.open("x").close()
            return path
        except FileExistsError:
            n += 1


def run_rule(smk: Any, step: Callable[[Any], Any]) -> None:
    """Run ``step(smk)`` for the Snakemake object ``smk`` with logging and exit codes.

    A rule with ``resources: gpu`` > 1 is relaunched under torchrun (one process per GPU);
    every process runs ``step``, the Trainer makes only rank 0 write checkpoints and metrics.
    """
    log_file = smk.log[0] if len(smk.log) else None
    attempt = attempt_log(smk)
    setup_logging(log_file, also=[attempt] if attempt is not None else [])
    limit_threads(int(getattr(smk, "threads", 1) or 1))
    n_procs = _n_processes(smk)
    if n_procs > 1 and "WORLD_SIZE" not in os.environ:
        logger.info(
            "rule %s asks for %d GPUs: launching %d processes with torchrun", smk.rule, n_procs, n_procs
        )
        if attempt is not None:
            os.environ[ATTEMPT_LOG_ENV] = str(attempt)
        sys.exit(relaunch_distributed(n_procs, sys.argv[0], sys.argv[1:]))
    seed = smk.config.get("seed") if hasattr(smk, "config") else None
    log_run_header(logger, seed=seed)
    # Which copy of the package ran: another clone's or an installed genomelab must not.
    logger.info("genomelab code: %s", Path(genomelab.__file__).resolve().parent)
    logger.info("rule %s, wildcards %s", smk.rule, dict(smk.wildcards.items()))
    # What a slow job's reader asks first: how many threads, and whether idle ones spin.
    logger.info(
        "threads: %s (OMP_NUM_THREADS=%s, OMP_WAIT_POLICY=%s)",
        getattr(smk, "threads", 1),
        os.environ.get("OMP_NUM_THREADS", "unset"),
        os.environ.get("OMP_WAIT_POLICY", "unset"),
    )
    logger.info("inputs: %s", list(smk.input))
    logger.info("outputs: %s", list(smk.output))
    if attempt is not None:
        logger.info("this attempt's log is also kept as %s (every attempt's is)", attempt)
    try:
        step(smk)
    except Exception as exc:  # noqa: BLE001 - every failure must reach the log, then exit non-zero
        from genomelab.train.engine import TrainingInterrupted

        if isinstance(exc, TrainingInterrupted):
            logger.warning("%s; rerun (or let SLURM requeue) to resume", exc)
            sys.exit(128 + exc.signum)
        logger.error("rule %s failed: %s: %s", smk.rule, type(exc).__name__, exc, exc_info=exc)
        sys.exit(1)
    if "WORLD_SIZE" in os.environ and "torch" in sys.modules:
        from genomelab.train.distributed import shutdown

        # Before rank 0's file keeping below: the other ranks need not wait for it.
        shutdown()
    _keep_last_good(smk)
    _prune_states(smk)
    logger.info("rule %s finished", smk.rule)


def _prune_states(smk: Any) -> None:
    """A finished training job keeps its newest ``state.keep`` training states (one process)."""
    from genomelab.last_good import prune_states

    state_dir = getattr(getattr(smk, "params", None), "state_dir", None)
    config = getattr(smk, "config", None) or {}
    if not state_dir or int(os.environ.get("RANK", "0")) != 0:
        return
    prune_states(state_dir, int(config.get("state", {}).get("keep", 2)))


def _keep_last_good(smk: Any) -> None:
    """Keep the job's outputs where a failed rerun cannot delete them (genomelab.last_good);
    one process of a data-parallel run does it."""
    from genomelab.last_good import keep

    run = smk.config.get("run") if hasattr(smk, "config") else None
    if not run or int(os.environ.get("RANK", "0")) != 0:
        return
    try:
        n = keep(list(smk.output), Path("results") / str(run))
    except OSError as exc:  # a full disk must not fail a job whose outputs are written
        logger.warning("could not keep a copy of the outputs in results/%s/.state/last_good: %s", run, exc)
        return
    logger.info("kept %d output file(s) in results/%s/.state/last_good (genomelab restore)", n, run)


def resolve_step(rule: str, steps: Mapping[str, str] = STEPS) -> Callable[[Any], Any]:
    """Import and return the step registered for ``rule`` (``"package.module:function"``)."""
    try:
        target = steps[rule]
    except KeyError:
        raise ValueError(
            f"no step registered for rule {rule!r} in genomelab/steps_registry.py; "
            f"registered rules: {', '.join(sorted(steps))}"
        ) from None
    module_name, _, function_name = target.partition(":")
    step = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(step):
        raise ValueError(
            f"rule {rule!r} is registered as {target!r}, but {module_name} has no function {function_name}"
        )
    return step


def dispatch(smk: Any, steps: Mapping[str, str] = STEPS) -> None:
    """Run the step registered for the rule ``smk.rule`` through ``run_rule``.

    The step is imported inside ``run_rule``: a failed import reaches the rule's log, and a
    multi-GPU rule's launcher process relaunches under torchrun without importing it.
    """
    run_rule(smk, lambda smk_: resolve_step(smk_.rule, steps)(smk_))
    folder = os.environ.get(IMPORT_RECORD_ENV)
    if folder:
        record_imports(Path(folder), smk.rule)


def _shown(file: str) -> str:
    """``file`` relative to the folder holding genomelab where it is in it; code with no
    file (``<string>``, ``python -c``) as Python names it."""
    if file.startswith("<"):
        return file
    path = Path(file).resolve()
    scripts = Path(__file__).resolve().parents[1]
    return str(path.relative_to(scripts) if path.is_relative_to(scripts) else path)


def imported_packages() -> list[dict[str, object]]:
    """The third-party packages genomelab's code imported since ``_record_genomelab_imports``
    was installed (the standard library and genomelab left out), each with where:
    ``{"package", "file", "line", "via"}``, files relative to the folder holding genomelab,
    ``via`` the ``[file, line]`` of each genomelab frame above the import (innermost first). What the
    job's conda environment has to provide, less the optional imports among them. Snakemake
    appends its own site-packages to ``sys.path`` for its script preamble, so a package
    missing from an environment can still import where Snakemake's installation has it;
    this list tells. An import at the top of a module ran once, at the module's first import:
    its ``via`` is that import's path, and ``imported_genomelab_modules`` gives the others."""
    out = []
    for package, file, line, via in sorted(_IMPORTED):
        if package in sys.stdlib_module_names or package == "genomelab":
            continue
        out.append(
            {"package": package, "file": _shown(file), "line": line, "via": [[_shown(f), n] for f, n in via]}
        )
    return out


def imported_genomelab_modules() -> list[dict[str, object]]:
    """Every import statement of a genomelab module that ran since ``_record_genomelab_imports``
    was installed, by any code, whether or not the module was loaded already:
    ``{"modules", "file", "line", "via"}``, ``modules`` the full names of the genomelab
    modules it brings in (``import genomelab.a.b``: ``genomelab``, ``genomelab.a``,
    ``genomelab.a.b``; ``from genomelab.a import b``: the same when ``b`` is a submodule,
    without ``genomelab.a.b`` when ``b`` is a name in ``genomelab.a``), the rest as in
    ``imported_packages``. A module's top-level imports are required of the environment when
    some path that imports it is (tests/test_envs.py)."""
    return [
        {
            "modules": list(modules),
            "file": _shown(file),
            "line": line,
            "via": [[_shown(f), n] for f, n in via],
        }
        for modules, file, line, via in sorted(_GENOMELAB_IMPORTED)
    ]


def record_imports(folder: Path, rule: str) -> Path:
    """Write ``<folder>/<rule>.<pid>.json``: ``{"rule": ..., "imports": imported_packages(),
    "genomelab_imports": imported_genomelab_modules()}``."""
    import json

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{rule}.{os.getpid()}.json"
    record = {"rule": rule, "imports": imported_packages(), "genomelab_imports": imported_genomelab_modules()}
    path.write_text(json.dumps(record) + "\n")
    return path
