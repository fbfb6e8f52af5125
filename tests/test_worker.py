import numpy as np
import pytest

from mpibatch._records import Columns, Packer, infer_schema
from mpibatch.errors import TaskFileError
from mpibatch.grid import Grid
from mpibatch.streams import TaskStreams, task_generator
from mpibatch.worker import Runner, blas_info, blas_limits, load_task_file, wants_context

INFO = {"rank": 1, "size": 2, "host": "nodeA", "local_rank": 1}


def test_signatures():
    assert wants_context(lambda params, rng: 0) is False
    assert wants_context(lambda params, rng, ctx: 0) is True
    assert wants_context(lambda params, rng, ctx=None: 0) is True
    assert wants_context(lambda *args: 0) is True
    for bad in (lambda p: 0, lambda a, b, c, d: 0):
        with pytest.raises(TaskFileError, match=r"expected <lambda>\(params, rng\)"):
            wants_context(bad)


def test_load_task_file_errors(tmp_path):
    with pytest.raises(TaskFileError, match="not found"):
        load_task_file(tmp_path / "none.py")
    f = tmp_path / "t.py"
    f.write_text("def other(p, r):\n    return 1\n")
    with pytest.raises(TaskFileError, match="defines no function 'task'"):
        load_task_file(f)
    fn, module = load_task_file(f, "other")
    assert fn(None, None) == 1 and module.other is fn


def _runner(fn, grid):
    return Runner(fn, grid, TaskStreams(11), INFO, clock_offset=0.0)


def test_runner_fills_rows_and_records_failures_with_rank_and_host():
    def fn(params, rng, ctx):
        if params["rep"] == 2:
            raise KeyError("boom")
        return {"x": rng.random(), "tid": ctx.task_id}

    grid = Grid(None, reps=5)
    schema = infer_schema({"x": 0.0, "tid": 0}, 0)
    cols = Columns(schema, 4)
    done = _runner(fn, grid).run(range(1, 5), cols, Packer(schema, 0))
    assert done.ran == 4 and cols.status.tolist() == [1, 2, 1, 1]
    assert cols.results["tid"].tolist() == [1, 0, 3, 4]
    assert cols.results["x"][0] == task_generator(11, 1).random()
    (fail,) = done.failures
    assert (fail.task_id, fail.type, fail.rank, fail.host) == (2, "KeyError", 1, "nodeA")
    assert fail.traceback.startswith("rank 1 on nodeA, task 2:")
    assert (cols.elapsed >= 0).all()


def test_runner_stops_at_a_result_that_changes_shape():
    def fn(params, rng):
        return np.zeros(3 if params["rep"] == 2 else 2)

    schema = infer_schema(np.zeros(2), 0)
    cols = Columns(schema, 4)
    done = _runner(fn, Grid(None, reps=4)).run(range(0, 4), cols, Packer(schema, 0))
    assert done.fatal is not None and "task 2" in str(done.fatal)
    assert cols.status.tolist() == [1, 1, 0, 0]


def test_blas_limits_is_a_context_manager_that_restores():
    import numpy  # noqa: F401  (loads the BLAS library)

    before = [d["num_threads"] for d in blas_info()]
    with blas_limits(1):
        assert all(d["num_threads"] == 1 for d in blas_info())
    assert [d["num_threads"] for d in blas_info()] == before
