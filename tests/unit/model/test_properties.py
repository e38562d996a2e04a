"""Properties over simulated relays (hypothesis): limits hold, no channel is lost, replay is
deterministic, records survive JSON and the wire form exactly."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from kist_reference import trace
from kist_reference.channel import PENDING, WAITING_TO_WRITE
from kist_reference.recorder import SimRelay
from kist_reference.replay import replay_run
from kist_reference.socket import CELL_CHARGE

SCHEDS = st.sampled_from(["KIST", "KISTLite", "Vanilla"])
SEEDS = st.integers(min_value=0, max_value=2**32)


@settings(max_examples=40, deadline=None)
@given(SEEDS, st.integers(1, 8), st.sampled_from(["KIST", "KISTLite"]), st.floats(0.2, 3.0))
def test_no_socket_gets_more_than_its_limit_plus_one_cell(seed: int, n: int, sched: str, load: float) -> None:
    sim = SimRelay(seed, n, sched, load=load, closes=False)
    for rec in sim.records(15):
        for snap in rec.snapshots[: rec.n_pending]:
            assert snap.limit is not None
            cells = sum(1 for s in rec.steps if isinstance(s, (trace.CellFlush, trace.DestroyFlush))
                        and s.chan == snap.chan)
            if snap.limit < 2**63:
                # socket_can_write wants a whole cell of room before each one-cell flush
                assert cells * CELL_CHARGE <= snap.limit < snap.limit + CELL_CHARGE


@settings(max_examples=40, deadline=None)
@given(SEEDS, st.integers(1, 8), SCHEDS, st.floats(0.2, 3.0))
def test_a_channel_with_cells_and_room_is_never_lost(seed: int, n: int, sched: str, load: float) -> None:
    sim = SimRelay(seed, n, sched, load=load, closes=False)
    for _ in sim.records(15):
        for chan in sim.st.channels.values():
            # between runs, PENDING means "in channels_pending" and nothing else is in it
            assert (chan.state == PENDING) == (chan.heap_idx != -1)
            assert chan.heap_idx == -1 or sim.st.pending.heap[chan.heap_idx] is chan
            if chan.open and chan.more_to_flush():
                # PENDING: it will be scheduled; WAITING_TO_WRITE: wants_writes will push it
                assert chan.state in (PENDING, WAITING_TO_WRITE), chan


@settings(max_examples=25, deadline=None)
@given(SEEDS, st.integers(1, 6), SCHEDS)
def test_replay_is_deterministic_and_agrees_with_the_recorder(seed: int, n: int, sched: str) -> None:
    recs = list(SimRelay(seed, n, sched).records(10))
    assert recs == list(SimRelay(seed, n, sched).records(10))
    for rec in recs:
        first, second = replay_run(rec), replay_run(rec)
        assert first == second
        assert first.divergence is None, first.divergence.describe()


@settings(max_examples=25, deadline=None)
@given(SEEDS, st.integers(1, 6), SCHEDS)
def test_record_json_and_wire_round_trip_exactly(seed: int, n: int, sched: str) -> None:
    for rec in SimRelay(seed, n, sched).records(8):
        assert trace.from_json(trace.to_json(rec)) == rec
        assert trace.parse_wire(trace.to_wire(rec)) == rec
