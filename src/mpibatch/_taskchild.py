"""The task process's side of _taskproc.py: run the blocks its rank sends, row by row.

Each finished row is written into the arena and published by the header's counter, so a
death loses only the task in flight. No MPI and no HDF5 here.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from . import _hygiene
from ._arena import COUNT, ROW, STOP, Arena
from ._records import Columns, Packer, columns_bytes
from ._stop import Stopper, TaskInterrupted
from .layout import Status
from .runner import Runner


def child(runner: Runner, conn, arena: Arena, err_w: int, in_child) -> None:
    """The task process: run blocks as the rank asks, until it closes the pipe."""
    code = 0
    try:
        _hygiene.enter_child(keep=(conn.fileno(), err_w, 0, 1), stderr=err_w)
        stopper = Stopper(runner.stopper.grace, runner.stopper.task_timeout, runner.stopper.where)
        runner.stopper = stopper
        in_child(lambda: stopper.task_id)
        with stopper.installed():
            _hygiene.stops_reach(os.getppid(), stopper)  # before Restore: its baseline
            with _hygiene.Restore() as restore:
                while True:
                    try:
                        msg = conn.recv()
                    except EOFError:
                        break
                    _run_block(runner, conn, arena, restore, *msg[1:])
    except BaseException:  # noqa: BLE001  (a bug here: say it, end this process only)
        import traceback

        traceback.print_exc()
        code = 70
    finally:
        os._exit(code)


def _run_block(runner, conn, arena: Arena, restore, ids, at, schema, first, skip) -> None:
    """Run rows ``first..`` of block ``ids`` (but ``skip``) into the arena at ``at``."""
    rows, hdr = len(ids), arena.header
    hdr[COUNT], hdr[ROW] = first, -1
    cols = _open_columns(arena, at, schema, rows, first, skip)
    stopper, meta = runner.stopper, _meta(cols)
    clock, offset, fatal, ran = time.perf_counter, runner.clock_offset, None, 0
    params_of = runner.grid.iter_params(ids.start + first, ids.stop)
    for row, params in zip(range(first, rows), params_of, strict=True):
        if row in skip:
            continue
        if stopper.requested or hdr[STOP]:
            break
        i, t = ids.start + row, clock()
        meta[0][row] = t + offset  # before the row is published: the rank reads it
        hdr[ROW] = row
        ok, out = _call(runner, stopper, i, params, t)
        if ok is None:  # the stop's grace period ran out: this task stays pending
            meta[0][row] = 0.0
            break
        restore.after_task()
        end = clock()
        failure = out if not ok else None
        if ok:
            if runner.packer is None or cols.schema != runner.packer.schema:
                cols, failure = _reshape(runner, conn, arena, cols, out, i)
                meta = _meta(cols)
            if failure is None:
                failure = _put(runner, cols, row, out, i)
            if isinstance(failure, str):
                fatal = failure
                meta[0][row] = 0.0
                break
        meta[1][row] = end - t
        meta[2][row] = Status.DONE if failure is None else Status.FAILED
        if failure is not None:
            conn.send(("fail", row, failure))
        ran += 1
        hdr[COUNT], hdr[ROW] = row + 1, -1
        if restore.retire and not cols.tails:  # (ragged values stay here: at the block's end)
            break
    hdr[ROW] = -1
    _done(conn, arena, cols, ran, fatal, restore.retire)


def _call(runner, stopper, i: int, params, t: float):
    """(True, the result), (False, its failure) or (None, None): interrupted by a stop."""
    stopper.task_id, stopper.task_started = i, t
    try:
        if stopper.task_timeout is not None:
            stopper.begin(i)
        out = runner._call(i, params)
    except TaskInterrupted:
        stopper.end()
        return None, None
    except BaseException as exc:  # noqa: BLE001  (anything a task raises fails it)
        stopper.end()
        return runner._retry(i, params, exc)
    stopper.end()
    return True, out


def _open_columns(arena, at, schema, rows, first, skip) -> Columns:
    """The block's columns in the arena at ``at``: rows before ``first`` and ``skip`` kept."""
    if at is None:
        cols = Columns(schema, rows)
    else:
        cols = Columns(schema, rows, arena.view(at, columns_bytes(schema, rows)))
        cols.stale = True
    keep = np.zeros(rows, bool)
    keep[:first] = True
    keep[list(skip)] = True
    for name in ("start", "elapsed", "status"):
        cols.arrays[name][~keep] = 0
    return cols


def _reshape(runner, conn, arena, cols, out, i):
    """The first result here sets the rank's schema: (new columns, None) with the rows'
    meta carried over; or (the columns, why it fails: a failure or the fatal message)."""
    from ._dtypes import LossyResult
    from ._packer import infer_schema
    from .errors import ResultError

    if runner.packer is None:
        try:
            runner.packer = Packer(infer_schema(out, i, runner.declared), i)
        except LossyResult as exc:
            return cols, runner._failure(i, exc)
        except ResultError as exc:
            return cols, str(exc)
    packer = runner.packer
    nbytes = columns_bytes(packer.schema, cols.rows)
    old = arena.offset_of(cols.storage, allocated=False)
    conn.send(("alloc", nbytes, packer.schema, packer.schema_task, old))
    at = conn.recv()
    new = _open_columns(arena, at, packer.schema, cols.rows, cols.rows, ())
    for name in ("start", "elapsed", "status"):
        new.arrays[name][:] = cols.arrays[name]
    return new, None


def _meta(cols: Columns) -> tuple[Any, Any, Any]:
    """Row-at-a-time writers of start, elapsed and status (faster than numpy's)."""
    return memoryview(cols.start.data), memoryview(cols.elapsed.data), memoryview(cols.status.data)


def _put(runner, cols, row, out, i):
    """Store one result: None, a TaskFailure (this task fails) or the fatal message."""
    from ._dtypes import LossyResult
    from .errors import ResultError

    try:
        runner.packer.put(cols, row, out, i)
    except LossyResult as exc:
        return runner._failure(i, exc)
    except ResultError as exc:
        return str(exc)
    return None


def _done(conn, arena, cols: Columns, ran: int, fatal, retire: bool) -> None:
    """Seal the block; its bytes go where the rank can read them; say done."""
    cols.clear_unfinished()
    at = arena.offset_of(cols.storage, allocated=False)
    sealed = cols.seal(None) if cols.tails else cols
    payload = None
    if sealed is not cols or at is None:  # the bytes are this process's own
        conn.send(("alloc", sealed.nbytes, None, 0, at))
        at = conn.recv()
        if at is None:
            payload = sealed.buffer.tobytes()
        else:
            arena.view(at, sealed.nbytes)[:] = sealed.buffer
    conn.send(("done", ran, fatal, sealed.nbytes, payload, retire))
    if retire:
        os._exit(0)
