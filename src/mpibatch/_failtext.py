"""A failed task's text as a results file can hold it (see layout.failure_record)."""

from __future__ import annotations


def storable_text(text: str, limit: int) -> str:
    """``text`` as HDF5 strings and JSON lines can hold it, at most ``limit`` characters.

    A NUL becomes ``\\x00`` and a lone surrogate (``os.fsdecode`` of odd bytes) its
    escape ``\\udcff``; past ``limit``, a quarter from the start and the rest from the
    end are kept, with the cut noted between. Other text comes back unchanged, and so
    does text this returned (so records can pass through it again).
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) <= limit:
        return text
    room = limit - 100  # the note takes under 100 characters
    head, tail = room // 4, room - room // 4
    note = f" ... [cut: {len(text):,} chars, kept the first {head:,} and last {tail:,}] ... "
    return text[:head] + note + text[len(text) - tail :]
