"""mpi4py's MPI is not the launcher's: a world of 1 while the launcher says more is caught."""

import pytest

from mpibatch._launch import check, launcher_says, mismatch, short_library
from mpibatch.errors import UsageError

MPICH = "MPICH Version:      5.0.2\nMPICH Release date: ...\n"
OPENMPI = "Open MPI v5.0.11, package: Open MPI user@localhost Distribution, ident: 5.0.11\x00"


def test_library_names_are_short():
    assert short_library(MPICH) == "MPICH 5.0.2"
    assert short_library(OPENMPI) == "Open MPI v5.0.11"


@pytest.mark.parametrize(
    ("env", "launcher", "evidence"),
    [
        ({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "2"}, "Open MPI", "4 processes"),
        ({"PMI_SIZE": "3", "PMI_RANK": "0"}, "MPICH-family", "PMI_SIZE=3"),
        ({"MPI_LOCALNRANKS": "2"}, "Hydra", "MPI_LOCALNRANKS=2"),
        ({"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "5"}, "srun", "8 processes"),
        ({"PMIX_RANK": "3", "PMIX_NAMESPACE": "x"}, "PMIx", "rank 3 (PMIX_RANK=3)"),
    ],
)
def test_each_launchers_variables_name_it(env, launcher, evidence):
    said = launcher_says(env)
    assert said is not None and launcher in said[0] and evidence in said[1]
    line = mismatch(1, MPICH, env)
    assert line is not None and "\n" not in line
    assert "MPICH 5.0.2" in line and launcher in line and evidence in line
    assert "--no-binary=mpi4py" in line and "mpiexec of MPICH 5.0.2" in line
    with pytest.raises(UsageError, match="sees a world of 1 rank"):
        check(1, MPICH, env)


@pytest.mark.parametrize(
    "env",
    [
        {},  # no launcher: a plain single process
        {"PMI_SIZE": "1", "PMI_RANK": "0"},  # mpiexec -n 1
        {"OMPI_COMM_WORLD_SIZE": "1", "PMIX_RANK": "0"},
        {"SLURM_NTASKS": "64", "SLURM_STEP_NUM_TASKS": "64"},  # a batch script, not srun's task
        {"PMI_SIZE": "many"},
    ],
)
def test_a_single_process_as_the_launcher_says_is_no_mistake(env):
    assert mismatch(1, MPICH, env) is None
    check(1, MPICH, env)


def test_a_world_as_large_as_the_launcher_says_is_no_mistake():
    env = {"OMPI_COMM_WORLD_SIZE": "4", "PMIX_RANK": "3"}
    assert mismatch(4, OPENMPI, env) is None
    assert mismatch(1, OPENMPI, env) is not None
