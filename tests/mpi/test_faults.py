"""Failures, retries, stops, resume and kills: never a hang, never lost work."""

import os
import random
import signal
import subprocess
import time

import h5py
import numpy as np
import pytest
from conftest import MPIBATCH, MPIEXEC, TASKS, mpibatch, signal_rank

FAULTY = TASKS / "faulty.py"


def _results(path):
    with h5py.File(path, "r") as f:
        return ({k: ds[()].tobytes() for k, ds in f["results"].items()}, f["tasks/status"][()])


def _reference(tmp_path, reps=300, **env):
    out = tmp_path / "ref.h5"
    r = mpibatch(
        2,
        "run",
        FAULTY,
        "--reps",
        reps,
        "--seed",
        8,
        "--out",
        out,
        "--quiet",
        env={"FAULT": "", **env},
    )
    assert r.returncode == 0, r.stderr
    return _results(out)


def test_retries_rerun_transient_failures_with_the_same_stream(tmp_path):
    ref, _ = _reference(tmp_path, reps=12)
    out = tmp_path / "r.h5"
    r = mpibatch(
        2,
        "run",
        FAULTY,
        "--reps",
        12,
        "--seed",
        8,
        "--out",
        out,
        "--retries",
        1,
        env={"FAULT": "flaky"},
    )
    assert r.returncode == 0, r.stderr
    got, status = _results(out)
    assert (status == 1).all() and got == ref
    r = mpibatch(
        2,
        "run",
        FAULTY,
        "--reps",
        12,
        "--seed",
        8,
        "--out",
        out,
        "--overwrite",
        env={"FAULT": "flaky"},
    )
    assert r.returncode == 1 and "8 done, 4 failed" in r.stdout


def test_max_failures_stops_cleanly(tmp_path):
    out = tmp_path / "m.h5"
    r = mpibatch(
        2,
        "run",
        FAULTY,
        "--reps",
        200,
        "--out",
        out,
        "--max-failures",
        3,
        "--schedule",
        "dynamic",
        env={"FAULT": "always", "FAULT_SLEEP": "0.01"},
    )
    assert r.returncode == 1, r.stderr
    assert "--max-failures 3" in r.stderr and "--resume" in r.stderr
    with h5py.File(out, "r") as f:
        status = f["tasks/status"][()]
    assert 3 <= (status == 2).sum() < 100 and (status == 0).sum() > 0


def test_a_task_that_never_returns_fails_after_its_timeout(tmp_path):
    out = tmp_path / "t.h5"
    r = mpibatch(
        2,
        "run",
        FAULTY,
        "--reps",
        8,
        "--out",
        out,
        "--task-timeout",
        1,
        env={"FAULT": "hang"},
        timeout=30,  # a hang is a failure
    )
    assert r.returncode == 1 and "7 done, 1 failed" in r.stdout
    errs = mpibatch(None, "errors", out).stdout
    assert "task 3 " in errs and "TaskTimeout: task ran longer than --task-timeout 1 s" in errs


@pytest.mark.parametrize("isolation", ["on", "off"])
def test_a_task_stuck_outside_python_is_named(tmp_path, isolation):
    # on: its task process is killed and it fails alone; off: it ends the run
    out = tmp_path / "h.h5"
    r = mpibatch(
        2,
        "run",
        FAULTY,
        "--reps",
        40,
        "--out",
        out,
        "--task-timeout",
        1,
        "--schedule",
        "static",
        "--isolation",
        isolation,
        env={"FAULT": "hang_hard", "FAULT_AT": "30"},
        timeout=60,
    )
    if isolation == "on":
        assert r.returncode == 1 and "39 done, 1 failed" in r.stdout, r.stderr
        errs = mpibatch(None, "errors", out).stdout
        assert "task 30 " in errs and "--task-timeout 1 s and did not return" in errs
        return
    assert r.returncode != 0
    assert "task 30 on rank 1 on" in r.stderr and "did not return" in r.stderr
    assert _status_after_kill(out)[:20].sum() > 0  # what was written stays; the file opens


