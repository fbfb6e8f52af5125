"""Human-readable text about a plan or a results file (``--dry-run``, ``info``, ``errors``)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from . import timeline
from ._say import plural
from .grid import Grid
from .layout import Status
from .results import Results

if TYPE_CHECKING:
    from ._plan import Plan

_SHOW = 5


ROOT_TASKS = {
    "thread": "task thread (serving the others meanwhile)",
    "main": "main thread (serving the others between them)",
}


def _params_text(params: dict) -> str:
    return " ".join(f"{k}={v!r}" for k, v in params.items())


def format_plan(plan: Plan, task_file: str, function: str) -> str:
    """The --dry-run text: the task file, the grid, the task range and a few of its tasks."""
    grid = Grid.from_json(plan.grid_json)
    ids = plan.id_range
    head = f"task file: {task_file} (function {function})"
    if "command_template" in plan.attrs:  # a --command run
        head = f"command: {plan.attrs['command_template']}"
    lines = [
        head,
        f"grid: {grid.describe()}",
        f"running tasks {ids.start}:{ids.stop} ({plural(len(ids), 'task')}); seed {plan.seed}, "
        f"streams {plan.streams}, schedule {plan.schedule}, {plan.threads} thread(s) per rank",
    ]
    sizes = grid.axis_sizes()
    for name, values in grid.axis_values(first=8).items():
        lines.append(
            f"  axis {name}: {plural(sizes[name], 'value')} {values}"
            f"{' ...' if sizes[name] > 8 else ''}"
        )
    shown = list(ids[:_SHOW]) + ([None] if len(ids) > 2 * _SHOW else [])
    shown += [i for i in ids[-_SHOW:] if i not in ids[:_SHOW]]
    lines.append("tasks:")
    for i in shown:
        lines.append("  ..." if i is None else f"  {i:>8}  {_params_text(grid.params(i))}")
    return "\n".join(lines)


def _rank_lines(res: Results) -> list[str]:
    hosts = res.ranks.get("host")
    if hosts is None:
        return []
    per_host: dict[str, list[int]] = {}
    for r, h in enumerate(hosts):
        per_host.setdefault(h, []).append(r)
    out = [f"ranks: {len(hosts)} on {len(per_host)} host(s)"]
    cores = res.ranks.get("cores")
    for h, ranks in per_host.items():
        where = ""
        if cores is not None:
            sets = sorted({cores[r] for r in ranks})
            where = f" (cores {sets[0]} each)" if len(sets) == 1 else f" (cores {', '.join(sets)})"
        out.append(f"  {h}: ranks {_ranges(ranks)}{where}")
    if len(per_host) == 1 and len(hosts) > 1:
        out.append("  note: every rank is on one host")
    out += _gpu_lines(res, hosts)
    blas = res.ranks.get("blas")
    if blas is not None and len(blas):
        libs = json.loads(blas[0])
        desc = ", ".join(f"{d.get('internal_api')} {d.get('num_threads')} thread(s)" for d in libs)
        out.append(f"  BLAS on rank 0: {desc or 'none loaded'}")
    return out


def _gpu_lines(res: Results, hosts) -> list[str]:
    gpu = res.ranks.get("gpu_index")
    if gpu is None or not (gpu >= 0).any():
        return []
    uuids, names = res.ranks["gpu_uuid"], res.ranks["gpu_name"]
    bound = [r for r in range(len(hosts)) if gpu[r] >= 0]
    distinct = {(hosts[r], uuids[r] or gpu[r]) for r in bound}
    out = [f"  GPUs: {plural(len(bound), 'rank')} on {len(distinct)} distinct GPU(s)"]
    for r in bound:
        out.append(f"    rank {r} on {hosts[r]}: GPU {gpu[r]} {names[r]} {uuids[r]}".rstrip())
    return out


def _memory_lines(res: Results) -> list[str]:
    """The shared inputs (one copy per node) and each rank's peak RSS (VmHWM)."""
    out = []
    shared = getattr(res, "shared", None) or {}
    if shared.get("arrays"):
        arrays = ", ".join(f"{k} {a['dtype']}{a['shape']}" for k, a in shared["arrays"].items())
        out.append(
            f"shared inputs: {_bytes(shared['bytes_per_node'])} per node on "
            f"{shared['nodes']} node(s), one copy each: {arrays}"
        )
    peaks = res.ranks.get("peak_rss_bytes")
    if peaks is not None and len(peaks):
        each = ", ".join(f"{r}: {_bytes(p)}" for r, p in enumerate(peaks[:16]))
        more = f", ... (max {_bytes(max(peaks))})" if len(peaks) > 16 else ""
        out.append(f"peak RSS per rank (VmHWM; counts the shared pages a rank read): {each}{more}")
    return out


def _bytes(n) -> str:
    n = float(n)
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _ranges(xs: list[int]) -> str:
    return f"{xs[0]}-{xs[-1]}" if xs == list(range(xs[0], xs[-1] + 1)) and len(xs) > 1 else str(xs)


