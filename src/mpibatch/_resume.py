"""Whether an existing results file may be resumed by this run, and if not, why."""

from __future__ import annotations

from pathlib import Path

from ._say import plural
from .errors import UsageError
from .grid import Grid
from .layout import same_study

# (attribute, what it is, how to fix a difference): layout.STUDY_ATTRS and the task range
_CHECKS = (
    ("function", "task function", "pass --function {old}"),
    ("seed", "seed", "pass --seed {old}, or start a new file with another --out"),
    ("streams", "streams", "pass --streams {old}"),
    (
        "grid",
        "grid",
        "run with the file's grid (mpibatch info FILE shows the command), "
        "or start a new file with another --out",
    ),
    ("tasks", "task range", "pass --tasks {old}"),
    (
        "task_file_sha256",
        "task file (its contents changed since the run)",
        "pass --force to resume with the edited task file",
    ),
    ("command_template", "command", "pass the same --command (mpibatch info FILE shows it)"),
)


def resumed_grid(old: Grid, given, reps: int | None) -> Grid:
    """The grid a ``--resume`` runs: the file's ``old`` one where the run gives no axes
    (no ``--grid``, no ``grid()``), with the file's reps where it gives no ``--reps``, as
    the seed defaults to the file's. A grid the same as the file's but for float values
    within a relative 1e-12 (a range an older mpibatch computed otherwise, 0.30000000000000004
    for 0.3) is the file's: a resume never recomputes the recorded grid."""
    own_reps = isinstance(given, Grid) and given.reps != 1  # a Grid object's own reps
    if reps is None and not own_reps:
        reps = old.reps
    new = Grid.coerce(old if given is None else given, reps)
    return old if new != old and new.close_to(old) else new


def grid_difference(old_json: str, new_json: str) -> str:
    """How two grids differ, in a few words: `` (file: 10 reps, now: 20)``."""
    old, new = Grid.from_json(old_json), Grid.from_json(new_json)
    if old.reps != new.reps and old.names == new.names:
        return f" (file: {plural(old.reps, 'rep')}, now: {new.reps})"
    if old.names != new.names:
        was, now_ = ", ".join(old.names) or "none", ", ".join(new.names) or "none"
        return f" (file: axes {was}; now: {now_})"
    then, now = old.axis_values(), new.axis_values()
    name = next((n for n in old.names if then[n] != now[n]), None)
    if name is None:
        return " (the same values, zipped or typed differently)"
    return f" (file: {name} = {_few(then[name])}; now: {_few(now[name])})"


def _few(values: list) -> str:
    text = ", ".join(map(repr, values[:4])) + (", ..." if len(values) > 4 else "")
    return f"{plural(len(values), 'value')}: {text}"


def check(path: Path, stored: dict, now: dict, force: bool) -> None:
    """Raise a one-line UsageError naming the first difference that forbids resuming."""
    for key, what, fix in _CHECKS:
        if key == "task_file_sha256" and force:
            continue
        old, new = stored.get(key), now.get(key)
        if old is not None and not same_study(key, old, new):
            diff = f" (file: {old!r}, now: {new!r})"
            if key == "grid":
                diff = grid_difference(old, str(new))
            elif key == "task_file_sha256":
                diff = ""
            raise UsageError(
                f"cannot resume '{path}': the {what} differs{diff}; " + fix.format(old=old)
            )
    if stored.get("command_template"):
        _check_spellings(path, str(stored["grid"]), str(now["grid"]))


def _check_spellings(path: Path, old_json: str, new_json: str) -> None:
    """A command sees grid values as typed: resuming must type them the same way."""
    old, new = Grid.from_json(old_json), Grid.from_json(new_json)
    if old.spellings() != new.spellings():
        raise UsageError(
            f"cannot resume '{path}': the grid's values are typed differently (file: "
            f"{' '.join(old.to_specs())}; now: {' '.join(new.to_specs())}), and the command "
            "sees them as typed; pass the file's --grid flags (mpibatch info FILE shows them)"
        )


def missing(path: Path | None) -> UsageError:
    return UsageError(
        f"--resume: no results file '{path}' to resume; drop --resume to start a new run "
        "(or check --out)"
    )
