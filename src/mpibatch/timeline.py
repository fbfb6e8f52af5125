"""Where the time of a run went: per-rank busy time, load imbalance, idle time, and a plot.

``stats`` and ``format_stats`` need only numpy; ``plot`` needs matplotlib (``mpibatch[plot]``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from ._say import plural
from .layout import STATUS_NAMES, Status

_COLORS = {
    s: (STATUS_NAMES[s], color)
    for s, color in ((Status.DONE, "#3a9a5b"), (Status.FAILED, "#d62728"))
}
_PLOT_HINT = "mpibatch plot needs matplotlib: pip install 'mpibatch[plot]'"


def _n_ranks(res, ran: np.ndarray) -> int:
    n = res.attrs.get("n_ranks")
    if n is None:
        hosts = res.ranks.get("host")
        n = len(hosts) if hosts is not None else 1
    top = int(res.rank[ran].max()) + 1 if ran.any() else 0
    return max(1, int(n), top)


def _wall(res, ran: np.ndarray) -> float | None:
    wall = res.attrs.get("wall_seconds")
    if wall is not None:
        return float(wall)
    if not ran.any():
        return None
    return float(np.nanmax(res.start[ran] + res.elapsed[ran]))


def _rank_seconds(res, n_ranks: int, wall: float) -> float:
    """Rank time the run had: summed over its sessions when it was resumed."""
    sessions = res.attrs.get("sessions")
    if sessions and len(json.loads(sessions)) > 1 and res.attrs.get("rank_seconds"):
        return float(res.attrs["rank_seconds"])
    return n_ranks * wall


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def stats(res) -> dict[str, Any]:
    """Per-rank busy seconds, load imbalance, idle and dispatch fractions of a run."""
    ran = res.status != Status.PENDING
    n_ranks = _n_ranks(res, ran)
    elapsed = np.nan_to_num(res.elapsed[ran].astype(np.float64))
    ranks = res.rank[ran].astype(np.int64)
    busy = np.bincount(ranks, weights=elapsed, minlength=n_ranks)
    tasks = np.bincount(ranks, minlength=n_ranks)
    wall = _wall(res, ran)
    total = float(busy.sum())
    workers = busy[1:] if res.attrs.get("dedicated_root") and n_ranks > 1 else busy
    dispatch = res.attrs.get("dispatch_seconds")
    dispatch = None if dispatch is None else float(dispatch)
    return {
        "n_ranks": n_ranks,
        "n_ran": int(ran.sum()),
        "wall": wall,
        "busy": busy.tolist(),
        "tasks": tasks.tolist(),
        # a dedicated root runs no tasks by design: balance and idleness are the workers'
        "load_imbalance": _ratio(float(workers.max()), total / len(workers)),
        "idle_fraction": 1.0 - total / _rank_seconds(res, len(workers), wall) if wall else None,
        "dispatch_seconds": dispatch,
        "dispatch_fraction": _ratio(dispatch, wall),
    }


def format_stats(st: dict[str, Any]) -> list[str]:
    """Lines for ``mpibatch info``: load imbalance, idle time, rank 0's dispatch time."""
    imb = st["load_imbalance"]
    if imb is None:
        return ["load imbalance: unknown (no task ran)"]
    busiest = int(np.argmax(st["busy"]))
    lines = [
        f"load imbalance: {imb:.2f} (max rank busy / mean; busiest rank {busiest}: "
        f"{st['busy'][busiest]:.3f} s, {plural(int(st['tasks'][busiest]), 'task')})"
    ]
    if st["idle_fraction"] is not None:
        lines.append(f"idle: {st['idle_fraction']:.1%} of rank time")
    if st["dispatch_seconds"] is not None:
        frac = st["dispatch_fraction"]
        share = f" ({frac:.1%} of wall)" if frac is not None else ""
        lines.append(f"dispatch: {st['dispatch_seconds']:.3g} s on rank 0{share}")
    return lines


def _import_figure():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError(_PLOT_HINT) from None
    return Figure


