"""Fuzzing every parser a user or a relay can feed; ``python -m harness.fuzz`` prints the figures.

A *target* is one entry point (a control-port event line into the collector, a run record
into ``kist-harness model replay``, a scenario or inventory file, a store file) with the
exception types it documents (``harness.errors.HarnessError``, ``kist_reference.trace.
TraceError``). Anything else it raises is an *escape*: at the CLI it would be a traceback.
Inputs are seeded from real lines and files and mutated (``mutate``); the unit suite drives
the same targets with Hypothesis (tests/unit/fuzz/).
"""
