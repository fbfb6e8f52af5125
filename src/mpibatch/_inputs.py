"""Shared inputs and per-rank setup: ``load()`` once, one read-only copy per node,
``setup(ctx)`` once per rank, ``teardown(state)`` at the end.

A task file may define ``load()`` (a dict of numpy arrays; ``shared_load = "every_node"``
runs it on every node's first rank instead of rank 0 alone, checked to load the same
bytes), ``setup(ctx)`` (its value is ``ctx.state`` in every task of the rank) and
``teardown(state)``; from Python, ``mpibatch.run(shared={"X": X})`` or ``shared=callable``.
_shared.session runs all of it around the tasks, with every MPI call. Errors
are agreed (one line naming the rank and host, every rank raises it: exit 2).
"""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from .errors import MpibatchError, TaskFileError, UsageError
from .runner import TaskContext, blas_limits
from .taskfile import hook

EVERY_NODE = "every_node"


@dataclass
class Hooks:
    """What the task file (or ``mpibatch.run(shared=...)``) asks for."""

    load: Callable[[], Any] | None = None
    setup: Callable[[Any], Any] | None = None
    teardown: Callable[[Any], Any] | None = None
    every_node: bool = False
    where: str = "load()"
    host: str = field(default_factory=socket.gethostname)  # in messages (the run: MPI's name)


@dataclass
class Inputs:
    """This rank's ``ctx.shared`` (read-only views, or None) and ``ctx.state``."""

    shared: Mapping[str, np.ndarray] | None = None
    state: Any = None
    teardown: Any = None  # the task file's teardown(state), run where the tasks ran
    # set once the rank's task process ran teardown on its state: None (fine) or the
    # (type, message) it raised; left NOT_RUN, the rank runs it on its own state
    torn: Any = "not run"

    def for_tasks(self) -> dict:
        return {"shared": self.shared, "state": self.state}


def hooks(shared: Any, module: Any, task_file: str = "") -> Hooks:
    """The hooks of a run: ``shared=`` (a dict or a callable) or the task file's ``load``."""
    h = Hooks(hook(module, "load"), hook(module, "setup"), hook(module, "teardown"))
    h.where = f"load() in task file {task_file!r}"
    mode = getattr(module, "shared_load", "rank0") if h.load is not None else "rank0"
    if mode not in ("rank0", EVERY_NODE):
        raise UsageError(
            f"shared_load in task file {task_file!r}: expected 'rank0' or 'every_node', "
            f"got {mode!r}"
        )
    h.every_node = mode == EVERY_NODE
    if shared is None:
        return h
    if h.load is not None:
        raise UsageError(
            f"shared=: task file {task_file!r} defines load() too; expected one source of "
            "shared inputs: drop shared= or the task file's load()"
        )
    if callable(shared):
        h.load, h.where = shared, "the shared= callable"
    else:
        h.load, h.where = (lambda: shared), "shared="
    return h


def check_arrays(value: Any, where: str) -> dict[str, np.ndarray]:
    """``value`` as {name: numpy array}, or a one-line UsageError saying how to fix it."""
    if not isinstance(value, Mapping):
        raise UsageError(
            f"{where}: expected a dict of name -> numpy array, got {type(value).__name__}; "
            "return e.g. {'X': X, 'y': y}"
        )
    out = {}
    for name, arr in value.items():
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise UsageError(
                f"{where}: expected names that are non-empty strings without '/', got {name!r}"
            )
        if not isinstance(arr, np.ndarray):
            raise UsageError(
                f"{where}: {name!r} is a {type(arr).__module__}.{type(arr).__name__}; "
                f"expected a numpy array: {_how(arr)}"
            )
        if arr.dtype.hasobject:
            raise UsageError(
                f"{where}: {name!r} has dtype {arr.dtype} (Python objects, not bytes); "
                "expected numbers, bools or fixed-width strings: e.g. arr.astype('U20')"
            )
        out[name] = arr
    return out


def _how(value: Any) -> str:
    kind = type(value).__module__.split(".")[0]
    if kind == "pandas":
        return "convert it with df.to_records(index=False) (or df.to_numpy() for one dtype)"
    if kind == "h5py":
        return "read it with ds[()] (or ds[...])"
    return "convert it with np.asarray(value) (one dtype) or build a structured array"


def _failed(h: Hooks, what: str, rank: int, exc: Exception, fix: str) -> TaskFileError:
    first = str(exc).splitlines()[0] if str(exc).strip() else ""
    return TaskFileError(
        f"{what} failed on rank {rank} on {h.host}: {type(exc).__name__}: {first}; {fix}"
    )


def load(h: Hooks, rank: int) -> dict[str, np.ndarray]:
    assert h.load is not None
    try:
        value = h.load()
    except MpibatchError:
        raise
    except Exception as exc:
        raise _failed(
            h, h.where, rank, exc, "fix it (call it alone to see the traceback)"
        ) from None
    return check_arrays(value, h.where)


