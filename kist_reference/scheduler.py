"""Scheduler policies: KIST, KISTLite and Vanilla, as objects a researcher can subclass.

A policy runs one scheduler run over a :class:`RunState` and talks to the outside world
only through an :class:`Environment`: the environment supplies what Tor reads during a run
(the EWMA clock per cell, what the kernel took, calls from other subsystems) and is told
every decision as it is made. Replay's environment feeds a recorded run and compares; the
recorder's environment simulates a relay and writes the record.

Override points: :meth:`Policy.channel_lt` (the pending-heap comparator),
:meth:`KistPolicy.socket_limit` (the per-socket limit formula),
:meth:`KistPolicy.can_write`, :meth:`KistPolicy.should_write`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kist_reference import heap as _heap
from kist_reference import socket as _sock
from kist_reference.channel import (
    IDLE,
    PENDING,
    WAITING_FOR_CELLS,
    WAITING_TO_WRITE,
    Channel,
    Pending,
    ewma_channel_lt,
    fast_add,
    fast_pop,
)
from kist_reference.ewma import DESTROY, fraction
from kist_reference.trace import Fallback, SockError, SockRead, TcpInfo

MAX_CELLS_PER_FLUSH_CALL = 256  # channel.c:1714 MAX_CELLS_TO_GET_FROM_CIRCUITS_FOR_UNLIMITED
VANILLA_MAX_FLUSH_CELLS = 1000  # scheduler_vanilla.c:21

# cell_result() answers besides (tick, msec):
STALE = "e"  # the mux named a circuit whose queue is empty (relay.c:3185-3190)
FAILED = "y"  # writing the cell failed (relay.c:3236-3240)


class RunState:
    """What a scheduler run works on: the channels it can touch and ``channels_pending``."""

    __slots__ = ("channels", "pending", "scale_factor", "tick_len", "interval_ms", "sock_buf_factor",
                 "highwater", "no_kernel_support")

    def __init__(self, pending: Pending, *, scale_factor: float, tick_len: int, interval_ms: int = 2,
                 sock_buf_factor: float = 1.0, highwater: int = _sock.OR_CONN_HIGHWATER_DEFAULT,
                 no_kernel_support: bool = False) -> None:
        self.channels: dict[int, Channel] = {}
        self.pending = pending
        self.scale_factor = scale_factor  # ewma_scale_factor
        self.tick_len = tick_len  # ewma_tick_len
        self.interval_ms = interval_ms  # sched_run_interval
        self.sock_buf_factor = sock_buf_factor
        self.highwater = highwater  # or_conn_highwatermark()
        self.no_kernel_support = no_kernel_support


class Environment(Protocol):
    """Everything a run reads from outside the model, and every decision it announces."""

    def sync(self, st: RunState) -> None:
        """Apply calls from other subsystems that happened up to now (trace ops l, n, x)."""

    def pop(self, chan: Channel) -> None: ...
    def should_write(self, prev: Channel, outbuf: int, write: bool) -> None: ...
    def kernel_write(self, chan: Channel, before: int) -> int:
        """Write the outbuf to the kernel; return the outbuf length afterwards."""
    def can_write(self, chan: Channel, can: bool) -> None: ...
    def writeable(self, chan: Channel, cells: int) -> None: ...
    def cell_result(self, chan: Channel, circ_id: int, believed_empty: bool) -> tuple[int, int] | str:
        """One relay cell from ``circ_id``: (tick, msec) as the EWMA clock read them, or
        STALE (queue found empty) or FAILED (the write failed)."""
    def destroy(self, chan: Channel) -> bool:
        """One DESTROY cell from the destroy queue: True if written, False if the write failed (z)."""
    def outcome(self, chan: Channel, outcome: str) -> None: ...
    def end_write_order(self, st: RunState, chans: Sequence[Channel]) -> Sequence[Channel]:
        """The channels left in the outbuf table, in the order Tor's hash table walks them."""
    def end_write(self, chan: Channel, before: int) -> int:
        """One end-of-run ``channel_write_to_kernel``; return the outbuf length afterwards."""
    def finish(self, readd: Sequence[Channel], st: RunState) -> None:
        """After ``to_readd``: the run's last decisions (READD, FINAL, NEXT)."""


