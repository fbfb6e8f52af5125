"""What rank 0 decides before the first task: the plan, checked, and what the file records."""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, _comm, _config, schedule, streams
from ._dtypes import parse_declarations
from .errors import GridError, UsageError
from .grid import Grid
from .options import RunOptions
from .taskfile import file_hash, load_task_file, wants_context


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
    t0: float  # when the study started (its first session): task start times count from it
    session_t0: float  # when this session started
    block_size: int | None = None
    dedicated_root: bool = False
    root_tasks: str = "thread"  # where rank 0 runs its own tasks: a helper thread or main
    isolation: str = "on"  # on: tasks run in a task process beside each rank
    schedule_reason: str = ""  # why, when not this run's own choice (kept from the file)
    task_memory: int | None = None  # bytes a task process may grow by (--task-memory)
    leaders: str = "auto"  # node leaders: auto, on or off (see _dispatch/leader.py)
    node_size: int | None = None  # ranks per pretend node (testing); None: by host
    flush_seconds: float = 30.0
    block_seconds: float = 0.1
    retries: int = 0
    max_failures: int | None = None
    task_timeout: float | None = None
    grace: float = 30.0
    deadline: float | None = None  # wall-clock time by which the run must have exited
    resume: bool = False
    slurm: dict = field(default_factory=dict)  # the Slurm job's facts, inside one
    out: str = ""
    attrs: dict = field(default_factory=dict)
    results: dict | None = None  # mpibatch.run(results=...): declared result types

    @property
    def id_range(self) -> range:
        return range(*self.ids)


def load(task, function: str):
    """(function, its module or None, what the file records about where it came from)."""
    if isinstance(task, (str, Path)):
        fn, module = load_task_file(task, function)
        source = {
            "task_file": str(Path(task).resolve()),
            "function": function,
            "task_file_sha256": file_hash(task),
        }
        return fn, module, source
    if not callable(task):
        raise UsageError(f"task: expected a function or a task file path, got {task!r}")
    wants_context(task)
    module = sys.modules.get(getattr(task, "__module__", ""), None)
    src = getattr(module, "__file__", None)
    source = {
        "task_file": str(Path(src).resolve()) if src else "",
        "function": f"{task.__module__}:{getattr(task, '__qualname__', task)}",
        "task_file_sha256": file_hash(src) if src and Path(src).is_file() else "",
    }
    return task, None, source


def resolve_grid(grid, module, reps, stored: str | None = None) -> Grid:
    """The run's grid: ``grid``, else the task file's ``grid()``, times ``reps``.

    ``stored``: the grid JSON of the file a ``--resume`` continues, whose axes and reps
    stand in for those the run does not give (see ``_resume.resumed_grid``).
    """
    if grid is None and module is not None and callable(getattr(module, "grid", None)):
        grid = module.grid()
    if reps is not None:
        _config.positive_int("reps", reps, "--reps")
    if stored is not None:
        from ._resume import resumed_grid

        return resumed_grid(Grid.from_json(stored), grid, reps)
    return Grid.coerce(grid, reps)


def _deadline(time_limit: str | float | None, now: float, job: dict | None) -> float | None:
    """When the run must have exited: the time limit, or the Slurm job's end if sooner."""
    assert not isinstance(time_limit, str)  # resolved options hold seconds
    deadline = now + time_limit if time_limit else None
    if job and job.get("end_time") and (deadline is None or job["end_time"] < deadline):
        deadline = job["end_time"]  # inside a Slurm job: stop in time for its end
    return deadline


def _slurm_job() -> dict | None:
    """This Slurm job's facts (None outside Slurm), read once on rank 0."""
    import os

    if "SLURM_JOB_ID" not in os.environ:
        return None
    from .slurm import job_info

    return job_info()


def _task_ids(tasks: str | None, n_tasks: int) -> range:
    if tasks == "array":  # this Slurm job-array element's share of the tasks
        from .slurm import array_slice

        return array_slice(n_tasks)
    return schedule.parse_task_slice(tasks, n_tasks)


def _check_out(options: RunOptions) -> None:
    if options.dry_run:
        return
    if options.out is None:
        raise UsageError("out: expected an output file path, got None; pass out='results.h5'")
    if not options.resume:
        from .store import check_output  # rank 0 only: the others never import h5py

        check_output(options.out, options.overwrite)