def test_a_task_calling_abort_without_isolation_ends_the_job_and_the_file_opens(tmp_path):
    out = tmp_path / "a.h5"
    r = mpibatch(
        3, "run", FAULTY, "--reps", 30, "--out", out, "--isolation", "off",
        env={"FAULT": "abort"}, timeout=60,
    )  # fmt: skip
    assert r.returncode != 0
    assert _status_after_kill(out).shape == (30,)


def test_sys_exit_in_a_task_is_a_failure_not_the_end_of_a_rank(tmp_path):
    r = mpibatch(2, "run", FAULTY, "--reps", 6, "--out", tmp_path / "e.h5", env={"FAULT": "exit"})
    assert r.returncode == 1 and "5 done, 1 failed" in r.stdout


_STARTED: list = []  # runs started in the background by the current test


@pytest.fixture(autouse=True)
def _no_run_left_behind():
    """A test that fails while its background run goes on ends that run (its whole session)."""
    yield
    while _STARTED:
        p = _STARTED.pop()
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=30)


def _popen(out, np_=3, *extra, env=None):
    cmd = [
        MPIEXEC,
        "-n",
        str(np_),
        MPIBATCH,
        "run",
        str(FAULTY),
        "--reps",
        "300",
        "--seed",
        "8",
        "--out",
        str(out),
        "--quiet",
        *map(str, extra),
    ]
    full = {**os.environ, "FAULT": "", "FAULT_SLEEP": "0.03", **(env or {})}
    p = subprocess.Popen(
        cmd,
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    _STARTED.append(p)
    return p


def _started(p, mark, ranks: int = 3, timeout: float = 120) -> None:
    """Wait until a task has started on every rank (each rank's stop handlers are in)."""
    t_end = time.monotonic() + timeout
    while len(list(mark.iterdir())) < ranks:
        if p.poll() is not None or time.monotonic() > t_end:
            pytest.fail(f"tasks did not start on {ranks} ranks (exit {p.poll()})")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGUSR1, signal.SIGTERM])
def test_a_signal_stops_resumably_and_resume_finishes_identically(tmp_path, sig):
    ref, _ = _reference(tmp_path, FAULT_SLEEP="0")
    out = tmp_path / "s.h5"
    mark = tmp_path / "started"
    mark.mkdir()
    p = _popen(out, 3, "--grace", 5, env={"FAULT_MARK": str(mark)})
    _started(p, mark)
    p.send_signal(sig)  # to the launcher, which forwards it to every rank
    _, err = p.communicate(timeout=10)  # stops within the grace period, or the test fails
    assert p.returncode == 3, err
    assert f"stopped early ({sig.name})" in err and "--resume" in err
    _, status = _results(out)
    assert 0 < (status == 1).sum() < 300
    r = mpibatch(
        2,
        "run",
        FAULTY,
        "--reps",
        300,
        "--out",
        out,
        "--resume",
        "--schedule",
        "static",
        env={"FAULT": ""},
    )
    assert r.returncode == 0, r.stderr
    assert _results(out)[0] == ref


@pytest.mark.parametrize("where", ["process", "thread", "main"])
def test_tasks_longer_than_the_grace_period_are_left_pending(tmp_path, where):
    # every task sleeps 60 s; on a stop with --grace 1 they are interrupted (their task
    # processes ended; or, without them, on rank 0's task thread left behind) and stay
    # pending; a resume then runs them all
    ref, _ = _reference(tmp_path, FAULT_SLEEP="0")
    out = tmp_path / "g.h5"
    mark = tmp_path / "started"
    mark.mkdir()
    env = {"FAULT_SLEEP": "60", "FAULT_MARK": str(mark)}
    how = ["--isolation", "off", "--root-tasks", where] if where != "process" else []
    p = _popen(out, 3, "--grace", 1, *how, env=env)
    _started(p, mark)
    p.send_signal(signal.SIGUSR1)
    _, err = p.communicate(timeout=20)  # grace 1 s, then out: far less than one task
    assert p.returncode == 3, err
    with h5py.File(out, "r") as f:
        assert (f["tasks/status"][()] == 0).all()
        assert f.attrs["root_tasks"] == where
    r = mpibatch(2, "run", FAULTY, "--reps", 300, "--out", out, "--resume", env={"FAULT": ""})
    assert r.returncode == 0, r.stderr
    assert _results(out)[0] == ref


