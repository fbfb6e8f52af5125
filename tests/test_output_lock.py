"""One run per results file: ``<out>.lock`` held while a run writes it."""

import os

import pytest

from mpibatch import run
from mpibatch._output import lock_output, lock_path
from mpibatch.errors import OutputError


def test_a_held_lock_refuses_a_second_holder_naming_the_first(tmp_path):
    out = tmp_path / "r.h5"
    first = lock_output(out)
    assert first is not None and lock_path(out).exists()
    with pytest.raises(OutputError, match=f"being written by another run .*pid {os.getpid()}"):
        lock_output(out)
    first.release()
    assert not lock_path(out).exists()
    again = lock_output(out)  # free once released
    assert again is not None
    again.release()
    again.release()  # twice is harmless


def test_a_lock_file_a_killed_run_left_is_taken_over(tmp_path):
    out = tmp_path / "r.h5"
    lock_path(out).write_text("mpibatch on host gone, pid 1")  # no process holds it
    lock = lock_output(out)
    assert lock is not None and "pid 1\n" not in lock_path(out).read_text()
    lock.release()


def test_no_lock_where_no_file_can_be_made_leaves_the_message_to_the_output_checks(tmp_path):
    assert lock_output(tmp_path / "missing" / "r.h5") is None


def _task(params, rng):
    return {"x": rng.random()}


def test_runs_in_one_process_release_the_lock_even_on_errors(tmp_path):
    out = tmp_path / "r.h5"
    run(_task, {"a": [1, 2]}, out=str(out), quiet=True)
    assert out.exists() and not lock_path(out).exists()
    with pytest.raises(OutputError, match="already exists"):
        run(_task, {"a": [1, 2]}, out=str(out), quiet=True)
    assert not lock_path(out).exists()
    summary = run(_task, {"a": [1, 2]}, out=str(out), quiet=True, overwrite=True)
    assert summary is not None and summary.done == 2
    assert not lock_path(out).exists()


def _gone_pid() -> int:
    import subprocess

    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_the_lock_of_a_symlinked_out_lies_beside_its_target(tmp_path):
    (tmp_path / "real").mkdir()
    link = tmp_path / "r.h5"
    link.symlink_to(tmp_path / "real" / "t.h5")
    lock = lock_output(link)
    assert lock is not None and lock.path == tmp_path / "real" / "t.h5.lock"
    assert lock.path.is_file() and not (tmp_path / "r.h5.lock").exists()
    lock.release()


def test_a_symlink_planted_as_the_lock_file_is_refused(tmp_path):
    out = tmp_path / "r.h5"
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    lock_path(out).symlink_to(victim)
    with pytest.raises(OutputError, match="is a symbolic link; expected a plain file"):
        lock_output(out)
    assert victim.read_text() == "keep me"


@pytest.fixture
def no_flock(monkeypatch):
    """A file system without flock (some Lustre and NFS mounts): flock fails with ENOSYS."""
    import errno
    import fcntl

    def flock(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", flock)


def test_without_flock_the_record_decides_and_staleness_only_on_this_host(tmp_path, no_flock):
    import socket

    out = tmp_path / "r.h5"
    first = lock_output(out)  # made new (O_EXCL): held
    assert first is not None and f"pid {os.getpid()}" in lock_path(out).read_text()
    with pytest.raises(OutputError, match=f"pid {os.getpid()}.*if no run writes it, remove"):
        lock_output(out)  # this host, its process alive: held
    first.release()
    host = socket.gethostname()
    lock_path(out).write_text(f"mpibatch on host {host}, pid {_gone_pid()}")
    again = lock_output(out)  # this host, its process gone: stale, taken over
    assert again is not None and f"pid {os.getpid()}" in lock_path(out).read_text()
    again.release()
    lock_path(out).write_text("mpibatch on host elsewhere, pid 1")
    with pytest.raises(OutputError, match="host elsewhere, pid 1.*remove"):
        lock_output(out)  # another host: it cannot be judged from here
    assert lock_path(out).read_text() == "mpibatch on host elsewhere, pid 1"
