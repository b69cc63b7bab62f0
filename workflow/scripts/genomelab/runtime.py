"""Process-level set-up shared by every entry point: logging, seeds, the run header."""

from __future__ import annotations

import logging
import os
import platform
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from genomelab import __version__

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


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
