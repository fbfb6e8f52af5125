"""User code and user input that must never hang a run, lose work or destroy a file.

Every launch has a timeout (conftest.mpirun): a hang fails the test.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
from conftest import MPIBATCH, MPIEXEC, mpibatch, mpirun


def mpibatch_open(path, dataset=None):
    """The root attributes of a results file, or one dataset's values."""
    with h5py.File(path, "r") as f:
        if dataset is None:
            return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        return f[dataset][()]


def _one_error_line(r) -> str:
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("mpibatch: error:")]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


def test_out_naming_the_task_file_is_refused_even_with_overwrite(tmp_path):
    task = tmp_path / "study.py"
    text = "def task(params, rng):\n    return rng.random()\n"
    task.write_text(text)
    for extra in ([], ["--overwrite"]):
        r = mpibatch(2, "run", task, "--reps", 4, "--out", task, *extra, timeout=60)
        assert r.returncode == 2, r.stderr
        assert "is a Python file" in _one_error_line(r)
        assert task.read_text() == text


def test_overwrite_replaces_only_a_previous_results_file(tmp_path):
    task = tmp_path / "study.py"
    task.write_text("def task(params, rng):\n    return rng.random()\n")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    r = mpibatch(2, "run", task, "--reps", 4, "--out", notes, "--overwrite", timeout=60)
    assert r.returncode == 2 and "not an mpibatch results file" in _one_error_line(r)
    assert notes.read_text() == "my notes"
    out = tmp_path / "r.h5"
    assert mpibatch(2, "run", task, "--reps", 4, "--out", out, timeout=60).returncode == 0
    r = mpibatch(2, "run", task, "--reps", 6, "--out", out, "--overwrite", timeout=60)
    assert r.returncode == 0, r.stderr
    assert "6 tasks: 6 done" in r.stdout


def test_more_tasks_than_the_disk_holds_is_one_line_before_anything_is_written(tmp_path):
    task = tmp_path / "study.py"
    task.write_text("def task(params, rng):\n    return rng.random()\n")
    reps = 2 * shutil.disk_usage(tmp_path).free // 30  # a task row takes more than 30 bytes
    out = tmp_path / "huge.h5"
    r = mpibatch(2, "run", task, "--reps", reps, "--out", out, timeout=60)
    assert r.returncode == 2, r.stderr
    line = _one_error_line(r)
    assert f"{reps:,} tasks need" in line and "--tasks START:STOP" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["study.py"]


API_SCRIPT = """
import sys
import mpibatch


def task(params, rng):
    return {"x": rng.random() + len(params["s"]) + params["n"]}


if __name__ == "__main__":
    grid = {"s": ["a,b", "007", "1:3", "it's"], "n": [1, 2]}
    mpibatch.run(task, grid, reps=2, seed=9, out=sys.argv[1], quiet=True)
"""


def test_the_recorded_command_reproduces_any_grid_from_a_path_with_spaces(tmp_path):
    folder = tmp_path / "my study"
    folder.mkdir()
    script = folder / "api study.py"
    script.write_text(API_SCRIPT)
    first = folder / "first run.h5"
    r = mpirun(2, sys.executable, script, first, timeout=90)
    assert r.returncode == 0, r.stderr
    attrs = mpibatch_open(first)
    again = folder / "again.h5"
    command = attrs["command"].replace(shlex.quote(str(first)), shlex.quote(str(again)))
    assert shlex.split(command)[:3] == ["mpiexec", "-n", "2"]
    path = f"{Path(MPIEXEC).parent}:{Path(MPIBATCH).parent}:{os.environ['PATH']}"
    env = {**os.environ, "PATH": path}  # the command names plain mpiexec and mpibatch
    r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=90, env=env)
    assert r.returncode == 0, r.stderr
    a, b = mpibatch_open(first, "results/x"), mpibatch_open(again, "results/x")
    assert a.tobytes() == b.tobytes() and len(a) == 16  # 4 x 2 x 2 tasks, not 9 x 2 x 2


def test_a_run_says_at_once_what_started(tmp_path):
    task = tmp_path / "study.py"
    task.write_text("def task(params, rng):\n    return rng.random()\n")
    out = tmp_path / "r.h5"
    r = mpibatch(2, "run", task, "--reps", 6, "--seed", 3, "--out", out, timeout=60)
    assert r.returncode == 0, r.stderr
    first = r.stderr.splitlines()[0]
    assert first.endswith(f"mpibatch: running 6 tasks on 2 ranks (schedule auto, seed 3) -> {out}")


def test_ctrl_c_on_one_rank_before_the_run_ends_every_rank(tmp_path):
    """A KeyboardInterrupt on one rank while the task file imports (before any collective
    agreement) must not leave the other ranks waiting for it: the job is aborted."""
    task = tmp_path / "study.py"
    task.write_text(
        "from mpi4py import MPI\n"
        "if MPI.COMM_WORLD.Get_rank() == 1:\n"
        "    raise KeyboardInterrupt\n"
        "def task(params, rng):\n    return rng.random()\n"
    )
    r = mpibatch(2, "run", task, "--reps", 4, "--out", tmp_path / "r.h5", timeout=60)
    assert r.returncode != 0
    assert "aborting all ranks" in r.stderr and "KeyboardInterrupt" in r.stderr
    assert not (tmp_path / "r.h5").exists()
