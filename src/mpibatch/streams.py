"""Random streams: which ``numpy.random.Generator`` a task draws from.

``streams="task"`` (the default): task ``i`` draws from exactly
``Generator(PCG64(seed).jumped(i))``, whatever rank or schedule runs it, so results
do not depend on the number of ranks. numpy's own expression costs ~16-20 µs
because it seeds a throw-away bit generator from OS entropy; :class:`TaskStreams`
reuses one bit generator and sets its state directly (bit-identical, ~1.3 µs).

``streams="rank"``: rank ``r`` draws all its tasks, in task order, from one
``PCG64(seed).jumped(r)`` (the classic per-rank stream). Results then depend on
``-np`` and on the schedule.
"""

from __future__ import annotations

import numpy as np

from .errors import UsageError

STREAMS = ("task", "rank")
# numpy's PCG64.jumped(k) advances the 128-bit LCG by k * JUMP (phi - 1 times 2**128).
JUMP = 0x9E3779B97F4A7C15F39CC0605CEDC835
_MASK = (1 << 128) - 1


def check_seed(seed: object) -> int:
    """Return ``seed`` as a non-negative int or raise a one-line UsageError."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UsageError(
            f"seed: expected a non-negative integer, got {seed!r}; pass --seed 42 (any int >= 0)"
        )
    return int(seed)


def fresh_seed() -> int:
    """A seed drawn from OS entropy, for runs that do not name one (it is recorded)."""
    return int(np.random.SeedSequence().entropy % (1 << 63))


def check_streams(streams: object) -> str:
    if streams not in STREAMS:
        raise UsageError(
            f"streams: expected one of {', '.join(STREAMS)}, got {streams!r}; "
            "use --streams task (invariant to -np) or --streams rank"
        )
    return str(streams)


def task_generator(seed: int, i: int) -> np.random.Generator:
    """The reference definition: the stream of task ``i``."""
    return np.random.Generator(np.random.PCG64(seed).jumped(i))


class TaskStreams:
    """Per-task streams, derived cheaply and bit-identically to :func:`task_generator`.

    ``for_task(i)`` returns the same Generator object each call, re-positioned at the
    start of task ``i``'s stream. Consecutive ids use one affine step of the LCG state
    (``s -> A*s + C``) instead of a full ``advance``.
    """

    def __init__(self, seed: int) -> None:
        base = np.random.PCG64(seed).state
        self._base = base["state"]["state"]
        self._inc = base["state"]["inc"]
        self._bitgen = np.random.PCG64(0)
        self._gen = np.random.Generator(self._bitgen)
        self._inner = {"state": 0, "inc": self._inc}
        self._state = {
            "bit_generator": "PCG64",
            "state": self._inner,
            "has_uint32": 0,
            "uinteger": 0,
        }
        c = self._jump_once(0)
        self._a = (self._jump_once(1) - c) & _MASK
        self._c = c
        self._next_id = -1
        self._next_state = 0

    def _set(self, s: int) -> None:
        self._inner["state"] = s
        self._bitgen.state = self._state

    def _jump_once(self, s: int) -> int:
        self._set(s)
        self._bitgen.advance(JUMP)
        return self._bitgen.state["state"]["state"]

    def for_task(self, i: int) -> np.random.Generator:
        if i == self._next_id:
            s = self._next_state
        else:
            self._set(self._base)
            self._bitgen.advance(JUMP * i)
            s = self._bitgen.state["state"]["state"]
        self._set(s)
        self._next_id = i + 1
        self._next_state = (self._a * s + self._c) & _MASK
        return self._gen


class RankStreams:
    """One stream per rank: every task on rank ``r`` continues ``PCG64(seed).jumped(r)``."""

    def __init__(self, seed: int, rank: int) -> None:
        self._gen = task_generator(seed, rank)

    def for_task(self, i: int) -> np.random.Generator:
        return self._gen


def make_streams(kind: str, seed: int, rank: int) -> TaskStreams | RankStreams:
    return TaskStreams(seed) if kind == "task" else RankStreams(seed, rank)
