"""The sbatch scripts: ``render`` fills a kind's template with the job's options and its
mpibatch command. Pure (no files, no subprocesses): ``slurm/*.sbatch`` in the repository
and tests/golden/*.sbatch are its output, so the text never changes by accident.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from ..errors import UsageError
from .options import KINDS, SlurmOptions

EXAMPLE_ARGS = ["run", "study.py", "--reps", "1000", "--seed", "42", "--out", "study.h5"]
_ALL = {"--threads-per-rank": "every template passes $SLURM_CPUS_PER_TASK (set --cpus-per-task)"}
_RESERVED = {
    "cpu": _ALL,
    "hybrid": _ALL,
    "gpu": {**_ALL, "--gpus": "the gpu template passes --gpus auto (one GPU per rank)"},
    "resume": {
        **_ALL,
        "--resume": "the resume template adds it once the output file exists",
        "--grace": "set it before --: mpibatch slurm resume --grace S (below --signal-lead)",
        "--overwrite": "it would start the study over in every round",
    },
    "array": {
        **_ALL,
        "--tasks": "the array template passes --tasks array (a slice per element)",
        "--resume": "the array template adds it once an element's part file exists",
        "--overwrite": "a rerun element would start over instead of resuming",
    },
}


def render(kind: str, mpibatch_args: list[str], opts: SlurmOptions | None = None) -> str:
    """The complete sbatch script of ``kind`` running ``mpibatch <mpibatch_args>``."""
    o = (opts or SlurmOptions()).resolved(kind)
    study, out = split_command(kind, mpibatch_args)
    q = shlex.quote
    stem = out[:-3] if out.endswith(".h5") else out
    values = {
        "KIND": kind,
        "SBATCH": "\n".join(_sbatch_lines(o, kind)),
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


def _sbatch_lines(o: SlurmOptions, kind: str) -> list[str]:
    """The ``#SBATCH`` header of resolved options ``o``."""
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
    return lines


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


def split_command(kind: str, args: list[str]) -> tuple[list[str], str]:
    """``run FILE ARGS... [--out OUT]`` -> (FILE ARGS..., OUT); the template adds --out."""
    args = list(args)
    if not args or args[0] != "run":
        got = shlex.join(args) or "nothing"
        raise UsageError(
            f"expected an mpibatch run command after --, got {got!r}; "
            "e.g. mpibatch slurm cpu -- run study.py --reps 1000 --out study.h5"
        )
    study, out = [], None
    rest = iter(args[1:])
    for arg in rest:
        flag = arg.split("=", 1)[0]
        if flag in _RESERVED[kind]:
            raise UsageError(
                f"{flag}: expected no {flag} in the command of a {kind} job, got {arg!r}; "
                f"{_RESERVED[kind][flag]}"
            )
        if flag == "--out":
            out = arg.split("=", 1)[1] if "=" in arg else next(rest, "")
        else:
            study.append(arg)
    files = [a for a in study if a.endswith(".py")] or study[:1]  # run FILE ...: it comes first
    if "--command" in study[:-1]:  # run --command TEMPLATE: named after its program
        files = (study[study.index("--command") + 1].split() or ["command"])[:1]
    if files and files[0].startswith("-"):
        files = []
    if not files:
        raise UsageError("expected a task file after run, got none; e.g. -- run study.py")
    if not out:
        out = os.path.splitext(os.path.basename(files[0]))[0] + ".h5"
    if kind == "array" and not any(a.split("=", 1)[0] == "--seed" for a in study):
        raise UsageError(
            "--seed: expected one in an array job's command (every element must use the same "
            "root seed), got none; add --seed 42"
        )
    return study, out


_HEAD = """\
#!/bin/bash
# mpibatch slurm template: <<KIND>>
"""

