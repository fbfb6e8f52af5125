"""The Stopper: stop requests, grace periods, what it installs and that nothing outlives it."""

import os
import signal
import threading
import time

import pytest

from mpibatch._stop import Stopper, TaskInterrupted


def _watchdogs() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "mpibatch-watchdog"]


def test_the_watchdog_and_the_handlers_end_with_the_run():
    before = signal.getsignal(signal.SIGTERM)
    stopper = Stopper(grace=1.0, task_timeout=5.0, where="rank 0 on here")
    with stopper.installed():
        assert len(_watchdogs()) == 1
        assert signal.getsignal(signal.SIGTERM) is not before
    assert _watchdogs() == []  # stopped and joined, not left looping
    assert signal.getsignal(signal.SIGTERM) is before
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)


def test_a_signal_asks_for_a_stop_and_the_grace_period_runs_from_then():
    stopper = Stopper(grace=60.0, task_timeout=None, where="here")
    with stopper.installed():
        signal.raise_signal(signal.SIGTERM)
    assert stopper.requested and stopper.reason == "SIGTERM"
    assert not stopper.past_grace()
    grace_left = stopper.stop_deadline - time.perf_counter()  # a 60 s grace just began
    assert grace_left > 50


def test_past_the_grace_period_and_abandoning_the_running_task():
    stopper = Stopper(grace=0.0, task_timeout=None, where="here")
    assert not stopper.past_grace()  # nothing asked
    stopper.request("the time limit is near")
    stopper.request("SIGTERM")  # the first reason stays
    assert stopper.past_grace() and stopper.reason == "the time limit is near"
    stopper.begin(7)
    assert stopper.task_id == 7
    stopper.abandon_task()
    assert stopper.task_id is None


def test_tasks_here_lets_an_interrupt_land_only_while_it_lasts():
    stopper = Stopper(grace=0.0, task_timeout=None, where="here")
    stopper.tasks_on_helper_thread()
    stopper.request("SIGTERM")
    stopper.task_id = 3
    stopper._on_alarm(signal.SIGALRM, None)  # on another thread: not interrupted
    with stopper.tasks_here(), pytest.raises(TaskInterrupted):
        stopper._on_alarm(signal.SIGALRM, None)
    stopper._on_alarm(signal.SIGALRM, None)  # back on the helper thread


def test_ctrl_c_is_a_stop_and_a_later_second_one_ends_the_grace_period():
    stopper = Stopper(grace=60.0, task_timeout=None, where="here")
    with stopper.installed():
        signal.raise_signal(signal.SIGINT)  # no KeyboardInterrupt: a stop
        assert stopper.requested and stopper.reason == "SIGINT"
        signal.raise_signal(signal.SIGINT)  # the same Ctrl-C delivered twice: no change
        assert not stopper.past_grace()
        stopper.asked_at -= 2.0  # as if the first came two seconds ago
        signal.raise_signal(signal.SIGINT)
        assert stopper.past_grace()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def _in_child(report) -> tuple:
    """Fork; the child reports ``report()`` through a pipe; returns it."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.write(write, repr(report()).encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as f:
        return eval(f.read())  # noqa: S307  (our own repr of a tuple of strings)


def _handlers() -> tuple:
    sigs = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT, signal.SIGALRM)
    return tuple(getattr(signal.getsignal(s), "__name__", str(signal.getsignal(s))) for s in sigs)


def test_a_child_forked_during_a_run_gets_the_handlers_from_before_it():
    before = _handlers()
    stopper = Stopper(grace=1.0, task_timeout=5.0, where="here")
    with stopper.installed():
        assert _handlers() != before
        assert _in_child(_handlers) == before
        assert _in_child(lambda: signal.getitimer(signal.ITIMER_REAL)) == (0.0, 0.0)
    mine = signal.signal(signal.SIGUSR1, lambda s, f: None)  # outside a run: left alone
    try:
        assert _in_child(_handlers) == _handlers() and _handlers()[1] == "<lambda>"
    finally:
        signal.signal(signal.SIGUSR1, mine)


def test_nothing_a_run_installs_outlives_it(tmp_path):
    import mpibatch
    from mpibatch import _stop

    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    summary = mpibatch.run(lambda p, r: 1.0, {"a": [1, 2]}, reps=3, out=tmp_path / "x.h5")
    assert summary.done == 6
    assert _watchdogs() == [] and _stop._before_run == {}
    assert {s: signal.getsignal(s) for s in handlers} == handlers
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert _in_child(_handlers) == _handlers()  # the fork hook does nothing after a run
