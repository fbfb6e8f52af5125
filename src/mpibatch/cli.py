"""The ``mpibatch`` command. Turns errors into one line and an exit code.

Exit codes: ``errors.ExitCode`` (0 done, 1 some tasks failed, 2 bad input, 3 stopped
early and resumable, 4 a task never returned, 70 a bug in mpibatch, 130 interrupted).

This module imports neither numpy nor MPI at the top: ``run`` sets the BLAS thread
variables first, so every rank starts with single-threaded BLAS.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import traceback
from typing import Any

from . import __version__
from ._argparser import Parser as _Parser
from ._config import LEADERS, ROOT_TASKS, setting
from ._say import plural, say
from .errors import ExitCode, MpibatchError, UsageError
from .options import RunOptions
from .slurm.cli import add_hostfile, add_slurm, split_slurm_command

EXIT_OK, EXIT_FAILED, EXIT_USAGE = ExitCode.OK, ExitCode.FAILED, ExitCode.USAGE
EXIT_STOPPED, EXIT_INTERRUPTED = ExitCode.STOPPED, ExitCode.INTERRUPTED
THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLIS_NUM_THREADS",
)

EPILOG = """examples:
  mpiexec -n 4 mpibatch run examples/bootstrap.py --reps 100 --seed 42 --out bootstrap.h5
  mpibatch run study.py --grid lr=1e-5:1e-3:5log --grid model=ridge,lasso --reps 20 --dry-run
  mpiexec -n 2 mpibatch run --command './prog --lr {lr} --seed {seed}' --grid lr=1e-3,1e-4
  mpibatch info bootstrap.h5