_EDIT = """\
#
# Submit with `sbatch THIS_FILE`. Made by `mpibatch slurm <<KIND>>`; slurm/README.md explains.
#
# ===== EDIT HERE: everything you may change is in this block, down to "nothing below".
# Slurm reads the #SBATCH lines before the shell starts, so they cannot use shell
# variables: edit their values in place. Lines starting "##SBATCH" are switched off.
<<SBATCH>>

# Software your site needs before mpibatch runs (see `module avail`), for example:
# module load python/3.11 openmpi/4.1       # or: module load python mpich (or intel-mpi)
# source "$HOME/venvs/mpibatch/bin/activate"

# How ranks start. srun needs the plug-in for the MPI that mpi4py was built with:
#   --mpi=pmi2  the mpich wheel from PyPI, MPICH, Intel MPI, MVAPICH
#   --mpi=pmix  Open MPI 4 and 5 (some sites name it pmix_v3, pmix_v4)
# `srun --mpi=list` shows what this cluster has. Since Slurm 22.05 srun no longer passes
# sbatch's --cpus-per-task on to the ranks, hence the flag.
<<SRUN>>LAUNCH=(srun --mpi=<<MPI>> --cpus-per-task="$SLURM_CPUS_PER_TASK")
# Or mpiexec, which finds the allocation itself (MPICH's starts ranks through srun; Open
# MPI's may need --bind-to none, and OMPI_ALLOW_RUN_AS_ROOT=1 when run as root):
<<MPIEXEC>>LAUNCH=(mpiexec -n "$SLURM_NTASKS")
"""

_STUDY = """
# The study: the task file and flags of `mpibatch run` (this script adds the flags that
# depend on the job), and the output file.
STUDY=(<<STUDY>>)
"""

_DIVIDER = """# ===== nothing below needs editing ==========================================

"""

_BANNER = """\
echo "mpibatch: job $SLURM_JOB_ID: $SLURM_NTASKS ranks x $SLURM_CPUS_PER_TASK core(s)\
 on $SLURM_JOB_NODELIST, $(date -Is)"
"""

_STATUS = """\
# The job ends with mpibatch's exit status: 0 every task done; 1 some tasks failed
# (`mpibatch errors FILE` lists them); 3 stopped early, e.g. by the SIGTERM Slurm sends at
# the time limit: what finished is in the file, and `--resume` (or the resume template)
# goes on from there.
"""

_RUN = '"${LAUNCH[@]}" mpibatch run "${STUDY[@]}" --threads-per-rank "$SLURM_CPUS_PER_TASK"'

