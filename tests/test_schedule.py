import pytest

from mpibatch.errors import UsageError
from mpibatch.schedule import (
    check_schedule,
    parse_task_slice,
    round_rows,
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


def test_round_rows_bound_root_memory_once_the_schema_is_known():
    assert round_rows(0, record_bytes=100, n_ranks=4, budget_bytes=4000) == 10
    assert round_rows(5, record_bytes=10**9, n_ranks=4, budget_bytes=10) == 1


def test_round_rows_double_while_the_schema_is_unknown():
    assert [round_rows(k, None, 4, 10**9, unknown_cap=8) for k in range(6)] == [1, 2, 4, 8, 8, 8]


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
    with pytest.raises(UsageError, match="expected one of"):
        check_schedule("fancy")
