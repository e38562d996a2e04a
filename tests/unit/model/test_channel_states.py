"""Scheduler channel states and transitions (scheduler.c:511-704); covers
test_scheduler.c channel_states and kist_pending_list (#24700 double add)."""

from __future__ import annotations

from collections.abc import Callable

from kist_reference.channel import (
    IDLE,
    PENDING,
    WAITING_FOR_CELLS,
    WAITING_TO_WRITE,
    Channel,
    Pending,
)
from kist_reference.ewma import Circuit, Mux
from kist_reference.scheduler import KistPolicy, RunState


def test_full_cycle() -> None:
    p = Pending()
    ch = Channel(1)
    assert ch.state == IDLE and ch.heap_idx == -1
    p.wants_writes(ch)
    assert ch.state == WAITING_FOR_CELLS and len(p) == 0
    p.has_waiting_cells(ch)
    assert ch.state == PENDING and len(p) == 1 and ch.heap_idx == 0
    p.has_waiting_cells(ch)  # more cells: no double add (#24700)
    p.wants_writes(ch)
    assert len(p) == 1
    p.doesnt_want_writes(ch)
    assert ch.state == WAITING_TO_WRITE and len(p) == 0 and ch.heap_idx == -1
    p.wants_writes(ch)
    assert ch.state == PENDING and len(p) == 1
    p.release(ch)
    assert ch.state == IDLE and len(p) == 0


def test_idle_with_cells_waits_to_write() -> None:
    p = Pending()
    ch = Channel(1)
    p.has_waiting_cells(ch)
    assert ch.state == WAITING_TO_WRITE and len(p) == 0
    p.doesnt_want_writes(ch)  # WAITING_TO_WRITE: no change
    assert ch.state == WAITING_TO_WRITE


def test_waiting_for_cells_stops_wanting_writes() -> None:
    p = Pending()
    ch = Channel(1, state=WAITING_FOR_CELLS)
    p.doesnt_want_writes(ch)
    assert ch.state == IDLE


def test_release_frees_the_kist_socket_entry(make_state: Callable[..., RunState]) -> None:
    pol = KistPolicy()
    st = make_state(pol, [(1, [(10, 0.0, 1)]), (2, [(20, 1.0, 1)])])
    ch = st.channels[1]
    assert ch.limit is not None
    st.pending.release(ch)
    assert ch.limit is None and ch.written is None and st.pending.ids() == (2,)


def test_release_removes_from_the_middle_sifting_down_only() -> None:
    p = Pending()
    chans = []
    for i, count in enumerate([0.0, 5.0, 1.0, 6.0, 7.0, 2.0, 3.0]):
        m = Mux.from_heap([Circuit(i, count, 0, 1)], 0, 1)
        ch = Channel(i, m, state=WAITING_FOR_CELLS)
        chans.append(ch)
        p.has_waiting_cells(ch)
    p.release(chans[3])
    assert p.ids() == (0, 1, 2, 6, 4, 5)  # channel 6 (3.0) now sits under channel 1 (5.0)
    assert p.pop().chan_id == 0


def test_inlined_pending_heap_matches_the_generic_heap() -> None:
    """channel.fast_add/fast_pop are heap.add/pop with ewma_channel_lt inlined."""
    import random

    from kist_reference import heap
    from kist_reference.channel import ewma_channel_lt, fast_add, fast_pop

    rng = random.Random(11)

    def chan(i: int, key: int | None) -> Channel:
        mux = Mux.from_heap([] if key is None else [Circuit(i, float(key), 0, 1)], 0, 0 if key is None else 1)
        return Channel(i, mux)

    for _ in range(300):
        keys = [rng.choice([None, 0, 1, 2, 3]) for _ in range(rng.randint(1, 14))]
        a = [chan(i, k) for i, k in enumerate(keys)]
        b = [chan(i, k) for i, k in enumerate(keys)]
        ha: list[Channel] = []
        hb: list[Channel] = []
        for x, y in zip(a, b, strict=True):
            fast_add(ha, x)
            heap.add(hb, ewma_channel_lt, y)
            assert [c.chan_id for c in ha] == [c.chan_id for c in hb]
        while ha:
            assert fast_pop(ha).chan_id == heap.pop(hb, ewma_channel_lt).chan_id
            assert [c.chan_id for c in ha] == [c.chan_id for c in hb]
            assert all(c.heap_idx == i for i, c in enumerate(ha))
