"""How big a block is and whether a rank holds a second one: rank 0's decisions.

The sizes come from :func:`schedule.block_rows` (memory, time, evidence); this adds
what depends on the run so far: the mean task time, the time limit, and rank 0's
own helper thread.
"""

from __future__ import annotations

import time

from .._records import record_bytes
from ..schedule import block_rows
from .ledger import Ledger, SchemaGate

LONG_TASK = 0.1  # seconds: tasks this long gain nothing from a rank holding a second block
STOP_MARGIN = 2.0  # seconds kept, before a time limit, to gather and close the file


class BlockPolicy:
    """The cap on a block's rows, and the look-ahead rule, from what came back so far."""

    def __init__(self, plan, size: int, ledger: Ledger, gate: SchemaGate) -> None:
        self.plan, self.size, self.ledger, self.gate = plan, size, ledger, gate
        deadline = plan.deadline
        # no block is handed out after this wall-clock time; none that cannot end by it
        self.stop_at = deadline - plan.grace - 2 * STOP_MARGIN if deadline else None

    def slot(self, rank: int) -> int:
        """The queue's index of ``rank`` (a dedicated rank 0 has none)."""
        return rank - 1 if self.plan.dedicated_root else rank

    def time_is_up(self) -> bool:
        return self.stop_at is not None and time.time() >= self.stop_at

    def cap(self, one_long: bool = False) -> int:
        """The most rows the next block may have.

        ``one_long``: rank 0's helper thread, which runs one long task at a time, so a
        stop past the grace period loses no others.
        """
        ledger, plan = self.ledger, self.plan
        mean = ledger.mean()
        if one_long and (mean or 0.0) > LONG_TASK:
            return 1
        rec = self.gate.record_bytes
        if rec is None and ledger.done == 0 and ledger.failed:
            rec = record_bytes(())  # everything failed so far: rows are small
        seconds = plan.block_seconds
        if self.stop_at is not None:  # no block that cannot finish before the time limit
            seconds = min(seconds, max(0.0, self.stop_at - time.time()))
        return block_rows(rec, self.size, plan.gather_bytes, mean, seconds, ledger.seen)

    def ahead(self, remaining: int, leader: bool = False) -> bool:
        """May a rank that still holds a block get a second one?

        Holding the next block hides the trip to rank 0 and back, which matters for
        short tasks. For long tasks, or when few tasks are left, a block held by a busy
        rank could have run at once on an idle one, so the answer is no: the rank then
        asks again when it finishes (and holds one block from then on).
        """
        mean = self.ledger.mean()
        long = mean is not None and mean > LONG_TASK and not leader
        return not (long or remaining < 2 * self.size)
