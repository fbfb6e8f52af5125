"""Rank 0's live progress: a redrawn bar on a terminal, a timestamped line per interval in logs.

``start`` says at once what started; ``update`` is called after every block or task, so it
returns at once unless the next line is due. In logs (under mpiexec stderr is a pipe, so
this is also an interactive run's case) the first line comes after 2 s and the gaps double
up to ``MPIBATCH_PROGRESS_SECONDS``: progress within seconds, then a calm pace in batch
logs. Each line goes out in one ``write`` call.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ._config import DEFAULTS, env_name, setting

ENV_SECONDS = env_name("progress_seconds")
TTY_SECONDS = 0.5
FIRST_SECONDS = 2.0  # the first log line; later gaps double up to the interval
LOG_SECONDS = DEFAULTS["progress_seconds"]
WIDTH = 100  # a redrawn line stays shorter than this, so it never wraps
_BAR = 20


def _default_interval(tty: bool) -> float:
    """0.5 s on a terminal; else ``MPIBATCH_PROGRESS_SECONDS`` or 30 s (batch logs)."""
    return TTY_SECONDS if tty else float(setting("progress_seconds"))


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_duration(seconds: float | None) -> str:
    """``H:MM:SS`` (hours unbounded), or ``--`` when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def format_rate(rate: float | None) -> str:
    """Tasks per second with sensible precision: ``1,234``, ``12.5``, ``0.083``."""
    if rate is None or not math.isfinite(rate):
        return "--"
    if rate >= 100:
        return f"{rate:,.0f}"
    if rate >= 1:
        return f"{rate:.1f}"
    return f"{rate:.2g}"


class Progress:
    """Progress of ``total`` tasks, printed by rank 0 to ``stream`` (default stderr)."""

    def __init__(
        self,
        total: int,
        *,
        quiet: bool = False,
        stream: TextIO | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        tty: bool | None = None,
    ) -> None:
        self.total = max(0, int(total))
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.tty = _isatty(self.stream) if tty is None else tty
        self.interval = _default_interval(self.tty) if interval is None else float(interval)
        ramp = interval is None and not self.tty  # a fixed interval, when given, is kept
        self._gap = min(FIRST_SECONDS, self.interval) if ramp else self.interval
        self.clock = clock
        self.t0 = clock()
        self._next = self.t0 + self._gap
        self.done = self.failed = 0
        self._drawn = 0  # length of the bar now on the terminal line
        self.closed = False

    def update(self, done: int, failed: int = 0) -> None:
        """Record tasks ``done`` (ok) and ``failed`` so far; print if ``interval`` has passed."""
        self.done, self.failed = done, failed
        if self.quiet or self.closed:
            return
        now = self.clock()
        if now < self._next:
            return
        self._gap = min(2 * self._gap, self.interval)
        self._next = now + self._gap
        self._emit(now, final=False)

    def start(self, what: str) -> None:
        """Say at once what started (tasks, ranks, schedule, output file)."""
        if not self.quiet:
            stamp = "" if self.tty else time.strftime("%Y-%m-%d %H:%M:%S ")
            self._write(f"{stamp}mpibatch: {what}\n")

    def close(self) -> None:
        """Print the final line (ending the bar on a terminal); later calls do nothing."""
        if self.closed:
            return
        self.closed = True
        if not self.quiet:
            self._emit(self.clock(), final=True)

    def _emit(self, now: float, final: bool) -> None:
        elapsed = now - self.t0
        if self.tty:
            self._write(self._redraw(self.bar_line(elapsed, final), final))
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            self._write(f"{stamp} mpibatch: {self.log_line(elapsed, final)}\n")

    def _redraw(self, line: str, final: bool) -> str:
        line = line[: WIDTH - 1]
        pad = " " * max(0, self._drawn - len(line))  # wipe what a longer line left behind
        self._drawn = len(line)
        return f"\r{line}{pad}" + ("\n" if final else "")

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream must not stop the run
            self.quiet = True

    def _numbers(self, elapsed: float) -> tuple[float, float | None, str]:
        ran = self.done + self.failed
        frac = ran / self.total if self.total else 1.0
        rate = ran / elapsed if elapsed > 0 else None
        remaining = max(0, self.total - ran)
        if remaining == 0:
            eta: float | None = 0.0
        else:
            eta = remaining / rate if rate else None
        return frac, rate, format_duration(eta)

    def _tail(self, elapsed: float, final: bool, eta: str) -> str:
        return f"elapsed {format_duration(elapsed)}" if final else f"ETA {eta}"

    def bar_line(self, elapsed: float, final: bool = False) -> str:
        """The terminal line: bar, percent, counts, rate, failures (if any), ETA."""
        frac, rate, eta = self._numbers(elapsed)
        filled = int(_BAR * min(1.0, frac))
        parts = [
            f"[{'#' * filled}{'.' * (_BAR - filled)}] {min(frac, 1.0):4.0%}",
            f"{self.done + self.failed:,}/{self.total:,} tasks",
            f"{format_rate(rate)} tasks/s",
        ]
        if self.failed:
            parts.append(f"{self.failed:,} failed")
        parts.append(self._tail(elapsed, final, eta))
        return "  ".join(parts)

    def log_line(self, elapsed: float, final: bool = False) -> str:
        """The log line, without its timestamp: counts, percent, rate, failures, ETA."""
        frac, rate, eta = self._numbers(elapsed)
        tail = self._tail(elapsed, final, eta)
        return (
            f"{self.done + self.failed:,}/{self.total:,} tasks ({frac:.1%}), "
            f"{format_rate(rate)} tasks/s, {self.failed:,} failed, {tail}"
        )
