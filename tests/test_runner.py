import asyncio

import numpy as np
import pytest

from mpibatch.grid import Grid
from mpibatch.runner import Runner, TaskThread, blas_info, blas_limits
from mpibatch.streams import TaskStreams, task_generator

INFO = {"rank": 1, "size": 2, "host": "nodeA", "local_rank": 1}


class _BaseError(BaseException):
    """Not an Exception: a task's own BaseException subclass."""


def _runner(fn, grid):
    return Runner(fn, grid, TaskStreams(11), INFO, clock_offset=0.0)


def test_runner_fills_rows_and_records_failures_with_rank_and_host():
    def fn(params, rng, ctx):
        if params["rep"] in (1, 3):
            raise KeyError("boom")
        return {"x": rng.random(), "tid": ctx.task_id}

    runner = _runner(fn, Grid(None, reps=6))
    cols, done = runner.run(range(1, 5))
    assert done.ran == 4 and cols.status.tolist() == [2, 1, 2, 1]
    low = -(2**63)  # the int64 fill value: failed rows hold no value
    assert cols.results["tid"].tolist() == [low, 2, low, 4]
    assert cols.results["x"][1] == task_generator(11, 2).random()
    assert runner.packer.schema_task == 2  # the first task that succeeded set the schema
    fail = done.failures[0]
    assert (fail.task_id, fail.type, fail.rank, fail.host) == (1, "KeyError", 1, "nodeA")
    assert fail.traceback.startswith("rank 1 on nodeA, task 1:")
    took = cols.elapsed
    assert (took >= 0).all()


def test_runner_bare_floats_take_the_fast_path_and_keep_failures_nan():
    def fn(params, rng):
        if params["rep"] == 2:
            raise ValueError("no")
        return rng.normal()

    runner = _runner(fn, Grid(None, reps=5))
    cols, done = runner.run(range(0, 5))
    vals = cols.results["value"]
    assert np.isnan(vals[2]) and cols.status.tolist() == [1, 1, 2, 1, 1]
    assert vals[4] == task_generator(11, 4).normal()


def test_runner_stops_at_a_result_that_changes_shape():
    def fn(params, rng):
        return np.zeros(3 if params["rep"] == 2 else 2)

    cols, done = _runner(fn, Grid(None, reps=4)).run(range(0, 4))
    assert done.fatal is not None and "task 2" in str(done.fatal)
    assert cols.status.tolist() == [1, 1, 0, 0]


def test_runner_in_a_reused_dirty_buffer_writes_the_bytes_of_a_fresh_one():
    def fn(params, rng):
        if params["rep"] == 3:
            raise ValueError("no")
        if params["rep"] == 6:
            return np.zeros(3)  # a result that does not fit stops the block here
        return rng.normal(size=2)

    grid = Grid(None, reps=8)
    fresh = _runner(fn, grid)
    fresh.run(range(0, 1))  # sets the schema
    clean, _ = fresh.run(range(1, 8))
    reused = _runner(fn, grid)
    reused.buffers.min_bytes = 1  # pool even these small columns
    reused.run(range(0, 1))
    reused.buffers.give(np.full(clean.nbytes + 100, 0xAB, np.uint8))  # stale bytes
    dirty, done = reused.run(range(1, 8))
    assert dirty.storage.nbytes == clean.nbytes + 100  # it did reuse the given buffer
    assert done.fatal is not None and dirty.status.tolist() == [1, 1, 2, 1, 1, 0, 0]
    same = ("status", "value")
    assert all(dirty.arrays[k].tobytes() == clean.arrays[k].tobytes() for k in same)
    for meta in ("start", "elapsed"):  # rows never run: zero, as in fresh columns
        assert (dirty.arrays[meta][5:] == 0).all()
    assert np.isnan(dirty.results["value"][[2, 5, 6]]).all()


def test_runner_polls_between_tasks():
    calls = []
    runner = _runner(lambda p, r: 1.0, Grid(None, reps=50))
    runner.run(range(0, 50), poll=lambda: calls.append(1), poll_every=0.0)
    assert len(calls) == 50


