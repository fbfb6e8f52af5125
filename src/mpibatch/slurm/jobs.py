"""Everything mpibatch knows about Slurm: job scripts, submission, job variables, arrays.

No MPI and no numpy here. ``render`` is pure: it returns a complete, commented sbatch
script for one of ``KINDS``; ``slurm/*.sbatch`` in the repository are its output for the
defaults (``write_templates``). ``submit`` hands a script to ``sbatch``. ``job_info``,
``end_time`` and ``array_slice`` read the job mpibatch runs in; ``hostfile`` writes the
host list an ``mpiexec`` outside Slurm wants.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from ..errors import UsageError
from .script import KINDS, check_kind, check_options, positive, script, split_command
from .script import time_seconds as time_seconds

EXAMPLE_ARGS = ["run", "study.py", "--reps", "1000", "--seed", "42", "--out", "study.h5"]
_KIND_DEFAULTS = {  # kind -> (ranks per node, cores per rank, GPUs per node)
    "cpu": (4, 1, None),
    "hybrid": (2, 4, None),
    "gpu": (None, 1, 1),  # ranks per node: one per GPU
    "resume": (4, 1, None),
    "array": (4, 1, None),
}
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


@dataclass
class SlurmOptions:
    """What an sbatch script asks for. ``None`` means the kind's default (``resolved``)."""

    job_name: str = "mpibatch"
    nodes: int = 1
    ntasks_per_node: int | None = None  # cpu/resume/array 4, hybrid 2, gpu = gpus_per_node
    cpus_per_task: int | None = None  # cores per rank: hybrid 4, else 1
    gpus_per_node: int | None = None  # gpu kind only: 1
    time: str = "01:00:00"
    partition: str | None = None
    account: str | None = None
    array: str | None = None  # array kind only: "0-3"
    max_rounds: int | None = None  # resume kind only: 10
    signal: str = "USR1"  # resume: sent to the batch script signal_lead seconds before the end
    signal_lead: int = 120
    grace: int = 60  # resume: what running tasks get once the signal came (< signal_lead)
    mpi: str = "pmi2"  # srun --mpi=: pmi2 (MPICH, Intel MPI, the mpich wheel), pmix (Open MPI)
    launcher: str = "srun"  # or "mpiexec"
    output: str | None = None  # "%x-%j.out"; array "%x-%A_%a.out"

    def resolved(self, kind: str) -> SlurmOptions:
        """A copy with the kind's defaults filled in and every value checked."""
        check_kind(kind)
        ranks, cores, gpus = _KIND_DEFAULTS[kind]
        for name, kinds in (("gpus_per_node", "gpu"), ("array", "array"), ("max_rounds", "resume")):
            if getattr(self, name) is not None and kind != kinds:
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{flag}: expected only with the {kinds} kind, got it with {kind}; "
                    f"drop {flag} or use mpibatch slurm {kinds}"
                )
        o = replace(
            self,
            gpus_per_node=_pick(self.gpus_per_node, gpus),
            cpus_per_task=_pick(self.cpus_per_task, cores),
            array=_pick(self.array, "0-3" if kind == "array" else None),
            max_rounds=_pick(self.max_rounds, 10 if kind == "resume" else None),
            output=_pick(self.output, "%x-%A_%a.out" if kind == "array" else "%x-%j.out"),
        )
        o.ntasks_per_node = _pick(self.ntasks_per_node, ranks or o.gpus_per_node)
        check_options(o, kind)
        return o


def _pick(value, default):
    return default if value is None else value


def render(kind: str, mpibatch_args: list[str], opts: SlurmOptions | None = None) -> str:
    """The complete sbatch script of ``kind`` running ``mpibatch <mpibatch_args>``."""
    o = (opts or SlurmOptions()).resolved(kind)
    study, out = split_command(kind, mpibatch_args)
    q = shlex.quote
    lines = [f"#SBATCH --job-name={o.job_name}", f"#SBATCH --nodes={o.nodes}"]
    lines += [f"#SBATCH --ntasks-per-node={o.ntasks_per_node}"]
    lines += [f"#SBATCH --cpus-per-task={o.cpus_per_task}"]
    if kind == "gpu":
        lines += [f"#SBATCH --gpus-per-node={o.gpus_per_node}"]
    lines += [f"#SBATCH --time={o.time}", f"#SBATCH --output={o.output}"]
    lines += [f"#SBATCH --partition={o.partition}" if o.partition else "##SBATCH --partition=NAME"]
    lines += [f"#SBATCH --account={o.account}" if o.account else "##SBATCH --account=NAME"]
    if kind == "array":
        lines += [f"#SBATCH --array={o.array}"]
    if kind == "resume":
        lines += [f"#SBATCH --signal=B:{o.signal.upper().removeprefix('SIG')}@{o.signal_lead}"]
        lines += ["#SBATCH --requeue", "#SBATCH --open-mode=append"]
    stem = out[:-3] if out.endswith(".h5") else out
    values = {
        "KIND": kind,
        "SBATCH": "\n".join(lines),
        "MPI": o.mpi,
        "SRUN": "" if o.launcher == "srun" else "# ",
        "MPIEXEC": "" if o.launcher == "mpiexec" else "# ",
        "STUDY": " ".join(q(a) for a in study),
        "OUT": q(out),
        "STEM": q(stem),
        "STEM_TEXT": stem,
        "MAX_ROUNDS": str(o.max_rounds),
        "GRACE": str(o.grace),
        "LEAD": str(o.signal_lead),
        "SIGNAL": o.signal.upper().removeprefix("SIG"),
    }
    return re.sub(r"<<([A-Z_]+)>>", lambda m: values[m.group(1)], script(kind))