_TEXT = {
    "cpu": (
        """\
# One MPI rank per core, one BLAS thread per rank: the usual choice for many independent
# tasks. For whole nodes, set --ntasks-per-node to their core count (`sinfo -o "%n %c"`).
""",
        "OUT=<<OUT>>\n",
        _BANNER + _STATUS + _RUN + ' --out "$OUT"\n',
    ),
    "hybrid": (
        """\
# Hybrid: --ntasks-per-node MPI ranks per node, each running --cpus-per-task OpenMP/BLAS
# threads on its own cores (ranks x threads = the node's cores). Suits tasks that call
# threaded numpy/scipy/BLAS on large arrays; for many small tasks the cpu template is faster.
""",
        """OUT=<<OUT>>
# Pinning each rank's threads to its cores often helps on large nodes:
# export OMP_PLACES=cores OMP_PROC_BIND=close
# With mpiexec, give each rank its cores: Open MPI --map-by slot:PE=$SLURM_CPUS_PER_TASK,
# MPICH -bind-to core:$SLURM_CPUS_PER_TASK (or --bind-to none for either).
""",
        'export OMP_NUM_THREADS="$SLURM_CPUS_PER_TASK"\n'
        + _BANNER
        + _STATUS
        + _RUN
        + ' --out "$OUT"\n',
    ),
    "gpu": (
        """\
# One MPI rank per GPU: keep --ntasks-per-node equal to --gpus-per-node. With --gpus auto
# local rank k owns GPU k (CUDA_VISIBLE_DEVICES is set to it alone before the task file is
# imported); more ranks than GPUs share them evenly. Some sites want --gres=gpu:G instead
# of --gpus-per-node=G, or a GPU partition.
""",
        "OUT=<<OUT>>\n",
        _BANNER + _STATUS + _RUN + ' --gpus auto --out "$OUT"\n',
    ),
    "resume": (
        """\
# A study longer than one job's time limit, in rounds: <<LEAD>> s before the limit Slurm
# sends SIG<<SIGNAL>> to this script (--signal=B:...; it may come up to a minute early),
# which passes it on; mpibatch gives running tasks GRACE seconds, saves everything
# finished, exits 3, and the job requeues itself (same job id, log appended) and resumes
# the file, until every task is done or MAX_ROUNDS rounds have run.
""",
        """OUT=<<OUT>>
# At most this many rounds (the first run and its requeues) in all.
MAX_ROUNDS=<<MAX_ROUNDS>>
# Seconds running tasks get once the signal came; keep it below the <<LEAD>> of --signal.
GRACE=<<GRACE>>
""",
        """\
ROUND=$(( ${MPIBATCH_ROUNDS_DONE:-${SLURM_RESTART_COUNT:-0}} + 1 ))
RESUME=()
[ -f "$OUT" ] && RESUME=(--resume)
echo "mpibatch: round $ROUND of at most $MAX_ROUNDS"
"""
        + _BANNER
        + """
# The signal reaches only this script: pass it on (srun and mpiexec hand it to every rank).
pid=
sig=
forward() {
    trapped=1
    sig=$1
    echo "mpibatch: got SIG$1, stopping resumably (grace $GRACE s)"
    [ -n "$pid" ] && kill -s "$1" "$pid" 2>/dev/null
}
trap 'forward USR1' USR1
trap 'forward TERM' TERM
"""
        + _RUN
        + """ --grace "$GRACE" \\
    --out "$OUT" "${RESUME[@]}" &
pid=$!
[ -n "$sig" ] && kill -s "$sig" "$pid"  # a signal that came before mpibatch started
# A trapped signal ends `wait` early: wait again for mpibatch's own exit status.
while :; do
    trapped=0
    wait "$pid"
    rc=$?
    [ "$trapped" = 1 ] || break
done

case $rc in
0) echo "mpibatch: done, every task is in $OUT"; exit 0 ;;
3) ;;
*) echo "mpibatch: exit status $rc (1 tasks failed: mpibatch errors $OUT; 2 bad input;" \\
        "4 a task hung): not requeued"; exit "$rc" ;;
esac
if [ "$ROUND" -ge "$MAX_ROUNDS" ]; then
    echo "mpibatch: stopped early in round $ROUND of $MAX_ROUNDS: not requeued; raise" \\
        "MAX_ROUNDS or --time, then sbatch this script again (it resumes $OUT)"
    exit 3
fi
echo "mpibatch: stopped early; requeueing job $SLURM_JOB_ID for round $((ROUND + 1))"
# Sites that forbid requeue: replace the next line with a new job that starts once this one
# has ended, carrying the round count (THIS_FILE: this script's path):
#   sbatch --dependency=afterany:"$SLURM_JOB_ID" \\
#       --export=ALL,MPIBATCH_ROUNDS_DONE="$ROUND" THIS_FILE && exit 0
scontrol requeue "$SLURM_JOB_ID" && exit 0
echo "mpibatch: scontrol requeue failed (is requeue allowed here?); sbatch this script" \\
    "again to resume $OUT"
exit 3
""",
    ),
    "array": (
        """\
# A job array: each element is its own allocation and runs an even, contiguous share of
# the task ids (--tasks array) into its own part file, STEM.partN.h5. The same --seed in
# every element makes the merged file the same as one big run's. When all have finished:
#   mpibatch merge <<STEM_TEXT>>.part*.h5 -o <<STEM_TEXT>>.h5
# or let Slurm merge after the array, submitting both at once:
#   jid=$(sbatch --parsable THIS_FILE)
#   sbatch --dependency=afterok:$jid \\
#       --wrap "mpibatch merge <<STEM_TEXT>>.part*.h5 -o <<STEM_TEXT>>.h5"
# An element that stopped early or failed: submit the whole array again (the share depends
# on the array's size, so never --array=N alone); finished elements resume and exit at once.
# Caps: at most MaxArraySize - 1 as an index and MaxJobCount jobs (`scontrol show config`);
# --array=0-99%10 runs at most 10 at a time. One big allocation (the cpu template) is
# better when the queue favours large jobs, when tasks are short (each element pays its own
# start-up), or when you want one file without a merge; arrays suit busy queues that
# backfill small jobs and studies too long for one job's time limit.
""",
        """# Part files are named STEM.part<array index>.h5.
STEM=<<STEM>>
""",
        """\
PART="$STEM.part$SLURM_ARRAY_TASK_ID.h5"
RESUME=()
[ -f "$PART" ] && RESUME=(--resume)
echo "mpibatch: array element $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_TASK_COUNT -> $PART"
"""
        + _BANNER
        + _RUN
        + ' --tasks array \\\n    --out "$PART" "${RESUME[@]}"\n',
    ),
}


def script(kind: str) -> str:
    """The template of ``kind`` with its ``<<NAME>>`` slots still open."""
    about, variables, body = _TEXT[kind]
    return _HEAD + about + _EDIT + _STUDY + variables + _DIVIDER + body
