"""The results file's layout, defined once: status codes, dataset names, error fields.

Every module that writes, reads, merges or resumes a results file takes its names from
here, so the layout has one definition (see store.py for why it is written in the order
it is).
"""

from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """``/tasks/status`` of a row: int8 in the file."""

    PENDING = 0
    DONE = 1
    FAILED = 2
