"""Runs recorded from a real patched Tor relay replay with no divergence.

The file was recorded by `kist-harness run` (see its header); it keeps the model honest
against Tor itself on every test run, without building Tor.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from kist_reference import trace
from kist_reference.replay import replay_run

TRACE = Path(__file__).resolve().parents[1] / "data" / "real-tor-0.4.9.11-runs.jsonl"


def test_real_tor_runs_replay_without_divergence() -> None:
    records = list(trace.read_records(TRACE))
    results = [replay_run(r) for r in records]
    assert [r.divergence for r in results if r.divergence] == []
    assert sum(r.decisions for r in results) >= 10_000
    assert {r.sched for r in records} == {"KIST", "Vanilla"}


def test_real_trace_exercises_mid_run_calls_and_end_writes() -> None:
    ops = Counter(trace.STEP_OPS[type(s)] for r in trace.read_records(TRACE) for s in r.steps)
    assert ops["W"] > 0 and ops["x"] > 0 and ops["n"] > 0 and ops["s"] > 0