def test_a_signal_to_one_worker_rank_stops_them_all(tmp_path):
    out = tmp_path / "one.h5"
    mark = tmp_path / "started"
    mark.mkdir()
    p = _popen(out, 3, "--grace", 5, env={"FAULT_MARK": str(mark)})
    _started(p, mark)
    signal_rank(out, 2, signal.SIGTERM)
    _, err = p.communicate(timeout=10)
    assert p.returncode == 3, err
    assert "stopped early (SIGTERM on rank 2)" in err
    assert 0 < (_results(out)[1] == 1).sum() < 300


def test_nan_results_are_results_not_failures(tmp_path):
    task = tmp_path / "nan.py"
    task.write_text("def task(params, rng):\n    return float('nan')\n")
    r = mpibatch(2, "run", task, "--reps", 5, "--out", tmp_path / "n.h5")
    assert r.returncode == 0 and "5 done, 0 failed" in r.stdout


def test_time_limit_stops_before_it_and_exits_resumable(tmp_path):
    out = tmp_path / "tl.h5"
    r = mpibatch(
        2,
        "run",
        FAULTY,
        "--reps",
        2000,
        "--out",
        out,
        "--time-limit",
        "00:00:05",
        "--grace",
        1,
        env={"FAULT": "", "FAULT_SLEEP": "0.01"},
        timeout=20,  # a run that ignored its time limit would take ~10 s more
    )
    assert r.returncode == 3, r.stderr
    assert "the time limit is near" in r.stderr
    info = mpibatch(None, "info", out).stdout
    assert "pending" in info and "--resume" in info


@pytest.mark.parametrize("trial", range(6))
def test_kill_at_a_random_moment_then_resume_loses_nothing(tmp_path, trial):
    ref, _ = _reference(tmp_path, FAULT_SLEEP="0")
    out = tmp_path / "k.h5"
    p = _popen(out, 3, "--flush-seconds", 0.1, "--schedule", "dynamic", "--block-size", 5)
    rng = random.Random(trial)
    time.sleep(rng.uniform(0.5, 2.5))
    if trial % 3 == 1:
        os.killpg(p.pid, signal.SIGKILL)  # everything at once
    else:  # one rank: rank 0 (mid-write perhaps) or a worker; the launcher ends the rest
        signal_rank(out, 0 if trial % 3 == 0 else 2, signal.SIGKILL, gone_ok=True)
    p.communicate(timeout=60)
    resume = []
    if out.exists():  # else the kill came before the file was made: start afresh
        status = _status_after_kill(out)
        with h5py.File(out, "r") as f:
            x = f["results/x"][()] if "x" in f["results"] else None
        done = np.flatnonzero(status == 1)
        if x is not None:  # every row marked done holds its result
            assert all(x[i].tobytes() == np.frombuffer(ref["x"], "f8")[i].tobytes() for i in done)
        resume = ["--resume"]
        assert not list(tmp_path.glob(".k.h5.creating-*"))  # renamed once complete
    again = resume or ["--seed", 8]  # afresh: the reference's seed, not a fresh one
    r = mpibatch(2, "run", FAULTY, "--reps", 300, "--out", out, *again, env={"FAULT": ""})
    assert r.returncode == 0, r.stderr
    got, status = _results(out)
    assert (status == 1).all() and got == ref


def _status_after_kill(out):
    for _ in range(200):  # a killed writer's lock goes a moment after the process
        try:
            with h5py.File(out, "r") as f:
                return f["tasks/status"][()]
        except OSError as exc:
            if "lock" not in str(exc):
                raise
            time.sleep(0.05)
    pytest.fail("the results file stayed locked after the kill")


