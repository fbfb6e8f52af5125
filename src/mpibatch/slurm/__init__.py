"""Everything mpibatch knows about Slurm: job scripts, submission, job variables, arrays.

No MPI and no numpy here. ``options``: what a script asks for (``SlurmOptions``) and its
checks; ``script``: ``render``, pure, a complete, commented sbatch script for one of
``KINDS`` (``slurm/*.sbatch`` in the repository are its output for the defaults,
``write_templates``); ``jobs``: ``submit`` hands a script to ``sbatch``, ``job_info``,
``end_time`` and ``array_slice`` read the job mpibatch runs in, ``hostfile`` writes the
host list an ``mpiexec`` outside Slurm wants; ``cli``: ``mpibatch slurm`` and
``mpibatch hostfile``.
"""

from .jobs import (
    array_slice,
    counts_per_node,
    end_time,
    expand_nodes,
    hostfile,
    job_hostfile,
    job_info,
    submit,
)
from .options import KINDS, SlurmOptions, time_seconds
from .script import EXAMPLE_ARGS, render, write_templates

__all__ = [
    "KINDS",
    "EXAMPLE_ARGS",
    "SlurmOptions",
    "render",
    "write_templates",
    "submit",
    "job_info",
    "end_time",
    "array_slice",
    "hostfile",
    "job_hostfile",
    "counts_per_node",
    "expand_nodes",
    "time_seconds",
]
