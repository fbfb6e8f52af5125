"""Every setting, resolved one way: keyword (or flag) -> ``MPIBATCH_<NAME>`` -> default.

:data:`SETTINGS` lists each setting once: its default, how its environment variable's
text is read, what values it accepts and a flag that fixes a bad one. :func:`setting`
is the only place a setting is resolved; a bad value is a one-line :class:`UsageError`
naming the keyword or the environment variable. :func:`parse_duration` reads times as
Slurm does (``sbatch --time``). This module imports neither numpy nor MPI: the CLI uses
it before either loads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from .errors import UsageError
from .schedule import SCHEDULES

BOOLEAN = "a boolean (1/0, true/false, yes/no, on/off)"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
DURATION = "MM, HH:MM:SS or D-HH:MM:SS (or MM:SS, D-HH, D-HH:MM: as sbatch --time)"
_DURATION = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")
LEADERS = ("auto", "on", "off")  # node leaders (two-level dispatch): auto = with > 1 node
ROOT_TASKS = ("thread", "main")  # where rank 0 runs its own tasks: a helper thread, or main
DEFAULT_STREAMS = "task"  # when neither a keyword, MPIBATCH_STREAMS nor a resumed file names one


def parse_bool(text: str) -> bool:
    """1/true/yes/on -> True, 0/false/no/off -> False (any case); else ValueError."""
    word = text.strip().lower()
    if word not in _TRUE + _FALSE:
        raise ValueError(text)
    return word in _TRUE


def _duration_seconds(text: str) -> int | None:
    """Seconds in a Slurm time; None for unlimited (``UNLIMITED``, ``INFINITE``, ``0``)."""
    s = str(text).strip()
    if s.lower() in ("unlimited", "infinite"):
        return None
    m = _DURATION.match(s)
    if not m:
        raise ValueError(text)
    days, first, second, third = m.groups()
    a, b, c = int(first), int(second or 0), int(third or 0)
    if days is not None:  # D-HH, D-HH:MM, D-HH:MM:SS
        seconds = int(days) * 86400 + a * 3600 + b * 60 + c
    elif third is not None:  # HH:MM:SS
        seconds = a * 3600 + b * 60 + c
    else:  # MM or MM:SS
        seconds = a * 60 + b
    return seconds or None


def parse_duration(text: str, flag: str = "--time-limit") -> int | None:
    """Seconds in a Slurm time: ``"30"`` is 30 minutes, ``"1-12"`` is 1 day 12 hours.

    MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS, as ``sbatch --time`` reads them;
    None (no limit) for ``UNLIMITED``, ``INFINITE`` or a zero time. Anything else is a
    one-line UsageError naming ``flag``.
    """
    try:
        return _duration_seconds(text)
    except ValueError:
        raise UsageError(
            f"{flag}: expected {DURATION}, got {text!r}; e.g. {flag} 01:30:00"
        ) from None


# ---- checks: a value -> the value to use, or ValueError ----


MAX_SEED = 2**64 - 1  # the file keeps the seed as an HDF5 integer (uint64 above 2**63)
MAX_THREADS = 2**31 - 1  # OMP_NUM_THREADS and BLAS read a C int
# seconds: threading's TIMEOUT_MAX is 9.2e9 s, setitimer overflows at 1e10; 1e9 s is 31 years
MAX_SECONDS = 1e9


def _int_at_least(low: int, high: int | None = None) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
            raise ValueError(value)
        number = int(value)
        if high is not None and number > high:
            raise ValueError(value)
        return number

    return check


def _number(low: float, *, above: bool = True) -> Callable[[Any], float]:
    """A number of seconds above ``low`` (or from it), finite, at most MAX_SECONDS."""

    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ValueError(value)
        number = float(value)
        if not (number > low if above else number >= low) or not number <= MAX_SECONDS:
            raise ValueError(value)
        return number

    return check


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def size_bytes(value: Any) -> int:
    """Bytes in a size: an integer of bytes, or text such as ``4G``, ``512M``, ``1.5GiB``
    (powers of 1024); at least 1 MiB. ValueError otherwise."""
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is None:
            raise ValueError(value)
        power = " KMGT".index(match.group(2).upper() or " ")
        value = int(float(match.group(1)) * 1024**power)
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(value)
    if not 1 << 20 <= int(value) < 1 << 60:
        raise ValueError(value)
    return int(value)


def _one_of(*choices: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(value)
        return str(value)

    return check


def _streams(value: Any) -> str:
    from .streams import STREAMS  # imported here: streams loads numpy

    return _one_of(*STREAMS)(value)


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        return parse_bool(value)
    if value not in (0, 1):  # True, False, 0, 1 (numpy's too)
        raise ValueError(value)
    return bool(value)


def _time_limit(value: Any) -> float | None:
    """A Slurm time (a string) or seconds (a number); None (no limit) for zero."""
    if isinstance(value, str):
        seconds = _duration_seconds(value)
        return None if seconds is None else _number(0.0)(seconds)
    return _number(0.0, above=False)(value) or None


def _gpus(value: Any) -> str | int:
    from .devices import parse_request  # imported here: devices loads numpy

    try:
        return parse_request(value)
    except UsageError:
        raise ValueError(value) from None


@dataclass(frozen=True)
class Setting:
    default: Any
    parse: Callable[[str], Any]  # the environment variable's text -> a value
    check: Callable[[Any], Any]  # a value -> the value to use; ValueError if bad
    expected: str  # what ``check`` accepts, for the error message
    example: str  # a flag that fixes a bad value


_INT1 = "an integer >= 1"
_MOST = " (at most 1e9 seconds)"
SETTINGS: dict[str, Setting] = {
    # None: the resumed file's seed, else one drawn from OS entropy (and recorded)
    "seed": Setting(
        None, int, _int_at_least(0, MAX_SEED), "a non-negative integer < 2**64", "--seed 42"
    ),
    # None: the resumed file's streams, else DEFAULT_STREAMS
    "streams": Setting(None, str, _streams, "one of task, rank", "--streams task"),
    "schedule": Setting(
        "auto", str, _one_of(*SCHEDULES), f"one of {', '.join(SCHEDULES)}", "--schedule auto"
    ),
    "block_size": Setting(None, int, _int_at_least(1), _INT1, "--block-size 10"),
    "dedicated_root": Setting(False, parse_bool, _boolean, BOOLEAN, "--dedicated-root"),
    "root_tasks": Setting(
        "thread", str, _one_of(*ROOT_TASKS), " or ".join(ROOT_TASKS), "--root-tasks thread"
    ),
    "task_memory": Setting(
        None, str, size_bytes, "a size of 1M or more, such as 4G or 512M", "--task-memory 4G"
    ),
    # on: tasks run in a task process beside each rank (docs/task-processes.md)
    "isolation": Setting("on", str, _one_of("on", "off"), "on or off", "--isolation on"),
    "leaders": Setting("auto", str, _one_of(*LEADERS), " or ".join(LEADERS), "--leaders auto"),
    # ranks per pretend node, for testing and tuning leaders on one host (environment only)
    "node_size": Setting(None, int, _int_at_least(1), _INT1, "MPIBATCH_NODE_SIZE=4"),
    "threads_per_rank": Setting(
        1, int, _int_at_least(1, MAX_THREADS), f"{_INT1} and < 2**31", "--threads-per-rank 1"
    ),
    "gpus": Setting("auto", str, _gpus, "auto, none or a number of GPUs per node", "--gpus auto"),
    "ranks_per_gpu": Setting(None, int, _int_at_least(1), _INT1, "--ranks-per-gpu 1"),
    "flush_seconds": Setting(
        30.0, float, _number(0.0), f"a number > 0{_MOST}", "--flush-seconds 30"
    ),
    "retries": Setting(0, int, _int_at_least(0), "an integer >= 0", "--retries 2"),
    "max_failures": Setting(None, int, _int_at_least(1), _INT1, "--max-failures 10"),
    "task_timeout": Setting(
        None, float, _number(0.0), f"a number > 0{_MOST}", "--task-timeout 600"
    ),
    "grace": Setting(30.0, float, _number(0.0, above=False), f"a number >= 0{_MOST}", "--grace 30"),
    "time_limit": Setting(
        None, str, _time_limit, f"{DURATION} or seconds >= 0{_MOST}", "--time-limit 01:30:00"
    ),
    "quiet": Setting(False, parse_bool, _boolean, BOOLEAN, "--quiet"),
    # rank 0's budget for results in flight, in MiB (environment only)
    "gather_mb": Setting(64, int, _int_at_least(1), _INT1, "MPIBATCH_GATHER_MB=64"),
    # seconds between progress lines in a log (environment only; 0.5 s on a terminal)
    "progress_seconds": Setting(
        30.0,
        float,
        _number(0.0),
        "a number of seconds > 0 and at most 1e9",
        "MPIBATCH_PROGRESS_SECONDS=30",
    ),
}
DEFAULTS: dict[str, Any] = {name: s.default for name, s in SETTINGS.items()}


def env_name(name: str) -> str:
    return f"MPIBATCH_{name.upper()}"


def setting(name: str, value: Any = None) -> Any:
    """Setting ``name``: ``value`` if not None, else ``MPIBATCH_<NAME>``, else its default.

    The value is checked (and normalised: ``"2"`` GPUs -> 2, a Slurm time -> seconds);
    a bad one is a one-line UsageError naming the keyword or the environment variable.
    """
    spec = SETTINGS[name]
    if value is not None:
        try:
            return spec.check(value)
        except ValueError:
            raise UsageError(
                f"{name}: expected {spec.expected}, got {value!r}; e.g. {spec.example}"
            ) from None
    var = env_name(name)
    text = os.environ.get(var, "").strip()
    if not text:
        return spec.default
    try:
        return spec.check(spec.parse(text))
    except ValueError:
        raise UsageError(
            f"{var}: expected {spec.expected}, got {text!r}; fix or unset it"
        ) from None


def positive_int(name: str, value: Any, flag: str) -> int:
    """``value`` if it is an integer >= 1, else a one-line UsageError naming ``flag``."""
    try:
        return _int_at_least(1)(value)
    except ValueError:
        raise UsageError(
            f"{name}: expected {_INT1}, got {value!r}; pass {flag} 1 or more"
        ) from None