def write_templates(folder: str | os.PathLike) -> list[Path]:
    """Write ``<kind>.sbatch`` for every kind (defaults, ``EXAMPLE_ARGS``) into ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for kind in KINDS:
        path = folder / f"{kind}.sbatch"
        path.write_text(render(kind, EXAMPLE_ARGS, SlurmOptions()))
        paths.append(path)
    return paths


def submit(text: str, extra_args: list[str] = (), kind: str | None = None) -> str:
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


def _number(value: str | None):
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


def job_info(env: dict | None = None, end: bool = True) -> dict | None:
    """The Slurm job this process runs in (None outside one): ``_ENV``'s keys (ints where
    numeric; ``tasks_per_node`` a list), ``nodes`` (host names, or the raw list plus a
    ``note`` without python-hostlist) and ``end_time`` (epoch seconds or None; asks
    squeue, so call it on one rank; ``end=False`` skips it)."""
    env = os.environ if env is None else env
    if not env.get("SLURM_JOB_ID"):
        return None
    info = {key: _number(env.get(var)) for key, var in _ENV.items()}
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


def _array_position(env) -> tuple[int, int]:
    """(index of this element among the array's ids, number of elements)."""
    get = {k: _number(env.get(_ENV[k])) for k in _ENV if k.startswith("array_task")}
    if not isinstance(get["array_task_id"], int):
        raise UsageError(
            "--tasks array: not inside a Slurm job array (SLURM_ARRAY_TASK_ID is not set); "
            "use --tasks START:STOP"
        )
    tid, step = get["array_task_id"], get["array_task_step"] or 1
    lo = get["array_task_min"] if isinstance(get["array_task_min"], int) else tid
    hi = get["array_task_max"] if isinstance(get["array_task_max"], int) else tid
    count = get["array_task_count"] or (hi - lo) // step + 1
    index, off = divmod(tid - lo, step)
    if off or not 0 <= index < count or (hi - lo) // step + 1 != count:
        raise UsageError(
            f"--tasks array: expected evenly spaced array ids (--array=A-B or A-B:S), got id "
            f"{tid} in {lo}-{hi} with {count} elements; submit --array=0-{count - 1}"
        )
    return index, count


def array_slice(n_tasks: int, env: dict | None = None) -> range:
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
    """A host file: ``host slots=N`` lines (Open MPI) or ``host:N`` (MPICH/Hydra)."""
    if flavor not in ("openmpi", "mpich"):
        raise UsageError(f"--flavor: expected openmpi or mpich, got {flavor!r}")
    if not hosts:
        raise UsageError("expected at least one host, got none; pass host names or run in a job")
    counts = [slots] * len(hosts) if isinstance(slots, int) else list(slots)
    if len(counts) != len(hosts):
        raise UsageError(f"expected {len(hosts)} slot counts (one per host), got {len(counts)}")
    for n in counts:
        positive("--slots", n)
    fmt = "{} slots={}" if flavor == "openmpi" else "{}:{}"
    return "".join(fmt.format(h, n) + "\n" for h, n in zip(hosts, counts, strict=True))


def job_hostfile(
    flavor: str = "openmpi",
    slots: int | None = None,
    hosts: list[str] | None = None,
    env: dict | None = None,
) -> str:
    """``hostfile`` with defaults: hosts from SLURM_JOB_NODELIST, slots from
    SLURM_TASKS_PER_NODE (else ``os.cpu_count()``)."""
    info = job_info(env, end=False) if not hosts or slots is None else None
    if not hosts:
        hosts = info.get("nodes") if info else None
        if not isinstance(hosts, list):
            why = info["note"] if info and "note" in info else "not inside a Slurm job"
            raise UsageError(f"expected host names, got none ({why}); e.g. hostfile n01 n02")
    if slots is None:
        per_node = info.get("tasks_per_node") if info else None
        ok = isinstance(per_node, list) and len(per_node) == len(hosts)
        slots = per_node if ok else (os.cpu_count() or 1)
    return hostfile(hosts, slots, flavor)


__all__ = [
    "KINDS",
    "EXAMPLE_ARGS",
    "SlurmOptions",
    "render",
    "write_templates",
    "submit",
    "job_info",
    "end_time",
    "array_slice",
    "hostfile",
    "job_hostfile",
    "counts_per_node",
    "expand_nodes",
    "time_seconds",
]
