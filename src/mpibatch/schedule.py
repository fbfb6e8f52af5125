"""Which rank runs which tasks: pure policies on row ranges, no MPI, no I/O.

A *block* is a half-open range of rows ``(start, stop)`` of the run; rank 0 hands
blocks out through a queue and every schedule uses the same transport:

- ``static``: contiguous blocks, balanced to within one task, one per rank, cut into
  chunks so results stream home while the block runs.
- ``dynamic``: one shared queue; block sizes shrink as work runs out (guided
  self-scheduling: remaining / (2 x ranks)), or stay fixed with ``block_size``.
- ``auto``: hands out single tasks first (one warm-up task per rank, then a probe of
  task times spread over the whole range so a grid's order cannot hide its slow tasks),
  then picks static for uniform task times and dynamic for skewed ones (:func:`choose`,
  with a dead band between the two), and says why. A resumed run keeps the choice its
  file records (:func:`resumed_schedule`) instead of probing again.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence

from ._say import plural
from .errors import UsageError

SCHEDULES = ("auto", "static", "dynamic")
# auto's rule (see choose()): the probe's coefficient of variation (CV) of task times ...
STATIC_CV = 0.2  # ... below this: static
DYNAMIC_CV = 0.3  # ... above this: dynamic; in between (the dead band): static, unless
OUTLIER = 3.0  # ... the probe's longest task is over this many times its median: dynamic


def check_schedule(schedule: object) -> str:
    if schedule not in SCHEDULES:
        raise UsageError(
            f"schedule: expected one of {', '.join(SCHEDULES)}, got {schedule!r}; "
            "use --schedule auto (default), static or dynamic"
        )
    return str(schedule)


def static_blocks(n: int, n_ranks: int, start: int = 0) -> list[tuple[int, int]]:
    """Split ``range(start, start + n)`` into ``n_ranks`` contiguous blocks, sizes within one."""
    q, r = divmod(n, n_ranks)
    blocks = []
    for k in range(n_ranks):
        stop = start + q + (1 if k < r else 0)
        blocks.append((start, stop))
        start = stop
    return blocks


class Segments:
    """Rows still to run, as sorted ``(start, stop)`` ranges, seen as one index ``0..total``.

    A fresh run has one segment; a resumed run has one per stretch of pending rows.
    Queues work in that index and :meth:`rows` turns a piece of it back into rows,
    cut at a segment's end (a block is always one contiguous range of rows).
    """

    def __init__(self, segments: Sequence[tuple[int, int]]) -> None:
        self.segs = [(a, b) for a, b in segments if b > a]
        self.cum = [0]
        for a, b in self.segs:
            self.cum.append(self.cum[-1] + b - a)

    @property
    def total(self) -> int:
        return self.cum[-1]

    def rows(self, va: int, vb: int) -> tuple[tuple[int, int], int]:
        """Rows of index range ``[va, vb)`` up to the end of ``va``'s segment, and its end."""
        k = bisect.bisect_right(self.cum, va) - 1
        end = min(vb, self.cum[k + 1])
        first = self.segs[k][0] + va - self.cum[k]
        return (first, first + end - va), end


class Queue:
    """The rows still to hand out, and which rank gets which: the base of every schedule.

    ``next(rank, cap)`` is the next block for ``rank`` (at most ``cap`` rows) or None;
    ``observe`` hears the task times of each block that came back (only ``auto`` uses
    them); ``reason`` says why this schedule was used, when the queue chose it itself.
    """

    name = ""
    reason = ""

    def next(self, rank: int, cap: int) -> tuple[int, int] | None:
        raise NotImplementedError

    @property
    def remaining(self) -> int:
        """Rows not yet handed out."""
        raise NotImplementedError

    def observe(self, row: int, n_rows: int, times: Sequence[float]) -> None:
        """Times (seconds) of the tasks that ran in rows ``row .. row + n_rows``."""


