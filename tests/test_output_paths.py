"""The results file as users expect it: written through a symlinked --out, its temporary
file made new and cleaned up after a kill, and a run that notices the file was deleted or
replaced under it (tests/mpi/test_output_files.py runs these with real ranks)."""

import os
import subprocess
import sys

import h5py
import pytest

from mpibatch import _h5
from mpibatch.errors import OutputError
from mpibatch.grid import Grid
from mpibatch.store import Store, check_output

GRID = Grid({"n": [1, 2, 3]}, reps=1)


def _gone_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_a_symlinked_out_is_created_through_the_link_which_stays(tmp_path):
    (tmp_path / "real").mkdir()
    link = tmp_path / "r.h5"
    link.symlink_to(tmp_path / "real" / "t.h5")
    check_output(link, overwrite=False)  # dangling: its target is new
    store = Store.create(link, GRID, range(3), {"seed": 1})
    assert store.path == tmp_path / "real" / "t.h5"  # side files go beside the target
    store.close({})
    assert link.is_symlink() and os.readlink(link) == str(tmp_path / "real" / "t.h5")
    assert sorted(os.listdir(tmp_path / "real")) == ["t.h5"]
    with pytest.raises(OutputError, match="real/t.h5' already exists"):
        check_output(link, overwrite=False)
    again = Store.reopen(link, range(3))
    again.close({"note": "resumed"})
    assert link.is_symlink()
    with h5py.File(link, "r") as f:
        assert f.attrs["note"] == "resumed"


def test_a_temporary_file_a_killed_run_left_is_removed_only_if_its_process_is_gone(tmp_path):
    out = tmp_path / "r.h5"
    dead = tmp_path / f".r.h5.creating-{_gone_pid()}"
    mine = tmp_path / f".r.h5.creating-{os.getpid()}"  # a killed run's, with this PID
    alive = tmp_path / f".r.h5.creating-{os.getppid()}"  # a run still creating it
    for p in (dead, mine, alive):
        p.write_bytes(b"half made")
    Store.create(out, GRID, range(3), {}).close({})
    assert not dead.exists() and not mine.exists() and alive.read_bytes() == b"half made"


def test_the_temporary_file_is_made_new_never_through_a_link(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    tmp = tmp_path / "new.h5"
    tmp.symlink_to(victim)
    with pytest.raises(FileExistsError):
        _h5.create_file(tmp)
    assert victim.read_bytes() == b"keep me"


@pytest.mark.parametrize("what", ["deleted", "replaced"])
def test_a_file_deleted_or_replaced_under_the_run_stops_it_with_one_line(tmp_path, what):
    out = tmp_path / "r.h5"
    store = Store.create(out, GRID, range(3), {})
    store.flush()  # still the same file
    out.unlink()
    if what == "replaced":
        out.write_bytes(b"another file")
    word = "deleted" if what == "deleted" else "replaced by another file"
    with pytest.raises(OutputError, match=f"'{out}' was {word} while this run wrote it"):
        store.flush()
    with pytest.raises(OutputError, match=word):
        store.close({"end_time": "never"})
    store.f.close()


def test_a_plain_h5py_reader_opens_the_file_while_it_is_written(tmp_path):
    out = tmp_path / "r.h5"
    store = Store.create(out, GRID, range(3), {})
    code = "import h5py, sys; print(h5py.File(sys.argv[1], 'r')['tasks/status'].shape[0])"
    r = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "3", r.stderr
    store.close({})
