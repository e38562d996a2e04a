"""Channels, the pending heap and the four scheduler states with every transition Tor makes.

A :class:`Channel` carries what the scheduler reads of a ``channel_t`` and its OR
connection (OPEN, wide circuit ids, outbuf length), its EWMA mux, its scheduler state and
heap index, and its KIST socket-table entry (``limit``/``written``, ``None`` when the
channel has no entry). :class:`Pending` is ``channels_pending`` (``scheduler.c:166``) with
the transitions of ``scheduler.c:511-704``; every state change in Tor goes through
``scheduler_set_channel_state`` (``scheduler.c:385-392``), which here is a plain assignment.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

from kist_reference import heap as _heap
from kist_reference.ewma import Mux
from kist_reference.socket import cell_network_size


class SchedState(IntEnum):
    """``channel_t.scheduler_state`` (channel.h:273-293)."""

    IDLE = 0
    WAITING_FOR_CELLS = 1
    WAITING_TO_WRITE = 2
    PENDING = 3


IDLE, WAITING_FOR_CELLS, WAITING_TO_WRITE, PENDING = (
    SchedState.IDLE, SchedState.WAITING_FOR_CELLS, SchedState.WAITING_TO_WRITE, SchedState.PENDING)

# The run record's one-letter spelling (docs/trace-format.md, CHANS `state`).
STATE_LETTERS: dict[SchedState, str] = {IDLE: "I", WAITING_FOR_CELLS: "C", WAITING_TO_WRITE: "W", PENDING: "P"}
STATES_BY_LETTER: dict[str, SchedState] = {v: k for k, v in STATE_LETTERS.items()}


class Channel:
    __slots__ = ("chan_id", "open", "wide", "cell_size", "outbuf", "mux", "state", "heap_idx",
                 "limit", "written")

    def __init__(self, chan_id: int, mux: Mux | None = None, *, open_: bool = True, wide: bool = True,
                 outbuf: int = 0, state: SchedState = IDLE, limit: int | None = None,
                 written: int | None = None) -> None:
        self.chan_id = chan_id
        self.open = open_  # CHANNEL_IS_OPEN
        self.wide = wide  # wide_circ_ids
        self.cell_size = cell_network_size(wide)  # bytes one cell adds to the outbuf
        self.outbuf = outbuf  # connection_get_outbuf_len
        self.mux = mux if mux is not None else Mux()
        self.state = state
        self.heap_idx = -1  # sched_heap_idx
        self.limit = limit  # KIST socket table entry, None = no entry
        self.written = written

    def more_to_flush(self) -> bool:
        """``channel_more_to_flush`` (channel.c:1778-1787)."""
        return self.mux.n_cells + self.mux.destroy_q > 0

    def __repr__(self) -> str:
        return (f"Channel({self.chan_id}, state={self.state.name}, outbuf={self.outbuf}, "
                f"heap_idx={self.heap_idx}, open={self.open})")


def ewma_channel_lt(a: Channel, b: Channel) -> bool:
    """``scheduler_compare_channels(a, b) < 0`` (scheduler.c:402-439) with every channel on
    the EWMA policy: ``circuitmux_compare_muxes`` (circuitmux.c:1255-1290) ->
    ``ewma_cmp_cmux`` (circuitmux_ewma.c:399-444). Raw head counts, lower is better; a mux
    with an active circuit beats one without."""
    ha = a.mux.heap
    if not ha:
        return False
    hb = b.mux.heap
    return not hb or ha[0].count < hb[0].count


# channels_pending with the default comparator is the replay hot loop: heap.add/heap.pop with
# ewma_channel_lt inlined (same sift rules; tests/unit/model/test_channel_states.py checks it).


def fast_add(heap: list[Channel], item: Channel) -> None:
    idx = len(heap)
    heap.append(item)
    item.heap_idx = idx
    h = item.mux.heap
    if not h:
        return  # an empty mux is never "less" than anything: no sift
    count = h[0].count
    while idx:
        parent = (idx - 1) >> 1
        above = heap[parent]
        ph = above.mux.heap
        if ph and not count < ph[0].count:
            return
        heap[parent] = item
        heap[idx] = above
        item.heap_idx = parent
        above.heap_idx = idx
        idx = parent


def fast_pop(heap: list[Channel]) -> Channel:
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
        best = idx if ewma_channel_lt(cur, heap[left]) else left
        right = left + 1
        if right < n and ewma_channel_lt(heap[right], heap[best]):
            best = right
        if best == idx:
            return top
        other = heap[best]
        heap[idx] = other
        heap[best] = cur
        other.heap_idx = idx
        cur.heap_idx = best
        idx = best


class Pending:
    """``channels_pending`` plus the calls other subsystems make into the scheduler."""

    __slots__ = ("heap", "lt", "on_release")

    def __init__(self, lt: Callable[[Channel, Channel], bool] = ewma_channel_lt,
                 on_release: Callable[[Channel], None] | None = None) -> None:
        self.heap: list[Channel] = []
        self.lt = lt
        self.on_release = on_release

    def __len__(self) -> int:
        return len(self.heap)

    def ids(self) -> tuple[int, ...]:
        return tuple(c.chan_id for c in self.heap)

    def push(self, chan: Channel) -> None:
        """``smartlist_pqueue_add`` guarded by ``SCHED_BUG(sched_heap_idx != -1)``, as every
        caller in scheduler.c and scheduler_kist.c does."""
        if chan.heap_idx == -1:
            _heap.add(self.heap, self.lt, chan)

    def pop(self) -> Channel:
        return _heap.pop(self.heap, self.lt)

    def has_waiting_cells(self, chan: Channel) -> None:
        """scheduler.c:547-580: WAITING_FOR_CELLS -> PENDING (heap add); IDLE -> WAITING_TO_WRITE."""
        if chan.state == WAITING_FOR_CELLS:
            chan.state = PENDING
            self.push(chan)
        elif chan.state == IDLE:
            chan.state = WAITING_TO_WRITE

    def wants_writes(self, chan: Channel) -> None:
        """scheduler.c:672-704: WAITING_TO_WRITE -> PENDING (heap add); IDLE -> WAITING_FOR_CELLS."""
        if chan.state == WAITING_TO_WRITE:
            chan.state = PENDING
            self.push(chan)
        elif chan.state == IDLE:
            chan.state = WAITING_FOR_CELLS

    def doesnt_want_writes(self, chan: Channel) -> None:
        """scheduler.c:511-539: PENDING -> WAITING_TO_WRITE (heap remove); WAITING_FOR_CELLS -> IDLE.
        A PENDING channel that was popped has index -1: Tor would assert there; the model
        skips the removal and changes the state."""
        if chan.state == PENDING:
            if chan.heap_idx != -1:
                _heap.remove(self.heap, self.lt, chan)
            chan.state = WAITING_TO_WRITE
        elif chan.state == WAITING_FOR_CELLS:
            chan.state = IDLE

    def release(self, chan: Channel) -> None:
        """scheduler.c:633-664: out of the heap whatever the state, scheduler data freed
        (KIST: the socket-table entry), IDLE."""
        if chan.heap_idx != -1:
            _heap.remove(self.heap, self.lt, chan)
        if self.on_release is not None:
            self.on_release(chan)
        chan.state = IDLE

    def call(self, chan: Channel, name: str) -> None:
        """Apply one recorded external call (trace op ``x``)."""
        if name == "hw":
            self.has_waiting_cells(chan)
        elif name == "ww":
            self.wants_writes(chan)
        elif name == "dw":
            self.doesnt_want_writes(chan)
        elif name == "rel":
            self.release(chan)
        else:
            raise ValueError(f"unknown scheduler call {name!r}")
