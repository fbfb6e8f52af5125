"""Helpers every benchmark script shares: launching and timing commands, and printing tables.

Commands are timed whole: ``time.perf_counter()`` around ``subprocess.run``, from the launcher
starting to its exit. ``mpiexec`` and ``mpibatch`` are the ones next to ``sys.executable`` (the
project's virtual environment). A command that fails gives ``"failed: <last stderr line>"``
instead of a time, so a table row can say why and the benchmark goes on.
"""

import compileall
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

HERE = Path(__file__).resolve().parent
BINDIR = Path(sys.executable).parent


def last_stderr_line(stderr: str) -> str:
    """The last line of stderr, skipping MPICH's "application called MPI_Abort" notices."""
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip()]
    said = [ln for ln in lines if "called MPI_Abort" not in ln and not ln.startswith("Abort(")]
    return (said or lines or ["(no stderr)"])[-1][:160]


def run_command(cmd: list[str], timeout: float, env: dict | None = None):
    """Time a whole command; return (seconds, "") or (None, "failed: <last stderr line>")."""
    full_env = None if env is None else {**os.environ, **env}
    t0 = time.perf_counter()
    try:
        subprocess.run(
            cmd, check=True, capture_output=True, text=True, timeout=timeout, env=full_env
        )
    except FileNotFoundError as exc:
        return None, f"failed: {exc}"
    except subprocess.TimeoutExpired:
        return None, f"failed: timed out after {timeout:.0f} s"
    except subprocess.CalledProcessError as exc:
        return None, f"failed: {last_stderr_line(exc.stderr)}"
    return time.perf_counter() - t0, ""


def compile_sources() -> None:
    """Write the .pyc files of mpibatch and of these scripts, as ``pip install`` does.

    Every process of every command imports mpibatch; with ``PYTHONDONTWRITEBYTECODE`` set
    (or an editable install never imported without it) each would compile the package's
    sources anew at start-up, a cost no installed package has.
    """
    import mpibatch

    for folder in (Path(mpibatch.__file__).parent, HERE):
        compileall.compile_dir(folder, quiet=1)


def mpiexec(nranks: int) -> list[str]:
    return [str(BINDIR / "mpiexec"), "-n", str(nranks)]


def run_args(task_file: Path, ntasks: int, seed: int, out: Path) -> list[str]:
    """``run TASK_FILE --reps N --seed S --out OUT --overwrite --quiet`` (after ``mpibatch``)."""
    return [
        "run",
        str(task_file),
        "--reps",
        str(ntasks),
        "--seed",
        str(seed),
        "--out",
        str(out),
        "--overwrite",
        "--quiet",
    ]


def mpibatch_run(nranks: int, task_file: Path, ntasks: int, seed: int, out: Path) -> list[str]:
    """``mpiexec -n NP mpibatch run TASK_FILE --reps N --seed S --out OUT --overwrite --quiet``."""
    return mpiexec(nranks) + [str(BINDIR / "mpibatch"), *run_args(task_file, ntasks, seed, out)]


def file_attrs(path: Path) -> dict:
    """The root attributes of an HDF5 file as plain Python values ({} if unreadable)."""
    try:
        with h5py.File(path, "r") as f:
            return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    except OSError:
        return {}


def run_help_has(*words: str) -> bool:
    """Whether this mpibatch's ``run --help`` mentions every one of ``words``."""
    try:
        r = subprocess.run(
            [str(BINDIR / "mpibatch"), "run", "--help"], capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return all(w in r.stdout for w in words)


def warn_without_schedule() -> None:
    """Say so up front when this mpibatch lacks the dynamic-schedule flags the rows pass."""
    if not run_help_has("--block-size", "dynamic"):
        print("note: this mpibatch has no --schedule dynamic/--block-size yet; rows will fail")


def mpi_library_version() -> str:
    """The MPI library's name and version, e.g. "MPICH Version: 5.0.2", without MPI_Init."""
    import mpi4py

    mpi4py.rc.initialize = False  # only ask for the version string
    mpi4py.rc.finalize = False
    from mpi4py import MPI

    first = MPI.Get_library_version().strip().splitlines()[0]
    return " ".join(first.split(",")[0].split())


def machine_line() -> str:
    import mpi4py

    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"nproc {ncpu}, Python {platform.python_version()}, numpy {np.__version__}, "
        f"mpi4py {mpi4py.__version__}, {mpi_library_version()}, h5py {h5py.__version__}"
    )


def begin(title: str) -> None:
    """Write the .pyc files (see compile_sources), then print the title and the machine."""
    compile_sources()
    print(f"{title}, {machine_line()}", flush=True)


def md_escape(text: str) -> str:
    return text.replace("*", r"\*").replace("|", r"\|")


def format_table(header: list[str], cells: list[list[str]], markdown: bool) -> str:
    """Columns 0 and -1 left-aligned text, the rest right-aligned numbers."""
    if markdown:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join([":---"] + ["---:"] * (len(header) - 2) + [":---"]) + "|",
        ]
        lines += ["| " + " | ".join(md_escape(x) for x in c) + " |" for c in cells]
        return "\n".join(lines)
    widths = [max(len(c[k]) for c in [header, *cells]) for k in range(len(header))]

    def fmt(c: list[str]) -> str:
        head = c[0].ljust(widths[0])
        mid = "  ".join(x.rjust(w) for x, w in zip(c[1:-1], widths[1:-1], strict=True))
        return f"{head}  {mid}   {c[-1]}"

    return "\n".join(fmt(c) for c in [header, *cells])


def note(text: str, markdown: bool) -> str:
    return md_escape(text) if markdown else text


def print_table(
    header: list[str], cells: list[list[str]], markdown: bool, notes: Sequence[str] = ()
) -> None:
    """A blank line, the table, and (after another blank line) its notes, one a line."""
    print()
    print(format_table(header, cells, markdown))
    if notes:
        print()
    for line in notes:
        print(note(line, markdown))
