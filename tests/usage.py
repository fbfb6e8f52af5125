"""The one error line of an in-process CLI run (the ``main`` fixture of conftest.py).

A module of its own: tests at the top level cannot import from ``conftest``, whose name
tests/mpi and tests/slurm also use.
"""


def one_line(result, words, code=2) -> str:
    """The one error line of an in-process ``main(...)`` result (exit ``code``, no traceback)."""
    rc, out, err = result
    assert rc == code, (rc, out, err)
    lines = [ln for ln in err.splitlines() if ln.startswith("mpibatch: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]
