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
