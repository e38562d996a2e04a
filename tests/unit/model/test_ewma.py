"""EWMA mux arithmetic (circuitmux_ewma.c, circuitmux.c); covers test_circuitmux_ewma.c and
the EWMA parts of test_circuitmux.c, with hand-computed values."""

from __future__ import annotations

import math

import pytest

from kist_reference.channel import Channel, ewma_channel_lt
from kist_reference.ewma import (
    DEFAULT,
    DESTROY,
    Circuit,
    EwmaClock,
    EwmaConfig,
    Mux,
    fraction,
    scale_factor_between,
)

F = DEFAULT.scale_factor  # 30 s half-life, 10 s ticks: 2^(-1/3) per tick


def test_default_scale_factor_is_cube_root_of_half() -> None:
    assert DEFAULT.tick_len == 10
    assert math.exp(-0.69314718055994529 / 3.0) == F
    assert pytest.approx(2 ** (-1 / 3), abs=1e-15) == F
    assert F == 0.7937005259840998


@pytest.mark.parametrize(("torrc", "consensus_ms", "tick_secs", "expected"), [
    (-1.0, None, None, 2 ** (-1 / 3)),          # nothing set: 30 s default
    (60.0, 15000, None, 2 ** (-1 / 6)),         # torrc wins over the consensus
    (-1.0, 15000, None, 2 ** (-2 / 3)),         # consensus in msec
    (0.0, None, None, 2 ** (-1 / 3)),           # below EPSILON: back to 30 s
    (-1.0, 30000, 30, 0.5),                     # one tick = one half-life
    (-1.0, 30000, 0, 2 ** (-1 / 30)),           # tick length clamped to 1 s
])
def test_scale_factor_sources(torrc: float, consensus_ms: int | None, tick_secs: int | None,
                              expected: float) -> None:
    cfg = EwmaConfig.from_options(torrc, consensus_ms, tick_secs)
    assert cfg.scale_factor == pytest.approx(expected, rel=1e-14)


def test_tiny_consensus_halflife_underflows_to_zero() -> None:
    # CircuitPriorityHalflifeMsec=0 is clamped to 1 ms; exp(-6931.47) underflows to 0.0
    assert EwmaConfig.from_options(-1.0, 0, None).scale_factor == 0.0


def test_clock_matches_tor_compute_ticks() -> None:
    """test_cmux_compute_ticks: 1.5 s later same tick, frac .15; 25 s later tick+2, frac .5."""
    clock = EwmaClock(start_ms=1_000, tick=77)
    assert clock.read(1_000) == (77, 0)
    tick, msec = clock.read(2_500)
    assert (tick, fraction(msec, 10)) == (77, 0.15)
    tick, msec = clock.read(26_000)
    assert (tick, fraction(msec, 10)) == (79, 0.5)


def test_clock_tick_advances_only_past_the_tick_length() -> None:
    clock = EwmaClock(start_ms=0, tick=5)
    assert clock.read(10_000) == (5, 10_000)  # msec == 1000*ticklen: still the same tick, frac 1.0
    assert clock.read(10_001) == (6, 1)


def test_clock_tick_wraps_unsigned() -> None:
    clock = EwmaClock(start_ms=0, tick=0xFFFFFFFF)
    assert clock.read(10_001)[0] == 0


def test_scale_factor_between_wraps_like_c_int() -> None:
    assert scale_factor_between(F, 0xFFFFFFFF, 0) == F  # (int)(0 - 0xFFFFFFFF) == 1
    assert scale_factor_between(F, 5, 4) == F ** -1
    # (int)0x80000000 is INT_MIN: pow(f, -2^31) overflows to inf in C (CPython would raise)
    assert scale_factor_between(F, 0, 0x80000000) == math.inf


def one_circuit_mux(count: float, qlen: int, recal: int = 100) -> tuple[Mux, Circuit]:
    c = Circuit(1, count, recal, qlen)
    return Mux.from_heap([c], recal, qlen), c


def test_increment_within_a_tick_is_f_to_minus_frac() -> None:
    mux, c = one_circuit_mux(0.0, 2)
    mux.sent_cell(F, c, 100, 0.5)
    assert c.count == F ** -0.5
    assert c.count == pytest.approx(2 ** (1 / 6), abs=1e-15)  # half a tick of a 3-tick half-life


def test_increment_across_one_tick_rescales_first() -> None:
    mux, c = one_circuit_mux(3.0, 2)
    mux.sent_cell(F, c, 101, 0.0)
    assert c.count == 3.0 * F + 1.0
    assert c.count == pytest.approx(3.3811015779522994, abs=1e-15)
    assert mux.recal == 101 and c.tick == 101


def test_increment_across_the_unsigned_wrap() -> None:
    mux, c = one_circuit_mux(3.0, 2, recal=0xFFFFFFFF)
    mux.sent_cell(F, c, 0, 0.0)
    assert c.count == 3.0 * F + 1.0


def test_clock_going_back_a_tick_scales_up() -> None:
    mux, c = one_circuit_mux(3.0, 2, recal=5)
    mux.sent_cell(F, c, 4, 0.0)
    assert c.count == 3.0 * F ** -1 + 1.0


