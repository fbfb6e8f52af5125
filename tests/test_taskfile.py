import pytest

from mpibatch.errors import TaskFileError
from mpibatch.taskfile import file_hash, load_task_file, wants_context


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


def test_a_file_that_is_no_python_module_and_the_hash(tmp_path):
    f = tmp_path / "task.txt"
    f.write_text("def task(p, r):\n    return 1\n")
    with pytest.raises(TaskFileError, match="not a Python module"):
        load_task_file(f)
    assert file_hash(f) == file_hash(str(f)) and len(file_hash(f)) == 64
