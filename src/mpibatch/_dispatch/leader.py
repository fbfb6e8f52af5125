"""Node leaders: dispatch and gather in two levels, so rank 0 sees O(nodes) messages.

With leaders on, every node's ranks (rank 0 left out) form a group whose lowest rank
is its *leader*: it runs no tasks; toward rank 0 it is one peer that asks for blocks
and reports, toward its node's ranks it is their "rank 0" (they run the unchanged
:func:`work` loop over the node's communicator, so within a node every message goes
through shared memory). Rank 0 runs the unchanged :class:`Root` over the communicator
of itself, the leaders and the ranks alone on their node (a group of one), with one
queue slot per rank that runs tasks: a leader's *grant* is a list of blocks, one per
rank it serves, sent as one message. The leader hands those blocks to its ranks as
they ask, keeps their reports, and once every block of a grant is back sends them to
rank 0 as one *bundle*: a table of the reports, their control parts and their data one
after another in one buffer. Rank 0 stores each part as if its rank had sent it (the
same rows, rank, schema and failures), so the file is byte-identical to the flat path.

A stop (rank 0's ``STOP``, a signal on the leader, a stop or fatal error in a report)
makes the leader hand out nothing more and tell its ranks; the blocks it still holds
are reported as not run, as a rank reports the blocks in its hand.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

_NO_NEWS = (None, None, -1)
LEADER_NAP = 1e-4  # seconds: a leader's longest nap (its ranks wait on it; it runs no tasks)
AUTO_MIN_RANKS = 4  # auto: leaders when ranks per node average at least this (see decide)


@dataclass
class Tiers:
    """Who does what with leaders on; the same on every rank (computed, not sent).

    ``node``: every rank's node index; ``top_color``/``group_color`` (this rank's colors
    for the two communicators, None: not in it); on rank 0 ``grants`` maps a leader's
    rank in the top communicator to its queue slots, ``slots`` any other peer's slot.
    """

    rank: int
    node: list[int]
    dedicated_root: bool
    top_color: int | None = None
    group_color: int | None = None
    role: str = "root"  # root, leader, member (of a leader's group) or single
    origins: list[int] = field(default_factory=list)  # this rank's group: world ranks
    grants: dict[int, list[int]] = field(default_factory=dict)
    slots: dict[int, int] = field(default_factory=dict)
    n_slots: int = 0
    top: list[int] = field(default_factory=list)  # world rank of each top rank

    @property
    def n_ranks(self) -> int:
        return len(self.node)

    @classmethod
    def make(cls, node: list[int], rank: int, dedicated_root: bool) -> Tiers:
        tiers = cls(rank, node, dedicated_root)
        groups: dict[int, list[int]] = {}
        for r, n in enumerate(node):
            if r != 0:
                groups.setdefault(n, []).append(r)
        top = [0] + sorted(g[0] for g in groups.values())  # leaders and ranks alone
        tiers.top = top
        slot = 0 if dedicated_root else 1
        if not dedicated_root:
            tiers.slots[0] = 0
        for t, head in enumerate(top[1:], start=1):
            group = groups[node[head]]
            if len(group) == 1:
                tiers.slots[t], slot = slot, slot + 1
            else:
                tiers.grants[t] = list(range(slot, slot + len(group) - 1))
                slot += len(group) - 1
        tiers.n_slots = slot
        if rank in top:
            tiers.top_color = 0
        if rank != 0:
            group = groups[node[rank]]
            if len(group) > 1:
                tiers.group_color, tiers.origins = node[rank], group
            tiers.role = "single" if len(group) == 1 else "leader" if rank == group[0] else "member"
        return tiers


def node_index(hosts: list[str], node_size: int | None) -> list[int]:
    """Each rank's node: by host name, or pretend nodes of ``node_size`` consecutive ranks."""
    if node_size:
        return [r // node_size for r in range(len(hosts))]
    first: dict[str, int] = {}
    return [first.setdefault(h, len(first)) for h in hosts]


def decide(choice: str, node: list[int]) -> tuple[bool, str]:
    """Leaders on or off, and why (recorded in the file as ``leaders``/``leaders_reason``).

    ``auto``: on when the run spans more than one node and the nodes average at least
    :data:`AUTO_MIN_RANKS` ranks, so a leader (which runs no tasks) takes at most a
    quarter of a node.
    """
    if choice != "auto":
        return choice == "on", f"requested with --leaders {choice}"
    n_nodes = len(set(node))
    per_node = len(node) / n_nodes
    if n_nodes < 2:
        return False, "auto: the run is on one node"
    if per_node < AUTO_MIN_RANKS:
        return False, (
            f"auto: {n_nodes} nodes, {per_node:.3g} ranks a node < {AUTO_MIN_RANKS}: "
            "a leader would idle too large a share"
        )
    return True, f"auto: {n_nodes} nodes of {per_node:.3g} ranks on average"


@dataclass
class _Grant:
    left: int  # its blocks not yet back (or dropped)
    parts: list = field(default_factory=list)  # (world rank, report, buffer, laid out)


class Leader:
    """A node's leader: a worker toward rank 0 (``up``), rank 0 for its ranks (``down``)."""

    def __init__(self, up, down, origins: list[int], stopper, buffers) -> None:
        self.up, self.down, self.origins = up, down, origins
        self.stopper, self.buffers = stopper, buffers
        n = down.size
        self.owe = [0] + [2] * (n - 1)  # answers owed to each rank (two first, as rank 0)
        self.holds = [0] * n  # blocks each rank holds, not yet reported
        self.stock: deque = deque()  # (grant, block) not yet handed out
        self.grants: dict[int, _Grant] = {}
        self.of: dict[int, int] = {}  # a handed-out block's first row: its grant
        self.n_grants = 0
        self.expected = 2  # answers rank 0 owes (two first, then one a bundle)
        self.arriving: list = []  # (grant, world rank, report, buffer, request)
        self.sending: list = []  # (request, buffer) of bundles
        self.stopping = False
        self.ahead = False  # may a rank hold a second block (rank 0's last grant says)
        self.news: tuple = _NO_NEWS  # (a stop, a fatal error, the rank it came from)
        # each rank's schema (its reports after the first with results are laid out by it),
        # and the ranks whose schema rank 0 has been sent: grants may finish out of order
        self.schemas: dict[int, tuple] = {}
        self.told: set[int] = set()

    def run(self) -> None:
        """Serve the node's ranks from rank 0's grants until rank 0 has no more."""
        delay = 0.0
        while not self._finished():
            busy = self._from_root()
            busy = self._from_ranks() or busy
            busy = self._arrived() or busy
            self._serve()
            self._send()
            delay = 0.0 if busy else self.up.idle(delay, LEADER_NAP)
        for req, _ in self.sending:
            self.up.wait(req)
        while self.up.stop_waiting():
            pass  # a stop that came after the last grant

    def _finished(self) -> bool:
        return not (self.expected or self.grants or self.arriving or any(self.owe))

    # ---- rank 0's side ----
    def _from_root(self) -> bool:
        up = self.up
        if up.stop_waiting():
            self._stop(relay=True)
        elif self.stopper.requested and not self.stopping:
            self._stop(relay=True, news=(self.stopper.reason, None, self.origins[0]))
        got = False
        while self.expected and up.block_waiting():
            blocks, got = up.recv_grant(), True
            self.expected -= 1
            if blocks:
                self._add(blocks)
        return got

    def _add(self, blocks: list[tuple[int, int]]) -> None:
        gid = self.n_grants = self.n_grants + 1
        self.grants[gid] = _Grant(len(blocks))
        self.ahead = len(blocks) >= 2 * (len(self.owe) - 1)  # two a rank: hold two
        self.stock.extend((gid, b) for b in blocks)
        if self.stopping:
            self._drop()

    def _send(self) -> None:
        """One bundle: every finished grant's reports, and any news for rank 0."""
        done = [g for g, grant in self.grants.items() if grant.left == 0]
        if not done and not (self.news != _NO_NEWS and self.grants):
            return  # news alone only while rank 0 still waits for this leader
        parts, bufs = [], []
        for g in done:
            for origin, report, buf, laid in self.grants.pop(g).parts:
                report.schema = None  # sent with this rank's first part laid out by it
                if laid and origin not in self.told:
                    report.schema, report.schema_task = self.schemas[origin]
                    self.told.add(origin)
                parts.append((origin, report, laid))
                bufs.append(buf[: report.nbytes])
        data = np.concatenate(bufs) if bufs else np.empty(0, np.uint8)
        for buf in bufs:
            self.buffers.give(buf.base if buf.base is not None else buf)
        self.sending = [(r, b) for r, b in self.sending if not self.up.done(r)]
        self.sending.append((self.up.send_bundle(len(done), parts, data, self.news), data))
        self.news = _NO_NEWS
        self.expected += 1

    # ---- the node's side ----
    def _from_ranks(self) -> bool:
        down, got = self.down, False
        while (src := down.report_waiting()) is not None:
            report, buf, req = down.recv_report(src, self.buffers.take)
            self.holds[src] -= 1
            self.owe[src] += 1
            origin = self.origins[src]
            if report.schema is not None:
                self.schemas[origin] = (report.schema, report.schema_task)
            laid = origin in self.schemas  # its columns hold the schema's fields
            self.arriving.append((self.of.pop(report.pos), origin, report, buf, req, laid))
            if report.stop or report.fatal:
                news = (report.stop, report.fatal, origin)
                self._stop(relay=report.stop is not None, news=news)
            got = True
        return got

    def _arrived(self) -> bool:
        keep, got = [], False
        for item in self.arriving:
            gid, origin, report, buf, req, laid = item
            if not self.down.done(req):
                keep.append(item)
                continue
            grant = self.grants[gid]
            grant.parts.append((origin, report, buf, laid))
            grant.left -= 1
            got = True
        self.arriving = keep
        return got

    def _serve(self) -> None:
        """Answer each rank that waits: idle ones first, then those that hold a block.

        An idle rank gets a block, or waits for the next grant (or gets none: all is
        done). A rank that holds one gets a second while rank 0 grants two a rank (short
        tasks, not near the end), as a flat rank would hold two; else none for now.
        """
        over = not (self.expected or self.stock or self.grants)
        ranks = range(1, len(self.owe))
        for r in [r for r in ranks if not self.holds[r]] + [r for r in ranks if self.holds[r]]:
            while self.owe[r]:
                held = self.holds[r]
                if self.stock and (not held or (held == 1 and self.ahead)):
                    gid, block = self.stock.popleft()
                    self.of[block[0]] = gid
                    self.holds[r] += 1
                elif held or over:
                    block = None
                else:
                    break  # idle: it waits for the next grant
                self.down.send_block(r, block)
                self.owe[r] -= 1

    def _stop(self, relay: bool, news: tuple = (None, None, -1)) -> None:
        """Hand out nothing more; tell the node's ranks (``relay``) and rank 0 (``news``)."""
        if news != _NO_NEWS and self.news == _NO_NEWS:
            self.news = news
        if self.stopping:
            return
        self.stopping = True
        if relay:
            for r in range(1, len(self.owe)):
                self.down.send_stop(r)
        self._drop()

    def _drop(self) -> None:
        """The blocks not handed out count as back, not run (their rows stay pending)."""
        while self.stock:
            gid, _ = self.stock.popleft()
            self.grants[gid].left -= 1
