"""Slurm jobs from the outside and the inside: ``submit`` hands a script to ``sbatch``;
``job_info``, ``end_time`` and ``array_slice`` read the job mpibatch runs in; ``hostfile``
writes the host list an ``mpiexec`` outside Slurm wants. No MPI and no numpy here.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import _hostfile
from .._say import plural
from ..errors import UsageError
from .options import positive

_ENV = {
    "job_id": "SLURM_JOB_ID",
    "job_name": "SLURM_JOB_NAME",
    "nodelist": "SLURM_JOB_NODELIST",
    "num_nodes": "SLURM_JOB_NUM_NODES",
    "ntasks": "SLURM_NTASKS",
    "tasks_per_node": "SLURM_TASKS_PER_NODE",
    "cpus_per_task": "SLURM_CPUS_PER_TASK",
    "cpus_on_node": "SLURM_CPUS_ON_NODE",
    "gpus": "SLURM_GPUS_ON_NODE",
    "job_gpus": "SLURM_JOB_GPUS",
    "restart_count": "SLURM_RESTART_COUNT",
    "array_job_id": "SLURM_ARRAY_JOB_ID",
    "array_task_id": "SLURM_ARRAY_TASK_ID",
    "array_task_count": "SLURM_ARRAY_TASK_COUNT",
    "array_task_min": "SLURM_ARRAY_TASK_MIN",
    "array_task_max": "SLURM_ARRAY_TASK_MAX",
    "array_task_step": "SLURM_ARRAY_TASK_STEP",
}
_UNSET_TIMES = ("", "unknown", "n/a", "none", "invalid", "unlimited", "infinite")


def submit(text: str, extra_args: Sequence[str] = (), kind: str | None = None) -> str:
    """Write ``text`` to ``mpibatch-<kind>-<time>.sbatch`` here, ``sbatch`` it, return the job id.

    The script is written under a temporary name and renamed, so a half-written script is
    never submitted; it stays in the directory as the record of what ran.
    """
    if kind is None:
        m = re.search(r"^# mpibatch slurm template: (\w+)$", text, re.M)
        kind = m.group(1) if m else "job"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path, n = Path(f"mpibatch-{kind}-{stamp}.sbatch"), 1
    while path.exists():
        path, n = Path(f"mpibatch-{kind}-{stamp}-{n}.sbatch"), n + 1
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.chmod(0o755)
    os.replace(tmp, path)
    cmd = ["sbatch", "--parsable", *extra_args, str(path)]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise UsageError(
            "sbatch not found: run this on a Slurm login node, or drop --submit to print the script"
        ) from None
    except subprocess.TimeoutExpired:
        raise UsageError(f"sbatch {path}: no answer in 120 s; is slurmctld up? (squeue)") from None
    if r.returncode != 0:
        why = (r.stderr.strip().splitlines() or [f"exit status {r.returncode}"])[-1]
        raise UsageError(f"sbatch refused {path}: {why}; fix that, then sbatch {path}")
    job_id = r.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise UsageError(f"expected a job id from sbatch --parsable, got {r.stdout.strip()!r}")
    return job_id


def _number(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.strip().isdigit() else value


def counts_per_node(value: str) -> list[int]:
    """Slurm's compressed counts (``SLURM_TASKS_PER_NODE``): ``"4(x2),3"`` -> ``[4, 4, 3]``."""
    out: list[int] = []
    for part in value.split(","):
        m = re.match(r"^\s*(\d+)(?:\(x(\d+)\))?\s*$", part)
        if not m:
            raise UsageError(f"expected counts like 4(x2),3, got {value!r}; check the variable")
        out += [int(m.group(1))] * int(m.group(2) or 1)
    return out


def expand_nodes(nodelist: str) -> list[str] | str:
    """``node[01-03]`` -> three names (python-hostlist); the raw string if it cannot."""
    if "[" not in nodelist:
        return [h for h in nodelist.split(",") if h]
    try:
        import hostlist
    except ImportError:
        return nodelist
    try:
        return hostlist.expand_hostlist(nodelist)
    except hostlist.BadHostlist:
        return nodelist


def job_info(env: Mapping[str, str] | None = None, end: bool = True) -> dict[str, Any] | None:
    """The Slurm job this process runs in (None outside one): ``_ENV``'s keys (ints where
    numeric; ``tasks_per_node`` a list), ``nodes`` (host names, or the raw list plus a
    ``note`` without python-hostlist) and ``end_time`` (epoch seconds or None; asks
    squeue, so call it on one rank; ``end=False`` skips it)."""
    env = os.environ if env is None else env
    if not env.get("SLURM_JOB_ID"):
        return None
    info: dict[str, Any] = {key: _number(env.get(var)) for key, var in _ENV.items()}
    if info["gpus"] is None and info["job_gpus"] is not None:
        info["gpus"] = len(str(info["job_gpus"]).split(","))
    if isinstance(info["tasks_per_node"], str):
        info["tasks_per_node"] = counts_per_node(info["tasks_per_node"])
    elif isinstance(info["tasks_per_node"], int):
        info["tasks_per_node"] = [info["tasks_per_node"]]
    info["nodes"] = expand_nodes(str(info["nodelist"])) if info["nodelist"] else None
    if isinstance(info["nodes"], str):
        info["note"] = f"cannot expand {info['nodes']!r}: pip install python-hostlist"
    info["end_time"] = end_time(str(info["job_id"])) if end else None
    return info


