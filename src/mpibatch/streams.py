"""Random streams: which ``numpy.random.Generator`` a task draws from.

``streams="task"`` (the default): task ``i`` draws from exactly
``Generator(PCG64(seed).jumped(i))``, whatever rank or schedule runs it, so results
do not depend on the number of ranks. numpy's own expression costs ~16-20 µs
because it seeds a throw-away bit generator from OS entropy; :class:`TaskStreams`
reuses one bit generator and sets its state directly (bit-identical, ~1.3 µs).

``streams="seedsequence"``: task ``i`` draws from exactly
``Generator(PCG64(SeedSequence(seed, spawn_key=(i,))))``, which is numpy's recommended
scheme and equals ``SeedSequence(seed).spawn(n)[i]``. numpy's expression costs ~15 µs;
:class:`SeedSequenceStreams` hashes a batch of ids at once with numpy's own SeedSequence
arithmetic (vectorised, checked bit-identical) and seeds one reused bit generator.

``streams="rank"``: rank ``r`` draws all its tasks, in task order, from one
``PCG64(seed).jumped(r)`` (the classic per-rank stream). Results then depend on
``-np`` and on the schedule.
"""

from __future__ import annotations

import ctypes
from typing import Any, cast

import numpy as np

from .errors import UsageError

STREAMS = ("task", "seedsequence", "rank")
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
    entropy = np.random.SeedSequence().entropy
    assert isinstance(entropy, int)  # drawn from the OS: one big int
    return entropy % (1 << 63)


def check_streams(streams: object) -> str:
    if streams not in STREAMS:
        raise UsageError(
            f"streams: expected one of {', '.join(STREAMS)}, got {streams!r}; "
            "use --streams task (the default), seedsequence (both invariant to -np) or rank"
        )
    return str(streams)


def task_generator(seed: int, i: int, kind: str = "task") -> np.random.Generator:
    """The reference definition: the stream of task ``i`` (``kind`` task or seedsequence)."""
    if kind == "seedsequence":
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(i,))))
    return np.random.Generator(np.random.PCG64(seed).jumped(i))


def _fast_writer(bitgen: np.random.PCG64):
    """A function writing ``bitgen``'s 128-bit LCG state in place, or None.

    numpy's ``state`` setter parses a dict and costs ~1 µs; writing the 16 bytes of
    the state (and clearing the cached 32-bit half) costs ~0.2 µs. The memory layout
    is numpy's private business, so the writer is used only after it is shown here,
    through the public getter, to set exactly the state and nothing else.
    """
    try:
        addr = bitgen.ctypes.state_address
        inner = ctypes.c_void_p.from_address(addr).value
        if inner is None:
            return None
        state = memoryview((ctypes.c_char * 16).from_address(inner)).cast("B")
        flags = memoryview((ctypes.c_char * 8).from_address(addr + ctypes.sizeof(ctypes.c_void_p)))
        flags = flags.cast("B")
    except (AttributeError, TypeError, ValueError):
        return None
    zero = bytes(8)

    def write(s: int) -> None:
        state[:] = s.to_bytes(16, "little")
        flags[:] = zero

    return write if _writer_is_exact(bitgen, write) else None


def _writer_is_exact(bitgen: np.random.PCG64, write) -> bool:
    before = bitgen.state
    probe: Any = dict(before, has_uint32=1, uinteger=12345)
    for s in (0, 1, (1 << 128) - 1, 0x0123456789ABCDEF_FEDCBA9876543210, JUMP):
        bitgen.state = probe
        write(s)
        got = bitgen.state
        if (got["state"]["state"], got["state"]["inc"]) != (s, before["state"]["inc"]) or (
            got["has_uint32"],
            got["uinteger"],
        ) != (0, 0):
            bitgen.state = before
            return False
    bitgen.state = before
    return True


class TaskStreams:
    """Per-task streams, derived cheaply and bit-identically to :func:`task_generator`.

    ``for_task(i)`` returns the same Generator object each call, re-positioned at the
    start of task ``i``'s stream. Consecutive ids use one affine step of the LCG state
    (``s -> A*s + C``) instead of a full ``advance``; the state is written in place
    when :func:`_fast_writer` proves it can be (``fast=False`` forces numpy's setter).
    """

    def __init__(self, seed: int, fast: bool = True) -> None:
        base = np.random.PCG64(seed).state
        self._base = base["state"]["state"]
        self._inc = base["state"]["inc"]
        self._bitgen = np.random.PCG64(0)
        self._gen = np.random.Generator(self._bitgen)
        self._inner = {"state": 0, "inc": self._inc}
        state = {"bit_generator": "PCG64", "state": self._inner, "has_uint32": 0, "uinteger": 0}
        self._state: Any = state  # numpy types the setter as a TypedDict; this is one
        self._bitgen.state = cast(Any, state)
        self._write = _fast_writer(self._bitgen) if fast else None
        c = self._jump_once(0)
        self._a = (self._jump_once(1) - c) & _MASK
        self._c = c
        self._next_id = -1
        self._next_state = 0

    @property
    def fast(self) -> bool:
        return self._write is not None

    def _set(self, s: int) -> None:
        if self._write is not None:
            self._write(s)
        else:
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


