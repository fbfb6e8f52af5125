"""``mpibatch rerun FILE --task N``: one stored task again, alone, in this process (no MPI),
with its recorded params, stream and BLAS threads, compared with the stored row."""

from __future__ import annotations

import bdb
import pdb as _pdb  # the name pdb is rerun's flag
import sys
import traceback
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import _inputs
from ._failtext import storable_text
from ._records import _items
from .errors import UsageError
from .grid import Grid
from .layout import ERROR_FIELDS, Status
from .results import open_results
from .runner import TaskContext, blas_limits
from .streams import task_generator
from .taskfile import file_hash, load_task_file, wants_context

_OWN_FRAMES = (__file__, _pdb.__file__, bdb.__file__)  # not shown in a task's traceback


def rerun(
    path: str, task_id: int, *, pdb: bool = False, force: bool = False, out: TextIO | None = None
) -> int:
    """Run task ``task_id`` of ``path`` here; 0 if it matches the stored row (or none is
    stored), 1 if it differs or raised. UsageError if it cannot be rerun faithfully."""
    out = sys.stdout if out is None else out
    res = open_results(path)
    row = _row(res, task_id, path)
    if res.attrs.get("streams") == "rank":
        raise UsageError(
            f"{path} was run with --streams rank: a task's stream depends on which tasks ran "
            "before it on its rank, so one task cannot be reproduced alone; use --streams task "
            "(the default) for runs you may want to rerun"
        )
    if _is_command(res.attrs):
        fn, module = _load_command(res.attrs, path, force), None
    else:
        fn, module = _load(res.attrs, force)
    params = Grid.from_json(res.attrs["grid"]).params(task_id)
    out.write(f"task {task_id}: {', '.join(f'{k}={v!r}' for k, v in params.items())}\n")
    with _inputs.alone(module, path, force) as inputs:  # load(), setup(ctx), teardown
        value, exc = _call(fn, params, res.attrs, task_id, pdb, inputs)
    if isinstance(exc, bdb.BdbQuit):
        out.write(f"debugger quit before task {task_id} finished; nothing to compare\n")
        return 1
    now = dict(_items(value, task_id)) if exc is None else {}
    shown = "".join(f"  {k}: {_fmt(v)}\n" for k, v in now.items())
    out.write(f"result:\n{shown}" if exc is None else f"raised {_error(exc)}\n{_traceback(exc)}")
    return _compare(res, row, task_id, now, exc, out)


def _row(res, task_id: Any, path: str) -> int:
    """The row of ``task_id`` in the file, or a UsageError naming the ids it holds."""
    ok = isinstance(task_id, (int, np.integer)) and not isinstance(task_id, bool)
    hits = np.flatnonzero(res.task_id == task_id) if ok else np.empty(0, np.intp)
    if len(hits) == 0:
        ids = res.task_id
        held = f"tasks {ids.min()} to {ids.max()}" if ids.size else "no tasks"
        raise UsageError(f"task {task_id!r} is not in {path}; it holds {held}: pass one of those")
    return int(hits[0])


def _load(attrs: dict, force: bool):
    """The task function the run recorded, refused when its file is gone or edited."""
    src = str(attrs.get("task_file") or "")
    recorded = str(attrs.get("function") or "task")
    name = recorded.split(":")[-1]
    if not src:
        raise UsageError(
            f"the file records no source file for function {name!r}; rerun needs a task "
            "defined at the top level of a .py file"
        )
    if not Path(src).is_file():
        raise UsageError(
            f"task file {src!r} not found (the run recorded it there); restore it at that "
            "path to rerun"
        )
    sha = attrs.get("task_file_sha256") or ""
    if sha and not force and file_hash(src) != sha:
        raise UsageError(
            f"task file {src!r} changed since the run (its sha256 differs); restore it, or "
            "pass --force to run the edited file anyway"
        )
    if "<locals>" in name:
        raise UsageError(
            f"task function {name!r} was defined inside another function, so it cannot be "
            "imported; define it at the top level of its file for runs you may want to rerun"
        )
    head, *rest = name.split(".")
    try:
        with _no_study_runs():
            fn, module = load_task_file(src, head)
    except _StudyAtImport:
        raise UsageError(
            f"{src} runs a study (mpibatch.run) when imported, which would write its results "
            "file again; put that code under if __name__ == '__main__': and rerun"
        ) from None
    for part in rest:
        fn = getattr(fn, part)
    return fn, module


def _is_command(attrs: dict) -> bool:
    return bool(attrs.get("command_template"))


def _load_command(attrs: dict, path: str, force: bool):
    """The command task a ``--command`` run recorded; refused if its program changed."""
    from ._command import from_attrs

    program, sha = str(attrs.get("task_file") or ""), str(attrs.get("task_file_sha256") or "")
    if program and sha and not force:
        if not Path(program).is_file() or file_hash(program) != sha:
            raise UsageError(
                f"program {program!r} is gone or changed since the run (its sha256 differs); "
                "restore it, or pass --force to run it as it is now"
            )
    return from_attrs(attrs, path)


