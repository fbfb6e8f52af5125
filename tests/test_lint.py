"""The code base stays ruff-clean, ruff-formatted and mypy-clean (both pinned in the test extra)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINTED = ["src", "tests", "benchmarks", "examples"]


def tool(name: str) -> str:
    """The tool next to this Python (the project's virtual environment), else the one on PATH."""
    local = Path(sys.executable).parent / name
    exe = str(local) if local.exists() else shutil.which(name)
    if exe is None:
        pytest.fail(f"{name} is not installed: pip install '.[test]'")
    return exe


def run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def test_ruff_is_clean():
    r = run(tool("ruff"), "check", *LINTED)
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format_is_clean():
    r = run(tool("ruff"), "format", "--check", *LINTED)
    assert r.returncode == 0, "run `ruff format " + " ".join(LINTED) + "`:\n" + r.stdout + r.stderr


def test_mypy_is_clean_on_src():
    # The files and settings come from [tool.mypy] in pyproject.toml.
    r = run(tool("mypy"))
    assert r.returncode == 0, r.stdout + r.stderr
