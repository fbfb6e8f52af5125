"""A small model of mpibatch at 1,000 to 100,000 ranks, flat against node leaders.

Pure Python, fed with per-message costs measured by benchmarks/scale.py. How it works:

Both paths are the same system at the top: *clients* that each hold up to two blocks
and a *server* (rank 0) that answers them one at a time (FIFO). Flat: every rank is a
client; a block is ``b`` tasks (``D = b t`` seconds); the server spends ``c0`` (its
measured time per request: receive, answer, store) plus writing the block's rows at the
measured file bandwidth. Leaders: each node of ``k`` ranks is one client (its leader),
a grant is ``k - 1`` blocks, one per worker, run side by side (mpibatch grants two a
rank for short tasks, halving rank 0's grants: the model leaves that out), so a grant also takes
``D`` plus what the node's ranks wait on their leader; rank 0 spends ``c0`` per grant
plus ``c_part`` (measured: storing one rank's report out of a bundle) and the write per
block. A client holds a second block (grant) while it runs one when tasks are short
(<= 0.1 s), as mpibatch does (leaders: always), so a reply that comes back before the
block ends costs nothing.

:func:`simulate` is a discrete-event simulation of that top level (one event per block
or grant, so 100,000 ranks take about a second): the first blocks go out one send
apart, each report reaches rank 0 one latency after its block ends, waits its turn,
and the answer comes back one latency later. From it come the steady-state throughput
(between the second and the last wave) and the time to start every client. The node
level is a closed-form queue (M/D/1 waiting time for the leader, with ``k - 1`` ranks
asking once per block). :func:`predict` puts them together for a run of
an hour of ``t``-second tasks per rank: makespan = start-up + tasks / (steady
throughput) + one block (the tail), idle fraction = 1 - task time / (ranks x makespan);
ranks include leaders and rank 0 (they run no tasks in the model).

Block sizes follow mpibatch's policy (schedule.block_seconds and block_rows): a block
lasts ``min(max(0.1, 1 ms x N), flush / 4)`` seconds, and ``N`` blocks of rows must fit
in rank 0's 64 MiB in-flight budget. Not modelled: skewed task times (a grant ends
with its slowest block), the HDF5 flushes, Python's GIL on rank 0's own task thread.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

LONG_TASK = 0.1  # seconds: longer tasks get no second block (flat)
GATHER_BYTES = 64 << 20  # rank 0's in-flight budget
FLUSH = 30.0
MAX_CLIENTS = 5000  # more are simulated as this many (see simulate)
META_BYTES = 17  # start, elapsed, status per row


@dataclass
class Costs:
    """Measured seconds (and bytes/s): see benchmarks/scale.py for where each comes from."""

    c0: float = 60e-6  # rank 0, per request (flat) or per grant (leaders)
    c_part: float = 15e-6  # rank 0, per rank's report inside a bundle
    c_leader: float = 25e-6  # a leader, per request of one of its ranks
    lat_in: float = 10e-6  # one way, within a node
    lat_x: float = 50e-6  # one way, between nodes
    send: float = 5e-6  # rank 0 sending one first block
    write_bw: float = 1e9  # rank 0's bytes per second into the file


def block_tasks(n_ranks: int, t: float, row_bytes: int) -> int:
    """Tasks per block, as mpibatch sizes them (time, then memory)."""
    seconds = min(max(0.1, 1e-3 * n_ranks), FLUSH / 4)
    by_time = max(1, int(seconds / t))
    by_memory = max(1, GATHER_BYTES // (n_ranks * (row_bytes + META_BYTES)))
    return min(by_time, by_memory)


def simulate(
    clients: int, block: float, service: float, latency: float, send: float, ahead: bool
) -> tuple[float, float]:
    """(steady blocks per second, start-up seconds) of clients served by one FIFO server.

    Each client runs blocks of ``block`` seconds back to back while it has one; it holds
    two (``ahead``) or one. Every finished block is a report; the server answers each
    after ``service`` seconds of its time, in arrival order. More than :data:`MAX_CLIENTS`
    clients are simulated as that many, each standing for several (the server's time per
    report scaled up alike, so its load is the same); start-up is counted for all.
    """
    scale = max(1.0, clients / MAX_CLIENTS)
    startup = send * clients * (2 if ahead else 1) + latency
    clients, service, send = round(clients / scale), service * scale, send * scale
    waves = 6
    events: list[tuple[float, int, int]] = []  # (time, kind 0=report arrives 1=block, client)
    held = [0] * clients
    running_until = [0.0] * clients
    for i in range(clients):  # first blocks, then second blocks, one send apart
        heapq.heappush(events, (send * (i + 1) + latency, 1, i))
        if ahead:
            heapq.heappush(events, (send * (clients + i + 1) + latency, 1, i))
    free_at, done, counted_from, t_from, last = 0.0, [0] * clients, 0, 0.0, 0.0
    total = 0
    while events:
        now, kind, i = heapq.heappop(events)
        if kind == 1:  # a block arrives at client i
            held[i] += 1
            start = max(now, running_until[i])
            running_until[i] = start + block
            heapq.heappush(events, (start + block + latency, 0, i))
            continue
        # a report reaches the server: answered after the queue and the service
        held[i] -= 1
        done[i] += 1
        total += 1
        if total == 2 * clients:  # steady state from the third wave on
            counted_from, t_from = total, now
        last = now
        free_at = max(free_at, now) + service
        if done[i] < waves:
            heapq.heappush(events, (free_at + latency, 1, i))
    rate = (total - counted_from) / max(last - t_from, 1e-12)
    return rate * scale, startup


def predict(
    n_ranks: int,
    t: float,
    costs: Costs,
    leaders: bool,
    k: int = 128,
    row_bytes: int = 64,
    work_seconds: float = 3600.0,
) -> dict:
    """Makespan, idle fraction and the first bottleneck of one configuration."""
    b = block_tasks(n_ranks, t, row_bytes)
    write = b * (row_bytes + META_BYTES) / costs.write_bw
    if leaders:
        nodes = math.ceil(n_ranks / k)
        workers = n_ranks - nodes  # a leader per node runs no tasks
        lam = (k - 1) / (b * t)  # requests a leader gets per second
        rho_l = lam * costs.c_leader
        wait = 2 * costs.lat_in + costs.c_leader
        wait += rho_l * costs.c_leader / (2 * (1 - rho_l)) if rho_l < 1 else math.inf
        block = b * t + wait  # each block waits on the leader (a second one held: not counted)
        writes = (k - 1) * write
        service = costs.c0 + (k - 1) * costs.c_part + writes
        rate, startup = simulate(nodes, block, service, costs.lat_x, costs.send, True)
        tasks_per_s = rate * workers / nodes * b if rho_l < 1 else 0.0
        clients, rho0 = nodes, nodes / (b * t if math.isinf(block) else block) * service
    else:
        workers = n_ranks - 1
        block = b * t
        writes = write
        service = costs.c0 + write
        rate, startup = simulate(workers, block, service, costs.lat_x, costs.send, t <= LONG_TASK)
        tasks_per_s, clients, rho0, rho_l = rate * b, workers, workers / block * service, 0.0
    n_tasks = n_ranks * max(1, round(work_seconds / t))
    work = n_tasks * t  # rank-seconds of tasks
    makespan = startup + n_tasks / tasks_per_s + block if tasks_per_s > 0 else math.inf
    idle = 1 - work / (n_ranks * makespan) if math.isfinite(makespan) else 1.0
    return {
        "b": b,
        "clients": clients,
        "rho0": rho0,
        "rho_leader": rho_l,
        "workers": workers,
        "startup": startup,
        "makespan": makespan,
        "idle": idle,
        "bottleneck": _bottleneck(rho0, rho_l, service, costs.c0, writes, idle),
    }


def _bottleneck(
    rho0: float, rho_l: float, service: float, c0: float, write: float, idle: float
) -> str:
    """What limits the run first: a saturated server (and which part of its time), or none."""
    if rho_l >= 1:
        return "leader"
    if rho0 >= 0.9:
        parts = {"requests": c0, "writes": write, "storing reports": service - c0 - write}
        return "rank 0: " + max(parts, key=lambda p: parts[p])
    if idle > 0.05:
        return "start-up + tail"
    return "none"


def table(costs: Costs, k: int = 128, row_bytes: int = 64) -> list[list[str]]:
    """Rows: ranks, task length, then makespan / idle / bottleneck flat and with leaders."""
    rows = []
    for n in (1_000, 10_000, 100_000):
        for t in (1e-3, 1e-2, 0.1, 1.0, 10.0):
            flat = predict(n, t, costs, False, k, row_bytes)
            lead = predict(n, t, costs, True, k, row_bytes)
            rows.append(
                [
                    f"{n:,}",
                    _seconds(t),
                    str(flat["b"]),
                    _seconds(flat["makespan"]),
                    f"{flat['idle']:.1%}",
                    _seconds(lead["makespan"]),
                    f"{lead['idle']:.1%}",
                    f"{flat['rho0']:.0%} / {lead['rho0']:.0%}",
                    f"{flat['bottleneck']} / {lead['bottleneck']}",
                ]
            )
    return rows


HEADER = [
    "ranks",
    "task",
    "block (tasks)",
    "flat makespan",
    "flat idle",
    "leaders makespan",
    "leaders idle",
    "rank-0 load (flat / leaders)",
    "first bottleneck (flat / leaders)",
]


def _seconds(s: float) -> str:
    if not math.isfinite(s):
        return "never"
    if s < 1:
        return f"{s * 1e3:.0f} ms"
    return f"{s:.3g} s" if s < 1000 else f"{s / 3600:.2f} h"


NOTES = [
    "Model: an hour of tasks per rank, 128 ranks a node, 64-byte results, rank 0 serving "
    "only (see benchmarks/_scale_model.py); idle = 1 - task time / (ranks x makespan), "
    "leaders' own share included (1/128 of the ranks). Rank-0 load: the share of its time "
    "the requests would take (above 100%: it cannot keep up); the first bottleneck is the "
    "part of rank 0's time that dominates once its load passes 90% (or the leader's, past "
    "100%).",
]
