"""One collection from a fleet of relays into one store: one session per relay.

Why processes: the single-relay pipeline (stem's reader, the writer's conversion, the store)
is bound by the GIL at a few thousand events/s per process, so the fleet's relays are
spread over ``processes`` shard processes. Each shard runs the ordinary :class:`Collector`
for each of its relays (its reconnects, gaps, A/B schedule and watchdog unchanged), but
one :class:`ShardWriter` per shard drains all of its relays' buffers into the one SQLite
store (WAL; the shards' commits take turns on its write lock). A relay that is unreachable
is retried with backoff (the time is stored as a gap); one that dies mid-collection is the
Collector's usual gap; neither stops the other relays, and a shard that dies takes only its
own relays with it.

The parent process only starts the shards, relays Ctrl-C to them (a shared event), and
folds the per-relay states they send each second into :class:`RelayState` rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.control.buffer import EventBuffer
from harness.control.fleetfile import RelaySpec
from harness.control.writer import OwnRecord, StoreWriter
from harness.errors import HarnessError, StepError
from harness.store.records import Context, Kind, Record
from harness.store.typed import Gap, Session

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetSettings:
    """What every relay's collection shares (picklable: it crosses into the shards)."""

    run_id: str                          # each relay's session is RUN_ID/NAME
    duration_s: float | None
    snapshot_every_s: float = 10.0
    buffer_events: int = 200_000         # per relay
    buffer_bytes: int = 32 << 20         # per relay
    parse_workers: int = 0               # per shard
    patch_hash: str | None = None
    extra_events: tuple[str, ...] = ()
    ab: str | None = None                # a relay's own `ab` overrides it
    period_s: float = 600.0
    seed: int = 0
    inventory: Path | None = None        # SSH inventory for relays naming `ssh`
    stall_s: float = 30.0
    backoff_first_s: float = 0.5
    backoff_max_s: float = 30.0


@dataclass
class RelayState:
    """One relay's row in the progress table (a plain dict on its way from a shard)."""

    name: str
    state: str = "starting"     # starting, unreachable, up, DOWN, failed, done
    events: int = 0
    events_per_s: float = 0.0
    stored: int = 0
    errors: int = 0
    gaps: int = 0
    shed: int = 0
    queued: int = 0
    arm: str = "-"
    last_error: str = ""
    restore_failed: str = ""
    unavailable: dict[str, str] = field(default_factory=dict)


def relay_run_id(run_id: str, name: str) -> str:
    return f"{run_id}/{name}"


def relay_seed(seed: int, name: str) -> int:
    """Each relay's own A/B order, reproducible from the fleet's seed and the relay's name."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:4], "big")


# ----------------------------------------------------------------------------- the writer


class FanIn:
    """Many relays' bounded buffers seen as one by the shard's writer, taken round-robin."""

    def __init__(self) -> None:
        self.buffers: list[EventBuffer] = []
        self.calls = 0                               # get_batch calls so far
        self.last_taken: dict[int, int] = {}         # id(buffer) -> the call that last took from it
        self._lock = threading.Lock()
        self._next = 0

    def add(self, buffer: EventBuffer) -> None:
        with self._lock:
            self.buffers.append(buffer)

    def get_batch(self, max_items: int, timeout: float, max_bytes: int = 1 << 62) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                buffers = list(self.buffers)
                self.calls += 1
                call = self.calls
                start = self._next
                self._next += 1
            batch: list[Any] = []
            n = len(buffers)
            for k in range(n):
                buf = buffers[(start + k) % n]
                got = buf.get_batch(max_items - len(batch), 0, max_bytes)
                if got:
                    batch.extend(got)
                    self.last_taken[id(buf)] = call
                    if len(batch) >= max_items:
                        break
            left = deadline - time.monotonic()
            if batch or left <= 0:
                return batch
            time.sleep(min(left, 0.01))

    def __len__(self) -> int:
        return sum(len(b) for b in self.buffers)

    @property
    def fill(self) -> float:
        return max((b.fill for b in self.buffers), default=0.0)

    @property
    def shed(self) -> int:
        return sum(b.shed for b in self.buffers)


class ShardWriter(StoreWriter):
    """One writer thread for all of a shard's relays; counts what it stores per session."""

    def __init__(self, store: Any, *, batch_max: int = 5000, flush_interval: float = 0.5,
                 parse_workers: int = 0) -> None:
        self.fanin = FanIn()
        super().__init__(store, self.fanin, batch_max=batch_max,  # type: ignore[arg-type]
                         flush_interval=flush_interval, parse_workers=parse_workers,
                         on_commit=self._committed)
        self.handles: dict[str, WriterHandle] = {}
        self.own = EventBuffer(1 << 30)              # the fleet's own records (unreached relays)
        self.fanin.add(self.own)
        self.committed_call = 0
        self._pending: tuple[int, Counter[str], Counter[str]] = (0, Counter(), Counter())

    def handle(self, run_id: str) -> Callable[..., WriterHandle]:
        """A ``writer_factory`` for one relay's Collector."""
        def factory(_store: Any, buffer: EventBuffer, **_kw: Any) -> WriterHandle:
            h = WriterHandle(self, buffer)
            self.handles[run_id] = h
            self.fanin.add(buffer)
            return h
        return factory

    def put(self, ctx: Context, record: Record) -> None:
        self.own.put_record(OwnRecord(ctx, record))

    def _convert(self, batch: list[Any]) -> list[tuple[Context, Record]]:
        upto = self.fanin.calls  # every item taken so far is in this batch or an earlier one
        out = super()._convert(batch)
        self._pending = (upto, Counter(c.run_id for c, _r in out),
                         Counter(c.run_id for c, r in out if r.kind == Kind.ERROR))
        return out

    def _committed(self, _total: int) -> None:
        upto, stored, errors = self._pending
        for run_id, n in stored.items():
            h = self.handles.get(run_id)
            if h is not None:
                h.stored += n
                h.events += n
                h.errors += errors.get(run_id, 0)
        self.committed_call = upto