def test_resume_refuses_a_different_seed_grid_or_edited_file(tmp_path):
    task = tmp_path / "t.py"
    task.write_text("def task(params, rng):\n    return rng.random()\n")
    out = tmp_path / "r.h5"
    assert mpibatch(1, "run", task, "--reps", 4, "--seed", 1, "--out", out).returncode == 0
    r = mpibatch(1, "run", task, "--reps", 4, "--seed", 2, "--out", out, "--resume")
    assert r.returncode == 2 and "the seed differs (file: 1, now: 2)" in r.stderr
    r = mpibatch(1, "run", task, "--reps", 5, "--out", out, "--resume")
    assert r.returncode == 2 and "the grid differs (file: 4 reps, now: 5)" in r.stderr
    task.write_text("def task(params, rng):\n    return rng.random() + 0\n")
    r = mpibatch(1, "run", task, "--reps", 4, "--out", out, "--resume")
    assert r.returncode == 2 and "--force" in r.stderr
    r = mpibatch(1, "run", task, "--reps", 4, "--out", out, "--resume", "--force")
    assert r.returncode == 0, r.stderr
    r = mpibatch(1, "run", task, "--reps", 4, "--out", tmp_path / "none.h5", "--resume")
    assert r.returncode == 2 and "no results file" in r.stderr


def test_rerun_one_task_from_the_command_line(tmp_path):
    out = tmp_path / "r.h5"
    mpibatch(2, "run", FAULTY, "--reps", 6, "--seed", 3, "--out", out, "--quiet", env={"FAULT": ""})
    r = mpibatch(None, "rerun", out, "--task", 4, env={"FAULT": ""})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "matches the stored result" in r.stdout


def _ragged_values(path, keys=("rewards", "xy", "model", "names", "blob")):
    """Each key's per-task values (as comparable bytes or str) and the statuses."""
    from mpibatch._ragged import read_values

    status = _status_after_kill(path)
    with h5py.File(path, "r", locking=False) as f:
        out = {k: [_plain(v) for v in read_values(f, k)] for k in keys}
    return out, status


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tobytes() if v.dtype != object else [str(x) for x in v.ravel()]
    return v


@pytest.mark.parametrize("trial", range(4))
def test_kill_rank0_while_ragged_and_string_results_are_written(tmp_path, trial):
    """Every row marked done reads back exactly after a SIGKILL of rank 0; resume completes."""
    env = {"RAGGED_MODE": "declared", "RAGGED_ROWS": "20000"}
    args = ("run", TASKS / "ragged.py", "--reps", 400, "--seed", 3, "--quiet")
    ref_path = tmp_path / "ref.h5"
    r = mpibatch(2, *args, "--out", ref_path, env=env, timeout=240)
    assert r.returncode == 1, r.stderr  # some tasks fail on purpose
    ref, ref_status = _ragged_values(ref_path)
    out = tmp_path / "k.h5"
    cmd = [MPIEXEC, "-n", "3", MPIBATCH, *map(str, args), "--out", str(out)]
    cmd += ["--flush-seconds", "0.1", "--schedule", "dynamic", "--block-size", "3"]
    p = subprocess.Popen(cmd, env={**os.environ, **env}, start_new_session=True)
    time.sleep(random.Random(trial).uniform(1.0, 3.0))
    if p.poll() is None:  # else the run ended first: nothing to kill
        signal_rank(out, 0, signal.SIGKILL, gone_ok=True)  # it may end in between
    p.communicate(timeout=60)
    resume = ["--seed", "3", "--overwrite"]
    if out.exists():
        got, status = _ragged_values(out)
        done = np.flatnonzero(status == 1)
        assert (ref_status[done] == 1).all()
        for key in ref:  # every row marked done holds exactly its value
            bad = [i for i in done if got[key][i] != ref[key][i]]
            assert not bad, (key, bad[:5])
        resume = ["--resume"]
    r = mpibatch(2, *args, "--out", out, *resume, env=env, timeout=240)
    assert r.returncode == 1, r.stderr
    got, status = _ragged_values(out)
    assert (status == ref_status).all() and got == ref
