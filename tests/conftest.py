"""Shared fixtures: paths, the ../shared data folder (skipped where absent), tiny RNG."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "workflow" / "scripts"
if str(SCRIPTS) not in sys.path:
    sys.path.insert(0, str(SCRIPTS))

SHARED_DATA = Path(os.environ.get("GENOMELAB_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} not present (a user's clone has none)")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def one_torch_thread():
    """One intra-op torch thread: tiny models gain nothing from more, and on a shared
    2-core machine extra threads only contend (use with ``pytest.mark.usefixtures``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
