"""Every schedule gives byte-identical results; results stream into the file as they land."""

import os
import re
import subprocess
import time

import h5py
import pytest
from conftest import MPIBATCH, MPIEXEC, TASKS, mpibatch

from mpibatch.streams import task_generator


def _bytes(path):
    with h5py.File(path, "r") as f:
        return {k: ds[()].tobytes() for k, ds in f["results"].items()} | {
            "status": f["tasks/status"][()].tobytes()
        }


@pytest.mark.parametrize("np_", [1, 2, 3, 4])
def test_static_dynamic_auto_give_identical_results(tmp_path, np_):
    ref = None
    for sched in ("static", "dynamic", "auto"):
        out = tmp_path / f"{sched}.h5"
        r = mpibatch(
            np_,
            "run",
            TASKS / "mixed.py",
            "--reps",
            9,
            "--seed",
            4,
            "--out",
            out,
            "--schedule",
            sched,
            "--quiet",
        )
        assert r.returncode == 0, r.stderr
        got = _bytes(out)
        ref = ref or got
        assert got == ref, sched
        with h5py.File(out, "r") as f:
            assert f.attrs["schedule"] == sched
            assert f.attrs["schedule_used"] in ("static", "dynamic")
            assert f.attrs["schedule_reason"]
            assert f.attrs["n_blocks"] >= np_


