"""Results on 2 and 3 pretend hosts are byte-identical to one host's, under both MPIs."""

from __future__ import annotations

import subprocess

import h5py
import pytest
from conftest import file_columns as datasets

from .conftest import MPIBATCH, TASKS, mpich

ARGS = ("run", TASKS / "mixed.py", "--reps", 5, "--seed", 77, "--quiet")


@pytest.fixture(scope="module")
def one_host(tmp_path_factory):
    """The reference: two ranks on this machine, no pretend hosts."""
    out = tmp_path_factory.mktemp("one") / "one.h5"
    cmd = [mpich().mpiexec, "-n", "2", MPIBATCH, *map(str, ARGS), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    return datasets(out)


@pytest.mark.parametrize("n_hosts", [2, 3], ids=["2x2", "3x2"])
def test_results_are_byte_identical_to_one_host(cluster, mpi, one_host, tmp_path, n_hosts):
    out = tmp_path / "many.h5"
    r = mpi.mpibatch(cluster, *ARGS, "--out", out, n=2 * n_hosts, hosts=cluster.hosts[:n_hosts])
    assert r.returncode == 0, r.stdout + r.stderr
    assert set(one_host) >= {"results/mean", "results/draws", "results/count", "results/flag"}
    assert datasets(out) == one_host
    with h5py.File(out, "r") as f:
        hosts = {h.decode() if isinstance(h, bytes) else h for h in f["ranks/host"][()]}
        assert int(f.attrs["n_ranks"]) == 2 * n_hosts
    assert hosts == set(cluster.hosts[:n_hosts])
