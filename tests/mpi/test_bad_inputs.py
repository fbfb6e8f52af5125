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
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gives_one_line_and_exit_2(case, tmp_path):
    args, words = CASES[case]
    r = mpibatch(2, *args, **({} if "--out" in args else {}), cwd=tmp_path, timeout=60)
    _check(r, words)
    assert not list(tmp_path.glob("*.h5"))  # nothing half-written


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


def test_debug_shows_the_traceback(tmp_path):
    r = mpibatch(1, "run", "nope.py", "--debug", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr
