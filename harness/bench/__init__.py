"""Benchmarks that print figures: the patch's CPU overhead, and the syscall floor of KIST.

Each module runs with ``python -m harness.bench.NAME`` and prints its figures last;
timing goals live here, never in timed unit tests.
"""