class Policy:
    """Shared parts: the comparator and flushing cells (channel.c, relay.c, circuitmux.c)."""

    name = "base"

    def channel_lt(self, a: Channel, b: Channel) -> bool:
        """``scheduler_compare_channels(a, b) < 0``."""
        return ewma_channel_lt(a, b)

    def make_pending(self) -> Pending:
        # Hand the heap the plain function unless a subclass overrides the comparator:
        # it is called on every sift step.
        lt = ewma_channel_lt if type(self).channel_lt is Policy.channel_lt else self.channel_lt
        return Pending(lt, on_release=self.on_channel_free)

    def on_channel_free(self, chan: Channel) -> None:
        """``scheduler_t.on_channel_free``: nothing for Vanilla."""

    def flush_some_cells(self, st: RunState, env: Environment, chan: Channel, num_cells: int) -> int:
        """``channel_flush_some_cells`` (channel.c:1735-1770)."""
        if num_cells <= 0 or not chan.open:
            return 0
        env.sync(st)  # cells queued while the previous call's last cell was sent (below)
        mux = chan.mux
        if mux.n_cells + mux.destroy_q <= 0:
            return 0
        return self.flush_from_first_active_circuit(
            st, env, chan, MAX_CELLS_PER_FLUSH_CALL if num_cells > MAX_CELLS_PER_FLUSH_CALL else num_cells)

    def flush_from_first_active_circuit(self, st: RunState, env: Environment, chan: Channel, limit: int) -> int:
        """``channel_flush_from_first_active_circuit`` (relay.c:3114-3273).

        Sending a cell can queue more on this channel before the loop picks the next circuit:
        a circuit whose queue falls to the low-water mark unblocks its streams (relay.c:3269),
        ``connection_start_reading`` processes what is already in their inbufs
        (mainloop.c), and the packaged cells reach this mux (relay.c:3453, the recorded
        ``hw``). So each pick first applies the calls recorded since the last cell, and
        reads the mux again (a snapshot replaces it)."""
        f = st.scale_factor
        n = 0
        while n < limit:
            env.sync(st)
            mux = chan.mux
            circ = mux.pick()
            if circ is DESTROY:
                mux.sent_destroy()  # popped from the destroy queue whether or not the write works
                if env.destroy(chan):
                    chan.outbuf += chan.cell_size
                    n += 1
                continue  # a failed write: freed, channel marked for close (relay.c:3145-3149)
            if circ is None or isinstance(circ, str):
                break
            r = env.cell_result(chan, circ.circ_id, circ.queue <= 0)
            if r == STALE:
                circ.queue = 0
                mux.set_num_cells(f, circ, 0)
                continue
            if r == FAILED:
                circ.queue -= 1
                continue
            assert isinstance(r, tuple)
            chan.outbuf += chan.cell_size
            n += 1
            mux.sent_cell(f, circ, r[0], fraction(r[1], st.tick_len))
        return n

    def run(self, st: RunState, env: Environment) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def next_run_us(self, st: RunState, diff_ms: int) -> int:
        """What ``schedule()`` after the run does: -1 no work, 0 at once, else the delay (µs)."""
        return -1 if not st.pending.heap else 0


