"""A "fake Tor": runs the model on a small simulated relay and writes run records.

Until the patched Tor produces real records, tests and the benchmark need records whose
every decision is known to be the model's. :class:`SimRelay` keeps channels, circuits,
sockets and clocks across runs, lets cells arrive and kernels drain between runs (which
makes stale heap keys and EWMA tick crossings happen as on a relay), and records each run
exactly as the patch would: start snapshots, syscall results, steps, end writes.

Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

from kist_reference import socket as _sock
from kist_reference.channel import STATE_LETTERS, WAITING_FOR_CELLS, Channel
from kist_reference.ewma import EwmaClock, EwmaConfig, Mux
from kist_reference.scheduler import POLICIES, KistPolicy, Policy, RunState
from kist_reference.trace import (
    FORMAT_VERSION,
    CanWrite,
    CellFlush,
    ChannelSnapshot,
    DestroyFailed,
    DestroyFlush,
    EndWrite,
    External,
    HeapEntry,
    KernelWrite,
    LeftOpen,
    MuxSnapshot,
    Outcome,
    Params,
    Pop,
    RunRecord,
    ShouldWrite,
    Snapshot,
    SockError,
    SockRead,
    Step,
    TcpInfo,
    Writeable,
)


def snapshot(chan: Channel) -> ChannelSnapshot:
    """The record's view of a channel, mux heap in array order."""
    m = chan.mux
    heap = tuple(HeapEntry(c.circ_id, c.count, c.tick, c.qlen) for c in m.heap)
    return ChannelSnapshot(chan.chan_id, chan.open, chan.wide, chan.outbuf, chan.limit, chan.written,
                           STATE_LETTERS[chan.state], MuxSnapshot(m.n_cells, m.destroy_q, m.last_destroy, m.recal, heap))


class _Sock:
    __slots__ = ("cwnd", "unacked", "mss", "notsent")

    def __init__(self, rng: random.Random) -> None:
        self.cwnd = rng.randint(2, 40)
        self.unacked = rng.randint(0, self.cwnd + 2)
        self.mss = rng.choice((1448, 1460, 536, 8948))
        self.notsent = rng.randint(0, 4) * 1448


class RecordingEnv:
    """The simulated outside world of one run; it writes down what the model decides."""

    def __init__(self, sim: SimRelay, st: RunState) -> None:
        self.sim = sim
        self.st = st
        self.steps: list[Step] = []
        self.snaps: list[ChannelSnapshot] = []
        self.readd: tuple[int, ...] = ()

    def sync(self, st: RunState) -> None:
        pass

    def pop(self, chan: Channel) -> None:
        self.steps.append(Pop(chan.chan_id))

    def should_write(self, prev: Channel, outbuf: int, write: bool) -> None:
        self.steps.append(ShouldWrite(prev.chan_id, outbuf, write))

    def kernel_write(self, chan: Channel, before: int) -> int:
        after = self.sim.kernel_take(chan, before)
        self.steps.append(KernelWrite(chan.chan_id, before, after))
        chan.outbuf = after  # connection_or_flushed_some runs after the bytes left the outbuf
        self.sim.after_kernel_write(self, chan, after)
        return after

    def can_write(self, chan: Channel, can: bool) -> None:
        self.steps.append(CanWrite(chan.chan_id, can))

    def writeable(self, chan: Channel, cells: int) -> None:
        self.steps.append(Writeable(chan.chan_id, cells))

    def cell_result(self, chan: Channel, circ_id: int, believed_empty: bool) -> tuple[int, int] | str:
        tick, msec = self.sim.cell_clock()
        self.steps.append(CellFlush(chan.chan_id, circ_id, tick, msec))
        return tick, msec

    def destroy(self, chan: Channel) -> bool:
        self.steps.append(DestroyFlush(chan.chan_id))
        return True

    def outcome(self, chan: Channel, outcome: str) -> None:
        self.steps.append(Outcome(chan.chan_id, outcome))

    def end_write_order(self, st: RunState, chans: Sequence[Channel]) -> Sequence[Channel]:
        # Any fixed order will do: replay takes the order from the record.
        return sorted(chans, key=lambda c: (c.chan_id * 2654435761) & 0xFFFFFFFF)

    def end_write(self, chan: Channel, before: int) -> int:
        after = self.sim.kernel_take(chan, before) if before else 0
        self.steps.append(EndWrite(chan.chan_id, before, after))
        return after

    def finish(self, readd: Sequence[Channel], st: RunState) -> None:
        self.readd = tuple(c.chan_id for c in readd)

    def external(self, st: RunState, chan: Channel, call: str) -> None:
        """A call from another subsystem during the run: snapshot, then the call, as the patch records it."""
        self.steps.append(Snapshot(len(self.sim.run_snaps) + len(self.snaps)))
        self.snaps.append(snapshot(chan))
        self.steps.append(External(chan.chan_id, call))
        st.pending.call(chan, call)