def _efficiency_lines(res: Results) -> list[str]:
    wall = res.attrs.get("wall_seconds")
    ran = res.status != Status.PENDING
    busy = float(np.nansum(res.elapsed[ran]))
    n_ranks = int(res.attrs.get("n_ranks", 1))
    out = [f"task time: {busy:.3f} s summed over tasks"]
    if wall:
        rank_seconds = res.attrs.get("rank_seconds") or n_ranks * wall  # summed over sessions
        eff = busy / max(1e-12, rank_seconds)
        sessions = len(json.loads(res.attrs.get("sessions", "[]")))
        note = (
            f" over {sessions} sessions (the last on {plural(n_ranks, 'rank')})"
            if sessions > 1
            else (f" on {plural(n_ranks, 'rank')}")
        )
        out.insert(0, f"wall time: {wall:.3f} s{note}")
        out.append(f"parallel efficiency: {eff:.1%} (task time / rank time)")
    else:
        out.insert(0, "wall time: unknown (the run did not finish)")
    return out


def _slowest_lines(res: Results) -> list[str]:
    ran = np.flatnonzero(res.status != Status.PENDING)
    if ran.size == 0:
        return []
    order = ran[np.argsort(res.elapsed[ran])[::-1][:_SHOW]]
    out = ["slowest tasks:"]
    for row in order:
        params = {k: v[row] for k, v in res.params.items()}
        out.append(
            f"  task {res.task_id[row]:>8}  {res.elapsed[row]:.4f} s  rank {res.rank[row]}"
            f"  {_params_text({k: _py(v) for k, v in params.items()})}"
        )
    return out


def _py(v):
    return v.item() if isinstance(v, np.generic) else v


def _spans(partial: str) -> str:
    return ", ".join(f"{a}:{b}" for a, b in json.loads(partial))


def format_info(res: Results) -> str:
    a = res.attrs
    done, failed, pending = res.count("done"), res.count("failed"), res.count("pending")
    types = res.types()
    lines = [
        f"file: {res.path}",
        f"tasks: {res.n_tasks} ({a.get('tasks', '')} of {a.get('function', '?')} in "
        f"{a.get('task_file', '?')})",
        f"  done {done}, failed {failed}, pending {pending}",
        f"results:{'' if types else ' none yet'}",
        *[f"  {k} {t}" for k, t in types.items()],
        f"seed {a.get('seed')}, streams {a.get('streams')}, schedule {a.get('schedule')}, "
        f"started {a.get('start_time')}, ended {a.get('end_time', 'not yet')}",
    ]
    if a.get("partial"):
        lines.append(f"partial: tasks {_spans(a['partial'])} are in no merged part (pending)")
    if a.get("schedule_used"):
        lines.append(f"schedule used: {a['schedule_used']} ({a.get('schedule_reason', '')})")
    if a.get("leaders"):
        lines.append(f"node leaders: {a['leaders']} ({a.get('leaders_reason', '')})")
    if a.get("isolation") == "on":
        started = int(a.get("task_processes_started", 0))
        lines.append(f"tasks: in task processes ({started} started)")
    if a.get("dedicated_root"):
        lines.append("rank 0: dedicated root (ran no tasks)")
    elif a.get("root_tasks") and a.get("isolation") != "on":
        lines.append(f"rank 0: ran its tasks on the {ROOT_TASKS[a['root_tasks']]}")
    lines += _rank_lines(res) + _memory_lines(res) + _efficiency_lines(res)
    lines += timeline.format_stats(timeline.stats(res)) + _slowest_lines(res)
    if failed:
        lines.append(f"failed tasks: mpibatch errors {res.path}")
    if a.get("global_random_ranks"):
        lines.append(
            f"warning: tasks drew from the global random state (np.random.*, random.*) on "
            f"{plural(int(a['global_random_ranks']), 'rank')}: results depend on -np and "
            "the schedule, so this command does not reproduce them exactly"
        )
        lines.append(f"command: {a.get('command', '?')}")
    else:
        lines.append(f"reproduce: {a.get('command', '?')}")
    if pending + failed:
        lines.append(f"{plural(pending + failed, 'task')} left (pending or failed); run them with:")
        lines.append(f"  {a.get('command', '?')} --resume")
    return "\n".join(lines)


def format_errors(res: Results, full: bool = False) -> str:
    errs = res.errors
    if not errs:
        return f"{res.path}: no failed tasks"
    row_of = {int(t): r for r, t in enumerate(res.task_id)}
    lines = [f"{len(errs['task'])} failed task(s) in {res.path}:"]
    for k, tid in enumerate(errs["task"]):
        row = row_of.get(int(tid))
        params = {n: _py(v[row]) for n, v in res.params.items()} if row is not None else {}
        lines.append(
            f"  task {tid} (rank {errs['rank'][k]} on {errs['host'][k]}) "
            f"{_params_text(params)}: {errs['type'][k]}: {errs['message'][k]}"
        )
        if full:
            lines.append("    " + errs["traceback"][k].rstrip().replace("\n", "\n    "))
    return "\n".join(lines)
