"""Whether an existing results file may be resumed by this run, and if not, why."""

from __future__ import annotations

from pathlib import Path

from .errors import UsageError
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
)


def check(path: Path, stored: dict, now: dict, force: bool) -> None:
    """Raise a one-line UsageError naming the first difference that forbids resuming."""
    for key, what, fix in _CHECKS:
        if key == "task_file_sha256" and force:
            continue
        old, new = stored.get(key), now.get(key)
        if old is not None and not same_study(key, old, new):
            diff = "" if key in ("grid", "task_file_sha256") else f" (file: {old!r}, now: {new!r})"
            raise UsageError(
                f"cannot resume '{path}': the {what} differs{diff}; " + fix.format(old=old)
            )


def missing(path: Path) -> UsageError:
    return UsageError(
        f"--resume: no results file '{path}' to resume; drop --resume to start a new run "
        "(or check --out)"
    )
