"""Commands as tasks under real ``mpiexec``: a compiled program and a shell script."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import MPIBATCH, MPIEXEC, ROOT, TASKS, mpibatch
from procs import process_gone

GRID = ("--grid", "size=150,200,300", "--grid", "lr=1e-3,1e-4,1e-5", "--reps", "2")
COMPILER = shutil.which("cc") or shutil.which("gcc")


@pytest.fixture(params=["compiled", "shell"])
def program(request, tmp_path) -> str:
    """The stand-in experiment: compiled from C where a compiler is, else a Python script;
    and a shell script."""
    if request.param == "shell":
        return str(TASKS / "command_exp.sh")
    if COMPILER is None:  # no compiler here: an executable Python script instead
        return str(TASKS / "command_exp.py")
    exe = tmp_path / "command_exp"
    subprocess.run([COMPILER, "-O2", "-o", exe, TASKS / "command_exp.c"], check=True, timeout=120)
    return str(exe)


def _results(path) -> dict[str, bytes]:
    """Every result column and the task status, as bytes."""
    with h5py.File(path, "r") as f:
        return {
            **{k: ds[()].tobytes() for k, ds in f["results"].items()},
            "status": f["tasks/status"][()].tobytes(),
        }


def _status(path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["tasks/status"][()]


def _sweep(np_, program, out, *extra, env=None):
    return mpibatch(
        np_,
        "run",
        "--command",
        f"{program} {{size}} {{lr}} {{seed}}",
        *GRID,
        "--seed",
        "11",
        "--out",
        out,
        *extra,
        env=env,
    )


def test_results_are_byte_identical_for_np_1_and_2_and_failures_keep_stderr(program, tmp_path):
    one, two = tmp_path / "one.h5", tmp_path / "two.h5"
    r = _sweep(None, program, one, "--schedule", "static")
    assert r.returncode == 1, r.stderr  # size 300 with lr 1e-5 fails (2 reps)
    r = _sweep(2, program, two, "--schedule", "dynamic", "--block-size", "1")
    assert r.returncode == 1, r.stderr
    assert _results(one) == _results(two)
    results, status = _results(two), _status(two)
    assert (status == 2).sum() == 2 and (status[-2:] == 2).all()  # the last cell: 300 x 1e-5
    assert {"loss", "size", "returncode"} <= set(results)
    with h5py.File(two, "r") as f:
        assert f["params/lr"][()].tolist()[:6] == [0.001, 0.001, 0.0001, 0.0001, 1e-5, 1e-5]
        assert f["results/size"][:2].tolist() == [150, 150]
    errors = mpibatch(None, "errors", two, "--traceback")
    assert "exit code 3: diverged: size 300 with lr 1e-5" in errors.stdout
    assert "size 300 lr 1e-5 seed" in errors.stdout  # the stderr tail, as typed
    rerun = mpibatch(None, "rerun", two, "--task", 3)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "matches the stored result" in rerun.stdout


SLEEPER = "sleep ${{SLEEP:-60}} & echo $! > {out_dir}/child.pid; wait; echo '{{\"x\": '{x}'}}'"


def _child_pids(out: Path) -> list[int]:
    files = sorted(Path(str(out) + ".tasks").glob("*/child.pid"))
    return [int(f.read_text()) for f in files if f.read_text().strip()]


def test_a_task_timeout_kills_the_commands_whole_process_group(tmp_path):
    out = tmp_path / "t.h5"
    r = mpibatch(
        2, "run", "--shell", "--command", SLEEPER, "--grid", "x=1,2", "--task-timeout", 2,
        "--out", out, timeout=120,
    )  # fmt: skip
    assert r.returncode == 1, r.stderr
    errors = mpibatch(None, "errors", out).stdout
    assert errors.count("TaskTimeout: task ran longer than --task-timeout 2 s") == 2
    pids = _child_pids(out)
    assert len(pids) == 2 and all(process_gone(p) for p in pids)  # the sleep 60 grandchildren too


@pytest.mark.parametrize("where", ["thread", "main"])
def test_a_stop_kills_running_commands_and_resume_finishes_them(tmp_path, where):
    out = tmp_path / "s.h5"
    cmd = [MPIEXEC, "-n", "2", MPIBATCH, "run", "--shell", "--command", SLEEPER]
    cmd += ["--grid", "x=1,2,3,4", "--grace", "1", "--root-tasks", where, "--out", str(out)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for _ in range(600):  # until both ranks' first commands have started
        if len(_child_pids(out)) == 2 or p.poll() is not None:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGUSR1)  # to the launcher, which forwards it to every rank
    _, err = p.communicate(timeout=60)
    assert p.returncode == 3, err
    pids = _child_pids(out)
    assert len(pids) == 2 and all(process_gone(pid) for pid in pids)
    r = mpibatch(2, "run", "--out", out, "--resume", "--shell", "--command", SLEEPER,
                 "--grid", "x=1,2,3,4", env={"SLEEP": "0"})  # fmt: skip
    assert r.returncode == 0, r.stderr
    with h5py.File(out, "r") as f:
        assert f["results/x"][()].tolist() == [1, 2, 3, 4]


def test_resume_runs_the_failed_commands_again_identically(tmp_path):
    program = str(TASKS / "command_exp.sh")
    ref, out = tmp_path / "ref.h5", tmp_path / "r.h5"
    assert _sweep(2, program, ref).returncode == 1
    r = _sweep(2, program, out, env={"FAIL_ALL": "1"})
    assert r.returncode == 1 and "18 failed" in r.stdout, r.stdout + r.stderr
    r = _sweep(2, program, out, "--resume")
    assert r.returncode == 1, r.stderr  # all but the two diverging tasks now done
    assert _results(out) == _results(ref)


def test_the_param_sweep_example_runs_as_its_header_says(tmp_path):
    script = ROOT / "examples" / "param_sweep.sh"
    env = {**os.environ, "PATH": f"{Path(MPIEXEC).parent}:{os.environ['PATH']}"}
    env["PYTHON"] = sys.executable
    try:
        r = subprocess.run(
            ["bash", script, "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
            env=env,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail("examples/param_sweep.sh timed out (a hang)")
    assert r.returncode == 0, r.stdout + r.stderr
    with h5py.File(tmp_path / "sweep.h5", "r") as f:
        status = f["tasks/status"][()]
        assert status.size == 18 and (status == 1).all()
        loss = f["results/loss"][()].reshape(3, 3, 2)
        # the smallest lr learns slowest: its final loss is the highest at every size
        assert (loss[:, 2, :] > loss[:, 0, :]).all()
    assert "lowest mean loss" in r.stdout


def test_results_declared_on_the_command_line_let_a_command_print_1_for_1_0(tmp_path):
    # printf "%g" writes 1 for 1.0: undeclared, int then float stops the run
    cmd = "printf '{{\"v\": %g}}\\n' {x}"
    args = ("run", "--shell", "--command", cmd, "--grid", "x=1.0,0.5,2.0", "--quiet")
    r = mpibatch(2, *args, "--out", tmp_path / "a.h5")
    assert r.returncode == 2 and "--results v=float64" in r.stderr, r.stderr
    r = mpibatch(2, *args, "--results", "v=float64", "--out", tmp_path / "b.h5")
    assert r.returncode == 0, r.stderr
    with h5py.File(tmp_path / "b.h5", "r") as f:
        assert f["results/v"][()].tolist() == [1.0, 0.5, 2.0]
