import numpy as np
import pytest

from mpibatch.errors import UsageError
from mpibatch.schedule import (
    DYNAMIC_CV,
    OUTLIER,
    STATIC_CV,
    AutoQueue,
    GuidedQueue,
    Segments,
    StaticQueue,
    block_rows,
    block_seconds,
    check_schedule,
    choose,
    make_queue,
    parse_task_slice,
    probe_positions,
    resumed_schedule,
    static_blocks,
)


@pytest.mark.parametrize("n", [0, 1, 5, 16, 17, 1001])
@pytest.mark.parametrize("p", [1, 2, 3, 4, 7])
def test_static_blocks_cover_the_range_contiguously_and_balanced(n, p):
    blocks = static_blocks(n, p)
    assert len(blocks) == p
    assert blocks[0][0] == 0 and blocks[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(blocks[:-1], blocks[1:], strict=True))
    sizes = [b - a for a, b in blocks]
    assert max(sizes) - min(sizes) <= 1


def _drain(queue, n_ranks, cap):
    got, rank = [], 0
    while (blk := queue.next(rank % n_ranks, cap)) is not None or queue.remaining:
        if blk:
            got.append((rank % n_ranks, blk))
        rank += 1
    return got


def test_static_queue_chunks_each_ranks_own_block():
    q = StaticQueue(0, 10, 3, Segments([(0, 10)]))  # blocks (0,4) (4,7) (7,10)
    assert q.next(1, 2) == (4, 6) and q.next(1, 2) == (6, 7) and q.next(1, 2) is None
    got = _drain(q, 3, 3)
    assert sorted(b for _, b in got) == [(0, 3), (3, 4), (7, 10)]
    assert all(r == (0 if b[0] < 4 else 2) for r, b in got)
    assert q.remaining == 0


def test_guided_blocks_shrink_and_cover_everything_once():
    q = GuidedQueue(0, 1000, 4, Segments([(0, 1000)]))
    sizes = [b - a for _, (a, b) in _drain(q, 4, 10**9)]
    assert sum(sizes) == 1000 and sizes[0] == 125  # ceil(1000 / 8)
    assert sizes == sorted(sizes, reverse=True) and sizes[-1] == 1


def test_guided_respects_block_size_and_cap():
    assert GuidedQueue(0, 10, 2, Segments([(0, 10)]), block_size=3).next(0, 100) == (0, 3)
    assert GuidedQueue(0, 1000, 2, Segments([(0, 1000)])).next(0, 7) == (0, 7)


def test_choose_static_for_uniform_dynamic_for_skewed():
    kind, why = choose([0.01, 0.0101, 0.0099, 0.01], n_left=100, n_ranks=2)
    assert kind == "static" and "uniform" in why and "probe of 4 tasks" in why
    kind, why = choose([0.001, 0.5, 0.002, 0.01], n_left=100, n_ranks=2)
    assert kind == "dynamic" and "skewed" in why and f"> {DYNAMIC_CV}" in why
    assert choose([0.01, 0.01], n_left=2, n_ranks=4)[0] == "dynamic"


def _with_cv(base, cv):
    """``base`` scaled about its mean to coefficient of variation ``cv`` exactly."""
    b = np.asarray(base, float)
    z = (b - b.mean()) / b.std(ddof=1)
    return 1.0 + cv * z  # mean 1


@pytest.mark.parametrize("n", [4, 8, 16])
def test_a_probe_in_the_dead_band_gives_one_answer_under_small_noise(n):
    rng = np.random.default_rng(n)
    base = _with_cv(rng.normal(size=n), 0.25)  # in the band: 0.2 < 0.25 < 0.3
    answers = set()
    for _ in range(20):  # the same workload measured 20 times, each time a little off
        noisy = base * (1 + rng.normal(0, 0.01, n))
        kind, why = choose(list(0.02 * noisy), n_left=1000, n_ranks=2)
        assert "dead band" in why and "cv 0.2" in why
        answers.add(kind)
    assert answers == {"static"}
    # the old single threshold (0.25) gave both answers on these very probes
    cvs = []
    for _ in range(20):
        noisy = base * (1 + rng.normal(0, 0.01, n))
        cvs.append(noisy.std(ddof=1) / noisy.mean())
    assert min(cvs) < 0.25 < max(cvs)


def test_the_dead_band_goes_dynamic_for_one_long_task():
    times = [1.0] * 127 + [4.0]  # 128 probe tasks (64 ranks): one at 4x the median
    kind, why = choose(times, n_left=10_000, n_ranks=64)
    cv = float(np.std(times, ddof=1) / np.mean(times))
    assert STATIC_CV < cv < DYNAMIC_CV
    assert kind == "dynamic" and "heavy tail" in why and "4.00x the median" in why
    kind, why = choose([1.0] * 127 + [2.9], n_left=10_000, n_ranks=64)
    assert kind == "static" and "uniform" in why  # cv 0.17
    kind, why = choose(list(_with_cv(np.arange(8.0), 0.28)), n_left=100, n_ranks=4)
    assert kind == "static" and "even spread" in why and f"<= {OUTLIER}" in why


