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

from . import __version__, _comm, _config, schedule, streams
from ._records import Columns, Packer, infer_schema, record_bytes
from .errors import MpibatchError, ResultError, UsageError
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
    ``dry_run`` the :class:`Plan`, and nothing is run or written).
    """
    comm = _comm.world(comm)
    opts = {
        "reps": reps,
        "seed": seed,
        "out": out,
        "streams": streams,
        "schedule": schedule,
        "threads": threads_per_rank,
        "tasks": tasks,
        "overwrite": overwrite,
        "quiet": quiet,
        "dry_run": dry_run,
        "argv": argv,
    }
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
            plan = _make_plan(grid, opts)
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


def _make_plan(grid: Grid, opts: dict) -> Plan:
    seed = _config.resolve("seed", opts["seed"])
    seed = streams.fresh_seed() if seed is None else streams.check_seed(seed)
    threads = _config.positive_int(
        "threads_per_rank",
        _config.resolve("threads_per_rank", opts["threads"]),
        "--threads-per-rank",
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
    host = _comm.host()
    local, _ = _comm.local_rank(comm)
    grid = Grid.from_json(plan.grid_json)
    info = {"rank": rank, "size": size, "host": host, "local_rank": local}
    with blas_limits(plan.threads):
        infos = _comm.gather_small(comm, {**info, "blas": blas_info()})
        if rank == 0:
            store.write_ranks(infos)
            block = _comm.scatter_blocks_root(
                comm, schedule.static_blocks(len(plan.id_range), size)
            )
        else:
            block = _comm.scatter_blocks_worker(comm)
        offset = time.time() - time.perf_counter() - plan.t0
        runner = Runner(fn, grid, streams.make_streams(plan.streams, plan.seed, rank), info, offset)
        counts = _Rounds(comm, runner, plan, store).run(block)
    if rank != 0:
        return None
    wall = time.time() - plan.t0
    store.close({"end_time": _iso(time.time()), "wall_seconds": wall})
    return Summary(plan.out, len(plan.id_range), counts[0], counts[1], size, wall, counts[2])


class _Rounds:
    """Static schedule: every rank runs its block in rounds; each round is gathered to rank 0."""

    def __init__(self, comm, runner: Runner, plan: Plan, store: Store | None) -> None:
        self.comm, self.runner, self.plan, self.store = comm, runner, plan, store
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.packer: Packer | None = None
        self.ids0 = plan.ids[0]
        self.counts = [0, 0, 0.0]  # done, failed, task seconds (rank 0)

    def run(self, block: tuple[int, int]) -> list:
        pos, stop = block
        k = 0
        while True:
            n = min(self._round_rows(k), stop - pos)
            cols, done = self._compute(pos, n)
            more = self._gather(pos, cols, done, pos + n < stop)
            pos, k = pos + n, k + 1
            if not more:
                return self.counts

    def _round_rows(self, k: int) -> int:
        rec = record_bytes(self.packer.schema) if self.packer else None
        return schedule.round_rows(k, rec, self.size, self.plan.gather_bytes)

    def _compute(self, pos: int, n: int):
        ids = range(self.ids0 + pos, self.ids0 + pos + n)
        schema = self.packer.schema if self.packer else ()
        cols = Columns(schema, n)
        done = self.runner.run(ids, cols, self.packer)
        if self.packer is None:
            cols = self._settle_schema(cols, done)
        return cols, done

    def _settle_schema(self, cols: Columns, done) -> Columns:
        """Agree on the schema from the lowest task id that succeeded, then pack raw outputs."""
        mine = None
        if done.raw:
            row, i, out = done.raw[0]
            try:
                mine = (i, infer_schema(out, i))
            except ResultError as exc:
                done.fatal, done.raw = exc, []
                cols.status[row:] = 0
        found = [c for c in _comm.allgather_small(self.comm, mine) if c is not None]
        if not found:
            return cols
        tid, schema = min(found, key=lambda c: c[0])
        self.packer = Packer(schema, tid)
        if self.rank == 0:
            self.store.add_results(schema)
        full = Columns(schema, cols.rows)
        for name in ("start", "elapsed", "status"):
            full.arrays[name][...] = cols.arrays[name]
        for row, i, out in done.raw:
            try:
                self.packer.put(full, row, out, i)
            except ResultError as exc:
                done.fatal = exc
                full.status[row:] = 0
                break
        return full

    def _gather(self, pos: int, cols: Columns, done, more: bool) -> bool:
        fatal = str(done.fatal) if done.fatal else None
        meta = (pos, cols.rows, cols.nbytes, len(done.failures), fatal, more)
        metas = _comm.allgather_small(self.comm, meta)
        if self.rank == 0:
            recv = _comm.gather_rows_root(self.comm, cols.buffer, [m[2] for m in metas])
            self._write(recv, metas)
        else:
            _comm.gather_rows_worker(self.comm, cols.buffer)
        if any(m[3] for m in metas):
            failures = _comm.gather_small(self.comm, done.failures)
            if self.rank == 0:
                self.store.write_failures([f for fs in failures for f in fs])
        fatals = [m[4] for m in metas if m[4]]
        if fatals:
            if self.rank == 0:
                self.store.close({"end_time": _iso(time.time())})
            raise ResultError(fatals[0])
        return any(m[5] for m in metas)

    def _write(self, recv, metas) -> None:
        offset = 0
        schema = self.packer.schema if self.packer else ()
        for r, (pos, rows, nbytes, *_rest) in enumerate(metas):
            cols = Columns(schema, rows, recv[offset : offset + nbytes])
            offset += nbytes
            self.store.write_rows(pos, cols, r)
            self.counts[0] += int((cols.status == 1).sum())
            self.counts[1] += int((cols.status == 2).sum())
            self.counts[2] += float(cols.elapsed[cols.status > 0].sum())
        self.store.flush()