def end_time(job_id: str, timeout: float = 5) -> float | None:
    """When the job's time runs out, in epoch seconds, from ``squeue -o "%e %l"``.

    Slurm prints local time (``2026-11-25T04:10:00``). None when the limit is unlimited or
    unknown, squeue is missing, fails or does not answer within ``timeout`` seconds.
    """
    cmd = ["squeue", "-h", "-j", str(job_id), "-o", "%e %l"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = r.stdout.split("\n")[0].split() if r.returncode == 0 else []
    if not lines or lines[0].lower() in _UNSET_TIMES:
        return None
    if len(lines) > 1 and lines[1].lower() in _UNSET_TIMES:
        return None
    try:
        return datetime.strptime(lines[0], "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return None


def _env_int(env: Mapping[str, str], key: str) -> int | None:
    """The integer in the variable of ``_ENV[key]``; None if unset or not a number."""
    value = _number(env.get(_ENV[key]))
    return value if isinstance(value, int) else None


def _array_position(env: Mapping[str, str]) -> tuple[int, int]:
    """(index of this element among the array's ids, number of elements)."""
    tid = _env_int(env, "array_task_id")
    if tid is None:
        raise UsageError(
            "--tasks array: not inside a Slurm job array (SLURM_ARRAY_TASK_ID is not set); "
            "use --tasks START:STOP"
        )
    step = _env_int(env, "array_task_step") or 1
    lo, hi = (_env_int(env, key) for key in ("array_task_min", "array_task_max"))
    lo = tid if lo is None else lo
    hi = tid if hi is None else hi
    count = _env_int(env, "array_task_count") or (hi - lo) // step + 1
    index, off = divmod(tid - lo, step)
    if off or not 0 <= index < count or (hi - lo) // step + 1 != count:
        raise UsageError(
            f"--tasks array: expected evenly spaced array ids (--array=A-B or A-B:S), got id "
            f"{tid} in {lo}-{hi} with {plural(count, 'element')}; submit --array=0-{count - 1}"
        )
    return index, count


def array_slice(n_tasks: int, env: Mapping[str, str] | None = None) -> range:
    """This array element's share of ``range(n_tasks)``: contiguous, sizes differ by <= 1.

    The element's index is its position among the array's ids, ``(ID - MIN) // STEP``, so
    ``--array=0-9:2`` works; an irregular list such as ``--array=1,2,7`` is refused. A lone
    element resubmitted with ``--array=2`` is an array of one and gets every task: rerun
    elements by resubmitting the whole range (finished elements resume and exit at once).
    """
    index, count = _array_position(os.environ if env is None else env)
    size, extra = divmod(max(n_tasks, 0), count)
    start = index * size + min(index, extra)
    return range(start, start + size + (index < extra))


def hostfile(hosts: list[str], slots: int | list[int], flavor: str = "openmpi") -> str:
    """A host file: ``host slots=N`` lines (Open MPI) or ``host:N`` (MPICH/Hydra); a host
    named twice is one line with the slots added (Open MPI refuses it twice)."""
    if flavor not in _hostfile.FLAVORS:
        raise UsageError(f"--flavor: expected openmpi or mpich, got {flavor!r}")
    if not hosts:
        raise UsageError("expected at least one host, got none; pass host names or run in a job")
    counts = [slots] * len(hosts) if isinstance(slots, int) else list(slots)
    if len(counts) != len(hosts):
        raise UsageError(f"expected {len(hosts)} slot counts (one per host), got {len(counts)}")
    for n in counts:
        positive("--slots", n)
    rows = [_hostfile.Host(h, n) for h, n in zip(hosts, counts, strict=True)]
    return _hostfile.render(rows, flavor)


def job_hostfile(
    flavor: str = "openmpi",
    slots: int | None = None,
    hosts: list[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """``hostfile`` with defaults: hosts from SLURM_JOB_NODELIST, slots from
    SLURM_TASKS_PER_NODE (else ``os.cpu_count()``)."""
    info = job_info(env, end=False) if not hosts or slots is None else None
    if not hosts:
        hosts = info.get("nodes") if info else None
        if not isinstance(hosts, list):
            why = info["note"] if info and "note" in info else "not inside a Slurm job"
            raise UsageError(f"expected host names, got none ({why}); e.g. hostfile n01 n02")
    counts: int | list[int] = slots if slots is not None else (os.cpu_count() or 1)
    if slots is None:
        per_node = info.get("tasks_per_node") if info else None
        if isinstance(per_node, list) and len(per_node) == len(hosts):
            counts = per_node
    return hostfile(hosts, counts, flavor)
