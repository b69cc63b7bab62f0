"""The session's SLURM test cluster, and the ``slurm`` marker (registered here so that this
folder needs nothing from pyproject.toml).

Environment switches:
- ``GENOMELAB_SLURM=0``: skip every SLURM test without trying.
- ``GENOMELAB_SLURM_INSTALL=0``: never run apt-get; skip when SLURM is not installed.
- ``GENOMELAB_SLURM_REQUIRED=1``: a cluster that cannot be installed or started is a test
  failure instead of a skip (for CI machines that are known to support it).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from slurm_cluster import ClusterUnavailable, SlurmCluster, ensure_packages


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slurm: starts a single-node SLURM cluster from Debian packages (root, apt-get); "
        "skipped with the reason where it cannot",
    )


def _unavailable(reason: str) -> None:
    if os.environ.get("GENOMELAB_SLURM_REQUIRED") == "1":
        pytest.fail(f"SLURM test cluster required but unavailable: {reason}")
    pytest.skip(f"SLURM test cluster unavailable: {reason}")


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A running cluster (munge, MariaDB, slurmdbd, slurmctld, slurmd), stopped at the end."""
    if os.environ.get("GENOMELAB_SLURM") == "0":
        pytest.skip("SLURM tests disabled (GENOMELAB_SLURM=0)")
    try:
        ensure_packages(install=os.environ.get("GENOMELAB_SLURM_INSTALL", "1") != "0")
        # A short base path: munge and MariaDB sockets live under it (108-byte limit).
        cluster = SlurmCluster(tmp_path_factory.mktemp("slurm")).start()
    except ClusterUnavailable as exc:
        _unavailable(str(exc))
    try:
        yield cluster
    finally:
        cluster.stop()