class WriterHandle:
    """What a Collector sees as its writer: the shard's, with this relay's own counters."""

    def __init__(self, shard: ShardWriter, buffer: EventBuffer) -> None:
        self.shard, self.buffer = shard, buffer
        self.stored = self.errors = self.events = 0

    @property
    def failure(self) -> BaseException | None:
        return self.shard.failure

    @property
    def alive(self) -> bool:
        return self.shard.alive

    def start(self) -> WriterHandle:
        return self

    def stop(self, timeout: float = 60.0) -> None:
        """Wait until everything this relay queued is committed (the shard writer keeps running)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.shard.failure is None and self.shard.alive:
            if len(self.buffer) == 0 and \
                    self.shard.committed_call >= self.shard.fanin.last_taken.get(id(self.buffer), 0):
                return
            time.sleep(0.02)
        if len(self.buffer):
            log.warning("%d items of a relay not written", len(self.buffer))


# ------------------------------------------------------------------------- transports


class ReconnectingSsh:
    """A Transport through a host's SSH connection that opens a new SSH connection when the
    old one died (``ssh_transport`` alone keeps a dead one). The cookie copy is kept in one
    private path (0600 in a 0700 dir), rewritten on each new connection, removed by close."""

    def __init__(self, host_name: str, control: str | None, inventory: Path | None) -> None:
        self.host_name, self.control, self.inventory = host_name, control, inventory
        self._inner: Any = None
        self._dir = Path(tempfile.mkdtemp(prefix="kist-fleet-cookie-"))
        os.chmod(self._dir, 0o700)
        self.cookie_path: Path | None = None
        try:
            self._open()
        except BaseException:
            shutil.rmtree(self._dir, ignore_errors=True)
            raise

    def _open(self) -> None:
        from harness.remote.tunnel import ssh_transport

        inner = ssh_transport(self.host_name, self.control, self.inventory)
        if inner.cookie_path is not None:
            local = self._dir / "control_auth_cookie"
            fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(Path(inner.cookie_path).read_bytes())
            self.cookie_path = local
        self._inner = inner

    def describe(self) -> str:
        return self._inner.describe() if self._inner else f"{self.host_name} via SSH"

    def connect(self) -> Any:
        if self._inner is not None:
            try:
                return self._inner.connect()
            except StepError:
                self._inner.close()
                self._inner = None
        self._open()  # a new SSH connection; StepError if the host is unreachable
        return self._inner.connect()

    def close(self) -> None:
        try:
            if self._inner is not None:
                self._inner.close()
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


def _transport(spec: RelaySpec, settings: FleetSettings) -> tuple[Any, Any]:
    """(transport, credentials) for one relay; StepError if it cannot be reached now."""
    from harness.control.auth import Credentials
    from harness.control.transport import parse_control_address

    if spec.ssh:
        t: Any = ReconnectingSsh(spec.ssh, spec.control, settings.inventory)
    else:
        assert spec.control is not None
        t = parse_control_address(spec.control)
    try:
        if not spec.ssh:
            t.connect().close()  # reachable now? (the Collector insists on its first connection)
        return t, Credentials.from_args(t.cookie_path if spec.ssh else spec.cookie, spec.password_file)
    except BaseException:
        t.close()
        raise


# ---------------------------------------------------------------------------- a relay


class RelayRunner:
    """One relay's thread in a shard: reach it, then run its Collector until done."""

    def __init__(self, spec: RelaySpec, settings: FleetSettings, writer: ShardWriter, store: Any) -> None:
        self.spec, self.settings, self.writer, self.store = spec, settings, writer, store
        self.run_id = relay_run_id(settings.run_id, spec.name)
        self.state = RelayState(spec.name)
        self.collector: Any = None
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._main, name=f"relay-{spec.name}", daemon=True)

    def stop(self) -> None:
        self.stop_event.set()
        c = self.collector
        if c is not None:
            c.stop()

    def snapshot(self) -> dict[str, Any]:
        c, s = self.collector, self.state
        if c is not None:
            p = c.progress
            s.events, s.events_per_s, s.stored, s.errors = p.events, p.events_per_s, p.stored, p.errors
            s.gaps, s.shed, s.queued, s.arm = p.gaps, p.shed, p.queued, p.arm
            s.unavailable, s.restore_failed = dict(p.unavailable), p.restore_failed
            if s.state in ("up", "DOWN"):
                s.state = "up" if p.connected else "DOWN"
        return asdict(s)

    def _schedule(self) -> Any:
        from harness.control import abtest

        ab = self.spec.ab or self.settings.ab
        if not ab:
            return None
        period = self.settings.period_s
        if self.spec.period:
            from harness.commands.collect import parse_duration

            period = parse_duration(self.spec.period, "period")
        return abtest.Schedule(abtest.parse_arms(ab), period, relay_seed(self.settings.seed, self.spec.name))

    def _main(self) -> None:
        from harness.control.collector import CollectConfig, Collector

        st, cfg = self.settings, self.settings
        start = time.monotonic()
        deadline = None if cfg.duration_s is None else start + cfg.duration_s
        unreached_since, delay, tries = time.time(), st.backoff_first_s, 0
        ctx = Context(self.run_id)
        schedule = self._schedule()
        session = {"relay": self.spec.name, "fleet_run_id": st.run_id, "spec": self.spec.describe(),
                   "ab": [a.describe() for a in schedule.arms] if schedule else None,
                   "period_s": schedule.period_s if schedule else None,
                   "seed": schedule.seed if schedule else None}
        while not self.stop_event.is_set() and (deadline is None or time.monotonic() < deadline):
            tries += 1
            try:
                transport, creds = _transport(self.spec, st)
            except HarnessError as exc:
                self.state.state, self.state.last_error = "unreachable", str(exc).splitlines()[0]
                if tries == 1:
                    log.warning("relay %s unreachable (%s); retrying with backoff", self.spec.name,
                                self.state.last_error)
                wait = delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
                self.stop_event.wait(wait)
                delay = min(delay * 2, st.backoff_max_s)
                continue
            if tries > 1:
                self.writer.put(ctx, Gap(unreached_since, time.time(), "unreachable at the start",
                                         last_error=self.state.last_error).record())
            left = None if deadline is None else max(0.1, deadline - time.monotonic())
            config = CollectConfig(run_id=self.run_id, duration_s=left, snapshot_every_s=st.snapshot_every_s,
                                   buffer_events=st.buffer_events, buffer_bytes=st.buffer_bytes,
                                   patch_hash=st.patch_hash, extra_events=st.extra_events, stall_s=st.stall_s,
                                   backoff_first_s=st.backoff_first_s, backoff_max_s=st.backoff_max_s)
            self.collector = Collector(transport, creds, self.store, config, schedule=schedule,
                                       writer_factory=self.writer.handle(self.run_id))  # type: ignore[arg-type]
            if self.stop_event.is_set():
                self.collector.stop()
            self.state.state = "up"
            try:
                self.collector.run(None, session)
                self.snapshot()
                self.state.state = "done"
            except HarnessError as exc:
                self.snapshot()
                self.state.state, self.state.last_error = "failed", str(exc).splitlines()[0]
                log.error("relay %s: collection failed: %s", self.spec.name, self.state.last_error)
            return
        # never reached: its session is one open gap
        now = time.time()
        self.writer.put(ctx, Session(self.run_id, self.spec.describe(), session).record(unreached_since))
        self.writer.put(ctx, Gap(unreached_since, now, "unreachable for the whole collection", open=True,
                                 last_error=self.state.last_error).record())
        self.state.gaps = 1
        self.state.state = "unreachable"


