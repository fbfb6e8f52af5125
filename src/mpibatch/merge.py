"""Merge the results files of a Slurm job array (one ``--tasks`` slice each) into one file.

The merged file is laid out as one run over the union of the parts' task ids would
lay it out (``Store.create`` writes ids and params), and the parts' rows are copied
in by slices of bounded size: results first, status last, as ``Store.write_rows`` does.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ._mergekeys import describe, key_type, merge_key
from ._say import plural
from .errors import OutputError, UsageError
from .grid import Grid
from .layout import (
    ERROR_FIELDS,
    KEYS_ATTR,
    RANKS,
    RESULTS,
    STUDY_ATTRS,
    TASK_COLUMNS,
    TASK_ELAPSED,
    TASK_ID,
    TASK_RANK,
    TASK_START,
    TASK_STATUS,
    TASKS,
    Status,
    failures_path,
    open_file,
    read_attrs,
    read_errors,
    same_study,
)
from .results import read_failures, result_keys
from .store import Store, check_output

_SLICE_BYTES = 64 << 20  # rows copied at a time: at most about this many bytes
# bytes a row takes in /tasks besides its id (which Store.create writes)
_TASK_ROW_BYTES = sum(np.dtype(c.dtype).itemsize for c in TASK_COLUMNS if c is not TASK_ID)
_SAME_STUDY = "merge only the parts of one job array (same task file, grid, seed and streams)"


@dataclass
class MergeSummary:
    """What :func:`merge` wrote; ``str()`` is one line, then one ``warning:`` line each."""

    path: str
    n_parts: int
    n_tasks: int
    done: int
    failed: int
    pending: int
    gaps: list[tuple[int, int]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        line = (
            f"merged {self.n_parts} part{'s' * (self.n_parts != 1)} -> {self.path}: "
            f"{plural(self.n_tasks, 'task')}, {self.done} done, {self.failed} failed, "
            f"{self.pending} pending"
        )
        return "\n".join([line] + [f"warning: {w}" for w in self.warnings])


@dataclass
class _Part:
    path: str
    ids: range
    attrs: dict
    schema: tuple


def _inspect(path: str) -> _Part:
    """A part's task range, attributes and result schema (reads no rows)."""
    attrs, f = read_attrs(path), open_file(path)  # each a one-line error if not ours
    with f:
        missing = [k for k in ("grid", "seed", "streams", "function") if k not in attrs]
        if missing or TASK_ID.path not in f or TASK_STATUS.path not in f:
            raise UsageError(
                f"part '{path}': expected a results file written by mpibatch run, got one "
                f"without {'/' + TASKS if not missing else 'the ' + missing[0] + ' attribute'}; "
                "pass the files written by mpibatch run --out"
            )
        ids, n = f[TASK_ID.path], f[TASK_ID.path].shape[0]
        first, last = (int(ids[0]), int(ids[-1])) if n else (0, -1)
        if not n or last - first + 1 != n:
            raise UsageError(
                f"part '{path}': expected contiguous task ids, got {plural(n, 'row')} "
                f"(ids {first} to {last}); pass the files written by mpibatch run --tasks "
                "START:STOP"
            )
        schema = tuple(key_type(f, k) for k in result_keys(f))
    return _Part(path, range(first, last + 1), attrs, schema)


def _show(key: str, value) -> str:
    if key == "grid":
        grid = Grid.from_json(value)
        text = " ".join(grid.to_specs()) + f" x {grid.reps} reps"
        return text if len(text) <= 80 else text[:77] + "..."
    return repr(value)


def _check_parts(parts: list[_Part]) -> list[tuple[int, int]]:
    """Raise unless all parts are of one study, one schema, disjoint; return the gaps."""
    ref = parts[0]
    for p in parts[1:]:
        for key in STUDY_ATTRS:
            a, b = ref.attrs.get(key), p.attrs.get(key)
            if not same_study(key, a, b):
                raise UsageError(
                    f"part '{p.path}' is of another study than '{ref.path}': expected "
                    f"{key} {_show(key, a)}, got {_show(key, b)}; {_SAME_STUDY}"
                )
    with_schema = [p for p in parts if p.schema]
    for p in with_schema[1:]:
        if p.schema != with_schema[0].schema:
            raise UsageError(
                f"part '{p.path}' stores other results than '{with_schema[0].path}': expected "
                f"({describe(with_schema[0].schema)}), got ({describe(p.schema)}); {_SAME_STUDY}"
            )
    gaps, reach = [], parts[0]
    for p in parts[1:]:
        if p.ids.start < reach.ids.stop:
            both = f"{p.ids.start}:{min(p.ids.stop, reach.ids.stop)}"
            raise UsageError(
                f"parts '{reach.path}' (tasks {_span(reach.ids)}) and '{p.path}' (tasks "
                f"{_span(p.ids)}) overlap: expected disjoint task ranges, got both holding "
                f"tasks {both}; drop one of them"
            )
        if p.ids.start > reach.ids.stop:
            gaps.append((reach.ids.stop, p.ids.start))
        reach = p if p.ids.stop > reach.ids.stop else reach
    return gaps


