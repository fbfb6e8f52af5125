"""Shared inputs and per-rank setup: ``load()`` once, one read-only copy per node,
``setup(ctx)`` once per rank, ``teardown(state)`` at the end.

A task file may define ``load()`` (a dict of numpy arrays; ``shared_load = "every_node"``
runs it on every node's first rank instead of rank 0 alone, checked to load the same
bytes), ``setup(ctx)`` (its value is ``ctx.state`` in every task of the rank) and
``teardown(state)``; from Python, ``mpibatch.run(shared={"X": X})`` or ``shared=callable``.
:func:`session` runs all of it around the tasks; the MPI side is in _shared.py. Errors
are agreed (one line naming the rank and host, every rank raises it: exit 2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, TypeVar, cast

import numpy as np

from . import _comm
from .errors import MpibatchError, TaskFileError, UsageError
from .runner import TaskContext, blas_limits
from .taskfile import hook

T = TypeVar("T")
EVERY_NODE = "every_node"


@dataclass
class Hooks:
    """What the task file (or ``mpibatch.run(shared=...)``) asks for."""

    load: Callable[[], Any] | None = None
    setup: Callable[[Any], Any] | None = None
    teardown: Callable[[Any], Any] | None = None
    every_node: bool = False
    where: str = "load()"


@dataclass
class Inputs:
    """This rank's ``ctx.shared`` (read-only views, or None) and ``ctx.state``."""

    shared: Mapping[str, np.ndarray] | None = None
    state: Any = None

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


def describe(arr: Any) -> str:
    return f"{arr.dtype}{list(arr.shape)}"


def _failed(what: str, rank: int, exc: Exception, fix: str) -> TaskFileError:
    first = str(exc).splitlines()[0] if str(exc).strip() else ""
    return TaskFileError(
        f"{what} failed on rank {rank} on {_comm.host()}: {type(exc).__name__}: {first}; {fix}"
    )


def _agreed(comm, step: Callable[[], T]) -> T:
    """``step()`` on every rank; a MpibatchError anywhere is raised on every rank."""
    value, error = None, None
    try:
        value = step()
    except MpibatchError as exc:
        error = exc
    _comm.agree(comm, error)
    return value  # type: ignore[return-value]


def _load(h: Hooks, rank: int) -> dict[str, np.ndarray]:
    assert h.load is not None
    try:
        value = h.load()
    except MpibatchError:
        raise
    except Exception as exc:
        raise _failed(h.where, rank, exc, "fix it (call it alone to see the traceback)") from None
    return check_arrays(value, h.where)


def _setup(h: Hooks, ctx: TaskContext, threads: int) -> Any:
    if h.setup is None:
        return None
    try:
        with blas_limits(threads):
            return h.setup(ctx)
    except MpibatchError:
        raise
    except Exception as exc:
        raise _failed("setup(ctx)", ctx.rank, exc, "fix setup() in the task file") from None


def _teardown(h: Hooks, state: Any, rank: int) -> TaskFileError | None:
    if h.teardown is None:
        return None
    try:
        h.teardown(state)
    except Exception as exc:
        return _failed(
            "teardown(state)", rank, exc, "fix teardown() (the results file is complete)"
        )
    return None


@contextmanager
def session(comm, options, module, plan, store, device, local: int) -> Iterator[Inputs]:
    """Collective, around the tasks: load and place the inputs, setup; teardown, free."""
    from . import _shared

    rank, size = comm.Get_rank(), comm.Get_size()
    task_file = str(options.task) if module is not None else ""
    h = _agreed(comm, lambda: hooks(getattr(options, "shared", None), module, task_file))
    has_data = _comm.share(comm, h.load is not None)  # rank 0's shared= decides
    if not has_data and h.setup is None and h.teardown is None:
        if plan.resume:
            _comm.agree(comm, _resume_check(store, None, options) if rank == 0 else None)
        yield Inputs()
        return
    nodes = _shared.Nodes(comm) if has_data else None
    try:
        views = _place(comm, h, nodes, plan, store, options) if nodes else None
        ctx = TaskContext(-1, rank, local, size, {}, device, shared=views)
        state = _agreed(comm, lambda: _setup(h, ctx, plan.threads))
    except MpibatchError:
        if nodes is not None:
            nodes.free()
        raise
    try:
        yield Inputs(views, state)
    except MpibatchError:  # raised on every rank: free together
        _teardown(h, state, rank)
        if nodes is not None:
            nodes.free()
        raise
    except BaseException:  # this rank alone, ending: no collective call
        _teardown(h, state, rank)
        raise
    error = _teardown(h, state, rank)
    if nodes is not None:
        nodes.free()
    _comm.agree(comm, error)