@pytest.mark.parametrize(
    "requested, used, kept",
    [
        ("auto", "static", "static"),
        ("auto", "dynamic", "dynamic"),
        ("auto", "auto", "auto"),  # stopped before auto chose: probe again
        ("auto", None, "auto"),
        ("dynamic", "static", "dynamic"),  # asked for: the user's choice wins
    ],
)
def test_a_resume_keeps_the_schedule_auto_chose(requested, used, kept):
    stored = {} if used is None else {"schedule_used": used}
    assert resumed_schedule(requested, stored) == kept


def _warm_up(q, n_ranks):
    """Each rank's first task: a warm-up from the front, back at once (its time is not counted)."""
    got = [q.next(r, 50) for r in range(n_ranks)]
    assert got == [(r, r + 1) for r in range(n_ranks)]
    for a, b in got:
        q.observe(a, b - a, [5.0])  # slow: first calls; left out of the probe
    return got


def test_auto_queue_probes_single_tasks_spread_over_the_range_then_hands_over():
    q = AutoQueue(0, 100, 2, Segments([(0, 100)]))
    _warm_up(q, 2)
    assert [q.next(r, 50) for r in (0, 1, 0, 1)] == [(50, 51), (11, 12), (72, 73), (33, 34)]
    assert q.next(0, 50) == (2, 3)  # while the probe runs: single tasks from the front
    assert q.name == "auto" and q.remaining == 93
    q.observe(50, 1, [0.01])
    q.observe(11, 1, [0.01])
    q.observe(72, 1, [0.01])
    assert q.name == "auto"  # the probe task in row 33 is not back yet
    q.observe(33, 1, [0.0101])
    assert q.name == "static" and "uniform" in q.reason and "probe of 4 tasks" in q.reason
    # the 93 rows left (probe rows taken out) split 47 + 46 between the ranks
    got = [q.next(0, 1000) for _ in range(5)] + [q.next(1, 1000) for _ in range(3)]
    assert got == [(3, 11), (12, 33), (34, 50), (51, 53), None, (53, 72), (73, 100), None]
    assert q.next(0, 1000) is None and q.remaining == 0
    assert make_queue("dynamic", [(0, 5)], 2).name == "dynamic"


def test_a_slow_warm_up_task_does_not_make_a_uniform_study_look_skewed():
    """examples/stratified.py at np=2: a rank's first task took 63 ms, the rest about 14."""
    q = AutoQueue(0, 100, 2, Segments([(0, 100)]))
    first = [q.next(r, 1) for r in (0, 1)]
    probes = [q.next(r % 2, 1) for r in range(4)]
    q.observe(first[1][0], 1, [0.063])
    q.observe(first[0][0], 1, [0.017])
    for a, _ in probes:
        q.observe(a, 1, [0.014])
    assert q.name == "static" and "probe of 4 tasks" in q.reason


@pytest.mark.parametrize("n", [1, 3, 4, 7, 12, 54, 1000, 10**9])
@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_probe_positions_are_distinct_and_spread(n, size):
    size = min(size, n)
    pos = probe_positions(5, 5 + n, size)
    assert len(set(pos)) == size and all(5 <= p < 5 + n for p in pos)
    assert probe_positions(5, 5 + n, size) == pos  # deterministic
    if size >= 2:  # both halves of the range are probed
        assert min(pos) - 5 < n / 2 <= max(pos) - 5 + 1
    if size >= 4 and n >= 12:  # and not only one phase of a grid with a stride of 2 or 3
        assert all(len({(p - 5) % m for p in pos}) > 1 for m in (2, 3))


def test_auto_sees_the_slow_axis_of_a_grid_ordered_slow_outermost():
    """The joblib talk's case: 54 tasks, time proportional to n_estimators (outermost)."""
    trees = [t for t in (100, 200, 300) for _ in range(18)]
    q = AutoQueue(0, 54, 2, Segments([(0, 54)]))
    _warm_up(q, 2)
    probes = [q.next(r % 2, 1) for r in range(4)]
    assert {trees[a] for a, _ in probes} == {100, 200, 300}
    for a, _ in probes:
        q.observe(a, 1, [trees[a] / 1000])
    assert q.name == "dynamic" and "skewed" in q.reason


def test_auto_decides_skewed_when_a_probe_task_is_still_out_long_after_the_rest():
    q = AutoQueue(0, 1000, 2, Segments([(0, 1000)]))
    _warm_up(q, 2)
    handed = [q.next(r % 2, 1) for r in range(20)]
    assert handed[0] == (500, 501)
    for a, _ in handed[1:17]:  # row 500, a probe task, never comes back
        q.observe(a, 1, [0.001])
    assert q.name == "dynamic" and q.reason.startswith("1 probe task still running after 16 others")


