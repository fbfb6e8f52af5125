"""Bad input at the edges (issue 21): a grid() that raises, numbers past their type's
range, result keys that collide with the file's own names, and --resume, merge, info or
errors on an empty, text, foreign or truncated file. In this process (one MPI rank):
exit 2, one line saying what is wrong and how to fix it, no traceback, nothing destroyed.
tests/mpi/test_bad_edges.py keeps some of these under real ``mpiexec``."""

import pickle
from pathlib import Path

import h5py
import pytest
from usage import one_line as _check

import mpibatch
from mpibatch.errors import TaskFileError, UsageError
from mpibatch.layout import ROW_COLUMNS, NotResultsFile, result_key_problem

TASKS = Path(__file__).parent / "mpi" / "tasks"
BOOT = TASKS / "mixed.py"


def _task_file(tmp_path, body: str, name="study.py") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


# ---- a grid() that raises ----

GRID_RAISES = {
    "ValueError": ("raise ValueError('no such table: runs.csv')", "ValueError: no such table"),
    "sys.exit": ("import sys; sys.exit(3)", "SystemExit: 3"),
    "long message": ("raise RuntimeError('x' * 100_000 + '\\nmore')", "RuntimeError: xxx"),
}


@pytest.mark.parametrize("case", sorted(GRID_RAISES))
def test_a_grid_that_raises_is_one_line_naming_the_file(main, tmp_path, case):
    code, shown = GRID_RAISES[case]
    body = f"def grid():\n    {code}\n\n\ndef task(params, rng):\n    return 1.0\n"
    path = _task_file(tmp_path, body)
    line = _check(main("run", path), ["study.py'", "grid() raised", shown, "fix grid()"])
    assert "import study; study.grid()" in line
    assert not list(tmp_path.glob("*.h5"))


def test_a_grid_that_raises_through_the_api_is_a_task_file_error(tmp_path):
    body = "def grid():\n    return {'a': 1 / 0}\n\n\ndef task(params, rng):\n    return 1.0\n"
    path = _task_file(tmp_path, body)
    with pytest.raises(TaskFileError, match="grid\\(\\) raised ZeroDivisionError"):
        mpibatch.run(str(path), out=str(tmp_path / "r.h5"), quiet=True)


def test_an_import_error_with_a_long_many_line_message_is_still_one_line(main, tmp_path):
    path = _task_file(tmp_path, "raise ImportError('line 1\\n' + 'y' * 50_000)\n")
    line = _check(main("run", path), ["failed to import: ImportError: line 1;", "import study"])
    assert "yyy" not in line


# ---- numbers past their type's range ----

NUMBERS = {
    "seed 2**64": (["--seed", 2**64], ["seed", "< 2**64", str(2**64)]),
    "seed -1": (["--seed", -1], ["seed", "non-negative"]),
    "threads 2**31": (["--threads-per-rank", 2**31], ["threads_per_rank", "< 2**31"]),
    "threads 10**20": (["--threads-per-rank", 10**20], ["threads_per_rank", "< 2**31"]),
    "reps 10**30": (["--reps", 10**30], ["at most 2**62 tasks"]),
    "max failures -1": (["--max-failures", -1], ["max_failures", ">= 1"]),
    "task timeout 1e30": (["--task-timeout", "1e30"], ["task_timeout", "at most 1e9"]),
    "task timeout inf": (["--task-timeout", "inf"], ["task_timeout", "got inf"]),
    "grace 1e30": (["--grace", "1e30"], ["grace", "at most 1e9"]),
    "flush inf": (["--flush-seconds", "inf"], ["flush_seconds", "at most 1e9"]),
    "time limit 10**8 days": (["--time-limit", "99999999-00"], ["time_limit", "at most 1e9"]),
    "tasks past the grid": (["--tasks", f"0:{10**30}"], ["--tasks", "START < STOP <= 6"]),
}


@pytest.mark.parametrize("case", sorted(NUMBERS))
def test_numbers_past_their_range_are_one_line(main, tmp_path, case):
    args, words = NUMBERS[case]
    _check(main("run", BOOT, *args), words)
    assert not list(tmp_path.glob("*.h5"))


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("MPIBATCH_SEED", str(2**64)),
        ("MPIBATCH_TASK_TIMEOUT", "1e30"),
        ("MPIBATCH_GRACE", "inf"),
        ("MPIBATCH_THREADS_PER_RANK", str(2**40)),
    ],
)
def test_numbers_past_their_range_in_the_environment_name_the_variable(main, var, value):
    line = _check(main("run", BOOT, env={var: value}), [var, "fix or unset it"])
    assert line.startswith(f"mpibatch: error: {var}: expected")


def test_the_largest_seed_runs_and_resumes(main, tmp_path):
    seed = 2**64 - 1
    assert main("run", BOOT, "--seed", seed, "--out", "a.h5", "--quiet")[0] == 0
    assert mpibatch.open(tmp_path / "a.h5").attrs["seed"] == seed
    rc, _, err = main("run", BOOT, "--seed", seed, "--out", "a.h5", "--resume", "--quiet")
    assert rc == 0, err


@pytest.mark.parametrize(
    "kw", [{"seed": 2**64}, {"task_timeout": 1e30}, {"grace": float("inf")}, {"time_limit": 1e12}]
)
def test_the_api_refuses_numbers_past_their_range(tmp_path, kw):
    with pytest.raises(UsageError, match="expected"):
        mpibatch.run(str(BOOT), out=str(tmp_path / "r.h5"), quiet=True, **kw)
    assert not (tmp_path / "r.h5").exists()


