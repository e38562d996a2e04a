"""The paper's intent: Algorithm 1 of "Tor's Been KIST" with fresh, global priorities.

Two uses:

- :class:`IdealPolicy` runs Algorithm 1 on a model state (with the recorder or any
  environment): each step it takes, among all pending sockets, the one holding the globally
  best circuit (every circuit's EWMA rescaled to a common tick, the true minimum rather than
  a heap head), flushes one cell from that circuit and writes the outbuf to the kernel.
- :func:`ideal_distance` walks Tor's recorded decisions (faithful replay) and, for every
  relay cell Tor sent, asks whether a strictly better circuit was waiting: on another
  pending channel that could still write, or in the same mux (a broken heap). That is the
  "distance from the paper" of a trace.

Where Tor 0.4.9.11's code departs from Algorithm 1 (each is a reason the two disagree):

1. Stale keys: ``channels_pending`` is ordered by each mux's head count when the channel
   was pushed; cells arriving between runs change heads without a re-sift
   (smartlist.c:726-800, scheduler.c:547-580). The paper's priorityPop sees live priority.
2. Raw cross-mux comparison: ``ewma_cmp_cmux`` (circuitmux_ewma.c:399-444) compares counts
   that are relative to each mux's own recalibration tick (circuitmux_ewma.c:650-673), so
   a mux that has not sent for ticks looks louder than it is.
3. Heap removal sifts down only (smartlist.c:779-798): a mux's or the pending heap's
   property can break, so the head is not always the minimum.
4. Ties are broken by array layout (smartlist.c:698-704), not by any priority.
5. The limit adds ``-outbuf`` and scales extra space by ``KISTSockBufSizeFactor``
   (scheduler_kist.c:282-304) where the paper has ``2*cwnd*mss - una*mss - notsent``.
6. Writes to the kernel happen only when switching away from a channel whose outbuf holds
   more than 8 cells, and at the end of the run (scheduler_kist.c:461-468, 636-647,
   744-748); Algorithm 1 writes after every cell (its footnote 3 already relaxes this).
7. A pending channel whose limit is already reached is still popped, not flushed, and put
   in ``to_readd`` (scheduler_kist.c:650, 716-730); Algorithm 1 flushes every popped socket.
8. ``socket_can_write`` needs room for a whole 543-byte cell and charges 543 bytes even for
   512-byte cells (scheduler_kist.c:402-405, 667-668).
9. Destroy cells bypass EWMA and alternate with relay cells (circuitmux.c:1061-1096).
10. The run interval is 2 ms by default (scheduler.h:104-109, #40808), the paper's 10 ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kist_reference import heap as _heap
from kist_reference import socket as _sock
from kist_reference.channel import PENDING, WAITING_FOR_CELLS, Channel
from kist_reference.ewma import (
    DESTROY,
    Circuit,
    Mux,
    c_pow,
    count_lt,
    fraction,
    scale_factor_between,
)
from kist_reference.replay import Divergence, ReplayEnv, RunResult, _Diverged, build_state
from kist_reference.scheduler import (
    FAILED,
    POLICIES,
    STALE,
    Environment,
    KistPolicy,
    Policy,
    RunState,
)
from kist_reference.trace import RunRecord


def fresh(f: float, mux: Mux, c: Circuit, tick: int) -> float:
    """``c``'s EWMA as of the start of ``tick``: comparable across muxes."""
    return c.count * scale_factor_between(f, c.tick, tick)


def best_circuit(f: float, mux: Mux, tick: int) -> tuple[float, Circuit] | None:
    """The true minimum of a mux's active circuits (not its heap head)."""
    best: tuple[float, Circuit] | None = None
    for c in mux.heap:
        v = fresh(f, mux, c, tick)
        if best is None or v < best[0]:
            best = (v, c)
    return best


# --------------------------------------------------------------------------- distance


@dataclass(slots=True)
class IdealDistance:
    """How far a trace's decisions are from Algorithm 1."""

    cells: int = 0  # relay cells Tor sent (that replay reached)
    cross_channel: int = 0  # ... while a strictly better circuit waited on another writable pending channel
    intra_mux: int = 0  # ... while a strictly better circuit waited in the same mux
    firsts: list[Divergence] = field(default_factory=list)  # first departure per run

    @property
    def inversions(self) -> int:
        return self.cross_channel + self.intra_mux

    def share(self) -> float:
        return self.inversions / self.cells if self.cells else 0.0

    def add(self, other: IdealDistance) -> None:
        self.cells += other.cells
        self.cross_channel += other.cross_channel
        self.intra_mux += other.intra_mux
        self.firsts.extend(other.firsts)


