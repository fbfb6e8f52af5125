"""Tasks failing with a NUL, lone surrogates or 20 MB in their message, under real
``mpiexec -n 2``: the close stores them (escaped, cut), and ``errors``, ``info``,
``mpibatch.open`` and ``--resume`` read the file back."""

import h5py
from conftest import TASKS, mpibatch

import mpibatch as api

ODD = TASKS / "odd_messages.py"


def _check_file(out):
    res = api.open(out)
    assert sorted(res.errors["task"].tolist()) == [1, 2, 3, 4]
    msg = dict(zip(res.errors["task"].tolist(), res.errors["message"], strict=True))
    assert msg[1] == "nul\\x00byte"
    assert msg[2] == "cannot open /data/caf\\udce9"
    assert msg[3].startswith("a" * 1_000) and msg[3].endswith("b" * 1_000)
    assert "[cut: 20,000,000 chars, kept the first" in msg[3] and len(msg[3]) <= 10_000
    assert msg[4] == "'\\udcff'"
    assert res.count("done") == 2 and res.count("failed") == 4
    with h5py.File(out, "r") as f:
        assert all(len(t) < 200_000 for t in f["errors/traceback"].asstr()[()])


def test_odd_failure_text_is_stored_read_and_resumed(tmp_path):
    out = tmp_path / "odd.h5"
    r = mpibatch(2, "run", ODD, "--seed", 4, "--out", out, timeout=120)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "2 done, 4 failed" in r.stdout
    _check_file(out)
    before = h5py.File(out, "r")["results/v"][()]

    r = mpibatch(None, "errors", out, "--traceback")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "ValueError: nul\\x00byte" in r.stdout and "\\udce9" in r.stdout
    assert "raise RuntimeError" in r.stdout and len(r.stdout) < 500_000
    r = mpibatch(None, "info", out)
    assert r.returncode == 0 and "failed tasks: mpibatch errors" in r.stdout, r.stderr[-3000:]

    r = mpibatch(2, "run", ODD, "--seed", 4, "--out", out, "--resume", timeout=120)
    assert r.returncode == 1, r.stderr[-3000:]
    assert "Traceback" not in r.stderr and "2 done, 4 failed" in r.stdout
    _check_file(out)
    with h5py.File(out, "r") as f:
        assert f["results/v"][()].tobytes() == before.tobytes()
