"""The message loop of a run: rank 0 hands out blocks and stores what comes back.

Every schedule uses the same loop; only the queue differs (see schedule.py). A rank
running short tasks holds two blocks (the one it runs and the next), so it rarely waits
for rank 0; with long tasks, or near the end, it holds one, so no task waits behind a
busy rank while another is idle (policy.py). Rank 0 runs blocks too, unless it is a
dedicated root: on a helper thread, so that its main thread, which makes every MPI
call, answers the others while its own task runs; or, with ``root_tasks="main"`` or a
task time-out, on the main thread, serving the others between its own tasks (own.py).
Results travel as raw column buffers; rank 0 writes each report into the HDF5 file as
it lands (sink.py), so its memory does not grow with the run.

Every message goes through a transport (``_comm.Transport``, or an in-memory fake in
the tests), so the loop runs in one process as well as on many.
"""

from .leader import Leader, Tiers, decide, node_index
from .root import Root
from .work import finish, work

__all__ = ["Leader", "Root", "Tiers", "decide", "finish", "node_index", "work"]
