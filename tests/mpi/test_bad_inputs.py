"""Bad input: one line on rank 0 saying what is wrong and how to fix it, non-zero exit on
every rank within a bound (mpirun's timeout), no traceback, no half-written file."""

import re

import pytest
from conftest import TASKS, mpibatch

BOOT = TASKS / "mixed.py"


def _check(r, words, code=2):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("mpibatch: error:")]
    assert len(lines) == 1, r.stderr  # once, from rank 0
    assert "Traceback" not in r.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


CASES = {
    "missing task file": (["run", "nope.py"], ["'nope.py' not found", "check the path"]),
    "missing function": (
        ["run", BOOT, "--function", "nothere"],
        ["defines no function 'nothere'", "--function"],
    ),
    "empty grid axis": (["run", BOOT, "--grid", "mu="], ["mu", "expected"]),
    "duplicate axis": (["run", BOOT, "--grid", "a=1", "--grid", "a=2"], ["'a'", "expected once"]),
    "bad log range": (["run", BOOT, "--grid", "lr=1:x:3log"], ["lr=1:x:3log"]),
    "reps zero": (["run", BOOT, "--reps", "0"], ["reps", ">= 1"]),
    "negative seed": (["run", BOOT, "--seed", "-3"], ["seed", "non-negative", "--seed"]),
    "unknown streams": (["run", BOOT, "--streams", "global"], ["streams", "task, rank"]),
    "unknown schedule": (["run", BOOT, "--schedule", "fancy"], ["schedule", "static"]),
    "bad task slice": (["run", BOOT, "--tasks", "9:3"], ["--tasks", "START < STOP"]),
    "missing output dir": (
        ["run", BOOT, "--out", "/nonexistent/dir/x.h5"],
        ["does not exist", "mkdir -p"],
    ),
    "unwritable output dir": (["run", BOOT, "--out", "/sys/x.h5"], ["not writable"]),
    "non-integer seed": (["run", BOOT, "--seed", "1.5"], ["--seed", "invalid int value"]),
    "non-integer reps": (["run", BOOT, "--reps", "many"], ["--reps", "invalid int value"]),
    "unknown flag": (["run", BOOT, "--frobnicate"], ["unrecognized arguments", "--help"]),
    "grid axis without =": (["run", BOOT, "--grid", "lr"], ["'lr'", "NAME="]),
    "bad time limit": (["run", BOOT, "--time-limit", "soon"], ["HH:MM:SS", "--time-limit"]),
    "negative retries": (["run", BOOT, "--retries", "-1"], ["retries", ">= 0"]),
    "zero flush interval": (["run", BOOT, "--flush-seconds", "0"], ["flush_seconds", "> 0"]),
    "zero block size": (["run", BOOT, "--block-size", "0"], ["block_size", ">= 1"]),
    "zero task timeout": (["run", BOOT, "--task-timeout", "0"], ["task_timeout", "> 0"]),
    "resume without a file": (
        ["run", BOOT, "--resume", "--out", "gone.h5"],
        ["no results file", "drop --resume"],
    ),
    "no command": ([], ["required", "--help"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_exit_2(case, tmp_path):
    args, words = CASES[case]
    r = mpibatch(2, *args, **({} if "--out" in args else {}), cwd=tmp_path, timeout=60)
    _check(r, words)
    assert not list(tmp_path.glob("*.h5"))  # nothing half-written


def test_bad_root_tasks_setting_in_the_environment(tmp_path):
    r = mpibatch(2, "run", BOOT, cwd=tmp_path, env={"MPIBATCH_ROOT_TASKS": "fiber"})
    _check(r, ["root_tasks", "expected thread or main", "'fiber'"])


def test_syntax_error_in_task_file(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def task(params, rng)\n    return 1\n")
    _check(mpibatch(2, "run", bad, cwd=tmp_path), ["syntax error at line 1"])


def test_import_error_in_task_file(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import not_a_module_xyz\n")
    _check(mpibatch(2, "run", bad, cwd=tmp_path), ["failed to import", "ModuleNotFoundError"])


def test_wrong_signature(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def task(params):\n    return 1\n")
    _check(mpibatch(2, "run", bad, cwd=tmp_path), ["expected task(params, rng)"])


def test_existing_output_needs_overwrite(tmp_path):
    out = tmp_path / "x.h5"
    out.write_bytes(b"precious")
    _check(mpibatch(2, "run", BOOT, "--out", out), ["already exists", "--overwrite"])
    assert out.read_bytes() == b"precious"
    r = mpibatch(2, "run", BOOT, "--out", out, "--overwrite", "--quiet")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "kind, words",
    [
        ("string", ["type str", "expected a number"]),
        ("shape", ["'v'", "expected shape (2,)"]),
        ("keys", ["expected ['a']"]),
        ("ragged", ["ragged"]),
        ("object", ["expected a number"]),
        ("dtype", ["type str"]),
    ],
)
def test_unstorable_results_stop_the_run_with_one_line(kind, words, tmp_path):
    out = tmp_path / "r.h5"
    r = mpibatch(
        3, "run", TASKS / "bad_returns.py", "--reps", 9, "--out", out, env={"BAD_KIND": kind}
    )
    line = _check(r, words)
    if kind in ("shape", "keys", "dtype"):  # names the offending task (the first to go wrong)
        assert re.search(r"task [5-8] returned", line), line


def test_dedicated_root_needs_two_ranks(tmp_path):
    r = mpibatch(1, "run", BOOT, "--dedicated-root", cwd=tmp_path)
    _check(r, ["--dedicated-root", "at least 2 ranks", "mpiexec -n 2"])


@pytest.mark.parametrize(
    "change, words",
    [
        (["--seed", "2"], ["seed differs (file: 1, now: 2)", "--seed 1"]),
        (["--grid", "mu=5"], ["grid differs"]),
        (["--streams", "rank"], ["streams differs", "--streams task"]),
    ],
)
def test_resume_against_a_different_study(tmp_path, change, words):
    out = tmp_path / "r.h5"
    assert mpibatch(2, "run", BOOT, "--reps", 2, "--seed", 1, "--out", out).returncode == 0
    r = mpibatch(2, "run", BOOT, "--reps", 2, "--out", out, "--resume", *change)
    _check(r, words)


def test_a_task_printing_megabytes_neither_hangs_nor_fails(tmp_path):
    r = mpibatch(
        2,
        "run",
        TASKS / "faulty.py",
        "--reps",
        30,
        "--out",
        tmp_path / "c.h5",
        env={"FAULT": "chatty"},
        timeout=60,
    )
    assert r.returncode == 0 and len(r.stdout) >= 3_000_000


def test_a_task_calling_abort_ends_every_rank_promptly(tmp_path):
    r = mpibatch(
        3,
        "run",
        TASKS / "faulty.py",
        "--reps",
        30,
        "--out",
        tmp_path / "a.h5",
        env={"FAULT": "abort"},
        timeout=30,
    )
    assert r.returncode == 7  # the task's Abort code reaches the launcher
    assert "task 3 on rank" in r.stderr and "called MPI_Abort(7)" in r.stderr


def test_a_task_that_never_returns_is_failed_by_the_timeout(tmp_path):
    r = mpibatch(
        2,
        "run",
        TASKS / "faulty.py",
        "--reps",
        6,
        "--out",
        tmp_path / "t.h5",
        "--task-timeout",
        "0.5",
        env={"FAULT": "hang"},
        timeout=30,
    )
    assert r.returncode == 1
    assert "1 tasks failed; their tracebacks: mpibatch errors" in r.stdout


def test_debug_shows_the_traceback(tmp_path):
    r = mpibatch(1, "run", "nope.py", "--debug", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr
