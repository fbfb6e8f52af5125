"""Loading the task: a task file imported as ``python FILE`` would (without its ``__main__``
block), its hash, and the task's signature.

The file's directory goes first on ``sys.path`` (so ``from helpers import f`` works next to
it), and the file is imported under its own name where that name is free (so functions
defined in it pickle to the children of spawn/forkserver pools inside a task).
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import TaskFileError


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _module_name(p: Path) -> str:
    """The file's own name if importing that name finds this file, else a private one."""
    name = p.stem
    if name.isidentifier():
        known = sys.modules.get(name)
        if known is not None:
            if Path(getattr(known, "__file__", "") or "").resolve() == p:
                return name
        else:
            try:
                spec = importlib.util.find_spec(name)
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin and Path(spec.origin).resolve() == p:
                return name
    return "mpibatch_task_" + hashlib.sha1(str(p).encode()).hexdigest()[:12]


def _execute(path: str | Path, name: str, p: Path) -> ModuleType:
    """Run the file as module ``name`` (anew each time, as a fresh import would)."""
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:  # a name Python does not import (not .py)
        raise TaskFileError(
            f"task file {str(path)!r} is not a Python module; expected a .py file defining "
            "task(params, rng)"
        )
    module = importlib.util.module_from_spec(spec)
    before = sys.modules.get(name)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        if before is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = before
        raise _import_error(path, p, exc) from None
    return module


def _import_error(path: str | Path, p: Path, exc: BaseException) -> BaseException:
    where = f"task file {str(path)!r}"
    if isinstance(exc, SyntaxError):
        return TaskFileError(
            f"{where} has a syntax error at line {exc.lineno}: {exc.msg}; "
            "fix it (python -m py_compile FILE shows it)"
        )
    if isinstance(exc, SystemExit):
        return TaskFileError(
            f"{where} called sys.exit({exc.code!r}) while being imported; expected it to "
            "only define things: put that code under if __name__ == '__main__':"
        )
    if isinstance(exc, Exception):
        return TaskFileError(
            f"{where} failed to import: {_one_line(exc)}; fix the error "
            f"(cd {p.parent} && python -c 'import {p.stem}' shows the traceback)"
        )
    return exc  # KeyboardInterrupt and the like go on as they are


def load_task_file(path: str | Path, function: str = "task") -> tuple[Callable, Any]:
    """Import ``path`` as a module and return (its ``function``, the module)."""
    p = Path(path)
    if not p.is_file():
        raise TaskFileError(
            f"task file {str(path)!r} not found; expected a Python file defining "
            f"{function}(params, rng) - check the path"
        )
    p = p.resolve()
    folder = str(p.parent)
    if not sys.path or sys.path[0] != folder:
        sys.path.insert(0, folder)  # as `python FILE` does: helpers beside it import
    module = _execute(path, _module_name(p), p)
    fn = getattr(module, function, None)
    if not callable(fn):
        raise TaskFileError(
            f"task file {str(path)!r} defines no function {function!r}; expected "
            f"def {function}(params, rng): ... (or pass --function NAME)"
        )
    return fn, module


def call_grid(module: ModuleType, path: str | Path) -> Any:
    """What the task file's ``grid()`` returns; if it raises, a one-line TaskFileError."""
    try:
        return module.grid()
    except (Exception, SystemExit) as exc:
        p = Path(path).resolve()
        raise TaskFileError(
            f"task file {str(path)!r}: grid() raised {_one_line(exc)}; fix grid() "
            f"(cd {p.parent} && python -c 'import {p.stem}; {p.stem}.grid()' shows the "
            "traceback)"
        ) from None


def _one_line(exc: BaseException, most: int = 300) -> str:
    """``Type: message``, the message's first line only and cut to ``most`` characters."""
    try:
        lines = str(exc).strip().splitlines()
    except Exception:  # noqa: BLE001  (a broken __str__)
        lines = []
    text = lines[0] if lines else ""
    text = text if len(text) <= most else text[: most - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def wants_context(fn: Callable) -> bool:
    """True for ``task(params, rng, ctx)``, False for ``task(params, rng)``; else raise."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    params = list(sig.parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    star = any(p.kind == p.VAR_POSITIONAL for p in params)
    if len(required) <= 3 and (len(positional) >= 3 or star):
        return True
    if len(required) <= 2 and len(positional) >= 2:
        return False
    name = getattr(fn, "__name__", "task")
    raise TaskFileError(
        f"task function {name}{sig}: expected {name}(params, rng) or {name}(params, rng, ctx)"
    )


def hook(module: ModuleType | None, name: str) -> Callable | None:
    """The task file's function ``name`` (``load``, ``setup``, ``teardown``) if it defines
    one itself: a ``load`` imported into it (``from json import load``) is not a hook."""
    fn = getattr(module, name, None) if module is not None else None
    if callable(fn) and getattr(fn, "__module__", None) == getattr(module, "__name__", ""):
        return fn
    return None