# numpy's SeedSequence constants (numpy/random/bit_generator.pyx) and PCG64's multiplier
_INIT_A, _MULT_A, _INIT_B, _MULT_B = 0x43B0D7E5, 0x931E8875, 0x8B51F9DD, 0x58F38DED
_MIX_L, _MIX_R, _M32 = 0xCA01F9DD, 0x4973F715, 0xFFFFFFFF
_PCG_MULT = 0x2360ED051FC65DA44385DF649FCCF645


class _HashMix:
    """SeedSequence's ``hashmix`` with its running constant (on ints or uint64 arrays)."""

    def __init__(self, const: int) -> None:
        self.const = const

    def __call__(self, value: Any) -> Any:
        value = value ^ self.const
        self.const = (self.const * _MULT_A) & _M32
        value = (value * self.const) & _M32
        return value ^ (value >> 16)


def _mix(x: Any, y: Any) -> Any:
    r = (_MIX_L * x - _MIX_R * y) & _M32
    return r ^ (r >> 16)


def _seed_pool(seed: int) -> tuple[list[int], int]:
    """The pool after mixing ``seed``'s words (the same for every spawn key), and the constant."""
    words = [(seed >> (32 * k)) & _M32 for k in range(max(1, (seed.bit_length() + 31) // 32))]
    hashmix = _HashMix(_INIT_A)
    pool = [hashmix(words[k] if k < len(words) else 0) for k in range(4)]
    for src in range(4):
        for dst in range(4):
            if src != dst:
                pool[dst] = _mix(pool[dst], hashmix(pool[src]))
    return pool, hashmix.const


def spawned_states(seed: int, ids: np.ndarray) -> np.ndarray:
    """``SeedSequence(seed, spawn_key=(i,)).generate_state(4, uint64)`` for each ``i < 2**32``.

    Vectorised over ``ids``; ``seed`` below ``2**128`` (at most the pool's four words).
    """
    pool, const = _seed_pool(seed)
    key = np.asarray(ids, dtype=np.uint64)
    hashmix = _HashMix(const)
    mixed = [_mix(np.full(key.shape, v, dtype=np.uint64), hashmix(key)) for v in pool]
    const, words = _INIT_B, []
    for k in range(8):  # generate_state: 8 uint32 words cycling over the pool
        v = mixed[k % 4] ^ const
        const = (const * _MULT_B) & _M32
        v = (v * const) & _M32
        words.append(v ^ (v >> 16))
    return np.stack([words[2 * k] | (words[2 * k + 1] << np.uint64(32)) for k in range(4)], 1)


class SeedSequenceStreams:
    """Task ``i`` draws from ``Generator(PCG64(SeedSequence(seed, spawn_key=(i,))))``.

    ``for_task(i)`` returns the same Generator object each call, seeded for task ``i``.
    Within a long run of consecutive ids, ids are hashed a batch at a time
    (:func:`spawned_states`) as numpy's SeedSequence would; PCG64 is seeded from the
    words as numpy seeds it (state and increment).
    """

    BATCH = 512

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._bitgen = np.random.PCG64(0)
        self._gen = np.random.Generator(self._bitgen)
        self._inner = {"state": 0, "inc": 1}
        state = {"bit_generator": "PCG64", "state": self._inner, "has_uint32": 0, "uinteger": 0}
        self._state: Any = state
        self._first, self._words = 0, np.empty((0, 4), dtype=np.uint64)
        self._run = 0  # consecutive ids asked for one at a time

    def _words_for(self, i: int) -> np.ndarray:
        end = self._first + len(self._words)
        if self._first <= i < end:
            return self._words[i - self._first]
        # a vectorised batch costs ~50 numpy calls: worth it only inside a long run of
        # consecutive ids; one id after a jump (a new block) is cheaper hashed by numpy
        self._run = self._run + 1 if i == end else 0
        long_run = self._run >= 16 and self._seed < 1 << 128 and i + self.BATCH <= 1 << 32
        if long_run:
            self._words = spawned_states(self._seed, np.arange(i, i + self.BATCH))
        else:  # long seeds and ids past 2**32 have more words: always numpy's own
            self._words = _numpy_words(self._seed, i)[None, :]
        self._first = i
        return self._words[0]

    def for_task(self, i: int) -> np.random.Generator:
        w0, w1, w2, w3 = (int(w) for w in self._words_for(i))
        inc = (((w2 << 64 | w3) << 1) | 1) & _MASK  # pcg_setseq_128_srandom_r, as numpy
        self._inner["inc"] = inc
        self._inner["state"] = ((inc + (w0 << 64 | w1)) * _PCG_MULT + inc) & _MASK
        self._bitgen.state = self._state
        return self._gen


def _numpy_words(seed: int, i: int) -> np.ndarray:
    return np.random.SeedSequence(seed, spawn_key=(i,)).generate_state(4, np.uint64)


class RankStreams:
    """One stream per rank: every task on rank ``r`` continues ``PCG64(seed).jumped(r)``."""

    def __init__(self, seed: int, rank: int) -> None:
        self._gen = task_generator(seed, rank)

    def for_task(self, i: int) -> np.random.Generator:
        return self._gen


def make_streams(
    kind: str, seed: int, rank: int
) -> TaskStreams | SeedSequenceStreams | RankStreams:
    if kind == "seedsequence":
        return SeedSequenceStreams(seed)
    return TaskStreams(seed) if kind == "task" else RankStreams(seed, rank)
