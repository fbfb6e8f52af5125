"""Commands as tasks: ``mpibatch run --command 'TEMPLATE'`` (``run(command=...)``).

Each task runs the template with its fields filled in: ``{name}`` a grid value as typed
(``--grid lr=1e-3`` gives ``1e-3``; ``{lr:.2e}`` formats the number), ``{rep}``,
``{task}``, ``{seed}`` (an integer drawn from the task's stream, so -np never changes it)
and ``{out_dir}`` (the task's own folder, ``RESULTS.tasks/000017``; see :func:`task_path`
for the folders of a study of more than :data:`SHARD_ABOVE` tasks). Without ``shell``
the template is split as the shell would (``shlex.split``) and each word filled in alone:
no shell runs, and a value with spaces stays one argument. With ``shell`` the whole line
runs under ``/bin/sh -c``, each value quoted.

A task's results: ``returncode``, plus the keys of a JSON object printed as the last line
of stdout. A non-zero exit fails the task with the last lines of stderr as its error.
Every command runs in its own process group (session); a time-out or a stop that
interrupts the task, and the end of the rank, kill that whole group.
"""

from __future__ import annotations

import atexit
import json
import os
import shlex
import shutil
import signal
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsageError
from .grid import Grid
from .taskfile import file_hash

FIELDS = ("rep", "task", "seed", "out_dir")  # besides the grid's axes
TAIL_LINES = 20  # lines of stderr kept as a failed task's error
_TAIL_BYTES = 64 << 10  # read at most this much of the end of an output file
_TERM_WAIT = 1.0  # seconds between SIGTERM and SIGKILL to an interrupted command's group
SHARD_ABOVE = 5000  # a study of more tasks puts each task's folder and output in subfolders
_SHARD_VAR = "MPIBATCH_SHARD_ABOVE"  # for tests of the layout with few tasks (every rank reads it)
_EG = "e.g. --command './my_experiment --size {size} --lr {lr} --seed {seed}'"


def shard_above() -> int:
    """:data:`SHARD_ABOVE`, or the test override in ``MPIBATCH_SHARD_ABOVE`` (the one place
    it is read; a bad value is a UsageError)."""
    text = os.environ.get(_SHARD_VAR, "").strip()
    if not text:
        return SHARD_ABOVE
    if not text.isdigit():
        raise UsageError(f"{_SHARD_VAR}: expected a number of tasks >= 0, got {text!r}; unset it")
    return int(text)


