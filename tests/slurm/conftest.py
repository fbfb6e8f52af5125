"""Session fixture `slurm`: one real single-node Slurm cluster for all tests in tests/slurm.

Skipped (with the reason) only where Slurm cannot be installed or run here: not root, no
apt, no package access.  Once it can, a failure to start is an error, not a skip.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cluster import Cluster, ClusterError, why_unavailable  # noqa: E402

__all__ = ["Cluster", "ClusterError"]


@pytest.fixture(scope="session")
def slurm():
    """A started `Cluster` (4 CPUs on one node); stopped after the session."""
    t0 = time.monotonic()
    reason = why_unavailable()
    if reason:
        pytest.skip(f"no Slurm here: {reason}")
    installed = time.monotonic() - t0
    cluster = Cluster(cpus=4).start()
    print(
        f"\nslurm: install check {installed:.1f} s, start {cluster.startup_s:.1f} s "
        f"({cluster.dir})",
        file=sys.stderr,
    )
    try:
        yield cluster
    finally:
        cluster.stop()
