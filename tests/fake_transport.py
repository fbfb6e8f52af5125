"""An in-memory stand-in for ``_comm.Transport``: a whole run's ranks in one process.

Each rank runs on its own thread, but only one runs at a time: a rank holds the
*baton* until it would wait for another (a probe that finds nothing, a receive with
nothing there, a nap), and then hands it to the next live rank in turn. So the ranks
interleave in one fixed order, no rank ever runs alongside another, and a run of
hundreds of tasks takes milliseconds. Messages are kept per (source, dest, tag) in
deques; every message is also logged in order (``World.log``) for tests to inspect.
A run that makes no progress for ``max_switches`` hand-offs fails as a hang; once a
rank raised, the others stop (``_Broken``) if they do not end soon after.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict, deque
from collections.abc import Callable

import numpy as np

from mpibatch._records import Report

BLOCK, REPORT, DATA, STOP = "block", "report", "data", "stop"
_AFTER_DEATH = 1000  # hand-offs the others get, once a rank raised, before they stop


class Hang(RuntimeError):
    """Every live rank waited on another, again and again: the run would hang."""


class _Broken(BaseException):
    """Another rank failed: this one stops where it is."""


class FakeRequest:
    """A non-blocking send (done at once: the data was copied) or receive."""

    def __init__(self, fill: Callable[[], bool] | None = None) -> None:
        self.fill = fill  # a receive: moves the data in once it is there; True then

    def test(self) -> bool:
        if self.fill is not None and self.fill():
            self.fill = None
        return self.fill is None


class World:
    """``size`` ranks, their mailboxes and the baton."""

    def __init__(self, size: int, max_switches: int = 200_000) -> None:
        self.size, self.max_switches = size, max_switches
        self.boxes: dict[tuple, deque] = defaultdict(deque)
        self.log: list[tuple[str, int, int, object]] = []  # (tag, source, dest, payload)
        self.cond = threading.Condition()
        self.turn, self.live, self.switches = 0, list(range(size)), 0
        self.failed: BaseException | None = None  # set: every rank stops where it is
        self.died_at: int | None = None  # switches when a rank first raised
        self.gathered: dict[int, dict[int, object]] = defaultdict(dict)
        self.order = itertools.count()  # send order, for ANY_SOURCE probes

    def transport(self, rank: int) -> FakeTransport:
        return FakeTransport(self, rank)

    def run(self, mains: list[Callable[[FakeTransport], object]], timeout: float = 60) -> list:
        """Run ``mains[r](transport)`` as rank r; returns what each returned or raised."""
        out: list = [None] * self.size
        threads = [
            threading.Thread(target=self._rank, args=(r, mains[r], out), name=f"rank-{r}")
            for r in range(self.size)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout)
            if t.is_alive():
                raise Hang(f"{t.name} still running after {timeout} s")
        if isinstance(self.failed, Hang):
            raise self.failed
        return out

    def _rank(self, rank: int, main: Callable, out: list) -> None:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == rank or self.failed is not None)
        try:
            if self.failed is None:
                out[rank] = main(self.transport(rank))
        except BaseException as exc:  # recorded for the test
            out[rank] = exc
            with self.cond:  # the others may raise it too (agreed), or wait for this one
                self.died_at = self.switches if self.died_at is None else self.died_at
        finally:
            with self.cond:
                self.live.remove(rank)
                self._pass(rank)

    def _pass(self, rank: int) -> None:
        """Hand the baton to the next live rank after ``rank`` (with the lock held)."""
        if self.live:
            later = [r for r in self.live if r > rank]
            self.turn = later[0] if later else self.live[0]
        self.cond.notify_all()

    def switch(self, rank: int) -> None:
        """``rank`` would wait: let the next rank run, and resume when it is our turn again."""
        with self.cond:
            self.switches += 1
            if self.switches > self.max_switches:
                self.failed = self.failed or Hang(f"no progress after {self.max_switches} waits")
            elif self.died_at is not None and self.switches - self.died_at > _AFTER_DEATH:
                self.failed = self.failed or _Broken()  # waiting for a rank that raised
            if self.failed is not None:
                self.cond.notify_all()
                raise _Broken
            self._pass(rank)
            self.cond.wait_for(lambda: self.turn == rank or self.failed is not None)
            if self.failed is not None:
                raise _Broken

    # ---- mailboxes ----
    def put(self, tag: str, source: int, dest: int, payload: object) -> None:
        self.boxes[(source, dest, tag)].append((next(self.order), payload))
        self.log.append((tag, source, dest, payload))

    def waiting(self, source: int, dest: int, tag: str) -> bool:
        return bool(self.boxes[(source, dest, tag)])

    def take(self, source: int, dest: int, tag: str) -> object:
        return self.boxes[(source, dest, tag)].popleft()[1]

    def first_sender(self, dest: int, tag: str) -> int | None:
        """The rank whose message to ``dest`` with ``tag`` was sent first (ANY_SOURCE)."""
        best = None
        for source in range(self.size):
            box = self.boxes[(source, dest, tag)]
            if box and (best is None or box[0][0] < best[0]):
                best = (box[0][0], source)
        return None if best is None else best[1]


class FakeTransport:
    """What ``_comm.Transport`` offers, for one rank of a :class:`World`."""

    def __init__(self, world: World, rank: int) -> None:
        self.world, self.rank, self.size = world, rank, world.size

    # ---- collectives ----
    def _allgather(self, value: object) -> list:
        world, key = self.world, getattr(self, "_calls", 0)
        self._calls = key + 1
        world.gathered[key][self.rank] = value
        while len(world.gathered[key]) < self.size:
            world.switch(self.rank)
        return [world.gathered[key][r] for r in range(self.size)]

    def agree(self, error: BaseException | None) -> None:
        for err in self._allgather(error):
            if err is not None:
                raise err

    def share(self, obj: object = None) -> object:
        return self._allgather(obj)[0]

    def gather_small(self, obj: object) -> list | None:
        got = self._allgather(obj)
        return got if self.rank == 0 else None

    def barrier(self) -> None:
        self._allgather(None)

    # ---- waiting ----
    def done(self, request: FakeRequest) -> bool:
        return request.test()

    def wait(self, request: FakeRequest) -> None:
        while not request.test():
            self.world.switch(self.rank)

    def idle(self, delay: float) -> float:
        self.world.switch(self.rank)
        return delay

    def _probe(self, source: int, tag: str) -> bool:
        if self.world.waiting(source, self.rank, tag):
            return True
        self.world.switch(self.rank)  # a miss: the others run meanwhile
        return False

    # ---- rank 0's side ----
    def send_block(self, dest: int, block: tuple[int, int] | None) -> None:
        self.world.put(BLOCK, 0, dest, block)

    def send_stop(self, dest: int) -> None:
        self.world.put(STOP, 0, dest, None)

    def report_waiting(self) -> int | None:
        source = self.world.first_sender(self.rank, REPORT)
        if source is None:
            self.world.switch(self.rank)
        return source

    def recv_report(self, source: int, take: Callable[[int], np.ndarray]):
        world, me = self.world, self.rank
        report: Report = world.take(source, me, REPORT)
        nbytes = report.nbytes
        buf = take(nbytes) if nbytes else np.empty(0, np.uint8)

        def fill() -> bool:
            if not world.waiting(source, me, DATA):
                return False
            data = world.take(source, me, DATA)
            buf[:nbytes] = np.frombuffer(data, np.uint8)
            return True

        return report, buf, FakeRequest(fill if nbytes else None)

    # ---- every other rank's side ----
    def stop_waiting(self) -> bool:
        if not self._probe(0, STOP):
            return False
        self.world.take(0, self.rank, STOP)
        return True

    def block_waiting(self) -> bool:
        return self._probe(0, BLOCK)

    def recv_block(self) -> tuple[int, int] | None:
        while not self.world.waiting(0, self.rank, BLOCK):
            self.world.switch(self.rank)
        return self.world.take(0, self.rank, BLOCK)

    def send_report(self, report: Report, data: np.ndarray) -> FakeRequest:
        world = self.world
        world.put(REPORT, self.rank, 0, report)
        if data.nbytes:
            world.put(DATA, self.rank, 0, data.tobytes())  # a copy: the buffer may be reused
        return FakeRequest()
