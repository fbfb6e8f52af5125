"""Flat against node leaders on pretend hosts, and the model's projection to 100,000 ranks.

Run from the repository root, as root (the pretend hosts are network namespaces), with the
project's virtual environment active::

    python benchmarks/scale.py [--tasks-per-rank 250] [--markdown] [--quick]

Uses the pretend cluster of tests/multihost/cluster.py (MPICH's Hydra over the ssh
stand-in, ``UCX_TLS=tcp,self``: real TCP between hosts, shared memory within one). Where
it cannot be made (not root, no ``ip``), every "host" is a pretend node of
``MPIBATCH_NODE_SIZE`` ranks on this machine, and the table says so.

For 4, 8 and 16 ranks on 1, 2 and 4 hosts, ``--leaders off`` then ``on`` (one run of each,
side by side, so their ratio compares like with like on this oversubscribed machine):

- *rate*: ``_sleep_task.py`` with 1 ms tasks, ``--schedule dynamic --block-size 1``: every
  block is one task, so rank 0 gets a request per task in the flat path (the load that
  thousands of ranks put on it with larger blocks). tasks/s = tasks / the run's own wall
  time (the file's session ``wall_seconds``); rank-0 messages per task = ``n_blocks`` (the
  blocks, or a leader's grants, rank 0 handed out) / tasks; rank-0 requests/s = ``n_blocks``
  / wall;
- *gather*: ``_gather_task.py`` (1 MiB of float64 a task, default blocks), GB/s = bytes
  stored / wall.

Then the costs for the model (benchmarks/_scale_model.py, which says how it works), as
the time a rank spends on them: ``c0`` (rank 0 per request: receive, answer, store) and
``c_part`` (rank 0 per rank report inside a bundle, after one ``c0`` per grant) from
rank 0's ``dispatch_seconds``, ``c_leader`` (a leader per request of its ranks) from the
leader's CPU time (``_cpu_probe.py``), all from dedicated-root runs of 200 and 20,000
empty tasks in blocks of one, the short run's subtracted (see :func:`cpu_costs`);
``lat_in``, ``lat_x`` and ``send`` from ``_pingpong.py`` on 2 hosts x 2; the file
bandwidth from the flat 4-rank gather run on one host.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import h5py
import numpy as np
from _bench import BINDIR, HERE, begin, file_attrs, print_table

ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
import _scale_model as model  # noqa: E402
from multihost.cluster import Cluster, available  # noqa: E402

SHORT_LONG = (200, 20000)  # tasks in the cost runs: the difference is what is measured
MPIEXEC, MPIBATCH = str(BINDIR / "mpiexec"), str(BINDIR / "mpibatch")
HEADER = [
    "ranks x hosts",
    "tasks/s flat",
    "tasks/s leaders",
    "ratio",
    "rank-0 msgs/task flat",
    "rank-0 msgs/task leaders",
    "rank-0 requests/s flat",
    "rank-0 requests/s leaders",
    "gather GB/s flat",
    "gather GB/s leaders",
    "notes",
]


class Launcher:
    """Runs ``mpiexec`` on the pretend hosts, or on this host with pretend nodes."""

    def __init__(self, cluster: Cluster | None) -> None:
        self.cluster = cluster

    def run(self, cmd: list[str], n: int, hosts: int, env: dict) -> subprocess.CompletedProcess:
        c = self.cluster
        if c is None:
            full = {**__import__("os").environ, **env, "MPIBATCH_NODE_SIZE": str(n // hosts)}
            line = [MPIEXEC, "-n", str(n), *cmd]
            return subprocess.run(line, capture_output=True, text=True, timeout=600, env=full)
        c.slots = n // hosts
        hostfile = c.hostfile("mpich", c.hosts[:hosts])
        return c.mpiexec(cmd, n=n, timeout=600, mpiexec=MPIEXEC, hostfile=hostfile, env=env)


def one(launch: Launcher, work: Path, kind: str, n: int, hosts: int, leaders: str, per: int):
    """(attrs, ranks' task counts) of one run, or (None, why)."""
    out = work / f"{kind}-{n}-{hosts}-{leaders}.h5"
    if kind == "rate":
        task, reps, env = HERE / "_sleep_task.py", per * n, {"SLEEP_MS": "1"}
        extra = ["--schedule", "dynamic", "--block-size", "1"]
    else:
        task, reps, env, extra = HERE / "_gather_task.py", 8 * n, {}, []
    cmd = [MPIBATCH, "run", str(task), "--reps", str(reps), "--seed", "1", "--out", str(out)]
    cmd += ["--overwrite", "--quiet", "--leaders", leaders, *extra]
    r = launch.run(cmd, n, hosts, env)
    if r.returncode != 0:
        return None, (r.stderr.strip().splitlines() or ["?"])[-1][:120]
    attrs = file_attrs(out)
    with h5py.File(out, "r") as f:
        attrs["ranks_used"] = np.bincount(f["tasks/rank"][()], minlength=n).tolist()
        attrs["done"] = int((f["tasks/status"][()] == 1).sum())
    attrs["wall"] = json.loads(attrs["sessions"])[-1]["wall_seconds"]
    attrs["reps"] = reps
    out.unlink()
    return attrs, ""


def pingpong(launch: Launcher) -> dict:
    r = launch.run([sys.executable, str(HERE / "_pingpong.py")], 4, 2, {})
    if r.returncode != 0:
        print("ping-pong failed:", r.stderr[-300:])
        return {}
    return json.loads(r.stdout.strip().splitlines()[-1])


def measure(launch: Launcher, per: int, sizes, layouts) -> tuple[list, dict]:
    rows, runs = [], {}
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        work = Path(tmp)
        for n in sizes:
            for hosts in layouts:
                got = {}
                for kind in ("rate", "gather"):
                    for mode in ("off", "on"):
                        got[kind, mode] = one(launch, work, kind, n, hosts, mode, per)
                runs[n, hosts] = got
                rows.append(_row(n, hosts, got))
                print(" | ".join(rows[-1]), flush=True)
    return rows, runs


def _row(n: int, hosts: int, got: dict) -> list[str]:
    def rate(mode):
        a, _ = got["rate", mode]
        if not a:
            return None
        own = a["ranks_used"][0]  # rank 0's own blocks (a task each) are no messages
        asked = a["n_blocks"] - own
        return a["reps"] / a["wall"], asked / (a["reps"] - own), asked / a["wall"]

    def gbs(mode):
        a, _ = got["gather", mode]
        return a["done"] * (1 << 20) / a["wall"] / 1e9 if a else None

    flat, lead = rate("off"), rate("on")
    notes = "; ".join(w for (a, w) in got.values() if w)
    fmt = lambda v, f: f.format(v) if v is not None else "failed"  # noqa: E731
    return [
        f"{n} x {hosts}",
        fmt(flat and flat[0], "{:,.0f}"),
        fmt(lead and lead[0], "{:,.0f}"),
        fmt(flat and lead and lead[0] / flat[0], "{:.2f}x"),
        fmt(flat and flat[1], "{:.3f}"),
        fmt(lead and lead[1], "{:.3f}"),
        fmt(flat and flat[2], "{:,.0f}"),
        fmt(lead and lead[2], "{:,.0f}"),
        fmt(gbs("off"), "{:.2f}"),
        fmt(gbs("on"), "{:.2f}"),
        notes,
    ]


def cpu_run(launch: Launcher, work: Path, n: int, reps: int, leaders: str) -> tuple[dict, list]:
    """(attrs, every rank's CPU seconds) of a dedicated-root run of empty tasks, blocks of 1."""
    out, probe = work / f"cpu-{leaders}-{reps}.h5", work / f"cpu-{leaders}-{reps}"
    probe.mkdir()
    cmd = [sys.executable, str(HERE / "_cpu_probe.py"), str(probe), "run"]
    cmd += [str(HERE / "_empty_task.py"), "--reps", str(reps), "--out", str(out), "--quiet"]
    cmd += ["--overwrite", "--schedule", "dynamic", "--block-size", "1", "--dedicated-root"]
    r = launch.run([*cmd, "--leaders", leaders], n, 1, {})
    if r.returncode != 0:
        print("cost run failed:", r.stderr[-300:])
        return {}, []
    cpu = [float((probe / f"rank{k}.cpu").read_text()) for k in range(n)]
    return file_attrs(out), cpu


def cpu_costs(launch: Launcher, c: model.Costs) -> None:
    """c0, c_part and c_leader: a long run's minus a short one's, per message.

    Rank 0 from its ``dispatch_seconds`` (time spent answering and storing, naps left out):
    flat, 3 ranks, per extra request is ``c0``; leaders, 4 ranks on one host (rank 1 leads
    2 and 3), less ``c0`` per grant, per extra task (each a rank's report) is ``c_part``.
    The leader (which records no such time) from its CPU time per extra task: ``c_leader``.
    """
    with tempfile.TemporaryDirectory(dir=ROOT) as tmp:
        work = Path(tmp)
        (a0, cpu0), (a1, cpu1) = (cpu_run(launch, work, 3, r, "off") for r in SHORT_LONG)
        (b0, lcpu0), (b1, lcpu1) = (cpu_run(launch, work, 4, r, "on") for r in SHORT_LONG)
    spent = "dispatch_seconds"
    if cpu0 and cpu1:
        c.c0 = (a1[spent] - a0[spent]) / (a1["n_blocks"] - a0["n_blocks"])
    if lcpu0 and lcpu1:
        grants, tasks = b1["n_blocks"] - b0["n_blocks"], SHORT_LONG[1] - SHORT_LONG[0]
        c.c_part = max(0.0, (b1[spent] - b0[spent] - grants * c.c0) / tasks)
        c.c_leader = (lcpu1[1] - lcpu0[1]) / tasks


def costs_from(runs: dict, pp: dict, n: int) -> model.Costs:
    """The model's latencies and file bandwidth from the runs (see the docstring)."""
    c = model.Costs()
    gather, _ = runs[n, 1]["gather", "off"]
    if gather:
        c.write_bw = gather["done"] * (1 << 20) / gather["wall"]
    if pp:
        c.lat_in, c.lat_x, c.send = pp["lat_in"], pp["lat_x"], pp["send"]
    return c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks-per-rank", type=int, default=250)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--quick", action="store_true", help="16 ranks on 1 and 4 hosts only")
    ap.add_argument("--costs-only", action="store_true", help="4 ranks on 1 host, the model")
    args = ap.parse_args()
    begin("scale: flat against node leaders on pretend hosts")
    sizes, layouts = ((16,), (1, 4)) if args.quick else ((4, 8, 16), (1, 2, 4))
    if args.costs_only:
        sizes, layouts = (4,), (1,)
    why = available()
    if why:
        print(f"no pretend hosts here ({why}): pretend nodes on one host instead")
        rows, runs = measure(Launcher(None), args.tasks_per_rank, sizes, layouts)
        pp = pingpong(Launcher(None))
        costs = costs_from(runs, pp, min(sizes))
        cpu_costs(Launcher(None), costs)
    else:
        with Cluster(hosts=4, slots=4) as c:
            launch = Launcher(c)
            pp = pingpong(launch)
            rows, runs = measure(launch, args.tasks_per_rank, sizes, layouts)
            costs = costs_from(runs, pp, min(sizes))  # the least oversubscribed runs
            cpu_costs(launch, costs)
    print_table(HEADER, rows, args.markdown, _notes())
    print(f"\nmeasured costs: {_costs_line(costs)}")
    print_table(model.HEADER, model.table(costs), args.markdown, model.NOTES)


def _notes() -> list[str]:
    return [
        "rate: 1 ms tasks, --block-size 1 (a request per task in the flat path); gather: 1 MiB "
        "a task, default blocks. One run of each; 16 ranks share 2 cores.",
        "rank-0 msgs/task: requests rank 0 answered (blocks or grants it handed to other ranks) "
        "per task those ranks ran.",
    ]


def _costs_line(c: model.Costs) -> str:
    us = lambda s: f"{s * 1e6:.1f} us"  # noqa: E731
    return (
        f"c0 {us(c.c0)}, c_part {us(c.c_part)}, c_leader {us(c.c_leader)}, lat_in "
        f"{us(c.lat_in)}, lat_x {us(c.lat_x)}, send {us(c.send)}, file {c.write_bw / 1e9:.2f} GB/s"
    )


if __name__ == "__main__":
    main()
