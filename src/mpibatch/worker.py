"""Running tasks on one rank: the task function, its stream, BLAS limits, its context.

No MPI here: the engine hands a rank its rows and takes back filled columns.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._records import Columns, Packer
from .errors import ResultError, TaskFileError

BLAS_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLIS_NUM_THREADS",
)


@dataclass
class TaskContext:
    """The optional third argument of a task."""

    task_id: int
    rank: int
    local_rank: int
    size: int
    params: dict
    device: Any = None
    shared: Any = None


@dataclass
class TaskFailure:
    task_id: int
    rank: int
    host: str
    type: str
    message: str
    traceback: str


@dataclass
class RowsDone:
    """What a stretch of rows produced: raw outputs (before the schema is known) and failures."""

    raw: list = field(default_factory=list)
    failures: list = field(default_factory=list)
    ran: int = 0
    fatal: ResultError | None = None


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_task_file(path: str | Path, function: str = "task") -> tuple[Callable, Any]:
    """Import ``path`` as a module and return (its ``function``, the module)."""
    p = Path(path)
    if not p.is_file():
        raise TaskFileError(
            f"task file {str(path)!r} not found; expected a Python file defining "
            f"{function}(params, rng) - check the path"
        )
    name = "mpibatch_task_" + hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise TaskFileError(
            f"task file {str(path)!r} has a syntax error at line {exc.lineno}: {exc.msg}; "
            "fix it (python -m py_compile FILE shows it)"
        ) from None
    except Exception as exc:
        raise TaskFileError(
            f"task file {str(path)!r} failed to import: {type(exc).__name__}: {exc}; "
            "fix the error (python FILE shows the traceback)"
        ) from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise TaskFileError(
            f"task file {str(path)!r} defines no function {function!r}; expected "
            f"def {function}(params, rng): ... (or pass --function NAME)"
        )
    return fn, module


def wants_context(fn: Callable) -> bool:
    """True for ``task(params, rng, ctx)``, False for ``task(params, rng)``; else raise."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    star = any(p.kind == p.VAR_POSITIONAL for p in params)
    if len(required) <= 3 and (len(positional) >= 3 or star):
        return True
    if len(required) <= 2 and len(positional) >= 2:
        return False
    name = getattr(fn, "__name__", "task")
    raise TaskFileError(
        f"task function {name}{sig}: expected {name}(params, rng) or {name}(params, rng, ctx)"
    )


class Runner:
    """Runs tasks of one rank into :class:`Columns`; everything the hot loop needs."""

    def __init__(self, fn: Callable, grid, streams, info: dict, clock_offset: float) -> None:
        self.fn, self.grid, self.streams = fn, grid, streams
        self.ctx = wants_context(fn)
        self.rank, self.host = info["rank"], info["host"]
        self.info = info
        self.clock_offset = clock_offset

    def _call(self, i: int, params: dict):
        rng = self.streams.for_task(i)
        if self.ctx:
            info = self.info
            ctx = TaskContext(i, info["rank"], info["local_rank"], info["size"], params)
            return self.fn(params, rng, ctx)
        return self.fn(params, rng)

    def _failure(self, i: int, exc: BaseException) -> TaskFailure:
        tb = traceback.format_exc()
        head = f"rank {self.rank} on {self.host}, task {i}:\n"
        msg = str(exc).splitlines()[0] if str(exc) else ""
        return TaskFailure(i, self.rank, self.host, type(exc).__name__, msg, head + tb)

    def run(self, ids: Iterable[int], cols: Columns, packer: Packer | None) -> RowsDone:
        """Run task ``ids`` (consecutive) into rows 0.. of ``cols``.

        With ``packer`` None the outputs are kept raw in ``done.raw`` as (row, id, out).
        A ResultError from the packer stops the loop and lands in ``done.fatal``; that
        row stays pending, the rows before it are valid.
        """
        done = RowsDone()
        ids = range(ids.start, ids.stop) if isinstance(ids, range) else ids
        start, elapsed, status = cols.start, cols.elapsed, cols.status
        clock, offset, call = time.perf_counter, self.clock_offset, self._call
        params_iter = self.grid.iter_params(ids.start, ids.stop)
        for row, (i, params) in enumerate(zip(ids, params_iter, strict=True)):
            t = clock()
            try:
                out = call(i, params)
            except Exception as exc:
                elapsed[row] = clock() - t
                start[row] = t + offset
                status[row] = 2
                done.failures.append(self._failure(i, exc))
                done.ran = row + 1
                continue
            elapsed[row] = clock() - t
            start[row] = t + offset
            if packer is None:
                done.raw.append((row, i, out))
            else:
                try:
                    packer.put(cols, row, out, i)
                except ResultError as exc:
                    done.fatal = exc
                    break
            status[row] = 1
            done.ran = row + 1
        return done


def blas_limits(threads: int):
    """Context manager limiting BLAS/OpenMP pools to ``threads``; restores them on exit."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=threads)


def blas_info() -> list[dict]:
    """The BLAS/OpenMP libraries loaded in this process and their thread counts."""
    from threadpoolctl import threadpool_info

    keys = ("user_api", "internal_api", "version", "num_threads", "filepath")
    return [{k: d.get(k) for k in keys} for d in threadpool_info()]
