"""Per-task random streams shared by the overhead benchmark and its helper scripts.

Task ``i`` of a run with seed ``seed`` draws from exactly
``numpy.random.Generator(numpy.random.PCG64(seed).jumped(i))``.

``numpy_draw`` is that expression, written as users write it (~20 us per task, dominated by
constructing ``PCG64(seed)`` and jumping it). ``cheap_block`` yields the same values for a
contiguous block of task ids while reusing one bit generator (~2 us per task): numpy's
``PCG64.jumped(i)`` advances the 128-bit LCG state by ``i * STEP``, and one jump is the affine
map ``s -> (A*s + C) mod 2**128`` on that state, so consecutive tasks' states are one
multiply-add apart.
"""

import numpy as np

STEP = 0x9E3779B97F4A7C15F39CC0605CEDC835  # numpy's PCG64 jump size (phi * 2**128)
MASK = (1 << 128) - 1


def numpy_draw(seed: int, i: int) -> float:
    """One normal draw from task ``i``'s stream, the way users write it."""
    return np.random.Generator(np.random.PCG64(seed).jumped(i)).normal()


def _pcg64_state(state: int, inc: int) -> dict:
    inner = {"state": state, "inc": inc}
    return {"bit_generator": "PCG64", "state": inner, "has_uint32": 0, "uinteger": 0}


def jump_map(inc: int) -> tuple[int, int]:
    """Return ``(A, C)`` with ``advance(STEP)`` == ``s -> (A*s + C) & MASK`` for this ``inc``."""
    bg = np.random.PCG64(0)

    def jumped_state(s: int) -> int:
        bg.state = _pcg64_state(s, inc)
        bg.advance(STEP)
        return bg.state["state"]["state"]

    c = jumped_state(0)
    return (jumped_state(1) - c) & MASK, c


def cheap_block(seed: int, start: int, count: int) -> np.ndarray:
    """Normal draws of tasks ``start .. start+count-1``, bit-identical to ``numpy_draw``."""
    bg = np.random.PCG64(seed)
    inc = bg.state["state"]["inc"]
    a, c = jump_map(inc)
    bg.advance((STEP * start) & MASK)  # == PCG64(seed).jumped(start)
    s = bg.state["state"]["state"]
    normal = np.random.Generator(bg).normal
    full = _pcg64_state(s, inc)
    inner = full["state"]
    out = np.empty(count, dtype=np.float64)
    for k in range(count):
        inner["state"] = s
        bg.state = full  # also clears the buffered uint32, exactly as jumped() does
        out[k] = normal()
        s = (a * s + c) & MASK
    return out
