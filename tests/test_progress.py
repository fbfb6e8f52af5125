import io
import re

import pytest

from mpibatch.errors import UsageError
from mpibatch.progress import (
    ENV_SECONDS,
    WIDTH,
    Progress,
    format_duration,
    format_rate,
)

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d mpibatch: "


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _progress(total=10_000, tty=False, interval=None, **kw):
    clock, out = FakeClock(), io.StringIO()
    p = Progress(total, stream=out, clock=clock, tty=tty, interval=interval, **kw)
    return p, clock, out


def test_plain_lines_are_rate_limited_and_timestamped():
    p, clock, out = _progress(interval=10)
    for t, done in [(1, 100), (9.9, 900), (10, 1000), (15, 1500), (20.5, 2050)]:
        clock.t = 1000 + t
        p.update(done)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # at 10 s and at 20.5 s; the interval restarts from each line
    assert re.fullmatch(
        STAMP + r"1,000/10,000 tasks \(10\.0%\), 100 tasks/s, 0 failed, ETA 0:01:30", lines[0]
    )
    assert lines[1].endswith("2,050/10,000 tasks (20.5%), 100 tasks/s, 0 failed, ETA 0:01:20")


def test_plain_line_counts_failures_in_rate_and_eta():
    p, clock, out = _progress(interval=1)
    clock.t += 4
    p.update(4000, failed=936)  # 4,936 ran in 4 s: 1,234 tasks/s, 5,064 left
    line = out.getvalue()
    assert line.count("\n") == 1 and line.endswith("\n")
    assert "4,936/10,000 tasks (49.4%), 1,234 tasks/s, 936 failed, ETA 0:00:04" in line


def test_tty_bar_redraws_one_line_and_wipes_a_longer_one():
    p, clock, out = _progress(tty=True)
    assert p.interval == 0.5
    clock.t += 4
    p.update(3997, failed=3)
    first = out.getvalue()
    assert (
        first
        == "\r[########............]  40%  4,000/10,000 tasks  1,000 tasks/s  3 failed  ETA 0:00:06"
    )
    clock.t += 1
    p.update(5000)  # no failures: shorter line, padded to wipe the old tail
    second = out.getvalue()[len(first) :]
    assert second.startswith(
        "\r[##########..........]  50%  5,000/10,000 tasks  1,000 tasks/s  ETA"
    )
    assert "failed" not in second and len(second) == len(first) and "\n" not in second


def test_tty_line_fits_the_terminal():
    p, clock, out = _progress(total=10**12, tty=True)
    clock.t += 1
    p.update(10**11, failed=10**9)
    assert 0 < len(out.getvalue()) <= WIDTH  # "\r" + at most WIDTH - 1 columns


def test_close_prints_a_final_line_once():
    p, clock, out = _progress(total=10, tty=True)
    clock.t += 65
    p.update(10)
    p.close()
    p.close()
    p.update(10)
    text = out.getvalue()
    final = "100%  10/10 tasks  0.15 tasks/s  elapsed 0:01:05\n"
    assert text.endswith(final)
    assert text.count("\n") == 1

    p, clock, out = _progress(total=10)
    clock.t += 1.9  # before the first log line is due (2 s)
    p.update(8, failed=2)
    p.close()
    p.close()
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith(
        "10/10 tasks (100.0%), 5.3 tasks/s, 2 failed, elapsed 0:00:02"
    )


def test_quiet_prints_nothing():
    for tty in (True, False):
        p, clock, out = _progress(tty=tty, quiet=True)
        clock.t += 100
        p.update(5000, failed=5)
        p.close()
        assert out.getvalue() == ""


def test_eta_unknown_before_any_task_and_zero_tasks():
    p, clock, out = _progress(interval=1)
    clock.t += 1
    p.update(0)
    assert out.getvalue().endswith("0/10,000 tasks (0.0%), 0 tasks/s, 0 failed, ETA --\n")
    assert "ETA --" in _progress(tty=True)[0].bar_line(0.0)
    empty, _, out = _progress(total=0)
    empty.close()
    final = "0/0 tasks (100.0%), -- tasks/s, 0 failed, elapsed 0:00:00"
    assert final in out.getvalue()


@pytest.mark.parametrize(
    "seconds, text",
    [(0, "0:00:00"), (5.4, "0:00:05"), (59.6, "0:01:00"), (3599, "0:59:59"), (3600, "1:00:00"),
     (93784, "26:03:04"), (None, "--"), (float("inf"), "--"), (float("nan"), "--"), (-1, "--")],
)  # fmt: skip
def test_format_duration(seconds, text):
    shown = format_duration(seconds)
    assert shown == text


def test_format_rate():
    assert format_rate(1234.4) == "1,234"
    assert format_rate(12.34) == "12.3"
    assert format_rate(0.0833) == "0.083"
    assert format_rate(None) == "--"


def test_default_interval_from_env(monkeypatch):
    out = io.StringIO()
    monkeypatch.delenv(ENV_SECONDS, raising=False)
    assert Progress(1, stream=out).interval == 30  # StringIO is not a TTY
    monkeypatch.setenv(ENV_SECONDS, "2.5")
    assert Progress(1, stream=out).interval == 2.5
    assert Progress(1, stream=out, tty=True).interval == 0.5
    assert Progress(1, stream=out, interval=7).interval == 7
    for bad in ("soon", "0", "-3", "inf"):
        monkeypatch.setenv(ENV_SECONDS, bad)
        with pytest.raises(UsageError, match=f"{ENV_SECONDS}: expected a number of seconds"):
            Progress(1, stream=out)


def test_a_broken_stream_does_not_stop_the_run():
    class Broken(io.StringIO):
        def write(self, text):
            raise BrokenPipeError

    clock = FakeClock()
    p = Progress(10, stream=Broken(), clock=clock, tty=False, interval=1)
    clock.t += 2
    p.update(5)
    p.close()
    assert p.quiet


def test_log_lines_come_within_seconds_then_at_a_calmer_pace(monkeypatch):
    monkeypatch.setenv(ENV_SECONDS, "30")
    clock, out = FakeClock(), io.StringIO()
    p = Progress(1_000_000, stream=out, clock=clock, tty=False)
    for t in range(1, 200):
        clock.t = 1000 + t
        p.update(t * 10)
    stamps = [
        int(ln.split(" tasks")[0].split()[-1].split("/")[0].replace(",", "")) // 10
        for ln in out.getvalue().splitlines()
    ]
    assert stamps[:6] == [2, 6, 14, 30, 60, 90]  # gaps 2, 4, 8, 16, then 30 s each


def test_start_says_what_started_at_once_and_quiet_says_nothing():
    p, _, out = _progress()
    p.start("1,000 tasks on 4 ranks, schedule auto -> out.h5")
    assert re.fullmatch(
        STAMP + r"1,000 tasks on 4 ranks, schedule auto -> out.h5\n", out.getvalue()
    )
    p, _, out = _progress(tty=True)
    p.start("x")
    assert out.getvalue() == "mpibatch: x\n"
    p, _, out = _progress(quiet=True)
    p.start("x")
    assert out.getvalue() == ""
