import sys

import numpy as np
import pytest

from mpibatch._records import Columns, infer_schema
from mpibatch.grid import Grid
from mpibatch.results import open_results
from mpibatch.store import Store
from mpibatch.timeline import format_stats, plot, stats


def _write(path, status, rank, start, elapsed, attrs):
    """A results file as rank 0 writes it: one ``write_rows`` per run of rows from one rank."""
    status, rank = np.asarray(status), np.asarray(rank)
    n = len(status)
    store = Store.create(path, Grid({"size": ["s"]}, reps=n), range(n), {"seed": 1})
    schema = infer_schema({"value": 0.5}, 0)
    store.add_results(schema)
    row = 0
    while row < n:
        end = row + 1
        while end < n and rank[end] == rank[row]:
            end += 1
        cols = Columns(schema, end - row)
        cols.status[:] = status[row:end]
        cols.start[:] = np.where(status[row:end] > 0, start[row:end], np.nan)
        cols.elapsed[:] = np.where(status[row:end] > 0, elapsed[row:end], np.nan)
        cols.results["value"][:] = np.arange(row, end)
        store.write_rows(row, cols, rank=int(rank[row]))
        row = end
    store.close(attrs)
    return open_results(path)


def _small(tmp_path, attrs):
    # rank 0: 2 s + 1 s (busy 3), rank 1: 1 s (busy 1), one task pending
    return _write(
        tmp_path / "small.h5",
        status=[1, 2, 1, 0],
        rank=[0, 0, 1, -1],
        start=[0.0, 2.0, 0.5, 0.0],
        elapsed=[2.0, 1.0, 1.0, 0.0],
        attrs=attrs,
    )


def test_stats_by_hand(tmp_path):
    res = _small(tmp_path, {"n_ranks": 2, "wall_seconds": 4.0, "dispatch_seconds": 0.2})
    st = stats(res)
    assert st["n_ranks"] == 2 and st["wall"] == 4.0 and st["n_ran"] == 3
    assert st["busy"] == [3.0, 1.0] and st["tasks"] == [2, 1]
    assert st["load_imbalance"] == pytest.approx(1.5)  # 3 / mean(3, 1)
    assert st["idle_fraction"] == pytest.approx(1 - 4.0 / (2 * 4.0))
    assert st["dispatch_seconds"] == pytest.approx(0.2)
    assert st["dispatch_fraction"] == pytest.approx(0.05)
    assert format_stats(st) == [
        "load imbalance: 1.50 (max rank busy / mean; busiest rank 0: 3.000 s, 2 tasks)",
        "idle: 50.0% of rank time",
        "dispatch: 0.2 s on rank 0 (5.0% of wall)",
    ]


def test_ranks_that_ran_nothing_count_and_wall_falls_back_to_the_last_task(tmp_path):
    res = _small(tmp_path, {"n_ranks": 4})
    st = stats(res)
    assert st["busy"] == [3.0, 1.0, 0.0, 0.0]
    assert st["wall"] == pytest.approx(3.0)  # task 1 ends at 2 + 1
    assert st["load_imbalance"] == pytest.approx(3.0)  # 3 / (4 / 4)
    assert st["idle_fraction"] == pytest.approx(1 - 4.0 / 12.0)
    assert st["dispatch_seconds"] is None and st["dispatch_fraction"] is None
    lines = format_stats(st)
    assert lines[1] == "idle: 66.7% of rank time" and len(lines) == 2


def test_a_run_where_nothing_ran(tmp_path):
    res = _write(tmp_path / "none.h5", [0, 0], [-1, -1], [0, 0], [0, 0], {"n_ranks": 3})
    st = stats(res)
    assert st["busy"] == [0.0, 0.0, 0.0] and st["wall"] is None
    assert st["load_imbalance"] is None and st["idle_fraction"] is None
    assert format_stats(st) == ["load imbalance: unknown (no task ran)"]
    pytest.importorskip("matplotlib")
    plot(res, tmp_path / "none.png")
    assert (tmp_path / "none.png").stat().st_size > 5000


def _skewed(tmp_path, n=300, ranks=3, seed=5):
    """``n`` tasks on ``ranks`` ranks in round-robin blocks, times over 3 decades, 5% failed."""
    rng = np.random.default_rng(seed)
    rank = np.repeat(np.arange(n // 10) % ranks, 10)
    elapsed = 10.0 ** rng.uniform(-3.5, -0.5, n)
    elapsed[rank == 2] *= 1.5  # the last rank is slow
    status = np.where(rng.random(n) < 0.05, 2, 1)
    status[-7:] = 0  # the run was cut short
    start = np.zeros(n)
    for r in range(ranks):
        idx = np.flatnonzero(rank == r)
        gaps = rng.uniform(0, 0.002, idx.size)
        start[idx] = np.cumsum(np.r_[0.0, elapsed[idx][:-1] + gaps[:-1]]) + 0.05
    end = float(np.max((start + elapsed)[status > 0]))
    attrs = {"n_ranks": ranks, "wall_seconds": end + 0.1, "dispatch_seconds": 0.01}
    return _write(tmp_path / "skewed.h5", status, rank, start, elapsed, attrs)


def test_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    res = _skewed(tmp_path)
    assert (res.status == 2).sum() > 5 and (res.status == 0).sum() == 7
    out = tmp_path / "timeline.png"
    plot(res, out)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_plot_is_quick_for_many_tasks(tmp_path):
    pytest.importorskip("matplotlib")
    n = 100_000
    res = _write(
        tmp_path / "big.h5",
        status=np.ones(n, np.int8),
        rank=np.arange(n) // (n // 8),
        start=np.tile(np.arange(n // 8) * 1e-3, 8),
        elapsed=np.full(n, 1e-3),
        attrs={"n_ranks": 8, "wall_seconds": 12.6},
    )
    plot(res, tmp_path / "big.png")  # one collection per status, not one artist per task
    assert (tmp_path / "big.png").stat().st_size > 10_000


def test_plot_without_matplotlib_names_the_extra(tmp_path, monkeypatch):
    res = _small(tmp_path, {"n_ranks": 2})
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError) as info:
        plot(res, tmp_path / "x.png")
    assert str(info.value) == "mpibatch plot needs matplotlib: pip install 'mpibatch[plot]'"
    assert not (tmp_path / "x.png").exists()


def test_a_dedicated_root_is_not_counted_as_idle(tmp_path):
    attrs = {"n_ranks": 3, "wall_seconds": 2.0, "dedicated_root": True}
    res = _write(
        tmp_path / "ded.h5",
        status=[1, 1, 1, 1],
        rank=[1, 1, 2, 2],
        start=np.array([0.0, 1.0, 0.0, 1.0]),
        elapsed=np.ones(4),
        attrs=attrs,
    )
    st = stats(res)
    assert st["load_imbalance"] == pytest.approx(1.0)
    assert st["idle_fraction"] == pytest.approx(0.0)
