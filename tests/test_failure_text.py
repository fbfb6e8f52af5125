"""A failed task's text, whatever it holds, is stored: _failtext.storable_text escapes NUL and
lone surrogates and cuts huge text (noting the cut); every writer of failures goes through
it, so the close, a resume, merge and the readers never trip on one."""

import json
import os
from pathlib import Path

import h5py
import pytest

import mpibatch
from mpibatch import merge
from mpibatch._failtext import storable_text
from mpibatch._records import Columns, infer_schema
from mpibatch.grid import Grid
from mpibatch.layout import ERROR_FIELDS, Status, failure_record, failures_path
from mpibatch.report import format_errors
from mpibatch.results import open_results, read_failures
from mpibatch.runner import TaskFailure
from mpibatch.store import Store

TASKS = Path(__file__).parent / "mpi" / "tasks"
HUGE = "a" * 10_000_000 + "b" * 10_000_000  # 20 MB of text
ODD = {
    1: "nul\x00byte",
    2: "surrogate " + os.fsdecode(b"\xff\xfe"),
    3: HUGE,
}


@pytest.mark.parametrize(
    "text",
    ["", "plain text", "héllo wörld ✓ 你好 🎉", "line 1\nline 2\ttab", "back\\slash \\x00"],
)
def test_ordinary_text_is_unchanged(text):
    assert storable_text(text, 1_000) == text


def test_nul_bytes_are_escaped():
    assert storable_text("a\x00b\x00", 100) == "a\\x00b\\x00"


def test_lone_surrogates_are_escaped_and_encode_as_utf8():
    odd = os.fsdecode(b"caf\xc3\xa9 \xff\xfe")  # valid UTF-8, then two odd bytes
    out = storable_text(odd, 100)
    assert out == "café \\udcff\\udcfe"
    out.encode("utf-8")  # strict: would raise on a surrogate


def test_huge_text_is_cut_to_the_limit_with_the_cut_noted():
    out = storable_text(HUGE, 10_000)
    assert len(out) <= 10_000
    assert out.startswith("a" * 2_000) and out.endswith("b" * 7_000)
    assert "[cut: 20,000,000 chars, kept the first 2,475 and last 7,425]" in out
    assert storable_text(out, 10_000) == out  # cut once: passing again changes nothing


def test_text_at_the_limit_is_kept_whole():
    assert storable_text("x" * 500, 500) == "x" * 500
    assert "[cut: 501 chars" in storable_text("x" * 501, 500)


def test_escaping_comes_before_the_cut_so_the_result_fits():
    out = storable_text("\x00" * 1_000, 1_000)  # 4,000 characters once escaped
    assert len(out) <= 1_000 and "\x00" not in out and "[cut: 4,000 chars" in out


def test_a_failure_record_holds_storable_text_in_every_text_field():
    f = TaskFailure(7, 1, "h\x00st", "Bad\udcffType", ODD[2], "tb " + HUGE)
    rec = failure_record(f)
    assert rec["task"] == 7 and rec["rank"] == 1
    assert rec["host"] == "h\\x00st" and rec["type"] == "Bad\\udcffType"
    assert rec["message"] == "surrogate \\udcff\\udcfe"
    limits = {fld.name: fld.chars for fld in ERROR_FIELDS}
    assert len(rec["traceback"]) <= limits["traceback"] < len(HUGE)
    json.dumps(rec, ensure_ascii=False).encode("utf-8")  # strict UTF-8
    assert failure_record(rec) == rec  # a record read back passes through unchanged


def _failed_store(path, n=4):
    store = Store.create(path, Grid({"k": list(range(n))}), range(n), {"seed": 1})
    schema = infer_schema(0.5, 0)
    store.add_results(schema)
    cols = Columns(schema, n)
    cols.status[:] = [Status.DONE] + [Status.FAILED] * (n - 1)
    cols.results["value"][:] = 0.5
    store.write_rows(0, cols, rank=0)
    store.write_failures(
        [TaskFailure(t, 0, "h", "ValueError", m, "tb: " + m) for t, m in ODD.items()]
    )
    return store


