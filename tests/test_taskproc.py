"""The rank's side of a task process, in one process without MPI: blocks, crashes, restarts."""

from __future__ import annotations

import os
import signal

import numpy as np
from procs import process_gone

from mpibatch import streams
from mpibatch._taskproc import TaskProcess
from mpibatch.grid import Grid
from mpibatch.runner import Runner


def _task(params, rng):
    if params["rep"] == 13:
        os._exit(9)
    return float(rng.random())


def _process(n: int = 40) -> TaskProcess:
    info = {"rank": 0, "host": "here", "local_rank": 0, "size": 1}
    runner = Runner(_task, Grid.coerce(None, n), streams.make_streams("task", 7, 0), info, 0.0)
    return TaskProcess(runner, 8 << 20, lambda current: None)


def _values(tp: TaskProcess, ids: range):
    cols, done = tp.run(ids)
    values = cols.results["value"].copy() if cols.schema else None
    status = cols.status.copy()
    tp.buffers.give(cols.storage)
    return values, status, done


def test_rows_come_back_exact_and_a_death_fails_only_its_task():
    tp = _process()
    try:
        values, status, done = _values(tp, range(0, 20))
        assert status.tolist() == [1] * 13 + [2] + [1] * 6
        expected = [streams.task_generator(7, i).random() for i in range(20)]
        assert np.delete(values, 13).tolist() == np.delete(expected, 13).tolist()
        assert [f.task_id for f in done.failures] == [13]
        assert "exit status 9 without returning" in done.failures[0].message
        assert tp.starts == 2  # a fresh one after the death
    finally:
        tp.close()


def test_a_child_killed_while_it_waits_is_replaced_at_the_next_block():
    tp = _process()
    try:
        _values(tp, range(0, 5))
        os.kill(tp.pid, signal.SIGKILL)  # idle, between blocks
        assert process_gone(tp.pid)  # dead (a zombie until the rank reaps it)
        values, status, done = _values(tp, range(20, 30))
        assert (status == 1).all() and not done.failures
        assert values.tolist() == [streams.task_generator(7, i).random() for i in range(20, 30)]
        assert tp.starts == 2
    finally:
        tp.close()


def test_the_arena_frees_what_is_given_back():
    tp = _process()
    try:
        for _ in range(50):  # far more blocks than the arena holds at once
            _values(tp, range(0, 10))
        assert len(tp.arena.used) == 0
    finally:
        tp.close()
