"""Node leaders across pretend hosts: one leader per host, the same bytes as one host."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from .test_results import ARGS, datasets, one_host  # noqa: F401  (a fixture)


@pytest.mark.parametrize("n_hosts", [2, 3], ids=["2x2", "3x2"])
def test_leaders_across_hosts_give_one_hosts_bytes(cluster, mpi, one_host, tmp_path, n_hosts):  # noqa: F811
    out = tmp_path / "lead.h5"
    hosts = cluster.hosts[:n_hosts]
    r = mpi.mpibatch(cluster, *ARGS, "--leaders", "on", "--out", out, n=2 * n_hosts, hosts=hosts)
    assert r.returncode == 0, r.stdout + r.stderr
    assert datasets(out) == one_host
    with h5py.File(out, "r") as f:
        assert f.attrs["leaders"] == "on"
        ran = set(np.unique(f["tasks/rank"][()]).tolist())
    # host 1: ranks 0 and 1 (rank 1 alone in its group); every other host: its first
    # rank leads (runs no task), the second runs tasks
    leaders = {2 * h for h in range(1, n_hosts)}
    assert not ran & leaders


def test_auto_records_why_leaders_stay_off_on_small_hosts(cluster, mpi, tmp_path):
    out = tmp_path / "auto.h5"
    r = mpi.mpibatch(cluster, *ARGS, "--out", out, n=4, hosts=cluster.hosts[:2])
    assert r.returncode == 0, r.stdout + r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["leaders"] == "off"
        assert "2 nodes, 2 ranks a node < 4" in f.attrs["leaders_reason"]
