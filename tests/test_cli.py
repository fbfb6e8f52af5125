import subprocess
import sys

import pytest

from mpibatch import cli


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
    monkeypatch.setenv("OMP_NUM_THREADS", "16")
    cli._set_thread_env(3)
    import os

    assert all(os.environ[v] == "3" for v in cli.THREAD_VARS)


def test_info_on_a_missing_file_is_one_line(capsys):
    assert cli.main(["info", "/nonexistent.h5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpibatch: error: '/nonexistent.h5': expected an mpibatch results")
    assert "no such file" in err and err.count("\n") == 1
