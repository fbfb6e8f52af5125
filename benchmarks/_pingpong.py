"""Per-message costs for benchmarks/scale.py's model, printed as one JSON line by rank 0.

Run as 4 ranks on 2 hosts x 2 (ranks 0 and 1 share a host, 2 and 3 share the other):

- ``lat_in``/``lat_x``: one-way latency of an 8-byte message within a host (0 <-> 1) and
  between hosts (0 <-> 2), half the mean of 2,000 round trips;
- ``serve``: a server's own seconds per request when ranks 1-3 send it requests as a
  leader's ranks do (a 5-int header, 1 KiB of data, answered with a 2-int block):
  probe, receive both, send the answer; idle probing not counted;
- ``send``: seconds to send one 2-int block (the first blocks rank 0 sends every rank).
"""

import json
import time

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
ROUNDS, REQUESTS = 2000, 3000
small = np.zeros(1, np.int64)


def pingpong(peer: int) -> float:
    comm.Barrier()
    if rank not in (0, peer):
        comm.Barrier()
        return 0.0
    t = time.perf_counter()
    for _ in range(ROUNDS):
        if rank == 0:
            comm.Send(small, dest=peer, tag=1)
            comm.Recv(small, source=peer, tag=1)
        else:
            comm.Recv(small, source=0, tag=1)
            comm.Send(small, dest=0, tag=1)
    comm.Barrier()
    return (time.perf_counter() - t) / ROUNDS / 2


def serve() -> tuple[float, float]:
    head, data, block = np.zeros(5, np.int64), np.zeros(1024, np.uint8), np.zeros(2, np.int64)
    comm.Barrier()
    if rank != 0:
        for _ in range(REQUESTS):
            comm.Send(head, dest=0, tag=2)
            comm.Send(data, dest=0, tag=3)
            comm.Recv(block, source=0, tag=4)
        if rank == 1:
            for _ in range(200):
                comm.Recv(block, source=0, tag=5)
        comm.Barrier()
        return 0.0, 0.0
    busy, status, n = 0.0, MPI.Status(), REQUESTS * (comm.Get_size() - 1)
    for _ in range(n):
        while not comm.Iprobe(MPI.ANY_SOURCE, 2, status):
            pass
        t = time.perf_counter()
        src = status.Get_source()
        comm.Recv(head, source=src, tag=2)
        comm.Recv(data, source=src, tag=3)
        comm.Send(block, dest=src, tag=4)
        busy += time.perf_counter() - t
    t = time.perf_counter()
    for _ in range(200):
        comm.Send(block, dest=1, tag=5)
    send = (time.perf_counter() - t) / 200
    comm.Barrier()
    return busy / n, send


lat_in, lat_x = pingpong(1), pingpong(2)
cost, send = serve()
if rank == 0:
    print(json.dumps({"lat_in": lat_in, "lat_x": lat_x, "serve": cost, "send": send}))
