"""A bug in mpibatch, injected when this task file is imported (on every rank, before the
run): BUG_IN names the internal function that raises (``streams.make_streams``, before the
ranks' first message, or ``store.write_rows``, rank 0 storing a report mid-run), BUG_RANKS
the ranks it raises on ("all" or e.g. "0" or "1,2"); BUG_RAISE=KeyboardInterrupt raises
that instead (Ctrl-C reaching one rank before the tasks start)."""

import os

from mpi4py import MPI

from mpibatch import store, streams

where = os.environ.get("BUG_IN", "streams.make_streams")
ranks = os.environ.get("BUG_RANKS", "all")
rank = MPI.COMM_WORLD.Get_rank()


class InjectedBug(RuntimeError):
    pass


def _broken(*args, **kwargs):
    if os.environ.get("BUG_RAISE") == "KeyboardInterrupt":
        raise KeyboardInterrupt(f"injected Ctrl-C in {where} on rank {rank}")
    raise InjectedBug(f"injected bug in {where} on rank {rank}")


if ranks == "all" or str(rank) in ranks.split(","):
    if where == "streams.make_streams":
        streams.make_streams = _broken
    elif where == "store.write_rows":
        store.Store.write_rows = _broken
    else:
        raise SystemExit(f"buggy.py: unknown BUG_IN={where!r}")


def task(params, rng):
    return {"x": rng.random()}