class _DistanceEnv(ReplayEnv):
    def __init__(self, rec: RunRecord, policy: Policy, dist: IdealDistance) -> None:
        super().__init__(rec, policy)
        self.dist = dist
        self.first: Divergence | None = None

    def cell_result(self, chan: Channel, circ_id: int, believed_empty: bool) -> tuple[int, int] | str:
        r = super().cell_result(chan, circ_id, believed_empty)
        if isinstance(r, tuple) and self.st is not None:
            self._judge(self.st, chan, chan.mux.heap[0], r[0])
        return r

    def _judge(self, st: RunState, chan: Channel, sent: Circuit, tick: int) -> None:
        f = st.scale_factor
        d = self.dist
        d.cells += 1
        v = fresh(f, chan.mux, sent, tick)
        own = best_circuit(f, chan.mux, tick)
        other: tuple[float, Circuit, Channel] | None = None
        for c in st.pending.heap:
            if c is chan or not _sock.can_write(c.limit, c.written):
                continue
            b = best_circuit(f, c.mux, tick)
            if b is not None and (other is None or b[0] < other[0]):
                other = (b[0], b[1], c)
        better: str | None = None
        if other is not None and other[0] < v:
            d.cross_channel += 1
            better = f"circuit {other[1].circ_id} on channel {other[2].chan_id} (fresh EWMA {other[0]!r})"
        elif own is not None and own[0] < v:
            d.intra_mux += 1
            better = f"circuit {own[1].circ_id} on the same channel (fresh EWMA {own[0]!r})"
        if better is not None and self.first is None:
            self.first = Divergence(
                self.rec.run, self.decisions - 1, self.i - 1, "ideal circuit",
                f"circuit {sent.circ_id} on channel {chan.chan_id} (fresh EWMA {v!r}, raw {sent.count!r})",
                better, (f"tick {tick}; the paper's priorityPop takes the globally best circuit",))


def ideal_distance(rec: RunRecord) -> tuple[RunResult, IdealDistance]:
    """Faithful replay of ``rec`` that also measures each sent cell against the ideal choice."""
    dist = IdealDistance()
    pol = POLICIES[rec.sched]()
    env = _DistanceEnv(rec, pol, dist)
    try:
        st = build_state(rec, pol, env)
        pol.run(st, env)
        result = RunResult(rec.run, rec.sched, env.decisions, None)
    except _Diverged as exc:
        result = RunResult(rec.run, rec.sched, env.decisions + 1, exc.div)
    if env.first is not None:
        dist.firsts.append(env.first)
    return result, dist


# --------------------------------------------------------------------------- the policy


class IdealPolicy(KistPolicy):
    """Algorithm 1: global best circuit each time, write after every cell, fresh priorities.

    Uses the same limit and environment as KIST so its runs can be recorded and compared.
    """

    name = "ideal"

    def run(self, st: RunState, env: Environment) -> None:
        e = env
        f = st.scale_factor
        pending = st.pending
        todo: list[Channel] = []
        to_readd: list[Channel] = []
        while True:
            e.sync(st)
            while pending.heap:  # take over anything pushed into channels_pending
                c = _heap.pop(pending.heap, pending.lt)
                if c not in todo:
                    todo.append(c)
            if not todo:
                break
            base = todo[0].mux.recal  # the newest tick among the muxes, unsigned wrap-aware
            ref = max((c.mux.recal for c in todo), key=lambda r: ((r - base + 2**31) & 0xFFFFFFFF))
            chan = min(todo, key=lambda c: self._key(f, c, ref))
            todo.remove(chan)
            e.pop(chan)
            can = self.can_write(chan)
            e.can_write(chan, can)
            if can:
                flushed = self._flush_best(st, e, chan, ref)
                if flushed and chan.written is not None:
                    chan.written = (chan.written + flushed * _sock.CELL_CHARGE) & 0xFFFFFFFFFFFFFFFF
                self.write_to_kernel(e, chan)
            more = chan.more_to_flush()
            if more and self.can_write(chan):
                chan.state = PENDING
                todo.append(chan)
                e.outcome(chan, "4")
            elif more:
                to_readd.append(chan)
                e.outcome(chan, "3")
            else:
                chan.state = WAITING_FOR_CELLS
                e.outcome(chan, "2" if self.can_write(chan) else "1")
        for chan in e.end_write_order(st, []):
            chan.outbuf = e.end_write(chan, chan.outbuf)
        e.sync(st)
        for chan in to_readd:
            chan.state = PENDING
            pending.push(chan)
        e.finish(to_readd, st)

    @staticmethod
    def _key(f: float, chan: Channel, ref: int) -> tuple[int, float, int]:
        b = best_circuit(f, chan.mux, ref)
        return (0, b[0], chan.chan_id) if b is not None else (1, 0.0, chan.chan_id)

    def _flush_best(self, st: RunState, e: Environment, chan: Channel, ref: int) -> int:
        mux = chan.mux
        f = st.scale_factor
        pick = mux.pick()
        if pick is DESTROY:
            mux.sent_destroy()
            e.destroy(chan)
            chan.outbuf += chan.cell_size
            return 1
        b = best_circuit(f, mux, ref)
        if b is None:
            return 0
        circ = b[1]
        r = e.cell_result(chan, circ.circ_id, circ.queue <= 0)
        if r in (STALE, FAILED) or not isinstance(r, tuple):
            return 0
        chan.outbuf += chan.cell_size
        circ.queue -= 1
        circ.qlen -= 1
        mux.n_cells -= 1
        if r[0] != mux.recal:
            mux.rescale(f, r[0])
        circ.count += c_pow(f, -fraction(r[1], st.tick_len))
        _heap.remove(mux.heap, count_lt, circ)
        if circ.qlen > 0:
            _heap.add(mux.heap, count_lt, circ)
        return 1

