"""Shared helpers: launch real ``mpiexec`` (always with a timeout: a hang is a failure)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
TASKS = Path(__file__).parent / "mpi" / "tasks"
ROOT = Path(__file__).resolve().parents[1]


def _tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


MPIEXEC = _tool("mpiexec")
MPIBATCH = _tool("mpibatch")


def mpirun(np_: int | None, *args, timeout: float = 90, env: dict | None = None, cwd=None):
    """Run ``mpiexec -n np_ <args>`` (or ``<args>`` alone if np_ is None); fail on timeout."""
    cmd = ([MPIEXEC, "-n", str(np_)] if np_ else []) + [str(a) for a in args]
    full_env = {**os.environ, **(env or {})}
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=full_env, cwd=cwd
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"timed out after {timeout}s (a hang): {' '.join(cmd)}\n{exc.stderr}")


def mpibatch(np_: int | None, *args, **kw):
    """``mpiexec -n np_ mpibatch <args>``."""
    return mpirun(np_, MPIBATCH, *args, **kw)


@pytest.fixture
def tasks_dir() -> Path:
    return TASKS
