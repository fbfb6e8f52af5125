"""The ``mpibatch`` command. Turns errors into one line and an exit code.

Exit codes: 0 all tasks done; 1 some tasks failed; 2 bad input or results that
cannot be stored; 130 interrupted.

This module imports neither numpy nor MPI at the top: ``run`` sets the BLAS thread
variables first, so every rank starts with single-threaded BLAS.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import __version__
from .errors import MpibatchError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")
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
  mpibatch info bootstrap.h5
"""


def _launcher_rank() -> int:
    """This process's rank as the launcher says, without starting MPI (0 if unknown)."""
    for var in _RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def say(msg: str, file=sys.stdout) -> None:
    """Print on rank 0 only, one write per line so ranks never interleave mid-line."""
    if _launcher_rank() == 0:
        file.write(msg + "\n")
        file.flush()


def _set_thread_env(threads: int | None) -> None:
    value = str(threads if threads is not None else os.environ.get("MPIBATCH_THREADS_PER_RANK", 1))
    for var in THREAD_VARS:
        os.environ[var] = value


def _add_run(sub) -> None:
    p = sub.add_parser(
        "run",
        help="run a task file over a grid of tasks on every MPI rank",
        description="Run FILE's task(params, rng[, ctx]) over every task of the "
        "grid, on all ranks of mpiexec (or as a single rank without it).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "file", help="Python file defining task(params, rng[, ctx]) and optionally grid()"
    )
    p.add_argument("--function", default="task", help="name of the task function (default: task)")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="NAME=V1,V2,...",
        help="a grid axis (repeatable); ranges LO:HI[:STEP], LO:HI:Nlin, LO:HI:Nlog; "
        "zipped axes A+B=a1/b1,a2/b2. Overrides the file's grid()",
    )
    p.add_argument("--reps", type=int, help="replicates per grid point (default 1)")
    p.add_argument(
        "--seed", type=int, help="root seed (default: MPIBATCH_SEED, else drawn and recorded)"
    )
    p.add_argument("--out", help="output HDF5 file (default: FILE's name with .h5)")
    p.add_argument("--streams", choices=None, help="task (default; invariant to -np) or rank")
    p.add_argument(
        "--schedule",
        help="auto (default: probes task times, then picks), "
        "static (contiguous blocks per rank) or dynamic (blocks on demand)",
    )
    p.add_argument(
        "--block-size",
        type=int,
        help="fix the tasks per dynamic block (default: guided, shrinking as work runs out)",
    )
    p.add_argument(
        "--dedicated-root",
        action="store_true",
        help="rank 0 only dispatches and writes (default: it runs tasks too)",
    )
    p.add_argument(
        "--flush-seconds",
        type=float,
        help="flush the results file at least this often (default 30)",
    )
    p.add_argument("--threads-per-rank", type=int, help="BLAS/OpenMP threads per rank (default 1)")
    p.add_argument("--tasks", metavar="START:STOP", help="run only this slice of task ids")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--dry-run", action="store_true", help="print the tasks and exit")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.add_argument("--debug", action="store_true", help="show tracebacks of mpibatch errors")
    p.set_defaults(func=cmd_run)


def cmd_run(args) -> int:
    _set_thread_env(args.threads_per_rank)
    from .engine import run

    out = args.out or (os.path.splitext(os.path.basename(args.file))[0] + ".h5")
    grid = None
    if args.grid:
        from .grid import Grid

        grid = Grid.from_spec(args.grid, args.reps if args.reps is not None else 1)
    result = run(
        args.file,
        grid,
        reps=args.reps,
        seed=args.seed,
        out=out,
        streams=args.streams,
        schedule=args.schedule,
        block_size=args.block_size,
        dedicated_root=args.dedicated_root,
        flush_seconds=args.flush_seconds,
        threads_per_rank=args.threads_per_rank,
        tasks=args.tasks,
        overwrite=args.overwrite,
        quiet=args.quiet or None,
        function=args.function,
        dry_run=args.dry_run,
        argv=["mpibatch", *sys.argv[1:]],
    )
    if result is None:
        return EXIT_OK
    if args.dry_run:
        from .report import format_plan

        say(format_plan(result, args.file, args.function))
        return EXIT_OK
    if not args.quiet:
        say(str(result))
        if result.failed:
            say(f"{result.failed} tasks failed; their tracebacks: mpibatch errors {result.path}")
    return EXIT_FAILED if result.failed else EXIT_OK


def cmd_info(args) -> int:
    from .report import format_info
    from .store import open_results

    say(format_info(open_results(args.file)))
    return EXIT_OK


def cmd_errors(args) -> int:
    from .report import format_errors
    from .store import open_results

    say(format_errors(open_results(args.file), full=args.traceback))
    return EXIT_OK


def cmd_plot(args) -> int:
    from .store import open_results
    from .timeline import plot

    out = args.output or os.path.splitext(args.file)[0] + ".timeline.png"
    plot(open_results(args.file), out)
    say(f"wrote {out}")
    return EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpibatch",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Run one Python function over a grid of tasks on N MPI ranks, "
        "reproducibly, into one HDF5 file.",
    )
    parser.add_argument("--version", action="version", version=f"mpibatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_run(sub)
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
    except (FileNotFoundError, OSError) as exc:
        if args.debug or args.command == "run":
            raise
        say(f"mpibatch: error: cannot read {args.file!r}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
