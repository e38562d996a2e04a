"""Replay: run record -> recomputed decisions -> the first divergence, if any.

A record holds the state at run start, the inputs Tor read during the run and Tor's
decisions. Replay rebuilds the start state, re-executes the run with a policy
(:mod:`kist_reference.scheduler`), feeds it the recorded inputs in order and compares
each decision as the policy makes it. A run stops at its first differing decision: after
that the recorded inputs no longer belong to the model's path.

What counts as one decision is fixed by ``docs/trace-format.md`` ("Decisions").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kist_reference.channel import (
    IDLE,
    PENDING,
    STATE_LETTERS,
    STATES_BY_LETTER,
    WAITING_FOR_CELLS,
    WAITING_TO_WRITE,
    Channel,
    SchedState,
)
from kist_reference.ewma import Circuit, Mux
from kist_reference.scheduler import FAILED, POLICIES, STALE, KistPolicy, Policy, RunState
from kist_reference.trace import (
    STEP_OPS,
    CanWrite,
    CellFlush,
    ChannelSnapshot,
    DestroyFailed,
    DestroyFlush,
    EndWrite,
    External,
    KernelWrite,
    LeftOpen,
    Outcome,
    Pop,
    RunRecord,
    ShouldWrite,
    Snapshot,
    StaleQueue,
    Step,
    TraceError,
    Writeable,
    WriteFailed,
)

CONTEXT_STEPS = 8  # recorded steps shown before a divergence

# State assumed for a channel the record names in a call with no snapshot before it
# (snapshots carry scheduler_state; a bare call does not): the state that makes the call act.
_ASSUMED_STATE: dict[str, SchedState] = {"hw": WAITING_FOR_CELLS, "ww": WAITING_TO_WRITE, "dw": PENDING,
                                         "rel": IDLE}


@dataclass(frozen=True, slots=True)
class Divergence:
    """The first decision where the model and the record differ."""

    run: int
    decision: int  # index of the decision within the run (0-based)
    step: int | None  # index into the record's STEPS, None outside the step list
    what: str  # which decision: limit, pop, should_write, kernel_write, can_write, ...
    tor: str  # what Tor decided (the record)
    model: str  # what the model decided
    context: tuple[str, ...]  # the inputs that led there

    def describe(self) -> str:
        where = f"step {self.step}" if self.step is not None else "end of run"
        lines = [f"run {self.run}: first divergence at decision {self.decision} ({self.what}, {where})",
                 f"  tor:   {self.tor}", f"  model: {self.model}"]
        lines += [f"  {c}" for c in self.context]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class RunResult:
    run: int
    sched: str
    decisions: int  # decisions compared (up to and including a divergence)
    divergence: Divergence | None


class _Diverged(Exception):
    def __init__(self, div: Divergence) -> None:
        super().__init__(div.describe())
        self.div = div


_INPUT_TYPES = (LeftOpen, Snapshot, External)
_INPUT_CLASSES = frozenset(_INPUT_TYPES)
_END_CLASSES = frozenset((*_INPUT_TYPES, EndWrite))
_END = Outcome(-1, "<end of recorded steps>")  # sentinel: never matches a model decision


def channel_from_snapshot(snap: ChannelSnapshot, state: SchedState | None = None) -> Channel:
    if state is None:
        state = STATES_BY_LETTER[snap.state]
    m = snap.mux
    circuits = [Circuit(h.circ, h.count, h.tick, h.qlen) for h in m.heap]
    mux = Mux.from_heap(circuits, m.recal, m.n_cells, m.destroy_q, m.last_destroy)
    return Channel(snap.chan, mux, open_=snap.open, wide=snap.wide, outbuf=snap.outbuf, state=state,
                   limit=snap.limit, written=snap.written)


def _fmt(step: Step) -> str:
    """A step as the wire spells it (``f:5:7:40:1200``)."""
    if step is _END:
        return "<end of recorded steps>"
    return ":".join([STEP_OPS[type(step)], *(str(int(v)) if isinstance(v, bool) else str(v) for v in step)])


class ReplayEnv:
    """The environment of a recorded run: inputs from the record, decisions checked against it."""

    def __init__(self, rec: RunRecord, policy: Policy) -> None:
        self.rec = rec
        self.policy = policy
        self.steps: tuple[Step, ...] = (*rec.steps, _END, _END)
        self.i = 0
        self.decisions = 0
        self.st: RunState | None = None

    # --- divergence ------------------------------------------------------------------
    def diverge(self, what: str, tor: str, model: str, step: int | None) -> _Diverged:
        ctx: list[str] = []
        if step is not None:
            lo = max(0, step - CONTEXT_STEPS)
            ctx.append("recorded steps before it: " + (" ".join(_fmt(s) for s in self.rec.steps[lo:step])
                                                         or "(none: first step)"))
        st = self.st
        if st is not None:
            heads = []
            for c in st.pending.heap:
                h = c.mux.heap
                heads.append(f"{c.chan_id}({h[0].circ_id}:{h[0].count!r})" if h else f"{c.chan_id}(-)")
            ctx.append("model channels_pending (array order, head circuit:count): " + (" ".join(heads) or "empty"))
        return _Diverged(Divergence(self.rec.run, self.decisions, step, what, tor, model, tuple(ctx)))

    def _mismatch(self, what: str, model: str) -> _Diverged:
        return self.diverge(what, _fmt(self.steps[self.i]), model, self.i)

    # --- inputs from other subsystems ------------------------------------------------
    def sync(self, st: RunState) -> None:
        steps = self.steps
        while steps[self.i].__class__ in _INPUT_CLASSES:
            self._apply(st, steps[self.i])
            self.i += 1

    def _apply(self, st: RunState, step: Step) -> None:
        if isinstance(step, LeftOpen):
            chan = st.channels.get(step.chan)
            if chan is not None:
                chan.open = False
        elif isinstance(step, Snapshot):
            snap = self.rec.snapshots[step.snap]
            chan = st.channels.get(snap.chan)
            fresh = channel_from_snapshot(snap)
            if chan is None:
                st.channels[snap.chan] = fresh
            else:
                if chan.state != fresh.state:
                    raise self.diverge("scheduler state", f"channel {snap.chan} in state {snap.state}",
                                       f"state {STATE_LETTERS[chan.state]}", self.i)
                self.decisions += 1
                chan.open, chan.wide, chan.cell_size = fresh.open, fresh.wide, fresh.cell_size
                chan.outbuf, chan.limit, chan.written, chan.mux = fresh.outbuf, fresh.limit, fresh.written, fresh.mux
        elif isinstance(step, External):
            chan = st.channels.get(step.chan)
            if chan is None:
                chan = Channel(step.chan, state=_ASSUMED_STATE.get(step.call, IDLE))
                st.channels[step.chan] = chan
            st.pending.call(chan, step.call)

    def _next(self) -> Step:
        step = self.steps[self.i]
        if step.__class__ in _INPUT_CLASSES:
            assert self.st is not None
            self.sync(self.st)
            step = self.steps[self.i]
        return step

    # --- decisions ---------------------------------------------------------------------
    def pop(self, chan: Channel) -> None:
        s = self._next()
        if s.__class__ is Pop and s[0] == chan.chan_id:
            self.i += 1
            self.decisions += 1
            return
        raise self._mismatch("pop", f"p:{chan.chan_id}")

    def should_write(self, prev: Channel, outbuf: int, write: bool) -> None:
        s = self._next()
        if s.__class__ is ShouldWrite and s == (prev.chan_id, outbuf, write):
            self.i += 1
            self.decisions += 1
            return
        raise self._mismatch("should_write", f"s:{prev.chan_id}:{outbuf}:{int(write)}")

    def kernel_write(self, chan: Channel, before: int) -> int:
        s = self._next()
        if s.__class__ is KernelWrite and s[0] == chan.chan_id and s[1] == before:
            self.i += 1
            self.decisions += 1
            return int(s[2])
        raise self._mismatch("kernel_write", f"w:{chan.chan_id}:{before}:?")

    def can_write(self, chan: Channel, can: bool) -> None:
        s = self._next()
        if s.__class__ is CanWrite and s[0] == chan.chan_id and s[1] == can:
            self.i += 1
            self.decisions += 1
            return
        raise self._mismatch("can_write", f"c:{chan.chan_id}:{int(can)}  (limit={chan.limit} "
                                          f"written={chan.written})")

    def writeable(self, chan: Channel, cells: int) -> None:
        s = self._next()
        if s.__class__ is Writeable and s[0] == chan.chan_id and s[1] == cells:
            self.i += 1
            self.decisions += 1
            return
        raise self._mismatch("writeable", f"v:{chan.chan_id}:{cells}  (outbuf={chan.outbuf})")

    def cell_result(self, chan: Channel, circ_id: int, believed_empty: bool) -> tuple[int, int] | str:
        s = self._next()
        cls = s.__class__
        if s[0] == chan.chan_id and len(s) > 1 and s[1] == circ_id:
            if cls is CellFlush:
                self.i += 1
                self.decisions += 1
                return (s[2], s[3])  # type: ignore[misc]
            if cls is StaleQueue:
                self.i += 1
                return STALE
            if cls is WriteFailed:
                self.i += 1
                return FAILED
        raise self._mismatch("circuit", f"f:{chan.chan_id}:{circ_id}:<tick>:<msec>")

    def destroy(self, chan: Channel) -> bool:
        s = self._next()
        if s.__class__ is DestroyFlush and s[0] == chan.chan_id:
            self.i += 1
            self.decisions += 1
            return True
        if s.__class__ is DestroyFailed and s[0] == chan.chan_id:
            self.i += 1
            return False
        raise self._mismatch("destroy", f"d:{chan.chan_id}")

    def outcome(self, chan: Channel, outcome: str) -> None:
        s = self._next()
        if s.__class__ is Outcome and s[0] == chan.chan_id and s[1] == outcome:
            self.i += 1
            self.decisions += 1
            return
        detail = f"  (limit={chan.limit} written={chan.written} cells={chan.mux.num_cells()})"
        raise self._mismatch("outcome", f"k:{chan.chan_id}:{outcome}{detail}")

    # --- end of run ----------------------------------------------------------------------
    def end_write_order(self, st: RunState, chans: Sequence[Channel]) -> Sequence[Channel]:
        self.sync(st)
        rest = self.rec.steps[self.i:]
        if any(s.__class__ not in _END_CLASSES for s in rest):
            raise self._mismatch("end of loop", "the run loop ended (channels_pending empty)")
        rec_ids = [s[0] for s in rest if s.__class__ is EndWrite]
        model_ids = {c.chan_id for c in chans}
        if set(rec_ids) != model_ids or len(rec_ids) != len(model_ids):
            raise self.diverge("end-of-run write set", "W channels " + " ".join(map(str, rec_ids)),
                               "outbuf table " + " ".join(map(str, sorted(model_ids))), self.i)
        self.decisions += 1
        by_id = {c.chan_id: c for c in chans}
        return [by_id[i] for i in rec_ids]

    def end_write(self, chan: Channel, before: int) -> int:
        s = self._next()
        if s.__class__ is EndWrite and s[0] == chan.chan_id and s[1] == before:
            self.i += 1
            self.decisions += 1
            return int(s[2])
        raise self._mismatch("end-of-run write", f"W:{chan.chan_id}:{before}:?")

    def finish(self, readd: Sequence[Channel], st: RunState) -> None:
        rec = self.rec
        self.sync(st)
        if self.i < len(rec.steps):
            raise self._mismatch("end of run", "nothing more (the run was over)")
        ids = tuple(c.chan_id for c in readd)
        if ids != rec.readd:
            raise self.diverge("readd", _ids(rec.readd), _ids(ids), None)
        self.decisions += 1
        final = st.pending.ids()
        if final != rec.final:
            raise self.diverge("final", _ids(rec.final), _ids(final), None)
        self.decisions += 1
        nxt = self.policy.next_run_us(st, rec.diff_ms)
        if nxt != rec.next_us:
            raise self.diverge("next", f"NEXT={rec.next_us} (DIFF={rec.diff_ms})", f"NEXT={nxt}", None)
        self.decisions += 1


def _ids(ids: Iterable[int]) -> str:
    return ",".join(map(str, ids)) or "(empty)"


def build_state(rec: RunRecord, policy: Policy, env: ReplayEnv) -> RunState:
    """The run-start state: channels_pending in array order, each start channel PENDING,
    KIST socket limits recomputed from the recorded syscall results and checked."""
    p = rec.params
    st = RunState(policy.make_pending(), scale_factor=p.ewma_scale_factor, tick_len=p.ewma_tick_len,
                  interval_ms=p.interval_ms, sock_buf_factor=p.sock_buf_factor, highwater=p.orconn_highwater,
                  no_kernel_support=p.no_kernel_support)
    env.st = st
    heap = st.pending.heap
    for i, snap in enumerate(rec.snapshots[: rec.n_pending]):
        if snap.chan in st.channels:
            raise TraceError(f"channel {snap.chan} is twice in channels_pending", field="CHANS")
        chan = channel_from_snapshot(snap, PENDING)
        chan.heap_idx = i
        heap.append(chan)
        st.channels[snap.chan] = chan
    if isinstance(policy, KistPolicy) and rec.sched != "Vanilla":
        for chan, snap, read in zip(heap, rec.snapshots, rec.sock, strict=False):
            limit = policy.socket_limit(st, chan, read)
            if snap.limit != limit:
                raise env.diverge("limit", f"limit of channel {snap.chan} = {snap.limit}",
                                  f"{limit} from {read} outbuf={snap.outbuf} factor={p.sock_buf_factor!r}", None)
            env.decisions += 1
            chan.limit = limit
            chan.written = 0
    else:
        for chan in heap:
            chan.limit = chan.written = None
    return st


def replay_run(rec: RunRecord, policy: Policy | None = None) -> RunResult:
    """Replay one record; ``policy`` defaults to the faithful policy for the record's scheduler."""
    pol = policy if policy is not None else POLICIES[rec.sched]()
    env = ReplayEnv(rec, pol)
    try:
        st = build_state(rec, pol, env)
        pol.run(st, env)
    except _Diverged as exc:
        return RunResult(rec.run, rec.sched, env.decisions + 1, exc.div)
    except (AssertionError, ValueError, KeyError) as exc:
        # A state Tor itself would assert on (e.g. a recorded call on a channel the heap does
        # not hold): report it where it happened rather than crash the whole replay.
        div = env.diverge("model invariant", "(the recorded run continues)", f"model stopped: {exc!r}",
                          min(env.i, len(rec.steps)))
        return RunResult(rec.run, rec.sched, env.decisions + 1, div.div)
    return RunResult(rec.run, rec.sched, env.decisions, None)


def replay(records: Iterable[RunRecord], policy: Policy | None = None) -> list[RunResult]:
    return [replay_run(rec, policy) for rec in records]
