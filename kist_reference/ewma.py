"""The EWMA circuit mux with Tor's exact arithmetic (``core/or/circuitmux_ewma.c``, ``circuitmux.c``).

One :class:`Mux` per channel. Its circuits' ``count`` values are relative to the mux's own
recalibration tick ``recal``; the scheduler compares muxes by the raw ``count`` of their
heap heads (``ewma_cmp_cmux``, circuitmux_ewma.c:399-444) even when the muxes were last
recalibrated on different ticks. That is what Tor does, so it is what this model does.

Doubles follow C: ``pow`` is the platform libm's (CPython's float ``**`` calls it), and
ticks are ``unsigned`` with wraparound.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from kist_reference import heap as _heap

LOG_ONEHALF = -0.69314718055994529  # circuitmux_ewma.c:63
EPSILON = 0.00001  # circuitmux_ewma.c:61: smaller half-lives count as "disabled"
TICK_LEN_DEFAULT, TICK_LEN_MIN, TICK_LEN_MAX = 10, 1, 600  # circuitmux_ewma.c:48-50
HALFLIFE_MSEC_DEFAULT, HALFLIFE_MSEC_MIN, HALFLIFE_MSEC_MAX = 30000, 1, 2**31 - 1  # 547-551
SCALE_FACTOR_BEFORE_OPTIONS = 0.1  # circuitmux_ewma.c:120
U32 = 0xFFFFFFFF


def c_pow(x: float, y: float) -> float:
    """C ``pow`` for x >= 0: CPython raises where libm returns inf."""
    try:
        return float(x**y)
    except (OverflowError, ZeroDivisionError):
        return math.inf


def _param(value: int | None, default: int, lo: int, hi: int) -> int:
    """``networkstatus_get_param``: default when absent, else clamped to [lo, hi]."""
    if value is None:
        return default
    return min(max(value, lo), hi)


@dataclass(frozen=True, slots=True)
class EwmaConfig:
    """The two globals ``cmux_ewma_set_options`` (circuitmux_ewma.c:599-625) sets."""

    scale_factor: float
    tick_len: int

    @classmethod
    def from_options(cls, torrc_halflife: float = -1.0, consensus_halflife_msec: int | None = None,
                     consensus_tick_secs: int | None = None) -> EwmaConfig:
        """torrc ``CircuitPriorityHalflife`` (-1 = unset, config.c:367) wins over the consensus
        ``CircuitPriorityHalflifeMsec``; a half-life below EPSILON falls back to 30 s
        (circuitmux_ewma.c:559-596); tick length from ``CircuitPriorityTickSecs``."""
        if torrc_halflife >= -EPSILON:
            halflife = torrc_halflife
        else:
            ms = _param(consensus_halflife_msec, HALFLIFE_MSEC_DEFAULT, HALFLIFE_MSEC_MIN, HALFLIFE_MSEC_MAX)
            halflife = float(ms) / 1000.0
        if halflife < EPSILON:
            halflife = float(HALFLIFE_MSEC_DEFAULT) / 1000.0
        tick_len = _param(consensus_tick_secs, TICK_LEN_DEFAULT, TICK_LEN_MIN, TICK_LEN_MAX)
        halflife /= tick_len
        return cls(math.exp(LOG_ONEHALF / halflife), tick_len)


DEFAULT = EwmaConfig.from_options()


def fraction(msec: int, tick_len: int) -> float:
    """``remainder_out`` of circuitmux_ewma.c:541."""
    return float(msec) / (1.0e3 * tick_len)


def scale_factor_between(f: float, from_tick: int, to_tick: int) -> float:
    """``get_scale_factor`` (629-636): ``pow(f, (int)(to - from))`` with unsigned wraparound."""
    diff = (to_tick - from_tick) & U32
    if diff >= 0x80000000:
        diff -= 0x100000000
    return c_pow(f, diff)


class EwmaClock:
    """``cell_ewma_get_current_tick_and_fraction`` (523-543) over a coarse millisecond clock.

    Used by the recorder; replay takes (tick, msec) per cell from the record instead.
    """

    __slots__ = ("start_ms", "tick", "tick_len")

    def __init__(self, start_ms: int, tick: int, tick_len: int = TICK_LEN_DEFAULT) -> None:
        self.start_ms = start_ms
        self.tick = tick & U32
        self.tick_len = tick_len

    def read(self, now_ms: int) -> tuple[int, int]:
        """Return (tick, msec into the tick); the tick advances only when msec > tick length."""
        diff = (now_ms - self.start_ms) & U32
        if diff >= 0x80000000:  # monotime_coarse_diff_msec32 is an int32
            diff -= 0x100000000
        span = 1000 * self.tick_len
        if diff > span:
            ticks = diff // span
            self.start_ms += ticks * span
            self.tick = (self.tick + ticks) & U32
            diff %= span
        return self.tick, diff


class Circuit:
    """A circuit attached to one mux: its ``cell_ewma_t`` and its cell counts there."""

    __slots__ = ("circ_id", "count", "tick", "heap_idx", "qlen", "queue")

    def __init__(self, circ_id: int, count: float = 0.0, tick: int = 0, qlen: int = 0,
                 queue: int | None = None) -> None:
        self.circ_id = circ_id
        self.count = count  # cell_ewma.cell_count
        self.tick = tick  # cell_ewma.last_adjusted_tick
        self.heap_idx = -1  # cell_ewma.heap_index
        self.qlen = qlen  # muxinfo.cell_count: what the mux believes is queued
        self.queue = qlen if queue is None else queue  # the circuit's real cell queue on this channel

    def __repr__(self) -> str:
        return f"Circuit({self.circ_id}, count={self.count!r}, tick={self.tick}, qlen={self.qlen})"


def count_lt(a: Circuit, b: Circuit) -> bool:
    """``compare_cell_ewma_counts(a, b) < 0`` (circuitmux_ewma.c:447-458)."""
    return a.count < b.count


# The per-cell path is the replay hot loop: these are kist_reference.heap's add and pop
# with count_lt inlined (same sift rules; tests/unit/model/test_ewma.py checks they agree).


def _heap_add(heap: list[Circuit], item: Circuit) -> None:
    idx = len(heap)
    heap.append(item)
    item.heap_idx = idx
    count = item.count
    while idx:
        parent = (idx - 1) >> 1
        above = heap[parent]
        if not count < above.count:
            return
        heap[parent] = item
        heap[idx] = above
        item.heap_idx = parent
        above.heap_idx = idx
        idx = parent


def _heap_pop(heap: list[Circuit]) -> Circuit:
    top = heap[0]
    top.heap_idx = -1
    last = heap.pop()
    n = len(heap)
    if not n:
        return top
    heap[0] = last
    last.heap_idx = 0
    idx = 0
    while True:
        left = 2 * idx + 1
        if left >= n:
            return top
        cur = heap[idx]
        best = idx if cur.count < heap[left].count else left
        right = left + 1
        if right < n and heap[right].count < heap[best].count:
            best = right
        if best == idx:
            return top
        other = heap[best]
        heap[idx] = other
        heap[best] = cur
        other.heap_idx = idx
        cur.heap_idx = best
        idx = best


DESTROY = "destroy"


class Mux:
    """One channel's circuitmux with the EWMA policy."""

    __slots__ = ("heap", "recal", "n_cells", "destroy_q", "last_destroy", "circuits")

    def __init__(self, recal: int = 0, destroy_q: int = 0, last_destroy: bool = False) -> None:
        self.heap: list[Circuit] = []  # active_circuit_pqueue, array order
        self.recal = recal & U32  # active_circuit_pqueue_last_recalibrated
        self.n_cells = 0  # cmux->n_cells
        self.destroy_q = destroy_q  # cmux->destroy_cell_queue.n
        self.last_destroy = last_destroy  # cmux->last_cell_was_destroy
        self.circuits: dict[int, Circuit] = {}

    @classmethod
    def from_heap(cls, circuits: list[Circuit], recal: int, n_cells: int, destroy_q: int = 0,
                  last_destroy: bool = False) -> Mux:
        """A mux whose active heap is exactly ``circuits`` in this array order (as recorded)."""
        mux = cls(recal, destroy_q, last_destroy)
        mux.n_cells = n_cells
        for i, c in enumerate(circuits):
            c.heap_idx = i
            mux.heap.append(c)
            mux.circuits[c.circ_id] = c
        return mux

    def num_cells(self) -> int:
        """``circuitmux_num_cells`` (circuitmux.c:690-695): relay cells plus queued destroys."""
        return self.n_cells + self.destroy_q

    def head(self) -> Circuit | None:
        return self.heap[0] if self.heap else None

    def attach(self, circ_id: int, tick: int) -> Circuit:
        """``ewma_alloc_circ_data`` (203-238): count 0.0 at the current tick, inactive."""
        c = Circuit(circ_id, 0.0, tick & U32, 0)
        self.circuits[circ_id] = c
        return c

    def detach(self, c: Circuit) -> None:
        """``circuitmux_detach_circuit`` (circuitmux.c:852-935): out of the heap if active
        (removal sifts down only), its cells no longer counted."""
        if c.qlen > 0:
            _heap.remove(self.heap, count_lt, c)
        self.n_cells -= c.qlen
        self.circuits.pop(c.circ_id, None)

    # --- activation ------------------------------------------------------------------
    def _activate(self, f: float, c: Circuit) -> None:
        """``add_cell_ewma`` (677-693): rescale to the mux's *recalibration* tick, then add."""
        c.count *= scale_factor_between(f, c.tick, self.recal)
        c.tick = self.recal
        _heap.add(self.heap, count_lt, c)

    def set_num_cells(self, f: float, c: Circuit, n: int) -> None:
        """``circuitmux_set_num_cells`` (circuitmux.c:999-1045)."""
        self.n_cells += n - c.qlen
        if c.qlen > 0 and n == 0:
            c.qlen = 0
            _heap.remove(self.heap, count_lt, c)
        elif c.qlen == 0 and n > 0:
            c.qlen = n
            self._activate(f, c)
        else:
            c.qlen = n

    def append_cells(self, f: float, c: Circuit, n: int) -> None:
        """Cells arrive on a circuit (relay.c append_cell_to_circuit_queue -> update_circuit_on_cmux)."""
        c.queue += n
        self.set_num_cells(f, c, c.queue)

    # --- picking and sending ---------------------------------------------------------
    def pick(self) -> Circuit | str | None:
        """``circuitmux_get_first_active_circuit`` (circuitmux.c:1061-1096): destroy cells and
        relay cells alternate; ``DESTROY`` means the destroy queue was chosen."""
        if self.destroy_q and (not self.last_destroy or not self.heap):
            self.last_destroy = True
            return DESTROY
        if self.heap:
            self.last_destroy = False
            return self.heap[0]
        return None

    def sent_destroy(self) -> None:
        """``destroy_cell_queue_pop`` + ``circuitmux_notify_xmit_destroy`` (relay.c:3140-3152)."""
        self.destroy_q -= 1

    def sent_cell(self, f: float, c: Circuit, tick: int, frac: float) -> None:
        """One relay cell from the head circuit ``c`` went to the outbuf (relay.c:3200-3262)."""
        c.queue -= 1  # cell_queue_pop
        # circuitmux_notify_xmit_cells (circuitmux.c:1104-1158)
        c.qlen -= 1
        self.n_cells -= 1
        # ewma_notify_xmit_cells (circuitmux_ewma.c:320-364), called before deactivation
        if tick != self.recal:
            self.rescale(f, tick)
        try:
            c.count += f ** -frac
        except (OverflowError, ZeroDivisionError):
            c.count += math.inf
        heap = self.heap
        top = _heap_pop(heap)
        if top is not c:
            raise AssertionError("tor_assert(tmp == cell_ewma) failed: the sent circuit was not the heap head")
        _heap_add(heap, c)
        if c.qlen == 0:
            _heap.remove(heap, count_lt, c)
        # circuitmux_set_num_cells(cmux, circ, queue->n) (relay.c:3262)
        if c.queue != c.qlen:
            self.set_num_cells(f, c, c.queue)

    def rescale(self, f: float, tick: int) -> None:
        """``scale_active_circuits`` (650-673): every active circuit of *this* mux only."""
        factor = scale_factor_between(f, self.recal, tick)
        for e in self.heap:
            e.count *= factor
            e.tick = tick
        self.recal = tick
