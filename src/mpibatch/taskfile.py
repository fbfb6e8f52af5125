"""Loading the task: a task file imported as a module, its hash, the task's signature."""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import TaskFileError


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_task_file(path: str | Path, function: str = "task") -> tuple[Callable, Any]:
    """Import ``path`` as a module and return (its ``function``, the module)."""
    p = Path(path)
    if not p.is_file():
        raise TaskFileError(
            f"task file {str(path)!r} not found; expected a Python file defining "
            f"{function}(params, rng) - check the path"
        )
    name = "mpibatch_task_" + hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:12]
    spec = importlib.util.spec_from_file_location(name, p)
    if spec is None or spec.loader is None:  # a name Python does not import (not .py)
        raise TaskFileError(
            f"task file {str(path)!r} is not a Python module; expected a .py file defining "
            f"{function}(params, rng)"
        )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise TaskFileError(
            f"task file {str(path)!r} has a syntax error at line {exc.lineno}: {exc.msg}; "
            "fix it (python -m py_compile FILE shows it)"
        ) from None
    except Exception as exc:
        raise TaskFileError(
            f"task file {str(path)!r} failed to import: {type(exc).__name__}: {exc}; "
            "fix the error (python FILE shows the traceback)"
        ) from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise TaskFileError(
            f"task file {str(path)!r} defines no function {function!r}; expected "
            f"def {function}(params, rng): ... (or pass --function NAME)"
        )
    return fn, module


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
