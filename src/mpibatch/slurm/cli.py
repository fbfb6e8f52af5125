"""The ``mpibatch slurm`` and ``mpibatch hostfile`` commands (the Slurm knowledge is in
the modules beside this one)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from .. import _hostfile, _launch
from .._say import plural, say
from ..errors import ExitCode, UsageError
from .jobs import job_hostfile, submit
from .options import KINDS, SlurmOptions
from .script import render

SLURM_EPILOG = """examples:
  mpibatch slurm cpu --nodes 2 --ntasks-per-node 64 --time 02:00:00 \\
      -- run study.py --reps 1000 --seed 42 --out study.h5 > study.sbatch
  mpibatch slurm resume --time 12:00:00 --submit -- run study.py --seed 42 --out study.h5
"""


def add_slurm(sub: argparse._SubParsersAction) -> None:
    """The ``mpibatch slurm KIND [options] -- run ...`` subcommand."""
    p = sub.add_parser(
        "slurm",
        help="print (or submit) an sbatch script that runs an mpibatch command",
        usage="mpibatch slurm KIND [options] -- run FILE [run flags]",
        description="Print a commented sbatch script of KIND running the mpibatch command given "
        "after --. Edit it in one block at the top, then sbatch it (or pass --submit).",
        epilog=SLURM_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "kind",
        choices=KINDS,
        help="cpu (a rank per core), hybrid (ranks x threads), gpu (a rank per GPU), "
        "resume (requeues itself until done) or array (a job array; then mpibatch merge)",
    )
    job = p.add_argument_group("job (default: the KIND's)")
    for flag, text in (
        ("--nodes", "nodes (default 1)"),
        ("--ntasks-per-node", "MPI ranks per node (cpu 4, hybrid 2, gpu = --gpus-per-node)"),
        ("--cpus-per-task", "cores per rank, also --threads-per-rank (hybrid 4, else 1)"),
        ("--gpus-per-node", "gpu kind: GPUs per node (default 1)"),
        ("--max-rounds", "resume kind: at most this many rounds in all (default 10)"),
        ("--signal-lead", "resume kind: seconds before the end the stop signal comes (120)"),
        ("--grace", "resume kind: seconds running tasks get after it (60, < --signal-lead)"),
    ):
        job.add_argument(flag, type=int, metavar="N", help=text)
    job.add_argument("--time", metavar="T", help="time limit, e.g. 02:00:00 (default 01:00:00)")
    job.add_argument("--partition", metavar="P", help="partition (default: the site's)")
    job.add_argument("--account", metavar="A", help="account to charge")
    job.add_argument("--array", metavar="SPEC", help="array kind: e.g. 0-9, 0-99%%10 (0-3)")
    job.add_argument("--job-name", metavar="NAME", help="job name (default mpibatch)")
    job.add_argument(
        "--mpi",
        metavar="PLUGIN",
        help="srun --mpi= plug-in: pmi2 (default; "
        "MPICH, Intel MPI, the mpich wheel) or pmix (Open MPI)",
    )
    job.add_argument("--launcher", choices=("srun", "mpiexec"), help="default srun")
    p.add_argument("--submit", action="store_true", help="sbatch the script, print the job id")
    p.set_defaults(func=cmd_slurm, debug=False, file=None, mpibatch_args=[])


def cmd_slurm(args: argparse.Namespace) -> int:
    """Print the sbatch script (or submit it and print the job id)."""
    if not args.mpibatch_args:
        raise UsageError(
            "expected the job's mpibatch command after --, got none; "
            "e.g. mpibatch slurm cpu -- run study.py --reps 1000 --seed 42 --out study.h5"
        )
    names = [f.name for f in fields(SlurmOptions)]  # those without a flag stay default
    given = {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}
    text = render(args.kind, args.mpibatch_args, SlurmOptions(**given))
    if not args.submit:
        sys.stdout.write(text)
        return ExitCode.OK
    say(f"submitted batch job {submit(text, kind=args.kind)}")
    return ExitCode.OK


HOSTFILE_EPILOG = """examples:
  mpibatch hostfile n01 n02 --slots 64 > hosts      # the spelling of mpi4py's MPI
  mpibatch hostfile --from rl-slides.hostfile > hosts   # convert either spelling, merge
  mpibatch hostfile --check hosts                   # does it fit mpi4py's mpiexec?
"""


def add_hostfile(sub: argparse._SubParsersAction) -> None:
    """The ``mpibatch hostfile [HOST ...] | --from FILE | --check FILE`` subcommand."""
    p = sub.add_parser(
        "hostfile",
        help="print a host file for mpiexec (default: this Slurm job's nodes), or convert one",
        description="Print a host file in the spelling of the MPI mpi4py runs on: 'HOST:N'\n"
        "for MPICH/Hydra (Intel MPI, MVAPICH), 'HOST slots=N' for Open MPI. Hosts default\n"
        "to the job's SLURM_JOB_NODELIST, slots to SLURM_TASKS_PER_NODE, else this\n"
        "machine's CPU count. --from reads a file in either spelling; a host named twice\n"
        "is merged into one line.",
        epilog=HOSTFILE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("hosts", nargs="*", metavar="HOST", help="host names (default: the job's)")
    p.add_argument(
        "--flavor",
        choices=("auto", *_hostfile.FLAVORS),
        default="auto",
        help="auto (default): that of mpi4py's MPI; mpich: HOST:N; openmpi: HOST slots=N",
    )
    p.add_argument("--slots", type=int, metavar="N", help="ranks per host")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", metavar="FILE", help="convert FILE ('-': stdin)")
    source.add_argument("--check", metavar="FILE", help="say whether FILE fits, exit 2 if not")
    p.set_defaults(func=cmd_hostfile, debug=False, file=None)


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"expected a readable host file, got {path!r} ({exc})") from None


def cmd_hostfile(args: argparse.Namespace) -> int:
    """Print a host file for this job's nodes (or the hosts given, or FILE converted), or
    check FILE against the MPI mpi4py runs on."""
    given = args.source or args.check
    if given and (args.hosts or args.slots is not None):
        raise UsageError(
            f"expected --from/--check FILE or HOST names and --slots, got both; "
            f"drop {' '.join(args.hosts) or '--slots'}"
        )
    library = _launch.mpi4py_library() if args.flavor == "auto" else ""
    flavor = _launch.hostfile_flavor(library) if library else args.flavor
    if args.check:
        text = _read(args.check)
        problem = _launch.hostfile_mismatch(args.check, text, flavor, library)
        if problem:
            raise UsageError(problem)
        hosts = _hostfile.parse(text, args.check).hosts
        slots = sum(h.slots or 1 for h in hosts)
        mpi = _launch.short_library(library) if library else _hostfile.NAMES[flavor]
        say(f"{args.check} fits {mpi}'s mpiexec: {plural(len(hosts), 'host')}, {slots} slots")
        return ExitCode.OK
    if args.source:
        hosts = _hostfile.parse(_read(args.source), args.source).hosts
        sys.stdout.write(_hostfile.render(hosts, flavor))
        return ExitCode.OK
    sys.stdout.write(job_hostfile(flavor, args.slots, args.hosts or None))
    return ExitCode.OK


def split_slurm_command(argv: list[str]) -> tuple[list[str], list[str]]:
    """``slurm ... -- CMD``: argparse cannot take CMD after options, so cut it off first."""
    if argv[:1] == ["slurm"] and "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1 :]
    return argv, []