class ScriptedEnv(RecordingEnv):
    """A hand-driven world for scenarios: a fixed EWMA clock, a kernel that takes ``take``
    bytes per write (all by default), no calls from other subsystems unless queued with
    :meth:`after_write`. Decisions land in ``steps`` as trace steps."""

    def __init__(self, st: RunState, *, tick: int = 0, msec: int = 0, take: int | None = None) -> None:
        self.st = st
        self.steps = []
        self.snaps = []
        self.readd = ()
        self.tick = tick
        self.msec = msec
        self.take = take
        self.on_write: dict[int, list[tuple[str, int]]] = {}
        self.final: tuple[int, ...] = ()

    def after_write(self, chan_id: int, call: str, target: int | None = None) -> None:
        """Make the next kernel write of ``chan_id`` trigger ``call`` ("hw", "ww", "dw", "rel")
        on channel ``target`` (default: the written channel itself)."""
        self.on_write.setdefault(chan_id, []).append((call, chan_id if target is None else target))

    def _take(self, before: int) -> int:
        return 0 if self.take is None else max(0, before - self.take)

    def kernel_write(self, chan: Channel, before: int) -> int:
        after = self._take(before)
        self.steps.append(KernelWrite(chan.chan_id, before, after))
        chan.outbuf = after
        for call, target in self.on_write.pop(chan.chan_id, []):
            other = self.st.channels[target]
            if call == "rel":
                other.open = False
                self.steps.append(LeftOpen(target))
            self.steps.append(External(target, call))
            self.st.pending.call(other, call)
        return after

    def cell_result(self, chan: Channel, circ_id: int, believed_empty: bool) -> tuple[int, int] | str:
        self.steps.append(CellFlush(chan.chan_id, circ_id, self.tick, self.msec))
        return self.tick, self.msec

    def end_write_order(self, st: RunState, chans: Sequence[Channel]) -> Sequence[Channel]:
        return sorted(chans, key=lambda c: c.chan_id)

    def end_write(self, chan: Channel, before: int) -> int:
        after = self._take(before)
        self.steps.append(EndWrite(chan.chan_id, before, after))
        return after

    def finish(self, readd: Sequence[Channel], st: RunState) -> None:
        self.readd = tuple(c.chan_id for c in readd)
        self.final = st.pending.ids()

    @property
    def end(self) -> list[EndWrite]:
        """The end-of-run kernel writes (W steps)."""
        return [s for s in self.steps if type(s) is EndWrite]

    def ops(self) -> list[str]:
        """The run loop's steps in wire spelling, for compact assertions (W steps: see ``end``)."""
        out = []
        for s in self.steps:
            if type(s) is EndWrite:
                continue
            op = {Pop: "p", ShouldWrite: "s", KernelWrite: "w", CanWrite: "c", Writeable: "v", CellFlush: "f",
                  DestroyFlush: "d", Outcome: "k", External: "x", LeftOpen: "l", Snapshot: "n",
                  EndWrite: "W", DestroyFailed: "z"}[type(s)]
            out.append(":".join([op, *(str(int(v)) if isinstance(v, bool) else str(v) for v in s)]))
        return out


