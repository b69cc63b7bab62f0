"""Process-level set-up shared by every entry point: logging, seeds, the run header."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import random
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from genomelab import __version__

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# The `train` keys that say how often a training run saves its state and logs, not what it
# learns: the state fingerprints (genomelab.train.engine) and the training rules' params
# (workflow/rules/common.smk) see them at their defaults (with_default_cadence). Here, not in
# the engine, so that the workflow reads them without importing torch.
CADENCE_KEYS = ("checkpoint_every_steps", "checkpoint_every_epochs", "log_every_steps")


def with_default_cadence(section: Mapping[str, Any]) -> dict[str, Any]:
    """A ``train`` section (or a TrainConfig as a dict) with its :data:`CADENCE_KEYS` at the
    schema defaults: what a state fingerprint hashes and a training rule's params hold. So a
    killed run resumes after its checkpoint or log cadence changed (more frequent checkpoints
    after a preemption must not restart it) and a finished one is not retrained for it. At
    the defaults rather than left out, so that params and state folders made before with the
    default cadence stay the same (a finished run is not retrained after an upgrade)."""
    from genomelab.config import schema_default

    return {**section, **{k: schema_default(f"train.{k}") for k in CADENCE_KEYS}}


def setup_logging(
    log_file: str | os.PathLike | None = None,
    level: int = logging.INFO,
    also: Sequence[str | os.PathLike] = (),
) -> None:
    """Send ``logging`` output to stderr and, when given, to ``log_file`` and the files ``also``
    (appended to, not truncated).

    Snakemake deletes a rule's log before it runs the job again, so a training job also
    writes each attempt's own copy under its state folder (``also``; genomelab.entry).
    """
    root = logging.getLogger()
    root.setLevel(level)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(LOG_FORMAT)
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(formatter)
    root.addHandler(stream)
    for path in ([log_file] if log_file is not None else []) + list(also):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(path, mode="a")
        fh.setFormatter(formatter)
        root.addHandler(fh)
    logging.captureWarnings(True)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and (if installed) torch on every device."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch
    except ImportError:  # CPU-only feature steps may run without torch
        return
    torch.manual_seed(seed)


def log_run_header(logger: logging.Logger, seed: int | None = None, device: str | None = None) -> None:
    """Log what a reader of a rule log needs first: version, seed, device, command line."""
    logger.info("genomelab %s, Python %s on %s", __version__, platform.python_version(), platform.node())
    logger.info("command line: %s", " ".join(sys.argv))
    if seed is not None:
        logger.info("seed: %d", seed)
    if device is not None:
        logger.info("device: %s", device)


@contextlib.contextmanager
def signals_as_exit() -> Iterator[None]:
    """Within: SIGTERM and SIGHUP raise ``SystemExit(128 + signal)``, as Ctrl-C raises
    KeyboardInterrupt, instead of ending the process at once.

    Python's default for SIGTERM (``kill``, ``scancel``, a SLURM time limit) and SIGHUP (a
    closed terminal) skips every ``finally`` and ``except BaseException``, so a command killed
    mid-write would leave its partial outputs in place; this way they are removed. SIGKILL
    cannot be caught: writers that must survive it stage their files and rename them at the end.
    A signal that is ignored (SIGHUP under ``nohup``) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    # A signal the process was started to ignore stays ignored: ``nohup genomelab predict ...``
    # must survive the closed terminal, as it did before this handler.
    wanted = [
        s
        for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
        # None: a handler set outside Python, which signal.signal could not put back.
        if s and signal.getsignal(s) not in (signal.SIG_IGN, None)
    ]
    previous = {sig: signal.signal(sig, _exit) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