def _span(ids: range) -> str:
    return f"{ids.start}:{ids.stop}"


def _command(command: str, ids: range, n_tasks: int, out: str) -> str:
    """The first part's command line, for the merged range and file."""
    cmd = re.sub(r" --tasks \S+", "", command)
    cmd = cmd.rsplit(" --out ", 1)[0]
    if (ids.start, ids.stop) != (0, n_tasks):
        cmd += f" --tasks {_span(ids)}"
    return f"{cmd} --out {out}"


def _attrs(parts: list[_Part], ids: range, grid: Grid, out: str) -> dict:
    """Root attributes: the first part's, for the union range, with the sessions of all."""
    attrs = dict(parts[0].attrs)
    attrs["tasks"] = _span(ids)
    attrs["command"] = _command(str(attrs.get("command", "")), ids, grid.n_tasks, out)
    attrs["merged_from"] = json.dumps([{"path": p.path, "tasks": _span(p.ids)} for p in parts])
    t0s = [p.attrs["t0"] for p in parts if "t0" in p.attrs]
    if len(t0s) == len(parts):
        first = min(parts, key=lambda p: p.attrs["t0"])
        attrs["t0"] = first.attrs["t0"]
        attrs["start_time"] = first.attrs.get("start_time", attrs.get("start_time"))
    sessions = [s for p in parts for s in json.loads(p.attrs.get("sessions", "[]"))]
    attrs["sessions"] = json.dumps(sorted(sessions, key=lambda s: s.get("start", "")))
    hosts = {h for p in parts for h in json.loads(p.attrs.get("hosts", "[]"))}
    attrs["hosts"] = json.dumps(sorted(hosts))
    for key in ("rank_seconds", "dispatch_seconds", "n_blocks"):
        if all(key in p.attrs for p in parts):
            attrs[key] = sum(p.attrs[key] for p in parts)
    ends = [p.attrs["end_time"] for p in parts if "end_time" in p.attrs]
    if len(ends) == len(parts):
        attrs["end_time"] = max(ends)
    if len(t0s) == len(parts) and all("wall_seconds" in p.attrs for p in parts):
        last = max(p.attrs["t0"] + p.attrs["wall_seconds"] for p in parts)
        attrs["wall_seconds"] = last - min(t0s)
    stops = [f"{p.path}: {p.attrs['stopped']}" for p in parts if p.attrs.get("stopped")]
    attrs["stopped"] = "; ".join(stops)
    return attrs


