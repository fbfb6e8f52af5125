"""Which rank runs which tasks, and in what rounds results come home.

Pure functions on task ranges: no MPI, no I/O. A *block* is a half-open range of
row positions ``(start, stop)``; rows map to task ids through the run's id range.
"""

from __future__ import annotations

import re

from .errors import UsageError

SCHEDULES = ("static",)


def check_schedule(schedule: object) -> str:
    if schedule not in SCHEDULES:
        raise UsageError(
            f"schedule: expected one of {', '.join(SCHEDULES)}, got {schedule!r}; "
            "use --schedule static"
        )
    return str(schedule)


def static_blocks(n: int, n_ranks: int) -> list[tuple[int, int]]:
    """Split ``range(n)`` into ``n_ranks`` contiguous blocks whose sizes differ by at most one."""
    q, r = divmod(n, n_ranks)
    blocks, start = [], 0
    for k in range(n_ranks):
        stop = start + q + (1 if k < r else 0)
        blocks.append((start, stop))
        start = stop
    return blocks


def round_rows(
    k: int, record_bytes: int | None, n_ranks: int, budget_bytes: int, unknown_cap: int = 1024
) -> int:
    """Rows each rank runs in round ``k`` before the round is gathered to rank 0.

    While no task has succeeded yet (``record_bytes`` None) rounds grow 1, 2, 4, ...
    up to ``unknown_cap``, so ranks agree on the shape of the results early. Then each
    round is as large as rank 0's memory budget allows: ``n_ranks`` rows of
    ``record_bytes`` each must fit in ``budget_bytes``.
    """
    if record_bytes is None:
        return min(1 << min(k, 30), unknown_cap)
    return max(1, budget_bytes // max(1, record_bytes * n_ranks))


_SLICE = re.compile(r"^\s*(\d*)\s*:\s*(\d*)\s*$")


def parse_task_slice(text: str | None, n_tasks: int) -> range:
    """``"100:200"`` -> ``range(100, 200)``; ``None`` -> all tasks. Python slice rules, step 1."""
    if text is None or text == "":
        return range(n_tasks)
    m = _SLICE.match(text)
    if not m:
        raise UsageError(f"--tasks: expected START:STOP (e.g. --tasks 100:200), got {text!r}")
    start = int(m.group(1)) if m.group(1) else 0
    stop = int(m.group(2)) if m.group(2) else n_tasks
    if not 0 <= start < stop <= n_tasks:
        raise UsageError(
            f"--tasks: expected 0 <= START < STOP <= {n_tasks} (the grid has {n_tasks} tasks), "
            f"got {text!r}"
        )
    return range(start, stop)