class StaticQueue(Queue):
    """Each rank works through its own contiguous block, in chunks of at most ``cap`` rows."""

    name = "static"

    def __init__(self, start: int, stop: int, n_ranks: int, segs: Segments) -> None:
        self.blocks = static_blocks(stop - start, n_ranks, start)
        self.pos = [a for a, _ in self.blocks]
        self.segs = segs

    def next(self, rank: int, cap: int) -> tuple[int, int] | None:
        a, end = self.pos[rank], self.blocks[rank][1]
        if a >= end:
            return None
        rows, self.pos[rank] = self.segs.rows(a, min(end, a + max(1, cap)))
        return rows

    @property
    def remaining(self) -> int:
        return sum(end - a for a, (_, end) in zip(self.pos, self.blocks, strict=True))


class GuidedQueue(Queue):
    """One shared queue: blocks of ``ceil(remaining / (2 * ranks))`` rows, or ``block_size``."""

    name = "dynamic"

    def __init__(
        self, start: int, stop: int, n_ranks: int, segs: Segments, block_size: int | None = None
    ) -> None:
        self.pos, self.stop, self.n_ranks, self.block_size = start, stop, n_ranks, block_size
        self.segs = segs

    def next(self, rank: int, cap: int) -> tuple[int, int] | None:
        left = self.stop - self.pos
        if left <= 0:
            return None
        size = self.block_size or math.ceil(left / (2 * self.n_ranks))
        rows, self.pos = self.segs.rows(self.pos, min(self.stop, self.pos + max(1, min(size, cap))))
        return rows

    @property
    def remaining(self) -> int:
        return max(0, self.stop - self.pos)


def choose(times: Sequence[float], n_left: int, n_ranks: int) -> tuple[str, str]:
    """Static or dynamic, and why, from a probe of task times (seconds).

    The probe is small (2 x ranks tasks, and those back meanwhile), so its CV is noisy.
    The workloads that static handles badly probe well above 0.3: a grid whose slow axis
    is outermost (50/100/150 ms, benchmarks/skew.py (c)) at 0.46-0.49 in 20 runs at np=2,
    4 slow of 16 tasks (skew.py (b)) at 1.6, log-normal task times (sigma 1.5, skew.py
    (a)) at 0.44 and more over its draws. Uniform task times probe at a CV near 0 on a
    quiet machine; co-tenants slow some tasks 3-6x for a while (examples/stratified.py at
    np=2 on a 2-core machine at load 3-5: 0.11-0.86), which a small probe cannot tell from
    skew. Hence static below ``STATIC_CV`` and dynamic above ``DYNAMIC_CV``. In the dead
    band between, i.i.d. spread costs static little (it averages out over a rank's many
    tasks), so static, unless one task of the probe took over ``OUTLIER`` x the median: a
    heavy tail, whose long tasks static would leave at the end of one rank's block. A dead
    band rather than one threshold keeps a probe whose CV sits near it from flipping the
    choice from run to run on small noise.
    """
    n = len(times)
    mean = sum(times) / n if n else 0.0
    sd = math.sqrt(sum((t - mean) ** 2 for t in times) / (n - 1)) if n > 1 else 0.0
    cv = sd / mean if mean > 0 else 0.0
    ordered = sorted(times)
    median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2 if n else 0.0
    head = f"probe of {plural(n, 'task')}: mean {mean * 1e3:.3g} ms, cv {cv:.2f}"
    kind, why = _band(cv, ordered[-1] / median if n and median > 0 else 1.0)
    if kind == "static" and n_left <= n_ranks:
        left = f"{plural(n_left, 'task')} left for {plural(n_ranks, 'rank')}"
        return "dynamic", f"{head}; {left} -> dynamic"
    return kind, f"{head}{why}"


def _band(cv: float, peak: float) -> tuple[str, str]:
    """choose()'s rule, from the CV and the longest task over the median (``peak``)."""
    if cv < STATIC_CV:
        return "static", f" < {STATIC_CV} (uniform task times) -> static"
    if cv > DYNAMIC_CV:
        return "dynamic", f" > {DYNAMIC_CV} (skewed task times) -> dynamic"
    band = f" in the dead band {STATIC_CV}-{DYNAMIC_CV}, longest {peak:.2f}x the median"
    if peak > OUTLIER:
        return "dynamic", f"{band} > {OUTLIER} (a heavy tail) -> dynamic"
    return "static", f"{band} <= {OUTLIER} (even spread) -> static"