class SimRelay:
    """A relay with ``n_channels`` channels, each with a few circuits, driven run after run."""

    def __init__(self, seed: int = 0, n_channels: int = 8, sched: str = "KIST", *, circuits_per_channel: int = 4,
                 tick_len: int = 1, interval_ms: int = 2, policy: Policy | None = None,
                 load: float = 1.0, sock_errors: bool = True, closes: bool = True) -> None:
        self.rng = random.Random(seed)
        self.sched = sched
        self.policy = policy if policy is not None else POLICIES[sched]()
        self.cfg = EwmaConfig.from_options(consensus_tick_secs=tick_len)
        self.load = load
        self.sock_errors = sock_errors
        self.closes = closes
        self.now_ms = 1_000_000
        start_tick = self.rng.getrandbits(32)  # Tor starts the tick counter at a random value
        self.clock = EwmaClock(self.now_ms, start_tick, self.cfg.tick_len)
        self.st = RunState(self.policy.make_pending(), scale_factor=self.cfg.scale_factor,
                           tick_len=self.cfg.tick_len, interval_ms=interval_ms)
        self.socks: dict[int, _Sock] = {}
        self.run_no = 0
        self.run_snaps: list[ChannelSnapshot] = []
        next_circ = 1 << 31
        for i in range(n_channels):
            cid = 100 + 7 * i
            mux = Mux(recal=start_tick)
            for _ in range(circuits_per_channel):
                mux.attach(next_circ, start_tick)
                next_circ += 1
            chan = Channel(cid, mux, wide=self.rng.random() > 0.1, state=WAITING_FOR_CELLS)
            self.st.channels[cid] = chan
            self.socks[cid] = _Sock(self.rng)

    # --- the world between and during runs -------------------------------------------------
    def cell_clock(self) -> tuple[int, int]:
        if self.rng.random() < 0.05:
            self.now_ms += self.rng.randint(1, 40)
        return self.clock.read(self.now_ms)

    def kernel_take(self, chan: Channel, before: int) -> int:
        took = min(before, self.rng.choice((0, 1448, 4096, 8192, 65536)))
        return before - took

    def after_kernel_write(self, env: RecordingEnv, chan: Channel, after: int) -> None:
        """connection_or_flushed_some -> wants_writes; now and then a connection dies."""
        if self.closes and self.rng.random() < 0.01:
            chan.open = False
            env.steps.append(LeftOpen(chan.chan_id))
            env.external(self.st, chan, "rel")
        elif after < _sock.OR_CONN_LOWWATER_DEFAULT:
            env.external(self.st, chan, "ww")

    def between_runs(self) -> None:
        """Time passes: kernels drain outbufs, cells arrive on circuits, dead channels reopen."""
        rng = self.rng
        st = self.st
        self.now_ms += rng.randint(1, 30)
        f = st.scale_factor
        for chan in st.channels.values():
            if not chan.open:
                chan.open = True
                chan.outbuf = 0
                st.pending.wants_writes(chan)
                continue
            if chan.outbuf and rng.random() < 0.7:
                chan.outbuf = self.kernel_take(chan, chan.outbuf)
                if chan.outbuf < _sock.OR_CONN_LOWWATER_DEFAULT:
                    st.pending.wants_writes(chan)
            s = self.socks[chan.chan_id]
            s.unacked = max(0, min(s.cwnd + 2, s.unacked + rng.randint(-6, 4)))
            s.cwnd = max(1, s.cwnd + rng.randint(-2, 3))
            s.notsent = rng.randint(0, 3) * s.mss
            if rng.random() < 0.3 * self.load:
                circs = list(chan.mux.circuits.values())
                circ = rng.choice(circs)
                chan.mux.append_cells(f, circ, rng.randint(1, 12))
                if rng.random() < 0.05:
                    chan.mux.destroy_q += 1
                st.pending.has_waiting_cells(chan)
        self.clock.read(self.now_ms)

    def sock_read(self, chan: Channel) -> SockRead:
        kind = self.policy.sock_read_kind(self.st) if isinstance(self.policy, KistPolicy) else None
        if kind is not None:
            return kind
        if self.sock_errors and self.rng.random() < 0.01:
            return SockError(self.rng.choice((9, 104)))  # EBADF / ECONNRESET, not EINVAL
        s = self.socks[chan.chan_id]
        return TcpInfo(s.cwnd, s.unacked, s.mss, s.notsent)

    # --- one run -----------------------------------------------------------------------------
    def run(self) -> RunRecord:
        """One scheduler run, recorded; call :meth:`between_runs` in between."""
        st = self.st
        self.run_no += 1
        t0 = self.now_ms * 1_000_000
        p = Params(st.interval_ms, st.sock_buf_factor, st.no_kernel_support, st.highwater, st.scale_factor,
                   st.tick_len)
        reads: list[SockRead] = []
        if self.sched != "Vanilla":
            for chan in st.pending.heap:
                read = self.sock_read(chan)
                reads.append(read)
                assert isinstance(self.policy, KistPolicy)
                chan.limit = self.policy.socket_limit(st, chan, read)
                chan.written = 0
        n_pending = len(st.pending.heap)
        self.run_snaps = [snapshot(c) for c in st.pending.heap]
        env = RecordingEnv(self, st)
        self.policy.run(st, env)
        next_us = self.policy.next_run_us(st, 0)
        t1 = self.now_ms * 1_000_000 + 500_000
        return RunRecord(
            version=FORMAT_VERSION, run=self.run_no, sched=self.sched, t0_ns=t0,
            ti_ns=t0 + 1000 if self.sched != "Vanilla" else t0, t1_ns=t1, params=p, n_pending=n_pending,
            snapshots=(*self.run_snaps, *env.snaps), sock=tuple(reads), steps=tuple(env.steps),
            readd=env.readd, final=st.pending.ids(), diff_ms=0, next_us=next_us,
        )

    def records(self, n_runs: int) -> Iterator[RunRecord]:
        for _ in range(n_runs):
            self.between_runs()
            if self.st.pending.heap:
                yield self.run()