def task_path(i: int, n_tasks: int, above: int | None = None) -> str:
    """Task ``i``'s name under ``RESULTS.tasks/`` and ``RESULTS.output/``, relative, ``/``-joined.

    The name is the task id, zero-padded to ``max(6, digits of n_tasks - 1)``. A study of up
    to ``above`` (:data:`SHARD_ABOVE`) tasks keeps it flat: ``017017``. A bigger one puts it
    in folders named by its leading digits, three at a time, so none holds over 1,000 names:
    ``017/017017`` (6 digits), ``000/017/0017017`` (7 to 9 digits). It depends on the task id
    and the grid's size alone, so it is the same for any -np, schedule, resume or rerun.
    """
    width = max(6, len(str(n_tasks - 1)))
    name = f"{i:0{width}d}"
    if n_tasks <= (shard_above() if above is None else above):
        return name
    prefix = name[:-3]
    prefix = prefix.zfill(-(-len(prefix) // 3) * 3)  # whole groups of three digits
    return "/".join([prefix[k : k + 3] for k in range(0, len(prefix), 3)] + [name])


Word = list[tuple]  # pieces: (literal text, field name or None, format spec, conversion)


@dataclass(frozen=True)
class CommandSpec:
    """A command template and how its tasks run (from RunOptions or a file's attributes)."""

    template: str
    shell: bool = False
    task_dir: bool = False  # run each task in its own folder RESULTS.tasks/NNNNNN
    keep_output: bool = False  # stdout/stderr to RESULTS.output/NNNNNN.out / .err
    results: str = ""  # the results file: the folders are named after it

    def options(self) -> dict[str, bool]:
        return {"shell": self.shell, "task_dir": self.task_dir, "keep_output": self.keep_output}


class CommandFailed(Exception):
    """A command exited non-zero or died of a signal; ``report`` holds its stderr tail."""

    def __init__(self, message: str, report: str) -> None:
        super().__init__(message)
        self.report = report  # what the file keeps as the task's traceback


def parse(template: Any, shell: bool = False) -> list[Word]:
    """The template's words, each as its literal pieces and fields (UsageError if bad)."""
    if not isinstance(template, str) or not template.strip():
        raise UsageError(f"--command: expected a command line, got {template!r}; {_EG}")
    try:
        words = [template] if shell else shlex.split(template)
        parsed = [list(string.Formatter().parse(w)) for w in words]
    except ValueError as exc:
        raise UsageError(
            f"--command: expected a command line with matched quotes and braces, got "
            f"{template!r} ({exc}); write {{{{ and }}}} for literal braces"
        ) from None
    for word in parsed:
        for _, name, _, _ in word:
            if name is not None and not name.isidentifier():
                raise UsageError(
                    f"--command: expected fields such as {{lr}} or {{seed}}, got "
                    f"{{{name}}} in {template!r}; write {{{{ and }}}} for literal braces"
                )
    return parsed


def _fields(words: list[Word]) -> list[str]:
    return list(dict.fromkeys(n for w in words for _, n, _, _ in w if n is not None))


def check_fields(fn: CommandTask, grid: Grid) -> None:
    """Every field of the template is a grid axis or one of FIELDS (rank 0, before any task)."""
    taken = [n for n in grid.names if n in FIELDS]
    if taken:
        raise UsageError(
            f"--grid: expected axis names other than {', '.join(FIELDS)} with --command, got "
            f"{taken[0]!r}; rename the axis ({{{taken[0]}}} is the task's own)"
        )
    known = [*grid.names, *FIELDS]
    unknown = [n for n in _fields(fn.words) if n not in known]
    if unknown:
        listed = ", ".join(f"{{{n}}}" for n in known)
        raise UsageError(
            f"--command: unknown field {{{unknown[0]}}} in {fn.spec.template!r}; expected one "
            f"of {listed} (the grid's axes and rep, task, seed, out_dir)"
        )


def _program(words: list[Word], shell: bool) -> str:
    """The program's absolute path if it is fixed (no fields, no shell), else ""."""
    if shell or not words or len(words[0]) != 1 or words[0][0][1] is not None:
        return ""
    name = words[0][0][0]
    found = shutil.which(name)
    if found is None:
        raise UsageError(
            f"--command: expected an executable program, got {name!r} (not found, or not "
            "executable); give its path (./my_experiment, after chmod +x) or a name on PATH"
        )
    return os.path.abspath(found) if os.sep in name else found


def load(spec: CommandSpec) -> tuple[CommandTask, dict]:
    """(the task, what the file records about it): the program's path and sha256."""
    task = CommandTask(spec)
    source = {
        "task_file": task.program,
        "function": "command",
        "task_file_sha256": file_hash(task.program) if task.program else "",
        "command_template": spec.template,
        "command_options": json.dumps(spec.options()),
    }
    return task, source


def from_attrs(attrs: dict, results: str) -> CommandTask:
    """The command task a results file records (for ``mpibatch rerun``), bound to its grid."""
    options = json.loads(str(attrs.get("command_options") or "{}"))
    spec = CommandSpec(str(attrs["command_template"]), results=results, **options)
    task = CommandTask(spec)
    task.bind(Grid.from_json(str(attrs["grid"])))
    return task


def bind(fn: Any, grid: Grid) -> None:
    """Give a command task the run's grid (its spellings and size); other tasks: nothing."""
    if isinstance(fn, CommandTask):
        fn.bind(grid)


class CommandTask:
    """``task(params, rng, ctx)`` running one command: the task function of a command run."""

    def __init__(self, spec: CommandSpec) -> None:
        self.spec = spec
        self.words = parse(spec.template, spec.shell)
        self.program = _program(self.words, spec.shell)
        if self.program and os.sep in self.words[0][0][0]:  # ./prog: found from any folder
            self.words[0] = [(self.program, None, None, None)]
        used = _fields(self.words)
        self.uses_seed = "seed" in used
        self.needs_folder = spec.task_dir or "out_dir" in used
        self.folders = Path(spec.results + ".tasks").absolute()
        self.outputs = Path(spec.results + ".output").absolute()
        self.grid: Grid | None = None
        self.above = SHARD_ABOVE

    def bind(self, grid: Grid) -> None:
        self.grid = grid
        self.above = shard_above()  # read once, before any task

    def argv(self, values: dict, spelled: dict) -> list[str]:
        """The command's words with ``values`` filled in (``spelled``: grid values as typed)."""
        out = []
        for word in self.words:
            text = []
            for literal, name, spec, conv in word:
                text.append(literal)
                if name is not None:
                    piece = _fill(values[name], spelled.get(name), spec, conv)
                    text.append(shlex.quote(piece) if self.spec.shell else piece)
            out.append("".join(text))
        return out

    def __call__(self, params: dict, rng: Any, ctx: Any) -> dict:
        assert self.grid is not None, "the engine binds the grid before any task"
        i = ctx.task_id
        name = task_path(i, self.grid.n_tasks, self.above)
        folder = self.folders / name
        values = {**params, "task": i, "out_dir": str(folder), "seed": None}
        if self.uses_seed:
            values["seed"] = int(rng.integers(2**63))
        argv = self.argv(values, self.grid.spelled(i))
        if self.needs_folder:
            folder.mkdir(parents=True, exist_ok=True)
        files = None
        if self.spec.keep_output:
            out = self.outputs / f"{name}.out"
            out.parent.mkdir(parents=True, exist_ok=True)
            files = (out, self.outputs / f"{name}.err")
        cwd = folder if self.spec.task_dir else None
        return execute(argv, self.spec.shell, cwd, files)


def _fill(value: Any, typed: str | None, spec: str | None, conv: str | None) -> str:
    """A field's text: a grid value as typed, unless a format spec or conversion is given."""
    if typed is not None and not spec and not conv:
        return typed
    if conv:
        value = string.Formatter().convert_field(value, conv)
    return format(value, spec or "")


def execute(argv: list[str], shell: bool, cwd: Path | None, files: tuple | None) -> dict:
    """Run one command to its end; its results, or CommandFailed (non-zero exit)."""
    if files is None:
        code, out, err = _run(argv, shell, cwd, subprocess.PIPE, subprocess.PIPE)
    else:
        with open(files[0], "wb") as fo, open(files[1], "wb") as fe:
            code, _, _ = _run(argv, shell, cwd, fo, fe)
        out, err = _tail_bytes(files[0]), _tail_bytes(files[1])
    stdout = out.decode("utf-8", "replace")
    if code != 0:
        tail = err.decode("utf-8", "replace").rstrip("\n").splitlines()[-TAIL_LINES:]
        what = f"exit code {code}" if code > 0 else f"killed by {_signal_name(-code)}"
        message = f"{what}: {tail[-1].strip()}" if tail else what
        report = f"$ {shlex.join(argv) if not shell else argv[0]}\n{what}; "
        report += f"stderr (last {TAIL_LINES} lines):\n" + "\n".join(tail) + "\n"
        raise CommandFailed(message, report)
    return {**_json_results(stdout), "returncode": code}


_LIVE: set[int] = set()  # process groups of commands running now (killed at exit)


def _run(argv: list[str], shell: bool, cwd: Path | None, out: Any, err: Any) -> tuple:
    """(exit code, stdout, stderr) of the command, started in its own session; an
    exception while it runs (a time-out, a stop) kills its process group."""
    cmd = argv[0] if shell else argv
    with subprocess.Popen(
        cmd,
        shell=shell,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=out,
        stderr=err,
        start_new_session=True,  # its own process group: killed as a whole
    ) as proc:
        _LIVE.add(proc.pid)
        try:
            stdout, stderr = proc.communicate()
        finally:
            if proc.returncode is None:  # a time-out or a stop interrupted the wait
                _end_group(proc)
            _LIVE.discard(proc.pid)
    return proc.returncode, stdout or b"", stderr or b""


def _end_group(proc: subprocess.Popen) -> None:
    """SIGTERM the command's process group, then SIGKILL it, and reap the command."""
    try:
        _signal_group(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=_TERM_WAIT)
        except subprocess.TimeoutExpired:
            pass
    finally:
        _signal_group(proc.pid, signal.SIGKILL)  # anything left of the group, even if exited
        proc.wait()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass  # the group is gone


@atexit.register
def _kill_live() -> None:
    """At exit, kill the groups of commands still running (left behind by a stop)."""
    for pgid in list(_LIVE):
        _signal_group(pgid, signal.SIGKILL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _tail_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - _TAIL_BYTES))
        return f.read()


def _json_results(stdout: str) -> dict:
    """The JSON object on the last non-empty line of stdout, if there is one (a null
    value is NaN: what JSON writers print for NaN)."""
    lines = stdout.rstrip().splitlines()
    last = lines[-1].strip() if lines else ""
    if not last.startswith("{"):
        return {}
    try:
        value = json.loads(last)
    except ValueError as exc:
        raise ValueError(
            f"the last line of stdout starts with '{{' but is not JSON ({exc}): "
            f'{last[:200]!r}; print one JSON object, e.g. {{"loss": 0.25}}'
        ) from None
    if not isinstance(value, dict):
        return {}
    return {k: _NAN if v is None else v for k, v in value.items()}  # null: JSON's NaN


_NAN = float("nan")
