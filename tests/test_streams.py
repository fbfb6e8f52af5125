import numpy as np
import pytest

from mpibatch.errors import UsageError
from mpibatch.streams import RankStreams, TaskStreams, check_seed, make_streams, task_generator

IDS = [0, 1, 2, 7, 1000, 123_456_789, 2**40 + 3, 2**63 - 1, 2**64 + 5]


def reference(seed, i, n=6):
    return np.random.Generator(np.random.PCG64(seed).jumped(i)).random(n)


def test_the_in_place_state_writer_is_used_here():
    assert TaskStreams(1).fast  # numpy's layout was verified; else the setter is used


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("seed", [0, 42, 2**63 - 1, 2**100])
def test_task_stream_is_bit_identical_to_numpy_jumped(seed, fast):
    s = TaskStreams(seed, fast=fast)
    for i in IDS:  # arbitrary order: every call re-derives from the root
        assert s.for_task(i).random(6).tobytes() == reference(seed, i).tobytes()


@pytest.mark.parametrize("fast", [True, False])
def test_consecutive_ids_use_the_cheap_step_and_stay_identical(fast):
    s = TaskStreams(7, fast=fast)
    for i in range(500, 700):
        got = s.for_task(i)
        # draw a different amount each task so the state moves unevenly
        assert (
            got.normal(size=i % 5 + 1).tobytes()
            == np.random.Generator(np.random.PCG64(7).jumped(i)).normal(size=i % 5 + 1).tobytes()
        )


@pytest.mark.parametrize("fast", [True, False])
def test_stream_is_reset_even_after_a_32bit_draw_leaves_a_cached_half(fast):
    s = TaskStreams(3, fast=fast)
    s.for_task(10).integers(0, 10, dtype=np.uint32)  # leaves has_uint32 set
    assert (
        s.for_task(11).integers(0, 2**31, size=4, dtype=np.uint32).tolist()
        == np.random.Generator(np.random.PCG64(3).jumped(11))
        .integers(0, 2**31, size=4, dtype=np.uint32)
        .tolist()
    )


def test_rank_streams_continue_one_jumped_stream():
    r = RankStreams(5, rank=2)
    a = r.for_task(0).random(3)
    b = r.for_task(1).random(3)
    ref = task_generator(5, 2).random(6)
    assert np.array_equal(np.concatenate([a, b]), ref)


def test_make_streams_kinds():
    assert isinstance(make_streams("task", 1, 0), TaskStreams)
    assert isinstance(make_streams("rank", 1, 0), RankStreams)


@pytest.mark.parametrize("bad", [-1, 1.5, "42", True, None])
def test_bad_seed_says_what_was_expected(bad):
    with pytest.raises(UsageError, match="expected a non-negative integer"):
        check_seed(bad)
