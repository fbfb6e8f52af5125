"""Shared inputs across the ranks: one shared-memory window per node, filled once, and
:func:`session`, the collective step around the tasks (load, place, setup; teardown, free).

The ranks of a node (``Split_type(COMM_TYPE_SHARED)``) share one window that its first
rank (the node leader) allocates; the leaders of all nodes form a second communicator
over which rank 0's bytes travel as raw buffers (``Ibcast`` in pieces of
:data:`CHUNK` bytes, so arrays over 2 GiB and over MPI's int count work). Every rank
then reads the window through read-only numpy views. Every MPI call of the feature
lives here, on the main thread; :class:`Nodes` frees all it made (nothing outlives a run).
What a task file may define and how it is checked (no MPI) is in _inputs.py.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, cast

import numpy as np
from mpi4py import MPI

from . import _comm, _inputs
from .errors import MpibatchError, UsageError
from .runner import TaskContext

CHUNK = 256 << 20  # bytes per Ibcast between node leaders (well under MPI's int count)
ALIGN = 64  # each array starts on a cache line in the window
PRETEND_NODES: int | None = None  # tests only: rank r is on pretend node r % PRETEND_NODES


@dataclass(frozen=True)
class Spec:
    """Where one array lives in the window: name, dtype, shape, byte offset and size."""

    name: str
    dtype: np.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int


def layout(arrays: dict[str, np.ndarray]) -> list[Spec]:
    """The window's layout for ``arrays``: each aligned to :data:`ALIGN` bytes, in order."""
    specs, at = [], 0
    for name, arr in arrays.items():
        specs.append(Spec(name, arr.dtype, tuple(arr.shape), at, int(arr.nbytes)))
        at += -(-int(arr.nbytes) // ALIGN) * ALIGN
    return specs


def total_bytes(specs: list[Spec]) -> int:
    return max((s.offset + s.nbytes for s in specs), default=0)


def view(mem: np.ndarray, spec: Spec, writeable: bool = False) -> np.ndarray:
    """The array ``spec`` in window bytes ``mem`` (read-only unless ``writeable``)."""
    arr = np.ndarray(spec.shape, spec.dtype, buffer=mem, offset=spec.offset)
    arr.flags.writeable = writeable
    return arr


def sha256(mem: np.ndarray, spec: Spec) -> str:
    """SHA-256 of the array's bytes as stored (C order), hashed in :data:`CHUNK` pieces."""
    h = hashlib.sha256()
    for a in range(spec.offset, spec.offset + spec.nbytes, CHUNK):
        h.update(mem[a : min(spec.offset + spec.nbytes, a + CHUNK)].data)
    return h.hexdigest()


class Hashes:
    """The arrays' SHA-256, computed on a helper thread (hashlib lets go of the GIL), so
    the ranks start on their tasks while rank 0 hashes; :meth:`get` waits for them."""

    def __init__(self, mem: np.ndarray, specs: list[Spec]) -> None:
        self.values: list[str] = []
        self.thread = threading.Thread(
            target=lambda: self.values.extend(sha256(mem, s) for s in specs),
            daemon=True,
            name="mpibatch-sha256",
        )
        self.thread.start()

    def get(self) -> list[str]:
        self.thread.join()
        return self.values


class Nodes:
    """The node communicator, the node leaders' communicator and the node's window."""

    def __init__(self, comm: MPI.Intracomm) -> None:
        self.comm = comm
        rank = comm.Get_rank()
        if PRETEND_NODES:  # one machine as several nodes: each its own window and leader
            self.node = MPI.Intracomm(comm.Split(rank % PRETEND_NODES, key=rank))
        else:
            self.node = MPI.Intracomm(comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank))
        self.leader = self.node.Get_rank() == 0
        self.leaders = comm.Split(0 if self.leader else MPI.UNDEFINED, key=rank)
        self.win: MPI.Win | None = None
        self.mem = np.empty(0, np.uint8)

    @property
    def n_nodes(self) -> int:
        """The number of nodes (meaningful on node leaders)."""
        return self.leaders.Get_size() if self.leader else 0

    def allocate(self, nbytes: int) -> np.ndarray:
        """Collective on the node: the window (``nbytes`` on the leader), as uint8 bytes."""
        size = max(1, nbytes) if self.leader else 0
        self.win = MPI.Win.Allocate_shared(size, 1, comm=self.node)
        self.win.Lock_all(MPI.MODE_NOCHECK)
        buf, _ = self.win.Shared_query(0)
        self.mem = np.frombuffer(buf, np.uint8, count=nbytes)  # type: ignore[call-overload]
        return self.mem

    def spread(self, nbytes: int, from_root: bool) -> None:
        """Collective: rank 0's window bytes to every leader (if ``from_root``), then
        every rank of each node waits for its leader, napping rather than spinning."""
        if from_root and self.leader and self.leaders.Get_size() > 1:
            for a in range(0, nbytes, CHUNK):
                piece = self.mem[a : min(nbytes, a + CHUNK)]
                _wait(self.leaders.Ibcast(piece, root=0))
        self.settle()

    def settle(self) -> None:
        """Collective on the node: what the leader wrote is seen by every rank."""
        assert self.win is not None
        self.win.Sync()
        _wait(self.node.Ibarrier())
        self.win.Sync()

    def leaders_gather(self, obj: object) -> list | None:
        """Leaders only: a small object from each leader to rank 0 (a list there)."""
        return self.leaders.gather(obj, root=0)

    def free(self) -> None:
        """Collective: the window and both communicators (views of it die with it)."""
        if self.win is not None:
            self.win.Unlock_all()
            self.win.Free()
            self.win = None
        if self.leaders != MPI.COMM_NULL:
            self.leaders.Free()
        self.node.Free()


