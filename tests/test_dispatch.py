"""Rank 0's loop and the other ranks' loop, in one process over the fake transport."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from fake_transport import BLOCK, REPORT, STOP, World

from mpibatch._dispatch import Root, finish, work
from mpibatch._dispatch.ledger import Ledger, SchemaGate
from mpibatch._dispatch.policy import LONG_TASK, BlockPolicy
from mpibatch._plan import Plan
from mpibatch._records import Columns, Field, Report
from mpibatch._stop import Stopper
from mpibatch.errors import ResultError
from mpibatch.grid import Grid
from mpibatch.runner import Runner
from mpibatch.schedule import make_queue, static_blocks
from mpibatch.streams import TaskStreams


class FakeStore:
    """Records what rank 0 writes, row by row."""

    def __init__(self, n: int) -> None:
        self.n, self.schema = n, None
        self.status = np.zeros(n, np.int8)
        self.rank = np.full(n, -1)
        self.values: dict[str, np.ndarray] = {}
        self.failures: list = []
        self.writes = 0

    def add_results(self, schema) -> None:
        self.schema = schema
        self.values = {f.key: np.full((self.n, *f.shape), np.nan) for f in schema}

    def write_rows(self, row: int, cols: Columns, rank) -> None:
        sl = slice(row, row + cols.rows)
        assert (self.status[sl] != 1).all(), "a row written twice"
        for key, arr in cols.results.items():
            self.values[key][sl] = arr
        self.status[sl] = cols.status
        self.rank[sl] = np.where(cols.status > 0, rank, -1)
        self.writes += 1

    def write_failures(self, failures: list) -> None:
        self.failures += failures

    def flush(self) -> None:
        pass


class Progress:
    def update(self, done: int, failed: int = 0) -> None:
        self.last = (done, failed)


@dataclass
class Sim:
    world: World
    store: FakeStore
    out: list
    stoppers: list
    root: Root | None = None
    blocks: list = field(default_factory=list)  # (dest, block) of every block sent

    def errors(self) -> list:
        return [r for r in self.out if isinstance(r, BaseException)]


def _plan(n: int, **kw) -> Plan:
    base = dict(grid_json="{}", seed=5, streams="task", schedule="dynamic", ids=(0, n))
    base.update(threads=1, gather_bytes=64 << 20, quiet=True, t0=0.0, session_t0=0.0)
    base.update(grace=0.0, flush_seconds=30.0, block_seconds=0.1)
    return Plan(**{**base, **kw})


def simulate(
    fn, n=40, size=3, on_thread=False, retries=0, stoppers: list | None = None, store=None, **kw
) -> Sim:
    """Run ``fn`` over ``n`` tasks on ``size`` ranks of a fake world; rank 0 is the root.

    ``stoppers``, if given, receives each rank's Stopper (a task may then stop the run).
    """
    plan = _plan(n, **kw)
    world, store = World(size), store if store is not None else FakeStore(n)
    grid = Grid(None, reps=n)
    stoppers = stoppers if stoppers is not None else []
    stoppers.extend(Stopper(plan.grace, None, f"rank {r}") for r in range(size))
    sim = Sim(world, store, [], stoppers)

    def runner(rank: int) -> Runner:
        info = {"rank": rank, "size": size, "host": "here", "local_rank": rank}
        return Runner(fn, grid, TaskStreams(plan.seed), info, 0.0, stoppers[rank], retries)

    def rank0(transport):
        slots = size - 1 if plan.dedicated_root else size
        queue = make_queue(plan.schedule, [(0, n)], slots, plan.block_size)
        sim.root = Root(transport, plan, store, runner(0), queue, Progress(), on_thread)
        sim.root.run()
        finish(transport, sim.root.fatal)

    def other(transport):
        work(transport, runner(transport.rank), plan.ids[0])
        finish(transport, None)

    sim.out = world.run([rank0] + [other] * (size - 1))
    sim.blocks = [(d, b) for tag, _, d, b in world.log if tag == BLOCK and b is not None]
    return sim


def twice(params, rng, ctx):
    return {"x": 2.0 * ctx.task_id, "r": ctx.rank}


def test_every_result_lands_in_its_row_and_every_rank_works():
    sim = simulate(twice, n=200, size=4)
    assert not sim.errors()
    assert (sim.store.status == 1).all()
    assert sim.store.values["x"].tolist() == [2.0 * i for i in range(200)]
    assert (sim.store.values["r"] == sim.store.rank).all()  # written under the rank that ran it
    assert set(sim.store.rank) == {0, 1, 2, 3}
    ledger = sim.root.ledger
    assert (ledger.done, ledger.failed, ledger.owed) == (200, 0, [0, 0, 0, 0])
    assert not any(sim.world.boxes.values()), "a message was never received"


def test_results_land_in_the_right_rows_of_a_real_file(tmp_path):
    from mpibatch.results import open_results
    from mpibatch.store import Store

    store = Store.create(tmp_path / "r.h5", Grid(None, reps=120), range(120), {"seed": 5})
    sim = simulate(twice, n=120, size=3, store=store, block_size=4)
    store.close({})
    assert not sim.errors()
    res = open_results(tmp_path / "r.h5")
    assert res.results["x"].tolist() == [2.0 * i for i in range(120)]
    assert (res.rank == res.results["r"]).all() and (res.status == 1).all()


@pytest.mark.parametrize("on_thread", [False, True])
def test_rank0_runs_blocks_inline_or_on_its_thread(on_thread):
    sim = simulate(twice, n=60, size=2, on_thread=on_thread)
    assert not sim.errors() and (sim.store.status == 1).all()
    assert (sim.root.own.thread is not None) is on_thread
    assert 0 in set(sim.store.rank)


def test_a_single_rank_runs_everything_itself():
    sim = simulate(twice, n=30, size=1)
    assert not sim.errors() and (sim.store.rank == 0).all() and not sim.blocks


def test_guided_blocks_grow_with_evidence_then_shrink_and_cover_every_row_once():
    sim = simulate(lambda p, r: 1.0, n=400, size=3, dedicated_root=True)
    sizes = [b - a for _, (a, b) in sim.blocks]
    assert sorted(a for _, (a, _) in sim.blocks) == sorted({a for _, (a, _) in sim.blocks})
    assert sum(sizes) == 400 and (sim.store.status == 1).all()
    assert sizes[:4] == [1, 1, 1, 1]  # nothing known yet: one task each, twice per rank
    assert max(sizes) <= 400 // 4  # guided: at most remaining / (2 x 2 ranks)
    assert sizes[-1] == 1


def test_fixed_block_size_caps_every_block():
    sim = simulate(lambda p, r: 1.0, n=100, size=3, block_size=7, dedicated_root=True)
    sizes = [b - a for _, (a, b) in sim.blocks]
    assert max(sizes) == 7 and sum(sizes) == 100


def test_static_blocks_stay_in_each_ranks_own_range():
    sim = simulate(lambda p, r: 1.0, n=101, size=4, schedule="static")
    own = static_blocks(101, 4)
    for dest, (a, b) in sim.blocks:
        lo, hi = own[dest]
        assert lo <= a < b <= hi
    assert (sim.store.status == 1).all()
    assert all(sim.store.rank[a:b].tolist() == [r] * (b - a) for r, (a, b) in enumerate(own))


@pytest.mark.parametrize("dedicated_root", [True, False])
def test_auto_probes_a_spread_of_rows_and_runs_every_task_exactly_once(dedicated_root):
    """A grid with its slow axis outermost (tasks 36-53 the slowest): every row once."""

    def trees(params, rng, ctx):
        time.sleep(0.002 * (1 + ctx.task_id // 18))
        return {"x": 2.0 * ctx.task_id}

    sim = simulate(trees, n=54, size=3, schedule="auto", dedicated_root=dedicated_root)
    assert not sim.errors() and (sim.store.status == 1).all()  # FakeStore refuses a row twice
    assert sim.store.values["x"].tolist() == [2.0 * i for i in range(54)]
    if dedicated_root:  # 2 working ranks: a warm-up task each, then the 4 probe rows
        assert [b for _, b in sim.blocks[:6]] == [
            (0, 1),
            (1, 2),
            (27, 28),
            (8, 9),
            (43, 44),
            (24, 25),
        ]
    assert sim.root.queue.name in ("static", "dynamic") and sim.root.queue.reason


def _held(sim) -> list[tuple[int, int, int]]:
    """(rank, blocks it held once given it, rows not yet handed out before it) per block."""
    held, handed, out = [0] * sim.world.size, 0, []
    for tag, source, dest, payload in sim.world.log:
        if tag == BLOCK and payload is not None:
            held[dest] += 1
            out.append((dest, held[dest], sim.store.n - handed))
            handed += payload[1] - payload[0]
        elif tag == REPORT:
            held[source] -= 1
    return out


def test_short_tasks_get_a_second_block_but_not_near_the_end():
    sim = simulate(lambda p, r: 1.0, n=300, size=3, dedicated_root=True)
    held = _held(sim)
    ahead = [left for _, n_held, left in held if n_held == 2]
    assert len(ahead) > 4  # not only the two first blocks of each rank
    assert all(left >= 2 * 3 for left in ahead)  # a second block only with rows to spare
    assert max(n for _, n, _ in held) == 2


def test_long_tasks_get_no_second_block_once_their_length_is_known():
    def slow(params, rng):
        time.sleep(LONG_TASK * 1.2)
        return 1.0

    sim = simulate(slow, n=12, size=3, dedicated_root=True)
    held = _held(sim)
    assert [n for _, n, _ in held[:6]] == [1, 1, 2, 2, 2, 2]  # before a task time is in
    assert all(n == 1 for _, n, _ in held[6:])
    assert (sim.store.status == 1).all()


def test_policy_caps_blocks_by_the_time_left_before_the_limit():
    plan = _plan(1000, deadline=time.time() + 100.0, grace=0.0)
    ledger, gate = Ledger(3), SchemaGate(FakeStore(1000))
    gate.check((Field("value", np.dtype("f8"), ()),), 0)
    ledger.done, ledger.busy = 100, 1.0  # 10 ms a task: 10 in a 0.1-s block
    policy = BlockPolicy(plan, 3, ledger, gate)
    assert policy.cap() == 10 and policy.ahead(1000)
    policy.stop_at = time.time() - 1.0  # past the time limit: one task at a time
    assert policy.cap() == 1 and policy.time_is_up()
    ledger.busy = 100 * LONG_TASK * 2  # long tasks: one at a time, no look-ahead
    assert not policy.ahead(1000) and policy.cap(one_long=True) == 1
    assert not BlockPolicy(plan, 3, Ledger(3), gate).ahead(5)  # near the end


def test_a_stop_on_one_rank_hands_out_no_more_blocks_and_every_rank_finishes():
    stoppers: list = []

    def fn(params, rng, ctx):
        if ctx.task_id == 30:
            stoppers[ctx.rank].request("SIGTERM")  # as the signal handler does
        return 1.0

    sim = simulate(fn, n=400, size=3, stoppers=stoppers)
    assert not sim.errors()
    assert sim.root.stopped.startswith("SIGTERM")
    log = sim.world.log
    first_stop = next(k for k, m in enumerate(log) if m[0] == STOP)
    assert all(m[3] is None for m in log[first_stop:] if m[0] == BLOCK)
    assert {m[2] for m in log if m[0] == STOP} == {1, 2}
    assert 0 < (sim.store.status == 1).sum() < 400  # the rest stays pending
    assert sim.root.ledger.owed == [0, 0, 0]


def test_the_time_limit_stops_the_run_before_any_block():
    sim = simulate(twice, n=50, size=3, deadline=time.time() + 1.0, grace=0.0)
    assert not sim.errors() and sim.root.stopped == "the time limit is near"
    assert not sim.blocks and (sim.store.status == 0).all()


def test_max_failures_stops_the_run():
    def fn(params, rng):
        raise ValueError("no")

    sim = simulate(fn, n=300, size=3, max_failures=5)
    assert not sim.errors() and "--max-failures 5" in sim.root.stopped
    assert 5 <= sim.root.ledger.failed < 300 and len(sim.store.failures) == sim.root.ledger.failed


def _flaky():
    """A task that fails the first time it runs for every third task id."""
    tries: dict[int, int] = {}
    lock = threading.Lock()

    def flaky(params, rng, ctx):
        with lock:
            tries[ctx.task_id] = tries.get(ctx.task_id, 0) + 1
            first = tries[ctx.task_id] == 1
        value = rng.random()
        if first and ctx.task_id % 3 == 0:
            raise OSError("transient")
        return value

    return flaky


def test_retries_run_a_failed_task_again_on_the_same_stream():
    sim = simulate(_flaky(), n=60, size=3, retries=1)
    ref = simulate(lambda p, rng: rng.random(), n=60, size=3)
    assert (sim.store.status == 1).all() and not sim.store.failures
    assert sim.store.values["value"].tobytes() == ref.store.values["value"].tobytes()
    sim = simulate(_flaky(), n=60, size=3)  # no retries: those tasks fail
    assert not sim.errors() and sim.root.ledger.failed == 20
    assert sorted(f.task_id for f in sim.store.failures) == list(range(0, 60, 3))


def test_a_schema_that_differs_between_ranks_is_fatal_on_every_rank():
    def fn(params, rng, ctx):
        return np.zeros(2) if ctx.rank == 2 else 1.0

    sim = simulate(fn, n=40, size=3)
    errors = sim.errors()
    assert len(errors) == 3 and all(isinstance(e, ResultError) for e in errors)
    msg = str(errors[0])
    assert msg.startswith("task ") and "returned {value: float64[2]}" in msg
    assert "expected {value: float64}" in msg and "same keys, shapes and dtypes" in msg
    assert (sim.store.rank[sim.store.status == 1] != 2).all()  # nothing of rank 2 was kept


def test_a_result_that_cannot_be_stored_on_a_worker_is_fatal_on_every_rank():
    def fn(params, rng, ctx):
        return "text" if ctx.task_id == 25 else 1.0

    sim = simulate(fn, n=100, size=3, dedicated_root=True)
    errors = sim.errors()
    assert len(errors) == 3 and all(isinstance(e, ResultError) for e in errors)
    assert "task 25 returned 'value' of type str" in str(errors[0])
    assert sim.store.status[25] == 0  # that row stays pending


def test_rank0_leaves_its_stuck_task_behind_after_the_grace_period():
    release = threading.Event()
    stoppers: list = []

    def fn(params, rng, ctx):
        if ctx.rank == 0:
            stoppers[0].request("SIGTERM")
            release.wait(10)  # a task that does not return in time
        return 1.0

    try:
        sim = simulate(fn, n=40, size=2, on_thread=True, grace=0.0, stoppers=stoppers)
    finally:
        release.set()
    assert not sim.errors() and sim.root.stopped == "SIGTERM"
    assert (sim.store.rank != 0).all() and sim.store.status[1] == 0  # rank 0 held row 1
    assert stoppers[0].task_id is None  # the watchdog ignores the abandoned task


def test_report_says_when_it_has_more_than_a_header():
    assert not Report(0, 5, 40).has_control()
    assert Report(0, 5, 40, failures=[1]).has_control()
    assert Report(0, 5, 40, stop="SIGTERM").has_control()
    assert Report(0, 5, 40, schema=()).has_control()


def _bad_returns(kind: str):
    """tests/mpi/tasks/bad_returns.py, in process: values that cannot be stored."""

    def task(params, rng):
        i = params["rep"]
        return {
            "string": lambda: "hello",
            "shape": lambda: {"v": np.zeros(2 if i < 5 else 3)},
            "keys": lambda: {"a": 1.0} if i < 5 else {"b": 1.0},
            "ragged": lambda: [[1, 2], [3]],
            "object": lambda: np.array([object()]),
            "dtype": lambda: 1.5 if i < 5 else "x",
        }[kind]()

    return task


@pytest.mark.parametrize(
    "kind, words",
    [
        ("shape", ["'v'", "expected shape (2,)", "declare results = {'v': 'ragged float64'}"]),
        ("keys", ["expected ['a']"]),
        ("dtype", ["type str"]),
    ],
)
def test_unstorable_results_stop_the_run_with_one_line_on_every_rank(kind, words):
    sim = simulate(_bad_returns(kind), n=9, size=3)
    errors = sim.errors()
    assert len(errors) == 3 and len({str(e) for e in errors}) == 1
    msg = str(errors[0])
    assert isinstance(errors[0], ResultError) and "\n" not in msg
    assert all(w in msg for w in words), msg
    assert any(f"task {i} returned" in msg for i in range(5, 9)), msg  # the first to go wrong


@pytest.mark.parametrize("kind", ["ragged", "object"])
def test_a_value_that_cannot_be_stored_fails_its_task_and_the_run_goes_on(kind):
    sim = simulate(_bad_returns(kind), n=9, size=3)
    assert not sim.errors()
    assert (sim.store.status == 2).all() and len(sim.store.failures) == 9
    assert all("cannot store" in f.message or "ragged" in f.message for f in sim.store.failures)
