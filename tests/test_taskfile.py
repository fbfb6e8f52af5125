"""Task files load as `python FILE` would, minus the __main__ block."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from mpibatch.errors import TaskFileError
from mpibatch.taskfile import file_hash, load_task_file, wants_context


@pytest.fixture
def clean_path(monkeypatch):
    """sys.path and sys.modules as they were, after the test."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def test_a_helper_module_beside_the_task_file_imports(tmp_path, clean_path):
    (tmp_path / "helpers_for_study.py").write_text("def twice(x):\n    return 2 * x\n")
    (tmp_path / "study_a.py").write_text(
        "from helpers_for_study import twice\n\ndef task(params, rng):\n    return twice(3)\n"
    )
    fn, _ = load_task_file(tmp_path / "study_a.py")
    assert fn({}, None) == 6
    assert sys.path[0] == str(tmp_path.resolve())


def test_the_file_is_imported_under_its_own_name_so_its_functions_pickle(tmp_path, clean_path):
    (tmp_path / "study_b.py").write_text(
        "def task(params, rng):\n    return 1\n\n"
        "if __name__ == '__main__':\n    raise SystemExit(9)\n"
    )
    fn, module = load_task_file(tmp_path / "study_b.py")
    assert module.__name__ == "study_b" and sys.modules["study_b"] is module
    blob = pickle.dumps(fn)  # by reference: study_b.task
    code = "import pickle, sys; print(pickle.loads(sys.stdin.buffer.read())({}, None))"
    r = subprocess.run(
        [sys.executable, "-c", code],
        input=blob,
        capture_output=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert r.stdout.strip() == b"1", r.stderr


def test_a_file_named_like_a_stdlib_module_gets_a_private_name(tmp_path, clean_path):
    (tmp_path / "json.py").write_text("def task(params, rng):\n    return 1\n")
    _, module = load_task_file(tmp_path / "json.py")
    assert module.__name__.startswith("mpibatch_task_")
    import json

    assert json.dumps([1]) == "[1]"  # the real json is untouched


def test_sys_exit_at_import_is_one_clear_error(tmp_path, clean_path):
    (tmp_path / "exits.py").write_text("import sys\nsys.exit(3)\n")
    with pytest.raises(TaskFileError, match=r"called sys.exit\(3\) while being imported"):
        load_task_file(tmp_path / "exits.py")
    assert "exits" not in sys.modules


def test_an_import_error_names_the_file_and_how_to_see_the_traceback(tmp_path, clean_path):
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    with pytest.raises(TaskFileError, match="failed to import: ModuleNotFoundError") as info:
        load_task_file(tmp_path / "broken.py")
    assert "import broken" in str(info.value)


def test_each_load_runs_the_file_anew(tmp_path, clean_path):
    src = tmp_path / "study_c.py"
    src.write_text("def task(params, rng):\n    return 1\n")
    assert load_task_file(src)[0]({}, None) == 1
    src.write_text("def task(params, rng):\n    return 2\n")
    assert load_task_file(src)[0]({}, None) == 2


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