def test_task_thread_runs_blocks_off_the_main_thread_with_the_same_results():
    import threading

    seen = set()

    def fn(params, rng):
        seen.add(threading.current_thread().name)
        return {"x": rng.random()}

    grid = Grid({"a": [1, 2, 3]}, reps=2)
    direct, _ = _runner(fn, grid).run(range(6))
    thread = TaskThread(_runner(fn, grid))
    first, second = thread.submit(range(0, 4)), thread.submit(range(4, 6))
    (c1, _), (c2, _) = first.result(timeout=10), second.result(timeout=10)
    thread.close()
    thread.thread.join(timeout=10)
    assert not thread.thread.is_alive() and thread.thread.daemon
    assert seen == {"MainThread", "mpibatch-tasks"}
    got = np.concatenate([c1.results["x"], c2.results["x"]])
    assert got.tobytes() == direct.results["x"].tobytes()


def test_task_thread_hands_an_unexpected_error_to_the_caller():
    class BrokenStreams:  # an mpibatch bug, not the task's: it must reach the main thread
        def for_task(self, i):
            raise RuntimeError("a bug")

    runner = Runner(lambda p, r: 1.0, Grid({}, reps=2), BrokenStreams(), INFO, clock_offset=0.0)
    thread = TaskThread(runner)
    with pytest.raises(RuntimeError, match="a bug"):
        thread.submit(range(2)).result(timeout=10)
    thread.close()


class _BadStr(Exception):
    def __str__(self):
        raise ValueError("no str")


@pytest.mark.parametrize(
    "exc",
    [KeyboardInterrupt, asyncio.CancelledError, GeneratorExit, SystemExit, _BaseError, _BadStr],
)
def test_anything_a_task_raises_fails_that_task_and_the_block_goes_on(exc):
    def fn(params, rng):
        if params["rep"] == 1:
            raise exc("its own")
        return 1.0

    cols, done = _runner(fn, Grid(None, reps=3)).run(range(3))
    assert cols.status.tolist() == [1, 2, 1] and done.ran == 3
    fail = done.failures[0]
    assert (fail.task_id, fail.type) == (1, exc.__name__)
    assert fail.message == ("its own" if exc is not _BadStr else "<str() of the _BadStr failed>")
    assert "raise exc" in fail.traceback


def test_a_stop_past_its_grace_during_a_retry_leaves_the_task_pending():
    from mpibatch._stop import Stopper, TaskInterrupted

    calls = []

    def fn(params, rng):
        calls.append(params["rep"])
        if len(calls) == 2:
            raise TaskInterrupted("stopped: SIGTERM")  # what the alarm raises past the grace
        raise ValueError("flaky")

    stopper = Stopper(0.0, None, "here")
    runner = Runner(fn, Grid(None, reps=3), TaskStreams(1), INFO, 0.0, stopper, retries=2)
    cols, done = runner.run(range(3))
    assert calls == [0, 0] and cols.status.tolist() == [0, 0, 0]
    assert done.ran == 0 and done.failures == []


def test_ctx_comm_is_what_the_engine_passes_and_comm_self_elsewhere():
    from mpi4py import MPI

    from mpibatch.runner import TaskContext

    seen = []
    runner = Runner(
        lambda p, r, ctx: seen.append(ctx.comm) or 1.0,
        Grid(None, reps=1),
        TaskStreams(1),
        {**INFO, "comm": "the engine's"},
        0.0,
    )
    runner.run(range(1))
    assert seen == ["the engine's"]
    assert TaskContext(0, 0, 0, 1, {}).comm is MPI.COMM_SELF  # as mpibatch rerun makes it


def test_blas_limits_is_a_context_manager_that_restores():
    import numpy  # noqa: F401  (loads the BLAS library)

    before = [d["num_threads"] for d in blas_info()]
    with blas_limits(1):
        assert all(d["num_threads"] == 1 for d in blas_info())
    assert [d["num_threads"] for d in blas_info()] == before
