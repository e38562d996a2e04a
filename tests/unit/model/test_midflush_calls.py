"""Cells queued on a channel while one flush call is sending its cells, replayed from real Tor.

In one ``channel_flush_from_first_active_circuit`` call, a sent cell can drop its circuit's
queue to the low-water mark; the streams are unblocked (relay.c:3269), ``connection_start_reading``
packages what their inbufs hold at once, and the new cells reach the very mux being flushed
(relay.c:3453: the recorded ``hw`` between two ``f`` steps). The model must pick the next
circuit from the mux as it is after those calls. Both records diverged when it kept
flushing the mux it read at the call's start.
"""

from __future__ import annotations

from pathlib import Path

from kist_reference import trace
from kist_reference.replay import replay_run

RUNS = Path(__file__).resolve().parents[2] / "data" / "midflush-hw-runs.jsonl"


def _hw_between_flushes(rec: trace.RunRecord) -> bool:
    """An ``hw`` call recorded after a cell flush and before the next one, with no pop between."""
    seen_flush = called = False
    for step in rec.steps:
        if isinstance(step, trace.Pop):
            seen_flush = called = False
        elif isinstance(step, trace.CellFlush):
            if called:
                return True
            seen_flush = True
        elif isinstance(step, trace.External) and step.call == "hw" and seen_flush:
            called = True
    return False


def test_the_records_have_calls_inside_one_flush() -> None:
    records = list(trace.read_records(RUNS))
    assert len(records) == 2
    assert all(_hw_between_flushes(r) for r in records)


def test_cells_queued_mid_flush_replay_without_divergence() -> None:
    for rec in trace.read_records(RUNS):
        result = replay_run(rec)
        assert result.divergence is None, result.divergence
        assert result.decisions > 30