class KistPolicy(Policy):
    """``kist_scheduler_run`` (scheduler_kist.c:600-772) and its schedule() (563-597)."""

    name = "KIST"
    lite = False

    def on_channel_free(self, chan: Channel) -> None:
        """``kist_on_channel_free_fn`` (514-519): the socket-table entry goes."""
        chan.limit = None
        chan.written = None

    # --- per-socket limit ------------------------------------------------------------
    def socket_limit(self, st: RunState, chan: Channel, read: SockRead) -> int:
        """``update_socket_info_impl`` (199-325) from what the syscalls returned. KISTLite and
        a known lack of kernel support skip the syscalls (211-213): a TCP_INFO read in the
        record then cannot have come from Tor, and the fallback limit shows it."""
        if isinstance(read, TcpInfo) and not self.lite and not st.no_kernel_support:
            return _sock.kist_limit(read.cwnd, read.unacked, read.mss, read.notsent, chan.outbuf,
                                    st.sock_buf_factor)
        if isinstance(read, SockError) and read.errno == _sock.EINVAL:
            st.no_kernel_support = True
        return self.fallback_limit(st, chan)

    def fallback_limit(self, st: RunState, chan: Channel) -> int:
        return _sock.fallback_limit(chan.open, chan.outbuf, chan.wide, st.highwater)

    def sock_read_kind(self, st: RunState) -> SockRead | None:
        """None when the syscalls are made; Fallback when KISTLite/no-kernel-support skips them."""
        return Fallback() if (self.lite or st.no_kernel_support) else None

    def can_write(self, chan: Channel) -> bool:
        """``socket_can_write`` (389-406); see :func:`kist_reference.socket.can_write`."""
        limit = chan.limit
        if limit is None or chan.written is None:
            return True
        room = (limit - chan.written) & 0xFFFFFFFFFFFFFFFF
        return not room >> 63 and room >= _sock.CELL_CHARGE

    def should_write(self, chan: Channel) -> bool:
        """``channel_should_write_to_kernel`` (461-468): more than 8 cells' worth."""
        return chan.outbuf > _sock.SHOULD_WRITE_THRESHOLD

    def write_to_kernel(self, env: Environment, chan: Channel) -> None:
        """``channel_write_to_kernel`` (472-494): nothing to do on an empty outbuf."""
        if chan.outbuf:
            chan.outbuf = env.kernel_write(chan, chan.outbuf)

    # --- the run ---------------------------------------------------------------------
    def run(self, st: RunState, env: Environment) -> None:
        pending = st.pending
        cp = pending.heap
        lt = pending.lt
        table: dict[Channel, None] = {}  # outbuf_table: membership only; the end order is an input
        to_readd: list[Channel] = []
        prev: Channel | None = None
        can_write = self.can_write
        charge = _sock.CELL_CHARGE
        fast = lt is ewma_channel_lt
        while True:
            env.sync(st)
            if not cp:
                break
            chan = fast_pop(cp) if fast else _heap.pop(cp, lt)  # 626
            env.pop(chan)
            table[chan] = None  # outbuf_table_add, 634
            if prev is None:  # 638-647: switching channels may write the previous outbuf
                prev = chan
            if prev is not chan:
                table[prev] = None
                write = self.should_write(prev)
                env.should_write(prev, prev.outbuf, write)
                if write:
                    self.write_to_kernel(env, prev)
                    del table[prev]
                prev = chan
            can = can_write(chan)  # 650
            env.can_write(chan, can)
            if can:
                # channel_flush_some_cells(chan, 1) (channel.c:1735-1770), inlined
                mux = chan.mux
                if chan.open and mux.n_cells + mux.destroy_q > 0:
                    flushed = self.flush_from_first_active_circuit(st, env, chan, 1)
                else:
                    flushed = 0
                env.sync(st)
                if not chan.open:  # #23751, 659-664
                    chan.state = IDLE
                    env.outcome(chan, "closed")
                    continue
                if flushed > 0:
                    if chan.written is not None:
                        chan.written = (chan.written + flushed * charge) & 0xFFFFFFFFFFFFFFFF
                else:  # 669-685
                    chan.state = WAITING_FOR_CELLS
                    env.outcome(chan, "empty")
                    continue
            mux = chan.mux  # the four cases, 690-740
            if mux.n_cells + mux.destroy_q <= 0:
                chan.state = WAITING_FOR_CELLS
                env.outcome(chan, "2" if can_write(chan) else "1")
            elif not can_write(chan):
                to_readd.append(chan)
                env.outcome(chan, "3")
            else:
                chan.state = PENDING
                if chan.heap_idx == -1:
                    if fast:
                        fast_add(cp, chan)
                    else:
                        _heap.add(cp, lt, chan)
                env.outcome(chan, "4")
        for chan in env.end_write_order(st, list(table)):  # HT_FOREACH_FN, 744-748
            chan.outbuf = env.end_write(chan, chan.outbuf)
        env.sync(st)  # calls made by the last end-of-run write, before to_readd
        for chan in to_readd:  # 755-769
            chan.state = PENDING
            if chan.heap_idx == -1 and not any(c is chan for c in cp):
                _heap.add(cp, lt, chan)
        env.finish(to_readd, st)

    def next_run_us(self, st: RunState, diff_ms: int) -> int:
        """``kist_scheduler_schedule`` (563-597)."""
        if not st.pending.heap:
            return -1
        diff = max(diff_ms, 0)
        if diff < st.interval_ms:
            return int((st.interval_ms - diff) * 1000)
        return 0


