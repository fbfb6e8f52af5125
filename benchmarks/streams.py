"""Cost of deriving one task's stream: Generator(PCG64(seed).jumped(i)) three ways, and
--streams seedsequence (Generator(PCG64(SeedSequence(seed, spawn_key=(i,))))) two ways.

    python benchmarks/streams.py [--tasks N] [--markdown]

Prints microseconds per task (best of 5 passes over N consecutive task ids) for numpy's
own expression, a derivation that reuses one bit generator through numpy's ``state``
setter, and mpibatch's TaskStreams (which writes the state in place when it can), after
checking all three give bit-identical draws. Target from the core-engine issue: <= 2.5 µs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from _bench import print_table

from mpibatch.streams import SeedSequenceStreams, TaskStreams, task_generator


def _best(fn, n: int, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn(n)
        times.append(time.perf_counter() - t)
    return min(times) / n * 1e6


def _numpy(n: int, seed: int = 1) -> None:
    for i in range(n):
        np.random.Generator(np.random.PCG64(seed).jumped(i))


def _numpy_seedsequence(n: int, seed: int = 1) -> None:
    for i in range(n):
        np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(i,))))


def _loop(streams: TaskStreams | SeedSequenceStreams):
    def run(n: int) -> None:
        for_task = streams.for_task
        for i in range(n):
            for_task(i)

    return run


def _check(n: int = 300) -> None:
    ids = list(range(n)) + [2**40 + 1, 2**63 - 1]
    for fast in (True, False):
        s = TaskStreams(1, fast=fast)
        for i in ids:
            assert s.for_task(i).random() == task_generator(1, i).random(), (fast, i)
    ss = SeedSequenceStreams(1)
    for i in ids:
        assert ss.for_task(i).random() == task_generator(1, i, "seedsequence").random(), i


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", type=int, default=200_000)
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = ap.parse_args()
    n = args.tasks
    _check()
    rows = [
        ("numpy: Generator(PCG64(seed).jumped(i))", _best(_numpy, max(1, n // 10))),
        ("one bit generator, numpy state setter", _best(_loop(TaskStreams(1, fast=False)), n)),
        ("mpibatch TaskStreams (state written in place)", _best(_loop(TaskStreams(1)), n)),
        (
            "--streams seedsequence, numpy: PCG64(SeedSequence(seed, spawn_key=(i,)))",
            _best(_numpy_seedsequence, max(1, n // 10)),
        ),
        (
            "--streams seedsequence, mpibatch SeedSequenceStreams",
            _best(_loop(SeedSequenceStreams(1)), n),
        ),
    ]
    print(f"stream derivation, {n:,} consecutive task ids; each bit-identical to numpy (checked)")
    refs = [rows[0][1]] * 3 + [rows[3][1]] * 2  # each scheme against numpy's own expression
    pairs = zip(rows, refs, strict=True)
    cells = [[name, f"{us:.2f}", f"{ref / us:.1f}x"] for (name, us), ref in pairs]
    notes = ["target: <= 2.5 µs per task (the default scheme, task)"]
    print_table(["derivation", "µs/task", "speed-up"], cells, args.markdown, notes)


if __name__ == "__main__":
    main()
