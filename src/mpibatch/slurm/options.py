"""What an sbatch script asks for (``SlurmOptions``), each kind's defaults, and the checks.

``time_seconds`` reads a Slurm time limit with Slurm's meaning ("30" is 30 minutes,
"1-12" a day and 12 hours).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import TypeVar

from .._config import parse_duration
from ..errors import UsageError

KINDS = ("cpu", "hybrid", "gpu", "resume", "array")
_KIND_DEFAULTS = {  # kind -> (ranks per node, cores per rank, GPUs per node)
    "cpu": (4, 1, None),
    "hybrid": (2, 4, None),
    "gpu": (None, 1, 1),  # ranks per node: one per GPU
    "resume": (4, 1, None),
    "array": (4, 1, None),
}
_ONLY_WITH = (("gpus_per_node", "gpu"), ("array", "array"), ("max_rounds", "resume"))
_ARRAY_SPEC = re.compile(r"^\d+(-\d+(:\d+)?)?(,\d+(-\d+(:\d+)?)?)*(%\d+)?$")
_WORD = re.compile(r"^[A-Za-z0-9_.+-]+$")
_T = TypeVar("_T")


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
        for name, only in _ONLY_WITH:
            if getattr(self, name) is not None and kind != only:
                flag = "--" + name.replace("_", "-")
                raise UsageError(
                    f"{flag}: expected only with the {only} kind, got it with {kind}; "
                    f"drop {flag} or use mpibatch slurm {only}"
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


def _pick(value: _T | None, default: _T) -> _T:
    return default if value is None else value


def check_kind(kind: str) -> None:
    """Refuse a kind that is not one of ``KINDS``."""
    if kind not in KINDS:
        raise UsageError(f"expected a kind among {', '.join(KINDS)}, got {kind!r}; e.g. cpu")


def positive(flag: str, value: object, limit: int | None = None) -> None:
    """Refuse anything but an int >= 1 (and <= ``limit``), naming ``flag``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(f"{flag}: expected an integer >= 1, got {value!r}; e.g. {flag} 2")
    if limit is not None and value > limit:
        raise UsageError(f"{flag}: expected at most {limit}, got {value}; pass a smaller value")


def _word(flag: str, value: str | None, pattern: re.Pattern = _WORD) -> None:
    if value is not None and not pattern.match(str(value)):
        raise UsageError(
            f"{flag}: expected letters, digits or _.+- only, got {value!r}; pass a plain name"
        )


def check_options(o: SlurmOptions, kind: str) -> None:
    """Refuse options that would make a broken script; ``o`` has its defaults filled in."""
    for name in ("nodes", "ntasks_per_node", "cpus_per_task", "gpus_per_node", "max_rounds"):
        if getattr(o, name) is not None:
            positive("--" + name.replace("_", "-"), getattr(o, name))
    for name in ("job_name", "partition", "account", "mpi"):
        _word("--" + name.replace("_", "-"), getattr(o, name))
    _word("--output", o.output, re.compile(r"^[^\s'\"]+$"))
    limit = time_seconds(o.time)
    if o.array is not None and not _ARRAY_SPEC.match(o.array):
        raise UsageError(f"--array: expected A-B[:STEP][%MAX] or A,B,C, got {o.array!r}; e.g. 0-9")
    if o.launcher not in ("srun", "mpiexec"):
        raise UsageError(f"--launcher: expected srun or mpiexec, got {o.launcher!r}")
    if kind == "resume":
        _check_resume(o, limit)


def _check_resume(o: SlurmOptions, limit: int | None) -> None:
    if o.signal.upper().removeprefix("SIG") not in ("USR1", "TERM"):
        raise UsageError(
            f"--signal: expected USR1 or TERM (mpibatch stops on both), got {o.signal!r}"
        )
    positive("--signal-lead", o.signal_lead, 65535)
    positive("--grace", o.grace)
    if o.grace >= o.signal_lead:
        raise UsageError(
            f"--grace: expected less than the signal lead ({o.signal_lead} s), got {o.grace}; "
            "lower --grace or raise --signal-lead"
        )
    if limit is not None and o.signal_lead >= limit:
        raise UsageError(
            f"--signal-lead: expected less than --time ({o.time} = {limit} s), got "
            f"{o.signal_lead}; lower --signal-lead or raise --time"
        )


def time_seconds(value: str) -> int | None:
    """Seconds in a Slurm time limit (``--time``); None if unlimited (see parse_duration)."""
    return parse_duration(str(value), "--time")
