import numpy as np
import pytest

from mpibatch.errors import UsageError
from mpibatch.streams import (
    RankStreams,
    SeedSequenceStreams,
    TaskStreams,
    check_seed,
    make_streams,
    spawned_states,
    task_generator,
)

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


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**63 - 1, 2**130 + 7])
def test_seedsequence_streams_equal_numpys_own_expression_and_spawn(seed):
    s = SeedSequenceStreams(seed)
    ids = [*range(40), 7, 3, *range(1000, 1100), 2**32 - 2, 2**32 - 1, 2**32, 2**40 + 5, 0]
    for i in ids:  # runs of consecutive ids (batched) and jumps (one at a time)
        ref = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(i,))))
        assert s.for_task(i).random(3).tobytes() == ref.random(3).tobytes(), i
    kids = np.random.SeedSequence(seed).spawn(8)
    for i, kid in enumerate(kids):  # equal to SeedSequence(seed).spawn(n)[i]
        assert s.for_task(i).integers(2**63) == np.random.Generator(np.random.PCG64(kid)).integers(
            2**63
        )


def test_spawned_states_match_generate_state():
    ids = np.arange(0, 3000, dtype=np.uint64)
    words = spawned_states(99, ids)
    for i in (0, 1, 2, 1234, 2999):
        ref = np.random.SeedSequence(99, spawn_key=(i,)).generate_state(4, np.uint64)
        assert words[i].tolist() == ref.tolist()


def test_the_reference_generator_knows_both_schemes():
    a = task_generator(5, 3, "seedsequence").random()
    b = np.random.Generator(np.random.PCG64(np.random.SeedSequence(5, spawn_key=(3,)))).random()
    assert a == b and task_generator(5, 3).random() != a