def _kept_reason(requested: str, stored: dict) -> str:
    """A resumed auto run keeps the file's schedule: say so, and why it was chosen."""
    if schedule.resumed_schedule(requested, stored) == requested:
        return ""
    return f"auto, kept from the file ({stored.get('schedule_reason', '')})"


def make(grid: Grid, options: RunOptions, size: int, stored: dict | None = None) -> Plan:
    """The plan for this run from resolved ``options``; ``stored``: the resumed file's attrs.

    Resolved options hold every setting (never None where it has a default).
    """
    stored = stored or {}
    seed = stored.get("seed") if options.seed is None else options.seed
    seed = streams.fresh_seed() if seed is None else streams.check_seed(seed)
    ids = _task_ids(options.tasks, grid.n_tasks)
    _check_out(options)
    if options.results is not None:  # a bad declaration stops the run before it starts
        parse_declarations(options.results, "mpibatch.run(results=...)")
    now, job = time.time(), _slurm_job()
    flush = float(options.flush_seconds or 0)
    return Plan(
        grid_json=grid.to_json(),
        seed=seed,
        streams=streams.check_streams(
            options.streams or stored.get("streams") or _config.DEFAULT_STREAMS
        ),
        schedule=schedule.resumed_schedule(str(options.schedule), stored),  # auto's, kept
        schedule_reason=_kept_reason(str(options.schedule), stored),
        ids=(ids.start, ids.stop),
        threads=int(options.threads_per_rank or 1),
        gather_bytes=int(options.gather_mb or 0) << 20,
        quiet=bool(options.quiet),
        t0=float(stored.get("t0", now)),
        session_t0=now,
        block_size=options.block_size,
        dedicated_root=bool(options.dedicated_root),
        root_tasks=str(options.root_tasks),
        isolation=str(options.isolation),
        task_memory=options.task_memory,  # type: ignore[arg-type]  # resolved: bytes
        leaders=str(options.leaders),
        node_size=options.node_size,
        flush_seconds=flush,
        block_seconds=schedule.block_seconds(size, flush),
        retries=int(options.retries or 0),
        max_failures=options.max_failures,
        task_timeout=options.task_timeout,
        grace=float(options.grace or 0),
        deadline=_deadline(options.time_limit, now, job),
        resume=options.resume,
        out=str(options.out or ""),
        slurm=job or {},
        results=dict(options.results) if options.results is not None else None,
    )


def attrs(plan: Plan, source: dict, size: int, argv) -> dict:
    """Root attributes: what reproduces the run, and the versions it ran with."""
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
        "command": command(plan, source, size),
        "start_time": iso(plan.t0),
        "t0": plan.t0,
        "mpibatch_version": __version__,
        "python_version": sys.version.split()[0],
        "numpy_version": numpy.__version__,
        "mpi4py_version": mpi4py.__version__,
        "h5py_version": h5py.__version__,
        "hdf5_version": h5py.version.hdf5_version,
        "mpi_library": _comm.library_version(),
        "slurm": json.dumps(plan.slurm),
    }


def command(plan: Plan, source: dict, size: int) -> str:
    """A shell command line that reproduces the run (the grid spelled out as --grid flags).

    Every word is shell-quoted. A grid that --grid flags cannot spell (a string holding
    both kinds of quote) is left out, and a trailing comment points to the file's JSON.
    """
    grid = Grid.from_json(plan.grid_json)
    fn = source["function"].split(":")[-1]
    parts = ["mpiexec", "-n", str(size), "mpibatch", "run"]
    if "command_template" in source:  # a command run: its template and flags
        parts += ["--command", source["command_template"]]
        flags = json.loads(source["command_options"])
        parts += [f"--{k.replace('_', '-')}" for k, on in flags.items() if on]
    else:
        parts.append(source["task_file"] or "TASK_FILE")
    if fn not in ("task", "command"):
        parts += ["--function", fn]
    try:
        parts += [f"--grid={spec}" for spec in grid.to_specs()]
        note = ""
    except GridError as exc:
        note = f"  # {exc}"
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
    ids = plan.id_range
    if (ids.start, ids.stop) != (0, grid.n_tasks):
        parts += ["--tasks", f"{ids.start}:{ids.stop}"]
    return shlex.join(parts + ["--out", plan.out]) + note


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
