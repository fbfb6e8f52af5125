"""What rank 0 decides before the first task: the plan, checked, and what the file records."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, _comm, _config, schedule, streams
from .errors import UsageError
from .grid import Grid
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


def resolve_grid(grid, module, reps) -> Grid:
    if grid is None and module is not None and callable(getattr(module, "grid", None)):
        grid = module.grid()
    if reps is not None:
        _config.positive_int("reps", reps, "--reps")
    return Grid.coerce(grid, reps)


def _number(name: str, value, flag: str, minimum: float = 0.0) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > minimum:
        raise UsageError(f"{name}: expected a number > {minimum:g}, got {value!r}; e.g. {flag}")
    return float(value)


def _limits(opts: dict, size: int, now: float, job: dict | None) -> dict:
    if opts["dedicated_root"] and size < 2:
        raise UsageError(
            f"--dedicated-root: expected at least 2 ranks, got {size}; launch with "
            "mpiexec -n 2 or more, or drop --dedicated-root"
        )
    root_tasks = _config.resolve("root_tasks", opts["root_tasks"])
    if root_tasks not in ("thread", "main"):
        raise UsageError(
            f"root_tasks: expected thread or main, got {root_tasks!r}; "
            "use --root-tasks thread (default) or --root-tasks main"
        )
    for key, flag in (("block_size", "--block-size"), ("max_failures", "--max-failures")):
        if opts[key] is not None:
            _config.positive_int(key, opts[key], flag)
    if opts["retries"] is not None and (
        not isinstance(opts["retries"], int) or opts["retries"] < 0
    ):
        raise UsageError(
            f"retries: expected an integer >= 0, got {opts['retries']!r}; e.g. --retries 2"
        )
    flush = _number(
        "flush_seconds",
        _config.resolve("flush_seconds", opts["flush_seconds"]),
        "--flush-seconds 30",
    )
    limit = opts["time_limit"]
    limit = _config.parse_duration(limit) if isinstance(limit, str) else limit
    deadline = now + _number("time_limit", limit, "--time-limit 01:00:00") if limit else None
    if job and job.get("end_time") and (deadline is None or job["end_time"] < deadline):
        deadline = job["end_time"]  # inside a Slurm job: stop in time for its end
    return {
        "block_size": opts["block_size"],
        "dedicated_root": bool(opts["dedicated_root"]),
        "root_tasks": root_tasks,
        "flush_seconds": flush,
        "block_seconds": schedule.block_seconds(size, flush),
        "retries": opts["retries"] or 0,
        "max_failures": opts["max_failures"],
        "task_timeout": _number("task_timeout", opts["task_timeout"], "--task-timeout 600"),
        "grace": _number("grace", _config.resolve("grace", opts["grace"]), "--grace 30", -1e-9),
        "deadline": deadline,
    }


def _slurm_job() -> dict | None:
    """This Slurm job's facts (None outside Slurm), read once on rank 0."""
    import os

    if "SLURM_JOB_ID" not in os.environ:
        return None
    from .slurm import job_info

    return job_info()


def make(grid: Grid, opts: dict, size: int, stored: dict | None = None) -> Plan:
    """The plan for this run; ``stored`` are the attributes of the file being resumed."""
    stored = stored or {}
    seed = _config.resolve("seed", opts["seed"])
    seed = stored.get("seed") if seed is None else seed
    seed = streams.fresh_seed() if seed is None else streams.check_seed(seed)
    threads = _config.positive_int(
        "threads_per_rank",
        _config.resolve("threads_per_rank", opts["threads_per_rank"]),
        "--threads-per-rank",
    )
    gather_mb = _config.positive_int("MPIBATCH_GATHER_MB", _config.resolve("gather_mb"), "")
    if opts["tasks"] == "array":  # this Slurm job-array element's share of the tasks
        from .slurm import array_slice

        ids = array_slice(grid.n_tasks)
    else:
        ids = schedule.parse_task_slice(opts["tasks"], grid.n_tasks)
    out = opts["out"]
    if not opts["dry_run"]:
        if out is None:
            raise UsageError("out: expected an output file path, got None; pass out='results.h5'")
        if not opts["resume"]:
            from .store import check_output  # rank 0 only: the others never import h5py

            check_output(out, opts["overwrite"])
    now = time.time()
    job = _slurm_job()
    return Plan(
        grid_json=grid.to_json(),
        seed=seed,
        streams=streams.check_streams(
            _config.resolve("streams", opts["streams"] or stored.get("streams"))
        ),
        schedule=schedule.check_schedule(_config.resolve("schedule", opts["schedule"])),
        ids=(ids.start, ids.stop),
        threads=threads,
        gather_bytes=gather_mb << 20,
        quiet=bool(_config.resolve("quiet", opts["quiet"])),
        t0=float(stored.get("t0", now)),
        session_t0=now,
        resume=bool(opts["resume"]),
        out=str(out or ""),
        slurm=job or {},
        **_limits(opts, size, now, job),
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
    """A command line that reproduces the run (the grid spelled out as --grid flags)."""
    grid = Grid.from_json(plan.grid_json)
    fn = source["function"].split(":")[-1]
    parts = ["mpiexec", "-n", str(size), "mpibatch", "run", source["task_file"] or "TASK_FILE"]
    if fn != "task":
        parts += ["--function", fn]
    parts += [f"--grid={spec}" for spec in grid.to_specs()]
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
    return " ".join(parts + ["--out", plan.out])


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")
