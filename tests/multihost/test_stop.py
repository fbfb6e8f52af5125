"""A SIGUSR1 stop on 2 pretend hosts resumes on 3, and the results equal one host's."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import h5py
import pytest

from .conftest import MPIBATCH, mpich
from .test_results import datasets

SLOW = Path(__file__).parent / "tasks" / "slow.py"
ARGS = ("run", SLOW, "--reps", 60, "--seed", 5, "--quiet", "--grace", 20)


def _wait_for(path: Path, timeout: float) -> None:
    """Wait until ``path`` exists (a task has started), or fail."""
    t_end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > t_end:  # a hang: fail instead of waiting forever
            pytest.fail(f"no task started within {timeout} s")
        time.sleep(0.1)


def test_sigusr1_stop_on_two_hosts_resumes_on_three(cluster, mpi, tmp_path):
    ref = tmp_path / "ref.h5"
    cmd = [mpich().mpiexec, "-n", "1", MPIBATCH, *map(str, ARGS), "--out", str(ref)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr

    out, mark = tmp_path / "s.h5", tmp_path / "started"
    env = {"SLOW_MS": "200", "MARK": str(mark)}
    proc = mpi.popen(
        cluster, [MPIBATCH, *ARGS, "--out", out], n=4, hosts=cluster.hosts[:2], env=env
    )
    try:
        _wait_for(mark, timeout=120)
    except BaseException:
        cluster.kill_all(proc)
        raise
    proc.send_signal(signal.SIGUSR1)  # to the launcher on "head": it forwards it to every rank
    r = cluster.wait(proc, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "stopped early (SIGUSR1" in r.stderr and "--resume" in r.stderr, r.stderr
    with h5py.File(out, "r") as f:
        done = int((f["tasks/status"][()] == 1).sum())
    assert 0 < done < 240

    r = mpi.mpibatch(cluster, *ARGS, "--out", out, "--resume", n=6, env={"SLOW_MS": "0"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert datasets(out) == datasets(ref)
    with h5py.File(out, "r") as f:
        hosts = [h.decode() if isinstance(h, bytes) else h for h in f["ranks/host"][()]]
        assert [s["n_ranks"] for s in json.loads(f.attrs["sessions"])] == [4, 6]
    assert sorted(set(hosts)) == ["node1", "node2", "node3"]
