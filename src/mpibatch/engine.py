"""Orchestration only: the run path, top to bottom (:func:`_run` numbers its steps).

``run`` (or the CLI) builds :class:`RunOptions` -> every rank resolves its settings ->
binds its GPU -> loads the task -> rank 0 plans and opens the file -> the plan is shared
-> ranks run blocks while rank 0 serves them and writes -> rank 0 closes the file.

Every rank calls :func:`run` (SPMD). Errors found before the tasks start are agreed:
raised on every rank; anything unexpected aborts the whole job instead of hanging it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from . import (
    _comm,
    _command,
    _dispatch,
    _inputs,
    _launch,
    _plan,
    _prepare,
    _say,
    _shared,
    devices,
    schedule,
    streams,
)
from ._plan import Plan
from ._records import Buffers
from ._say import plural
from ._stop import Stopper
from ._taskproc import TaskProcess
from .errors import MpibatchError, no_space
from .grid import Grid
from .options import RunOptions
from .runner import Runner, RunsBlocks, blas_info, blas_limits, cores

if TYPE_CHECKING:  # only rank 0 writes the file: the other ranks never import h5py
    from .store import Store


@dataclass(kw_only=True)
class Summary:
    """What :func:`run` returns on rank 0: the state of the file after this run (keywords only)."""

    path: str
    n_tasks: int
    done: int
    failed: int
    n_ranks: int
    wall_seconds: float
    task_seconds: float
    ran: int = 0  # tasks run by this session
    stopped: str | None = None  # why the run stopped early, if it did
    resume_command: str = ""

    @property
    def pending(self) -> int:
        return self.n_tasks - self.done - self.failed

    @property
    def efficiency(self) -> float:
        return self.task_seconds / max(1e-12, self.n_ranks * self.wall_seconds)

    def __str__(self) -> str:
        return (
            f"{plural(self.n_tasks, 'task')}: {self.done} done, {self.failed} failed, "
            f"{self.pending} pending on {plural(self.n_ranks, 'rank')} "
            f"in {self.wall_seconds:.2f} s "
            f"(parallel efficiency {self.efficiency:.0%}) -> {self.path}"
        )


def run(
    task: Callable | str | None = None,
    grid: Grid | dict | None = None,
    *,
    command: str | None = None,
    shell: bool = False,
    task_dir: bool = False,
    keep_output: bool = False,
    reps: int | None = None,
    seed: int | None = None,
    out: str | None = None,
    streams: str | None = None,
    schedule: str | None = None,
    block_size: int | None = None,
    dedicated_root: bool | None = None,
    root_tasks: str | None = None,
    isolation: str | None = None,
    task_memory: str | int | None = None,
    leaders: str | None = None,
    flush_seconds: float | None = None,
    threads_per_rank: int | None = None,
    tasks: str | None = None,
    retries: int | None = None,
    max_failures: int | None = None,
    task_timeout: float | None = None,
    grace: float | None = None,
    time_limit: str | float | None = None,
    gpus: str | int | None = None,
    ranks_per_gpu: int | None = None,
    resume: bool = False,
    force: bool = False,
    overwrite: bool = False,
    quiet: bool | None = None,
    function: str = "task",
    dry_run: bool = False,
    comm=None,
    argv: list[str] | None = None,
    results: dict | None = None,
    shared=None,
) -> Summary | Plan | None:
    """Run ``task(params, rng[, ctx])`` over every task of ``grid`` x ``reps`` on all ranks.

    Call it on every rank. ``task`` is a function or the path of a task file defining
    ``function``; or leave it out and give ``command``, a command line to run per task
    (``"./prog --lr {lr} --seed {seed}"``; README "Commands as tasks"; ``shell``,
    ``task_dir`` and ``keep_output`` are its ``--shell``, ``--task-dir``,
    ``--keep-output``). Returns a :class:`Summary` on rank 0 and None elsewhere; with
    ``dry_run=True``, the :class:`~mpibatch.Plan` on rank 0 (None elsewhere), and nothing is
    run or written. The keywords are the ``mpibatch run`` flags (``mpibatch run --help``);
    a setting left None comes from ``MPIBATCH_<NAME>``, else its default. ``time_limit``
    is a Slurm time when a string (``"30"`` = 30 minutes) and seconds when a number.
    ``results`` declares the results' types like a task file's ``results = {...}``
    (``{"rewards": "ragged float64", "model": "str"}``) and wins over it.
    ``shared`` (rank 0's; None elsewhere): ``{name: array}`` or a callable returning it,
    read by tasks as ``ctx.shared[name]`` (one read-only copy per node; as a task file's
    ``load()``).
    """
    options = RunOptions(
        task=task,
        grid=grid,
        function=function,
        reps=reps,
        tasks=tasks,
        out=out,
        resume=resume,
        force=force,
        overwrite=overwrite,
        dry_run=dry_run,
        argv=tuple(argv) if argv is not None else None,
        results=results,
        shared=shared,
        command=command,
        shell=shell,
        task_dir=task_dir,
        keep_output=keep_output,
        seed=seed,
        streams=streams,
        schedule=schedule,
        block_size=block_size,
        dedicated_root=dedicated_root,
        root_tasks=root_tasks,
        isolation=isolation,
        task_memory=task_memory,
        leaders=leaders,
        threads_per_rank=threads_per_rank,
        gpus=gpus,
        ranks_per_gpu=ranks_per_gpu,
        flush_seconds=flush_seconds,
        retries=retries,
        max_failures=max_failures,
        task_timeout=task_timeout,
        grace=grace,
        time_limit=time_limit,
        quiet=quiet,
    )
    return start(options, comm)


def start(options: RunOptions, comm=None) -> Summary | Plan | None:
    """Run ``options`` on every rank of ``comm`` (default: the world); what :func:`run` does."""
    comm = _comm.world(comm)
    try:
        return _run(comm, options)
    except MpibatchError:
        raise  # agreed: raised on every rank
    except BaseException as exc:  # a bug, or Ctrl-C / SystemExit on one rank before the run
        from .errors import ExitCode

        # more than one rank: end them all with the exit code the CLI gives one process,
        # 70 for a bug, never 1 (some tasks failed); one process: raised as is
        interrupted = isinstance(exc, KeyboardInterrupt)
        _comm.abort(comm, ExitCode.INTERRUPTED if interrupted else ExitCode.BUG)
        raise


def _run(comm, requested: RunOptions) -> Summary | Plan | None:
    """The run, top to bottom, on every rank; errors before step 6 are agreed on every rank."""
    rank, size = comm.Get_rank(), comm.Get_size()
    # 0. mpi4py's MPI is the launcher's (else N single-rank copies race for one file)
    _comm.agreed(comm, lambda: _launch.check(_comm.world_size(), _comm.library_version()))
    # 1. settings: keyword -> MPIBATCH_<NAME> -> default, each checked
    options = _comm.agreed(comm, lambda: requested.resolved(size))
    if rank == 0 and options.isolation == "on" and _asked_root_tasks(requested):
        _say.say(_ROOT_TASKS_IGNORED, sys.stderr)
    # 2. this rank's GPU (or None), bound before the task file is imported
    local, n_local = _comm.local_rank(comm)
    device = _comm.agreed(comm, lambda: _choose_device(options, local, n_local))
    with devices.bound(device):
        # 3. every rank loads the task; 4. rank 0 plans and creates (or reopens) the file
        fn, module, source, plan, store = _comm.agreed(
            comm, lambda: _prepare.load_and_plan(options, rank, size)
        )
        try:
            # 5. rank 0 shares the plan; a rank running other code than rank 0 fails the launch
            plan = cast(Plan, _comm.share(comm, plan))
            _comm.agree(comm, None if rank == 0 else _prepare.launch_check(plan, source))
            if options.dry_run:
                return plan if rank == 0 else None
            # 6. shared inputs: load() once, one copy per node; setup(ctx) on every rank
            with _shared.session(comm, options, module, plan, store, device, local) as inputs:
                # 7. run the tasks; rank 0 also hands out blocks and writes the file
                return _execute(comm, fn, plan, store, device, local, inputs)
        finally:
            if store is not None and store.lock is not None:
                store.lock.release()  # done already when the store closed; not on errors


_GLOBAL_RANDOM = (
    "mpibatch: warning: tasks drew from numpy's or Python's global random state "
    "(np.random.*, random.*) on {ranks}: their results depend on -np and the schedule, "
    "and a rerun differs; draw from the task's rng instead\n"
)
_ROOT_TASKS_IGNORED = (
    "mpibatch: warning: --root-tasks is ignored: rank 0 runs its tasks in its task process "
    "and serves the other ranks meanwhile (it applies with --isolation off)"
)


def _asked_root_tasks(requested: RunOptions) -> bool:
    return requested.root_tasks is not None or bool(os.environ.get("MPIBATCH_ROOT_TASKS"))


def _choose_device(options: RunOptions, local: int, n_local: int) -> devices.Device | None:
    """This rank's GPU (or None): local rank k gets visible GPU k mod G (see devices.py)."""
    request = options.gpus
    assert request is not None, "RunOptions.resolved() sets every setting"
    if request == "none":
        return None
    gpus = devices.visible_gpus()
    return devices.choose(local, n_local, gpus, request, options.ranks_per_gpu, host=_comm.host())


def _execute(comm, fn, plan: Plan, store: Store | None, device, local: int, inputs=None):
    transport = _comm.Transport(comm)
    rank, size = transport.rank, transport.size
    info = {"rank": rank, "size": size, "host": _comm.host(), "local_rank": local, "device": device}
    stopper = Stopper(plan.grace, plan.task_timeout, f"rank {rank} on {info['host']}")
    summary, fatal = None, None
    guarded = _comm.guard_world(stopper.where, lambda: stopper.task_id)
    with blas_limits(plan.threads), stopper.installed(), guarded:
        gpu = device.as_dict() if device is not None else None
        infos = transport.gather_small(
            {**info, "device": gpu, "blas": blas_info(), "cores": cores()}
        )
        info["comm"] = _comm.task_comm()  # ctx.comm (after the gather: it does not pickle)
        info.update(inputs.for_tasks() if inputs else {})  # ctx.shared, ctx.state
        offset = time.time() - time.perf_counter() - plan.t0
        stream = streams.make_streams(plan.streams, plan.seed, rank)
        grid = Grid.from_json(plan.grid_json)
        _command.bind(fn, grid)  # a command task: the grid's spellings and size
        buffers = Buffers(plan.gather_bytes)  # rank 0's in-flight budget; others use less
        runner = Runner(fn, grid, stream, info, offset, stopper, plan.retries, buffers)
        if plan.results is not None:
            runner.declare(plan.results)  # run(results=...) wins over the task file's
        tasks = _tasks(plan, runner, inputs.teardown if inputs else None)
        tiers, why, up, down = _leaders(comm, plan)
        if rank == 0:
            assert store is not None and infos is not None  # rank 0 made the file
            if runner.packer is not None and store.schema is None:
                store.add_results(runner.packer.schema)  # declared: complete before any task
            store.write_ranks(infos)
            summary, fatal = _serve(up or transport, plan, store, tasks, tiers, why, transport)
        elif tiers is not None and tiers.role == "leader":
            _dispatch.Leader(up, down, tiers.origins, stopper, buffers).run()
            transport.gather_int(_inputs.peak_rss())  # rank 0 records it in /ranks
            transport.gather_int(0)
            transport.gather_int(0)
        else:
            _dispatch.work(down or up or transport, tasks, plan.ids[0])
            transport.gather_int(_inputs.peak_rss())  # rank 0 records it in /ranks
            transport.gather_int(getattr(tasks, "starts", 0))
            transport.gather_int(int(getattr(tasks, "global_random", False)))
        torn = tasks.close()  # teardown(state) runs in the task process, if there was one
        if inputs is not None:
            inputs.torn = torn
    _dispatch.finish(transport, fatal)
    for link in (up, down):
        _comm.free(link.comm if link is not None else None)
    return summary


def _tasks(plan: Plan, runner: Runner, teardown=None) -> RunsBlocks:
    """What runs this rank's blocks: its task process (``--isolation on``) or the rank."""
    if plan.isolation == "off":
        return runner
    arena = max(4 * plan.gather_bytes, 64 << 20)
    return TaskProcess(runner, arena, _comm.in_task_process, plan.task_memory, teardown)


def _leaders(comm, plan: Plan):
    """Collective: (tiers or None, why, transport toward rank 0, transport in the node).

    With leaders off the run is flat: both transports are None (the world's is used).
    """
    node = _dispatch.node_index(_comm.hosts(comm), plan.node_size)
    on, why = _dispatch.decide(plan.leaders, node)
    if not on:
        return None, why, None, None
    tiers = _dispatch.Tiers.make(node, comm.Get_rank(), plan.dedicated_root)
    top, group = _comm.split(comm, tiers.top_color), _comm.split(comm, tiers.group_color)
    up = _comm.Transport(top) if top is not None else None
    return tiers, why, up, _comm.Transport(group) if group is not None else None


def _serve(
    transport,
    plan: Plan,
    store: Store,
    runner: RunsBlocks,
    tiers=None,
    why: str = "",
    world=None,
) -> tuple[Summary | None, str | BaseException | None]:
    """Rank 0: run the loop, close the file with the run's accounting, summarise (or the
    error that kept the file from being written, raised on every rank)."""
    from .progress import Progress

    size = tiers.n_ranks if tiers is not None else transport.size
    todo = store.pending()
    slots = size - 1 if plan.dedicated_root else size
    if tiers is not None:
        slots = tiers.n_slots  # one per rank that runs tasks (leaders run none)
    queue = schedule.make_queue(plan.schedule, todo, slots, plan.block_size)
    progress = Progress(sum(b - a for a, b in todo), quiet=plan.quiet)
    progress.start(_headline(plan, store, sum(b - a for a, b in todo), size))
    thread = _root_thread(plan, size)
    root = _dispatch.Root(transport, plan, store, runner, queue, progress, thread, tiers)
    try:
        root.run()
    finally:
        progress.close()
    now = time.time()
    done, failed = store.counts()
    store.peaks = (world or transport).gather_int(_inputs.peak_rss())  # each rank's VmHWM
    starts = (world or transport).gather_int(getattr(runner, "starts", 0))
    randoms = (world or transport).gather_int(int(getattr(runner, "global_random", False)))
    leaders: dict = {"leaders": "on" if tiers is not None else "off", "leaders_reason": why}
    leaders["isolation"] = plan.isolation  # and how often a task process (and setup) started:
    leaders["task_processes_started"] = int(starts.sum()) if starts is not None else 0
    leaders["global_random_ranks"] = n_random = int(randoms.sum()) if randoms is not None else 0
    if n_random:
        sys.stderr.write(_GLOBAL_RANDOM.format(ranks=plural(n_random, "rank")))
    if root.error is None:
        try:
            attrs = {**plan.attrs, **_session_attrs(plan, store, root, queue, size, now)}
            store.close({**attrs, **leaders})
        except MpibatchError as exc:  # the file could not be closed: every rank raises it
            root.error = exc
        except OSError as exc:
            root.error = no_space(exc, plan.out)
            if root.error is None:
                raise
    if root.error is not None:
        return None, root.error
    ledger = root.ledger
    resume = plan.attrs["command"] + " --resume" if done + failed < store.n else ""
    summary = Summary(
        path=plan.out,
        n_tasks=store.n,
        done=done,
        failed=failed,
        n_ranks=size,
        wall_seconds=now - plan.session_t0,
        task_seconds=ledger.busy,
        ran=ledger.seen,
        stopped=root.stopped,
        resume_command=resume,
    )
    return summary, root.fatal


def _headline(plan: Plan, store: Store, n_todo: int, size: int) -> str:
    """What started, said at once: tasks, ranks, schedule, seed, output file."""
    todo = f"{store.n:,} tasks" if n_todo == store.n else f"{n_todo:,} of {store.n:,} tasks"
    ranks = f"{size} rank{'s' * (size != 1)}"
    return f"running {todo} on {ranks} (schedule {plan.schedule}, seed {plan.seed}) -> {plan.out}"


def _root_thread(plan: Plan, size: int) -> bool:
    """Run rank 0's own tasks on a helper thread, so its main thread can serve meanwhile?

    Not with one rank (nobody to serve), a dedicated root (no own tasks), a task time-out
    (its interrupt is a signal, which only reaches the main thread) or an MPI that
    allows no threads; and not when asked with --root-tasks main.
    """
    return (
        size > 1
        and plan.root_tasks == "thread"
        and not plan.dedicated_root
        and plan.task_timeout is None
        and _comm.helper_threads_ok()
    )


def _root_tasks(own) -> str:
    """Where rank 0 ran its own tasks: its task process, a helper thread, its main thread."""
    return "process" if own.process is not None else "thread" if own.thread else "main"


def _session_attrs(plan: Plan, store: Store, root, queue, size: int, now: float) -> dict:
    reason = queue.reason or plan.schedule_reason or f"requested with --schedule {plan.schedule}"
    wall, ledger = now - plan.session_t0, root.ledger
    sessions = json.loads(store.f.attrs.get("sessions", "[]")) + [
        {
            "start": _plan.iso(plan.session_t0),
            "end": _plan.iso(now),
            "n_ranks": size,
            "wall_seconds": round(wall, 3),
            "tasks_run": ledger.seen,
            "stopped": root.stopped or root.fatal or "",
        }
    ]
    return {
        "end_time": _plan.iso(now),
        "wall_seconds": now - plan.t0,
        "rank_seconds": sum(s["n_ranks"] * s["wall_seconds"] for s in sessions),
        "sessions": json.dumps(sessions),
        "schedule_used": queue.name,
        "schedule_reason": reason,
        "dispatch_seconds": ledger.dispatch_seconds,
        "n_blocks": ledger.n_blocks,
        "dedicated_root": plan.dedicated_root,
        "root_tasks": _root_tasks(root.own),
        "stopped": root.stopped or "",
    }
