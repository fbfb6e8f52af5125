"""Steps 3-5 of a run: load the task (a function, a task file or a command), plan it,
open the file it writes (created or reopened, and locked), and check that every rank runs
what rank 0 runs. Called by engine._run on every rank; only rank 0 plans and opens."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from . import _comm, _command, _plan, _resume
from ._dtypes import declarations_of
from ._plan import Plan
from ._records import declared_schema
from .errors import MpibatchError, UsageError
from .grid import Grid
from .options import RunOptions
from .taskfile import call_grid

if TYPE_CHECKING:  # only rank 0 writes the file: the other ranks never import h5py
    from .store import Store


def load_and_plan(options: RunOptions, rank: int, size: int):
    """(task function, its module, where it came from, and on rank 0 the plan and file)."""
    fn, module, source = _load(options)
    if rank != 0:
        return fn, module, source, None, None
    grid = options.grid
    if grid is None and module is not None and callable(getattr(module, "grid", None)):
        grid = call_grid(module, str(options.task))  # one line if it raises
    grid = _plan.resolve_grid(grid, module, options.reps, _stored_grid(options))
    if options.command is not None:
        _command.check_fields(fn, grid)  # an unknown {field}: one line before any task
    declared = declared_schema(declarations_of(fn, options.results))
    plan, store = _prepare(grid, options, size, source, declared)
    return fn, module, source, plan, store


def _stored_grid(options: RunOptions) -> str | None:
    """The grid JSON of the file a ``--resume`` continues (None if none: _prepare says why)."""
    path = Path(options.out) if options.out else None
    if not options.resume or options.dry_run or path is None or not path.is_file():
        return None
    from .results import read_attrs

    grid = read_attrs(path).get("grid")
    return None if grid is None else str(grid)


def _load(options: RunOptions):
    """``_plan.load`` for a task, or the command task of ``options.command``."""
    if options.command is None:
        return _plan.load(options.task, options.function)
    if options.task is not None:
        raise UsageError(
            f"expected a task file or --command, got both ({options.task!r} and "
            f"{options.command!r}); drop one"
        )
    spec = _command.CommandSpec(
        options.command, options.shell, options.task_dir, options.keep_output, str(options.out)
    )
    fn, source = _command.load(spec)
    return fn, None, source


def launch_check(plan: Plan, source: dict) -> MpibatchError | None:
    """A rank whose Python, mpibatch or task file differs from rank 0's fails the launch."""
    import sys

    from . import __version__

    mine = {
        "python_version": sys.version.split()[0],
        "mpibatch_version": __version__,
        "task_file_sha256": source["task_file_sha256"],
    }
    for key, value in mine.items():
        if value != plan.attrs.get(key):
            what = key.replace("_sha256", "").replace("_", " ")
            return UsageError(
                f"rank on {_comm.host()} has {what} {value!r} but rank 0 has "
                f"{plan.attrs.get(key)!r}; every node must use the same environment and files "
                "(same virtual environment or modules, task file on a shared filesystem)"
            )
    return None


def _prepare(
    grid: Grid, options: RunOptions, size: int, source: dict, declared=None
) -> tuple[Plan, Store | None]:
    """Rank 0: the plan, and the file it writes (created, or reopened to resume), locked;
    ``declared``: the results' schema if a declaration gives it (the file has it at once)."""
    from ._output import lock_output

    path = Path(options.out) if options.out else None
    lock = None if options.dry_run or path is None else lock_output(path)
    try:
        plan, store = _plan_and_open(grid, options, size, source, path, declared)
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    if store is not None:
        store.lock = lock  # released when the store closes (or when this process ends)
    return plan, store


def _plan_and_open(
    grid: Grid, options: RunOptions, size: int, source: dict, path: Path | None, declared
) -> tuple[Plan, Store | None]:
    from .results import read_attrs
    from .store import Store

    stored = None
    if options.resume and not options.dry_run:
        if path is None or not path.exists():
            raise _resume.missing(path)
        stored = read_attrs(path)
    plan = _plan.make(grid, options, size, stored)
    plan.attrs.update(_plan.attrs(plan, source, size, options.argv))
    if options.dry_run:
        return plan, None
    assert path is not None, "plan.make refuses a run without an output file"
    if stored is not None:
        _resume.check(path, stored, plan.attrs, options.force)
        for key in ("start_time", "t0"):
            plan.attrs.pop(key)  # the study started when its first session did
        return plan, Store.reopen(path, plan.id_range)
    return plan, Store.create(path, grid, plan.id_range, plan.attrs, declared)