def _copy_part(store: Store, part: _Part, shift: float) -> np.ndarray:
    """Copy a part's rows by slices; return its status counts (pending, done, failed)."""
    schema = store.schema or ()
    row_bytes = _TASK_ROW_BYTES + sum(
        f.dtype.itemsize * int(np.prod(f.shape, dtype=np.int64)) for f in schema
    )
    step = max(1, _SLICE_BYTES // row_bytes)
    counts = np.zeros(len(Status), np.int64)
    base = part.ids.start - store.ids.start
    tasks, results = store.f[TASKS], store.f[RESULTS]
    with open_file(part.path) as src:
        for a in range(0, len(part.ids), step):
            b = min(len(part.ids), a + step)
            out = slice(base + a, base + b)
            for fld in schema:  # results first, status last, as write_rows does
                if any(t.key == fld.key for t in part.schema):
                    results[fld.key][out] = src[RESULTS][fld.key][a:b]
                elif fld.dtype.kind in "fc":  # no task of this part succeeded
                    results[fld.key][out] = np.full((b - a, *fld.shape), np.nan, fld.dtype)
            tasks[TASK_START.name][out] = src[TASK_START.path][a:b] + shift
            tasks[TASK_ELAPSED.name][out] = src[TASK_ELAPSED.path][a:b]
            tasks[TASK_RANK.name][out] = src[TASK_RANK.path][a:b]
            status = src[TASK_STATUS.path][a:b]
            tasks[TASK_STATUS.name][out] = status
            counts += np.bincount(status.astype(np.int64), minlength=len(Status))[: len(Status)]
    return counts


def _part_failures(part: _Part) -> list[dict]:
    """A part's failure records: those in its /errors, then any left in its sidecar."""
    with open_file(part.path) as src:
        records = read_errors(src)
    sidecar = read_failures(failures_path(part.path))
    return records + [{f.name: f.kind(r[f.name]) for f in ERROR_FIELDS} for r in sidecar]


def _write(tmp: Path, parts: list[_Part], grid: Grid, ids: range, attrs: dict) -> list:
    """Write the merged file at ``tmp``; return each part's (pending, done, failed)."""
    store = Store.create(tmp, grid, ids, attrs)
    try:
        schema = next((p.schema for p in parts if p.schema), ())
        fixed = tuple(t.field for t in schema if t.field is not None)
        if fixed:
            store.add_results(fixed)
        counts, t0 = [], attrs.get("t0")
        for p in parts:  # start times count from the earliest part's start
            shift = p.attrs["t0"] - t0 if t0 is not None and "t0" in p.attrs else 0.0
            counts.append(_copy_part(store, p, shift).tolist())
        for t in schema:
            if t.field is None:  # ragged and string keys, in their closed layout
                merge_key(store.f[RESULTS], t, parts, ids)
        if schema:
            store.f[RESULTS].attrs[KEYS_ATTR] = json.dumps([t.key for t in schema])
        with open_file(parts[0].path) as src:
            if RANKS in src:
                src.copy(src[RANKS], store.f, RANKS)
        lines = "".join(json.dumps(r) + "\n" for p in parts for r in _part_failures(p))
        failures_path(tmp).write_text(lines, encoding="utf-8")
        store.close(attrs)  # moves the latest failure of each failed task into /errors
    except BaseException:
        store.f.close()
        raise
    return counts


def _missing(parts: list[_Part], gaps: list[tuple[int, int]], n_tasks: int) -> list:
    """Task ranges of the study (0 to ``n_tasks``) that no part holds."""
    first, last = parts[0].ids.start, max(p.ids.stop for p in parts)
    edges = [(0, first)] if first > 0 else []
    return edges + gaps + ([(last, n_tasks)] if last < n_tasks else [])


def _refuse_partial(parts: list[_Part], missing: list, n_tasks: int) -> UsageError:
    held = ", ".join(_span(p.ids) for p in parts)
    lost = ", ".join(f"{a}:{b}" for a, b in missing)
    n_lost = sum(b - a for a, b in missing)
    return UsageError(
        f"merge: expected parts covering all tasks 0:{n_tasks}, got {held}; "
        f"{plural(n_lost, 'task')} ({lost}) {'is' if n_lost == 1 else 'are'} in no part: run "
        "them with --tasks START:STOP and merge that part in, or pass --allow-partial to "
        "merge what is here"
    )


def merge(
    parts: list[str], out: str, overwrite: bool = False, allow_partial: bool = False
) -> MergeSummary:
    """Merge the results files of ``mpibatch run --tasks`` slices of one study into ``out``.

    The parts must hold every task of the study, else UsageError names the missing ids;
    with ``allow_partial`` the merged datasets are those of one run over the union of the
    parts' task ids, gaps between parts left pending (and reported), and the missing ids
    recorded in the ``partial`` attribute. Raises UsageError or OutputError.
    """
    if not parts:
        raise UsageError(
            "merge: expected at least one part, got none; e.g. mpibatch merge "
            "study.part*.h5 -o study.h5"
        )
    dest = check_output(out, overwrite)
    for p in parts:
        if Path(p).resolve() == dest.resolve():
            raise UsageError(
                f"merge: expected an output other than the parts, got '{out}' as both; "
                "choose another -o"
            )
    infos = sorted((_inspect(str(p)) for p in parts), key=lambda p: p.ids.start)
    gaps = _check_parts(infos)
    ids = range(infos[0].ids.start, max(p.ids.stop for p in infos))
    grid = Grid.from_json(infos[0].attrs["grid"])
    missing = _missing(infos, gaps, grid.n_tasks)
    if missing and not allow_partial:
        raise _refuse_partial(infos, missing, grid.n_tasks)
    attrs = _attrs(infos, ids, grid, str(out))
    attrs["partial"] = json.dumps(missing) if missing else ""
    tmp = dest.with_name(f".{dest.name}.merging-{os.getpid()}")
    try:
        counts = _write(tmp, infos, grid, ids, attrs)
        os.replace(tmp, dest)
    except OSError as exc:
        raise OutputError(
            f"merge: expected to write '{out}', got {exc}; check that the parts are "
            "readable and that its directory has space for them"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
        failures_path(tmp).unlink(missing_ok=True)
    failures_path(dest).unlink(missing_ok=True)  # a stale sidecar would be read as this file's
    done, failed = (sum(c[s] for c in counts) for s in (Status.DONE, Status.FAILED))
    warnings = _warnings(infos, counts, gaps)
    return MergeSummary(
        str(out), len(infos), len(ids), done, failed, len(ids) - done - failed, gaps, warnings
    )


def _warnings(parts: list[_Part], counts: list, gaps: list[tuple[int, int]]) -> list[str]:
    out = [
        f"tasks {a}:{b} are in no part and stay pending; run them with --tasks {a}:{b} "
        "and merge that part in"
        for a, b in gaps
    ]
    out += [
        f"part '{p.path}' has {c[Status.PENDING]} pending tasks; resume that element "
        f"({p.attrs.get('command', 'its mpibatch run command')} --resume) and merge again"
        for p, c in zip(parts, counts, strict=True)
        if c[Status.PENDING]
    ]
    return out