def _place(comm, h: Hooks, nodes, plan, store, options) -> Mapping[str, np.ndarray]:
    """Load on rank 0 (or each node leader), fill each node's window, check, record."""
    from . import _shared

    rank = comm.Get_rank()
    here = nodes.leader if h.every_node else rank == 0
    arrays = _agreed(comm, lambda: _load(h, rank) if here else None)
    specs = cast(list, _shared.share(comm, _shared.layout(arrays) if arrays is not None else None))
    if h.every_node:
        mine = _shared.layout(arrays) if arrays is not None else specs
        _comm.agree(comm, None if mine == specs else _differs(h, rank, "dtypes or shapes"))
    nbytes = _shared.total_bytes(specs)
    _comm.agree(comm, _room(nbytes, rank) if nodes.leader else None)
    mem = nodes.allocate(nbytes)
    if arrays is not None:
        for s in specs:
            np.copyto(_shared.view(mem, s, writeable=True), arrays[s.name], casting="no")
    arrays = None  # the loaded copy can go before the tasks run
    nodes.spread(nbytes, from_root=not h.every_node)
    if h.every_node:
        hashes: Any = _checked_hashes(comm, h, nodes, mem, specs)
    else:
        hashes = _shared.Hashes(mem, specs) if rank == 0 else None
    error = None
    if rank == 0:
        n_nodes = nodes.n_nodes

        def recorded() -> dict:
            values = hashes if isinstance(hashes, list) else hashes.get()
            return records(specs, values, nbytes, n_nodes)

        error = _resume_check(store, recorded, options) if plan.resume else None
        if error is None:  # now without the hashes (a killed run keeps these), at the end with
            known = hashes if isinstance(hashes, list) else [""] * len(specs)
            store.write_shared(records(specs, known, nbytes, n_nodes))
            store.shared_records = recorded
    if plan.resume:
        _comm.agree(comm, error)
    return MappingProxyType({s.name: _shared.view(mem, s) for s in specs})


def _room(nbytes: int, rank: int, folder: str = "/dev/shm") -> UsageError | None:
    """A node leader: None if the node's shared memory (``/dev/shm``) can hold the inputs."""
    import shutil

    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None  # no /dev/shm to ask: MPI finds its own shared memory
    if free >= nbytes:
        return None
    return UsageError(
        f"shared inputs: expected {nbytes / 2**30:.2f} GiB of free shared memory on each "
        f"node, got {free / 2**30:.2f} GiB in {folder} on {_comm.host()} (rank {rank}); "
        "free it, or load less"
    )


def _differs(h: Hooks, rank: int, what: str) -> UsageError:
    return UsageError(
        f"{h.where} with shared_load = 'every_node': rank {rank} on {_comm.host()} loaded "
        f"other {what} than rank 0; every node must load the same data (or drop shared_load)"
    )


def _checked_hashes(comm, h: Hooks, nodes, mem, specs) -> list[str] | None:
    """Every leader hashes its window; rank 0 checks they all match (agreed)."""
    from . import _shared

    hashes = [_shared.sha256(mem, s) for s in specs] if nodes.leader else None
    found = nodes.leaders_gather((comm.Get_rank(), hashes)) if nodes.leader else None
    bad = [r for r, values in (found or []) if values != hashes]
    _comm.agree(comm, _differs(h, bad[0], "bytes") if bad else None)
    return hashes


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


def _resume_check(store, recorded: Callable[[], dict] | None, options) -> UsageError | None:
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
        arrays = _load(h, 0)
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
    state = _setup(h, TaskContext(-1, 0, 0, 1, {}, None, shared=shared), 1)
    try:
        yield {"shared": shared, "state": state}
    finally:
        error = _teardown(h, state, 0)
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