def plot(res, path: str | os.PathLike) -> None:
    """Write a PNG: a per-rank Gantt chart of the tasks over a histogram of task times."""
    Figure = _import_figure()  # a bare Figure renders with Agg and leaves pyplot alone
    st = stats(res)
    n_ranks = st["n_ranks"]
    height = 3.0 + min(6.0, 0.25 * n_ranks)
    fig = Figure(figsize=(11, height + 2.5), layout="constrained")
    gantt, hist = fig.subplots(2, 1, height_ratios=[height, 2.5])
    _gantt(gantt, res, st)
    _histogram(hist, res)
    fig.suptitle(_title(res, st), fontsize=11)
    fig.savefig(path, dpi=110)


def _title(res, st: dict[str, Any]) -> str:
    wall = f"{st['wall']:.3g} s" if st["wall"] is not None else "unknown"
    imb = st["load_imbalance"]
    imb_text = f"{imb:.2f}" if imb is not None else "n/a"
    return (
        f"{os.path.basename(res.path)}: {st['n_ran']:,} of "
        f"{plural(res.n_tasks, 'task', spec=',')} ran on {plural(st['n_ranks'], 'rank')}, "
        f"wall {wall}, load imbalance {imb_text}"
    )


def _bars(res, status: Status) -> np.ndarray:
    """Rectangles (k, 4, 2) for the tasks with ``status``, one row per rank."""
    sel = res.status == status
    x0 = res.start[sel]
    x1 = x0 + res.elapsed[sel]
    y = res.rank[sel].astype(np.float64)
    lo, hi = y - 0.4, y + 0.4
    return np.stack(
        [
            np.stack([x0, lo], 1),
            np.stack([x0, hi], 1),
            np.stack([x1, hi], 1),
            np.stack([x1, lo], 1),
        ],
        axis=1,
    )


def _gantt(ax, res, st: dict[str, Any]) -> None:
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch
    from matplotlib.ticker import MaxNLocator

    handles = []
    for status, (label, color) in _COLORS.items():
        verts = _bars(res, status)
        if len(verts):  # failed on top, with an edge: even a sub-pixel failure shows
            edge = 0.8 if status == Status.FAILED else 0.0
            ax.add_collection(
                PolyCollection(list(verts), color=color, linewidths=edge, zorder=int(status))
            )
        handles.append(Patch(color=color, label=f"{label} ({len(verts):,})"))
    n_ranks = st["n_ranks"]
    ax.set_ylim(n_ranks - 0.5, -0.5)  # rank 0 at the top
    ax.yaxis.set_major_locator(MaxNLocator(nbins=min(n_ranks, 16), integer=True))
    ax.set_xlim(0, st["wall"] or 1.0)
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("rank")
    ax.set_title("tasks per rank over time", fontsize=10, loc="left")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(handles=handles, loc="upper right", fontsize=9, framealpha=0.9)


def _histogram(ax, res) -> None:
    ran = (res.status != Status.PENDING) & np.isfinite(res.elapsed)
    ax.set_xlabel("task time (s)")
    ax.set_ylabel("tasks")
    ax.set_title("task times", fontsize=10, loc="left")
    if not ran.any():
        ax.text(0.5, 0.5, "no task ran", ha="center", va="center", transform=ax.transAxes)
        return
    times = res.elapsed[ran]
    positive = times[times > 0]
    lo = float(positive.min()) if positive.size else 0.0
    hi = float(times.max())
    if lo > 0 and hi / lo > 100:  # more than two decades: log-x
        bins = np.geomspace(lo, hi, 50)
        ax.set_xscale("log")
        times = np.maximum(times, lo)
    else:
        lo = float(times.min())
        pad = 0.5 * (hi or 1.0) if hi == lo else 0.0
        bins = np.linspace(lo - pad, hi + pad, 50)
    groups = [(times[res.status[ran] == s], *_COLORS[s]) for s in _COLORS]
    groups = [g for g in groups if g[0].size]
    ax.hist(
        [g[0] for g in groups],
        bins=bins,
        stacked=True,
        color=[g[2] for g in groups],
        label=[g[1] for g in groups],
    )
    ax.grid(axis="y", alpha=0.3)
