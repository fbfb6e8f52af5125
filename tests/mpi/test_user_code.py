"""Ordinary task code that used to hang a run or lose it: BaseExceptions, process pools,
MPI on COMM_WORLD, Ctrl-C. Every launch has a timeout (conftest): a hang fails the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from conftest import MPIBATCH, MPIEXEC, mpibatch

from mpibatch.streams import task_generator


def _file(tmp_path, text: str, name: str = "study.py"):
    path = tmp_path / name
    path.write_text(text)
    return path


def _errors(out) -> dict[int, tuple[str, str]]:
    """task id: (type, message) of every failed task in the file."""
    with h5py.File(out, "r") as f:
        e = f["errors"]
        rows = zip(e["task"][()], e["type"].asstr()[()], e["message"].asstr()[()], strict=True)
        return {int(t): (ty, msg) for t, ty, msg in rows}


def _status(out) -> np.ndarray:
    with h5py.File(out, "r") as f:
        return f["tasks/status"][()]


BASE_EXCEPTIONS = """
import asyncio

class Mine(BaseException):
    pass

KINDS = {"kbd": KeyboardInterrupt, "cancel": asyncio.CancelledError,
         "genexit": GeneratorExit, "exit": SystemExit, "mine": Mine}

def task(params, rng):
    if params["rep"] == 1:
        raise KINDS[params["kind"]]("raised by the task")
    return rng.random()
"""


@pytest.mark.parametrize("np_", [None, 2])
def test_a_task_raising_a_base_exception_fails_that_task_and_the_run_goes_on(tmp_path, np_):
    task = _file(tmp_path, BASE_EXCEPTIONS)
    out = tmp_path / "b.h5"
    grid = "kind=kbd,cancel,genexit,exit,mine"
    r = mpibatch(np_, "run", task, "--grid", grid, "--reps", 3, "--out", out, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "10 done, 5 failed" in r.stdout
    names = ["KeyboardInterrupt", "CancelledError", "GeneratorExit", "SystemExit", "Mine"]
    assert _errors(out) == {3 * k + 1: (n, "raised by the task") for k, n in enumerate(names)}
    assert (_status(out) == [1, 2, 1] * 5).all()


POOLS = """
import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor

def square(x):
    return x * x

def task(params, rng):
    kind, xs = params["kind"], list(range(4))
    if kind == "joblib":
        from joblib import Parallel, delayed
        got = Parallel(n_jobs=2)(delayed(square)(x) for x in xs)
    elif kind == "executor":
        with ProcessPoolExecutor(2, mp_context=mp.get_context("spawn")) as ex:
            got = list(ex.map(square, xs))
    else:
        with mp.get_context(kind).Pool(2) as pool:
            got = pool.map(square, xs)
    assert got == [0, 1, 4, 9], got
    return float(sum(got))
"""


def test_a_fork_pool_in_every_task_never_hangs(tmp_path):
    task = _file(tmp_path, POOLS, "pools.py")
    for attempt in range(3):  # it hung in 4 of 4 runs of 40 reps
        out = tmp_path / f"fork{attempt}.h5"
        r = mpibatch(2, "run", task, "--grid", "kind=fork", "--reps", 40, "--out", out, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "40 done, 0 failed" in r.stdout
        assert (_status(out) == 1).all()


@pytest.mark.parametrize("kind", ["spawn", "forkserver", "executor", "joblib"])
def test_spawned_pools_executors_and_joblib_run_a_function_of_the_task_file(tmp_path, kind):
    task = _file(tmp_path, POOLS, "pools.py")
    out = tmp_path / f"{kind}.h5"
    r = mpibatch(2, "run", task, "--grid", f"kind={kind}", "--reps", 4, "--out", out, timeout=180)
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert (f["tasks/status"][()] == 1).all() and (f["results/value"][()] == 14.0).all()


WORLD = """
from mpi4py import MPI

def task(params, rng, ctx):
    if params["rep"] % 2:
        MPI.COMM_WORLD.Barrier()  # the mistake: every rank runs other tasks
    if params["rep"] == 6:
        MPI.COMM_WORLD.allreduce(1)
    return float(ctx.comm.allreduce(params["rep"]) + ctx.comm.Get_size())
"""


def test_a_task_calling_a_collective_on_comm_world_fails_instead_of_hanging(tmp_path):
    task = _file(tmp_path, WORLD)
    out = tmp_path / "w.h5"
    r = mpibatch(2, "run", task, "--reps", 7, "--out", out, timeout=60)
    assert r.returncode == 1, r.stderr
    assert "3 done, 4 failed" in r.stdout
    errors = _errors(out)
    assert sorted(errors) == [1, 3, 5, 6]
    assert {ty for ty, _ in errors.values()} == {"WorldInTask"}
    assert errors[1][1].startswith("task 1 called MPI.COMM_WORLD.Barrier(); tasks must not ")
    assert "allreduce()" in errors[6][1] and "use ctx.comm (MPI.COMM_SELF)" in errors[6][1]
    with h5py.File(out, "r") as f:
        done = f["tasks/status"][()] == 1
        assert f["results/value"][done].tolist() == [1.0, 3.0, 5.0]  # ctx.comm: one process


SLOW = """
import os, time

def task(params, rng):
    open(os.path.join(os.environ["MARKS"], str(params["rep"])), "w").close()
    time.sleep(2)
    return rng.random()
"""


def _interrupted_run(np_: int | None, task, out, marks) -> tuple[int, str]:
    """Start the run, send SIGINT to the launcher once a task runs; (exit code, stderr)."""
    launcher = [MPIEXEC, "-n", str(np_)] if np_ else []
    cmd = [*launcher, MPIBATCH, "run", str(task), "--reps", "8", "--seed", "3", "--out", str(out)]
    env = {**os.environ, "MARKS": str(marks)}
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not any(marks.iterdir()) and p.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        p.send_signal(signal.SIGINT)  # Ctrl-C; mpiexec forwards it to every rank
        _, err = p.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail(f"timed out (a hang): {' '.join(cmd)}")
    return p.returncode, err


@pytest.mark.parametrize("np_", [None, 2])
def test_ctrl_c_stops_resumably_and_resume_finishes_identically(tmp_path, np_):
    task = _file(tmp_path, SLOW)
    out, marks = tmp_path / "c.h5", tmp_path / "marks"
    marks.mkdir()
    code, err = _interrupted_run(np_, task, out, marks)
    assert code == 130, err
    assert "stopped early (SIGINT" in err and "--resume" in err
    with h5py.File(out, "r") as f:
        sessions = json.loads(f.attrs["sessions"])
        assert len(sessions) == 1 and sessions[0]["stopped"].startswith("SIGINT")
        assert 0 < (f["tasks/status"][()] == 1).sum() < 8  # what ran is kept
    r = mpibatch(
        np_,
        "run",
        task,
        "--reps",
        8,
        "--out",
        out,
        "--resume",
        timeout=120,
        env={"MARKS": str(marks)},
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert (f["tasks/status"][()] == 1).all()
        assert len(json.loads(f.attrs["sessions"])) == 2
        want = [task_generator(3, i).random() for i in range(8)]
        assert f["results/value"][()].tolist() == want