class _StudyAtImport(BaseException):
    """Raised by mpibatch.run while rerun imports a task file (not an Exception on purpose:
    the import's own error handling must not swallow it)."""


@contextmanager
def _no_study_runs():
    """While a task file is imported here, mpibatch.run refuses instead of running."""
    import mpibatch

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise _StudyAtImport()

    before = mpibatch.__dict__.get("run")
    mpibatch.run = refuse
    try:
        yield
    finally:
        if before is None:
            del mpibatch.run
        else:
            mpibatch.run = before


def _call(fn, params: dict, attrs: dict, task_id: int, use_pdb: bool, inputs: dict):
    """Run the task as the run did: ``(value, None)`` or ``(None, exception)``."""
    args = [params, task_generator(int(attrs["seed"]), task_id, str(attrs.get("streams", "task")))]
    if wants_context(fn):
        args.append(TaskContext(task_id, 0, 0, 1, params, **inputs))
    try:
        with blas_limits(int(attrs.get("threads_per_rank", 1))):
            if use_pdb:
                return _pdb.runcall(fn, *args), None
            return fn(*args), None
    except Exception as exc:
        return None, exc


def _compare(res, row: int, task_id: int, now: dict, exc, out: TextIO) -> int:
    status = Status(int(res.status[row]))
    if status == Status.FAILED:
        return _vs_failure(res, task_id, exc, out)
    if status == Status.PENDING:
        out.write(f"task {task_id} has no stored result (it is pending in the file)\n")
        return 0 if exc is None else 1
    if exc is not None:
        out.write("DIFFERS from the stored result: the run finished this task, now it raised\n")
        return 1
    diffs = _differences({k: np.asarray(v[row]) for k, v in res.results.items()}, now)
    if not diffs:
        out.write("matches the stored result\n")
        return 0
    out.write("DIFFERS from the stored result:\n" + "".join(diffs))
    return 1


def _vs_failure(res, task_id: int, exc, out: TextIO) -> int:
    errors = res.errors
    hits = np.flatnonzero(np.asarray(errors.get("task", ())) == task_id)
    k = int(hits[0]) if len(hits) else 0
    stored = f"{errors['type'][k]}: {errors['message'][k]}" if len(hits) else "(no record)"
    out.write(f"stored: task {task_id} failed with {stored}\n")
    if exc is None:
        out.write("now: it did not fail - DIFFERS from the stored failure\n")
        return 1
    same = " (the same error)" if _as_stored(exc) == stored else " (a different error)"
    out.write(f"now: it failed again with {_error(exc)}{same}\n")
    return 1


def _differences(stored: dict[str, np.ndarray], now: dict[str, Any]) -> list[str]:
    """One entry per key whose stored and new values are not identical."""
    lines = []
    for key in dict.fromkeys([*stored, *now]):
        a, b = stored.get(key), _array(now[key]) if key in now else None
        if a is not None and b is not None and _same(a, b):
            continue
        was = "(missing)" if a is None else f"{_fmt(a)}  [{_kind(a)}]"
        is_ = "(missing)" if key not in now else f"{_fmt(now[key])}  [{_kind(b)}]"
        lines.append(f"  {key}:\n    stored  {was}\n    now     {is_}\n")
    return lines


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """True if ``b`` would be stored as exactly ``a`` (same shape, safe cast, equal values)."""
    ok = a.shape == b.shape and b.dtype.kind in "biufc" and np.can_cast(b.dtype, a.dtype, "safe")
    return ok and bool(np.array_equal(a, b.astype(a.dtype), equal_nan=True))


def _array(value: Any) -> np.ndarray | None:  # None for a ragged sequence
    try:
        return np.asarray(value)
    except ValueError:
        return None


def _kind(arr: np.ndarray | None) -> str:
    return "ragged" if arr is None else f"{arr.dtype}{list(arr.shape) if arr.shape else ''}"


def _fmt(value: Any) -> str:
    """A scalar as its value, an array as numpy's repr (summarised and cut when long)."""
    arr = _array(value)
    if arr is None or arr.dtype.kind not in "biufc":
        text = repr(value)
    elif arr.ndim == 0:
        text = repr(arr.item())
    else:
        with np.printoptions(threshold=20, edgeitems=3):
            text = repr(arr).replace("\n", "\n      ")
    return text if len(text) <= 400 else text[:400] + " ..."  # cut a very long value


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def _as_stored(exc: BaseException) -> str:
    """``_error(exc)`` as the file holds it (escaped and cut: layout.failure_record)."""
    chars = {f.name: f.chars for f in ERROR_FIELDS}
    kind, _, message = _error(exc).partition(": ")
    return f"{storable_text(kind, chars['type'])}: {storable_text(message, chars['message'])}"


def _traceback(exc: BaseException) -> str:
    """The traceback from the task's own frames on (not rerun's, pdb's or bdb's)."""
    if isinstance(getattr(exc, "report", None), str):  # a command: its stderr tail
        return exc.report  # type: ignore[attr-defined]
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _OWN_FRAMES:
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