def test_dynamic_spreads_a_skewed_block_and_auto_says_why(tmp_path):
    # 12 tasks, the first 4 slow: static puts them all on rank 0; dynamic must not
    env = {"SLEEPY_MS": "20", "SLEEPY_FIRST_X": "10"}
    out = tmp_path / "dyn.h5"
    r = mpibatch(
        2,
        "run",
        TASKS / "sleepy.py",
        "--grid",
        "g=0,1,2,3",
        "--reps",
        3,
        "--out",
        out,
        "--schedule",
        "dynamic",
        "--block-size",
        1,
        "--quiet",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert set(f["tasks/rank"][()].tolist()) == {0, 1}
        assert f.attrs["n_blocks"] == 12
    out = tmp_path / "auto.h5"
    mpibatch(
        2,
        "run",
        TASKS / "sleepy.py",
        "--grid",
        "g=0,1,2,3",
        "--reps",
        3,
        "--out",
        out,
        "--quiet",
        env=env,
    )
    with h5py.File(out, "r") as f:
        assert f.attrs["schedule_used"] == "dynamic"
        assert "skewed" in f.attrs["schedule_reason"]


@pytest.mark.parametrize("where", ["process", "thread", "main"])
def test_rank_0_answers_the_others_while_its_own_task_runs(tmp_path, where):
    # rank 0's first task waits for 12 tasks done elsewhere; every other task needs a block
    # from rank 0 (block size 1), so they only get done if rank 0 serves during its task
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / f"{where}.h5"
    r = mpibatch(
        2,
        "run",
        TASKS / "waits_for_others.py",
        "--reps",
        40,
        "--schedule",
        "dynamic",
        "--block-size",
        1,
        *(["--isolation", "off", "--root-tasks", where] if where != "process" else []),
        "--out",
        out,
        "--quiet",
        env={"WAIT_DIR": str(markers), "WAIT_FOR": "12", "WAIT_SECONDS": "4"},
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        waiter, seen = f["results/waiter"][()], f["results/seen"][()]
        assert f.attrs["root_tasks"] == where
        assert (f["tasks/status"][()] == 1).all()
    assert waiter.sum() == 1
    said = {"process": "tasks: in task processes", "thread": "rank 0: ran its tasks on the "
            "task thread", "main": "rank 0: ran its tasks on the main thread"}[where]  # fmt: skip
    assert said in mpibatch(None, "info", out).stdout
    if where != "main":
        assert seen[waiter == 1][0] >= 12
    else:  # on the main thread rank 0 cannot answer: rank 1 runs only the 2 blocks it holds
        assert seen[waiter == 1][0] <= 2


def test_a_task_time_out_keeps_rank_0_tasks_on_the_main_thread(tmp_path):
    # without task processes (with them, the time-out's SIGALRM lands in the task process)
    out = tmp_path / "tt.h5"
    r = mpibatch(
        2, "run", TASKS / "sleepy.py", "--reps", 6, "--task-timeout", 30, "--isolation", "off",
        "--out", out, "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f.attrs["root_tasks"] == "main"  # SIGALRM only reaches the main thread


def test_dedicated_root_runs_no_tasks(tmp_path):
    out = tmp_path / "ded.h5"
    r = mpibatch(
        3, "run", TASKS / "mixed.py", "--reps", 5, "--out", out, "--dedicated-root", "--quiet"
    )
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert set(f["tasks/rank"][()].tolist()) == {1, 2}
        assert (f["tasks/status"][()] == 1).all()


def test_results_stream_into_the_file_while_the_run_goes_on(tmp_path):
    out = tmp_path / "stream.h5"
    env = {**os.environ, "SLEEPY_MS": "10", "MPIBATCH_QUIET": "1"}
    cmd = [
        MPIEXEC,
        "-n",
        "2",
        MPIBATCH,
        "run",
        str(TASKS / "sleepy.py"),
        "--reps",
        "400",
        "--seed",
        "3",
        "--out",
        str(out),
        "--flush-seconds",
        "0.2",
        "--schedule",
        "dynamic",
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    seen = None
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                with h5py.File(out, "r", locking=False) as f:
                    status, x = f["tasks/status"][()], f["results/x"][()]
            except (OSError, KeyError):
                continue  # not created yet, or caught mid-flush: look again
            if 0 < (status == 1).sum() < 400:
                seen = status, x
                break
    finally:
        rc = proc.wait(timeout=90)
    assert rc == 0
    assert seen is not None, "no partial results were visible while the run was going"
    status, x = seen
    for i in [int(j) for j in (status == 1).nonzero()[0][:20]]:
        assert x[i] == task_generator(3, i).random()


def test_progress_lines_in_batch_logs_and_quiet(tmp_path):
    env = {"SLEEPY_MS": "5", "MPIBATCH_PROGRESS_SECONDS": "0.1"}
    r = mpibatch(2, "run", TASKS / "sleepy.py", "--reps", 200, "--out", tmp_path / "p.h5", env=env)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if "mpibatch: " in ln and "tasks" in ln]
    assert len(lines) >= 2, r.stderr
    last = lines[-1]
    final_line = re.compile(r", elapsed \d+:\d\d:\d\d$")  # the closing line of the bar
    assert final_line.search(last), last
    assert "200/200 tasks (100.0%)" in lines[-1]
    r = mpibatch(
        2, "run", TASKS / "sleepy.py", "--reps", 50, "--out", tmp_path / "q.h5", "--quiet", env=env
    )
    assert r.returncode == 0 and r.stderr == "" and r.stdout == ""


def test_a_resume_keeps_the_schedule_auto_chose_instead_of_probing_again(tmp_path):
    out = tmp_path / "r.h5"
    args = ("run", TASKS / "skewed_flaky.py", "--reps", 24, "--seed", 3, "--out", out, "--quiet")
    r = mpibatch(2, *args, env={"FLAKY_FAIL": "1"})
    assert r.returncode == 1, r.stderr  # the odd tasks failed
    with h5py.File(out, "r") as f:
        chosen = f.attrs["schedule_used"]  # the probe's choice (timing: either may come)
        assert (f["tasks/status"][()] == 2).sum() == 12
    planted = "static" if chosen == "dynamic" else "dynamic"
    with h5py.File(out, "a") as f:  # as if that first probe had chosen the other one
        f.attrs["schedule_used"] = planted
    r = mpibatch(2, *args, "--resume")
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert (f["tasks/status"][()] == 1).all()
        assert f.attrs["schedule_used"] == planted  # kept: not probed again
        assert f"--schedule {planted}" in f.attrs["command"]
        assert f.attrs["schedule_reason"].startswith("auto, kept from the file (probe of")
    fresh = tmp_path / "fresh.h5"
    r = mpibatch(2, "run", TASKS / "skewed_flaky.py", "--reps", 24, "--seed", 3, "--out", fresh)
    assert r.returncode == 0, r.stderr
    assert _bytes(fresh) == _bytes(out)