# ---------------------------------------------------------------------------- a shard


def _watch_parent(parent: int, stop: Any) -> None:
    while not stop.is_set():
        if os.getppid() != parent:
            stop.set()  # the parent was killed: finish cleanly (flush, restore settings)
            return
        time.sleep(0.5)


def run_shard(shard: int, specs: Sequence[RelaySpec], settings: FleetSettings, store_path: str,
              stop: Any, progress: Any) -> None:
    """A shard process's body: its relays' collections, one writer, states on ``progress``."""
    import logging as _logging

    import stem.util.log

    stem.util.log.get_logger().setLevel(_logging.WARNING)
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent turns Ctrl-C into ``stop``
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    threading.Thread(target=_watch_parent, args=(os.getppid(), stop), daemon=True).start()
    from harness.store.db import Store

    store = Store(store_path)
    writer = ShardWriter(store, parse_workers=settings.parse_workers)
    writer.start()
    runners = [RelayRunner(s, settings, writer, store) for s in specs]
    try:
        for r in runners:
            r.thread.start()
        stopping = False
        while any(r.thread.is_alive() for r in runners):
            if stopping:
                time.sleep(1.0)  # they are finishing: report each second, as before
            elif stop.wait(1.0):
                stopping = True
                for r in runners:
                    r.stop()
            progress.put((shard, [r.snapshot() for r in runners], False))
        for r in runners:
            r.thread.join()
    finally:
        for r in runners:
            r.stop()
        for r in runners:
            r.thread.join(120)
        writer.stop()
        store.close()
        progress.put((shard, [r.snapshot() for r in runners], True))


