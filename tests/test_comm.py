"""The MPI module in one process: a Transport over COMM_WORLD of size 1, errors raised as is.

(Blocks and reports need two ranks: tests/mpi runs them; tests/test_dispatch.py runs
the loop over a fake transport.)
"""

import pytest

import mpibatch
from mpibatch import _comm


def test_an_unexpected_error_in_one_process_raises_instead_of_aborting(monkeypatch, tmp_path):
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr("mpibatch.engine._serve", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        mpibatch.run(lambda p, r: 1.0, {"a": [1]}, out=tmp_path / "x.h5")
    try:
        raise KeyError("k")
    except KeyError:
        with pytest.raises(KeyError):
            _comm.abort()


def test_a_transport_of_one_rank_agrees_shares_and_gathers():
    t = _comm.Transport(_comm.world())
    assert (t.rank, t.size) == (0, 1)
    t.agree(None)
    with pytest.raises(ValueError, match="x"):
        t.agree(ValueError("x"))
    assert t.share({"plan": 1}) == {"plan": 1} and t.gather_small(5) == [5]
    t.barrier()


def test_inside_a_task_comm_world_refuses_collectives_and_messages_until_the_run_ends():
    from mpi4py import MPI

    real, task = MPI.COMM_WORLD, [None]
    with _comm.guard_world("rank 0 on here", lambda: task[0]):
        world = MPI.COMM_WORLD
        assert world is not real and world.Get_rank() == 0
        world.Barrier()  # between tasks (mpibatch's own code): allowed
        task[0] = 7
        for call in (world.Barrier, world.barrier, lambda: world.allreduce(1), world.Ibarrier):
            with pytest.raises(_comm.WorldInTask, match=r"^task 7 called MPI\.COMM_WORLD\."):
                call()
        with pytest.raises(_comm.WorldInTask, match=r"use ctx\.comm \(MPI\.COMM_SELF\)"):
            world.send(1, dest=0)
        assert world.Get_size() == 1 and _comm.task_comm().allreduce(2) == 2
    assert MPI.COMM_WORLD is real
