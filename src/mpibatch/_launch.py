"""A launch mistake caught before anything runs: mpi4py's MPI is not the launcher's.

mpi4py built for one MPI (say the mpich wheel) but started by another MPI's launcher (say
Open MPI's ``mpirun``) does not fail: each process starts as a world of its own, so N
single-rank copies race for one output file. Every launcher tells its processes how many
they are in environment variables; a world of 1 while they say more is this mistake.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping

from . import _hostfile
from .errors import UsageError

# MPI_Get_library_version's first words -> the host file spelling its launcher reads
_FAMILIES = (
    ("Open MPI", _hostfile.OPENMPI),
    ("MPICH", _hostfile.MPICH),  # also CRAY MPICH, MVAPICH's "MVAPICH2 ... MPICH"
    ("MVAPICH", _hostfile.MPICH),
    ("Intel(R) MPI", _hostfile.MPICH),
)
_PROBE = (
    "import mpi4py; mpi4py.rc.initialize = False; from mpi4py import MPI; "
    "print(MPI.Get_library_version().replace(chr(0), '').strip())"
)

# (variable, what it means, the launcher that sets it): the world size the launcher started
_SIZE_VARS = (
    ("OMPI_COMM_WORLD_SIZE", "Open MPI's mpirun"),
    ("PMI_SIZE", "an MPICH-family mpiexec (Hydra: MPICH, Intel MPI, MVAPICH) or srun"),
    ("MPI_LOCALNRANKS", "an MPICH-family mpiexec (Hydra)"),
    ("SLURM_STEP_NUM_TASKS", "srun"),
)
# (variable, launcher): this process's rank as the launcher numbered it
_RANK_VARS = (
    ("OMPI_COMM_WORLD_RANK", "Open MPI's mpirun"),
    ("PMIX_RANK", "a PMIx launcher (Open MPI 5's mpirun, srun --mpi=pmix)"),
    ("PMI_RANK", "an MPICH-family mpiexec (Hydra) or srun"),
)


def _int(env: Mapping[str, str], var: str) -> int | None:
    value = env.get(var, "").strip()
    return int(value) if value.isdigit() else None


def launcher_says(env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """(launcher, evidence) when the environment says this process is one of several, else
    None. ``SLURM_STEP_NUM_TASKS`` counts only inside srun's tasks (SLURM_PROCID set), not
    in a batch script that calls mpiexec itself."""
    env = os.environ if env is None else env
    for var, launcher in _SIZE_VARS:
        n = _int(env, var)
        if var.startswith("SLURM_") and "SLURM_PROCID" not in env:
            continue
        if n is not None and n > 1:
            return launcher, f"{n} processes ({var}={n})"
    for var, launcher in _RANK_VARS:
        k = _int(env, var)
        if k is not None and k > 0:
            return launcher, f"this process as rank {k} ({var}={k})"
    return None


def short_library(version: str) -> str:
    """'MPICH 5.0.2' or 'Open MPI v5.0.11' from MPI_Get_library_version's text."""
    first = version.replace("\x00", "").strip().splitlines()[0] if version.strip() else "?"
    return " ".join(first.split(",")[0].replace(" Version:", "").split())


def mismatch(world_size: int, library: str, env: Mapping[str, str] | None = None) -> str | None:
    """The one-line error when mpi4py's world is 1 but the launcher started more, else None."""
    if world_size != 1:
        return None
    said = launcher_says(env)
    if said is None:
        return None
    launcher, evidence = said
    mine = short_library(library)
    return (
        f"mpi4py's MPI ({mine}) sees a world of 1 rank, but {launcher} started {evidence}: "
        f"mpi4py was built for another MPI than the launcher's, so each process would run "
        f"alone; launch with the mpiexec of {mine}, or build mpi4py against the launcher's "
        "MPI (env MPICC=mpicc pip install --no-binary=mpi4py mpi4py; with mpi4py >= 4.1's "
        "wheel, MPI4PY_LIBMPI=/path/to/its/libmpi.so also works)"
    )


def check(world_size: int, library: str, env: Mapping[str, str] | None = None) -> None:
    """UsageError if mpi4py's MPI and the launcher disagree (see :func:`mismatch`)."""
    problem = mismatch(world_size, library, env)
    if problem:
        raise UsageError(problem)


def family(library: str) -> str | None:
    """'mpich' (Hydra's HOST:N) or 'openmpi' (HOST slots=N) from the library's version
    text; None for an MPI of neither family."""
    for words, flavor in _FAMILIES:
        if words.lower() in library.lower():
            return flavor
    return None


def mpi4py_library(timeout: float = 60) -> str:
    """MPI_Get_library_version of the MPI mpi4py loads here (``MPI4PY_LIBMPI`` included),
    asked in a child Python that does not initialize MPI, so this process stays MPI-free."""
    try:
        r = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=timeout
        )
    except (OSError, subprocess.SubprocessError) as exc:
        why = f"{type(exc).__name__}: {exc}"
    else:
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
    raise UsageError(
        f"cannot tell which MPI mpi4py runs on ({why}); pass --flavor mpich or --flavor openmpi"
    )


def hostfile_flavor(library: str) -> str:
    """The host file spelling of the MPI mpi4py runs on; UsageError if neither family."""
    flavor = family(library)
    if flavor is None:
        raise UsageError(
            f"expected mpi4py on an MPICH-family MPI or Open MPI, got {short_library(library)}; "
            "pass --flavor mpich or --flavor openmpi"
        )
    return flavor


def hostfile_mismatch(source: str, text: str, flavor: str, library: str = "") -> str | None:
    """One line when the host file ``text`` does not fit ``flavor``'s launcher: what is
    wrong, the line to write instead, and the command that converts it; else None."""
    problem = _hostfile.problem(_hostfile.parse(text, source), flavor)
    if problem is None:
        return None
    mpi = (
        f"{short_library(library)}'s mpiexec" if library else f"{_hostfile.NAMES[flavor]}'s mpiexec"
    )
    return (
        f"{source} does not fit {mpi}: {problem}; or convert the whole file: "
        f"mpibatch hostfile --from {source} --flavor {flavor} > {source}.{flavor}"
    )