"""


def _set_thread_env(threads: int | None) -> None:
    """Set every BLAS/OpenMP thread variable to the threads_per_rank setting (before numpy)."""
    value = str(setting("threads_per_rank", threads))
    for var in THREAD_VARS:
        os.environ[var] = value


# group -> flag -> (argparse options, help), grouped as --help shows them; each flag is a
# RunOptions field
_RUN_FLAGS: dict[str, dict[str, tuple[dict[str, Any], str]]] = {
    "tasks": {
        "--function": ({"default": "task"}, "name of the task function (default: task)"),
        "--grid": (
            {"action": "append", "default": [], "metavar": "NAME=V1,V2,..."},
            "a grid axis (repeatable); ranges LO:HI[:STEP], LO:HI:Nlin, LO:HI:Nlog; "
            "zipped axes A+B=a1/b1,a2/b2. Overrides the file's grid()",
        ),
        "--reps": ({"type": int}, "replicates per grid point (default 1)"),
        "--results": (
            {"metavar": "KEY=TYPE,..."},
            "declare the results' types, as a task file's results = {...} (and for "
            "--command runs): v=float64,trace=ragged float32, shapes as v=float64[3]",
        ),
        "--seed": ({"type": int}, "root seed (default: MPIBATCH_SEED, else drawn and recorded)"),
        "--streams": (
            {},
            "task (default: PCG64(seed).jumped(i)), seedsequence (numpy's "
            "SeedSequence(seed).spawn: both invariant to -np) or rank",
        ),
        "--tasks": ({"metavar": "START:STOP"}, "run only this slice of task ids"),
    },
    "commands as tasks": {
        "--command": (
            {"metavar": "TEMPLATE"},
            "run this command line as each task instead of a task FILE; fields {NAME} "
            "(a grid value as typed), {rep}, {task}, {seed}, {out_dir}; e.g. "
            "--command './prog --lr {lr} --seed {seed}'",
        ),
        "--shell": ({"action": "store_true"}, "run the command under /bin/sh -c"),
        "--task-dir": (
            {"action": "store_true"},
            "run each command in its own folder OUT.tasks/NNNNNN (its {out_dir})",
        ),
        "--keep-output": (
            {"action": "store_true"},
            "keep each command's stdout/stderr in OUT.output/NNNNNN.out/.err",
        ),
    },
    "scheduling": {
        "--schedule": (
            {},
            "auto (default: probes task times, then picks), static "
            "(contiguous blocks per rank) or dynamic (blocks on demand)",
        ),
        "--block-size": ({"type": int}, "fix the tasks per dynamic block (default: guided)"),
        "--dedicated-root": (
            {"action": "store_true", "default": None},  # None: MPIBATCH_DEDICATED_ROOT
            "rank 0 only dispatches and writes (default: it runs tasks too)",
        ),
        "--root-tasks": (
            {"choices": ROOT_TASKS, "metavar": "|".join(ROOT_TASKS)},
            "where rank 0 runs its own tasks: thread (default: a helper thread, so rank 0 "
            "answers the other ranks at once) or main (for tasks that need the main "
            "thread, e.g. to install signal handlers)",
        ),
        "--isolation": (
            {"choices": ("on", "off"), "metavar": "on|off"},
            "on (default): each rank runs its tasks in a task process, so a task that "
            "crashes, exits or changes its process fails alone; off: in the rank itself",
        ),
        "--task-memory": (
            {"metavar": "SIZE"},
            "cap each task process's own memory (4G, 512M): a task over it fails alone "
            "(default: no cap; needs --isolation on)",
        ),
        "--leaders": (
            {"choices": LEADERS, "metavar": "|".join(LEADERS)},
            "node leaders: rank 0 serves one leader per node, which serves its node's "
            "ranks (default auto: on with more than one node of 4 or more ranks)",
        ),
        "--threads-per-rank": ({"type": int}, "BLAS/OpenMP threads per rank (default 1)"),
        "--gpus": (
            {"metavar": "auto|none|N"},
            "bind each rank to one local GPU: local rank k gets visible GPU k mod G "
            "(default auto; none: CPU only; N: use the first N GPUs)",
        ),
        "--ranks-per-gpu": (
            {"type": int, "metavar": "R"},
            "at most R ranks share a GPU (more ranks per node is an error)",
        ),
    },
    "output": {
        "--out": ({}, "output HDF5 file (default: FILE's name with .h5)"),
        "--overwrite": ({"action": "store_true"}, "replace an existing output file"),
        "--resume": (
            {"action": "store_true"},
            "run the pending and failed tasks of an existing --out file",
        ),
        "--force": ({"action": "store_true"}, "resume even though the task file was edited"),
        "--flush-seconds": ({"type": float}, "flush the file at least this often (default 30)"),
    },
    "failures and limits": {
        "--retries": ({"type": int}, "run a failed task again up to this many times"),
        "--max-failures": ({"type": int}, "stop cleanly once this many tasks failed"),
        "--task-timeout": (
            {"type": float, "metavar": "SECONDS"},
            "a task running longer fails (and the run goes on)",
        ),
        "--time-limit": (
            {"metavar": "HH:MM:SS"},
            "stop early, resumably, before this much wall time has passed; read as "
            "sbatch --time reads it (MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]: 30 is 30 minutes)",
        ),
        "--grace": (
            {"type": float, "metavar": "SECONDS"},
            "on a stop (SIGTERM, SIGUSR1, time limit) running tasks get this long "
            "to finish (default 30)",
        ),
    },
    "messages": {
        "--dry-run": ({"action": "store_true"}, "print the tasks and exit"),
        "--quiet": (
            {"action": "store_true", "default": None},  # None: MPIBATCH_QUIET
            "print nothing but errors",
        ),
        "--debug": ({"action": "store_true"}, "show tracebacks of mpibatch errors"),
    },
}


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a task file over a grid of tasks on every MPI rank",
        description="Run FILE's task(params, rng[, ctx]) over every task of the grid, on all "
        "ranks of mpiexec (or as a single rank without it). A setting not given as a flag "
        "comes from its MPIBATCH_<NAME> variable (e.g. MPIBATCH_GRACE=60, MPIBATCH_QUIET=1), "
        "else its default.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "file",
        nargs="?",
        help="Python file defining task(params, rng[, ctx]) and optionally grid() "
        "(or give --command)",
    )
    for title, flags in _RUN_FLAGS.items():
        group = p.add_argument_group(title)
        for flag, (options, text) in flags.items():
            group.add_argument(flag, help=text, **options)
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    _set_thread_env(args.threads_per_rank)
    from ._plan import Plan
    from .engine import start

    options = _run_options(args)
    result = start(options)
    if result is None:
        return EXIT_OK
    if isinstance(result, Plan):  # --dry-run
        from .report import format_plan

        say(format_plan(result, args.file or args.command, args.function))
        return EXIT_OK
    return _report_run(result, setting("quiet", options.quiet))


def _run_options(args) -> RunOptions:
    """The run the flags ask for: the same RunOptions that mpibatch.run builds."""
    if (args.file is None) == (args.command is None):
        got = "both" if args.file else "neither"
        raise UsageError(
            f"expected a task FILE or --command TEMPLATE, got {got}; e.g. mpibatch run "
            "study.py, or mpibatch run --command './prog --lr {lr}' --grid lr=1e-3,1e-4"
        )
    named = args.file or _program_name(args.command)
    out = args.out or (os.path.splitext(os.path.basename(named))[0] + ".h5")
    grid = None
    if args.grid:
        from .grid import Grid

        grid = Grid.from_spec(args.grid, args.reps if args.reps is not None else 1)
    names = [f[2:].replace("-", "_") for flags in _RUN_FLAGS.values() for f in flags]
    flags: dict[str, Any] = {
        n: getattr(args, n) for n in names if n not in ("grid", "out", "debug")
    }
    if args.results is not None:
        from ._dtypes import parse_results_flag

        flags["results"] = parse_results_flag(args.results)
    argv = ("mpibatch", *getattr(args, "argv", sys.argv[1:]))
    return RunOptions(task=args.file, grid=grid, out=out, argv=argv, **flags)


def _program_name(template: str) -> str:
    """The first word of a command template (its program), for the default --out."""
    try:
        words = shlex.split(template)
    except ValueError:
        words = template.split()
    return (words[0] if words else "") or "command"


def _report_run(result, quiet: bool) -> int:
    if not quiet:
        say(str(result))
        if result.failed:
            failed = plural(result.failed, "task")
            say(f"{failed} failed; their tracebacks: mpibatch errors {result.path}")
    if result.stopped:
        say(
            f"mpibatch: stopped early ({result.stopped}); {plural(result.pending, 'task')} left. "
            f"Resume with:\n  {result.resume_command}",
            file=sys.stderr,
        )
        if result.stopped.startswith("SIGINT"):
            return EXIT_INTERRUPTED  # Ctrl-C: stopped like SIGTERM, but exits as interrupted
        if "--max-failures" not in result.stopped:
            return EXIT_STOPPED
    return EXIT_FAILED if result.failed else EXIT_OK


def cmd_info(args) -> int:
    from .report import format_info
    from .results import open_results

    say(format_info(open_results(args.file)))
    return EXIT_OK


def cmd_errors(args) -> int:
    from .report import format_errors
    from .results import open_results

    say(format_errors(open_results(args.file), full=args.traceback))
    return EXIT_OK


def cmd_plot(args) -> int:
    from .results import open_results
    from .timeline import plot

    out = args.output or os.path.splitext(args.file)[0] + ".timeline.png"
    plot(open_results(args.file), out)
    say(f"wrote {out}")
    return EXIT_OK


def cmd_merge(args) -> int:
    from .merge import merge

    summary = merge(
        args.parts, args.out, overwrite=args.overwrite, allow_partial=args.allow_partial
    )
    say(str(summary))
    return EXIT_OK if summary.done == summary.n_tasks else EXIT_FAILED


def cmd_rerun(args) -> int:
    _set_thread_env(None)
    from .rerun import rerun

    return rerun(args.file, args.task, pdb=args.pdb, force=args.force)


def _add_readers(sub) -> None:
    """``info``, ``errors`` and ``plot``: commands that read a results file."""
    p = sub.add_parser("info", help="summarise a results file")
    p.add_argument("file")
    p.set_defaults(func=cmd_info, debug=False)
    p = sub.add_parser("errors", help="list failed tasks with their params and error")
    p.add_argument("file")
    p.add_argument("--traceback", action="store_true", help="print full tracebacks")
    p.set_defaults(func=cmd_errors, debug=False)
    p = sub.add_parser(
        "plot", help="draw a per-rank timeline of tasks and a histogram of task times"
    )
    p.add_argument("file")
    p.add_argument("-o", "--output", help="PNG to write (default: FILE.timeline.png)")
    p.set_defaults(func=cmd_plot, debug=False)


def _add_merge(sub) -> None:
    p = sub.add_parser(
        "merge",
        help="merge the files of a job array's --tasks slices into one file",
        description="Merge the files that mpibatch run --tasks START:STOP wrote for one study "
        "(one per job-array element, in any order) into one file laid out as a single run over "
        "their union. Exit 0 if every task is done, 1 if some are pending or failed.",
    )
    p.add_argument("parts", nargs="+", metavar="PART", help="results files of the parts")
    p.add_argument("-o", "--out", required=True, metavar="OUT", help="merged file to write")
    p.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it is a previous results file"
    )
    p.add_argument(
        "--allow-partial",
        action="store_true",
        help="merge even if some tasks are in no part (they stay pending; recorded in OUT)",
    )
    p.set_defaults(func=cmd_merge, debug=False)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="mpibatch",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one Python function over a grid of tasks on N MPI ranks, "
        "reproducibly, into one HDF5 file.",
    )
    parser.add_argument("--version", action="version", version=f"mpibatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
    add_slurm(sub)
    add_hostfile(sub)
    _add_readers(sub)
    _add_merge(sub)
    p = sub.add_parser(
        "rerun",
        help="run one task again in this process and compare it with the stored result",
        description="Run task N of FILE alone in this process, with exactly its params and "
        "random stream (to debug it with --pdb or print statements), then compare the result "
        "with the stored one. Exit 0 if it matches, 1 if it differs or raised.",
    )
    p.add_argument("file", help="results file written by mpibatch run")
    p.add_argument("--task", type=int, required=True, metavar="N", help="id of the task to run")
    p.add_argument(
        "--pdb", action="store_true", help="stop in the debugger at the task's first line"
    )
    p.add_argument(
        "--force", action="store_true", help="run the task file even if it changed since the run"
    )
    p.add_argument("--debug", action="store_true", help="show tracebacks of mpibatch errors")
    p.set_defaults(func=cmd_rerun)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv, command = split_slurm_command(list(sys.argv[1:] if argv is None else argv))
    args = _parser().parse_args(argv)
    args.argv = argv  # what the file records as the command line
    if command:
        args.mpibatch_args = command
    try:
        return args.func(args)
    except MpibatchError as exc:
        if args.debug:
            raise
        say(f"mpibatch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ImportError as exc:  # an optional extra is missing: the message names it
        say(f"mpibatch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # the file system said no: a full disk, a permission, a lost file
        if args.debug:
            raise
        say(f"mpibatch: error: {exc}; check the path, its permissions and free space", sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception:  # anything else is mpibatch's fault: say so, with the traceback
        traceback.print_exc()
        say(
            f"mpibatch: internal error: a bug in mpibatch {__version__}; please report it with "
            "the traceback above and the command you ran",
            sys.stderr,
        )
        return ExitCode.BUG


if __name__ == "__main__":
    sys.exit(main())