barrier = _comm.barrier


def _wait(request: MPI.Request) -> None:
    delay = 0.0
    while not request.Test():
        delay = _comm.nap(delay)


def share(comm: MPI.Comm, obj: object) -> object:
    """Collective: a small control object from rank 0 (the layout) to every rank."""
    return _comm.share(comm, obj)


def agree(comm: MPI.Comm, error: BaseException | None) -> None:
    _comm.agree(comm, error)


@contextmanager
def session(comm, options, module, plan, store, device, local: int) -> Iterator[_inputs.Inputs]:
    """Collective, around the tasks: load and place the inputs, setup; teardown, free."""
    rank, size = comm.Get_rank(), comm.Get_size()
    task_file = str(options.task) if module is not None else ""
    h = _comm.agreed(
        comm, lambda: _inputs.hooks(getattr(options, "shared", None), module, task_file)
    )
    h.host = _comm.host()
    has_data = _comm.share(comm, h.load is not None)  # rank 0's shared= decides
    if not has_data and h.setup is None and h.teardown is None:
        if plan.resume:
            _comm.agree(comm, _inputs.resume_check(store, None, options) if rank == 0 else None)
        yield _inputs.Inputs()
        return
    nodes = Nodes(comm) if has_data else None
    try:
        views = _place(comm, h, nodes, plan, store, options) if nodes else None
        ctx = TaskContext(-1, rank, local, size, {}, device, shared=views)
        state = _comm.agreed(comm, lambda: _inputs.setup(h, ctx, plan.threads))
    except MpibatchError:
        if nodes is not None:
            nodes.free()
        raise
    inputs = _inputs.Inputs(views, state, h.teardown)
    try:
        yield inputs
    except MpibatchError:  # raised on every rank: free together
        _inputs.teardown(h, inputs, rank)
        if nodes is not None:
            nodes.free()
        raise
    except BaseException:  # this rank alone, ending: no collective call
        _inputs.teardown(h, inputs, rank)
        raise
    error = _inputs.teardown(h, inputs, rank)
    if nodes is not None:
        nodes.free()
    _comm.agree(comm, error)


def _place(comm, h: _inputs.Hooks, nodes, plan, store, options) -> Mapping[str, np.ndarray]:
    """Load on rank 0 (or each node leader), fill each node's window, check, record."""
    rank = comm.Get_rank()
    here = nodes.leader if h.every_node else rank == 0
    arrays = _comm.agreed(comm, lambda: _inputs.load(h, rank) if here else None)
    specs = cast(list, share(comm, layout(arrays) if arrays is not None else None))
    if h.every_node:
        mine = layout(arrays) if arrays is not None else specs
        _comm.agree(comm, None if mine == specs else _differs(h, rank, "dtypes or shapes"))
    nbytes = total_bytes(specs)
    _comm.agree(comm, _room(nbytes, rank) if nodes.leader else None)
    mem = nodes.allocate(nbytes)
    if arrays is not None:
        for s in specs:
            np.copyto(view(mem, s, writeable=True), arrays[s.name], casting="no")
    arrays = None  # the loaded copy can go before the tasks run
    nodes.spread(nbytes, from_root=not h.every_node)
    if h.every_node:
        hashes: Any = _checked_hashes(comm, h, nodes, mem, specs)
    else:
        hashes = Hashes(mem, specs) if rank == 0 else None
    error = None
    if rank == 0:
        n_nodes = nodes.n_nodes

        def recorded() -> dict:
            values = hashes if isinstance(hashes, list) else hashes.get()
            return _inputs.records(specs, values, nbytes, n_nodes)

        error = _inputs.resume_check(store, recorded, options) if plan.resume else None
        if error is None:  # now without the hashes (a killed run keeps these), at the end with
            known = hashes if isinstance(hashes, list) else [""] * len(specs)
            store.write_shared(_inputs.records(specs, known, nbytes, n_nodes))
            store.shared_records = recorded
    if plan.resume:
        _comm.agree(comm, error)
    return MappingProxyType({s.name: view(mem, s) for s in specs})


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


def _differs(h: _inputs.Hooks, rank: int, what: str) -> UsageError:
    return UsageError(
        f"{h.where} with shared_load = 'every_node': rank {rank} on {_comm.host()} loaded "
        f"other {what} than rank 0; every node must load the same data (or drop shared_load)"
    )


def _checked_hashes(comm, h: _inputs.Hooks, nodes, mem, specs) -> list[str] | None:
    """Every leader hashes its window; rank 0 checks they all match (agreed)."""
    hashes = [sha256(mem, s) for s in specs] if nodes.leader else None
    found = nodes.leaders_gather((comm.Get_rank(), hashes)) if nodes.leader else None
    bad = [r for r, values in (found or []) if values != hashes]
    _comm.agree(comm, _differs(h, bad[0], "bytes") if bad else None)
    return hashes