def test_paths_with_odd_bytes_are_refused_in_one_line(main, tmp_path):
    """The file records the task file and --out as UTF-8 text (this crashed at its attrs)."""
    import os

    odd = tmp_path / os.fsdecode(b"caf\xff.py")
    odd.write_text(BOOT.read_text())
    _check(main("run", odd, "--out", "r.h5"), ["task file", "\\udcff", "UTF-8", "rename it"])
    _check(main("run", BOOT, "--out", os.fsdecode(b"r\xfe.h5")), ["--out", "\\udcfe"])
    assert not list(tmp_path.glob("*.h5"))


# ---- result keys that collide with the file's own names ----


@pytest.mark.parametrize("key", [*ROW_COLUMNS, ".", "a\x00b", "a/b", ""])
def test_result_keys_the_file_cannot_hold_stop_the_run_in_one_line(main, tmp_path, key):
    body = f"def task(params, rng):\n    return {{'v': 1.0, {key!r}: 2.0}}\n"
    path = _task_file(tmp_path, body)
    line = _check(main("run", path, "--reps", 3, "--out", "k.h5"), [f"key {key!r}", "expected"])
    if key in ROW_COLUMNS:
        assert f"{key}_value" in line and "the file's own columns" in line


def test_a_declared_result_key_that_collides_is_refused_before_any_task(main, tmp_path):
    marker = tmp_path / "ran"
    body = (
        "results = {'status': 'float64'}\n\n\ndef task(params, rng):\n"
        f"    open({str(marker)!r}, 'w').close()\n    return {{'status': 1.0}}\n"
    )
    path = _task_file(tmp_path, body)
    _check(main("run", path, "--out", "k.h5"), ["declares key 'status'", "status_value"])
    assert not marker.exists() and not (tmp_path / "k.h5").exists()


def test_ordinary_keys_are_fine_and_a_result_may_share_a_params_name():
    for key in ("value", "rank", "id", "rep", "Status", "start_time", "x.y", "with space"):
        assert result_key_problem(key) is None, key


def test_a_result_named_like_a_task_column_is_no_longer_overwritten(main, tmp_path):
    """Before, {"elapsed": 123.0} was stored as the task's run time, silently."""
    body = "def task(params, rng):\n    return {'elapsed_value': 123.0}\n"
    path = _task_file(tmp_path, body)
    assert main("run", path, "--out", "k.h5", "--quiet")[0] == 0
    with h5py.File(tmp_path / "k.h5", "r") as f:
        assert f["results/elapsed_value"][0] == 123.0 and f["tasks/elapsed"][0] != 123.0


# ---- --resume, merge, info and errors on a file that is not a whole results file ----


def _bad_files(tmp_path, main) -> dict[str, tuple[Path, str]]:
    """name -> (path, words of its error); a good file beside them (good.h5)."""
    assert main("run", BOOT, "--seed", 1, "--out", "good.h5", "--quiet")[0] == 0
    good = (tmp_path / "good.h5").read_bytes()
    files = {
        "empty": (b"", "an empty file (0 bytes)"),
        "text": (b"results,1,2\n", "not an HDF5 file"),
        "truncated": (good[: len(good) // 2], "a truncated file"),
        "just the header": (good[:100], "a truncated file"),
    }
    out = {}
    for name, (data, words) in files.items():
        path = tmp_path / f"{name.replace(' ', '_')}.h5"
        path.write_bytes(data)
        out[name] = (path, words)
    with h5py.File(tmp_path / "foreign.h5", "w") as f:
        f["x"] = [1, 2]
    with h5py.File(tmp_path / "lookalike.h5", "w") as f:  # a /tasks/status, nothing more
        f["tasks/status"] = [1]
    out["foreign"] = (tmp_path / "foreign.h5", "did not write (no /tasks/id)")
    out["lookalike"] = (tmp_path / "lookalike.h5", "did not write (no /tasks/id)")
    return out


BAD = ("empty", "text", "truncated", "just the header", "foreign", "lookalike")


@pytest.mark.parametrize("name", BAD)
def test_resume_merge_info_and_errors_on_a_bad_file_are_one_line(main, tmp_path, name):
    path, words = _bad_files(tmp_path, main)[name]
    before = path.read_bytes()
    listing = sorted(p.name for p in tmp_path.iterdir())
    for args in (
        ["run", BOOT, "--seed", 1, "--out", path, "--resume"],
        ["merge", "good.h5", path, "-o", "merged.h5"],
        ["info", path],
        ["errors", path],
    ):
        _check(main(*args), [f"'{path}'", "expected an mpibatch results file", words])
        assert path.read_bytes() == before  # nothing destroyed
        assert sorted(p.name for p in tmp_path.iterdir()) == listing  # nor left behind
    if "truncated" in words:
        assert "copy it again whole" in _check(main("info", path), [])


def test_a_bad_file_error_reaches_other_ranks_whole():
    """_comm.agreed pickles rank 0's error to the others: it must come back the same."""
    exc = NotResultsFile("x.h5", "a truncated file (1 of 2 bytes)", "copy it again whole")
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is NotResultsFile and str(back) == str(exc)
    assert (back.path, back.problem, back.fix) == (exc.path, exc.problem, exc.fix)