def test_xmit_moved_back_in_time_grows_count() -> None:
    """test_cmux_ewma_xmit_cell: recalibration 100 ticks back, one cell: the count grows."""
    mux, c = one_circuit_mux(0.0, 3, recal=1000 - 100)
    old = c.count
    mux.sent_cell(F, c, 1000, 0.0)
    assert c.count > old


def test_rescale_touches_only_this_mux_and_cross_mux_compare_is_raw() -> None:
    a1, a2 = Circuit(1, 8.0, 100, 5), Circuit(2, 8.0, 100, 5)
    b1 = Circuit(3, 8.0, 100, 5)
    ma = Mux.from_heap([a1, a2], 100, 10)
    mb = Mux.from_heap([b1], 100, 5)
    ma.sent_cell(F, a1, 101, 0.0)  # a new tick: A's circuits rescaled, B's are not
    assert a2.count == 8.0 * F and b1.count == 8.0 and mb.recal == 100
    ca, cb = Channel(1, ma), Channel(2, mb)
    # Fresh, a2 and b1 are equal (8 cells one tick ago); raw, A's head looks quieter.
    assert ma.head() is a2
    assert ewma_channel_lt(ca, cb) and not ewma_channel_lt(cb, ca)


def test_activation_rescales_to_the_mux_recalibration_tick() -> None:
    mux = Mux(recal=100)
    c = Circuit(9, 4.0, 98, 0)
    mux.circuits[9] = c
    mux.set_num_cells(F, c, 3)
    assert c.count == 4.0 * F ** 2 and c.tick == 100 and mux.head() is c and mux.n_cells == 3


def test_sent_head_is_popped_and_re_added_ties_by_layout() -> None:
    a, b, c = Circuit(1, 1.0, 0, 9), Circuit(2, 1.5, 0, 9), Circuit(3, 2.0, 0, 9)
    mux = Mux.from_heap([a, b, c], 0, 27)
    mux.sent_cell(F, a, 0, 0.0)  # a -> 2.0
    assert [x.circ_id for x in mux.heap] == [2, 3, 1]
    mux.sent_cell(F, b, 0, 0.0)  # b -> 2.5; c and a tie at 2.0, c is the head by layout
    assert [x.circ_id for x in mux.heap] == [3, 1, 2]
    assert mux.pick() is c


def test_circuit_becomes_inactive_when_its_queue_empties() -> None:
    """test_cmux_xmit_cell: 4 cells; after one still active; after all, inactive."""
    mux, c = one_circuit_mux(0.0, 4)
    mux.sent_cell(F, c, 100, 0.0)
    assert mux.num_cells() == 3 and c.qlen == 3 and mux.head() is c
    for _ in range(3):
        mux.sent_cell(F, c, 100, 0.0)
    assert mux.num_cells() == 0 and mux.head() is None and c.heap_idx == -1


def test_destroy_and_relay_cells_alternate() -> None:
    """circuitmux.c:1061-1096 and test_cmux_destroy_cell_queue."""
    mux, c = one_circuit_mux(0.0, 2)
    mux.destroy_q = 3
    assert mux.num_cells() == 5
    picks = []
    for _ in range(5):
        p = mux.pick()
        picks.append("D" if p is DESTROY else "C")
        if p is DESTROY:
            mux.sent_destroy()
        else:
            assert p is c
            mux.sent_cell(F, c, 100, 0.0)
    assert picks == ["D", "C", "D", "C", "D"]
    assert mux.pick() is None


def test_empty_mux_picks_nothing() -> None:
    assert Mux().pick() is None


def test_inlined_circuit_heap_matches_the_generic_heap() -> None:
    """ewma._heap_add/_heap_pop are heap.add/pop with the comparator inlined."""
    import random

    from kist_reference import ewma, heap

    rng = random.Random(5)
    for _ in range(200):
        counts = [float(rng.randint(0, 4)) for _ in range(rng.randint(1, 12))]
        a = [Circuit(i, c) for i, c in enumerate(counts)]
        b = [Circuit(i, c) for i, c in enumerate(counts)]
        ha: list[Circuit] = []
        hb: list[Circuit] = []
        for x, y in zip(a, b, strict=True):
            ewma._heap_add(ha, x)
            heap.add(hb, ewma.count_lt, y)
        while ha:
            assert [c.circ_id for c in ha] == [c.circ_id for c in hb]
            assert ewma._heap_pop(ha).circ_id == heap.pop(hb, ewma.count_lt).circ_id


def test_attach_is_inactive_at_zero_and_detach_forgets_cells() -> None:
    """test_cmux_attach_circuit / test_cmux_detach_circuit / test_cmux_ewma_notify_circ."""
    mux = Mux(recal=7)
    a = mux.attach(1, 7)
    b = mux.attach(2, 7)
    assert (a.count, a.tick, a.heap_idx, mux.num_cells()) == (0.0, 7, -1, 0)
    mux.set_num_cells(F, a, 4)
    mux.set_num_cells(F, b, 2)
    assert mux.num_cells() == 6 and len(mux.heap) == 2
    mux.set_num_cells(F, b, 0)  # notify_circ_inactive: out of the active queue
    assert len(mux.heap) == 1 and mux.recal == 7
    mux.detach(a)
    assert mux.num_cells() == 0 and mux.head() is None and 1 not in mux.circuits