@pytest.mark.parametrize("n_ranks", [1, 2, 3])
@pytest.mark.parametrize("kind", ["static", "dynamic"])
def test_auto_runs_every_pending_row_exactly_once_over_gappy_segments(kind, n_ranks):
    segments = [(0, 3), (7, 8), (10, 40), (45, 46)]
    q = make_queue("auto", segments, n_ranks)
    got = [q.next(r % n_ranks, 1) for r in range(2 * n_ranks + 3)]
    for a, b in got:
        q.observe(a, b - a, [0.1 if kind == "static" else 0.1 * a] * (b - a))
    assert q.name == kind
    got += [b for _, b in _drain(q, n_ranks, 4)]
    rows = sorted(r for a, b in got for r in range(a, b))
    assert rows == [r for a, b in segments for r in range(a, b)]


def test_segments_map_an_index_onto_pending_rows_cut_at_segment_ends():
    segs = Segments([(2, 5), (5, 5), (9, 12)])  # 3 + 3 rows; the empty one is dropped
    assert segs.total == 6
    assert segs.rows(0, 6) == ((2, 5), 3) and segs.rows(3, 6) == ((9, 12), 6)
    assert segs.rows(4, 5) == ((10, 11), 5)


@pytest.mark.parametrize("kind", ["static", "dynamic", "auto"])
def test_every_queue_covers_exactly_the_pending_rows(kind):
    segments = [(0, 3), (7, 8), (10, 40), (45, 46)]
    q = make_queue(kind, segments, 3)
    probed = []
    if kind == "auto":
        probed = [q.next(r % 3, 1) for r in range(6)]
        q.observe(0, 100, [0.1] * 6)
    got = sorted(probed + [b for _, b in _drain(q, 3, 4)])
    rows = [r for a, b in got for r in range(a, b)]
    assert rows == [r for a, b in segments for r in range(a, b)]


def test_block_seconds_short_but_rank_0_serves_at_most_1000_requests_a_second():
    assert block_seconds(4, 30.0) == 0.1
    assert block_seconds(100, 30.0) == 0.1
    assert block_seconds(4000, 30.0) == 4.0  # 4,000 ranks asking every 4 s: 1,000 a second
    assert block_seconds(4000, 8.0) == 2.0  # never more than a quarter of the flush interval
    assert block_seconds(2, 0.2) == 0.05


def test_block_rows_bounds_memory_and_time():
    assert block_rows(None, 4, 10**9, None, 1.0) == 1  # nothing known yet
    # memory-bound: 4 ranks x 10 rows x 100 B
    assert block_rows(100, 4, 4000, 1e-6, 1.0, n_seen=10**6) == 10
    assert block_rows(8, 4, 10**9, 0.1, 1.0, n_seen=100) == 10  # time: ~1 s of 0.1 s tasks
    assert block_rows(10**9, 4, 10, 0.1, 1.0, n_seen=100) == 1
    # evidence-bound: 7 fast tasks back do not justify a block of 1,000 rows
    assert block_rows(8, 4, 10**9, 1e-4, 0.1, n_seen=7) == 7
    assert block_rows(8, 4, 10**9, 1e-4, 0.1, n_seen=0) == 1


def test_task_slice():
    assert parse_task_slice(None, 10) == range(10)
    assert parse_task_slice("2:5", 10) == range(2, 5)
    assert parse_task_slice(":3", 10) == range(0, 3)
    assert parse_task_slice("7:", 10) == range(7, 10)
    for bad in ["5:2", "0:11", "a:b", "3"]:
        with pytest.raises(UsageError, match="--tasks"):
            parse_task_slice(bad, 10)


def test_unknown_schedule():
    assert check_schedule("static") == "static"
    with pytest.raises(UsageError, match="expected one of auto, static, dynamic"):
        check_schedule("fancy")


def test_every_queue_has_the_base_class_interface():
    from mpibatch.schedule import Queue

    for kind in ("static", "dynamic", "auto"):
        q = make_queue(kind, [(0, 10), (20, 25)], 2)
        assert isinstance(q, Queue) and q.remaining == 15
        q.observe(0, 1, [0.01])  # a no-op unless the queue probes task times
        assert isinstance(q.reason, str) and q.name in ("static", "dynamic", "auto")
    assert make_queue("dynamic", [(0, 5)], 2).reason == ""  # chosen by the user, not the queue


def test_auto_over_part_of_the_segments_hands_out_only_that_part():
    segs = Segments([(0, 5), (10, 20)])  # index 3..12 = rows 3, 4, 10..17
    q = AutoQueue(3, 12, 1, segs)
    got = [q.next(0, 1), q.next(0, 1)]
    for a, b in got:
        q.observe(a, b - a, [0.1])
    got += [b for _, b in _drain(q, 1, 100)]
    assert sorted(r for a, b in got for r in range(a, b)) == [3, 4, *range(10, 17)]
