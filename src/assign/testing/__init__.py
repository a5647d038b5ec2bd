"""Helpers for Assign's tests, benchmarks and demo: scratch PostgreSQL databases
(:mod:`assign.testing.databases`) and ``assign`` child processes (:mod:`assign.testing.procs`).

They live in the package (not in ``tests/``) because the demo is part of the package and the
benchmarks run as plain scripts (``python bench/x.py``): the installed package is the one place
all three can import from.
"""
