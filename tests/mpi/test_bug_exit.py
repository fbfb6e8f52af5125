"""A bug in mpibatch exits 70 at every -np, never 1 (the code for "some tasks failed").

The task file tasks/buggy.py, imported on every rank before the run, makes an internal
function raise: ``streams.make_streams`` (every rank calls it before its first message:
the ranks that do not raise wait in a collective) or ``Store.write_rows`` (rank 0
storing a report mid-run, while the others wait for blocks). At np >= 2 the rank that
raises first ends the job with MPI_Abort(70), which mpiexec exits with (under srun,
where every rank raises, each exits 70 itself: tests/slurm/test_bug_exit.py).
"""

from __future__ import annotations

import pytest
from conftest import TASKS, mpibatch

from mpibatch import _comm

STREAMS, WRITE = "streams.make_streams", "store.write_rows"
CASES = [  # (np, internal function, ranks it raises on)
    (1, STREAMS, "all"),
    (1, WRITE, "all"),
    (2, STREAMS, "all"),
    (2, STREAMS, "0"),
    (2, STREAMS, "1"),
    (2, WRITE, "0"),
    (3, STREAMS, "all"),
    (3, STREAMS, "0"),
    (3, STREAMS, "2"),
    (3, STREAMS, "1,2"),
    (3, WRITE, "0"),
]


def _run(tmp_path, np_: int, where: str, ranks: str, **env):
    out = tmp_path / "bug.h5"
    args = ("run", TASKS / "buggy.py", "--reps", 12, "--seed", 1, "--out", out)
    env = {"BUG_IN": where, "BUG_RANKS": ranks, **env}
    return mpibatch(np_, *args, env=env, timeout=60)


@pytest.mark.parametrize(
    ("np_", "where", "ranks"), CASES, ids=[f"np{n}-{w}-{r}" for n, w, r in CASES]
)
def test_a_bug_exits_70_and_names_itself(tmp_path, np_, where, ranks):
    r = _run(tmp_path, np_, where, ranks)
    assert r.returncode == 70, (r.returncode, r.stderr[-3000:])
    raised = range(np_) if ranks == "all" else [int(k) for k in ranks.split(",")]
    if where == WRITE:
        raised = [0]  # only rank 0 writes the file
    # the first rank to raise names the bug (the abort may end the others before they do)
    told = [k for k in range(np_) if f"injected bug in {where} on rank {k}" in r.stderr]
    assert told and set(told) <= set(raised), r.stderr[-3000:]
    for k in told:  # with its traceback and the plea
        assert f"InjectedBug: injected bug in {where} on rank {k}" in r.stderr
        where_ = f" on rank {k}" if np_ > 1 else ""
        assert f"mpibatch: internal error{where_}: a bug in mpibatch" in r.stderr
    assert "please report it" in r.stderr
    assert "Abort(1)" not in r.stderr and "MPI_Abort(MPI_COMM_WORLD, 1)" not in r.stderr


@pytest.mark.parametrize("np_", [1, 2])
def test_ctrl_c_on_one_rank_before_the_tasks_still_exits_130(tmp_path, np_):
    r = _run(tmp_path, np_, STREAMS, str(np_ - 1), BUG_RAISE="KeyboardInterrupt")
    assert r.returncode == 130, (r.returncode, r.stderr[-3000:])
    assert "a bug in mpibatch" not in r.stderr  # Ctrl-C is not a bug


def test_only_a_rank_that_srun_started_itself_waits_for_the_others():
    srun = {"SLURM_STEP_ID": "0", "SLURM_PROCID": "1", "PMI_RANK": "1"}
    hydra_in_a_job = {**srun, "MPI_LOCALNRANKS": "2"}  # mpiexec inside sbatch
    assert _comm._srun_launched(srun) and not _comm._srun_launched(hydra_in_a_job)
    assert not _comm._srun_launched({"PMI_RANK": "1", "MPI_LOCALNRANKS": "2"})
    assert not _comm._srun_launched({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0"})  # a batch
