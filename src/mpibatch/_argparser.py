"""The ``mpibatch`` command's argument parser: errors in one line, flags only in full."""

from __future__ import annotations

import argparse
import sys

from ._say import say
from .errors import ExitCode


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (on rank 0 only) naming the help to read,
    and a long option is taken only when spelled in full: ``--ranks 2`` is an error, not
    ``--ranks-per-gpu 2``. Every subcommand's parser is one of these (``add_parser``
    makes its parent's class), so this holds for them all."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def parse_known_args(self, args=None, namespace=None):
        """As argparse's, but a cut-short flag (``--ranks``) names the flags it would cut."""
        words = list(sys.argv[1:] if args is None else args)
        if self._subparsers is None:  # a subcommand's parser: the words are all its own
            self._refuse_cut_flags(words[: words.index("--")] if "--" in words else words)
        return super().parse_known_args(words, namespace)

    def _refuse_cut_flags(self, words: list[str]) -> None:
        known = self._option_string_actions
        for word in words:
            flag = word.split("=", 1)[0]
            full = sorted(f for f in known if f.startswith(flag) and f != flag)
            if flag.startswith("--") and flag not in known and full:
                self.error(
                    f"{flag}: expected a flag spelled in full, got the start of {' or '.join(full)}"
                )

    def error(self, message: str):
        say(f"mpibatch: error: {message}; see {self.prog} --help", file=sys.stderr)
        sys.exit(ExitCode.USAGE)
