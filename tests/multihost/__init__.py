"""Tests on a pretend cluster (network + UTS namespaces); a package so its module names
(``multihost.cluster``, ``multihost.conftest``) never clash with tests/slurm's."""
