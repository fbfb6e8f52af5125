"""errors: one line per error, and ExitCode, the one set of exit codes of the CLI."""

from __future__ import annotations

import subprocess
import sys

from mpibatch import cli, errors
from mpibatch.errors import ExitCode


def test_exit_codes_are_the_documented_ones():
    assert {c.name: c.value for c in ExitCode} == {
        "OK": 0,
        "FAILED": 1,
        "USAGE": 2,
        "STOPPED": 3,
        "STUCK": 4,
        "BUG": 70,
        "NO_SPACE": 74,
        "INTERRUPTED": 130,
    }
    table = ExitCode.__doc__ or ""
    for code in ExitCode:
        assert f"\n    {code.value:<4}  {code.name:<11}  " in table, code


def test_errors_exit_with_an_exit_code():
    for cls in (errors.UsageError, errors.GridError, errors.TaskFileError, errors.OutputError):
        assert cls("x").exit_code is ExitCode.USAGE
    assert errors.ResultError("x").exit_code is ExitCode.USAGE
    assert errors.TasksFailed("x").exit_code is ExitCode.FAILED


def test_the_cli_constants_are_aliases_of_exit_code():
    assert cli.EXIT_OK is ExitCode.OK and cli.EXIT_FAILED is ExitCode.FAILED
    assert cli.EXIT_USAGE is ExitCode.USAGE and cli.EXIT_STOPPED is ExitCode.STOPPED
    assert cli.EXIT_INTERRUPTED is ExitCode.INTERRUPTED


def test_the_process_exits_with_the_code():
    cmd = [sys.executable, "-m", "mpibatch.cli", "slurm", "cpu"]  # no command after --
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == ExitCode.USAGE == 2
    assert r.stderr.startswith("mpibatch: error: expected the job's mpibatch command")
