import subprocess
import sys

import pytest

from mpibatch import cli
from mpibatch.errors import UsageError


def test_help_lists_commands_and_examples(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for words in ("run", "info", "errors", "mpiexec -n 4 mpibatch run"):
        assert words in out


def test_run_help_describes_the_flags(capsys):
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    out = capsys.readouterr().out
    for flag in (
        "--grid",
        "--reps",
        "--seed",
        "--streams",
        "--threads-per-rank",
        "--tasks",
        "--dry-run",
        "--overwrite",
        "Nlog",
    ):
        assert flag in out


def test_importing_the_cli_does_not_load_numpy_or_mpi():
    code = "import mpibatch.cli, sys; print('numpy' in sys.modules, 'mpi4py.MPI' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_thread_variables_are_set_before_numpy_loads(monkeypatch):
    import os

    for var in cli.THREAD_VARS:  # monkeypatch puts them back afterwards
        monkeypatch.setenv(var, "16")
    monkeypatch.delenv("MPIBATCH_THREADS_PER_RANK", raising=False)
    cli._set_thread_env(3)
    assert all(os.environ[v] == "3" for v in cli.THREAD_VARS)
    cli._set_thread_env(None)  # the default
    assert all(os.environ[v] == "1" for v in cli.THREAD_VARS)
    monkeypatch.setenv("MPIBATCH_THREADS_PER_RANK", "4")
    cli._set_thread_env(None)
    assert all(os.environ[v] == "4" for v in cli.THREAD_VARS)
    monkeypatch.setenv("MPIBATCH_THREADS_PER_RANK", "four")
    with pytest.raises(UsageError, match="^MPIBATCH_THREADS_PER_RANK: expected an integer >= 1"):
        cli._set_thread_env(None)


def test_info_on_a_missing_file_is_one_line(capsys):
    assert cli.main(["info", "/nonexistent.h5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpibatch: error: '/nonexistent.h5': expected an mpibatch results")
    assert "no such file" in err and err.count("\n") == 1


def test_an_mpibatch_bug_is_exit_70_with_the_traceback_and_a_plea(monkeypatch, capsys):
    def broken(args):
        raise RuntimeError("an internal invariant broke")

    monkeypatch.setattr(cli, "cmd_info", broken)
    assert cli.main(["info", "x.h5"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: an internal invariant broke" in err
    assert "mpibatch: internal error: a bug in mpibatch" in err and "please report it" in err


def test_a_file_system_refusal_is_one_line_exit_2(monkeypatch, capsys):
    def full(args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "cmd_info", full)
    assert cli.main(["info", "x.h5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "Traceback" not in err