class KistLitePolicy(KistPolicy):
    """KIST without kernel support (``scheduler_kist_set_lite_mode``, 836-843)."""

    name = "KISTLite"
    lite = True


class VanillaPolicy(Policy):
    """``vanilla_scheduler_run`` (scheduler_vanilla.c:51-146): runs at once, no kernel writes."""

    name = "Vanilla"

    def writeable(self, st: RunState, chan: Channel) -> int:
        return _sock.num_cells_writeable(chan.open, chan.outbuf, chan.wide, st.highwater)

    def run(self, st: RunState, env: Environment) -> None:
        pending = st.pending
        cp = pending.heap
        lt = pending.lt
        to_readd: list[Channel] = []
        while True:
            env.sync(st)
            if not cp:
                break
            chan = _heap.pop(cp, lt)
            env.pop(chan)
            n_cells = self.writeable(st, chan)
            env.writeable(chan, n_cells)
            if n_cells > 0:
                flushed = 0
                while flushed < n_cells:
                    now = self.flush_some_cells(st, env, chan, min(VANILLA_MAX_FLUSH_CELLS, n_cells - flushed))
                    if now <= 0:
                        break
                    flushed += now
                env.sync(st)
                if flushed < n_cells:
                    chan.state = WAITING_FOR_CELLS
                    env.outcome(chan, "short")
                elif chan.more_to_flush():
                    if self.writeable(st, chan) > 0:
                        to_readd.append(chan)
                        env.outcome(chan, "readd")
                    else:
                        chan.state = WAITING_TO_WRITE
                        env.outcome(chan, "wtw")
                elif self.writeable(st, chan) > 0:
                    chan.state = WAITING_FOR_CELLS
                    env.outcome(chan, "wfc")
                else:
                    chan.state = IDLE
                    env.outcome(chan, "idle")
            else:
                chan.state = WAITING_TO_WRITE
                env.outcome(chan, "none")
        for chan in to_readd:
            chan.state = PENDING
            _heap.add(cp, lt, chan)
        env.finish(to_readd, st)


KIST_RUN_INTERVAL_DEFAULT, KIST_RUN_INTERVAL_MIN, KIST_RUN_INTERVAL_MAX = 2, 2, 100  # scheduler.h:104-109


def kist_run_interval(torrc_ms: int = 0, consensus: int | None = None) -> int:
    """``kist_scheduler_run_interval`` (scheduler_kist.c:807-833): a non-zero torrc
    ``KISTSchedRunInterval`` wins; else the consensus ``KISTSchedRunInterval`` (relays) or
    ``KISTSchedRunIntervalClient``, clamped to [2, 100] by ``networkstatus_get_param``, so
    since #40808 the consensus can no longer turn KIST off (the comment at 803 says 0 can)."""
    if torrc_ms != 0:
        return torrc_ms
    if consensus is None:
        return KIST_RUN_INTERVAL_DEFAULT
    return min(max(consensus, KIST_RUN_INTERVAL_MIN), KIST_RUN_INTERVAL_MAX)


def select_scheduler(types: Sequence[str] = ("KIST", "KISTLite", "Vanilla"), *, kernel_support: bool = True,
                     run_interval: int = KIST_RUN_INTERVAL_DEFAULT) -> str:
    """``select_scheduler`` (scheduler.c:231-300) over the ``Schedulers`` list: the first usable
    type; KIST needs kernel support and a positive run interval (``scheduler_can_use_kist``,
    scheduler_kist.c:858-873)."""
    for name in types:
        if name == "KIST" and not (kernel_support and run_interval > 0):
            continue
        if name in ("KIST", "KISTLite", "Vanilla"):
            return name
        raise ValueError(f"unknown scheduler type {name!r}")
    raise ValueError("no usable scheduler in the list (Tor exits: scheduler.c:296-300)")


POLICIES: dict[str, type[Policy]] = {"KIST": KistPolicy, "KISTLite": KistLitePolicy, "Vanilla": VanillaPolicy}
