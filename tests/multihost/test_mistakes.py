"""Launch mistakes caught: mpi4py's MPI is not the launcher's; two runs on one --out."""

from __future__ import annotations

import os
import signal
import subprocess

import h5py
import pytest

from .conftest import MPIBATCH, TASKS, mpich, openmpi
from .test_stop import SLOW, _wait_for


def _errors(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("mpibatch: error:")]


def test_mpi4py_on_open_mpi_launched_by_mpich_is_one_clear_line(tmp_path):
    """mpi4py loads Open MPI, Hydra starts 3 processes: each would be a world of its own."""
    leg = openmpi()
    if isinstance(leg, str):
        pytest.skip(leg)
    out = tmp_path / "x.h5"
    cmd = [mpich().mpiexec, "-n", "3", MPIBATCH, "run", str(TASKS / "mixed.py"), "--out", str(out)]
    env = {**os.environ, **leg.env}  # MPI4PY_LIBMPI: Open MPI's library
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = _errors(r.stderr)
    assert len(lines) == 1, r.stderr  # said once, by the process the launcher numbered 0
    assert "mpi4py's MPI (Open MPI v" in lines[0] and "PMI_SIZE=3" in lines[0]
    assert "mpiexec of Open MPI" in lines[0] and "--no-binary=mpi4py" in lines[0]
    assert not out.exists()  # nothing ran


def test_a_second_run_on_the_same_out_is_refused_while_the_first_writes(cluster, tmp_path):
    """Run A (on node1) writes s.h5; run B (on node2, same shared file system) is refused,
    with or without --overwrite, naming A's host and pid; A is untouched and resumable."""
    leg = mpich()
    out, mark = tmp_path / "s.h5", tmp_path / "started"
    args = ["run", SLOW, "--reps", 60, "--seed", 5, "--out", out, "--quiet", "--grace", 20]
    env = {"SLOW_MS": "500", "MARK": str(mark)}
    proc = leg.popen(cluster, [MPIBATCH, *args], n=2, hosts=["node1"], env=env)
    try:
        _wait_for(mark, timeout=120)
        assert (tmp_path / "s.h5.lock").exists()
        for extra in ([], ["--overwrite"]):
            r = leg.mpibatch(cluster, *args, *extra, n=2, hosts=["node2"], env={"MARK": ""})
            assert r.returncode == 2, r.stdout + r.stderr
            lines = _errors(r.stderr)
            assert len(lines) == 1, r.stderr
            assert "is being written by another run (mpibatch on host node1, pid" in lines[0]
            assert "choose another --out" in lines[0]
    except BaseException:
        cluster.kill_all(proc)
        raise
    proc.send_signal(signal.SIGUSR1)
    r = cluster.wait(proc, timeout=120)
    assert r.returncode == 3, r.stdout + r.stderr  # A stopped as asked, not harmed by B
    assert not (tmp_path / "s.h5.lock").exists()  # released and removed at the end
    r = leg.mpibatch(cluster, *args, "--resume", n=4, env={"SLOW_MS": "0", "MARK": ""})
    assert r.returncode == 0, r.stdout + r.stderr
    with h5py.File(out, "r") as f:
        assert (f["tasks/status"][()] == 1).all()
    assert not (tmp_path / "s.h5.lock").exists()


def test_mpi4py_on_mpich_launched_by_open_mpi_stops_promptly_and_writes_nothing(tmp_path):
    """The reverse: the mpich wheel under Open MPI's mpirun. MPICH 5 refuses a PMIx launcher
    in MPI_Init by itself; an MPICH that started single-rank copies instead would meet
    mpibatch's check. Either way: a prompt failure, a message naming PMIx or both MPIs."""
    leg = openmpi()
    if isinstance(leg, str):
        pytest.skip(leg)
    out = tmp_path / "x.h5"
    cmd = [leg.mpiexec, "-n", "3", "--oversubscribe", "--bind-to", "none", MPIBATCH, "run"]
    cmd += [str(TASKS / "mixed.py"), "--out", str(out)]
    env = {k: v for k, v in os.environ.items() if k != "MPI4PY_LIBMPI"}
    env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"})
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert r.returncode != 0, r.stdout + r.stderr
    text = r.stdout + r.stderr
    ours = [ln for ln in _errors(r.stderr) if "sees a world of 1 rank" in ln]
    assert "unsupported PMI version PMIx" in text or (ours and "Open MPI" in ours[0]), text
    assert not out.exists()
