"""Settings resolve as: keyword argument -> ``MPIBATCH_<NAME>`` environment variable -> default."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from .errors import UsageError

DEFAULTS: dict[str, Any] = {
    "seed": None,
    "streams": "task",
    "schedule": "auto",
    "flush_seconds": 30.0,
    "grace": 30.0,
    "gpus": "auto",
    "ranks_per_gpu": None,
    "threads_per_rank": 1,
    "gather_mb": 64,
    "quiet": False,
    "root_tasks": "thread",
}


def _as_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise UsageError(
            f"MPIBATCH_{name.upper()}: expected an integer, got {text!r}; fix or unset it"
        ) from None


def _as_number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise UsageError(
            f"MPIBATCH_{name.upper()}: expected a number, got {text!r}; fix or unset it"
        ) from None


def _as_bool(name: str, text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


_PARSE: dict[str, Callable[[str, str], Any]] = {
    "seed": _as_int,
    "threads_per_rank": _as_int,
    "gather_mb": _as_int,
    "flush_seconds": lambda name, text: _as_number(name, text),
    "grace": lambda name, text: _as_number(name, text),
    "ranks_per_gpu": _as_int,
    "quiet": _as_bool,
}


def resolve(name: str, value: Any = None) -> Any:
    """The setting ``name``: ``value`` if given, else its environment variable, else default."""
    if value is not None:
        return value
    text = os.environ.get(f"MPIBATCH_{name.upper()}")
    if text is not None and text != "":
        return _PARSE.get(name, lambda n, t: t)(name, text)
    return DEFAULTS[name]


def positive_int(name: str, value: Any, flag: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{name}: expected an integer >= 1, got {value!r}; pass {flag} 1 or more")
    return value


def parse_duration(text: str) -> float:
    """Seconds in ``SECONDS``, ``MM:SS``, ``HH:MM:SS`` or Slurm's ``D-HH:MM:SS``."""
    try:
        days, _, clock = text.strip().rpartition("-")
        parts = [float(p) for p in clock.split(":")]
        if not 1 <= len(parts) <= 3 or any(p < 0 for p in parts):
            raise ValueError
        seconds = sum(p * 60**k for k, p in enumerate(reversed(parts)))
        return seconds + 86400 * (int(days) if days else 0)
    except ValueError:
        raise UsageError(
            f"time limit: expected HH:MM:SS (or D-HH:MM:SS, or seconds), got {text!r}; "
            "e.g. --time-limit 01:30:00"
        ) from None