def synthetic_records(seed: int, n_runs: int, sched: str = "KIST", **kw: object) -> list[RunRecord]:
    """``n_runs`` simulated scheduler runs (runs with nothing pending are skipped)."""
    sim = SimRelay(seed, sched=sched, **kw)  # type: ignore[arg-type]
    return list(sim.records(n_runs))



def write_examples(directory: str) -> list[str]:
    """(Re)write the example records shipped in ``tests/data``: passing runs of each
    scheduler (JSON lines and wire lines), one divergent file, one malformed file."""
    import dataclasses
    import json
    from pathlib import Path

    from kist_reference.trace import CellFlush, to_wire, write_records

    out = Path(directory)
    recs = (synthetic_records(14, 16, "KIST", n_channels=5, load=4.0)
            + synthetic_records(12, 6, "KISTLite", n_channels=4)
            + synthetic_records(13, 6, "Vanilla", n_channels=4))
    recs = [dataclasses.replace(r, run=i + 1) for i, r in enumerate(recs)]
    write_records(out / "example-runs.jsonl", recs)
    with open(out / "example-events.txt", "w", encoding="utf-8") as fh:
        fh.write("# KIST_RUN control-port event lines, as the patched Tor emits them (docs/trace-format.md)\n")
        for r in recs[:5]:
            fh.write("650 " + to_wire(r) + "\n")
    # Divergent: in the first run with enough cells, Tor "sent" the 4th cell from another circuit.
    for r in recs:
        flushes = [i for i, s in enumerate(r.steps) if isinstance(s, CellFlush)]
        circs = sorted({h.circ for s in r.snapshots for h in s.mux.heap})
        if len(flushes) > 3 and len(circs) > 1:
            step = r.steps[flushes[3]]
            assert isinstance(step, CellFlush)
            other = next(c for c in circs if c != step.circ)
            steps = list(r.steps)
            steps[flushes[3]] = step._replace(circ=other)
            passing = next(x for x in recs if x.run != r.run)
            write_records(out / "divergent-run.jsonl", [passing, dataclasses.replace(r, steps=tuple(steps))])
            break
    # Malformed: line 3 has a string where TCP_INFO's cwnd must be an integer.
    lines = (out / "example-runs.jsonl").read_text(encoding="utf-8").splitlines()[:3]
    bad = json.loads(lines[2])
    bad["sock"][0] = {"cwnd": "ten", "unacked": 0, "mss": 1448, "notsent": 0}
    lines[2] = json.dumps(bad, separators=(",", ":"))
    (out / "malformed-run.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return ["example-runs.jsonl", "example-events.txt", "divergent-run.jsonl", "malformed-run.jsonl"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kist_reference.recorder OUT``: write synthetic records as JSON lines
    (``--examples DIR``: regenerate the files shipped in tests/data)."""
    import argparse

    from kist_reference.trace import write_records

    ap = argparse.ArgumentParser(prog="python -m kist_reference.recorder", description=main.__doc__)
    ap.add_argument("out", nargs="?")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--sched", default="KIST", choices=sorted(POLICIES))
    ap.add_argument("--channels", type=int, default=6)
    ap.add_argument("--examples", metavar="DIR", help="regenerate the example files in DIR")
    args = ap.parse_args(argv)
    if args.examples:
        for name in write_examples(args.examples):
            print(f"wrote {args.examples}/{name}")
        return 0
    if not args.out:
        ap.error("give OUT or --examples DIR")
    n = write_records(args.out, synthetic_records(args.seed, args.runs, args.sched, n_channels=args.channels))
    print(f"wrote {n} records to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
