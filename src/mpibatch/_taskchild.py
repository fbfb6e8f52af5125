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
from ._arena import COUNT, STOP, Arena
from ._dtypes import LossyResult
from ._packer import infer_schema
from ._records import BARE, Columns, Packer, columns_bytes
from ._stop import Stopper, TaskInterrupted
from .errors import ResultError
from .layout import Status
from .runner import Runner


def child(
    runner: Runner, conn, arena: Arena, err_w: int, in_child, memory: int | None, teardown
) -> None:
    """The task process: run blocks as the rank asks, until it closes the pipe."""
    code = 0
    try:
        _hygiene.enter_child(keep=(conn.fileno(), err_w, 0, 1), stderr=err_w)
        if memory is not None:
            _hygiene.cap_memory(memory)
            runner.memory_cap = _hygiene.size_text(memory)  # type: ignore[attr-defined]
        stopper = Stopper(runner.stopper.grace, runner.stopper.task_timeout, runner.stopper.where)
        runner.stopper = stopper
        in_child(lambda: stopper.task_id)
        with stopper.installed():
            _hygiene.stops_reach(os.getppid(), stopper)  # before Restore: its baseline
            with _hygiene.Restore() as restore:
                restore.randoms = _hygiene.GlobalRandom()  # type: ignore[attr-defined]
                while True:
                    try:
                        msg = conn.recv()
                    except EOFError:
                        break
                    if msg[0] == "teardown":
                        conn.send(("torn", _teardown(teardown, runner.info.get("state"))))
                        break
                    _run_block(runner, conn, arena, restore, *msg[1:])
    except BaseException:  # noqa: BLE001  (a bug here: say it, end this process only)
        import traceback

        traceback.print_exc()
        code = 70
    finally:
        os._exit(code)


def _teardown(hook, state) -> tuple[str, str] | None:
    """The task file's teardown(state), on this process's state: None or what it raised."""
    try:
        hook(state)
    except Exception as exc:  # noqa: BLE001  (reported by the rank, as a teardown failure)
        return type(exc).__name__, str(exc)
    return None


def _run_block(runner, conn, arena: Arena, restore, ids, at, schema, first, skip) -> None:
    """Run rows ``first..`` of block ``ids`` (but ``skip``) into the arena at ``at``.

    The hot loop: per task its start is written; once the task is done its result, time
    and status, then the header's COUNT (the rank's :meth:`TaskProcess._progress`).
    """
    rows, hdr, skip = len(ids), arena.header, frozenset(skip)
    hdr[COUNT] = first
    cols = _open_columns(arena, at, schema, rows)
    fn, for_task, stopper = runner.fn, runner.streams.for_task, runner.stopper
    context = runner._context if runner.with_context else None
    timed, clock, offset = stopper.task_timeout is not None, time.perf_counter, runner.clock_offset
    start, elapsed, status, fast = _views(cols, runner.packer)
    fatal, ran, base = None, 0, ids.start
    if hdr[STOP]:  # the rank was asked to stop before this child started (else: SIGUSR1)
        stopper.request("asked by its rank")
    check = restore.changed
    params_of = runner.grid.iter_params(base + first, ids.stop)
    for row, params in zip(range(first, rows), params_of, strict=True):
        if skip and row in skip:
            continue
        if stopper.requested:
            break
        i = base + row
        rng = for_task(i)
        t = clock()
        start[row] = t + offset  # the rank reads it: this task began
        stopper.task_id, stopper.task_started = i, t
        try:
            if timed:
                stopper.begin(i)
            out = fn(params, rng, context(i, params)) if context else fn(params, rng)
            ok = True
        except TaskInterrupted:
            ok = None
        except BaseException as exc:  # noqa: BLE001  (anything a task raises fails it)
            stopper.end()
            ok, out = _failed(runner, i, params, exc)
        if timed:
            stopper.end()
        else:
            stopper.task_id = None
        if ok is None:  # the stop's grace period ran out: this task stays pending
            start[row] = 0.0
            break
        if check():
            restore.after_task()
        end = clock()
        if ok and fast is not None and type(out) in _FLOATS:
            fast[row], failure = out, None
        elif ok:
            cols, failure = _store(runner, conn, arena, cols, row, out, i)
            start, elapsed, status, fast = _views(cols, runner.packer)
            if isinstance(failure, str):  # no file can hold it: the run stops
                fatal, start[row] = failure, 0.0
                break
        else:
            failure = out
        elapsed[row] = end - t
        status[row] = _DONE if failure is None else _FAILED
        if failure is not None:
            conn.send(("fail", row, failure))
        ran += 1
        hdr[COUNT] = row + 1
        if restore.retire and not cols.tails:  # (ragged values stay here: at the block's end)
            break
    _done(conn, arena, cols, ran, fatal, restore)


_FLOATS = frozenset((float, np.float64))
_DONE, _FAILED = int(Status.DONE), int(Status.FAILED)


def _failed(runner, i: int, params, exc: BaseException):
    """A task raised: retried as ``--retries`` says; (False, its failure), (True, a
    retry's result) or (None, None): a stop interrupted a retry."""
    ok, out = runner._retry(i, params, exc)
    cap = getattr(runner, "memory_cap", None)
    if ok is False and cap and out.type == "MemoryError":
        out.message = f"over its memory limit (--task-memory {cap}): {out.message}"
    return ok, out


def _store(runner, conn, arena, cols, row, out, i):
    """Store one result the slow way (the first sets the schema): (columns, None, a
    TaskFailure or the fatal message)."""
    failure = None
    if runner.packer is None or cols.schema != runner.packer.schema:
        cols, failure = _reshape(runner, conn, arena, cols, out, i)
    if failure is None:
        failure = _put(runner, cols, row, out, i)
    return cols, failure


def _views(cols: Columns, packer) -> tuple[Any, Any, Any, Any]:
    """Row-at-a-time writers (faster than numpy's) of start, elapsed, status, and of a
    bare float result (None unless that is the schema)."""
    fast = None
    if packer is not None and packer.scalar_float and cols.schema == packer.schema:
        fast = memoryview(cols.results[BARE].data)
    return (
        memoryview(cols.start.data),
        memoryview(cols.elapsed.data),
        memoryview(cols.status.data),
        fast,
    )


def _open_columns(arena, at, schema, rows) -> Columns:
    """The block's columns in the arena at ``at`` (the rank zeroed the rows to run), or
    fresh ones here if the arena had no room."""
    if at is None:
        return Columns(schema, rows)
    cols = Columns(schema, rows, arena.view(at, columns_bytes(schema, rows)))
    cols.stale = True
    return cols


def _reshape(runner, conn, arena, cols, out, i):
    """The first result here sets the rank's schema: (new columns, None) with the rows'
    meta carried over; or (the columns, why it fails: a failure or the fatal message)."""
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
    new = _open_columns(arena, at, packer.schema, cols.rows)
    for name in ("start", "elapsed", "status"):
        new.arrays[name][:] = cols.arrays[name]
    return new, None


def _put(runner, cols, row, out, i):
    """Store one result: None, a TaskFailure (this task fails) or the fatal message."""
    try:
        runner.packer.put(cols, row, out, i)
    except LossyResult as exc:
        return runner._failure(i, exc)
    except ResultError as exc:
        return str(exc)
    return None


def _done(conn, arena, cols: Columns, ran: int, fatal, restore) -> None:
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
    retire, randoms = restore.retire, getattr(restore, "randoms", None)
    used = randoms is not None and randoms.check()
    conn.send(("done", ran, fatal, sealed.nbytes, payload, retire, used))
    if retire:
        os._exit(0)
