"""mpibatch: run one Python function over a grid of tasks on N MPI ranks.

The public API is three names: :func:`run`, :class:`Grid` and :func:`open`, plus the
types ``run`` returns: :class:`Summary` (and :class:`Plan` with ``dry_run=True``).
They are imported lazily, so ``import mpibatch`` loads neither numpy nor MPI.
Importing sets no environment variables: the ``mpibatch`` command (``cli.py``)
sets the ``*_NUM_THREADS`` variables itself, before numpy loads.

``__version__`` below is the one definition of the version; ``pyproject.toml``
reads it from here.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["run", "Grid", "open", "Summary", "Plan", "__version__"]


def __getattr__(name: str):
    if name == "run":
        from .engine import run

        return run
    if name == "Grid":
        from .grid import Grid

        return Grid
    if name == "Summary":
        from .engine import Summary

        return Summary
    if name == "Plan":
        from ._plan import Plan

        return Plan
    if name == "open":
        from .results import open_results

        return open_results
    raise AttributeError(f"module 'mpibatch' has no attribute {name!r}")