# ---------------------------------------------------------------------------- the parent


class FleetCollector:
    """Start the shards, fold their reports, stop them on :meth:`stop`; :meth:`run` blocks."""

    def __init__(self, specs: Sequence[RelaySpec], settings: FleetSettings, store_path: Path,
                 processes: int) -> None:
        self.specs, self.settings, self.store_path = list(specs), settings, store_path
        self.processes = max(1, min(processes, len(self.specs)))
        self._ctx = multiprocessing.get_context("spawn")  # forking a threaded process is unsafe
        self.stop_event = self._ctx.Event()
        self.states = {s.name: RelayState(s.name) for s in self.specs}
        self.elapsed_s = 0.0

    def stop(self) -> None:
        self.stop_event.set()

    def shards(self) -> list[list[RelaySpec]]:
        return [self.specs[k::self.processes] for k in range(self.processes)]

    def run(self, on_progress: Callable[[FleetCollector], None] | None = None) -> dict[str, RelayState]:
        progress = self._ctx.Queue()
        procs = []
        start = time.monotonic()
        from harness.store.db import Store

        Store(self.store_path).close()  # schema and WAL once, before the shards open it together
        try:
            for k, specs in enumerate(self.shards()):
                p = self._ctx.Process(target=run_shard, name=f"kist-fleet-shard-{k}",
                                      args=(k, specs, self.settings, str(self.store_path), self.stop_event,
                                            progress))
                p.start()
                procs.append((p, specs))
            finished: set[int] = set()
            while len(finished) < len(procs):
                with contextlib.suppress(queue.Empty):
                    shard, rows, final = progress.get(timeout=1.0)
                    for row in rows:
                        self.states[row["name"]] = RelayState(**row)
                    if final:
                        finished.add(shard)
                for k, (p, specs) in enumerate(procs):
                    if k not in finished and not p.is_alive() and progress.empty():
                        finished.add(k)   # died without its final report
                        for s in specs:
                            st = self.states[s.name]
                            if st.state not in ("done", "failed"):
                                st.state, st.last_error = "failed", f"shard process exited ({p.exitcode})"
                self.elapsed_s = time.monotonic() - start
                if on_progress:
                    on_progress(self)
        finally:
            self.stop_event.set()
            end = time.monotonic() + 150
            while any(p.is_alive() for p, _s in procs) and time.monotonic() < end:
                with contextlib.suppress(queue.Empty):
                    progress.get(timeout=0.2)  # a child cannot exit while its reports sit unread
            for p, _specs in procs:
                p.join(1)
                if p.is_alive():
                    p.terminate()
                    p.join(10)
            progress.close()
            progress.join_thread()
        return self.states