def resumed_schedule(requested: str, stored: dict) -> str:
    """The schedule a ``--resume`` runs with: the one ``auto`` chose for the file before
    (its ``schedule_used``), so that a resumed study is not probed again, on other tasks,
    and perhaps scheduled otherwise; ``requested`` if that is not auto or nothing was chosen."""
    used = stored.get("schedule_used")
    if requested == "auto" and used in ("static", "dynamic"):
        return str(used)
    return requested


GOLDEN = (math.sqrt(5) - 1) / 2  # the probe's step, as a fraction of the range


def probe_positions(start: int, stop: int, size: int) -> list[int]:
    """``size`` distinct indices of ``[start, stop)``, spread over all of it, the same every run.

    Steps of about the golden ratio of the range (wrapping around), from its middle:
    the points fall in every part of the range (a grid with its slow axis outermost is
    probed at its fast, middle and slow tasks alike). The step is prime to the range's
    length (so no index repeats) and, in ranges longer than 6, to 2 and 3, so a grid
    whose slow tasks recur every 2nd or 3rd row is never probed on one phase only (evenly
    spaced probes 1, 4, 7, 10 of 12 rows all miss slow rows 0, 3, 6, 9; these are 6, 1, 8, 3).
    """
    n = stop - start
    if n <= 0 or size <= 0:
        return []
    step = _probe_step(n)
    return [start + (n // 2 + k * step) % n for k in range(size)]


def _probe_step(n: int) -> int:
    """The integer nearest ``n * GOLDEN`` prime to ``n`` (and to 6 when ``n > 6``)."""
    base = round(n * GOLDEN)
    for d in range(n):
        for step in (base + d, base - d):
            if step > 0 and math.gcd(step, n) == 1 and (n <= 6 or math.gcd(step, 6) == 1):
                return step
    return 1


def _without(segs: Segments, start: int, stop: int, rows: Sequence[int]) -> Segments:
    """The rows of index range ``[start, stop)`` of ``segs``, less ``rows``, as new Segments."""
    if (start, stop) == (0, segs.total):
        pieces = segs.segs
    else:  # only a part of segs: walk it
        pieces, va = [], start
        while va < stop:
            piece, va = segs.rows(va, stop)
            pieces.append(piece)
    cut, j, out = sorted(rows), 0, []
    for a, b in pieces:
        while j < len(cut) and cut[j] < b:  # every row of ``rows`` lies in some piece
            out.append((a, cut[j]))
            a, j = cut[j] + 1, j + 1
        out.append((a, b))
    return Segments(out)


class AutoQueue(Queue):
    """Probe with single tasks spread over the range, then hand over to a static or guided queue.

    Each rank's first task is a warm-up from the front of the rows, whose time is left
    out of the probe: a rank's first task pays for first calls (BLAS buffers, imports,
    first touches of shared pages; 63 ms against a median of 14 in examples/stratified.py)
    and alone made a uniform study look skewed. The probe rows (:func:`probe_positions`)
    go out next; while they run, single tasks from the front of the other rows follow.
    The chosen queue gets the rows not yet handed out, the probe rows taken out. Its
    ``name`` is "auto" until it decides, then the name of the queue it chose.
    """

    name = "auto"

    def __init__(
        self, start: int, stop: int, n_ranks: int, segs: Segments, block_size: int | None = None
    ) -> None:
        self.n_ranks, self.block_size = n_ranks, block_size
        self.probe_size = min(stop - start, 2 * n_ranks)
        positions = probe_positions(start, stop, self.probe_size)
        self.probes = [segs.rows(v, v + 1)[0][0] for v in positions]  # rows, handed out first
        self.probes.reverse()  # (next() pops from the end)
        self.rest = _without(segs, start, stop, self.probes)
        self.front = 0  # index into self.rest
        self.probe_out: set[int] = set()  # rows of the probe not yet back
        self.warm: set[int] = set()  # ranks that had their warm-up task
        self.warmups: set[int] = set()  # rows handed out as warm-ups, not yet back
        self.times: list[float] = []  # of the tasks back, warm-ups left out
        self.inner: StaticQueue | GuidedQueue | None = None

    def observe(self, row: int, n_rows: int, times: Sequence[float]) -> None:
        """Times (seconds) of the tasks that ran in rows ``row .. row + n_rows``.

        Decides once every probe task is back (the first tasks to finish are the fast
        ones, so deciding on them alone would miss the slow), or once four times as many
        other tasks finished while some probe task still runs: skewed, by then.
        """
        if self.inner is not None:
            return
        rows = range(row, row + n_rows)
        self.probe_out.difference_update(rows)
        if self.warmups and len(times) == n_rows:  # (else some did not run: a stop)
            times = [t for r, t in zip(rows, times, strict=True) if r not in self.warmups]
            self.warmups.difference_update(rows)
        self.times.extend(map(float, times))
        if self.probes:  # (only probe tasks are out until every probe is)
            return
        if not self.probe_out and len(self.times) >= self.probe_size:
            self._decide(*choose(self.times, self.rest.total - self.front, self.n_ranks))
        elif len(self.times) >= 4 * self.probe_size:
            self._decide(
                "dynamic",
                f"{plural(len(self.probe_out), 'probe task')} still running after "
                f"{len(self.times)} others finished (skewed task times) -> dynamic",
            )

    def _decide(self, kind: str, reason: str) -> None:
        self.reason = reason
        args = (self.front, self.rest.total, self.n_ranks, self.rest)
        if kind == "static":
            self.inner = StaticQueue(*args)
        else:
            self.inner = GuidedQueue(*args, self.block_size)
        self.name = self.inner.name

    def next(self, rank: int, cap: int) -> tuple[int, int] | None:
        if self.inner is not None:
            return self.inner.next(rank, cap)
        if rank not in self.warm and self.front < self.rest.total:
            self.warm.add(rank)
            rows, self.front = self.rest.rows(self.front, self.front + 1)
            self.warmups.add(rows[0])
            return rows
        if self.probes:
            row = self.probes.pop()
            self.probe_out.add(row)
            return row, row + 1
        if self.front >= self.rest.total:
            return None
        rows, self.front = self.rest.rows(self.front, self.front + 1)
        return rows

    @property
    def remaining(self) -> int:
        if self.inner is not None:
            return self.inner.remaining
        return len(self.probes) + self.rest.total - self.front


def make_queue(
    kind: str, segments: Sequence[tuple[int, int]], n_ranks: int, block_size: int | None = None
) -> Queue:
    """The queue for schedule ``kind`` over the rows of ``segments`` (all rows still to run)."""
    segs = Segments(segments)
    if kind == "static":
        return StaticQueue(0, segs.total, n_ranks, segs)
    if kind == "dynamic":
        return GuidedQueue(0, segs.total, n_ranks, segs, block_size)
    return AutoQueue(0, segs.total, n_ranks, segs, block_size)


def block_seconds(n_ranks: int, flush_seconds: float) -> float:
    """How long one block should take: 0.1 s, or 1 ms per rank with more than 100 ranks.

    Short, because a rank runs a block's tasks in order: every task of a block, and of
    the next block the rank holds, waits behind a long task. Long enough that rank 0
    serves at most ~1,000 requests a second (about 6% of its time at ~60 us each),
    however many ranks ask; and at most a quarter of the flush interval, so results
    reach the file well within it.
    """
    return min(max(0.1, 1e-3 * n_ranks), flush_seconds / 4)


def block_rows(
    record_bytes: int | None,
    n_ranks: int,
    budget_bytes: int,
    mean_task_seconds: float | None,
    block_seconds: float,
    n_seen: int = 0,
) -> int:
    """The most rows one block may have.

    Memory: every rank may have a block in flight to rank 0 at once, so ``n_ranks``
    blocks of ``record_bytes`` rows must fit in ``budget_bytes``. Time: a block should
    take about ``block_seconds``, so results stream home and the tail stays balanced.
    Evidence: a mean of a few task times says little about a skewed workload (the
    first ones back are the fast ones), so no block has more rows than ``n_seen``, the
    tasks back so far: the cap at most doubles from one wave of blocks to the next.
    Until a task has finished (nothing is known) blocks have one row.
    """
    if record_bytes is None or mean_task_seconds is None:
        return 1
    by_memory = budget_bytes // max(1, record_bytes * n_ranks)
    by_time = block_seconds / max(mean_task_seconds, 1e-7)
    return int(max(1, min(by_memory, by_time, n_seen)))


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
            f"--tasks: expected 0 <= START < STOP <= {n_tasks} (the grid has "
            f"{plural(n_tasks, 'task')}), got {text!r}"
        )
    return range(start, stop)