def setup(h: Hooks, ctx: TaskContext, threads: int) -> Any:
    if h.setup is None:
        return None
    try:
        with blas_limits(threads):
            return h.setup(ctx)
    except MpibatchError:
        raise
    except Exception as exc:
        raise _failed(h, "setup(ctx)", ctx.rank, exc, "fix setup() in the task file") from None


def teardown(h: Hooks, inputs: Inputs, rank: int) -> TaskFileError | None:
    """Run ``teardown(state)`` here, unless the rank's task process ran it on its state."""
    fix = "fix teardown() (the results file is complete)"
    if h.teardown is None:
        return None
    if inputs.torn != "not run":  # (type, message) it raised there, or None
        if inputs.torn is None:
            return None
        kind, message = inputs.torn
        return _failed(h, "teardown(state)", rank, type(kind, (Exception,), {})(message), fix)
    try:
        h.teardown(inputs.state)
    except Exception as exc:
        return _failed(h, "teardown(state)", rank, exc, fix)
    return None


def records(specs: list, hashes: list[str], nbytes: int, n_nodes: int) -> dict:
    """What the file records under /shared: per array dtype, shape, bytes, SHA-256."""
    arrays = {
        s.name: {
            "dtype": dtype_text(s.dtype),
            "shape": list(s.shape),
            "nbytes": s.nbytes,
            "sha256": sha,
        }
        for s, sha in zip(specs, hashes, strict=True)
    }
    return {"bytes_per_node": nbytes, "nodes": n_nodes, "arrays": arrays}


def dtype_text(dtype: np.dtype) -> str:
    """A dtype as text: numpy's ``descr`` (``<f8``; a structured one as its list's repr,
    read back with ``descr_to_dtype(ast.literal_eval(text))``)."""
    descr = np.lib.format.dtype_to_descr(dtype)
    return descr if isinstance(descr, str) else repr(descr)


def resume_check(store, recorded: Callable[[], dict] | None, options) -> UsageError | None:
    """Rank 0, resuming: None if the inputs are those the file records (or --force)."""
    from .layout import read_shared

    old = read_shared(store.f).get("arrays", {})
    new = recorded()["arrays"] if recorded is not None else {}
    if options.force:
        return None
    return _difference(f"cannot resume '{store.path}'", old, new, "resume")


def _difference(head: str, old: dict, new: dict, verb: str) -> UsageError | None:
    """How the recorded inputs ``old`` and the loaded ``new`` differ (None if they agree)."""
    unhashed = [k for k in old if not old[k].get("sha256")]  # a killed run hashed nothing
    new = {k: {**v, "sha256": ""} if k in unhashed else v for k, v in new.items()}
    if old == new:
        return None
    fix = f"restore the data load() returns, or pass --force to {verb} with the new data"
    if sorted(old) != sorted(new):
        was, now = ", ".join(old) or "none", ", ".join(new) or "none"
        return UsageError(f"{head}: the shared inputs differ (file: {was}; now: {now}); " + fix)
    name = next(k for k in old if old[k] != new[k])
    return UsageError(
        f"{head}: shared input {name!r} changed since the run (file: {_short(old[name])}, "
        f"now: {_short(new[name])}); " + fix
    )


@contextmanager
def alone(module: Any, path: str, force: bool) -> Iterator[dict]:
    """``mpibatch rerun``: the run's inputs in this one process (no MPI): ``load()``
    (checked against the file's /shared unless ``force``), ``setup(ctx)``, ``teardown``."""
    from .layout import open_file, read_shared

    h = hooks(None, module, getattr(module, "__file__", "") or "")
    shared = None
    if h.load is not None:
        arrays = load(h, 0)
        with open_file(path) as f:
            old = read_shared(f).get("arrays", {})
        new = {
            k: {
                "dtype": dtype_text(v.dtype),
                "shape": list(v.shape),
                "nbytes": int(v.nbytes),
                "sha256": array_sha256(v),
            }
            for k, v in arrays.items()
        }
        error = None if force else _difference(f"cannot rerun from '{path}'", old, new, "rerun")
        if error is not None:
            raise error
        shared = MappingProxyType({k: _readonly(v) for k, v in arrays.items()})
    state = setup(h, TaskContext(-1, 0, 0, 1, {}, None, shared=shared), 1)
    try:
        yield {"shared": shared, "state": state}
    finally:
        error = teardown(h, state, 0)
        if error is not None:
            raise error


def _readonly(arr: np.ndarray) -> np.ndarray:
    view = arr.view()
    view.flags.writeable = False
    return view


def _short(rec: dict) -> str:
    return f"{rec['dtype']}{rec['shape']} sha256 {rec['sha256'][:12]}"


def array_sha256(arr: np.ndarray) -> str:
    """SHA-256 of an array's bytes in C order (what a run records for it)."""
    return hashlib.sha256(np.ascontiguousarray(arr).reshape(-1).view(np.uint8).data).hexdigest()


def peak_rss() -> int:
    """This process's peak resident set size in bytes (``VmHWM``); 0 if unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
    except (ImportError, OSError):
        return 0
