"""Bad input, in this process (one MPI rank): ``mpibatch run`` exits 2 with one line saying
what is wrong and how to fix it, no traceback and no half-written file.

tests/mpi/test_bad_inputs.py keeps a few of these under real ``mpiexec``, where the ranks
must agree on the error instead of hanging.
"""

import re
from pathlib import Path

import h5py
import pytest
from usage import one_line as _check

from mpibatch.errors import TaskFileError

TASKS = Path(__file__).parent / "mpi" / "tasks"  # not from conftest: tests/slurm has one too

BOOT = TASKS / "mixed.py"


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
    "zero threads": (["run", BOOT, "--threads-per-rank", "0"], ["threads_per_rank", ">= 1"]),
    "bad gpus": (["run", BOOT, "--gpus", "lots"], ["gpus", "auto, none or a number"]),
    "resume without a file": (
        ["run", BOOT, "--resume", "--out", "gone.h5"],
        ["no results file", "drop --resume"],
    ),
    "dedicated root on one rank": (
        ["run", BOOT, "--dedicated-root"],
        ["--dedicated-root", "at least 2 ranks", "mpiexec -n 2"],
    ),
    "no command": ([], ["required", "--help"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_exit_2(main, case, tmp_path):
    args, words = CASES[case]
    _check(main(*args), words)
    assert not list(tmp_path.glob("*.h5"))  # nothing half-written


ENV_CASES = {  # every error about an environment variable names it
    "MPIBATCH_QUIET": ("maybe", ["expected a boolean (1/0, true/false, yes/no, on/off)"]),
    "MPIBATCH_DEDICATED_ROOT": ("2", ["expected a boolean"]),
    "MPIBATCH_ROOT_TASKS": ("fiber", ["expected thread or main"]),
    "MPIBATCH_GATHER_MB": ("0", ["expected an integer >= 1"]),
    "MPIBATCH_PROGRESS_SECONDS": ("0", ["expected a number of seconds > 0"]),
    "MPIBATCH_THREADS_PER_RANK": ("four", ["expected an integer >= 1"]),
    "MPIBATCH_SEED": ("-1", ["expected a non-negative integer"]),
    "MPIBATCH_TIME_LIMIT": ("soon", ["HH:MM:SS"]),
    "MPIBATCH_GPUS": ("lots", ["expected auto, none or a number"]),
    "MPIBATCH_FLUSH_SECONDS": ("fast", ["expected a number > 0"]),
}


@pytest.mark.parametrize("var", sorted(ENV_CASES))
def test_a_bad_environment_setting_names_its_variable(main, var, tmp_path):
    value, words = ENV_CASES[var]
    line = _check(main("run", BOOT, env={var: value}), words)
    assert line.startswith(f"mpibatch: error: {var}: ") and f"got {value!r}" in line, line
    assert line.endswith("fix or unset it"), line
    assert not list(tmp_path.glob("*.h5"))


def test_settings_from_the_environment_apply_like_flags(main, tmp_path):
    env = {"MPIBATCH_QUIET": "yes", "MPIBATCH_SEED": "5", "MPIBATCH_TIME_LIMIT": "1-12"}
    rc, out, err = main("run", BOOT, "--reps", 2, env=env)
    assert (rc, out, err) == (0, "", "")  # quiet: not even the summary
    from mpibatch import open as open_results

    assert open_results(tmp_path / "mixed.h5").attrs["seed"] == 5


@pytest.mark.parametrize(
    "name, words",
    [
        ("syntax", ["syntax error at line 1"]),
        ("import", ["failed to import", "ModuleNotFoundError"]),
        ("signature", ["expected task(params, rng)"]),
    ],
)
def test_a_broken_task_file(main, tmp_path, name, words):
    text = {
        "syntax": "def task(params, rng)\n    return 1\n",
        "import": "import not_a_module_xyz\n",
        "signature": "def task(params):\n    return 1\n",
    }[name]
    bad = tmp_path / "bad.py"
    bad.write_text(text)
    _check(main("run", bad), words)


def test_existing_output_needs_overwrite(main, tmp_path):
    out = tmp_path / "x.h5"
    out.write_bytes(b"precious")
    _check(main("run", BOOT, "--out", out), ["already exists", "--overwrite"])
    assert out.read_bytes() == b"precious"
    _check(main("run", BOOT, "--out", out, "--overwrite"), ["not an mpibatch results file"])
    assert out.read_bytes() == b"precious"  # --overwrite replaces only results files
    out.unlink()
    rc, _, err = main("run", BOOT, "--out", out, "--quiet")
    assert rc == 0, err
    rc, _, err = main("run", BOOT, "--out", out, "--overwrite", "--quiet")
    assert rc == 0, err


@pytest.mark.parametrize(
    "kind, words",
    [
        ("shape", ["'v'", "expected shape (2,)", "declare results = {'v': 'ragged float64'}"]),
        ("keys", ["expected ['a']"]),
        ("dtype", ["type str"]),
    ],
)
def test_unstorable_results_stop_the_run_with_one_line(main, kind, words, tmp_path):
    out = tmp_path / "r.h5"
    result = main(
        "run", TASKS / "bad_returns.py", "--reps", 9, "--out", out, env={"BAD_KIND": kind}
    )
    line = _check(result, words)
    if kind in ("shape", "keys", "dtype"):  # names the offending task (the first to go wrong)
        assert re.search(r"task 5 returned", line), line


@pytest.mark.parametrize("kind, code", [("ragged", 1), ("object", 1), ("string", 0)])
def test_values_no_file_can_hold_fail_their_tasks_and_strings_are_results(main, kind, code):
    out = "r.h5"
    rc, _, err = main(
        "run", TASKS / "bad_returns.py", "--reps", 3, "--out", out, env={"BAD_KIND": kind}
    )
    assert rc == code, err  # 1: every task failed alone, the run went on; 0: all stored
    assert "mpibatch: error:" not in err
    if kind == "string":
        with h5py.File(out, "r") as f:
            assert f["results/value"].asstr()[()].tolist() == ["hello"] * 3


@pytest.mark.parametrize(
    "change, words",
    [
        (["--seed", "2"], ["seed differs (file: 1, now: 2)", "--seed 1"]),
        (["--grid", "mu=5"], ["grid differs"]),
        (["--streams", "rank"], ["streams differs", "--streams task"]),
    ],
)
def test_resume_against_a_different_study(main, tmp_path, change, words):
    out = tmp_path / "r.h5"
    assert main("run", BOOT, "--reps", 2, "--seed", 1, "--out", out, "--quiet")[0] == 0
    _check(main("run", BOOT, "--reps", 2, "--out", out, "--resume", *change), words)


def test_debug_shows_the_traceback(main):
    with pytest.raises(TaskFileError, match="'nope.py' not found"):
        main("run", "nope.py", "--debug")


def test_a_memory_cap_without_task_processes_is_one_line(tmp_path):
    from mpibatch.errors import UsageError
    from mpibatch.options import RunOptions

    with pytest.raises(UsageError, match="--task-memory: a cap needs task processes"):
        RunOptions(task="t.py", task_memory="1G", isolation="off").resolved(1)