def _check_readable(path):
    res = open_results(path)
    assert sorted(res.errors["task"].tolist()) == [1, 2, 3]
    by_task = dict(zip(res.errors["task"].tolist(), res.errors["message"], strict=True))
    assert by_task[1] == "nul\\x00byte" and by_task[2] == "surrogate \\udcff\\udcfe"
    assert "[cut: 20,000,000 chars" in by_task[3]
    shown = format_errors(res, full=True)
    shown.encode("utf-8")  # printable on a UTF-8 terminal
    assert "nul\\x00byte" in shown and len(shown) < 200_000


def test_odd_failures_survive_the_close_a_resume_and_merge(tmp_path):
    path = tmp_path / "s.h5"
    store = _failed_store(path)
    assert os.path.getsize(failures_path(path)) < 200_000  # the sidecar holds the cut text
    store.f.close()  # killed before its close: the failures wait in the sidecar
    _check_readable(path)
    Store.reopen(path, range(4)).close({})  # resumed and closed: into /errors
    _check_readable(path)
    with h5py.File(path, "r") as f:
        assert sorted(f["errors/task"][()].tolist()) == [1, 2, 3]
    Store.reopen(path, range(4)).close({})  # and again: /errors back out and in
    _check_readable(path)


def test_an_old_sidecar_with_raw_text_is_escaped_when_read(tmp_path):
    """A sidecar left by a version that wrote the text as it came (JSON escapes it)."""
    path = tmp_path / "s.h5"
    store = _failed_store(path)
    store.f.close()
    raw = [
        {"task": t, "rank": 0, "host": "h", "type": "E", "message": m, "traceback": m}
        for t, m in ODD.items()
    ]
    failures_path(path).write_text("".join(json.dumps(r) + "\n" for r in raw) + '{"torn')
    assert [r["task"] for r in read_failures(failures_path(path))] == [1, 2, 3]
    _check_readable(path)
    Store.reopen(path, range(4)).close({})
    _check_readable(path)


def test_merge_of_parts_with_odd_failures(tmp_path):
    task_file = str(TASKS / "odd_messages.py")
    parts = [str(tmp_path / f"p{i}.h5") for i in range(2)]
    for part, tasks in zip(parts, ("0:3", "3:6"), strict=True):
        mpibatch.run(task_file, seed=3, out=part, tasks=tasks, quiet=True)
    failures_path(parts[1]).write_text(  # part 1 killed after its close, with a raw line
        json.dumps(
            {
                "task": 5,
                "rank": 0,
                "host": "h",
                "type": "E",
                "message": "\x00",
                "traceback": "\udcff",
            }
        )
        + "\n"
    )
    merge.merge(parts, str(tmp_path / "m.h5"))
    res = open_results(tmp_path / "m.h5")
    assert sorted(res.errors["task"].tolist()) == [1, 2, 3, 4]  # task 5 is done: no record
    by_task = dict(zip(res.errors["task"].tolist(), res.errors["message"], strict=True))
    assert by_task[1] == "nul\\x00byte"
    assert by_task[2] == "cannot open /data/caf\\udce9"
    assert "[cut: 20,000,000 chars" in by_task[3] and len(by_task[3]) <= 10_000
    assert by_task[4] == "'\\udcff'"  # str() of a KeyError: its key's repr
    format_errors(res, full=True).encode("utf-8")


def test_rerun_of_an_odd_failure_knows_it_is_the_same_error(tmp_path):
    """The file holds the escaped, cut text: rerun compares the new error in that form."""
    import io

    from mpibatch.rerun import rerun

    out = str(tmp_path / "odd.h5")
    mpibatch.run(str(TASKS / "odd_messages.py"), seed=3, out=out, quiet=True)
    for task in (1, 2, 3, 4):
        buf = io.StringIO()
        assert rerun(out, task, out=buf) == 1
        last = buf.getvalue().rstrip().splitlines()[-1]
        assert last.endswith("(the same error)"), (task, last[-200:])
