"""Orchestration only: plan on rank 0 -> share -> scatter blocks -> rounds -> store.

Every rank calls :func:`run` (SPMD). Errors that every rank agrees on are raised
on every rank; anything unexpected aborts the whole job instead of hanging it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, _comm, _config, _dispatch, schedule, streams
from .errors import MpibatchError, UsageError
from .grid import Grid
from .store import Store, check_output
from .worker import Runner, blas_info, blas_limits, file_hash, load_task_file, wants_context


@dataclass
class Plan:
    """Everything rank 0 decides before the first task; shared with every rank."""

    grid_json: str
    seed: int
    streams: str
    schedule: str
    ids: tuple[int, int]
    threads: int
    gather_bytes: int
    quiet: bool
    t0: float
    block_size: int | None = None
    dedicated_root: bool = False
    flush_seconds: float = 30.0
    block_seconds: float = 1.0
    out: str = ""
    attrs: dict = field(default_factory=dict)

    @property
    def id_range(self) -> range:
        return range(*self.ids)


@dataclass
class Summary:
    """What :func:`run` returns on rank 0."""

    path: str
    n_tasks: int
    done: int
    failed: int
    n_ranks: int
    wall_seconds: float
    task_seconds: float

    @property
    def pending(self) -> int:
        return self.n_tasks - self.done - self.failed

    @property
    def efficiency(self) -> float:
        return self.task_seconds / max(1e-12, self.n_ranks * self.wall_seconds)

    def __str__(self) -> str:
        return (
            f"{self.n_tasks} tasks: {self.done} done, {self.failed} failed, {self.pending} pending "
            f"on {self.n_ranks} ranks in {self.wall_seconds:.2f} s "
            f"(parallel efficiency {self.efficiency:.0%}) -> {self.path}"
        )


def run(
    task: Callable | str,
    grid: Grid | dict | None = None,
    *,
    reps: int | None = None,
    seed: int | None = None,
    out: str | None = None,
    streams: str | None = None,
    schedule: str | None = None,
    block_size: int | None = None,
    dedicated_root: bool = False,
    flush_seconds: float | None = None,
    threads_per_rank: int | None = None,
    tasks: str | None = None,
    overwrite: bool = False,
    quiet: bool | None = None,
    function: str = "task",
    dry_run: bool = False,
    comm=None,
    argv: list[str] | None = None,
) -> Summary | Plan | None:
    """Run ``task(params, rng[, ctx])`` over every task of ``grid`` x ``reps`` on all ranks.

    Call it on every rank. ``task`` is a function or the path of a task file defining
    ``function``. Returns a :class:`Summary` on rank 0 and None elsewhere (with
    ``dry_run`` the :class:`Plan`, and nothing is run or written). The keywords are
    the ``mpibatch run`` flags; see ``mpibatch run --help``.
    """
    opts = {k: v for k, v in locals().items() if k not in ("task", "grid", "function", "comm")}
    comm = _comm.world(comm)
    try:
        return _run(comm, task, function, grid, opts)
    except MpibatchError:
        raise  # agreed: raised on every rank
    except Exception:
        _comm.abort(comm)


def _run(comm, task, function: str, grid, opts: dict):
    rank, size = comm.Get_rank(), comm.Get_size()
    error, fn, plan, store = None, None, None, None
    try:
        fn, module, source = _load(task, function)
        if rank == 0:
            grid = _resolve_grid(grid, module, opts["reps"])
            plan = _make_plan(grid, opts, size)
            plan.attrs.update(_attrs(plan, source, size, opts["argv"]))
            if not opts["dry_run"]:
                store = Store.create(Path(plan.out), grid, plan.id_range, plan.attrs)
    except MpibatchError as exc:
        error = exc
    _comm.agree(comm, error)
    plan = _comm.share(comm, plan)
    if opts["dry_run"]:
        return plan if rank == 0 else None
    return _execute(comm, fn, plan, store)


def _load(task, function):
    if isinstance(task, (str, Path)):
        fn, module = load_task_file(task, function)
        return (
            fn,
            module,
            {
                "task_file": str(Path(task).resolve()),
                "function": function,
                "task_file_sha256": file_hash(task),
            },
        )
    if not callable(task):
        raise UsageError(f"task: expected a function or a task file path, got {task!r}")
    wants_context(task)
    module = sys.modules.get(getattr(task, "__module__", ""), None)
    src = getattr(module, "__file__", None)
    return (
        task,
        None,
        {
            "task_file": str(Path(src).resolve()) if src else "",
            "function": f"{task.__module__}:{getattr(task, '__qualname__', task)}",
            "task_file_sha256": file_hash(src) if src and Path(src).is_file() else "",
        },
    )


def _resolve_grid(grid, module, reps) -> Grid:
    if grid is None and module is not None and callable(getattr(module, "grid", None)):
        grid = module.grid()
    if reps is not None:
        _config.positive_int("reps", reps, "--reps")
    return Grid.coerce(grid, reps)


def _make_plan(grid: Grid, opts: dict, size: int) -> Plan:
    seed = _config.resolve("seed", opts["seed"])
    seed = streams.fresh_seed() if seed is None else streams.check_seed(seed)
    threads = _config.positive_int(
        "threads_per_rank",
        _config.resolve("threads_per_rank", opts["threads_per_rank"]),
        "--threads-per-rank",
    )
    if opts["dedicated_root"] and size < 2:
        raise UsageError(
            f"--dedicated-root: expected at least 2 ranks, got {size}; launch with "
            "mpiexec -n 2 or more, or drop --dedicated-root"
        )
    if opts["block_size"] is not None:
        _config.positive_int("block_size", opts["block_size"], "--block-size")
    flush = float(_config.resolve("flush_seconds", opts["flush_seconds"]))
    if not flush > 0:
        raise UsageError(
            f"flush_seconds: expected a number > 0, got {flush}; e.g. --flush-seconds 30"
        )
    gather_mb = _config.positive_int("MPIBATCH_GATHER_MB", _config.resolve("gather_mb"), "")
    ids = schedule.parse_task_slice(opts["tasks"], grid.n_tasks)
    out = opts["out"]
    if not opts["dry_run"]:
        if out is None:
            raise UsageError("out: expected an output file path, got None; pass out='results.h5'")
        check_output(out, opts["overwrite"])
    return Plan(
        grid_json=grid.to_json(),
        seed=seed,
        streams=streams.check_streams(_config.resolve("streams", opts["streams"])),
        schedule=schedule.check_schedule(_config.resolve("schedule", opts["schedule"])),
        ids=(ids.start, ids.stop),
        threads=threads,
        gather_bytes=gather_mb << 20,
        quiet=bool(_config.resolve("quiet", opts["quiet"])),
        t0=time.time(),
        block_size=opts["block_size"],
        dedicated_root=bool(opts["dedicated_root"]),
        flush_seconds=flush,
        block_seconds=min(1.0, flush / 4),
        out=str(out or ""),
    )


def _attrs(plan: Plan, source: dict, size: int, argv) -> dict:
    import h5py
    import mpi4py
    import numpy

    ids = plan.id_range
    return {
        **source,
        "seed": plan.seed,
        "streams": plan.streams,
        "schedule": plan.schedule,
        "n_ranks": size,
        "threads_per_rank": plan.threads,
        "grid": plan.grid_json,
        "tasks": f"{ids.start}:{ids.stop}",
        "argv": json.dumps(argv or sys.argv),
        "command": _command(plan, source, size),
        "start_time": _iso(plan.t0),
        "mpibatch_version": __version__,
        "python_version": sys.version.split()[0],
        "numpy_version": numpy.__version__,
        "mpi4py_version": mpi4py.__version__,
        "h5py_version": h5py.__version__,
        "hdf5_version": h5py.version.hdf5_version,
        "mpi_library": _comm.library_version(),
    }


def _command(plan: Plan, source: dict, size: int) -> str:
    """A command line that reproduces the run (the grid spelled out as --grid flags)."""
    grid = Grid.from_json(plan.grid_json)
    fn = source["function"].split(":")[-1]
    parts = ["mpiexec", "-n", str(size), "mpibatch", "run", source["task_file"] or "TASK_FILE"]
    if fn != "task":
        parts += ["--function", fn]
    parts += [f"--grid={spec}" for spec in grid.to_specs()]
    ids = plan.id_range
    parts += [
        "--reps",
        str(grid.reps),
        "--seed",
        str(plan.seed),
        "--streams",
        plan.streams,
        "--schedule",
        plan.schedule,
    ]
    if (ids.start, ids.stop) != (0, grid.n_tasks):
        parts += ["--tasks", f"{ids.start}:{ids.stop}"]
    parts += ["--out", plan.out]
    return " ".join(parts)


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def _execute(comm, fn, plan: Plan, store: Store | None) -> Summary | None:
    rank, size = comm.Get_rank(), comm.Get_size()
    local, _ = _comm.local_rank(comm)
    info = {"rank": rank, "size": size, "host": _comm.host(), "local_rank": local}
    grid = Grid.from_json(plan.grid_json)
    summary, fatal = None, None
    with blas_limits(plan.threads):
        infos = _comm.gather_small(comm, {**info, "blas": blas_info()})
        offset = time.time() - time.perf_counter() - plan.t0
        runner = Runner(fn, grid, streams.make_streams(plan.streams, plan.seed, rank), info, offset)
        if rank == 0:
            store.write_ranks(infos)
            summary, fatal = _serve(comm, plan, store, runner)
        else:
            _dispatch.work(comm, runner, plan.ids[0])
    _dispatch.finish(comm, fatal)
    return summary


def _serve(comm, plan: Plan, store: Store, runner: Runner) -> tuple[Summary, str | None]:
    """Rank 0: run the loop, close the file with the run's accounting, summarise."""
    from .progress import Progress

    size, n = comm.Get_size(), len(plan.id_range)
    slots = size - 1 if plan.dedicated_root else size
    queue = schedule.make_queue(plan.schedule, 0, n, slots, plan.block_size)
    progress = Progress(n, quiet=plan.quiet)
    root = _dispatch.Root(comm, plan, store, runner, queue, progress)
    try:
        root.run()
    finally:
        progress.close()
    wall = time.time() - plan.t0
    reason = getattr(queue, "reason", "") or f"requested with --schedule {plan.schedule}"
    store.close(
        {
            "end_time": _iso(time.time()),
            "wall_seconds": wall,
            "schedule_used": queue.name,
            "schedule_reason": reason,
            "dispatch_seconds": root.dispatch_seconds,
            "n_blocks": root.n_blocks,
            "dedicated_root": plan.dedicated_root,
        }
    )
    return Summary(plan.out, n, root.done, root.failed, size, wall, root.busy), root.fatal
